// Generation and checking speed of the schedule core (issue targets on a
// 2-core machine: generate >= 10 M ops/s, check >= 5 M ops/s).
#include <benchmark/benchmark.h>

#include <chimera/chimera.hpp>

namespace {

chimera::config chimera_config(int d, int n) {
    return {.schedule = chimera::algorithm::chimera, .stages = d, .micro_batches = n};
}

void generate_chimera(benchmark::State& state) {
    const auto c = chimera_config(static_cast<int>(state.range(0)), static_cast<int>(state.range(1)));
    std::size_t ops = 0;
    for (auto _ : state) {
        const chimera::schedule s = chimera::generate(c);
        ops = s.op_count();
        benchmark::DoNotOptimize(s.all_ops().data());
    }
    state.counters["ops"] = static_cast<double>(ops);
    state.counters["ops_per_s"] = benchmark::Counter(static_cast<double>(ops), benchmark::Counter::kIsIterationInvariantRate);
}

void check_chimera(benchmark::State& state) {
    const chimera::schedule s = chimera::generate(chimera_config(static_cast<int>(state.range(0)), static_cast<int>(state.range(1))));
    for (auto _ : state) {
        const auto report = chimera::check(s);
        if (!report.ok()) state.SkipWithError("schedule did not check");
        benchmark::DoNotOptimize(report.diagnostics.data());
    }
    state.counters["ops"] = static_cast<double>(s.op_count());
    state.counters["ops_per_s"] =
        benchmark::Counter(static_cast<double>(s.op_count()), benchmark::Counter::kIsIterationInvariantRate);
}

void asap_chimera(benchmark::State& state) {
    const chimera::schedule s = chimera::generate(chimera_config(static_cast<int>(state.range(0)), static_cast<int>(state.range(1))));
    for (auto _ : state) {
        const auto t = chimera::asap(s, {1, 2, 1, 1});
        benchmark::DoNotOptimize(t.makespan);
    }
    state.counters["ops_per_s"] =
        benchmark::Counter(static_cast<double>(s.op_count()), benchmark::Counter::kIsIterationInvariantRate);
}

}  // namespace

BENCHMARK(generate_chimera)->Args({64, 1024})->Args({256, 1024})->Unit(benchmark::kMillisecond);
BENCHMARK(check_chimera)->Args({64, 1024})->Args({256, 1024})->Unit(benchmark::kMillisecond);
BENCHMARK(asap_chimera)->Args({64, 1024})->Args({256, 1024})->Unit(benchmark::kMillisecond);

BENCHMARK_MAIN();
