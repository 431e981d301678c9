// The cost-model simulator: times every op of a schedule (compute-only or
// lowered) and reports makespan, per-worker busy/idle, bubble ratio, the
// critical-path counts C_f/C_b of chimera.md §9.3 and memory per worker.
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
// * recomputation re-runs the forward inside every backward (B and I).
// With unit costs and no communication cost the makespan is the unit-time
// span of every formula in the spec (tests/test_simulate.cpp).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "analysis.hpp"
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

    friend constexpr bool operator==(const stage_profile&, const stage_profile&) = default;
};

struct cost_model {
    stage_profile uniform;               // every stage, unless per_stage is given
    std::vector<stage_profile> per_stage;  // empty, or one entry per stage
    bool recompute = false;
    double alpha = 0, beta = 0;          // time per message, time per byte
    int data_parallel = 1;               // W: all-reduces span replicas x W members

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
        return 2 * std::log2(r) * alpha + 2 * (r - 1) * beta * stage(s).gradient_bytes / r;
    }
};

// Unit costs (chimera.md's unit-time model) with t_B = backward.
constexpr cost_model unit_costs(double forward = 1, double backward = 1) {
    cost_model m;
    m.uniform.forward = forward;
    m.uniform.backward = backward;
    return m;
}

struct worker_report {
    double busy = 0;  // compute time
    double idle = 0;  // makespan - busy
    double communication = 0;  // time its comm stream is busy
    int peak_activations = 0;  // micro-batches held at once (schedules.md §1.2)
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

namespace detail {

// Longest-path evaluation over a DAG given as edges (u -> v: v starts no
// earlier than u's finish + latency); Kahn's order, so a cycle (deadlock)
// leaves nodes unvisited.
struct timing_graph {
    std::vector<double> duration, start;
    std::vector<std::int32_t> edge_from, edge_to;
    std::vector<double> edge_latency;

