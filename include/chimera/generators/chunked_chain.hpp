// Shapes shared by the zoo (docs/design/schedule-zoo.md#interleaved-1f1b-and-looped-bfs to #dualpipev): one stage chain with
// several chunks per worker (loop or V placement), or two mirrored
// pipelines with Chimera's f = 1 placement.
#pragma once

#include "../config.hpp"
#include "../placement.hpp"
#include "../schedule.hpp"
#include "../schedule_entry.hpp"

namespace chimera::schedules::detail {

// Loop placement: chunk c of worker r is stage c*P + r (S = v*P stages).
constexpr schedule loop_chain_shape(const schedule_entry& e, const config& c, int chunks) {
    schedule s;
    const int workers = c.stages;
    s.set_shape(e.name, workers * chunks, c.micro_batches, 1, normalized(c, e));
    for (int st = 0; st < workers * chunks; ++st) s.set_placement(0, st, st % workers);
    return s;
}

// V placement: worker r holds stage r (chunk 0) and stage 2P-1-r (chunk 1).
constexpr int v_stage(int workers, int worker, int chunk) { return chunk == 0 ? worker : 2 * workers - 1 - worker; }

constexpr schedule v_chain_shape(const schedule_entry& e, const config& c) {
    schedule s;
    const int workers = c.stages;
    s.set_shape(e.name, 2 * workers, c.micro_batches, 1, normalized(c, e));
    for (int r = 0; r < workers; ++r)
        for (int chunk = 0; chunk < 2; ++chunk) s.set_placement(0, v_stage(workers, r, chunk), r);
    return s;
}

// Two pipelines with Chimera's f = 1 placement (down: stage s on worker s;
// up: stage s on worker D-1-s). Routing is set by the caller.
constexpr schedule mirror_shape(const schedule_entry& e, const config& c) {
    schedule s;
    s.set_shape(e.name, c.stages, c.micro_batches, 2, normalized(c, e));
    for (int p = 0; p < 2; ++p)
        for (int st = 0; st < c.stages; ++st) s.set_placement(p, st, chimera_worker(c.stages, 2, p, st));
    return s;
}

}  // namespace chimera::schedules::detail
