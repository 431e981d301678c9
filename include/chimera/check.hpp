// The validator. Every schedule, built in or written by hand, must pass it:
// structure and ranges, placement, routing, exact op multisets, dependency
// order, FIFO channels, deadlock freedom, and the rules a schedule adds
// through its registry entry (Chimera: unit-time and memory invariants of
// chimera.md §11, in schedules/chimera_invariants.hpp). Usable in constant
// expressions:
//
//   static_assert(chimera::check(chimera::make_fixed<cfg>()).ok());
//
// Rule ids: S0 (this library: sizes, ranges, op fields), S1-S5, D1-D4,
// T1-T5, M1-M3 as in chimera.md §11. Lowered schedules (with comm ops) also
// get C1 (each SEND has exactly one matching RECV with consistent peers),
// C2 (every cross-worker dependency has its SEND/RECV pair, in order),
// C3 (rendezvous deadlock replay, schedules.md §1.4), G1 and G3.
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

// The compute ops of a list, in order (lowered lists interleave comm ops).
constexpr std::vector<op> compute_ops(std::span<const op> list) {
    std::vector<op> out;
    for (const op& o : list)
        if (is_compute(o.kind)) out.push_back(o);
    return out;
}

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

template <schedule_like S>
constexpr void check_structure(const S& s, checker_state& st) {
    if (s.stages() < 1 || s.micro_batches() < 1 || s.pipelines() < 1 || s.workers() < 1) {
        st.add("S0", -1, -1,
               cat("stages, micro_batches, pipelines and workers must all be >= 1 (got ", s.stages(), ", ",
                   s.micro_batches(), ", ", s.pipelines(), ", ", s.workers(), ")"));
        return;
    }
    for (int p = 0; p < s.pipelines(); ++p)
        for (int stage = 0; stage < s.stages(); ++stage)
            if (int w = s.placement(p, stage); w < 0 || w >= s.workers())
                st.add("S0", -1, -1,
                       cat("placement[", p, "][", stage, "] = ", w, " is not a worker in [0, ", s.workers(), ")"));
    for (int m = 0; m < s.micro_batches(); ++m)
        if (int p = s.pipeline_of(m); p < 0 || p >= s.pipelines())
            st.add("S0", -1, -1,
                   cat("micro_batch_pipeline[", m, "] = ", p, " is not a pipeline in [0, ", s.pipelines(), ")"));
    for (int w = 0; w < s.workers(); ++w) {
        const auto list = s.ops(w);
        for (int i = 0; i < static_cast<int>(list.size()); ++i) {
            const op& o = list[static_cast<std::size_t>(i)];
            const auto where = [&] { return cat("worker ", w, " op ", i, " ", describe(o), ": "); };
            if (static_cast<int>(o.kind) >= op_kind_count)
                st.add("S0", w, i, cat("worker ", w, " op ", i, ": unknown op kind"));
            else if (o.stage < 0 || o.stage >= s.stages())
                st.add("S0", w, i, cat(where(), "stage must be in [0, ", s.stages(), ")"));
            else if (o.pipeline < 0 || o.pipeline >= s.pipelines())
                st.add("S0", w, i, cat(where(), "pipeline must be in [0, ", s.pipelines(), ")"));
            else if (o.kind != op_kind::REDUCE_GRAD && (o.micro_batch < 0 || o.micro_batch >= s.micro_batches()))
                st.add("S0", w, i, cat(where(), "micro-batch must be in [0, ", s.micro_batches(), ")"));
            else if (is_p2p(o.kind) && (o.peer < 0 || o.peer >= s.workers() || o.peer == w))
                st.add("S0", w, i, cat(where(), "peer must be another worker in [0, ", s.workers(), ")"));
        }
    }
}

