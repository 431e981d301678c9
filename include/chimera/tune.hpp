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
#include <functional>
#include <tuple>
#include <vector>

#include "config.hpp"
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
    double iteration_time = 0;   // simulated makespan of one iteration (0 when it does not fit)
    double throughput = 0;       // samples per second
    double bubble_ratio = 0;
};

// Every valid point, in a fixed order.
inline std::vector<tune_point> tune_points(const tune_request& r) {
    std::vector<tune_point> points;
    for (int d = 1; d <= std::min(r.devices, r.model.layers); ++d) {
        if (r.devices % d != 0) continue;
        if (!r.depths.empty() && std::find(r.depths.begin(), r.depths.end(), d) == r.depths.end()) continue;
        const int w = r.devices / d;
        for (int b = 1; b <= r.max_micro_batch_size; b *= 2) {
            if (r.global_batch % (static_cast<long long>(b) * w) != 0) continue;
            const int n = r.global_batch / (b * w);
            for (algorithm a : r.algorithms)
                for (bool recompute : {false, true}) {
                    if (a != algorithm::chimera) {
                        points.push_back({config{a, d, n, 0, scaling::direct, w}, b, recompute});
                        continue;
                    }
                    const int k_limit = r.max_pipelines > 0 ? r.max_pipelines : d;
                    for (int f = 1; f <= d / 2 && 2 * f <= k_limit; ++f)
                        for (scaling mode : {scaling::direct, scaling::doubling, scaling::halving}) {
                            const config c{a, d, n, 2 * f, mode, w};
                            if (validate(c) || (mode == scaling::halving && b % 2 != 0)) continue;
                            points.push_back({c, b, recompute});
                        }
                }
        }
    }
    return points;
}

// Memory first (cheap); only what fits is lowered and simulated.
inline tune_candidate evaluate(const tune_request& r, const tune_point& point) {
    tune_candidate out{point};
    const config& c = point.schedule;
    const double size = c.scaling_mode == scaling::halving ? point.micro_batch_size / 2.0 : point.micro_batch_size;
    const cost_model costs = make_cost_model(r.model, r.machine, c.stages, size, point.recompute, c.data_parallel);
    const schedule s = generate(c);
    for (int w = 0; w < s.workers(); ++w) out.memory_bytes = std::max(out.memory_bytes, memory_of(s, w, costs).total());
    out.fits = out.memory_bytes <= r.memory_limit();
    if (!out.fits) return out;
    const simulation sim = simulate(lower(s, {.sync = r.sync}), costs);
    out.iteration_time = sim.makespan;
    out.throughput = sim.makespan > 0 ? r.global_batch / sim.makespan : 0;
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
};

// `progress(done, total)` is called after every point (for a progress bar).
inline tune_result tune(const tune_request& r, const std::function<void(std::size_t, std::size_t)>& progress = {}) {
    const std::vector<tune_point> points = tune_points(r);
    tune_result result;
    for (const tune_point& p : points) {
        tune_candidate c = evaluate(r, p);
        if (c.fits) result.ranked.push_back(c);
        ++result.evaluated;
        if (progress) progress(result.evaluated, points.size());
    }
    std::sort(result.ranked.begin(), result.ranked.end(), better);
    return result;
}

}  // namespace chimera
