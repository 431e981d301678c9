// The Chimera generator: builds the op lists that schedules/chimera.hpp
// describes, from its layout (direct mode: by closed-form slot; doubling and
// halving: by the phase order), through the zero-bubble pass when the
// backward is split.
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

#include "../config.hpp"
#include "../dependencies.hpp"
#include "../error.hpp"
#include "../placement.hpp"
#include "../schedule.hpp"
#include "../schedules/chimera.hpp"
#include "split_backward.hpp"

namespace chimera::schedules {

namespace detail {

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
                        // Never overwrite: a collision is a generator bug (docs/design/chimera-closed-form.md#pitfalls-of-the-original-implementation).
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

constexpr void chimera_doubling_ops(schedule& s, const chimera_layout& l) {
    const int d = l.stages;
    const int half = d / 2;
    for (int w = 0; w < d; ++w) {
        const int stage_of[2] = {w, d - 1 - w};
        int next[2][2] = {};  // [F, B][pipeline]: FIFO position
        s.add_worker();
        for (const phase_step& step : doubling_phase_order(d, w, l.padded / (2 * d))) {
            const int i = next[step.kind == op_kind::F ? 0 : 1][step.pipeline]++;
            const int original = i / half * d + step.pipeline * half + i % half;
            const int id = l.new_id[static_cast<std::size_t>(original)];
            if (id >= 0) s.push_op(op{step.kind, stage_of[step.pipeline], id, step.pipeline, no_peer});
        }
    }
}

}  // namespace detail

constexpr schedule chimera(const config& requested) {
    require_valid(requested, chimera_entry);
    const config c = normalized(requested, chimera_entry);
    const detail::chimera_layout l = detail::make_chimera_layout(c);
    schedule s;
    s.set_shape(chimera_entry.name, c.stages, detail::chimera_micro_batches(c), l.pipelines, c);
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

}  // namespace chimera::schedules
