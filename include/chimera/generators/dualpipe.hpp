// The dualpipe generator: builds the op lists that schedules/dualpipe.hpp describes.
#pragma once

#include <algorithm>
#include <vector>

#include "../config.hpp"
#include "../schedule.hpp"
#include "../schedules/dualpipe.hpp"
#include "chunked_chain.hpp"

namespace chimera::schedules {

namespace detail {

// One of the two directions a worker serves: its stage there and the ids
// of its micro-batches (first_id, first_id + 1, ... in FIFO order).
struct dual_direction {
    int pipeline = 0;
    int stage = 0;
    int first_id = 0;
};

// The eight steps for one worker. own = direction 0, other = direction 1;
// h is the worker's distance from the nearer end (DualPipe: min(r, P-1-r);
// DualPipeV: r), half = P/2 (DualPipeV: P), main = repeats of step 4.
constexpr void dual_pipe_worker(schedule& s, const dual_direction (&direction)[2], int h, int half, int main) {
    int forwards[2] = {0, 0}, backwards[2] = {0, 0};
    std::vector<op> deferred;  // W of split backwards, run oldest first
    std::size_t oldest = 0;
    auto f = [&](int d) {
        s.push_op(forward(direction[d].pipeline, direction[d].first_id + forwards[d]++, direction[d].stage));
    };
    auto b = [&](int d, bool split) {
        const op full = backward(direction[d].pipeline, direction[d].first_id + backwards[d]++, direction[d].stage);
        if (!split) return s.push_op(full);
        s.push_op(input_gradient(full.pipeline, full.micro_batch, full.stage));
        deferred.push_back(weight_gradient(full.pipeline, full.micro_batch, full.stage));
    };
    auto w = [&] { s.push_op(deferred[oldest++]); };
    const int edge = half - h - 1;
    for (int i = 0; i < 2 * edge; ++i) f(0);                          // 1: F(own)
    for (int i = 0; i <= h; ++i) f(0), f(1);                          // 2: F(own) F(other)
    for (int i = 0; i < edge; ++i) b(1, true), w(), f(1);             // 3: I(other) W F(other)
    for (int i = 0; i < main; ++i) f(0), b(1, false), f(1), b(0, false);  // 4: F&B pairs
    for (int i = 0; i < edge; ++i) b(1, false), f(1), b(0, false);    // 5: B(other) F(other)&B(own)
    bool split = false;                                               // 6: B(other) B(own), W deferred from the middle on
    for (int i = 0; i <= h; ++i) {
        if (i == (h + 1) / 2 && h % 2 == 1) split = true;
        b(1, split);
        if (i == (h + 1) / 2 && h % 2 == 0) split = true;
        b(0, split);
    }
    for (int i = 0; i < edge; ++i) w(), b(0, true);                   // 7: W I(own)
    for (int i = 0; i <= h; ++i) w();                                 // 8: W
}

}  // namespace detail

constexpr schedule dualpipe(const config& c) {
    require_valid(c, dualpipe_entry);
    const int p = c.stages, n = c.micro_batches, half = p / 2;
    schedule s = detail::mirror_shape(dualpipe_entry, c);
    // interp. (docs/design/schedule-zoo.md#dualpipe): ids 0 .. N/2-1 go down, N/2 .. N-1 go up.
    for (int m = 0; m < n; ++m) s.set_pipeline_of(m, m < n / 2 ? 0 : 1);
    for (int r = 0; r < p; ++r) {
        s.add_worker();
        const detail::dual_direction down{0, r, 0}, up{1, p - 1 - r, n / 2};
        // "own" is the direction whose stage on this worker is < P/2.
        const detail::dual_direction directions[2] = {r < half ? down : up, r < half ? up : down};
        const int h = std::min(r, p - 1 - r);
        detail::dual_pipe_worker(s, directions, h, half, n / 2 - p + h + 1);
    }
    return s;
}

}  // namespace chimera::schedules
