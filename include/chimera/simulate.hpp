// The cost-model simulator: times every op of a schedule (compute-only or
// lowered) and reports makespan, per-worker busy/idle, bubble ratio, the
// critical-path counts C_f/C_b of docs/design/chimera-closed-form.md#iteration-time and memory per worker.
//
// Model (docs/performance-model.md):
// * every worker has a compute stream and a communication stream, each
//   running its ops in list order;
// * a compute op starts when the previous compute op of its worker has
//   finished and its inputs are there: for a lowered schedule the end of the
//   RECV that brings them, for a compute-only one the end of the producer on
//   another worker plus one p2p message (alpha + bytes * beta);
// * a group (consecutive comm ops between two compute ops) is ready when
//   the worker's previous group has ended and the data of its SENDs exists
//   (the host runs ahead and posts receives early, as with NCCL on a side
//   stream); a p2p transfer starts when both sides' groups are ready and
//   lasts alpha + bytes * beta; a group ends with its last transfer;
// * all-reduces (REDUCE_GRAD) run on a third stream, one after another: an
//   all-reduce starts when every replica's group is ready and the worker's
//   previous all-reduce has ended, and lasts 2 log2(r) alpha +
//   2 (r-1) beta L / r over r = replicas x data_parallel members, L the
//   stage's gradient bytes (so an eager all-reduce overlaps the compute
//   and p2p traffic that follow it);
// * recomputation re-runs the forward inside every backward (B and I);
// * a worker ends with the optimizer steps of the replicas it holds;
// * a p2p op must name the worker of the op it matches (else S0).
// With unit costs and no communication cost the makespan is the unit-time
// span of every formula in the spec (tests/core/test_simulate.cpp).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <span>
#include <utility>
#include <vector>

#include "analysis.hpp"
#include "detail/text.hpp"
#include "detail/wait_lists.hpp"
#include "error.hpp"
#include "op.hpp"
#include "rendezvous.hpp"
#include "schedule.hpp"

namespace chimera {

// What one stage costs on one micro-batch, and what it holds.
struct stage_profile {
    double forward = 1, backward = 1, input_backward = 1, weight_backward = 1;  // time
    double message_bytes = 0;     // activation sent to the next stage (the gradient coming back is as large)
    double parameter_bytes = 0;   // weights (and their gradients) of one replica, as held in memory
    double gradient_bytes = 0;    // what its all-reduce moves (L)
    double optimizer_bytes = 0;   // optimizer state of one replica
    double activation_bytes = 0;  // kept per micro-batch from F until B (or W when split)
    double recompute_bytes = 0;   // kept per micro-batch instead, with recomputation (the stage input)
    double optimizer = 0;         // time of one replica's optimizer step, after the worker's last op

    friend constexpr bool operator==(const stage_profile&, const stage_profile&) = default;
};

struct cost_model {
    stage_profile uniform;               // every stage, unless per_stage is given
    std::vector<stage_profile> per_stage;  // empty, or one entry per stage
    bool recompute = false;
    double alpha = 0, beta = 0;          // time per message, time per byte
    int data_parallel = 1;               // W: all-reduces span replicas x W members
    double allreduce_alpha = -1, allreduce_beta = -1;  // the all-reduce's network; < 0: alpha and beta

    constexpr const stage_profile& stage(int s) const {
        return per_stage.empty() ? uniform : per_stage[static_cast<std::size_t>(s)];
    }
    constexpr double duration(op_kind kind, int s) const {
        const stage_profile& p = stage(s);
        const double redo = recompute ? p.forward : 0;
        switch (kind) {
            case op_kind::F: return p.forward;
            case op_kind::B: return p.backward + redo;
            case op_kind::I: return p.input_backward + redo;
            case op_kind::W: return p.weight_backward;
            default: return 0;
        }
    }
    // Message crossing the boundary between stages s and s + 1.
    constexpr double p2p(int s) const { return alpha + stage(s).message_bytes * beta; }
    constexpr double allreduce(int s, int replicas) const {
        const double r = static_cast<double>(replicas) * data_parallel;
        if (r <= 1) return 0;
        const double a = allreduce_alpha >= 0 ? allreduce_alpha : alpha, b = allreduce_beta >= 0 ? allreduce_beta : beta;
        return 2 * std::log2(r) * a + 2 * (r - 1) * b * stage(s).gradient_bytes / r;
    }
};

// Unit costs (docs/design/chimera-closed-form.md's unit-time model) with t_B = backward.
constexpr cost_model unit_costs(double forward = 1, double backward = 1) {
    cost_model m;
    m.uniform.forward = forward;
    m.uniform.backward = backward;
    return m;
}

struct worker_report {
    double busy = 0;  // compute time, its optimizer steps included
    double optimizer = 0;  // optimizer steps of its replicas, from `end` - optimizer to `end`
    double end = 0;   // when its last op (then its optimizer steps) ends
    double idle = 0;  // makespan - busy
    double communication = 0;  // time its comm stream is busy
    int peak_activations = 0;  // micro-batches held at once (docs/design/schedule-rules.md#memory-accounting)
    double weight_bytes = 0, optimizer_bytes = 0, peak_activation_bytes = 0;

