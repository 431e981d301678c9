// Planning (docs/planning.md): rejections, the iteration-time terms, the
// calibration from a measured profile, intra/inter-node networks.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <set>
#include <stdexcept>
#include <vector>

#include <chimera/tune.hpp>

using namespace chimera;

namespace {

tune_request request(std::string_view model, int devices, int batch, double memory_gib) {
    return {.model = *find_preset(model_presets, model),
            .machine = {*find_preset(device_presets, "p100"), *find_preset(network_presets, "aries")},
            .devices = devices,
            .global_batch = batch,
            .memory_limit_bytes = memory_gib * double(1LL << 30),
            .max_micro_batch_size = 8};
}

}  // namespace

TEST_CASE("every point of the search is tried or rejected once, with a rule") {
    for (int devices : {4, 6, 16, 24})
        for (int batch : {8, 48, 64}) {
            CAPTURE(devices);
            CAPTURE(batch);
            const tune_request r = request("gpt2-124m", devices, batch, 4);
            std::vector<tune_rejection> rejected;
            const std::vector<tune_point> points = tune_points(r, &rejected);
            CHECK(points == tune_points(r));  // collecting rejections does not change the search
            std::set<decltype(points[0].key())> keys;
            for (const tune_point& p : points) {
                CHECK(!validate(p.schedule));
                CHECK(keys.insert(p.key()).second);
            }
            for (const tune_rejection& x : rejected) {
                CHECK(!x.rule.empty());
                CHECK(keys.insert(x.point.key()).second);
                const bool shape = x.rule.starts_with("divisibility") || x.rule.starts_with("layers");
                CHECK((shape || validate(x.point.schedule) || x.rule.starts_with("halving")));
            }
            const tune_result result = tune(r);
            std::size_t memory = 0;
            for (const tune_rejection& x : result.rejected) memory += x.rule.starts_with("memory") ? 1 : 0;
            CHECK(result.evaluated == points.size());
            CHECK(result.ranked.size() + memory == points.size());
        }
}

TEST_CASE("the iteration-time terms add up to the simulated iteration time") {
    for (std::string_view model : {"gpt2-124m", "bert-48"})
        for (sync_policy sync : {sync_policy::end, sync_policy::eager})
            for (int cores : {0, 3}) {
                tune_request r = request(model, 8, 32, 16);
                r.sync = sync;
                r.machine.cores_per_node = cores;
                for (const tune_candidate& c : tune(r).ranked) {
                    const iteration_terms t = explain(r, c);
                    CHECK(t.compute > 0);
                    CHECK(t.bubble >= -1e-12 * c.iteration_time);
                    CHECK(t.p2p >= 0);
                    CHECK(t.allreduce >= -1e-12 * c.iteration_time);
                    CHECK(t.shared_cores >= 0);
                    if (cores == 0) CHECK(t.shared_cores == 0);
                    CHECK(std::abs(t.compute + t.bubble + t.p2p + t.allreduce + t.shared_cores - c.iteration_time) <=
                          1e-9 * c.iteration_time);
                    CHECK(t.memory_headroom == doctest::Approx(r.memory_limit() - c.memory_bytes));
                }
            }
}

TEST_CASE("calibrate: the measured totals come back at the measured micro-batch size, linear in B") {
    const model_description base = *find_preset(model_presets, "gpt2-124m");
    const hardware hw{*find_preset(device_presets, "h100"), *find_preset(network_presets, "nvlink-ib")};
    const measured_profile p{4, {{3, 0.02, 0.05, 0, 0, 4e6}, {4, 0.03, 0.04, 0, 0, 4e6}, {5, 0.05, 0.07, 0, 0, 8e6}}};
    model_description m = base;
    hardware calibrated = hw;
    calibrate(m, calibrated, p);
    CHECK(m.layer_activation_bytes() == doctest::Approx(16e6 / (4 * 12)));
    for (int stages : {1, 2, 3, 6, 12})
        for (double b : {1.0, 4.0, 8.0}) {
            const cost_model c = make_cost_model(m, calibrated, stages, b, false, 1);
            double forward = 0, backward = 0;
            for (const stage_profile& s : c.per_stage) forward += s.forward, backward += s.backward;
            CHECK(forward == doctest::Approx(0.10 * b / 4));
            CHECK(backward == doctest::Approx(0.16 * b / 4));
        }
}

