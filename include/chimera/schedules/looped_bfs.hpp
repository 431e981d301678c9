// Looped BFS (PyTorch's LoopedBFS, docs/design/schedule-zoo.md#interleaved-1f1b-and-looped-bfs): loop placement; every
// worker runs all forwards of its chunk 0, then of chunk 1, ...; then the
// backwards chunk by chunk in reverse, micro-batches in decreasing order.
#pragma once

#include "../config.hpp"
#include "../schedule.hpp"
#include "../schedule_entry.hpp"

namespace chimera::schedules {

inline constexpr param_field looped_bfs_params[] = {{"chunks", param_field::type::integer, &config::chunks}};
inline constexpr schedule_entry looped_bfs_entry{
    .id = algorithm::looped_bfs,
    .name = "looped-bfs",
    .description = "Looped BFS (PyTorch): v chunks per worker, all forwards chunk by chunk, then the backwards",
    .chunks = 0,
    .n_constraint = "Any N >= 1.",
    .params = looped_bfs_params,
};

}  // namespace chimera::schedules