    constexpr double memory_bytes() const { return weight_bytes + optimizer_bytes + peak_activation_bytes; }
};

struct simulation {
    bool complete = false;  // false: some op never ran (deadlock or a missing partner)
    double makespan = 0;
    std::vector<double> start, finish;  // per op, indexed like all_ops(); -1 if it never ran
    std::vector<worker_report> workers;

    constexpr double bubble_ratio() const {
        double busy = 0, total = 0;
        for (const auto& w : workers) busy += w.busy, total += w.busy + w.idle;
        return total > 0 ? 1 - busy / total : 0;
    }
};

// Peak bytes of kept activations on a worker: + at F, - at B (W when
// split); with recomputation the stage input is kept and the full set
// exists only while that micro-batch's backward runs.
template <schedule_like S>
constexpr double peak_activation_bytes(const S& s, int worker, const cost_model& costs) {
    double live = 0, peak = 0;
    for (const op& o : s.ops(worker)) {
        if (!is_compute(o.kind)) continue;
        const stage_profile& p = costs.stage(o.stage);
        const double kept = costs.recompute ? p.recompute_bytes : p.activation_bytes;
        if (o.kind == op_kind::F) peak = std::max(peak, live += kept);
        if (o.kind == op_kind::B || o.kind == op_kind::I)
            peak = std::max(peak, live + (costs.recompute ? p.activation_bytes : 0));
        if (o.kind == op_kind::B || o.kind == op_kind::W) live -= kept;
    }
    return peak;
}

// Memory of a worker: weights and optimizer state of every replica it holds
// (docs/design/chimera-closed-form.md#per-worker-costs-of-pipeline-schemes, #chimera-with-2f-pipelines: 2f
// M_theta for Chimera) and peak activations.
struct worker_memory {
    double weight_bytes = 0, optimizer_bytes = 0, peak_activation_bytes = 0;
    constexpr double total() const { return weight_bytes + optimizer_bytes + peak_activation_bytes; }
};

template <schedule_like S>
constexpr worker_memory memory_of(const S& s, int worker, const cost_model& costs) {
    worker_memory m;
    m.peak_activation_bytes = peak_activation_bytes(s, worker, costs);
    for (int p = 0; p < s.pipelines(); ++p)
        for (int st = 0; st < s.stages(); ++st)
            if (s.placement(p, st) == worker) {
                m.weight_bytes += costs.stage(st).parameter_bytes;
                m.optimizer_bytes += costs.stage(st).optimizer_bytes;
            }
    return m;
}

namespace detail {

// Throws S0 when the cost model or an op does not fit the schedule.
template <schedule_like S>
constexpr void require_simulable(const S& s, const cost_model& costs) {
    if (!costs.per_stage.empty() && costs.per_stage.size() != static_cast<std::size_t>(s.stages()))
        throw schedule_error("S0", cat("simulate: the cost model describes ", costs.per_stage.size(),
                                       " stages, the schedule has ", s.stages()));
    for (const op& o : s.all_ops())
        if (o.stage < 0 || o.stage >= s.stages() || (o.kind != op_kind::REDUCE_GRAD && !in_range(s, o)) ||
            o.pipeline < 0 || o.pipeline >= s.pipelines() ||
            (is_p2p(o.kind) && (o.peer < 0 || o.peer >= s.workers())))  // else timed as if it went elsewhere
            throw schedule_error("S0", cat("simulate: ", describe(o), " is out of range; run check first"));
}

// One pass over the lists, like analysis.hpp's asap: a worker advances
// until it needs a time that is not known yet (a partner's group not yet
// reached, or, for compute-only schedules, a producer on another worker)
// and is woken when it is. Linear in ops and group members; no graph is
// stored. A worker that never gets through its list means a deadlock.
template <schedule_like S>
class simulator {
public:
    constexpr simulator(const S& s, const cost_model& costs)
        : s_(s), costs_(costs), all_(s.all_ops()), index_(make_compute_index(s)), matching_(make_comm_matching(s)),
          lowered_(std::any_of(all_.begin(), all_.end(), [](const op& o) { return is_comm(o.kind); })),
          replicas_(static_cast<std::size_t>(s.stages()), s.pipelines()), ready_(all_.size(), -1),
          at_(static_cast<std::size_t>(s.workers())), waiting_(all_.size(), s.workers()) {
        r_.start.assign(all_.size(), -1);
        r_.finish.assign(all_.size(), -1);
        r_.workers.assign(static_cast<std::size_t>(s.workers()), {});
        for (int w = 0; w < s.workers(); ++w) {
            cursor& c = at_[static_cast<std::size_t>(w)];
            c.position = static_cast<std::int32_t>(s.first_op_index(w));
            c.end = c.position + static_cast<std::int32_t>(s.ops(w).size());
        }
        require_peers();
    }