    constexpr std::int32_t add_node(double d) {
        duration.push_back(d);
        return static_cast<std::int32_t>(duration.size() - 1);
    }
    constexpr void add_edge(std::int32_t u, std::int32_t v, double latency = 0) {
        edge_from.push_back(u), edge_to.push_back(v), edge_latency.push_back(latency);
    }
    // Returns how many nodes got a time.
    constexpr std::size_t run() {
        const std::size_t n = duration.size(), m = edge_from.size();
        std::vector<std::int32_t> offset(n + 1, 0), indegree(n, 0), target(m);
        std::vector<double> latency(m);
        for (std::size_t e = 0; e < m; ++e) ++offset[static_cast<std::size_t>(edge_from[e]) + 1], ++indegree[static_cast<std::size_t>(edge_to[e])];
        for (std::size_t i = 0; i < n; ++i) offset[i + 1] += offset[i];
        {
            std::vector<std::int32_t> fill(offset.begin(), offset.end() - 1);
            for (std::size_t e = 0; e < m; ++e) {
                const auto at = static_cast<std::size_t>(fill[static_cast<std::size_t>(edge_from[e])]++);
                target[at] = edge_to[e], latency[at] = edge_latency[e];
            }
        }
        start.assign(n, 0);
        std::vector<std::int32_t> queue;
        queue.reserve(n);
        for (std::size_t i = 0; i < n; ++i)
            if (indegree[i] == 0) queue.push_back(static_cast<std::int32_t>(i));
        for (std::size_t head = 0; head < queue.size(); ++head) {
            const auto u = static_cast<std::size_t>(queue[head]);
            const double finish = start[u] + duration[u];
            for (auto e = static_cast<std::size_t>(offset[u]); e < static_cast<std::size_t>(offset[u + 1]); ++e) {
                const auto v = static_cast<std::size_t>(target[e]);
                start[v] = std::max(start[v], finish + latency[e]);
                if (--indegree[v] == 0) queue.push_back(static_cast<std::int32_t>(v));
            }
        }
        for (std::size_t i = 0; i < n; ++i)
            if (indegree[i] != 0) start[i] = -1;
        return queue.size();
    }
};

}  // namespace detail

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

// Memory of a worker: weights and optimizer state of every replica it
// holds (chimera.md Tables 2/3: 2f M_theta for Chimera) and peak activations.
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

template <schedule_like S>
constexpr simulation simulate(const S& s, const cost_model& costs = {}) {
    const auto all = s.all_ops();
    const std::size_t total = all.size();
    const int workers = s.workers();
    const compute_index index = make_compute_index(s);
    const comm_matching matching = make_comm_matching(s);
    const bool lowered = std::any_of(all.begin(), all.end(), [](const op& o) { return is_comm(o.kind); });

    detail::timing_graph g;
    g.duration.reserve(total * 5 / 4);
    // Replicas per stage, for the all-reduce size.
    std::vector<int> replicas(static_cast<std::size_t>(s.stages()), 0);
    for (int p = 0; p < s.pipelines(); ++p)
        for (int st = 0; st < s.stages(); ++st) ++replicas[static_cast<std::size_t>(st)];
    std::vector<std::int32_t> owner(total);
    for (int w = 0; w < workers; ++w)
        for (std::size_t i = 0; i < s.ops(w).size(); ++i) owner[s.first_op_index(w) + i] = w;
    for (std::size_t i = 0; i < total; ++i) {
        const op& o = all[i];
        double d = costs.duration(o.kind, o.stage);
        if (is_p2p(o.kind)) d = costs.p2p(o.kind == op_kind::RECV_F || o.kind == op_kind::SEND_B ? o.stage - 1 : o.stage);
        if (o.kind == op_kind::REDUCE_GRAD) d = costs.allreduce(o.stage, replicas[static_cast<std::size_t>(o.stage)]);
        g.add_node(d);
    }
    // Group nodes: ready (one per group) and end, by the group's first op.
    std::vector<std::int32_t> ready_node(total, no_op);
    for (int w = 0; w < workers; ++w) {
        const auto first = static_cast<std::int32_t>(s.first_op_index(w));
        const auto stop = first + static_cast<std::int32_t>(s.ops(w).size());
        std::int32_t previous_compute = no_op, previous_group_end = no_op, previous_collective = no_op;
        for (std::int32_t i = first; i < stop; ++i) {
            const op& o = all[static_cast<std::size_t>(i)];
            if (is_compute(o.kind)) {
                if (previous_compute != no_op) g.add_edge(previous_compute, i);
                if (in_range(s, o)) {
                    std::int32_t deps[2];
                    const int count = index.dependencies(o, deps);
                    for (int k = 0; k < count; ++k) {
                        const std::int32_t dep = deps[k];
                        if (dep == no_op) continue;
                        if (owner[static_cast<std::size_t>(dep)] == w) {
                            g.add_edge(dep, i);
                        } else if (!lowered) {
                            g.add_edge(dep, i, costs.p2p(o.kind == op_kind::F ? o.stage - 1 : o.stage));
                        } else {
                            const std::size_t key = matching.channel(s.stages(), o.kind != op_kind::F, o.micro_batch, o.stage);
                            if (const std::int32_t recv = matching.recv_at[key]; recv != no_op) g.add_edge(recv, i);
                        }
                    }
                }
                previous_compute = i;
                continue;
            }
            if (matching.group_begin[static_cast<std::size_t>(i)] != i) continue;
            const std::int32_t ready = g.add_node(0), end = g.add_node(0);
            if (previous_group_end != no_op) g.add_edge(previous_group_end, ready);
            for (std::int32_t k = i; k < matching.group_end[static_cast<std::size_t>(i)]; ++k) {
                const op& member = all[static_cast<std::size_t>(k)];
                ready_node[static_cast<std::size_t>(k)] = ready;
                if (member.kind == op_kind::REDUCE_GRAD) {
                    // Own stream, one after another, once the gradients are complete.
                    if (previous_collective != no_op) g.add_edge(previous_collective, k);
                    if (previous_compute != no_op) g.add_edge(previous_compute, k);
                    previous_collective = k;
                    continue;
                }
                g.add_edge(k, end);
                if (is_send(member.kind) && member.micro_batch >= 0 && member.micro_batch < s.micro_batches() &&
                    member.stage >= 0 && member.stage < s.stages()) {
                    // The group is launched once the data it sends exists.
                    const auto& table = member.kind == op_kind::SEND_F ? index.forward : index.input_backward;
                    if (const std::int32_t producer = table[index.key(member.micro_batch, member.stage)]; producer != no_op)
                        g.add_edge(producer, ready);
                }
            }
            previous_group_end = end;
        }
    }
    // Members start when every side's group is ready.
    for (std::size_t i = 0; i < total; ++i) {
        const op& o = all[i];
        if (!is_comm(o.kind)) continue;
        const auto self = static_cast<std::int32_t>(i);
        g.add_edge(ready_node[i], self);
        if (o.kind == op_kind::REDUCE_GRAD) {
            for (std::int32_t q : matching.collective[static_cast<std::size_t>(o.stage)])
                if (q != self) g.add_edge(ready_node[static_cast<std::size_t>(q)], self);
        } else if (const std::int32_t q = matching.partner[i]; q != no_op) {
            g.add_edge(ready_node[static_cast<std::size_t>(q)], self);
        } else {
            g.add_edge(self, self);  // never matched: never runs
        }
    }
    g.run();

    simulation r;
    r.start.assign(g.start.begin(), g.start.begin() + static_cast<std::ptrdiff_t>(total));
    r.finish.resize(total);
    r.complete = true;
    r.workers.assign(static_cast<std::size_t>(workers), {});
    for (std::size_t i = 0; i < total; ++i) {
        if (r.start[i] < 0) {
            r.complete = false;
            r.finish[i] = -1;
            continue;
        }
        r.finish[i] = r.start[i] + g.duration[i];
        r.makespan = std::max(r.makespan, r.finish[i]);
        auto& wr = r.workers[static_cast<std::size_t>(owner[i])];
        (is_compute(all[i].kind) ? wr.busy : wr.communication) += g.duration[i];
    }
    for (int w = 0; w < workers; ++w) {
        auto& wr = r.workers[static_cast<std::size_t>(w)];
        wr.idle = r.makespan - wr.busy;
        wr.peak_activations = peak_activations(s, w);
        const worker_memory memory = memory_of(s, w, costs);
        wr.weight_bytes = memory.weight_bytes;
        wr.optimizer_bytes = memory.optimizer_bytes;
        wr.peak_activation_bytes = memory.peak_activation_bytes;
    }
    return r;
}

// C_f and C_b of chimera.md §9.3: forwards and backwards on the critical
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