template <schedule_like S>
constexpr void check_ops(const S& s, checker_state& st, const compute_index& index, bool& order_ok) {
    // S2 placement, S4 routing, and op counts per (micro-batch, stage) for S5.
    const std::size_t cells = static_cast<std::size_t>(s.micro_batches()) * s.stages();
    std::vector<std::uint8_t> count(cells * 4, 0);  // [kind][micro-batch * stages + stage]
    for (int w = 0; w < s.workers(); ++w) {
        const auto list = s.ops(w);
        for (int i = 0; i < static_cast<int>(list.size()); ++i) {
            const op& o = list[static_cast<std::size_t>(i)];
            const bool placed = is_compute(o.kind) || o.kind == op_kind::REDUCE_GRAD;
            if (placed && s.placement(o.pipeline, o.stage) != w)
                st.add("S2", w, i,
                       cat("worker ", w, " op ", i, " ", describe(o), ": stage ", o.stage, " of pipeline ", o.pipeline,
                           " is placed on worker ", s.placement(o.pipeline, o.stage)));
            if (!is_compute(o.kind)) continue;
            if (s.pipeline_of(o.micro_batch) != o.pipeline)
                st.add("S4", w, i,
                       cat("worker ", w, " op ", i, " ", describe(o), ": micro-batch ", o.micro_batch,
                           " travels through pipeline ", s.pipeline_of(o.micro_batch)));
            auto& c = count[static_cast<std::size_t>(o.kind) * cells + index.key(o.micro_batch, o.stage)];
            if (c < 255) ++c;
            if (c == 2)
                st.add("S5", w, i, cat("worker ", w, " op ", i, " ", describe(o), " is duplicated"));
        }
    }
    // S5: exactly one F and one B, or one F, one I and one W.
    for (int m = 0; m < s.micro_batches(); ++m)
        for (int stage = 0; stage < s.stages(); ++stage) {
            const std::size_t k = index.key(m, stage);
            const int f = count[k], b = count[cells + k], i = count[2 * cells + k], wg = count[3 * cells + k];
            const int p = s.pipeline_of(m);
            const auto what = [&] { return cat("micro-batch ", m, ", stage ", stage, ", pipeline ", p, ": "); };
            if (f == 0) st.add("S5", -1, -1, cat(what(), "F is missing"));
            if (b == 0 && i == 0 && wg == 0) st.add("S5", -1, -1, cat(what(), "backward (B, or I and W) is missing"));
            else if (b > 0 && (i > 0 || wg > 0))
                st.add("S5", -1, -1, cat(what(), "has both a full B and a split backward (I/W)"));
            else if (b == 0 && (i == 0 || wg == 0))
                st.add("S5", -1, -1, cat(what(), i == 0 ? "W without its I" : "I without its W"));
        }
    if (!st.report.ok()) return;  // order checks need exact multisets

    // D1/D2: a dependency on the same worker must come earlier in its list.
    for (int w = 0; w < s.workers(); ++w) {
        const auto list = s.ops(w);
        const std::int32_t first = static_cast<std::int32_t>(s.first_op_index(w));
        for (int i = 0; i < static_cast<int>(list.size()); ++i) {
            const op& o = list[static_cast<std::size_t>(i)];
            std::int32_t deps[2];
            const int n = index.dependencies(o, deps);
            for (int d = 0; d < n; ++d) {
                const std::int32_t dep = deps[d];
                if (dep >= first + i && dep < first + static_cast<std::int32_t>(list.size())) {
                    const op& producer = list[static_cast<std::size_t>(dep - first)];
                    st.add(o.kind == op_kind::F ? "D1" : "D2", w, i,
                           cat("worker ", w, " op ", i, " ", describe(o), " runs before ", describe(producer),
                               " (op ", dep - first, ") that it depends on"));
                    order_ok = false;
                }
            }
        }
    }
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

// C1, C2, G1, G3, then C3 (the rendezvous replay) on a lowered schedule.
template <schedule_like S>
constexpr void check_lowered(const S& s, checker_state& st, const compute_index& index) {
    const auto all = s.all_ops();
    const int stages = s.stages();
    const comm_matching matching = make_comm_matching(s);
    const std::vector<std::int32_t>& owner = matching.owner;
    const auto where = [&](std::size_t position) {
        const int w = owner[position];
        return cat("worker ", w, " op ", position - s.first_op_index(w), " ", describe(all[position]), ": ");
    };
    const auto add = [&](std::string_view rule, std::size_t position, std::string&& text) {
        const int w = owner[position];
        st.add(rule, w, static_cast<int>(position - s.first_op_index(w)), where(position) + text);
    };
    // C1: fields and partners of every p2p op.
    for (std::size_t i = 0; i < all.size(); ++i) {
        const op& o = all[i];
        if (!is_p2p(o.kind)) continue;
        const int w = owner[i];
        const int to = receiving_stage(o);
        const int peer_stage = is_send(o.kind) ? to : (o.kind == op_kind::RECV_F ? o.stage - 1 : o.stage + 1);
        if (peer_stage < 0 || peer_stage >= stages) {
            add("C1", i, cat("stage ", peer_stage, " does not exist, nothing to exchange with"));
            continue;
        }
        if (s.pipeline_of(o.micro_batch) != o.pipeline) {
            add("C1", i, cat("micro-batch ", o.micro_batch, " travels through pipeline ", s.pipeline_of(o.micro_batch)));
            continue;
        }
        if (s.placement(o.pipeline, o.stage) != w) {
            add("C1", i, cat("stage ", o.stage, " of pipeline ", o.pipeline, " is placed on worker ",
                             s.placement(o.pipeline, o.stage)));
            continue;
        }
        if (const int expected = s.placement(o.pipeline, peer_stage); o.peer != expected) {
            add("C1", i, cat("peer must be worker ", expected, " (holder of stage ", peer_stage, ")"));
            continue;
        }
        const std::size_t key = matching.channel(stages, is_gradient_p2p(o.kind), o.micro_batch, to);
        const int own = is_send(o.kind) ? matching.send_count[key] : matching.recv_count[key];
        const int other = is_send(o.kind) ? matching.recv_count[key] : matching.send_count[key];
        if (own > 1) add("C1", i, "is duplicated");
        else if (other == 0) add("C1", i, cat("has no matching ", is_send(o.kind) ? "RECV" : "SEND", " on worker ", o.peer));
    }
    // C2: every cross-worker dependency travels through a SEND/RECV pair;
    // the RECV precedes its consumer, the SEND follows its producer.
    for (std::size_t i = 0; i < all.size() && st.report.ok(); ++i) {
        const op& consumer = all[i];
        if (!is_compute(consumer.kind)) continue;
        std::int32_t deps[2];
        const int count = index.dependencies(consumer, deps);
        for (int d = 0; d < count; ++d) {
            const auto producer = static_cast<std::size_t>(deps[d]);
            if (owner[producer] == owner[i]) continue;
            const std::size_t key =
                matching.channel(stages, consumer.kind != op_kind::F, consumer.micro_batch, consumer.stage);
            const std::int32_t recv = matching.recv_at[key], send = matching.send_at[key];
            if (recv == no_op || send == no_op)
                add("C2", i, cat("its input from ", describe(all[producer]), " on worker ", owner[producer],
                                 " has no SEND/RECV pair"));
            else if (owner[static_cast<std::size_t>(recv)] != owner[i] || static_cast<std::size_t>(recv) > i)
                add("C2", i, "runs before the RECV of its input");
            else if (owner[static_cast<std::size_t>(send)] != owner[producer] || static_cast<std::size_t>(send) < producer)
                add("C2", static_cast<std::size_t>(send),
                    cat("is sent before its producer ", describe(all[producer]), " has run"));
        }
    }
    // G1: one REDUCE_GRAD per (pipeline, stage) replica, after its last
    // backward; G3: decreasing stage on every worker.
    const std::size_t replicas = static_cast<std::size_t>(s.pipelines()) * stages;
    std::vector<std::int32_t> reduce_at(replicas, no_op), last_backward(replicas, no_op);
    for (std::size_t i = 0; i < all.size(); ++i) {
        const op& o = all[i];
        const std::size_t r = static_cast<std::size_t>(o.pipeline) * stages + o.stage;
        if (is_compute(o.kind) && o.kind != op_kind::F) last_backward[r] = static_cast<std::int32_t>(i);
        if (o.kind != op_kind::REDUCE_GRAD) continue;
        if (reduce_at[r] != no_op) add("G1", i, "is duplicated: one REDUCE_GRAD per (pipeline, stage) replica");
        else reduce_at[r] = static_cast<std::int32_t>(i);
    }
    for (int p = 0; p < s.pipelines(); ++p)
        for (int stage = 0; stage < stages; ++stage) {
            const std::size_t r = static_cast<std::size_t>(p) * stages + stage;
            if (reduce_at[r] == no_op)
                st.add("G1", s.placement(p, stage), -1,
                       cat("REDUCE_GRAD(stage ", stage, ", pipeline ", p, ") is missing on worker ",
                           s.placement(p, stage)));
            else if (last_backward[r] > reduce_at[r])
                add("G1", static_cast<std::size_t>(reduce_at[r]),
                    cat("comes before the replica's last backward ", describe(all[static_cast<std::size_t>(last_backward[r])])));
        }
    for (int w = 0; w < s.workers(); ++w) {
        int previous = stages;
        for (std::size_t i = s.first_op_index(w); i < s.first_op_index(w) + s.ops(w).size(); ++i)
            if (all[i].kind == op_kind::REDUCE_GRAD) {
                if (all[i].stage >= previous)
                    add("G3", i, cat("follows the REDUCE_GRAD of stage ", previous, "; issue them in decreasing stage"));
                previous = all[i].stage;
            }
    }
    if (!st.report.ok()) return;
    // C3: rendezvous replay; report every worker's pending group.
    const rendezvous_result r = replay_rendezvous(s, matching);
    if (r.complete) return;
    for (int w = 0; w < s.workers(); ++w) {
        const std::int32_t begin = r.pending[static_cast<std::size_t>(w)];
        if (begin == no_op) continue;
        const std::int32_t stop = matching.group_end[static_cast<std::size_t>(begin)];
        std::string group;
        for (std::int32_t q = begin; q < stop; ++q) group += cat(q == begin ? "" : ", ", describe(all[static_cast<std::size_t>(q)]));
        std::string reason;
        if (const std::int32_t waiting = r.waiting_for[static_cast<std::size_t>(w)]; waiting != no_op)
            reason = cat("; ", describe(all[static_cast<std::size_t>(r.waiting_member[static_cast<std::size_t>(w)])]),
                         " waits for worker ", owner[static_cast<std::size_t>(waiting)], " to post op ",
                         waiting - static_cast<std::int32_t>(s.first_op_index(owner[static_cast<std::size_t>(waiting)])));
        st.add("C3", w, begin - static_cast<std::int32_t>(s.first_op_index(w)),
               cat("deadlock (rendezvous, no progress): worker ", w, " is stuck in its group at op ",
                   begin - static_cast<std::int32_t>(s.first_op_index(w)), " {", group, "}", reason));
    }
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
