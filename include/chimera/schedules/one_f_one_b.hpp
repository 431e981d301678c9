// 1F1B, also PipeDream-Flush and DAPPLE (docs/design/schedule-zoo.md#1f1b): a warm-up of
// forwards, then one forward and one backward alternating, then the rest of
// the backwards.
#pragma once

#include <algorithm>

#include "../config.hpp"
#include "../schedule.hpp"
#include "../schedule_entry.hpp"

namespace chimera::schedules {

inline constexpr std::string_view one_f_one_b_aliases[] = {"pipedream-flush", "dapple"};
inline constexpr schedule_entry one_f_one_b_entry{
    .id = algorithm::one_f_one_b,
    .name = "1f1b",
    .aliases = one_f_one_b_aliases,
    .description = "1F1B (PipeDream-Flush, DAPPLE): warm-up, then one forward and one backward alternating",
    .n_constraint = "Any N >= 1.",
};

}  // namespace chimera::schedules
