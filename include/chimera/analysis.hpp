// Timing of a compute schedule: as-soon-as-possible (ASAP) execution with
// per-kind costs, and the numbers the spec's formulas are about (span, busy
// and idle per worker, bubble ratio, peak in-flight activations).
//
// ASAP (chimera.md §5): a worker runs its list strictly in order; an op
// starts at max(end of the worker's previous op, end of its dependencies).
// With every cost 1 the start times are the unit-time slots.
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

#include "dependencies.hpp"
#include "op.hpp"
#include "schedule.hpp"

namespace chimera {

struct op_costs {
    double forward = 1, backward = 1, input_backward = 1, weight_backward = 1;

    constexpr double of(op_kind kind) const {
        switch (kind) {
            case op_kind::F: return forward;
            case op_kind::B: return backward;
            case op_kind::I: return input_backward;
            case op_kind::W: return weight_backward;
            default: return 0;  // communication is modelled by the simulator
        }
    }
};

struct worker_timing {
    double busy = 0;
    double idle = 0;  // makespan - busy: leading, internal and trailing gaps
    double first_start = 0;
    double last_finish = 0;
};

struct timing {
    bool complete = false;       // false: the lists deadlock (or miss a dependency)
    double makespan = 0;
    std::vector<double> start;   // per op, indexed like all_ops(); -1 if never run
    std::vector<double> finish;
    std::vector<worker_timing> workers;
    std::vector<std::int32_t> stuck_at;  // per worker: list position it could not pass, -1 if done

    constexpr double bubble_ratio() const {
        double busy = 0, idle = 0;
        for (const auto& w : workers) busy += w.busy, idle += w.idle;
        return busy + idle > 0 ? idle / (busy + idle) : 0;
    }
};

// ASAP execution of the compute ops (communication ops take no time here).
// Linear in the number of ops: each worker advances until it needs an op
// that has not run, and is woken when that op runs.
template <schedule_like S>
constexpr timing asap(const S& s, const op_costs& costs = {}, const compute_index* prebuilt = nullptr) {
    compute_index local;
    if (prebuilt == nullptr) local = make_compute_index(s);
    const compute_index& index = prebuilt ? *prebuilt : local;
    const int workers = s.workers();
    const std::size_t total = s.op_count();
    timing t;
    t.start.assign(total, -1);
    t.finish.assign(total, -1);
    t.workers.assign(static_cast<std::size_t>(workers), {});
    t.stuck_at.assign(static_cast<std::size_t>(workers), -1);

    std::vector<std::size_t> position(static_cast<std::size_t>(workers), 0);
    std::vector<std::size_t> base(static_cast<std::size_t>(workers), 0);
    std::vector<double> clock(static_cast<std::size_t>(workers), 0);
    std::vector<std::uint8_t> started(static_cast<std::size_t>(workers), 0);  // not vector<bool>: clang constexpr
    // waiter lists: first waiting worker per op, next waiting worker per worker
    std::vector<std::int32_t> first_waiter(total, -1), next_waiter(static_cast<std::size_t>(workers), -1);
    std::vector<std::int32_t> runnable;
    for (int w = 0; w < workers; ++w) {
        base[static_cast<std::size_t>(w)] = s.first_op_index(w);
        runnable.push_back(w);
    }
    while (!runnable.empty()) {
        const int w = runnable.back();
        runnable.pop_back();
        const auto list = s.ops(w);
        auto& pos = position[static_cast<std::size_t>(w)];
        double& now = clock[static_cast<std::size_t>(w)];
        while (pos < list.size()) {
            const op& o = list[pos];
            const std::size_t self = base[static_cast<std::size_t>(w)] + pos;
            double ready = now;
            if (is_compute(o.kind) && in_range(s, o)) {
                std::int32_t deps[2];
                const int n = index.dependencies(o, deps);
                bool blocked = false;
                for (int i = 0; i < n && !blocked; ++i) {
                    if (deps[i] == no_op) {
                        blocked = true;  // never runs: reported as stuck
                        t.stuck_at[static_cast<std::size_t>(w)] = static_cast<std::int32_t>(pos);
                    } else if (t.finish[static_cast<std::size_t>(deps[i])] < 0) {
                        blocked = true;
                        next_waiter[static_cast<std::size_t>(w)] = first_waiter[static_cast<std::size_t>(deps[i])];
                        first_waiter[static_cast<std::size_t>(deps[i])] = w;
                    } else {
                        ready = std::max(ready, t.finish[static_cast<std::size_t>(deps[i])]);
                    }
                }
                if (blocked) break;
            }
            const double duration = costs.of(o.kind);
            t.start[self] = ready;
            t.finish[self] = ready + duration;
            auto& wt = t.workers[static_cast<std::size_t>(w)];
            if (!started[static_cast<std::size_t>(w)] && is_compute(o.kind)) {
                started[static_cast<std::size_t>(w)] = 1;
                wt.first_start = ready;
            }
            wt.busy += duration;
            now = ready + duration;
            ++pos;
            for (std::int32_t v = first_waiter[self]; v != -1;) {
                const std::int32_t after = next_waiter[static_cast<std::size_t>(v)];
                runnable.push_back(v);
                v = after;
            }
            first_waiter[self] = -1;
        }
    }
    t.complete = true;
    for (int w = 0; w < workers; ++w) {
        auto& wt = t.workers[static_cast<std::size_t>(w)];
        wt.last_finish = clock[static_cast<std::size_t>(w)];
        t.makespan = std::max(t.makespan, wt.last_finish);
        if (position[static_cast<std::size_t>(w)] < s.ops(w).size()) {
            t.complete = false;
            t.stuck_at[static_cast<std::size_t>(w)] = static_cast<std::int32_t>(position[static_cast<std::size_t>(w)]);
        } else {
            t.stuck_at[static_cast<std::size_t>(w)] = -1;
        }
    }
    for (auto& wt : t.workers) wt.idle = t.makespan - wt.busy;
    return t;
}

}  // namespace chimera
