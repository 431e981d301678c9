// The zb_h2 generator: builds the op lists that schedules/zb_h2.hpp describes.
#pragma once

#include <vector>

#include "../config.hpp"
#include "../detail/text.hpp"
#include "../error.hpp"
#include "../schedule.hpp"
#include "../schedules/zb_h2.hpp"
#include "chunked_chain.hpp"
#include "single_chain.hpp"

namespace chimera::schedules {

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
