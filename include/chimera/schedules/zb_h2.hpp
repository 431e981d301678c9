// ZB-H2 (docs/design/schedule-zoo.md#zb-h2, interp.): a lock-step rule that lets up to 2P-1
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

namespace chimera::schedules {

inline constexpr schedule_entry zb_h2_entry{
    .id = algorithm::zb_h2,
    .name = "zb-h2",
    .description = "ZB-H2: zero bubble with up to 2D-1 micro-batches in flight",
    .n_constraint = "Any N >= 1; the zero-bubble parallelogram forms from N >= 2D-1.",
};

}  // namespace chimera::schedules
