// Interleaved 1F1B, Megatron-LM's virtual pipeline (docs/design/schedule-zoo.md#interleaved-1f1b-and-looped-bfs): v
// chunks per worker in loop placement, micro-batches walked in groups of g,
// a warm-up of 2(P-1-r) + (v-1)g forwards, then one forward and one
// backward alternating.
#pragma once

#include <algorithm>
#include <vector>

#include "../config.hpp"
#include "../schedule.hpp"
#include "../schedule_entry.hpp"

namespace chimera {

// Interleaved 1F1B's group size g: the user's, or PyTorch's derivation
// g = N / max(1, floor(N/P)) (docs/design/schedule-zoo.md#interleaved-1f1b-and-looped-bfs).
constexpr int interleaved_group_size(const config& c) {
    if (c.group_size != 0) return c.group_size;
    const int rounds = std::max(1, c.micro_batches / c.stages);
    return c.micro_batches / rounds;
}

}  // namespace chimera

namespace chimera::schedules {

inline constexpr config_rule interleaved_rules[] = {
    {config_errc::interleaved_group_rule, "S1",
     "chimera rule S1: interleaved needs P <= g <= N and (N mod g = 0 or N mod g >= P)",
     [](const rule_input& x) {
         const int n = x.c.micro_batches, p = x.c.stages, g = x.c.group_size;
         return g != 0 && (g < p || g > n || (n % g != 0 && n % g < p));
     },
     [](const rule_input& x) {
         const config& c = x.c;
         return ::chimera::detail::cat(
             "interleaved: Megatron's group rule needs P <= g <= N and (N mod g = 0 or N mod g >= P) "
             "(docs/design/schedule-zoo.md#interleaved-1f1b-and-looped-bfs); got P=", c.stages, ", N=", c.micro_batches, ", g=", c.group_size, ", N mod g=",
             c.group_size > 0 ? c.micro_batches % c.group_size : 0, "; smaller groups stall in dependency bubbles");
     }},
    {config_errc::interleaved_rounds_rule, "S1",
     "chimera rule S1: interleaved needs N mod max(1, N/P) = 0 when g is derived",
     [](const rule_input& x) {
         const int n = x.c.micro_batches, p = x.c.stages;
         return x.c.group_size == 0 && n % std::max(1, n / p) != 0;
     },
     [](const rule_input& x) {
         const config& c = x.c;
         return ::chimera::detail::cat(
             "interleaved: PyTorch's rule needs N mod rounds = 0 with rounds = max(1, floor(N/P)) (docs/design/schedule-zoo.md#interleaved-1f1b-and-looped-bfs); "
             "got P=", c.stages, ", N=", c.micro_batches, ", rounds=", std::max(1, c.micro_batches / c.stages),
             "; pick N as a multiple of P, or a group size g satisfying Megatron's rule");
     }},
};

inline constexpr param_field interleaved_params[] = {
    {"chunks", param_field::type::integer, &config::chunks},
    {"group_size", param_field::type::integer, &config::group_size},
    {"g", param_field::type::derived, nullptr, nullptr, interleaved_group_size},  // the group size in effect
};

inline constexpr schedule_entry interleaved_entry{
    .id = algorithm::interleaved,
    .name = "interleaved",
    .description = "Interleaved 1F1B (Megatron virtual pipeline): v chunks per worker, micro-batches in groups of g",
    .chunks = 0,
    .takes_group_size = true,
    .rules = interleaved_rules,
    .n_constraint = "Any N < 2D or divisible by floor(N/D); a group size g needs D <= g <= N and N mod g = 0 or >= D.",
    .params = interleaved_params,
};

}  // namespace chimera::schedules
