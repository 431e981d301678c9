// GEMS (schedules.md §5, interp.): two mirrored replicas (Chimera f = 1
// placement), micro-batches in pairs (2q down, 2q+1 up), at most one
// micro-batch in flight per replica: every worker runs F and B of the down
// one, then F and B of the up one.
#pragma once

#include "../config.hpp"
#include "../schedule.hpp"
#include "../schedule_entry.hpp"
#include "chunked_chain.hpp"

namespace chimera::schedules {

constexpr schedule gems(const config& c);

inline constexpr schedule_entry gems_entry{
    .id = algorithm::gems,
    .name = "gems",
    .description = "GEMS: two mirrored replicas, one micro-batch in flight on each",
    .default_pipelines = 2,
    .fixed_pipelines = 2,
    .n_constraint = "Any N >= 1.",
    .generate = gems,
};

constexpr schedule gems(const config& c) {
    require_valid(c, gems_entry);
    const int d = c.stages, n = c.micro_batches;
    schedule s = detail::mirror_shape(gems_entry, c);
    for (int m = 0; m < n; ++m) s.set_pipeline_of(m, m % 2);
    for (int w = 0; w < d; ++w) {
        s.add_worker();
        for (int m = 0; m < n; ++m) {
            const int pipeline = m % 2;
            const int stage = pipeline == 0 ? w : d - 1 - w;
            s.push_op(forward(pipeline, m, stage));
            s.push_op(backward(pipeline, m, stage));
        }
    }
    return s;
}

}  // namespace chimera::schedules
