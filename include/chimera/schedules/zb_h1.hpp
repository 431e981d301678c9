// ZB-H1 (Qi et al., ICLR'24; docs/design/schedule-zoo.md#zb-h1): 1F1B with the backward split
// into I and W, and W delayed by r on worker r, so that every worker keeps
// exactly P micro-batches between F and W (1F1B's worker-0 memory) while the
// W passes fill the cool-down bubbles.
#pragma once

#include <algorithm>

#include "../config.hpp"
#include "../schedule.hpp"
#include "../schedule_entry.hpp"

namespace chimera::schedules {

inline constexpr schedule_entry zb_h1_entry{
    .id = algorithm::zb_h1,
    .name = "zb-h1",
    .description = "ZB-H1: 1F1B with the backward split into I and W, 1F1B's memory",
    .n_constraint = "Any N >= 1.",
};

}  // namespace chimera::schedules
