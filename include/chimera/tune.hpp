// Configuration search (docs/design/chimera-closed-form.md#choosing-a-configuration): for P devices and a global batch,
// enumerate data-parallel width W, depth D, micro-batch size B, pipelines k,
// scaling mode, recomputation and schedule; drop what does not fit in
// memory; rank the rest by simulated throughput (generate -> lower ->
// simulate with the performance model's costs).
//
//   auto result = chimera::tune({.model = ..., .machine = ..., .devices = 2048, .global_batch = 2048});
#pragma once

#include <algorithm>
#include <array>
#include <cstdio>
#include <functional>
#include <string>
#include <tuple>
#include <vector>

#include "config.hpp"
#include "detail/text.hpp"
#include "generate.hpp"
#include "lower.hpp"
#include "perf_model.hpp"
#include "simulate.hpp"

namespace chimera {

// The schedules the search tries. New generators join by adding their
// algorithm here (and, if they have knobs, a case in tune_points).
inline constexpr std::array tune_algorithms = {algorithm::gpipe, algorithm::one_f_one_b, algorithm::chimera};

struct tune_request {
    model_description model;
    hardware machine;
    int devices = 1;                 // P
    int global_batch = 1;            // samples per iteration over all replicas
    double memory_limit_bytes = 0;   // 0: the device's memory
    int max_micro_batch_size = 64;   // B is tried in powers of two up to this
    int max_pipelines = 0;           // Chimera's k is tried up to this (0: every k = 2f with f | D/2)
    std::vector<int> depths{};       // only these D (empty: every divisor of P up to the layer count)
    std::vector<algorithm> algorithms{tune_algorithms.begin(), tune_algorithms.end()};
    sync_policy sync = sync_policy::eager;

    constexpr double memory_limit() const {
        return memory_limit_bytes > 0 ? memory_limit_bytes : machine.device.memory_bytes;
    }
};

// One point of the search space.
struct tune_point {
    config schedule;             // algorithm, D, N, k, scaling, W
    int micro_batch_size = 1;    // B (halving runs 2N micro-batches of B/2)
    bool recompute = false;