TEST_CASE("calibrate: profiles at several micro-batch sizes, interpolated in time per FLOP between them") {
    const model_description base = *find_preset(model_presets, "gpt2-124m");
    const hardware hw{*find_preset(device_presets, "h100"), *find_preset(network_presets, "nvlink-ib")};
    // Two stages of 6 layers (the last also the head); forward 0.04 s at B = 2, 0.10 s at B = 8.
    const measured_profile at8{8, {{6, 0.04, 0.08, 0, 0, 0}, {6, 0.06, 0.12, 0, 0, 0}}, 0};
    const measured_profile at2{2, {{6, 0.015, 0.03, 0, 0, 0}, {6, 0.025, 0.045, 0, 0, 0}}, 3e-9};
    model_description m = base;
    hardware h = hw;
    calibrate(m, h, std::vector<measured_profile>{at8, at2});  // any order
    REQUIRE(h.measured.size() == 2);
    CHECK(h.measured[0].micro_batch_size == 2);
    const auto forward_at = [&](double b) {
        double total = 0;
        for (const stage_profile& s : make_cost_model(m, h, 2, b, false, 1).per_stage) total += s.forward;
        return total;
    };
    CHECK(forward_at(2) == doctest::Approx(0.04));
    CHECK(forward_at(8) == doctest::Approx(0.10));
    CHECK(forward_at(4) == doctest::Approx(4 * (0.04 / 2 + (4 - 2) / 6.0 * (0.10 / 8 - 0.04 / 2))));
    CHECK(forward_at(1) == doctest::Approx(0.02));   // below the smallest: its speed
    CHECK(forward_at(32) == doctest::Approx(0.40));  // above the largest: its speed
    const cost_model c = make_cost_model(m, h, 2, 8, false, 1);
    double backward = 0;
    for (const stage_profile& s : c.per_stage) backward += s.backward;
    CHECK(backward == doctest::Approx(0.20));
    CHECK(h.device.optimizer_seconds_per_parameter == 3e-9);
    const int first = partition_layers(m, 2)[0];
    CHECK(c.stage(0).optimizer == doctest::Approx(3e-9 * (first * m.layer_parameters() + m.embedding_parameters())));
    hardware twice = hw;
    CHECK_THROWS_WITH_AS(calibrate(m, twice, std::vector<measured_profile>{at2, at8, at2}),
                         "calibrate: two profiles at micro-batch size 2 (give one profile per size)",
                         std::invalid_argument);
}

TEST_CASE("networks: a pipeline inside a node uses intra_node; equal links change nothing") {
    const model_description m = *find_preset(model_presets, "gpt2-124m");
    hardware flat{*find_preset(device_presets, "p100"), *find_preset(network_presets, "aries")};
    hardware node = flat;
    node.devices_per_node = 8;
    node.intra_node = {"nvlink", 1e-7, 1e-12};
    for (int stages : {1, 2, 4, 8, 12})
        for (int w : {1, 2, 4}) {
            CAPTURE(stages);
            CAPTURE(w);
            const cost_model a = make_cost_model(m, flat, stages, 2, false, w);
            const cost_model b = make_cost_model(m, node, stages, 2, false, w);
            CHECK(node.pipeline_in_node(stages) == (8 % stages == 0));
            CHECK(b.alpha == (8 % stages == 0 ? 1e-7 : a.alpha));
            const bool reduce_in_node = stages * w <= 8;
            const network_description& link = reduce_in_node ? node.intra_node : node.network;
            for (int s = 0; s < stages; ++s) {
                const double r = 2.0 * w, bytes = b.stage(s).gradient_bytes;
                const double want = 2 * std::log2(r) * link.alpha + 2 * (r - 1) * link.beta * bytes / r;
                CHECK(b.allreduce(s, 2) == doctest::Approx(want).epsilon(1e-12));
            }
            hardware same = node;
            same.intra_node = flat.network;
            const cost_model c = make_cost_model(m, same, stages, 2, false, w);
            CHECK(c.alpha == a.alpha);
            for (int s = 0; s < stages; ++s) CHECK(c.allreduce(s, 2) == a.allreduce(s, 2));
        }
}

