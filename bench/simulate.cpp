// Simulator and configuration-search speed (issue 3 targets: >= 5 M ops/s
// for Chimera D=64 N=1024 lowered with costs; tune of the GPT-2 preset on
// 2,048 devices < 10 s). Results: bench/results/simulate.md.
#include <benchmark/benchmark.h>

#include <chimera/check.hpp>
#include <chimera/generate.hpp>
#include <chimera/lower.hpp>
#include <chimera/simulate.hpp>
#include <chimera/tune.hpp>

namespace {

const chimera::schedule& big_compute() {
    static const chimera::schedule s = chimera::generate({chimera::algorithm::chimera, 64, 1024});
    return s;
}

const chimera::schedule& big_lowered() {
    static const chimera::schedule s = chimera::lower(big_compute(), {.sync = chimera::sync_policy::eager});
    return s;
}

// Unequal per-stage costs, p2p and all-reduce costs: every part of the model is exercised.
chimera::cost_model costs() {
    chimera::cost_model c;
    for (int s = 0; s < 64; ++s)
        c.per_stage.push_back({.forward = 1.0 + s % 3 * 0.25, .backward = 2.1, .message_bytes = 1e6,
                               .parameter_bytes = 4e8, .gradient_bytes = 2e8});
    c.alpha = 1e-3;
    c.beta = 1e-9;
    c.data_parallel = 4;
    return c;
}

void simulate_lowered(benchmark::State& state) {
    const chimera::schedule& s = big_lowered();
    const chimera::cost_model c = costs();
    for (auto _ : state) benchmark::DoNotOptimize(chimera::simulate(s, c).makespan);
    state.counters["ops"] = static_cast<double>(s.op_count());
    state.counters["ops_per_second"] =
        benchmark::Counter(static_cast<double>(s.op_count()), benchmark::Counter::kIsIterationInvariantRate);
}
BENCHMARK(simulate_lowered)->Name("simulate/chimera_D64_N1024_lowered")->Unit(benchmark::kMillisecond);

void lower_big(benchmark::State& state) {
    for (auto _ : state) benchmark::DoNotOptimize(chimera::lower(big_compute()).op_count());
    state.counters["ops_per_second"] =
        benchmark::Counter(static_cast<double>(big_lowered().op_count()), benchmark::Counter::kIsIterationInvariantRate);
}
BENCHMARK(lower_big)->Name("lower/chimera_D64_N1024")->Unit(benchmark::kMillisecond);

void check_lowered(benchmark::State& state) {
    for (auto _ : state) benchmark::DoNotOptimize(chimera::check(big_lowered()).ok());
    state.counters["ops_per_second"] =
        benchmark::Counter(static_cast<double>(big_lowered().op_count()), benchmark::Counter::kIsIterationInvariantRate);
}
BENCHMARK(check_lowered)->Name("check/chimera_D64_N1024_lowered")->Unit(benchmark::kMillisecond);

void tune_gpt2(benchmark::State& state) {
    const auto p = *chimera::find_preset(chimera::presets, "gpt2-1.3b-p100");
    chimera::tune_request r;
    r.model = *chimera::find_preset(chimera::model_presets, p.model);
    r.machine.device = *chimera::find_preset(chimera::device_presets, p.device);
    r.machine.network = *chimera::find_preset(chimera::network_presets, p.network);
    r.devices = 2048;
    r.global_batch = static_cast<int>(state.range(0));
    std::size_t evaluated = 0;
    for (auto _ : state) evaluated = chimera::tune(r).evaluated;
    state.counters["configurations"] = static_cast<double>(evaluated);
}
BENCHMARK(tune_gpt2)->Name("tune/gpt2-1.3b-p100_P2048")->Arg(512)->Arg(2048)->Arg(16384)->Unit(benchmark::kSecond);

}  // namespace

BENCHMARK_MAIN();
