// The zb_v generator: builds the op lists that schedules/zb_v.hpp describes.
#pragma once

#include <algorithm>

#include "../config.hpp"
#include "../schedule.hpp"
#include "../schedules/zb_v.hpp"
#include "chunked_chain.hpp"

namespace chimera::schedules {

constexpr schedule zb_v(const config& c) {
    require_valid(c, zb_v_entry);
    const int p = c.stages, n_requested = c.micro_batches, n = std::max(n_requested, 2 * p - 1);
    schedule s = detail::v_chain_shape(zb_v_entry, c);
    for (int r = 0; r < p; ++r) {
        s.add_worker();
        int next[3][2] = {};  // [F, I, W][chunk]: next micro-batch per chunk (increasing)
        auto emit = [&](op_kind kind, int chunk) {
            const int k = kind == op_kind::F ? 0 : kind == op_kind::I ? 1 : 2;
            const int m = next[k][chunk]++;
            if (m < n_requested) s.push_op(op{kind, detail::v_stage(p, r, chunk), m, 0, no_peer});
        };
        const auto& f = next[0];
        for (int i = 0; i < 2 * (p - r) - 1; ++i) emit(op_kind::F, 0);
        for (int i = 0; i < r; ++i) emit(op_kind::F, 1), emit(op_kind::F, 0);
        for (int i = 0; i < p - r; ++i) emit(op_kind::F, 1), emit(op_kind::I, 1), emit(op_kind::W, 1);
        while (f[1] < f[0] || f[0] < n) {
            if (f[0] < n) emit(op_kind::F, 0);
            emit(op_kind::I, 0), emit(op_kind::W, 0), emit(op_kind::F, 1), emit(op_kind::I, 1), emit(op_kind::W, 1);
        }
        for (int i = 0; i < r; ++i) emit(op_kind::I, 0), emit(op_kind::I, 1);
        for (int i = 0; i < p - r; ++i) emit(op_kind::I, 0), emit(op_kind::W, 0);
        while (next[2][1] < n) emit(op_kind::W, 1);
        while (next[2][0] < n) emit(op_kind::W, 0);
    }
    return s;
}

}  // namespace chimera::schedules