    // Runs every worker as far as it gets, then sums up times and memory.
    constexpr simulation run() && {
        for (int w = 0; waiting_.pop(w);) advance(w);
        sum_times();
        fill_memory();
        return std::move(r_);
    }

private:
    struct cursor {
        std::int32_t position = 0, end = 0, member = -1;  // member: next group member to resolve
        double compute_free = 0, group_end = 0, collective_end = 0, group_finish = 0;
    };

    static constexpr std::size_t at(std::int32_t i) { return static_cast<std::size_t>(i); }

    // A p2p op is timed against the op its channel matches: that op must be
    // on the worker it names (else S0: a valid but wrong peer would be timed
    // as if the message went there).
    constexpr void require_peers() const {
        for (std::size_t i = 0; i < all_.size(); ++i) {
            const std::int32_t q = matching_.partner[i];
            if (!is_p2p(all_[i].kind) || q == no_op || all_[i].peer == matching_.owner[at(q)]) continue;
            throw schedule_error("S0", cat("simulate: ", describe(all_[i]), " on worker ", matching_.owner[i],
                                           " names peer ", all_[i].peer, ", but its partner ", describe(all_[at(q)]),
                                           " is on worker ", matching_.owner[at(q)], "; run check first"));
        }
    }

    constexpr double duration(const op& o) const {
        if (is_p2p(o.kind))
            return costs_.p2p(o.kind == op_kind::RECV_F || o.kind == op_kind::SEND_B ? o.stage - 1 : o.stage);
        if (o.kind == op_kind::REDUCE_GRAD) return costs_.allreduce(o.stage, replicas_[at(o.stage)]);
        return costs_.duration(o.kind, o.stage);
    }

    // Runs worker w's ops until one needs a time that is not known yet.
    constexpr void advance(int w) {
        cursor& c = at_[static_cast<std::size_t>(w)];
        while (c.position < c.end)
            if (!(is_compute(all_[at(c.position)].kind) ? run_compute(w, c) : run_group(w, c))) return;
    }

    // Raises `begin` to when the inputs of compute op `o` on worker w are
    // there; false when one is not known yet (w waits for it, or forever
    // when it is never produced).
    constexpr bool inputs_ready(int w, const op& o, double& begin) {
        std::int32_t deps[2];
        const int count = index_.dependencies(o, deps);
        for (int k = 0; k < count; ++k) {
            const std::int32_t dep = deps[k];
            if (dep == no_op) return false;
            if (matching_.owner[at(dep)] == w) {
                begin = std::max(begin, r_.finish[at(dep)]);
            } else if (lowered_) {  // through the RECV earlier in this list
                const std::int32_t recv = matching_.recv_at[matching_.channel(
                    s_.stages(), o.kind != op_kind::F, o.micro_batch, o.stage)];
                if (recv == no_op || r_.finish[at(recv)] < 0) return false;
                begin = std::max(begin, r_.finish[at(recv)]);
            } else if (r_.finish[at(dep)] < 0) {
                waiting_.wait(w, dep);
                return false;
            } else {  // compute-only: one p2p message from the producer
                begin = std::max(begin, r_.finish[at(dep)] + costs_.p2p(o.kind == op_kind::F ? o.stage - 1 : o.stage));
            }
        }
        return true;
    }

