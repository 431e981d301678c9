// 1F1B, also PipeDream-Flush and DAPPLE (schedules.md §3): a warm-up of
// forwards, then one forward and one backward alternating, then the rest of
// the backwards.
#pragma once

#include <algorithm>

#include "../config.hpp"
#include "../schedule.hpp"
#include "../schedule_entry.hpp"
#include "single_chain.hpp"

namespace chimera::schedules {

constexpr schedule one_f_one_b(const config& c);

inline constexpr std::string_view one_f_one_b_aliases[] = {"pipedream-flush", "dapple"};
inline constexpr schedule_entry one_f_one_b_entry{
    .id = algorithm::one_f_one_b,
    .name = "1f1b",
    .aliases = one_f_one_b_aliases,
    .description = "1F1B (PipeDream-Flush, DAPPLE): warm-up, then one forward and one backward alternating",
    .n_constraint = "Any N >= 1.",
    .generate = one_f_one_b,
};

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
