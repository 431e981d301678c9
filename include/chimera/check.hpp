// The validator. Every schedule, built in or written by hand, must pass it:
// structure and ranges, placement, routing, exact op multisets, dependency
// order, FIFO channels, deadlock freedom, and the rules a schedule adds
// through its registry entry (Chimera: unit-time and memory invariants of
// docs/design/schedule-rules.md, in schedules/chimera_invariants.hpp). Usable in constant
// expressions:
//
//   static_assert(chimera::check(chimera::make_fixed<cfg>()).ok());
//
// Rule ids: S0 (this library: sizes, ranges, op fields), S1-S5, D1-D4,
// T1-T5, M1-M3 as in docs/design/schedule-rules.md. Lowered schedules (with comm ops) also
// get C1 (each SEND has exactly one matching RECV with consistent peers),
// C2 (every cross-worker dependency has its SEND/RECV pair, in order),
// C3 (rendezvous deadlock replay, docs/design/lowering.md#deadlock-check-two-levels), G1 and G3.
#pragma once

#include <algorithm>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "analysis.hpp"
#include "config.hpp"
#include "detail/text.hpp"
#include "placement.hpp"
#include "registry.hpp"
#include "rendezvous.hpp"
#include "schedule.hpp"
#include "schedule_entry.hpp"

namespace chimera {

struct check_report {
    std::vector<diagnostic> diagnostics;
    bool truncated = false;  // more problems than max_diagnostics

    constexpr bool ok() const { return diagnostics.empty(); }
    constexpr bool has(std::string_view rule) const {
        return std::any_of(diagnostics.begin(), diagnostics.end(), [&](const diagnostic& d) { return d.rule == rule; });
    }
};

struct check_options {
    std::size_t max_diagnostics = 64;
    bool chimera_invariants = true;  // the schedule's own invariants (its entry's hook; Chimera: T*, M*)
};

namespace detail {

struct checker_state {
    check_report report;
    check_options options;

    constexpr bool full() const { return report.diagnostics.size() >= options.max_diagnostics; }
    constexpr void add(std::string_view rule, int worker, int index, std::string&& message) {
        if (full()) {
            report.truncated = true;
            return;
        }
        report.diagnostics.push_back({rule, worker, index, std::move(message)});
    }
};

// S0: the placement names workers, the routing names pipelines.
template <schedule_like S>
constexpr void check_frame_ranges(const S& s, checker_state& st) {
    for (int p = 0; p < s.pipelines(); ++p)
        for (int stage = 0; stage < s.stages(); ++stage)
            if (int w = s.placement(p, stage); w < 0 || w >= s.workers())
                st.add("S0", -1, -1,
                       cat("placement[", p, "][", stage, "] = ", w, " is not a worker in [0, ", s.workers(), ")"));
    for (int m = 0; m < s.micro_batches(); ++m)
        if (int p = s.pipeline_of(m); p < 0 || p >= s.pipelines())
            st.add("S0", -1, -1,
                   cat("micro_batch_pipeline[", m, "] = ", p, " is not a pipeline in [0, ", s.pipelines(), ")"));
}

// S0 for one op of worker w: the first field out of range, in words, or
// empty when every field is in range.
template <schedule_like S>
constexpr std::string op_field_problem(const S& s, int w, const op& o) {
    if (o.stage < 0 || o.stage >= s.stages()) return cat("stage must be in [0, ", s.stages(), ")");
    if (o.pipeline < 0 || o.pipeline >= s.pipelines()) return cat("pipeline must be in [0, ", s.pipelines(), ")");
    if (o.kind != op_kind::REDUCE_GRAD && (o.micro_batch < 0 || o.micro_batch >= s.micro_batches()))
        return cat("micro-batch must be in [0, ", s.micro_batches(), ")");
    if (is_p2p(o.kind) && (o.peer < 0 || o.peer >= s.workers() || o.peer == w))
        return cat("peer must be another worker in [0, ", s.workers(), ")");
    return {};
}

// S0: sizes, placement and routing ranges, and every op's fields.
template <schedule_like S>
constexpr void check_structure(const S& s, checker_state& st) {
    if (s.stages() < 1 || s.micro_batches() < 1 || s.pipelines() < 1 || s.workers() < 1) {
        st.add("S0", -1, -1,
               cat("stages, micro_batches, pipelines and workers must all be >= 1 (got ", s.stages(), ", ",
                   s.micro_batches(), ", ", s.pipelines(), ", ", s.workers(), ")"));
        return;
    }
    check_frame_ranges(s, st);
    for (int w = 0; w < s.workers(); ++w) {
        const auto list = s.ops(w);
        for (int i = 0; i < static_cast<int>(list.size()); ++i) {
            const op& o = list[static_cast<std::size_t>(i)];
            if (static_cast<int>(o.kind) >= op_kind_count)
                st.add("S0", w, i, cat("worker ", w, " op ", i, ": unknown op kind"));
            else if (std::string problem = op_field_problem(s, w, o); !problem.empty())
                st.add("S0", w, i, cat("worker ", w, " op ", i, " ", describe(o), ": ", problem));
        }
    }
}

// Compute ops per (kind, micro-batch, stage): [kind * cells + key], capped at 255.
struct op_counts {
    std::size_t cells = 0;
    std::vector<std::uint8_t> count;

