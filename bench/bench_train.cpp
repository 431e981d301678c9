// Training throughput of the CPU backend per schedule (tiny GPT, fp32), and
// the step time the ASAP simulator predicts from the per-op costs measured
// in the same run. One benchmark iteration = one training step.
//
//   ninja -C build bench/bench_train && build/bench/bench_train --benchmark_min_time=3
#include <benchmark/benchmark.h>

#include <algorithm>
#include <thread>

#include <chimera/analysis.hpp>
#include <chimera/generate.hpp>
#include <chimera/lower.hpp>
#include <cpu/trainer.hpp>

namespace {

using namespace chimera;
using namespace chimera::runtime::cpu;

const gpt::dataset& data() {
    static const gpt::dataset d(65536, 1);
    return d;
}

run_shape shape(int micro_batches, int data_parallel) {
    run_shape s;
    s.model = gpt::tiny_model(data().vocab());
    s.batch = 4;
    s.seq = s.model.max_seq;
    s.micro_batches = micro_batches;
    s.data_parallel = data_parallel;
    s.adam.learning_rate = 3e-3;
    return s;
}

void pipelined(benchmark::State& state, config c) {
    const schedule compute = generate(c);
    const auto sh = shape(compute.micro_batches(), c.data_parallel);
    pipeline_trainer<float> trainer(lower(compute), sh, data(), gpt::initial_parameters<float>(sh.model, 1));
    int step = 0;
    trainer.step(step++);  // warm-up (allocations)
    const op_times start = trainer.total_times();
    for (auto _ : state) benchmark::DoNotOptimize(trainer.step(step++).loss);
    const step_prediction p = predict_step(trainer, start, trainer.total_times(), static_cast<int>(state.iterations()),
                                           std::max(1u, std::thread::hardware_concurrency()));
    const double tokens = static_cast<double>(compute.micro_batches()) * c.data_parallel * sh.batch * sh.seq;
    state.counters["tokens_per_s"] = benchmark::Counter(tokens * static_cast<double>(state.iterations()),
                                                        benchmark::Counter::kIsRate);
    state.counters["sim_ms"] = p.makespan * 1e3;
    state.counters["sim_cores_ms"] = p.core_bound * 1e3;
    state.counters["F_ms"] = p.costs.forward * 1e3;
    state.counters["B_ms"] = p.costs.backward * 1e3;
    state.counters["threads"] = static_cast<double>(trainer.ranks());
}

void sequential(benchmark::State& state, int micro_batches) {
    const auto sh = shape(micro_batches, 1);
    sequential_trainer<float> trainer(sh, data(), gpt::initial_parameters<float>(sh.model, 1),
                                      sequential_trainer<float>::one_group(micro_batches));
    int step = 0;
    for (auto _ : state) benchmark::DoNotOptimize(trainer.step(step++).loss);
    state.counters["tokens_per_s"] = benchmark::Counter(
        static_cast<double>(micro_batches) * sh.batch * sh.seq * static_cast<double>(state.iterations()),
        benchmark::Counter::kIsRate);
}

}  // namespace

BENCHMARK_CAPTURE(sequential, N8, 8)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(pipelined, gpipe_D2_N8, config{algorithm::gpipe, 2, 8})->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(pipelined, 1f1b_D2_N8, config{algorithm::one_f_one_b, 2, 8})->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(pipelined, chimera_D2_N8, config{algorithm::chimera, 2, 8, 2})->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(pipelined, gpipe_D4_N8, config{algorithm::gpipe, 4, 8})->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(pipelined, 1f1b_D4_N8, config{algorithm::one_f_one_b, 4, 8})->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(pipelined, chimera_D4_N8, config{algorithm::chimera, 4, 8, 2})->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(pipelined, chimera_D4_N8_doubling, config{algorithm::chimera, 4, 8, 2, scaling::doubling})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK_CAPTURE(pipelined, chimera_D4_N4_W2, config{algorithm::chimera, 4, 4, 2, scaling::direct, 2})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

BENCHMARK_MAIN();
