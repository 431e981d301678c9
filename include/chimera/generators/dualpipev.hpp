// The dualpipev generator: builds the op lists that schedules/dualpipev.hpp describes.
#pragma once

#include "../config.hpp"
#include "../schedule.hpp"
#include "../schedules/dualpipev.hpp"
#include "chunked_chain.hpp"
#include "dualpipe.hpp"

namespace chimera::schedules {

constexpr schedule dualpipev(const config& c) {
    require_valid(c, dualpipev_entry);
    const int p = c.stages, n = c.micro_batches;
    schedule s = detail::v_chain_shape(dualpipev_entry, c);
    for (int r = 0; r < p; ++r) {
        s.add_worker();
        const detail::dual_direction directions[2] = {{0, detail::v_stage(p, r, 0), 0},
                                                      {0, detail::v_stage(p, r, 1), 0}};
        detail::dual_pipe_worker(s, directions, r, p, n - 2 * p + r + 1);
    }
    return s;
}

}  // namespace chimera::schedules
