// Looped BFS (PyTorch's LoopedBFS, schedules.md §4): loop placement; every
// worker runs all forwards of its chunk 0, then of chunk 1, ...; then the
// backwards chunk by chunk in reverse, micro-batches in decreasing order.
#pragma once

#include "../config.hpp"
#include "../schedule.hpp"
#include "../schedule_entry.hpp"
#include "chunked_chain.hpp"

namespace chimera::schedules {

constexpr schedule looped_bfs(const config& c);

inline constexpr param_field looped_bfs_params[] = {{"chunks", param_field::type::integer, &config::chunks}};
inline constexpr schedule_entry looped_bfs_entry{
    .id = algorithm::looped_bfs,
    .name = "looped-bfs",
    .description = "Looped BFS (PyTorch): v chunks per worker, all forwards chunk by chunk, then the backwards",
    .chunks = 0,
    .n_constraint = "Any N >= 1.",
    .params = looped_bfs_params,
    .generate = looped_bfs,
};

constexpr schedule looped_bfs(const config& c) {
    require_valid(c, looped_bfs_entry);
    const int workers = c.stages, v = c.chunks, n = c.micro_batches;
    schedule s = detail::loop_chain_shape(looped_bfs_entry, c, v);
    for (int r = 0; r < workers; ++r) {
        s.add_worker();
        for (int chunk = 0; chunk < v; ++chunk)
            for (int m = 0; m < n; ++m) s.push_op(forward(0, m, chunk * workers + r));
        for (int chunk = v - 1; chunk >= 0; --chunk)
            for (int m = n - 1; m >= 0; --m) s.push_op(backward(0, m, chunk * workers + r));
    }
    return s;
}

}  // namespace chimera::schedules
