// DualPipeV, DualPipe "cut in half" (schedules.md §10): V placement, one
// chain of 2P stages; DualPipe's eight steps with own = chunk 0 (stage r),
// other = chunk 1 (stage 2P-1-r), h = r and P in place of P/2.
#pragma once

#include "../config.hpp"
#include "../schedule.hpp"
#include "../schedule_entry.hpp"
#include "chunked_chain.hpp"
#include "dualpipe.hpp"

namespace chimera::schedules {

inline constexpr config_rule dualpipev_rules[] = {detail::fill_steady_phase_rule};

constexpr schedule dualpipev(const config& c);

inline constexpr schedule_entry dualpipev_entry{
    .id = algorithm::dualpipev,
    .name = "dualpipev",
    .description = "DualPipeV: DualPipe cut in half, one chain on a V placement",
    .chunks = 2,
    .rules = dualpipev_rules,
    .n_constraint = "N >= 2D.",
    .generate = dualpipev,
};

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
