// The interleaved generator: builds the op lists that schedules/interleaved.hpp describes.
#pragma once

#include <algorithm>
#include <vector>

#include "../config.hpp"
#include "../schedule.hpp"
#include "../schedules/interleaved.hpp"
#include "chunked_chain.hpp"

namespace chimera::schedules {

namespace detail {

struct chunk_item {
    int micro_batch = 0;
    int chunk = 0;
};

// The forward sequence: groups [lo, lo+g), each emitting chunk 0 for every
// micro-batch of the group, then chunk 1, ... (the last group may be shorter).
constexpr std::vector<chunk_item> interleaved_forward_sequence(int micro_batches, int chunks, int group) {
    std::vector<chunk_item> items;
    items.reserve(static_cast<std::size_t>(micro_batches) * chunks);
    for (int lo = 0; lo < micro_batches; lo += group) {
        const int size = std::min(group, micro_batches - lo);
        for (int c = 0; c < chunks; ++c)
            for (int m = lo; m < lo + size; ++m) items.push_back({m, c});
    }
    return items;
}

}  // namespace detail

constexpr schedule interleaved(const config& c) {
    require_valid(c, interleaved_entry);
    const int workers = c.stages, v = c.chunks, n = c.micro_batches, total = n * v;
    schedule s = detail::loop_chain_shape(interleaved_entry, c, v);
    const std::vector<detail::chunk_item> order =
        detail::interleaved_forward_sequence(n, v, interleaved_group_size(c));
    for (int r = 0; r < workers; ++r) {
        s.add_worker();
        // Backward item i is forward item i with chunk c replaced by v-1-c.
        auto fwd = [&](int i) {
            const auto& item = order[static_cast<std::size_t>(i)];
            s.push_op(forward(0, item.micro_batch, item.chunk * workers + r));
        };
        auto bwd = [&](int i) {
            const auto& item = order[static_cast<std::size_t>(i)];
            s.push_op(backward(0, item.micro_batch, (v - 1 - item.chunk) * workers + r));
        };
        const int warm_up = std::min(2 * (workers - 1 - r) + (v - 1) * interleaved_group_size(c), total);
        for (int i = 0; i < warm_up; ++i) fwd(i);
        for (int i = 0; i < total - warm_up; ++i) fwd(warm_up + i), bwd(i);
        for (int i = total - warm_up; i < total; ++i) bwd(i);
    }
    return s;
}

}  // namespace chimera::schedules
