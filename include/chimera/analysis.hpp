// Timing of a compute schedule: as-soon-as-possible (ASAP) execution with
// per-kind costs, and the numbers the spec's formulas are about (span, busy
// and idle per worker, bubble ratio, peak in-flight activations).
//
// ASAP (docs/design/chimera-closed-form.md#the-closed-form): a worker runs its list strictly in order; an op
// starts at max(end of the worker's previous op, end of its dependencies).
// With every cost 1 the start times are the unit-time slots.
#pragma once

#include <algorithm>
#include <cstdint>
#include <utility>
#include <vector>

#include "dependencies.hpp"
#include "detail/wait_lists.hpp"
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

namespace detail {

// The state of one ASAP replay: a position and a clock per worker, and the
// workers waiting for an op that has not run yet.
template <schedule_like S>
class asap_replay {
public:
    constexpr asap_replay(const S& s, const op_costs& costs, const compute_index& index)
        : s_(s), costs_(costs), index_(index), position_(static_cast<std::size_t>(s.workers()), 0),
          clock_(static_cast<std::size_t>(s.workers()), 0), started_(static_cast<std::size_t>(s.workers()), 0),
          waiting_(s.op_count(), s.workers()) {
        t_.start.assign(s.op_count(), -1);
        t_.finish.assign(s.op_count(), -1);
        t_.workers.assign(static_cast<std::size_t>(s.workers()), {});
        t_.stuck_at.assign(static_cast<std::size_t>(s.workers()), -1);
    }

    // Runs every worker as far as it gets, then sums up per worker.
    constexpr timing run() && {
        for (int w = 0; waiting_.pop(w);) advance(w);
        sum_up();
        return std::move(t_);
    }

private:
    // Raises `ready` to the end of o's dependencies; false when one has not
    // run yet (w waits for it) or never will (w stays stuck).
    constexpr bool dependencies_done(int w, const op& o, double& ready) {
        std::int32_t deps[2];
        const int n = index_.dependencies(o, deps);
        for (int i = 0; i < n; ++i) {
            if (deps[i] == no_op) return false;
            const double end = t_.finish[static_cast<std::size_t>(deps[i])];
            if (end < 0) {
                waiting_.wait(w, deps[i]);
                return false;
            }
            ready = std::max(ready, end);
        }
        return true;
    }

    // Runs worker w's ops in order until one must wait.
    constexpr void advance(int w) {
        const auto list = s_.ops(w);
        const std::size_t base = s_.first_op_index(w);
        std::size_t& pos = position_[static_cast<std::size_t>(w)];
        double& now = clock_[static_cast<std::size_t>(w)];
        auto& wt = t_.workers[static_cast<std::size_t>(w)];
        for (; pos < list.size(); ++pos) {
            const op& o = list[pos];
            double ready = now;
            if (is_compute(o.kind) && in_range(s_, o) && !dependencies_done(w, o, ready)) return;
            const double duration = costs_.of(o.kind);
            t_.start[base + pos] = ready;
            t_.finish[base + pos] = now = ready + duration;
            if (!started_[static_cast<std::size_t>(w)] && is_compute(o.kind)) {
                started_[static_cast<std::size_t>(w)] = 1;
                wt.first_start = ready;
            }
            wt.busy += duration;
            waiting_.wake(static_cast<std::int32_t>(base + pos));
        }
    }

    // Makespan, completeness, where each worker got stuck, and idle times.
    constexpr void sum_up() {
        t_.complete = true;
        for (int w = 0; w < s_.workers(); ++w) {
            auto& wt = t_.workers[static_cast<std::size_t>(w)];
            wt.last_finish = clock_[static_cast<std::size_t>(w)];
            t_.makespan = std::max(t_.makespan, wt.last_finish);
            const std::size_t pos = position_[static_cast<std::size_t>(w)];
            const bool stuck = pos < s_.ops(w).size();
            t_.complete = t_.complete && !stuck;
            t_.stuck_at[static_cast<std::size_t>(w)] = stuck ? static_cast<std::int32_t>(pos) : -1;
        }
        for (auto& wt : t_.workers) wt.idle = t_.makespan - wt.busy;
    }

    const S& s_;
    const op_costs& costs_;
    const compute_index& index_;
    std::vector<std::size_t> position_;
    std::vector<double> clock_;
    std::vector<std::uint8_t> started_;  // not vector<bool>: clang constexpr
    wait_lists waiting_;
    timing t_;
};

}  // namespace detail

// ASAP execution of the compute ops (communication ops take no time here).
// Linear in the number of ops: each worker advances until it needs an op
// that has not run, and is woken when that op runs.
template <schedule_like S>
constexpr timing asap(const S& s, const op_costs& costs = {}, const compute_index* prebuilt = nullptr) {
    if (prebuilt != nullptr) return detail::asap_replay<S>(s, costs, *prebuilt).run();
    const compute_index index = make_compute_index(s);
    return detail::asap_replay<S>(s, costs, index).run();
}

}  // namespace chimera
