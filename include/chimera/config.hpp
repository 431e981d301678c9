// What a user asks for: the parameters every generator reads. A config is a
// structural type, so it can be a template argument (compile-time schedules)
// as well as a run-time value. The rules that make a request valid live with
// each schedule (schedules/*.hpp, listed in registry.hpp); the rules shared by
// every schedule are in schedule_entry.hpp.
#pragma once

#include <algorithm>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "detail/text.hpp"
#include "error.hpp"

namespace chimera {

// One value per schedule of registry.hpp (whose entries give the names).
// New schedules are appended so that existing values keep their numbers.
enum class algorithm : std::uint8_t {
    gpipe,
    one_f_one_b,
    chimera,
    custom,
    interleaved,  // Megatron virtual pipeline (docs/design/schedule-zoo.md#interleaved-1f1b-and-looped-bfs)
    looped_bfs,   // PyTorch LoopedBFS (docs/design/schedule-zoo.md#interleaved-1f1b-and-looped-bfs)
    gems,         // two mirrored replicas, one micro-batch each in flight (docs/design/schedule-zoo.md#gems)
    zb_h1,        // zero bubble, 1F1B memory (docs/design/schedule-zoo.md#zb-h1)
    zb_h2,        // zero bubble, about twice the memory (docs/design/schedule-zoo.md#zb-h2)
    zb_v,         // zero bubble, V placement (docs/design/schedule-zoo.md#zb-v)
    dualpipe,     // DeepSeek, bidirectional with replicated stages (docs/design/schedule-zoo.md#dualpipe)
    dualpipev,    // DualPipe cut in half, V placement (docs/design/schedule-zoo.md#dualpipev)
};
// Chimera's answers to N > D (docs/design/chimera-closed-form.md#more-micro-batches-than-stages).
enum class scaling : std::uint8_t { direct, doubling, halving };

constexpr std::string_view to_string(scaling s) {
    constexpr std::string_view names[] = {"direct", "doubling", "halving"};
    return names[static_cast<int>(s)];
}
constexpr std::optional<scaling> parse_scaling(std::string_view name) {
    for (auto s : {scaling::direct, scaling::doubling, scaling::halving})
        if (to_string(s) == name) return s;
    return std::nullopt;
}

struct config {
    algorithm schedule = algorithm::chimera;
    int stages = 4;          // D
    int micro_batches = 4;   // N requested (halving splits each into two, docs/design/chimera-closed-form.md#backward-halving)
    int pipelines = 0;       // k; 0 = the algorithm's default (2 for Chimera, 1 otherwise)
    scaling scaling_mode = scaling::direct;
    int data_parallel = 1;   // W
    int chunks = 2;          // v, model chunks per worker: interleaved and looped BFS (ZB-V, DualPipeV: exactly 2)
    int group_size = 0;      // interleaved: micro-batches per group g; 0 = derive (PyTorch rule, docs/design/schedule-zoo.md#interleaved-1f1b-and-looped-bfs)
    bool split_backward = false;  // chimera: split each B into I and W (zero-bubble Chimera)

    friend constexpr bool operator==(const config&, const config&) = default;
};

// Upper bound on stages * micro-batches so that op counts and slots fit in
// 32-bit fields with room to spare (2^24 ops per worker list is far beyond
// any real training iteration).
inline constexpr long long max_stage_micro_batch_product = 1LL << 24;

enum class config_errc : std::uint8_t {
    ok,
    stages_below_one,
    micro_batches_below_one,
    data_parallel_below_one,
    too_large,
    odd_stages,
    pipelines_odd,
    pipelines_not_dividing,
    single_chain_pipelines,
    scaling_not_chimera,
    scaling_needs_two_pipelines,
    custom_not_generated,
    chunks_below_one,
    chunks_not_applicable,
    group_size_not_interleaved,
    interleaved_group_rule,
    interleaved_rounds_rule,
    split_backward_not_chimera,
    two_pipeline_schedule,
    dualpipe_odd_workers,
    dualpipe_odd_micro_batches,
    too_few_micro_batches,
    schedule_rule,  // a rule of a schedule added after these codes: see the rule's id and text
};

struct config_error {
    std::string_view rule;  // "S1" for every parameter rule (docs/design/schedule-rules.md)
    std::string message;
};

}  // namespace chimera
