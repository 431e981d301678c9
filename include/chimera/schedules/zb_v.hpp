// ZB-V (Qi et al.; docs/design/schedule-zoo.md#zb-v): V placement (worker r holds stages r and
// 2P-1-r), backward split into I and W, built from the seven-phase recipe
// below for n = max(N, 2P-1) micro-batches; ops of micro-batches >= N are then
// dropped (as PyTorch does), which keeps every dependency order intact.
#pragma once

#include <algorithm>

#include "../config.hpp"
#include "../schedule.hpp"
#include "../schedule_entry.hpp"

namespace chimera::schedules {

inline constexpr schedule_entry zb_v_entry{
    .id = algorithm::zb_v,
    .name = "zb-v",
    .description = "ZB-V: zero bubble on a V placement (two chunks per worker)",
    .chunks = 2,
    .n_constraint = "Any N >= 1; zero bubble from N >= 2D.",
};

}  // namespace chimera::schedules
