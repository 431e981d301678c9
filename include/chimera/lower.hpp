// Lowering (docs/design/lowering.md#the-placement-rule): from a compute-only schedule to what an
// executor runs. Adds SEND_F/RECV_F (activations), SEND_B/RECV_B (input
// gradients) between workers and one REDUCE_GRAD per (pipeline, stage)
// replica, placed so that rendezvous semantics (NCCL: a send completes only
// when its receive is posted) can never deadlock.
//
// Conventions of the lowered ops: SEND_x carries the sending stage, RECV_x
// the receiving stage (PyTorch's keying); both carry pipeline, micro-batch
// and the peer worker. Same-worker hand-offs get no comm op. A *group* is a
// maximal run of consecutive comm ops between two compute ops: an executor
// posts it as a whole (ncclGroupStart/End), or as sub-groups in list order.
//
//   auto lowered = chimera::lower(chimera::generate(cfg), {.sync = chimera::sync_policy::eager});
#pragma once

#include <algorithm>
#include <cstdint>
#include <optional>
#include <string_view>
#include <tuple>
#include <vector>

#include "analysis.hpp"
#include "detail/text.hpp"
#include "error.hpp"
#include "op.hpp"
#include "schedule.hpp"
#include "slots.hpp"

namespace chimera {

// Where each replica's REDUCE_GRAD goes (docs/design/lowering.md#gradient-sync-policies).
enum class sync_policy : std::uint8_t {
    end,        // after the worker's last compute op
    eager,      // right after the last backward of the stage (latest replica decides)
    eager_opt,  // eager only where the overlap window is >= min_window, else end
};

constexpr std::string_view to_string(sync_policy p) {
    constexpr std::string_view names[] = {"end", "eager", "eager-opt"};
    return names[static_cast<int>(p)];
}
constexpr std::optional<sync_policy> parse_sync_policy(std::string_view name) {
    for (auto p : {sync_policy::end, sync_policy::eager, sync_policy::eager_opt})
        if (to_string(p) == name) return p;
    return std::nullopt;
}

// min_window <= 0 means the default D - 1 (eager only for the edge stage).
inline constexpr int default_min_window = 0;

struct lower_options {
    sync_policy sync = sync_policy::end;
    int min_window = default_min_window;  // eager_opt only

    friend constexpr bool operator==(const lower_options&, const lower_options&) = default;
};

constexpr int effective_min_window(const lower_options& options, int stages) {
    return options.min_window > 0 ? options.min_window : std::max(1, stages - 1);
}

// The boundary at which every replica of `stage` issues its REDUCE_GRAD,
// per stage, for a schedule with unit-time slots `u` (docs/design/lowering.md#the-placement-rule rule
// 4). Non-increasing in the stage, so collectives also come out in
// decreasing stage order on every worker (G3): a stage never syncs before a
// higher stage it shares a worker with.
template <schedule_like S>
constexpr std::vector<int> reduce_boundaries(const S& s, const unit_slots& u, const lower_options& options) {
    const int stages = s.stages();
    std::vector<int> last_backward(static_cast<std::size_t>(stages), -1);
    std::vector<int> worker_last(static_cast<std::size_t>(s.workers()), -1);
    // Latest backward slot per (pipeline, stage) replica.
    std::vector<int> replica_last(static_cast<std::size_t>(s.pipelines()) * stages, -1);
    std::size_t position = 0;
    for (int w = 0; w < s.workers(); ++w)
        for (const op& o : s.ops(w)) {
            const int slot = u.slot[position++];
            if (!is_compute(o.kind)) continue;
            worker_last[static_cast<std::size_t>(w)] = std::max(worker_last[static_cast<std::size_t>(w)], slot);
            if (o.kind == op_kind::F) continue;
            int& last = replica_last[static_cast<std::size_t>(o.pipeline) * stages + o.stage];
            last = std::max(last, slot);
            last_backward[static_cast<std::size_t>(o.stage)] =
                std::max(last_backward[static_cast<std::size_t>(o.stage)], slot);
        }
    std::vector<int> boundary(static_cast<std::size_t>(stages), u.span);
    if (options.sync != sync_policy::end) {
        const int min_window = effective_min_window(options, stages);
        for (int st = 0; st < stages; ++st) {
            const int eager = last_backward[static_cast<std::size_t>(st)] + 1;
            bool pays = true;
            if (options.sync == sync_policy::eager_opt)
                // Window: slots between the stage's last backward and the
                // holder's last compute op, on the worst replica.
                for (int p = 0; p < s.pipelines(); ++p) {
                    const int holder = s.placement(p, st);
                    const int window =
                        worker_last[static_cast<std::size_t>(holder)] - last_backward[static_cast<std::size_t>(st)];
                    pays = pays && window >= min_window;
                }
            if (pays) boundary[static_cast<std::size_t>(st)] = eager;
        }
    }
    for (int st = stages - 2; st >= 0; --st)
        boundary[static_cast<std::size_t>(st)] =
            std::max(boundary[static_cast<std::size_t>(st)], boundary[static_cast<std::size_t>(st + 1)]);
    return boundary;
}

namespace detail {

// A comm op waiting to be placed: its gap (index of the compute op it goes
// before, or the list size for the end) and its order inside the gap.
struct placed_comm {
    std::size_t gap = 0;
    int boundary = 0;
    int collective = 0;  // point-to-point (0) before collective (1)
    int stage = 0;
    op o;

