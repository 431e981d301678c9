// Generation speed of every schedule at D = 64 workers, N = 1024
// micro-batches (run time, std::vector storage). Results: bench/results/generate.md.
#include <benchmark/benchmark.h>

#include <chimera/generate.hpp>

namespace {

void generate_schedule(benchmark::State& state, chimera::config c) {
    std::size_t ops = 0;
    for (auto _ : state) {
        chimera::schedule s = chimera::generate(c);
        ops = s.op_count();
        benchmark::DoNotOptimize(s);
    }
    state.counters["ops"] = static_cast<double>(ops);
    state.counters["ops_per_s"] =
        benchmark::Counter(static_cast<double>(ops) * static_cast<double>(state.iterations()), benchmark::Counter::kIsRate);
}

constexpr int d = 64, n = 1024;

chimera::config with(chimera::algorithm a) { return {a, d, n}; }
chimera::config split_chimera() {
    chimera::config c{chimera::algorithm::chimera, d, n};
    c.split_backward = true;
    return c;
}

}  // namespace

BENCHMARK_CAPTURE(generate_schedule, gpipe, with(chimera::algorithm::gpipe))->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(generate_schedule, 1f1b, with(chimera::algorithm::one_f_one_b))->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(generate_schedule, chimera, with(chimera::algorithm::chimera))->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(generate_schedule, chimera_split_backward, split_chimera())->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(generate_schedule, interleaved_v2, with(chimera::algorithm::interleaved))->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(generate_schedule, looped_bfs_v2, with(chimera::algorithm::looped_bfs))->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(generate_schedule, gems, with(chimera::algorithm::gems))->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(generate_schedule, zb_h1, with(chimera::algorithm::zb_h1))->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(generate_schedule, zb_h2, with(chimera::algorithm::zb_h2))->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(generate_schedule, zb_v, with(chimera::algorithm::zb_v))->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(generate_schedule, dualpipe, with(chimera::algorithm::dualpipe))->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(generate_schedule, dualpipev, with(chimera::algorithm::dualpipev))->Unit(benchmark::kMillisecond);

// One large generation first: glibc raises its mmap threshold after the
// first large free, so without this the first benchmarks would pay an mmap
// and page faults per iteration that the later ones do not.
int main(int argc, char** argv) {
    benchmark::DoNotOptimize(chimera::generate(with(chimera::algorithm::zb_v)));
    benchmark::Initialize(&argc, argv);
    if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
    benchmark::RunSpecifiedBenchmarks();
    benchmark::Shutdown();
    return 0;
}
