// GPipe (schedules.md §2): all forwards, then all backwards.
#pragma once

#include "../config.hpp"
#include "../schedule.hpp"
#include "../schedule_entry.hpp"
#include "single_chain.hpp"

namespace chimera::schedules {

constexpr schedule gpipe(const config& c);

inline constexpr schedule_entry gpipe_entry{
    .id = algorithm::gpipe,
    .name = "gpipe",
    .description = "GPipe: every forward, then every backward",
    .n_constraint = "Any N >= 1.",
    .generate = gpipe,
};

constexpr schedule gpipe(const config& c) {
    require_valid(c, gpipe_entry);
    schedule s = detail::single_chain_shape(gpipe_entry, c);
    for (int w = 0; w < c.stages; ++w) {
        s.add_worker();
        for (int m = 0; m < c.micro_batches; ++m) s.push_op(forward(0, m, w));
        for (int m = 0; m < c.micro_batches; ++m) s.push_op(backward(0, m, w));
    }
    return s;
}

}  // namespace chimera::schedules
