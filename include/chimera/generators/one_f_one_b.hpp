// The one_f_one_b generator: builds the op lists that schedules/one_f_one_b.hpp describes.
#pragma once

#include <algorithm>

#include "../config.hpp"
#include "../schedule.hpp"
#include "../schedules/one_f_one_b.hpp"
#include "single_chain.hpp"

namespace chimera::schedules {

constexpr schedule one_f_one_b(const config& c) {
    require_valid(c, one_f_one_b_entry);
    schedule s = detail::single_chain_shape(one_f_one_b_entry, c);
    const int n = c.micro_batches;
    for (int w = 0; w < c.stages; ++w) {
        s.add_worker();
        const int warm_up = std::min(c.stages - 1 - w, n);
        for (int m = 0; m < warm_up; ++m) s.push_op(forward(0, m, w));
        for (int i = 0; i < n - warm_up; ++i) {
            s.push_op(forward(0, warm_up + i, w));
            s.push_op(backward(0, i, w));
        }
        for (int m = n - warm_up; m < n; ++m) s.push_op(backward(0, m, w));
    }
    return s;
}

}  // namespace chimera::schedules
