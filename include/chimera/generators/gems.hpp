// The gems generator: builds the op lists that schedules/gems.hpp describes.
#pragma once

#include "../config.hpp"
#include "../schedule.hpp"
#include "../schedules/gems.hpp"
#include "chunked_chain.hpp"

namespace chimera::schedules {

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