    // Times the compute op at the cursor; false when it must wait.
    constexpr bool run_compute(int w, cursor& c) {
        const std::size_t i = at(c.position);
        const op& o = all_[i];
        double begin = c.compute_free;
        if (in_range(s_, o) && !inputs_ready(w, o, begin)) return false;
        r_.start[i] = begin;
        r_.finish[i] = c.compute_free = begin + duration(o);
        ++c.position;
        waiting_.wake(static_cast<std::int32_t>(i));
        return true;
    }

    // Posts the group at the cursor: ready once the worker's previous group
    // has ended and the data of its SENDs exists (earlier in this list).
    constexpr void post_group(cursor& c, std::int32_t group_end) {
        double posted = c.group_end;
        for (std::int32_t k = c.position; k < group_end; ++k) {
            const op& m = all_[at(k)];
            if (!is_send(m.kind) || !in_range(s_, m)) continue;
            const auto& table = m.kind == op_kind::SEND_F ? index_.forward : index_.input_backward;
            if (const std::int32_t producer = table[index_.key(m.micro_batch, m.stage)]; producer != no_op)
                posted = std::max(posted, r_.finish[at(producer)]);
        }
        for (std::int32_t k = c.position; k < group_end; ++k) ready_[at(k)] = posted;
        c.member = c.position;
        c.group_finish = posted;
        for (std::int32_t k = c.position; k < group_end; ++k) waiting_.wake(k);
    }

    // Times an all-reduce: its own stream, one after another, once the
    // gradients are complete and every replica's group is posted.
    constexpr bool resolve_reduce(int w, cursor& c, std::size_t k) {
        const op& m = all_[k];
        double begin = std::max({ready_[k], c.collective_end, c.compute_free});
        for (std::int32_t q : matching_.collective[at(m.stage)]) {
            if (ready_[at(q)] < 0) {
                waiting_.wait(w, q);
                return false;
            }
            begin = std::max(begin, ready_[at(q)]);
        }
        r_.start[k] = begin;
        r_.finish[k] = c.collective_end = begin + duration(m);
        return true;
    }

    // Times group member k: a p2p transfer starts when both sides' groups
    // are posted. False when the partner's group is not posted yet.
    constexpr bool resolve_member(int w, cursor& c, std::size_t k) {
        if (all_[k].kind == op_kind::REDUCE_GRAD) return resolve_reduce(w, c, k);
        const std::int32_t q = matching_.partner[k];
        if (q == no_op || ready_[at(q)] < 0) {
            if (q != no_op) waiting_.wait(w, q);
            return false;
        }
        r_.start[k] = std::max(ready_[k], ready_[at(q)]);
        r_.finish[k] = r_.start[k] + duration(all_[k]);
        c.group_finish = std::max(c.group_finish, r_.finish[k]);
        return true;
    }

    // Posts the group at the cursor once, then resolves its members; false
    // when one must wait (the cursor keeps the member to resume at).
    constexpr bool run_group(int w, cursor& c) {
        const std::int32_t group_end = matching_.group_end[at(c.position)];
        if (c.member < c.position) post_group(c, group_end);
        for (; c.member < group_end; ++c.member)
            if (!resolve_member(w, c, at(c.member))) return false;
        c.group_end = c.group_finish;
        c.position = group_end;
        return true;
    }

    // Makespan, completeness, and busy/communication time per worker; each
    // worker's optimizer steps follow its last op.
    constexpr void sum_times() {
        r_.complete = true;
        for (std::size_t i = 0; i < all_.size(); ++i) {
            if (r_.start[i] < 0) {
                r_.complete = false;
                continue;
            }
            auto& wr = r_.workers[static_cast<std::size_t>(matching_.owner[i])];
            wr.end = std::max(wr.end, r_.finish[i]);
            (is_compute(all_[i].kind) ? wr.busy : wr.communication) += r_.finish[i] - r_.start[i];
        }
        for (int w = 0; w < s_.workers(); ++w) {
            auto& wr = r_.workers[static_cast<std::size_t>(w)];
            for (int p = 0; p < s_.pipelines(); ++p)
                for (int st = 0; st < s_.stages(); ++st)
                    if (s_.placement(p, st) == w) wr.optimizer += costs_.stage(st).optimizer;
            wr.busy += wr.optimizer;
            wr.end += wr.optimizer;
            r_.makespan = std::max(r_.makespan, wr.end);
        }
    }

