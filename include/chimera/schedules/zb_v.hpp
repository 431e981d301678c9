// ZB-V (Qi et al.; schedules.md §8): V placement (worker r holds stages r and
// 2P-1-r), backward split into I and W, built from the seven-phase recipe
// below for n = max(N, 2P-1) micro-batches; ops of micro-batches >= N are then
// dropped (as PyTorch does), which keeps every dependency order intact.
#pragma once

#include <algorithm>

#include "../config.hpp"
#include "../schedule.hpp"
#include "../schedule_entry.hpp"
#include "chunked_chain.hpp"

namespace chimera::schedules {

constexpr schedule zb_v(const config& c);

inline constexpr schedule_entry zb_v_entry{
    .id = algorithm::zb_v,
    .name = "zb-v",
    .description = "ZB-V: zero bubble on a V placement (two chunks per worker)",
    .chunks = 2,
    .n_constraint = "Any N >= 1; zero bubble from N >= 2D.",
    .generate = zb_v,
};

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