    constexpr int of(op_kind kind, std::size_t key) const {
        return count[static_cast<std::size_t>(kind) * cells + key];
    }
};

// S2 (ops on the worker their stage is placed on), S4 (ops in their
// micro-batch's pipeline) and duplicates (S5); returns the op counts.
template <schedule_like S>
constexpr op_counts check_op_homes(const S& s, checker_state& st, const compute_index& index) {
    op_counts counts{static_cast<std::size_t>(s.micro_batches()) * s.stages(), {}};
    counts.count.assign(counts.cells * 4, 0);
    for (int w = 0; w < s.workers(); ++w) {
        const auto list = s.ops(w);
        for (int i = 0; i < static_cast<int>(list.size()); ++i) {
            const op& o = list[static_cast<std::size_t>(i)];
            const auto where = [&] { return cat("worker ", w, " op ", i, " ", describe(o)); };
            const bool placed = is_compute(o.kind) || o.kind == op_kind::REDUCE_GRAD;
            if (placed && s.placement(o.pipeline, o.stage) != w)
                st.add("S2", w, i, cat(where(), ": stage ", o.stage, " of pipeline ", o.pipeline,
                                       " is placed on worker ", s.placement(o.pipeline, o.stage)));
            if (!is_compute(o.kind)) continue;
            if (s.pipeline_of(o.micro_batch) != o.pipeline)
                st.add("S4", w, i, cat(where(), ": micro-batch ", o.micro_batch, " travels through pipeline ",
                                       s.pipeline_of(o.micro_batch)));
            auto& c = counts.count[static_cast<std::size_t>(o.kind) * counts.cells + index.key(o.micro_batch, o.stage)];
            if (c < 255) ++c;
            if (c == 2) st.add("S5", w, i, cat(where(), " is duplicated"));
        }
    }
    return counts;
}

// S5: every (micro-batch, stage) has one F and one B, or one F, one I and one W.
template <schedule_like S>
constexpr void check_multisets(const S& s, checker_state& st, const compute_index& index, const op_counts& counts) {
    for (int m = 0; m < s.micro_batches(); ++m)
        for (int stage = 0; stage < s.stages(); ++stage) {
            const std::size_t k = index.key(m, stage);
            const int f = counts.of(op_kind::F, k), b = counts.of(op_kind::B, k);
            const int i = counts.of(op_kind::I, k), wg = counts.of(op_kind::W, k);
            const auto what = [&] {
                return cat("micro-batch ", m, ", stage ", stage, ", pipeline ", s.pipeline_of(m), ": ");
            };
            if (f == 0) st.add("S5", -1, -1, cat(what(), "F is missing"));
            if (b == 0 && i == 0 && wg == 0) st.add("S5", -1, -1, cat(what(), "backward (B, or I and W) is missing"));
            else if (b > 0 && (i > 0 || wg > 0))
                st.add("S5", -1, -1, cat(what(), "has both a full B and a split backward (I/W)"));
            else if (b == 0 && (i == 0 || wg == 0))
                st.add("S5", -1, -1, cat(what(), i == 0 ? "W without its I" : "I without its W"));
        }
}

// D1/D2: a dependency on the same worker must come earlier in its list.
template <schedule_like S>
constexpr void check_local_order(const S& s, checker_state& st, const compute_index& index, bool& order_ok) {
    for (int w = 0; w < s.workers(); ++w) {
        const auto list = s.ops(w);
        const std::int32_t first = static_cast<std::int32_t>(s.first_op_index(w));
        const std::int32_t end = first + static_cast<std::int32_t>(list.size());
        for (int i = 0; i < static_cast<int>(list.size()); ++i) {
            const op& o = list[static_cast<std::size_t>(i)];
            std::int32_t deps[2];
            const int n = index.dependencies(o, deps);
            for (int d = 0; d < n; ++d) {
                if (deps[d] < first + i || deps[d] >= end) continue;
                const op& producer = list[static_cast<std::size_t>(deps[d] - first)];
                st.add(o.kind == op_kind::F ? "D1" : "D2", w, i,
                       cat("worker ", w, " op ", i, " ", describe(o), " runs before ", describe(producer), " (op ",
                           deps[d] - first, ") that it depends on"));
                order_ok = false;
            }
        }
    }
}

// S2, S4, S5, then (on exact multisets) D1/D2.
template <schedule_like S>
constexpr void check_ops(const S& s, checker_state& st, const compute_index& index, bool& order_ok) {
    const op_counts counts = check_op_homes(s, st, index);
    check_multisets(s, st, index, counts);
    if (!st.report.ok()) return;  // order checks need exact multisets
    check_local_order(s, st, index, order_ok);
}

// D3: each channel (pipeline p, stage s -> s+1 forward, s+1 -> s backward)
// carries micro-batches in the same order at both ends.
template <schedule_like S>
constexpr void check_fifo(const S& s, checker_state& st, std::string_view backward_fifo) {
    // Rank of every op in its (pipeline, stage) sequence; two ends of a channel
    // agree iff every micro-batch has the same rank at both stages.
    const int stages = s.stages();
    const std::size_t cells = static_cast<std::size_t>(s.micro_batches()) * stages;
    std::vector<int> forward_rank(cells, 0), backward_rank(cells, 0);
    std::vector<int> next_forward(static_cast<std::size_t>(s.pipelines()) * stages, 0);
    std::vector<int> next_backward(next_forward.size(), 0);
    for (const op& o : s.all_ops()) {
        const std::size_t chain = static_cast<std::size_t>(o.pipeline) * stages + o.stage;
        const std::size_t cell = static_cast<std::size_t>(o.micro_batch) * stages + o.stage;
        if (o.kind == op_kind::F) forward_rank[cell] = next_forward[chain]++;
        if (is_input_backward(o.kind)) backward_rank[cell] = next_backward[chain]++;
    }
    // Report each broken channel once: (pipeline, stage, direction) -> reported.
    std::vector<std::uint8_t> reported(next_forward.size() * 3, 0);
    for (int m = 0; m < s.micro_batches(); ++m) {
        const int p = s.pipeline_of(m);
        for (int stage = 0; stage < stages; ++stage) {
            const std::size_t cell = static_cast<std::size_t>(m) * stages + stage;
            const std::size_t chain = static_cast<std::size_t>(p) * stages + stage;
            if (stage > 0 && s.placement(p, stage) != s.placement(p, stage - 1)) {  // else a local hand-off
                if (forward_rank[cell] != forward_rank[cell - 1] && !reported[chain * 3]++)
                    st.add("D3", s.placement(p, stage), -1,
                           cat("pipeline ", p, ": stage ", stage, " runs its forwards in another micro-batch order "
                               "than stage ", stage - 1, " sends them (micro-batch ", m, ")"));
                if (backward_rank[cell] != backward_rank[cell - 1] && !reported[chain * 3 + 1]++)
                    st.add("D3", s.placement(p, stage - 1), -1,
                           cat("pipeline ", p, ": stage ", stage - 1, " runs its backwards in another micro-batch "
                               "order than stage ", stage, " sends them (micro-batch ", m, ")"));
            }
            if (!backward_fifo.empty() && forward_rank[cell] != backward_rank[cell] && !reported[chain * 3 + 2]++)
                st.add("D3", s.placement(p, stage), -1,
                       cat(backward_fifo, ": pipeline ", p, " stage ", stage,
                           " runs backwards in another order than forwards (FIFO per pipeline and stage)"));
        }
    }
}

template <schedule_like S>
constexpr void check_deadlock(const S& s, checker_state& st, const compute_index& index, const timing& t) {
    if (t.complete) return;
    for (int w = 0; w < s.workers(); ++w) {
        const std::int32_t at = t.stuck_at[static_cast<std::size_t>(w)];
        if (at < 0) continue;
        const op& o = s.ops(w)[static_cast<std::size_t>(at)];
        std::int32_t deps[2];
        const int n = index.dependencies(o, deps);
        std::string waiting;
        for (int d = 0; d < n; ++d)
            if (deps[d] != no_op && t.finish[static_cast<std::size_t>(deps[d])] < 0) {
                const op& producer = s.all_ops()[static_cast<std::size_t>(deps[d])];
                waiting = cat(", which waits for ", describe(producer), " on worker ",
                              s.placement(producer.pipeline, producer.stage));
                break;
            }
        st.add("D4", w, at, cat("deadlock: worker ", w, " cannot run op ", at, " ", describe(o), waiting));
    }
}

// What the lowered-level rules share: the ops, their matching, and a way
// to report a diagnostic about the op at a position of all_ops().
template <schedule_like S>
struct lowered_context {
    const S& s;
    checker_state& st;
    std::span<const op> all;
    comm_matching matching;

