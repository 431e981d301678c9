// The looped_bfs generator: builds the op lists that schedules/looped_bfs.hpp describes.
#pragma once

#include "../config.hpp"
#include "../schedule.hpp"
#include "../schedules/looped_bfs.hpp"
#include "chunked_chain.hpp"

namespace chimera::schedules {

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
