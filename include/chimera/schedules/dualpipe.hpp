// DualPipe (DeepSeek; docs/design/schedule-zoo.md#dualpipe): two directions over Chimera's f = 1
// placement with replicated stages, the eight-step body of DeepSeek's
// implementation (shared with DualPipeV, docs/design/schedule-zoo.md#dualpipev). Compound F&B pairs are
// emitted as F then B: the IR has no compound op, so a pair costs t_F + t_B.
#pragma once

#include <algorithm>
#include <vector>

#include "../config.hpp"
#include "../schedule.hpp"
#include "../schedule_entry.hpp"

namespace chimera::schedules {

namespace detail {

// N >= 2P: DualPipe and DualPipeV need it to fill their steady phase.
inline constexpr config_rule fill_steady_phase_rule{
    config_errc::too_few_micro_batches, "S1", "chimera rule S1: dualpipe and dualpipev need N >= 2P",
    [](const rule_input& x) { return x.c.micro_batches < 2 * x.c.stages; },
    [](const rule_input& x) {
        return ::chimera::detail::cat(x.entry.name, ": needs N >= 2P micro-batches to fill its steady phase (got N=",
                                      x.c.micro_batches, ", P=", x.c.stages, ")");
    }};

}  // namespace detail

inline constexpr config_rule dualpipe_rules[] = {
    {config_errc::dualpipe_odd_workers, "S1", "chimera rule S1: dualpipe needs an even number of workers",
     [](const rule_input& x) { return x.c.stages % 2 != 0; },
     [](const rule_input& x) {
         return ::chimera::detail::cat("dualpipe: the number of workers P = D must be even (got ", x.c.stages,
                                       "); each half of the workers starts one direction");
     }},
    {config_errc::dualpipe_odd_micro_batches, "S1", "chimera rule S1: dualpipe needs an even N",
     [](const rule_input& x) { return x.c.micro_batches % 2 != 0; },
     [](const rule_input& x) {
         return ::chimera::detail::cat("dualpipe: N must be even, N/2 per direction (got N=", x.c.micro_batches, ")");
     }},
    detail::fill_steady_phase_rule,
};

inline constexpr schedule_entry dualpipe_entry{
    .id = algorithm::dualpipe,
    .name = "dualpipe",
    .description = "DualPipe (DeepSeek): two directions over mirrored replicas, forward and backward overlapped",
    .default_pipelines = 2,
    .fixed_pipelines = 2,
    .rules = dualpipe_rules,
    .n_constraint = "D even, N even and N >= 2D.",
};

}  // namespace chimera::schedules
