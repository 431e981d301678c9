// Shape shared by the schedules that are one stage chain on P = D workers.
#pragma once

#include "../config.hpp"
#include "../schedule.hpp"
#include "../schedule_entry.hpp"

namespace chimera::schedules::detail {

constexpr schedule single_chain_shape(const schedule_entry& e, const config& c) {
    schedule s;
    s.set_shape(e.name, c.stages, c.micro_batches, 1, normalized(c, e));
    for (int st = 0; st < c.stages; ++st) s.set_placement(0, st, st);
    return s;  // routing is all zeros: every micro-batch takes pipeline 0
}

}  // namespace chimera::schedules::detail
