// GPipe (docs/design/schedule-zoo.md#gpipe): all forwards, then all backwards.
#pragma once

#include "../config.hpp"
#include "../schedule.hpp"
#include "../schedule_entry.hpp"

namespace chimera::schedules {

inline constexpr schedule_entry gpipe_entry{
    .id = algorithm::gpipe,
    .name = "gpipe",
    .description = "GPipe: every forward, then every backward",
    .n_constraint = "Any N >= 1.",
};

}  // namespace chimera::schedules
