// GEMS (docs/design/schedule-zoo.md#gems, interp.): two mirrored replicas (Chimera f = 1
// placement), micro-batches in pairs (2q down, 2q+1 up), at most one
// micro-batch in flight per replica: every worker runs F and B of the down
// one, then F and B of the up one.
#pragma once

#include "../config.hpp"
#include "../schedule.hpp"
#include "../schedule_entry.hpp"

namespace chimera::schedules {

inline constexpr schedule_entry gems_entry{
    .id = algorithm::gems,
    .name = "gems",
    .description = "GEMS: two mirrored replicas, one micro-batch in flight on each",
    .default_pipelines = 2,
    .fixed_pipelines = 2,
    .n_constraint = "Any N >= 1.",
};

}  // namespace chimera::schedules
