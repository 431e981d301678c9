// The runtime's core promise (runtime.md §8 V2, V5, V7): every schedule
// trains the same model as the sequential reference; replicas stay equal;
// runs are deterministic; the measured activation peak is the predicted one.
#include <doctest/doctest.h>

#include <cmath>
#include <string>
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

std::string name(const config& c) {
    return std::string(to_string(c.schedule)) + " D=" + std::to_string(c.stages) + " N=" +
           std::to_string(c.micro_batches) + " k=" + std::to_string(pipeline_count(c)) + " " +
           std::string(to_string(c.scaling_mode)) + " W=" + std::to_string(c.data_parallel);
}

}  // namespace

TEST_CASE("fp32: every schedule trains the same model as sequential (V2, V7)") {
    for (const config& c : grid()) {
        INFO(name(c));
        const auto e = compare<float>(c, 3, 1e-5, 1e-6, 1e-5);
        CHECK(e.loss_mismatches == 0);
        CHECK(e.weight_mismatches == 0);
        CHECK(e.bitwise_grouped);
        CHECK(e.replicas_identical);
        CHECK(e.peaks_match);
        CHECK(e.order_mismatches == 0);
    }
}

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

TEST_CASE("fp64: every schedule trains the same model as sequential within 1e-12") {
    for (const config& c : grid()) {
        INFO(name(c));
        const auto e = compare<double>(c, 2, 1e-12, 1e-12, 1e-12);
        CHECK(e.loss_mismatches == 0);
        CHECK(e.weight_mismatches == 0);
        CHECK(e.replicas_identical);
    }
}