    constexpr auto key() const {
        return std::tuple{static_cast<int>(schedule.schedule), schedule.stages, micro_batch_size,
                          pipeline_count(schedule), static_cast<int>(schedule.scaling_mode), recompute};
    }
    friend constexpr bool operator==(const tune_point&, const tune_point&) = default;
};

struct tune_candidate {
    tune_point point;
    bool fits = false;
    double memory_bytes = 0;     // worst worker: weights + optimizer state + peak activations
    double iteration_time = 0;   // simulated makespan of one iteration, on shared cores when the cluster
                                 // gives cores_per_node (shared_core_time; 0 when it does not fit)
    double throughput = 0;       // samples per second
    double bubble_ratio = 0;
};

// A point the search skipped, and the first rule it broke: "layers: ...",
// "divisibility: ...", the schedule's own rule ("S1: ...": k, N and D
// constraints), "halving: ..." or "memory: ...".
struct tune_rejection {
    tune_point point;
    std::string rule;
};

namespace detail {

// The first rule (D, B) breaks for every schedule, or "" (D divides P).
inline std::string tune_shape_rule(const tune_request& r, int d, int b) {
    const long long w = r.devices / d;
    if (d > r.model.layers)
        return detail::cat("layers: D = ", d, " stages need at least one of the model's ", r.model.layers, " layers each");
    if (r.global_batch % (b * w) != 0)
        return detail::cat("divisibility: B x W = ", b * w, " does not divide the global batch ", r.global_batch);
    return "";
}

}  // namespace detail

// Every valid point, in a fixed order; with `rejected`, every skipped one
// and its rule (D runs over the divisors of P; the filters depths,
// algorithms and max_pipelines narrow the space without rejecting).
inline std::vector<tune_point> tune_points(const tune_request& r, std::vector<tune_rejection>* rejected = nullptr) {
    std::vector<tune_point> points;
    const auto reject = [&](const tune_point& p, std::string rule) {
        if (rejected) rejected->push_back({p, std::move(rule)});
    };
    const auto consider = [&](const config& c, int b, bool recompute) {
        if (auto error = validate(c)) reject({c, b, recompute}, detail::cat(error->rule, ": ", error->message));
        else if (c.scaling_mode == scaling::halving && b % 2 != 0)
            reject({c, b, recompute}, detail::cat("halving: B = ", b, " must be even (2N micro-batches of B/2)"));
        else points.push_back({c, b, recompute});
    };
    for (int d = 1; d <= r.devices; ++d) {
        if (!r.depths.empty() && std::find(r.depths.begin(), r.depths.end(), d) == r.depths.end()) continue;
        if (r.devices % d != 0 || (d > r.model.layers && !rejected)) continue;
        const int w = r.devices / d;
        // b doubles in long long: `int b *= 2` would overflow past 2^30.
        for (long long b_wide = 1; b_wide <= r.max_micro_batch_size; b_wide *= 2) {
            const int b = static_cast<int>(b_wide);
            const long long bw = static_cast<long long>(b) * w;
            const int n = r.global_batch % bw == 0 ? static_cast<int>(r.global_batch / bw) : 0;
            if (std::string rule = detail::tune_shape_rule(r, d, b); !rule.empty()) {
                reject({config{r.algorithms.empty() ? algorithm::gpipe : r.algorithms[0], d, n, 0, scaling::direct, w}, b},
                       std::move(rule));
                continue;
            }
            for (algorithm a : r.algorithms)
                for (bool recompute : {false, true}) {
                    if (a != algorithm::chimera) {
                        consider(config{a, d, n, 0, scaling::direct, w}, b, recompute);
                        continue;
                    }
                    const int k_limit = r.max_pipelines > 0 ? r.max_pipelines : d;
                    for (int f = 1; f <= d / 2 && 2 * f <= k_limit; ++f)
                        for (scaling mode : {scaling::direct, scaling::doubling, scaling::halving})
                            if (mode == scaling::direct || f == 1)  // doubling and halving are defined for k = 2
                                consider(config{a, d, n, 2 * f, mode, w}, b, recompute);
                }
        }
    }
    return points;
}

// The performance model's costs of one point.
inline cost_model costs_of(const tune_request& r, const tune_point& point) {
    const config& c = point.schedule;
    const double size = c.scaling_mode == scaling::halving ? point.micro_batch_size / 2.0 : point.micro_batch_size;
    return make_cost_model(r.model, r.machine, c.stages, size, point.recompute, c.data_parallel);
}

// Memory first (cheap); only what fits is lowered and simulated.
inline tune_candidate evaluate(const tune_request& r, const tune_point& point) {
    tune_candidate out{point};
    const config& c = point.schedule;
    const cost_model costs = costs_of(r, point);
    const schedule s = generate(c);
    for (int w = 0; w < s.workers(); ++w) out.memory_bytes = std::max(out.memory_bytes, memory_of(s, w, costs).total());
    out.fits = out.memory_bytes <= r.memory_limit();
    if (!out.fits) return out;
    const schedule lowered = lower(s, {.sync = r.sync});
    const simulation sim = simulate(lowered, costs);
    out.iteration_time = shared_core_time(lowered, sim, r.machine.cores(r.devices), c.data_parallel);
    out.throughput = out.iteration_time > 0 ? r.global_batch / out.iteration_time : 0;
    out.bubble_ratio = sim.bubble_ratio();
    return out;
}

// Best first: throughput, then less memory, then the point's key.
constexpr bool better(const tune_candidate& a, const tune_candidate& b) {
    if (a.throughput != b.throughput) return a.throughput > b.throughput;
    if (a.memory_bytes != b.memory_bytes) return a.memory_bytes < b.memory_bytes;
    return a.point.key() < b.point.key();
}

struct tune_result {
    std::vector<tune_candidate> ranked;  // the points that fit, best first
    std::size_t evaluated = 0;           // points tried
    std::vector<tune_rejection> rejected;  // in search order: shape and schedule rules, then memory
};

inline std::string memory_rule(const tune_candidate& c, double limit) {
    char text[96];
    std::snprintf(text, sizeof text, "memory: %.2f GiB > limit %.2f GiB", c.memory_bytes / double(1LL << 30),
                  limit / double(1LL << 30));
    return text;
}

// `progress(done, total)` is called after every point (for a progress bar).
inline tune_result tune(const tune_request& r, const std::function<void(std::size_t, std::size_t)>& progress = {}) {
    tune_result result;
    const std::vector<tune_point> points = tune_points(r, &result.rejected);
    for (const tune_point& p : points) {
        tune_candidate c = evaluate(r, p);
        if (c.fits) result.ranked.push_back(c);
        else result.rejected.push_back({p, memory_rule(c, r.memory_limit())});
        ++result.evaluated;
        if (progress) progress(result.evaluated, points.size());
    }
    std::sort(result.ranked.begin(), result.ranked.end(), better);
    return result;
}

// Why a configuration takes the time it takes: the iteration time split into
// terms that add up to it (docs/planning.md#why-it-wins).
struct iteration_terms {
    double compute = 0;      // compute time of the busiest worker (the critical path's work), optimizer included
    double bubble = 0;       // waiting on dependencies, with free communication
    double p2p = 0;          // what p2p messages add to the last compute op's end
    double allreduce = 0;    // gradient all-reduce and optimizer steps after the last compute op (not overlapped)
    double shared_cores = 0;  // waiting for a core: more ranks than cores (shared_core_time), else 0
    double memory_headroom = 0;  // limit - memory of the worst worker (bytes)
};

inline iteration_terms explain(const tune_request& r, const tune_candidate& candidate) {
    const cost_model costs = costs_of(r, candidate.point);
    cost_model free_network = costs;
    free_network.alpha = free_network.beta = free_network.allreduce_alpha = free_network.allreduce_beta = 0;
    const schedule lowered = lower(generate(candidate.point.schedule), {.sync = r.sync});
    const simulation sim = simulate(lowered, costs), ideal = simulate(lowered, free_network);
    double last_compute = 0;
    for (std::size_t i = 0; i < lowered.all_ops().size(); ++i)
        if (is_compute(lowered.all_ops()[i].kind)) last_compute = std::max(last_compute, sim.finish[i]);
    iteration_terms t;
    for (const worker_report& w : ideal.workers) t.compute = std::max(t.compute, w.busy);
    t.bubble = ideal.makespan - t.compute;
    t.p2p = std::max(0.0, last_compute - ideal.makespan);
    t.allreduce = sim.makespan - std::max(last_compute, ideal.makespan);
    t.shared_cores = candidate.iteration_time - sim.makespan;
    t.memory_headroom = r.memory_limit() - candidate.memory_bytes;
    return t;
}

}  // namespace chimera
