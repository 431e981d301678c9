// Chimera with k = 2f bidirectional pipelines (chimera.md §2-§7).
//
// direct:   the closed form of §5 (every op has a unit-time slot, a worker
//           runs its ops sorted by slot); units concatenate with a 2D shift.
// doubling: the phase form of §7.2 (two forwards of one pipeline per step).
// halving:  the doubling order over 2N half-size micro-batches (§7.3).
// split_backward: the same F/B order through the zero-bubble pass
//           (split_backward.hpp), W passes in the bubbles.
// Any N >= 1: build for the next multiple of the granule and drop the
// missing micro-batches round-robin over the pipelines (§4).
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

#include "../config.hpp"
#include "../error.hpp"
#include "../placement.hpp"
#include "../schedule.hpp"
#include "split_backward.hpp"

namespace chimera::schedules {

namespace detail {

// Micro-batches the schedule carries: halving splits each requested one.
constexpr int chimera_micro_batches(const config& c) {
    return c.scaling_mode == scaling::halving ? 2 * c.micro_batches : c.micro_batches;
}

struct chimera_layout {
    int stages = 0;           // D
    int pipelines = 0;        // k
    int per_pipeline = 0;     // m_p = D / k micro-batches per pipeline per basic unit
    int granule = 0;          // D (direct) or 2D (doubling, halving)
    int padded = 0;           // N' = ceil(N / granule) * granule
    std::vector<int> new_id;  // original id in [0, N') -> kept id in [0, N), or -1 if dropped

