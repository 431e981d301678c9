// The runtime's core promise (docs/design/runtime-contract.md#equivalence-guarantees-and-how-they-are-tested V2, V5, V7): every schedule
// trains the same model as the sequential reference; replicas stay equal;
// runs are deterministic; the measured activation peak is the predicted one.
#include <doctest/doctest.h>

#include <cmath>
#include <string>
#include <type_traits>
#include <vector>

#include <chimera/generate.hpp>
#include <chimera/lower.hpp>
#include <cpu/trainer.hpp>

#include "runtime_fixture.hpp"

using namespace chimera;
using namespace chimera::runtime::cpu;

namespace {

using test::data;
using test::test_shape;

template <class R>
bool close(R a, R b, double rtol, double atol) {
    return std::abs(static_cast<double>(a) - static_cast<double>(b)) <= atol + rtol * std::abs(static_cast<double>(b));
}

struct equivalence {
    int steps = 0;
    int loss_mismatches = 0, weight_mismatches = 0;  // beyond tolerance vs plain accumulation
    bool bitwise_grouped = true;                       // bitwise vs the replica-grouped reference
    bool replicas_identical = true;
    bool peaks_match = true;
    int order_mismatches = 0;  // messages whose per-pair issue order differs on both sides (NCCL would mis-pair)
};

template <class R>
equivalence compare(const config& c, int steps, double rtol, double atol, double weight_atol,
                    sync_policy sync = sync_policy::end) {
    const schedule lowered = lower(generate(c), {.sync = sync});
    const int W = c.data_parallel;
    run_shape shape = test_shape(lowered.micro_batches(), W);
    const auto initial = gpt::initial_parameters<R>(shape.model, 42);
    pipeline_trainer<R> pipelined(lowered, shape, data(), initial);
    sequential_trainer<R> plain(shape, data(), initial,
                                sequential_trainer<R>::one_group(lowered.micro_batches() * W));
    sequential_trainer<R> grouped(shape, data(), initial, sequential_trainer<R>::by_replica(lowered, W));
    equivalence e;
    for (int step = 0; step < steps; ++step) {
        const auto a = pipelined.step(step);
        const auto b = plain.step(step);
        const auto g = grouped.step(step);
        ++e.steps;
        if (!close(a.loss, b.loss, rtol, atol)) ++e.loss_mismatches;
        if (a.loss != g.loss || a.micro_batch_losses != g.micro_batch_losses) e.bitwise_grouped = false;
        e.replicas_identical = e.replicas_identical && pipelined.replicas_identical();
    }
    // Weights get atol 1e-5 in fp32: the key bias has a mathematically zero
    // gradient (softmax ignores a per-row constant), so it only sees
    // rounding noise, which AdamW scales up to steps of size ~lr * 1e-4.
    const auto final_state = pipelined.state();
    for (std::size_t i = 0; i < final_state.params.size(); ++i)
        if (!close(final_state.params[i], plain.state().params[i], rtol, std::max(atol, weight_atol)))
            ++e.weight_mismatches;
    if (!(final_state == grouped.state())) e.bitwise_grouped = false;
    e.peaks_match = pipelined.measured_peaks() == pipelined.predicted_peaks();
    e.order_mismatches = pipelined.order_mismatches();
    return e;
}

std::vector<config> grid() {
    return {
        {algorithm::gpipe, 4, 4, 1, scaling::direct, 1},
        {algorithm::one_f_one_b, 4, 6, 1, scaling::direct, 1},
        {algorithm::one_f_one_b, 4, 4, 1, scaling::direct, 2},
        {algorithm::chimera, 4, 4, 2, scaling::direct, 1},
        {algorithm::chimera, 4, 4, 2, scaling::direct, 2},
        {algorithm::chimera, 4, 8, 2, scaling::direct, 1},
        {algorithm::chimera, 4, 8, 2, scaling::doubling, 1},
        {algorithm::chimera, 4, 6, 2, scaling::doubling, 2},
        {algorithm::chimera, 8, 8, 4, scaling::direct, 1},
        {algorithm::chimera, 8, 8, 4, scaling::direct, 2},
    };
}

// The rest of the library's schedules, small enough for CI: chunked
// (interleaved, looped BFS), split backward (zero bubble, DualPipe, Chimera
// --split-backward), V placement and replicated stages.
std::vector<config> zoo() {
    return {
        {.schedule = algorithm::interleaved, .stages = 2, .micro_batches = 4},
        {.schedule = algorithm::interleaved, .stages = 2, .micro_batches = 4, .data_parallel = 2},
        {.schedule = algorithm::looped_bfs, .stages = 2, .micro_batches = 4},
        {.schedule = algorithm::gems, .stages = 4, .micro_batches = 4},
        {.schedule = algorithm::zb_h1, .stages = 4, .micro_batches = 4},
        {.schedule = algorithm::zb_h2, .stages = 4, .micro_batches = 4},
        {.schedule = algorithm::zb_v, .stages = 2, .micro_batches = 4},
        {.schedule = algorithm::zb_v, .stages = 2, .micro_batches = 4, .data_parallel = 2},
        {.schedule = algorithm::dualpipe, .stages = 2, .micro_batches = 4},
        {.schedule = algorithm::dualpipe, .stages = 4, .micro_batches = 8, .data_parallel = 2},
        {.schedule = algorithm::dualpipev, .stages = 2, .micro_batches = 4},
        {.schedule = algorithm::chimera, .stages = 4, .micro_batches = 4, .split_backward = true},
        {.schedule = algorithm::chimera, .stages = 4, .micro_batches = 8, .data_parallel = 2, .split_backward = true},
    };
}

std::string name(const config& c) {
    return std::string(to_string(c.schedule)) + " D=" + std::to_string(c.stages) + " N=" +
           std::to_string(c.micro_batches) + " k=" + std::to_string(pipeline_count(c)) + " " +
           std::string(to_string(c.scaling_mode)) + " W=" + std::to_string(c.data_parallel) +
           (c.split_backward ? " split-backward" : "");
}

// Losses and weights within tolerance of plain accumulation and replicas
// equal; in fp32 also bitwise equal to the replica-grouped reference,
// peaks as predicted and no issue-order mismatch.
template <class R>
void check_same_model(const std::vector<config>& configs) {
    constexpr bool fp32 = std::is_same_v<R, float>;
    for (const config& c : configs) {
        INFO(name(c));
        const auto e = fp32 ? compare<R>(c, 3, 1e-5, 1e-6, 1e-5) : compare<R>(c, 2, 1e-12, 1e-12, 1e-12);
        CHECK(e.loss_mismatches == 0);
        CHECK(e.weight_mismatches == 0);
        CHECK(e.replicas_identical);
        if (!fp32) continue;
        CHECK(e.bitwise_grouped);
        CHECK(e.peaks_match);
        CHECK(e.order_mismatches == 0);
    }
}

}  // namespace