    constexpr int worker_of(std::size_t position) const { return matching.owner[position]; }
    constexpr int index_in_list(std::size_t position) const {
        return static_cast<int>(position - s.first_op_index(worker_of(position)));
    }
    constexpr void add(std::string_view rule, std::size_t position, const std::string& text) {
        const int w = worker_of(position);
        st.add(rule, w, index_in_list(position),
               cat("worker ", w, " op ", index_in_list(position), " ", describe(all[position]), ": ", text));
    }
};

// C1 for one p2p op: the stage it talks to exists, the op sits where its
// stage and micro-batch live, and its peer holds the other stage. Empty
// when it does.
template <schedule_like S>
constexpr std::string p2p_home_problem(const S& s, const op& o, int w) {
    const int peer_stage =
        is_send(o.kind) ? receiving_stage(o) : (o.kind == op_kind::RECV_F ? o.stage - 1 : o.stage + 1);
    if (peer_stage < 0 || peer_stage >= s.stages())
        return cat("stage ", peer_stage, " does not exist, nothing to exchange with");
    if (s.pipeline_of(o.micro_batch) != o.pipeline)
        return cat("micro-batch ", o.micro_batch, " travels through pipeline ", s.pipeline_of(o.micro_batch));
    if (s.placement(o.pipeline, o.stage) != w)
        return cat("stage ", o.stage, " of pipeline ", o.pipeline, " is placed on worker ",
                   s.placement(o.pipeline, o.stage));
    if (const int expected = s.placement(o.pipeline, peer_stage); o.peer != expected)
        return cat("peer must be worker ", expected, " (holder of stage ", peer_stage, ")");
    return {};
}

// C1: fields and partners of every p2p op (one SEND per RECV and back).
template <schedule_like S>
constexpr void check_p2p_pairs(lowered_context<S>& x) {
    for (std::size_t i = 0; i < x.all.size(); ++i) {
        const op& o = x.all[i];
        if (!is_p2p(o.kind)) continue;
        if (std::string problem = p2p_home_problem(x.s, o, x.worker_of(i)); !problem.empty()) {
            x.add("C1", i, problem);
            continue;
        }
        const std::size_t key =
            x.matching.channel(x.s.stages(), is_gradient_p2p(o.kind), o.micro_batch, receiving_stage(o));
        const int own = is_send(o.kind) ? x.matching.send_count[key] : x.matching.recv_count[key];
        const int other = is_send(o.kind) ? x.matching.recv_count[key] : x.matching.send_count[key];
        if (own > 1) x.add("C1", i, "is duplicated");
        else if (other == 0)
            x.add("C1", i, cat("has no matching ", is_send(o.kind) ? "RECV" : "SEND", " on worker ", o.peer));
    }
}

// C2: every cross-worker dependency travels through a SEND/RECV pair; the
// RECV precedes its consumer, the SEND follows its producer.
template <schedule_like S>
constexpr void check_p2p_paths(lowered_context<S>& x, const compute_index& index) {
    for (std::size_t i = 0; i < x.all.size() && x.st.report.ok(); ++i) {
        const op& consumer = x.all[i];
        if (!is_compute(consumer.kind)) continue;
        std::int32_t deps[2];
        const int count = index.dependencies(consumer, deps);
        for (int d = 0; d < count; ++d) {
            const auto producer = static_cast<std::size_t>(deps[d]);
            if (x.worker_of(producer) == x.worker_of(i)) continue;
            const std::size_t key =
                x.matching.channel(x.s.stages(), consumer.kind != op_kind::F, consumer.micro_batch, consumer.stage);
            const std::int32_t recv = x.matching.recv_at[key], send = x.matching.send_at[key];
            if (recv == no_op || send == no_op)
                x.add("C2", i, cat("its input from ", describe(x.all[producer]), " on worker ", x.worker_of(producer),
                                   " has no SEND/RECV pair"));
            else if (x.worker_of(static_cast<std::size_t>(recv)) != x.worker_of(i) || static_cast<std::size_t>(recv) > i)
                x.add("C2", i, "runs before the RECV of its input");
            else if (x.worker_of(static_cast<std::size_t>(send)) != x.worker_of(producer) ||
                     static_cast<std::size_t>(send) < producer)
                x.add("C2", static_cast<std::size_t>(send),
                      cat("is sent before its producer ", describe(x.all[producer]), " has run"));
        }
    }
}

// G1: one REDUCE_GRAD per (pipeline, stage) replica, after its last backward.
template <schedule_like S>
constexpr void check_reduce_per_replica(lowered_context<S>& x) {
    const int stages = x.s.stages();
    const std::size_t replicas = static_cast<std::size_t>(x.s.pipelines()) * stages;
    std::vector<std::int32_t> reduce_at(replicas, no_op), last_backward(replicas, no_op);
    for (std::size_t i = 0; i < x.all.size(); ++i) {
        const op& o = x.all[i];
        const std::size_t r = static_cast<std::size_t>(o.pipeline) * stages + o.stage;
        if (is_compute(o.kind) && o.kind != op_kind::F) last_backward[r] = static_cast<std::int32_t>(i);
        if (o.kind != op_kind::REDUCE_GRAD) continue;
        if (reduce_at[r] != no_op) x.add("G1", i, "is duplicated: one REDUCE_GRAD per (pipeline, stage) replica");
        else reduce_at[r] = static_cast<std::int32_t>(i);
    }
    for (int p = 0; p < x.s.pipelines(); ++p)
        for (int stage = 0; stage < stages; ++stage) {
            const std::size_t r = static_cast<std::size_t>(p) * stages + stage;
            if (reduce_at[r] == no_op)
                x.st.add("G1", x.s.placement(p, stage), -1,
                         cat("REDUCE_GRAD(stage ", stage, ", pipeline ", p, ") is missing on worker ",
                             x.s.placement(p, stage)));
            else if (last_backward[r] > reduce_at[r])
                x.add("G1", static_cast<std::size_t>(reduce_at[r]),
                      cat("comes before the replica's last backward ",
                          describe(x.all[static_cast<std::size_t>(last_backward[r])])));
        }
}

// G3: every worker issues its REDUCE_GRADs in decreasing stage.
template <schedule_like S>
constexpr void check_reduce_order(lowered_context<S>& x) {
    for (int w = 0; w < x.s.workers(); ++w) {
        int previous = x.s.stages();
        const std::size_t first = x.s.first_op_index(w);
        for (std::size_t i = first; i < first + x.s.ops(w).size(); ++i)
            if (x.all[i].kind == op_kind::REDUCE_GRAD) {
                if (x.all[i].stage >= previous)
                    x.add("G3", i, cat("follows the REDUCE_GRAD of stage ", previous, "; issue them in decreasing stage"));
                previous = x.all[i].stage;
            }
    }
}

// C3: replays the rendezvous; reports every worker's pending group and
// whom it waits for.
template <schedule_like S>
constexpr void check_rendezvous(lowered_context<S>& x) {
    const rendezvous_result r = replay_rendezvous(x.s, x.matching);
    if (r.complete) return;
    const auto index_of = [&](std::int32_t position) { return x.index_in_list(static_cast<std::size_t>(position)); };
    for (int w = 0; w < x.s.workers(); ++w) {
        const std::int32_t begin = r.pending[static_cast<std::size_t>(w)];
        if (begin == no_op) continue;
        const std::int32_t stop = x.matching.group_end[static_cast<std::size_t>(begin)];
        std::string group;
        for (std::int32_t q = begin; q < stop; ++q)
            group += cat(q == begin ? "" : ", ", describe(x.all[static_cast<std::size_t>(q)]));
        std::string reason;
        if (const std::int32_t waiting = r.waiting_for[static_cast<std::size_t>(w)]; waiting != no_op)
            reason = cat("; ", describe(x.all[static_cast<std::size_t>(r.waiting_member[static_cast<std::size_t>(w)])]),
                         " waits for worker ", x.worker_of(static_cast<std::size_t>(waiting)), " to post op ",
                         index_of(waiting));
        x.st.add("C3", w, index_of(begin),
                 cat("deadlock (rendezvous, no progress): worker ", w, " is stuck in its group at op ", index_of(begin),
                     " {", group, "}", reason));
    }
}

// C1, C2, G1, G3, then C3 (the rendezvous replay) on a lowered schedule.
template <schedule_like S>
constexpr void check_lowered(const S& s, checker_state& st, const compute_index& index) {
    lowered_context<S> x{s, st, s.all_ops(), make_comm_matching(s)};
    check_p2p_pairs(x);
    check_p2p_paths(x, index);
    check_reduce_per_replica(x);
    check_reduce_order(x);
    if (st.report.ok()) check_rendezvous(x);
}

}  // namespace detail

namespace detail {

// The entry whose hooks apply: the one the params name, if the schedule
// carries that name too (a file can claim anything).
template <schedule_like S>
constexpr const schedule_entry* hooks_of(const S& s) {
    const schedule_entry* e = find_schedule(s.params().schedule);
    return e && s.name() == e->name ? e : nullptr;
}

// Runs a hook of the entry on the dynamic form of `s`, adding its findings.
template <schedule_like S, class Hook>
constexpr void run_hook(const S& s, checker_state& st, Hook hook) {
    std::vector<diagnostic> found;
    if constexpr (std::is_same_v<S, schedule>)
        hook(s, found);
    else
        hook(to_dynamic(s), found);
    for (diagnostic& d : found) st.add(d.rule, d.worker, d.index, std::move(d.message));
}

}  // namespace detail

template <schedule_like S>
constexpr check_report check(const S& s, const check_options& options = {}) {
    detail::checker_state st;
    st.options = options;
    detail::check_structure(s, st);
    if (!st.report.ok()) return std::move(st.report);
    const schedule_entry* entry = detail::hooks_of(s);
    if (entry && entry->check_shape) {
        detail::run_hook(s, st, entry->check_shape);
        if (!st.report.ok()) return std::move(st.report);
    }
    const compute_index index = make_compute_index(s);
    bool order_ok = true;
    detail::check_ops(s, st, index, order_ok);
    if (!st.report.ok()) return std::move(st.report);
    detail::check_fifo(s, st, entry && entry->backward_fifo ? entry->name : std::string_view{});
    const timing t = asap(s, op_costs{}, &index);
    detail::check_deadlock(s, st, index, t);
    if (st.report.ok() && std::any_of(s.all_ops().begin(), s.all_ops().end(), [](const op& o) { return is_comm(o.kind); }))
        detail::check_lowered(s, st, index);
    if (st.report.ok() && entry && entry->check_invariants && options.chimera_invariants)
        detail::run_hook(s, st, [&](const schedule& d, std::vector<diagnostic>& out) {
            entry->check_invariants(d, t.makespan, out);
        });
    return std::move(st.report);
}

}  // namespace chimera