namespace {

// shared_core_time by another route: on a unit-cost compute-only timeline
// every op starts and ends on a whole number, so count the computing
// workers in each unit interval.
double shared_by_units(const schedule& s, const simulation& sim, unsigned cores, int copies) {
    double total = 0;
    for (int t = 0; t < static_cast<int>(std::lround(sim.makespan)); ++t) {
        int n = 0;
        for (std::size_t i = 0; i < s.all_ops().size(); ++i)
            n += sim.start[i] <= t && t + 1 <= sim.finish[i] ? 1 : 0;
        total += std::max(1.0, static_cast<double>(n) * copies / cores);
    }
    return total;
}

}  // namespace

TEST_CASE("shared_core_time: a slice with n computing workers on fewer cores takes n x copies / cores as long") {
    bool differs = false;  // from max(makespan, work / cores), somewhere
    for (const config& c : {config{algorithm::gpipe, 3, 3}, config{algorithm::gpipe, 4, 8}, config{algorithm::one_f_one_b, 4, 6},
                            config{algorithm::chimera, 4, 4, 2}, config{algorithm::chimera, 4, 8, 4},
                            config{algorithm::chimera, 6, 6, 2}, config{algorithm::one_f_one_b, 2, 5}})
        for (unsigned cores : {1u, 2u, 3u, 4u, 8u, 16u})
            for (int copies : {1, 2}) {
                CAPTURE(c);
                CAPTURE(cores);
                CAPTURE(copies);
                const schedule s = generate(c);
                const simulation sim = simulate(s, unit_costs(1, 2));
                const double t = shared_core_time(s, sim, cores, copies);
                double work = 0;
                for (const worker_report& w : sim.workers) work += w.busy;
                CHECK(t == doctest::Approx(shared_by_units(s, sim, cores, copies)));
                CHECK(t >= sim.makespan - 1e-9);
                CHECK(t >= work * copies / cores - 1e-9);
                if (cores >= static_cast<unsigned>(s.workers() * copies)) CHECK(t == doctest::Approx(sim.makespan));
                if (cores == 1) CHECK(t == doctest::Approx(work * copies));  // never idle without comm costs
                differs = differs || t > std::max(sim.makespan, work * copies / cores) + 1e-9;
            }
    CHECK(differs);
    const schedule s = generate({algorithm::gpipe, 2, 2});
    CHECK(shared_core_time(s, simulate(s, unit_costs(1, 1)), 0) == simulate(s, unit_costs(1, 1)).makespan);  // 0: one per worker
}

TEST_CASE("cores_per_node: tune bounds every iteration time by the node's cores") {
    for (int devices : {4, 8})
        for (int cores : {1, 2, 3, 16}) {
            CAPTURE(devices);
            CAPTURE(cores);
            tune_request r = request("gpt2-124m", devices, 16, 16);
            r.machine.devices_per_node = 4;
            r.machine.intra_node = r.machine.network;
            const tune_result plain = tune(r);
            r.machine.cores_per_node = cores;
            const unsigned total = static_cast<unsigned>(cores * devices / 4);
            CHECK(r.machine.cores(devices) == total);
            const tune_result bound = tune(r);
            REQUIRE(bound.ranked.size() == plain.ranked.size());
            REQUIRE(!bound.ranked.empty());
            bool slower = false;
            for (const tune_candidate& c : bound.ranked) {
                const cost_model costs = costs_of(r, c.point);
                const schedule lowered = lower(generate(c.point.schedule), {.sync = r.sync});
                const simulation sim = simulate(lowered, costs);
                double work = 0;
                for (const worker_report& w : sim.workers) work += w.busy;
                const int copies = c.point.schedule.data_parallel;
                CHECK(c.iteration_time == doctest::Approx(shared_core_time(lowered, sim, total, copies)).epsilon(1e-12));
                CHECK(c.iteration_time >= std::max(sim.makespan, work * copies / total) * (1 - 1e-12));
                CHECK(c.throughput == doctest::Approx(r.global_batch / c.iteration_time).epsilon(1e-12));
                slower = slower || c.iteration_time > sim.makespan;
            }
            // As many cores as ranks: every rank computes at once, nothing changes.
            if (static_cast<int>(total) >= devices) CHECK(!slower);
            if (total == 1) CHECK(slower);
        }
}