TEST_CASE("fp32: every schedule trains the same model as sequential (V2, V7)") { check_same_model<float>(grid()); }

TEST_CASE("fp32: every zoo schedule trains the same model as sequential") { check_same_model<float>(zoo()); }

TEST_CASE("fp64: every zoo schedule trains the same model as sequential within 1e-12") { check_same_model<double>(zoo()); }

TEST_CASE("eager gradient sync (REDUCE_GRAD inside the list) changes nothing") {
    for (const config& c : {config{algorithm::chimera, 4, 8, 2, scaling::direct, 2},
                            config{algorithm::one_f_one_b, 4, 4, 1, scaling::direct, 2},
                            config{algorithm::chimera, 8, 8, 4, scaling::direct, 1}}) {
        INFO(name(c));
        const auto e = compare<float>(c, 2, 1e-5, 1e-6, 1e-5, sync_policy::eager);
        CHECK(e.bitwise_grouped);
        CHECK(e.replicas_identical);
        CHECK(e.peaks_match);
        CHECK(e.order_mismatches == 0);
    }
}

TEST_CASE("fp64: every schedule trains the same model as sequential within 1e-12") { check_same_model<double>(grid()); }

// The trainer's first step is AdamW step 1, whose bias corrections make the
// update exactly lr * (g / (|g| + eps) + decay * p): every weight moves by
// about lr. A wrong step index or bias correction (a NaN, or steps 3x too
// large without correction) fails here.
TEST_CASE("the first training step moves every weight by AdamW step 1's closed form") {
    const schedule lowered = lower(generate({algorithm::one_f_one_b, 2, 4}));
    const run_shape shape = test_shape(lowered.micro_batches(), 1);
    const auto initial = gpt::initial_parameters<double>(shape.model, 5);
    pipeline_trainer<double> t(lowered, shape, data(), initial);
    t.step(0);
    const auto after = t.state().params;
    const auto g = t.gradients();
    REQUIRE(g.size() == initial.size());
    const double lr = shape.adam.learning_rate, eps = shape.adam.epsilon;
    int wrong = 0, moved = 0;
    for (const auto& tensor : gpt::tensor_table(shape.model))
        for (std::size_t i = tensor.offset; i < tensor.offset + tensor.size; ++i) {
            const double decay = tensor.decay ? shape.adam.weight_decay * initial[i] : 0.0;
            const double expected = initial[i] - lr * (g[i] / (std::abs(g[i]) + eps) + decay);
            if (!close(after[i], expected, 1e-12, 1e-15)) ++wrong;
            if (std::abs(after[i] - initial[i]) > 0.5 * lr) ++moved;
        }
    CHECK(wrong == 0);
    CHECK(moved > static_cast<int>(initial.size()) / 2);  // most gradients are far above eps
}