    // (gap, boundary, p2p before collective, decreasing stage), then a fixed
    // tie-break so the output is deterministic.
    constexpr auto key() const {
        return std::tuple{gap, boundary, collective, -stage, static_cast<int>(o.kind), o.pipeline, o.micro_batch};
    }
};

}  // namespace detail

// Throws schedule_error: "C0" if the input already holds comm ops, "D4" if
// it deadlocks at compute level (nothing sensible can be lowered).
template <schedule_like S>
constexpr schedule lower(const S& s, const lower_options& options = {}) {
    using ::chimera::detail::cat;
    for (const op& o : s.all_ops())
        if (!is_compute(o.kind))
            throw schedule_error("C0", cat("lower: the schedule already holds communication ops (", to_string(o.kind),
                                           "); lower a compute-only schedule"));
    const unit_slots u = make_unit_slots(s);
    if (!u.complete) throw schedule_error("D4", "lower: the compute-only schedule deadlocks; run check for details");
    const compute_index index = make_compute_index(s);
    const auto all = s.all_ops();
    const int workers = s.workers();

    // Global position -> (worker, position in its list).
    std::vector<std::int32_t> owner(all.size());
    std::vector<std::vector<int>> worker_slots(static_cast<std::size_t>(workers));
    for (int w = 0; w < workers; ++w) {
        const std::size_t first = s.first_op_index(w);
        for (std::size_t i = 0; i < s.ops(w).size(); ++i) {
            owner[first + i] = w;
            worker_slots[static_cast<std::size_t>(w)].push_back(u.slot[first + i]);
        }
    }
    // Gap of `worker` that comes right before its first op with slot >= `slot`.
    auto gap_at = [&](int worker, int slot) {
        const auto& slots = worker_slots[static_cast<std::size_t>(worker)];
        return static_cast<std::size_t>(std::lower_bound(slots.begin(), slots.end(), slot) - slots.begin());
    };

    std::vector<std::vector<detail::placed_comm>> comms(static_cast<std::size_t>(workers));
    for (int w = 0; w < workers; ++w) {
        const std::size_t first = s.first_op_index(w);
        const auto list = s.ops(w);
        for (std::size_t i = 0; i < list.size(); ++i) {
            const op& consumer = list[i];
            const int slot = u.slot[first + i];
            std::int32_t deps[2];
            const int count = index.dependencies(consumer, deps);
            for (int d = 0; d < count; ++d) {
                const op& producer = all[static_cast<std::size_t>(deps[d])];
                const int from = owner[static_cast<std::size_t>(deps[d])];
                if (from == w) continue;  // local hand-off
                const bool activation = consumer.kind == op_kind::F;
                const op_kind send = activation ? op_kind::SEND_F : op_kind::SEND_B;
                const op_kind recv = activation ? op_kind::RECV_F : op_kind::RECV_B;
                comms[static_cast<std::size_t>(w)].push_back(
                    {i, slot, 0, consumer.stage, op{recv, consumer.stage, consumer.micro_batch, consumer.pipeline, from}});
                comms[static_cast<std::size_t>(from)].push_back(
                    {gap_at(from, slot), slot, 0, producer.stage,
                     op{send, producer.stage, producer.micro_batch, producer.pipeline, w}});
            }
        }
    }
    const std::vector<int> boundary = reduce_boundaries(s, u, options);
    for (int p = 0; p < s.pipelines(); ++p)
        for (int st = 0; st < s.stages(); ++st) {
            const int holder = s.placement(p, st);
            const int b = boundary[static_cast<std::size_t>(st)];
            comms[static_cast<std::size_t>(holder)].push_back(
                {gap_at(holder, b), b, 1, st, op{op_kind::REDUCE_GRAD, st, no_micro_batch, p, no_peer}});
        }

    schedule out = copy_frame(s);
    for (int w = 0; w < workers; ++w) {
        auto& mine = comms[static_cast<std::size_t>(w)];
        std::sort(mine.begin(), mine.end(), [](const auto& a, const auto& b) { return a.key() < b.key(); });
        const auto list = s.ops(w);
        out.add_worker();
        std::size_t next = 0;
        for (std::size_t i = 0; i <= list.size(); ++i) {
            for (; next < mine.size() && mine[next].gap == i; ++next) out.push_op(mine[next].o);
            if (i < list.size()) out.push_op(list[i]);
        }
    }
    return out;
}

// True when a schedule holds communication ops (it was lowered).
template <schedule_like S>
constexpr bool is_lowered(const S& s) {
    return std::any_of(s.all_ops().begin(), s.all_ops().end(), [](const op& o) { return is_comm(o.kind); });
}

}  // namespace chimera
