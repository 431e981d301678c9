// One operation of a schedule: what a worker does in one step.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "detail/text.hpp"

namespace chimera {

// Spellings follow PyTorch's pipelining actions (docs/design/formats.md), so that CSV
// export is a direct print.
enum class op_kind : std::uint8_t {
    F,            // forward
    B,            // full backward: input and weight gradient
    I,            // backward, input gradient only
    W,            // backward, weight gradient only (needs the I of the same stage and micro-batch)
    SEND_F,       // activation send
    RECV_F,       // activation receive
    SEND_B,       // gradient send
    RECV_B,       // gradient receive
    REDUCE_GRAD,  // this replica's contribution to the stage's gradient all-reduce
};

inline constexpr int op_kind_count = 9;

constexpr std::string_view to_string(op_kind kind) {
    constexpr std::string_view names[] = {"F",      "B",      "I",      "W",          "SEND_F",
                                          "RECV_F", "SEND_B", "RECV_B", "REDUCE_GRAD"};
    return names[static_cast<int>(kind)];
}

constexpr std::optional<op_kind> parse_op_kind(std::string_view name) {
    for (int i = 0; i < op_kind_count; ++i)
        if (to_string(static_cast<op_kind>(i)) == name) return static_cast<op_kind>(i);
    return std::nullopt;
}

constexpr bool is_compute(op_kind kind) { return kind <= op_kind::W; }
constexpr bool is_forward(op_kind kind) { return kind == op_kind::F; }
// Ops that carry a gradient to the previous stage (a full B or its I half).
constexpr bool is_input_backward(op_kind kind) { return kind == op_kind::B || kind == op_kind::I; }
constexpr bool is_p2p(op_kind kind) { return kind >= op_kind::SEND_F && kind <= op_kind::RECV_B; }
constexpr bool is_comm(op_kind kind) { return kind >= op_kind::SEND_F; }

inline constexpr std::int32_t no_micro_batch = -1;
inline constexpr std::int32_t no_peer = -1;

struct op {
    op_kind kind = op_kind::F;
    std::int32_t stage = 0;
    std::int32_t micro_batch = no_micro_batch;  // absent for REDUCE_GRAD
    std::int32_t pipeline = 0;
    std::int32_t peer = no_peer;  // communication ops only: the other worker

    friend constexpr bool operator==(const op&, const op&) = default;
};

// One op as compact text: kind, micro-batch (none for REDUCE_GRAD), stage,
// pipeline, and the peer of a communication op: "F3s1p0", "SEND_B2s1p1@0",
// "REDUCE_GRADs2p0". For logs, tests and tables; the file formats (JSON,
// CSV, trace, SVG) have their own spellings.
constexpr std::string to_string(const op& o) {
    using detail::cat;
    std::string text(to_string(o.kind));
    if (o.kind != op_kind::REDUCE_GRAD) text += cat(o.micro_batch);
    text += cat("s", o.stage, "p", o.pipeline);
    if (o.peer != no_peer) text += cat("@", o.peer);
    return text;
}

// One op in words, for diagnostics: "F(micro-batch 3, stage 1, pipeline 0, peer 2)".
constexpr std::string describe(const op& o) {
    using detail::cat;
    if (o.kind == op_kind::REDUCE_GRAD) return cat("REDUCE_GRAD(stage ", o.stage, ", pipeline ", o.pipeline, ")");
    std::string text = cat(to_string(o.kind), "(micro-batch ", o.micro_batch, ", stage ", o.stage, ", pipeline ",
                           o.pipeline);
    if (o.peer != no_peer) text += cat(", peer ", o.peer);
    return text + ")";
}

// Shorthands for generators and tests.
constexpr op forward(std::int32_t pipeline, std::int32_t micro_batch, std::int32_t stage) {
    return {op_kind::F, stage, micro_batch, pipeline, no_peer};
}
constexpr op backward(std::int32_t pipeline, std::int32_t micro_batch, std::int32_t stage) {
    return {op_kind::B, stage, micro_batch, pipeline, no_peer};
}
constexpr op input_gradient(std::int32_t pipeline, std::int32_t micro_batch, std::int32_t stage) {
    return {op_kind::I, stage, micro_batch, pipeline, no_peer};
}
constexpr op weight_gradient(std::int32_t pipeline, std::int32_t micro_batch, std::int32_t stage) {
    return {op_kind::W, stage, micro_batch, pipeline, no_peer};
}

}  // namespace chimera