    // Idle time, peak activations and memory per worker.
    constexpr void fill_memory() {
        for (int w = 0; w < s_.workers(); ++w) {
            auto& wr = r_.workers[static_cast<std::size_t>(w)];
            wr.idle = r_.makespan - wr.busy;
            wr.peak_activations = peak_activations(s_, w);
            const worker_memory memory = memory_of(s_, w, costs_);
            wr.weight_bytes = memory.weight_bytes;
            wr.optimizer_bytes = memory.optimizer_bytes;
            wr.peak_activation_bytes = memory.peak_activation_bytes;
        }
    }

    const S& s_;
    const cost_model& costs_;
    std::span<const op> all_;
    compute_index index_;
    comm_matching matching_;
    bool lowered_;
    std::vector<int> replicas_;  // per stage: pipelines holding it (all-reduce members)
    std::vector<double> ready_;  // comm ops: when their group was ready (posted)
    std::vector<cursor> at_;
    wait_lists waiting_;
    simulation r_;
};

}  // namespace detail

// Times every op of `s` under `costs` (see the model at the top of this file).
template <schedule_like S>
constexpr simulation simulate(const S& s, const cost_model& costs = {}) {
    detail::require_simulable(s, costs);
    return detail::simulator<S>(s, costs).run();
}

// The step when the workers, times `copies` identical data-parallel
// replicas, share `cores` cores (processor sharing; 0 cores: one per
// worker). The simulated timeline (one core per worker) is cut where a
// compute op or an optimizer step starts or ends; a slice in which n
// workers compute takes max(1, n x copies / cores) times as long.
// Postconditions: at least the makespan, at least all compute seconds of
// every replica spread over the cores; equal to the makespan when the
// cores suffice, and to work / cores when n never changes.
template <schedule_like S>
constexpr double shared_core_time(const S& s, const simulation& sim, unsigned cores, int copies = 1) {
    if (cores == 0) return sim.makespan;
    std::vector<std::pair<double, int>> edges;  // (time, +1 start / -1 end)
    const auto ops = s.all_ops();
    for (std::size_t i = 0; i < ops.size(); ++i)
        if (is_compute(ops[i].kind) && sim.start[i] >= 0 && sim.finish[i] > sim.start[i])
            edges.insert(edges.end(), {{sim.start[i], 1}, {sim.finish[i], -1}});
    for (const worker_report& w : sim.workers)
        if (w.optimizer > 0) edges.insert(edges.end(), {{w.end - w.optimizer, 1}, {w.end, -1}});
    std::sort(edges.begin(), edges.end());
    double total = 0, at = 0;
    int computing = 0;
    for (const auto& [time, change] : edges) {
        total += (time - at) * std::max(1.0, static_cast<double>(computing) * copies / cores);
        at = time;
        computing += change;
    }
    return total + (sim.makespan - at);
}

// C_f and C_b of docs/design/chimera-closed-form.md#iteration-time: forwards and backwards on the critical
// path when t_B > t_F, from ASAP makespans at (t_F, t_B) = (1, 2), (1, 3)
// and, to confirm linearity, (1, 4). Communication costs nothing here.
struct critical_path {
    long long forward = 0, backward = 0;
    bool linear = true;  // false: the makespan is not linear in t_B on [2, 4]
};

template <schedule_like S>
constexpr critical_path critical_path_counts(const S& s) {
    const double t2 = simulate(s, unit_costs(1, 2)).makespan;
    const double t3 = simulate(s, unit_costs(1, 3)).makespan;
    const double t4 = simulate(s, unit_costs(1, 4)).makespan;
    critical_path c;
    c.backward = static_cast<long long>(std::llround(t3 - t2));
    c.forward = static_cast<long long>(std::llround(t2 - 2 * (t3 - t2)));
    c.linear = std::abs((t4 - t3) - (t3 - t2)) < 1e-9;
    return c;
}

}  // namespace chimera