// chimera-train's "cores" prediction is the library's shared_core_time (the
// one tune applies with cores_per_node) over the measured op times: one core
// reads as all work serialised, as many cores as workers as the
// one-core-per-worker makespan, and fewer cores never make it faster.
TEST_CASE("predict_step: the shared-core prediction is shared_core_time over the measured work") {
    const schedule lowered = lower(generate({algorithm::chimera, 4, 4, 2}));
    const run_shape shape = test_shape(lowered.micro_batches(), 1);
    pipeline_trainer<double> t(lowered, shape, data(), gpt::initial_parameters<double>(shape.model, 5));
    for (int s = 0; s < 2; ++s) t.step(s);
    const step_prediction one = predict_step(t, {}, t.total_times(), 2, 1);
    REQUIRE(one.makespan > 0);
    REQUIRE(one.optimizer > 0);
    CHECK(one.core_bound > one.makespan);  // 4 workers' work on one core
    const times_snapshot times = t.total_times();
    double work = times.optimizer / 2;  // per step, every worker
    for (const op_times& x : times.stages) work += (x.forward + x.backward) / 2;
    CHECK(one.core_bound == doctest::Approx(work).epsilon(1e-9));  // the free-comm timeline never idles
    double previous = one.core_bound;
    for (unsigned cores : {2u, 3u, 4u, 64u}) {
        CAPTURE(cores);
        const step_prediction p = predict_step(t, {}, t.total_times(), 2, cores);
        CHECK(p.makespan == one.makespan);
        CHECK(p.core_bound <= previous * (1 + 1e-12));
        CHECK(p.core_bound >= std::max(p.makespan, work / cores) * (1 - 1e-12));
        previous = p.core_bound;
    }
    CHECK(predict_step(t, {}, t.total_times(), 2, 4).core_bound == doctest::Approx(one.makespan).epsilon(1e-12));
}

// The link's costs reach the simulation: GPipe D=3 with one micro-batch is
// a chain F0 F1 F2 B2 B1 B0 crossing 4 boundaries, so alpha + bytes * beta
// adds exactly four messages (one activation: batch x seq x channels
// values) to the makespan, whatever the op times measured. CPU per step:
// the process (from a snapshot after the first step) spends at least what
// its ops do; with an empty first snapshot it is not reported.
TEST_CASE("predict_step: messages cost alpha + bytes * beta on the critical path; process CPU covers the ops") {
    const schedule lowered = lower(generate({algorithm::gpipe, 3, 1}));
    const run_shape shape = test_shape(lowered.micro_batches(), 1);
    pipeline_trainer<double> t(lowered, shape, data(), gpt::initial_parameters<double>(shape.model, 5));
    t.step(0);
    const times_snapshot first = t.total_times();
    for (int s = 1; s < 3; ++s) t.step(s);
    const times_snapshot last = t.total_times();
    const step_prediction free = predict_step(t, first, last, 2, 3);
    const double bytes = static_cast<double>(shape.activation_size() * sizeof(double));
    using chimera::runtime::link_costs;
    for (const link_costs net : {link_costs{1e-3, 0}, link_costs{0, 2e-9}, link_costs{5e-4, 1e-9}}) {
        CAPTURE(net.alpha);
        CAPTURE(net.beta);
        const step_prediction p = predict_step(t, first, last, 2, 3, net);
        CHECK(p.makespan - free.makespan == doctest::Approx(4 * (net.alpha + bytes * net.beta)).epsilon(1e-9));
        CHECK(p.forward == free.forward);
    }
    REQUIRE(free.cpu_ops > 0);
    CHECK(free.cpu_process >= free.cpu_ops - 1e-4);  // rusage counts microseconds
    CHECK(predict_step(t, {}, last, 3, 3).cpu_process < 0);
}
