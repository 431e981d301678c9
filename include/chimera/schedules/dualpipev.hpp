// DualPipeV, DualPipe "cut in half" (docs/design/schedule-zoo.md#dualpipev): V placement, one
// chain of 2P stages; DualPipe's eight steps with own = chunk 0 (stage r),
// other = chunk 1 (stage 2P-1-r), h = r and P in place of P/2.
#pragma once

#include "../config.hpp"
#include "../schedule.hpp"
#include "../schedule_entry.hpp"
#include "dualpipe.hpp"

namespace chimera::schedules {

inline constexpr config_rule dualpipev_rules[] = {detail::fill_steady_phase_rule};

inline constexpr schedule_entry dualpipev_entry{
    .id = algorithm::dualpipev,
    .name = "dualpipev",
    .description = "DualPipeV: DualPipe cut in half, one chain on a V placement",
    .chunks = 2,
    .rules = dualpipev_rules,
    .n_constraint = "N >= 2D.",
};

}  // namespace chimera::schedules
