// The zb_h1 generator: builds the op lists that schedules/zb_h1.hpp describes.
#pragma once

#include <algorithm>

#include "../config.hpp"
#include "../schedule.hpp"
#include "../schedules/zb_h1.hpp"
#include "chunked_chain.hpp"
#include "single_chain.hpp"

namespace chimera::schedules {

constexpr schedule zb_h1(const config& c) {
    require_valid(c, zb_h1_entry);
    const int n = c.micro_batches;
    schedule s = detail::single_chain_shape(zb_h1_entry, c);
    for (int r = 0; r < c.stages; ++r) {
        s.add_worker();
        const int warm_up = std::min(c.stages - 1 - r, n);
        int next_weight = 0;  // oldest micro-batch whose W is pending
        for (int m = 0; m < warm_up; ++m) s.push_op(forward(0, m, r));
        for (int i = 0; i < n; ++i) {
            if (warm_up + i < n) s.push_op(forward(0, warm_up + i, r));
            s.push_op(input_gradient(0, i, r));
            if (i >= r) s.push_op(weight_gradient(0, next_weight++, r));
        }
        while (next_weight < n) s.push_op(weight_gradient(0, next_weight++, r));
    }
    return s;
}

}  // namespace chimera::schedules
