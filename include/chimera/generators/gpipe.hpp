// The gpipe generator: builds the op lists that schedules/gpipe.hpp describes.
#pragma once

#include "../config.hpp"
#include "../schedule.hpp"
#include "../schedules/gpipe.hpp"
#include "single_chain.hpp"

namespace chimera::schedules {

constexpr schedule gpipe(const config& c) {
    require_valid(c, gpipe_entry);
    schedule s = detail::single_chain_shape(gpipe_entry, c);
    for (int w = 0; w < c.stages; ++w) {
        s.add_worker();
        for (int m = 0; m < c.micro_batches; ++m) s.push_op(forward(0, m, w));
        for (int m = 0; m < c.micro_batches; ++m) s.push_op(backward(0, m, w));
    }
    return s;
}

}  // namespace chimera::schedules
