// ZB-H2 (schedules.md §7, interp.): a lock-step rule that lets up to 2P-1
// micro-batches sit between F and W, so that the layout becomes the ZB
// paper's parallelogram. In each step every worker picks, looking only at
// ops finished in earlier steps: I of its next micro-batch if its gradient is
// there; else F of its next micro-batch if its input is there and fewer than
// 2P-1 are in flight; else the oldest pending W; else nothing.
#pragma once

#include <vector>

#include "../config.hpp"
#include "../detail/text.hpp"
#include "../error.hpp"
#include "../schedule.hpp"
#include "../schedule_entry.hpp"
#include "chunked_chain.hpp"
#include "single_chain.hpp"

namespace chimera::schedules {

constexpr schedule zb_h2(const config& c);

inline constexpr schedule_entry zb_h2_entry{
    .id = algorithm::zb_h2,
    .name = "zb-h2",
    .description = "ZB-H2: zero bubble with up to 2D-1 micro-batches in flight",
    .n_constraint = "Any N >= 1; the zero-bubble parallelogram forms from N >= 2D-1.",
    .generate = zb_h2,
};

constexpr schedule zb_h2(const config& c) {
    require_valid(c, zb_h2_entry);
    const int p = c.stages, n = c.micro_batches, limit = 2 * p - 1;
    schedule s = detail::single_chain_shape(zb_h2_entry, c);
    constexpr int never = -1;
    // Step at which F / I of (stage, micro-batch) ran.
    std::vector<int> forward_step(static_cast<std::size_t>(p) * n, never), input_step(forward_step);
    auto at = [&](int stage, int m) { return static_cast<std::size_t>(stage) * n + m; };
    auto before = [](int step, int now) { return step != never && step < now; };
    std::vector<std::vector<op>> lists(static_cast<std::size_t>(p));
    std::vector<int> next_f(static_cast<std::size_t>(p), 0), next_i(next_f), next_w(next_f);
    int finished = 0;
    // Every step runs at least one op (the rule cannot stall: the worker
    // holding the oldest unfinished op can always run it), so 3Np steps bound it.
    for (int step = 0; finished < p; ++step) {
        if (step > 3 * n * p + p)
            throw schedule_error("D4", ::chimera::detail::cat("zb-h2: internal error, the lock-step rule stalled at step ", step));
        for (int r = 0; r < p; ++r) {
            auto& f = next_f[static_cast<std::size_t>(r)];
            auto& i = next_i[static_cast<std::size_t>(r)];
            auto& w = next_w[static_cast<std::size_t>(r)];
            auto& list = lists[static_cast<std::size_t>(r)];
            if (w == n) continue;
            if (i < f && before(forward_step[at(r, i)], step) && (r == p - 1 || before(input_step[at(r + 1, i)], step))) {
                list.push_back(input_gradient(0, i, r));
                input_step[at(r, i++)] = step;
            } else if (f < n && f - w < limit && (r == 0 || before(forward_step[at(r - 1, f)], step))) {
                list.push_back(forward(0, f, r));
                forward_step[at(r, f++)] = step;
            } else if (w < i) {
                list.push_back(weight_gradient(0, w++, r));
                if (w == n) ++finished;
            }
        }
    }
    for (const auto& list : lists) {
        s.add_worker();
        for (const op& o : list) s.push_op(o);
    }
    return s;
}

}  // namespace chimera::schedules
