// Interleaved 1F1B, Megatron-LM's virtual pipeline (schedules.md §4): v
// chunks per worker in loop placement, micro-batches walked in groups of g,
// a warm-up of 2(P-1-r) + (v-1)g forwards, then one forward and one
// backward alternating.
#pragma once

#include <algorithm>
#include <vector>

#include "../config.hpp"
#include "../schedule.hpp"
#include "../schedule_entry.hpp"
#include "chunked_chain.hpp"

namespace chimera {

// Interleaved 1F1B's group size g: the user's, or PyTorch's derivation
// g = N / max(1, floor(N/P)) (schedules.md §4).
constexpr int interleaved_group_size(const config& c) {
    if (c.group_size != 0) return c.group_size;
    const int rounds = std::max(1, c.micro_batches / c.stages);
    return c.micro_batches / rounds;
}

}  // namespace chimera

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
             "interleaved: Megatron's group rule needs P <= g <= N and (N mod g = 0 or N mod g >= P) (schedules.md "
             "§4); got P=", c.stages, ", N=", c.micro_batches, ", g=", c.group_size, ", N mod g=",
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
             "interleaved: PyTorch's rule needs N mod rounds = 0 with rounds = max(1, floor(N/P)) (schedules.md §4); "
             "got P=", c.stages, ", N=", c.micro_batches, ", rounds=", std::max(1, c.micro_batches / c.stages),
             "; pick N as a multiple of P, or a group size g satisfying Megatron's rule");
     }},
};

inline constexpr param_field interleaved_params[] = {
    {"chunks", param_field::type::integer, &config::chunks},
    {"group_size", param_field::type::integer, &config::group_size},
    {"g", param_field::type::derived, nullptr, nullptr, interleaved_group_size},  // the group size in effect
};

constexpr schedule interleaved(const config& c);

inline constexpr schedule_entry interleaved_entry{
    .id = algorithm::interleaved,
    .name = "interleaved",
    .description = "Interleaved 1F1B (Megatron virtual pipeline): v chunks per worker, micro-batches in groups of g",
    .chunks = 0,
    .takes_group_size = true,
    .rules = interleaved_rules,
    .n_constraint = "Any N < 2D or divisible by floor(N/D); a group size g needs D <= g <= N and N mod g = 0 or >= D.",
    .params = interleaved_params,
    .generate = interleaved,
};

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
