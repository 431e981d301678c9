// Rendezvous semantics of a lowered schedule (docs/design/lowering.md#the-placement-rule, #deadlock-check-two-levels):
// which comm ops match, which ops form a group, and a replay that says
// whether every worker gets through its list.
//
// Matching: SEND_F(m, s) <-> RECV_F(m, s+1), SEND_B(m, s) <-> RECV_B(m, s-1)
// (SEND carries the sending stage, RECV the receiving one); REDUCE_GRAD of a
// stage matches every other REDUCE_GRAD of that stage (all replicas).
// Groups: maximal runs of consecutive comm ops of one worker. A group
// completes once every partner of every member has been posted, i.e. its
// worker has reached the group holding the partner; a worker runs nothing
// else while its current group is incomplete. Compute ops never block here
// (their data arrives through the RECVs before them).
#pragma once

#include <cstdint>
#include <vector>

#include "analysis.hpp"
#include "detail/wait_lists.hpp"
#include "op.hpp"
#include "schedule.hpp"

namespace chimera {

struct comm_matching {
    // Per op (indexed like all_ops()): the worker whose list holds it.
    std::vector<std::int32_t> owner;
    // Per op (indexed like all_ops()): the matching p2p op, or no_op.
    std::vector<std::int32_t> partner;
    // Per op: first and one-past-last position of its group (comm ops only, else no_op).
    std::vector<std::int32_t> group_begin, group_end;
    // Per stage: the positions of its REDUCE_GRADs (all replicas).
    std::vector<std::vector<std::int32_t>> collective;
    // Per (direction, micro_batch, receiving stage): how many RECV / SEND ops
    // claim it; the checker turns counts != 1 into diagnostics.
    std::vector<std::uint8_t> recv_count, send_count;
    // Per channel: position of its first RECV / SEND, or no_op.
    std::vector<std::int32_t> recv_at, send_at;