    constexpr int pipeline_of_original(int m) const { return (m % stages) / per_pipeline; }
};

constexpr chimera_layout make_chimera_layout(const config& c) {
    chimera_layout l;
    l.stages = c.stages;
    l.pipelines = pipeline_count(c);
    l.per_pipeline = l.stages / l.pipelines;
    l.granule = c.scaling_mode == scaling::direct ? l.stages : 2 * l.stages;
    const int n = chimera_micro_batches(c);
    l.padded = (n + l.granule - 1) / l.granule * l.granule;
    const int last_base = n / l.granule * l.granule;  // first id of the incomplete granule
    const int remainder = n - last_base;
    const int f = l.pipelines / 2;
    l.new_id.assign(static_cast<std::size_t>(l.padded), -1);
    int next = 0;
    for (int m = 0; m < l.padded; ++m) {
        bool keep = m < last_base;
        if (!keep && remainder > 0 && m < last_base + l.granule) {
            const int p = l.pipeline_of_original(m);
            // FIFO position inside the pipeline's block of this granule.
            const int position = (m - last_base) / l.stages * l.per_pipeline + (m % l.stages - p * l.per_pipeline);
            // Round-robin order down_0, up_0, down_1, up_1, ... keeps directions balanced.
            const int turn = p < f ? 2 * p : 2 * (p - f) + 1;
            const int count = remainder / l.pipelines + (turn < remainder % l.pipelines ? 1 : 0);
            keep = position < count;
        }
        if (keep) l.new_id[static_cast<std::size_t>(m)] = next++;
    }
    return l;
}

constexpr void chimera_direct_ops(schedule& s, const chimera_layout& l) {
    const int d = l.stages;
    const int span = 2 * l.padded + 2 * l.per_pipeline - 2;  // 2N' + D/f - 2
    const int units = l.padded / d;
    std::vector<op> by_slot(static_cast<std::size_t>(span));
    std::vector<std::uint8_t> taken(static_cast<std::size_t>(span));  // not vector<bool>: clang cannot evaluate it in constexpr
    for (int w = 0; w < d; ++w) {
        std::fill(taken.begin(), taken.end(), std::uint8_t{0});
        for (int p = 0; p < l.pipelines; ++p) {
            const int st = chimera_stage(d, l.pipelines, p, w);
            for (int u = 0; u < units; ++u)
                for (int j = 0; j < l.per_pipeline; ++j) {
                    const int id = l.new_id[static_cast<std::size_t>(u * d + p * l.per_pipeline + j)];
                    if (id < 0) continue;
                    const int f_slot = st + 2 * j + 2 * d * u;
                    const int b_slot = 2 * d - 1 - st + 2 * j + 2 * d * u;
                    for (auto [slot, o] : {std::pair{f_slot, forward(p, id, st)}, std::pair{b_slot, backward(p, id, st)}}) {
                        // Never overwrite: a collision is a generator bug (chimera.md §13.1).
                        if (taken[static_cast<std::size_t>(slot)])
                            throw schedule_error("T1", ::chimera::detail::cat("chimera: internal error, two ops of worker ",
                                                                              w, " need slot ", slot));
                        taken[static_cast<std::size_t>(slot)] = true;
                        by_slot[static_cast<std::size_t>(slot)] = o;
                    }
                }
        }
        s.add_worker();
        for (int slot = 0; slot < span; ++slot)
            if (taken[static_cast<std::size_t>(slot)]) s.push_op(by_slot[static_cast<std::size_t>(slot)]);
    }
}

// Phase form of forward doubling (chimera.md §7.2), f = 1.
constexpr void chimera_doubling_ops(schedule& s, const chimera_layout& l) {
    const int d = l.stages;
    const int half = d / 2;
    const int doubled_units = l.padded / (2 * d);
    for (int w = 0; w < d; ++w) {
        const int m = std::min(w, d - 1 - w);
        const int a = half - m, b = m, c = b + half;
        const int own = w < half ? 0 : 1;  // the pipeline whose stage here is < D/2
        const int other = 1 - own;
        const int stage_of[2] = {w, d - 1 - w};
        int next_forward[2] = {0, 0}, next_backward[2] = {0, 0};
        s.add_worker();
        // i-th micro-batch of pipeline p in FIFO order, as a kept id (or -1).
        auto emit = [&](op_kind kind, int p) {
            int& counter = kind == op_kind::F ? next_forward[p] : next_backward[p];
            const int i = counter++;
            const int original = i / half * d + p * half + i % half;
            const int id = l.new_id[static_cast<std::size_t>(original)];
            if (id >= 0) s.push_op(op{kind, stage_of[p], id, p, no_peer});
        };
        for (int v = 0; v < doubled_units; ++v) {
            for (int r = 0; r < a; ++r) {
                if (v > 0) emit(op_kind::B, own);
                emit(op_kind::F, own), emit(op_kind::F, own);
            }
            for (int r = 0; r < b; ++r)
                emit(op_kind::F, other), emit(op_kind::F, other), emit(op_kind::F, own), emit(op_kind::F, own);
            for (int r = 0; r < a; ++r) emit(op_kind::F, other), emit(op_kind::F, other), emit(op_kind::B, other);
            for (int r = 0; r < c; ++r) emit(op_kind::B, own), emit(op_kind::B, other);
        }
        for (int r = 0; r < a; ++r) emit(op_kind::B, own);
    }
}

}  // namespace detail

constexpr schedule chimera(const config& requested) {
    require_valid(requested);
    const config c = normalized(requested);
    const detail::chimera_layout l = detail::make_chimera_layout(c);
    schedule s;
    s.set_shape("chimera", c.stages, detail::chimera_micro_batches(c), l.pipelines, c);
    for (int p = 0; p < l.pipelines; ++p)
        for (int st = 0; st < c.stages; ++st) s.set_placement(p, st, chimera_worker(c.stages, l.pipelines, p, st));
    for (int m = 0; m < l.padded; ++m)
        if (l.new_id[static_cast<std::size_t>(m)] >= 0)
            s.set_pipeline_of(l.new_id[static_cast<std::size_t>(m)], l.pipeline_of_original(m));
    if (c.scaling_mode == scaling::direct)
        detail::chimera_direct_ops(s, l);
    else
        detail::chimera_doubling_ops(s, l);
    // Zero-bubble Chimera: every worker may hold as many micro-batches as it
    // does without the split, so the W passes cost no extra memory.
    if (c.split_backward) return split_backward(s, peak_activations(s));
    return s;
}

// Closed-form unit-time slot of an op of a Chimera schedule in direct mode
// with full units (chimera.md §5): the slot it has in the paper's figures.
template <class S>
constexpr int chimera_slot(const S& s, const op& o) {
    const int d = s.stages();
    const int per_pipeline = d / s.pipelines();
    const int unit = o.micro_batch / d;
    const int j = o.micro_batch % d - o.pipeline * per_pipeline;
    const int base = o.kind == op_kind::F ? o.stage : 2 * d - 1 - o.stage;
    return base + 2 * j + 2 * d * unit;
}

// True when chimera_slot applies: a Chimera schedule in direct mode with full
// units whose shape matches valid params (a file can claim anything).
template <class S>
constexpr bool has_closed_form(const S& s) {
    const config& c = s.params();
    return s.name() == "chimera" && c.schedule == algorithm::chimera && c.scaling_mode == scaling::direct &&
           !c.split_backward && validate_code(c) == config_errc::ok && s.stages() == c.stages &&
           s.workers() == c.stages && s.pipelines() == pipeline_count(c) && s.micro_batches() == c.micro_batches &&
           s.micro_batches() % s.stages() == 0;
}

}  // namespace chimera::schedules
