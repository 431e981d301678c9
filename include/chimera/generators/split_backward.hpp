// Zero-bubble pass (docs/design/schedule-zoo.md#zb-h1 to #zb-h2 applied to any B schedule): split
// every B of a schedule into I and W, keep the order of the F and I ops, and
// place each W where its worker would otherwise wait, or where a forward
// would push the micro-batches held between F and W past a cap, or after
// the last I. Each worker's list becomes the picks of a lock-step run with
// unit costs, in which every worker, at every step, looking only at ops
// finished in earlier steps, runs:
//   1. its next F or I if that op's inputs are there, unless it is an F and
//      the worker already holds `cap` micro-batches with a pending W;
//   2. else its oldest pending W;
//   3. else nothing.
// The F/I critical path is then the one of the original schedule with
// t_B = t_F, and the W passes fill its bubbles.
#pragma once

#include <vector>

#include "../dependencies.hpp"
#include "../detail/text.hpp"
#include "../error.hpp"
#include "../schedule.hpp"

namespace chimera::schedules {

// `cap[w]`: most micro-batches worker w may hold between F and W (>= 1).
constexpr schedule split_backward(const schedule& in, const std::vector<int>& cap) {
    const int workers = in.workers();
    const compute_index index = make_compute_index(in);
    constexpr int never = -1;
    // Step at which the op at each position of all_ops() ran (F, or the I of a B).
    std::vector<int> ran(in.op_count(), never);
    std::vector<std::vector<op>> lists(static_cast<std::size_t>(workers));
    struct worker_state {
        std::size_t next = 0;          // position in the input list
        std::vector<op> pending;       // W not yet run, oldest first
        std::size_t oldest = 0;
        int held = 0;                  // micro-batches between F and W
    };
    std::vector<worker_state> state(static_cast<std::size_t>(workers));
    std::size_t remaining = 0;
    for (const op& o : in.all_ops()) remaining += o.kind == op_kind::B ? 2 : 1;
    auto ready = [&](const op& o, int step) {
        std::int32_t deps[2];
        const int n = index.dependencies(o, deps);
        for (int d = 0; d < n; ++d)
            if (deps[d] == no_op || ran[static_cast<std::size_t>(deps[d])] == never ||
                ran[static_cast<std::size_t>(deps[d])] >= step)
                return false;
        return true;
    };
    const long long bound = 2LL * static_cast<long long>(in.op_count()) * workers + 16;
    for (int step = 0; remaining > 0; ++step) {
        if (step > bound)
            throw schedule_error("D4", ::chimera::detail::cat("split backward: the schedule stalls at step ", step,
                                                              " (its F/B order deadlocks)"));
        for (int w = 0; w < workers; ++w) {
            worker_state& ws = state[static_cast<std::size_t>(w)];
            auto& list = lists[static_cast<std::size_t>(w)];
            const auto source = in.ops(w);
            const bool has_pending = ws.oldest < ws.pending.size();
            if (ws.next < source.size()) {
                const op& o = source[ws.next];
                const bool capped = o.kind == op_kind::F && ws.held >= cap[static_cast<std::size_t>(w)] && has_pending;
                if (!capped && ready(o, step)) {
                    ran[in.first_op_index(w) + ws.next] = step;
                    ++ws.next;
                    --remaining;
                    if (o.kind == op_kind::F) {
                        ++ws.held;
                        list.push_back(o);
                    } else {
                        list.push_back(input_gradient(o.pipeline, o.micro_batch, o.stage));
                        ws.pending.push_back(weight_gradient(o.pipeline, o.micro_batch, o.stage));
                    }
                    continue;
                }
            }
            if (has_pending) {
                list.push_back(ws.pending[ws.oldest++]);
                --ws.held;
                --remaining;
            }
        }
    }
    return with_ops(in, lists);
}

}  // namespace chimera::schedules