    constexpr std::size_t channel(int stages, bool gradient, int micro_batch, int receiving_stage) const {
        return (static_cast<std::size_t>(gradient) * (recv_count.size() / 2)) +
               static_cast<std::size_t>(micro_batch) * stages + receiving_stage;
    }
};

// The stage a p2p op's data is received at (its RECV's key).
constexpr int receiving_stage(const op& o) {
    switch (o.kind) {
        case op_kind::SEND_F: return o.stage + 1;
        case op_kind::SEND_B: return o.stage - 1;
        default: return o.stage;
    }
}
constexpr bool is_gradient_p2p(op_kind kind) { return kind == op_kind::SEND_B || kind == op_kind::RECV_B; }
constexpr bool is_send(op_kind kind) { return kind == op_kind::SEND_F || kind == op_kind::SEND_B; }

// Ops with out-of-range fields are left unmatched (the checker reports them).
template <schedule_like S>
constexpr comm_matching make_comm_matching(const S& s) {
    comm_matching m;
    const auto all = s.all_ops();
    const int stages = s.stages();
    const std::size_t channels = static_cast<std::size_t>(s.micro_batches()) * stages;
    m.owner.assign(all.size(), 0);
    m.partner.assign(all.size(), no_op);
    m.group_begin.assign(all.size(), no_op);
    m.group_end.assign(all.size(), no_op);
    m.collective.assign(static_cast<std::size_t>(std::max(0, stages)), {});
    m.recv_count.assign(2 * channels, 0);
    m.send_count.assign(2 * channels, 0);
    m.recv_at.assign(2 * channels, no_op);
    m.send_at.assign(2 * channels, no_op);
    for (int w = 0; w < s.workers(); ++w) {
        const auto first = static_cast<std::int32_t>(s.first_op_index(w));
        const auto end = first + static_cast<std::int32_t>(s.ops(w).size());
        for (std::int32_t i = first; i < end; ++i) {
            const op& o = all[static_cast<std::size_t>(i)];
            m.owner[static_cast<std::size_t>(i)] = w;
            if (!is_comm(o.kind)) continue;
            if (i == first || !is_comm(all[static_cast<std::size_t>(i - 1)].kind)) {
                std::int32_t j = i;
                while (j < end && is_comm(all[static_cast<std::size_t>(j)].kind)) ++j;
                for (std::int32_t k = i; k < j; ++k) m.group_begin[static_cast<std::size_t>(k)] = i,
                                                     m.group_end[static_cast<std::size_t>(k)] = j;
            }
            if (o.kind == op_kind::REDUCE_GRAD) {
                if (o.stage >= 0 && o.stage < stages) m.collective[static_cast<std::size_t>(o.stage)].push_back(i);
                continue;
            }
            const int to = receiving_stage(o);
            if (o.micro_batch < 0 || o.micro_batch >= s.micro_batches() || to < 0 || to >= stages) continue;
            const std::size_t key = m.channel(stages, is_gradient_p2p(o.kind), o.micro_batch, to);
            auto& count = is_send(o.kind) ? m.send_count[key] : m.recv_count[key];
            if (count < 255) ++count;
            auto& at = is_send(o.kind) ? m.send_at[key] : m.recv_at[key];
            if (at == no_op) at = i;
        }
    }
    for (std::size_t key = 0; key < 2 * channels; ++key)
        if (m.send_at[key] != no_op && m.recv_at[key] != no_op) {
            m.partner[static_cast<std::size_t>(m.send_at[key])] = m.recv_at[key];
            m.partner[static_cast<std::size_t>(m.recv_at[key])] = m.send_at[key];
        }
    return m;
}

struct rendezvous_result {
    bool complete = false;
    // Per worker: first position (in all_ops()) of the group it is stuck in,
    // or no_op when it got through its list.
    std::vector<std::int32_t> pending;
    // Per worker: a member of that group whose partner was never posted.
    std::vector<std::int32_t> waiting_member, waiting_for;
};

// Linear replay: a blocked worker waits on one unposted partner and is
// woken when that partner's worker reaches it.
template <schedule_like S>
constexpr rendezvous_result replay_rendezvous(const S& s, const comm_matching& m) {
    const auto all = s.all_ops();
    const int workers = s.workers();
    rendezvous_result r;
    r.pending.assign(static_cast<std::size_t>(workers), no_op);
    r.waiting_member.assign(static_cast<std::size_t>(workers), no_op);
    r.waiting_for.assign(static_cast<std::size_t>(workers), no_op);
    std::vector<std::int32_t> position(static_cast<std::size_t>(workers)), end(static_cast<std::size_t>(workers));
    for (int w = 0; w < workers; ++w) {
        position[static_cast<std::size_t>(w)] = static_cast<std::int32_t>(s.first_op_index(w));
        end[static_cast<std::size_t>(w)] = position[static_cast<std::size_t>(w)] + static_cast<std::int32_t>(s.ops(w).size());
    }
    // A partner is posted once its worker stands at (or past) its group.
    auto posted = [&](std::int32_t q) {
        return position[static_cast<std::size_t>(m.owner[static_cast<std::size_t>(q)])] >=
               m.group_begin[static_cast<std::size_t>(q)];
    };
    std::vector<std::int32_t> cursor(static_cast<std::size_t>(workers), -1);  // next member to verify
    detail::wait_lists waiting(all.size(), workers);
    for (int w = 0; waiting.pop(w);) {
        auto& pos = position[static_cast<std::size_t>(w)];
        const auto stop = end[static_cast<std::size_t>(w)];
        while (pos < stop) {
            if (!is_comm(all[static_cast<std::size_t>(pos)].kind)) {
                ++pos;
                continue;
            }
            const std::int32_t group_end = m.group_end[static_cast<std::size_t>(pos)];
            auto& member = cursor[static_cast<std::size_t>(w)];
            if (member < pos) {  // just reached this group: post it
                member = pos;
                for (std::int32_t q = pos; q < group_end; ++q) waiting.wake(q);
            }
            std::int32_t missing = no_op;
            for (; member < group_end && missing == no_op; ++member) {
                const op& o = all[static_cast<std::size_t>(member)];
                if (o.kind == op_kind::REDUCE_GRAD) {
                    if (o.stage < 0 || o.stage >= static_cast<int>(m.collective.size())) continue;
                    for (std::int32_t q : m.collective[static_cast<std::size_t>(o.stage)])
                        if (!posted(q)) {
                            missing = q;
                            break;
                        }
                } else if (std::int32_t q = m.partner[static_cast<std::size_t>(member)]; q == no_op || !posted(q)) {
                    missing = q == no_op ? member : q;  // an unmatched op waits forever
                }
                if (missing != no_op) break;
            }
            if (missing != no_op) {
                r.waiting_member[static_cast<std::size_t>(w)] = member;
                r.waiting_for[static_cast<std::size_t>(w)] = missing;
                if (missing != member) waiting.wait(w, missing);
                break;
            }
            pos = group_end;
            r.waiting_member[static_cast<std::size_t>(w)] = r.waiting_for[static_cast<std::size_t>(w)] = no_op;
        }
    }
    r.complete = true;
    for (int w = 0; w < workers; ++w)
        if (position[static_cast<std::size_t>(w)] < end[static_cast<std::size_t>(w)]) {
            r.complete = false;
            r.pending[static_cast<std::size_t>(w)] = position[static_cast<std::size_t>(w)];
        } else {
            r.waiting_member[static_cast<std::size_t>(w)] = r.waiting_for[static_cast<std::size_t>(w)] = no_op;
        }
    return r;
}

}  // namespace chimera
