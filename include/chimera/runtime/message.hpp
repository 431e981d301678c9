// What travels between workers when a lowered schedule runs: the name of a
// point-to-point message and of a replica group's gradient reduction. A
// transport matches a send with its receive by the whole key, so the key
// names the tensor (kind, pipeline, consuming stage, micro-batch) and the
// two ends (global ranks). See docs/runtime.md, "The executor in the library".
#pragma once

#include <compare>
#include <cstdint>
#include <stdexcept>
#include <string>

#include "../detail/text.hpp"
#include "../op.hpp"

namespace chimera::runtime {

enum class message_kind : std::uint8_t {
    activation,  // output of F, input of the next stage's F
    gradient,    // input gradient of B or I, output gradient of the previous stage's B or I
};

constexpr std::string_view to_string(message_kind k) { return k == message_kind::activation ? "activation" : "gradient"; }

// One point-to-point message. `stage` is the stage that consumes it (the
// receiver's stage); `from` and `to` are global ranks.
struct message_key {
    message_kind kind = message_kind::activation;
    int pipeline = 0;
    int stage = 0;
    int micro_batch = 0;
    int from = 0;
    int to = 0;
    friend constexpr auto operator<=>(const message_key&, const message_key&) = default;
};

// The stage that produced the message (one before an activation's consumer,
// one after a gradient's).
constexpr int producer_stage(const message_key& k) {
    return k.kind == message_kind::activation ? k.stage - 1 : k.stage + 1;
}

// "activation of micro-batch 3, pipeline 0, stage 1 -> 2, rank 0 -> 1"
constexpr std::string to_string(const message_key& k) {
    return chimera::detail::cat(to_string(k.kind), " of micro-batch ", k.micro_batch, ", pipeline ", k.pipeline, ", stage ",
                       producer_stage(k), " -> ", k.stage, ", rank ", k.from, " -> ", k.to);
}

// The message a point-to-point op of `worker` sends or receives. Ranks are
// `rank_offset + worker` (rank_offset = group * workers for data-parallel
// group `group`). Throws std::invalid_argument for a non-p2p op or a
// missing peer.
constexpr message_key message_of(const op& o, int worker, int rank_offset = 0) {
    if (!is_p2p(o.kind) || o.peer == no_peer)
        throw std::invalid_argument("message_of: " + to_string(o) + " is not a point-to-point op with a peer");
    const bool activation = o.kind == op_kind::SEND_F || o.kind == op_kind::RECV_F;
    const bool sending = o.kind == op_kind::SEND_F || o.kind == op_kind::SEND_B;
    message_key k;
    k.kind = activation ? message_kind::activation : message_kind::gradient;
    k.pipeline = o.pipeline;
    k.micro_batch = o.micro_batch;
    k.stage = sending ? (activation ? o.stage + 1 : o.stage - 1) : o.stage;
    k.from = rank_offset + (sending ? worker : o.peer);
    k.to = rank_offset + (sending ? o.peer : worker);
    return k;
}

// The message a compute op consumes (F: its input activation; B or I: its
// output gradient) or produces (F: the next stage's input; B or I: the
// previous stage's output gradient), with both ends placed by `s`. A
// message whose two ends are the same rank is handed over locally; no
// communication op carries it.
template <class Schedule>
constexpr message_key input_of(const Schedule& s, const op& o, int rank_offset = 0) {
    const bool fwd = o.kind == op_kind::F;
    const int from_stage = fwd ? o.stage - 1 : o.stage + 1;
    return {fwd ? message_kind::activation : message_kind::gradient, o.pipeline, o.stage, o.micro_batch,
            rank_offset + s.placement(o.pipeline, from_stage), rank_offset + s.placement(o.pipeline, o.stage)};
}
template <class Schedule>
constexpr message_key output_of(const Schedule& s, const op& o, int rank_offset = 0) {
    const bool fwd = o.kind == op_kind::F;
    const int to_stage = fwd ? o.stage + 1 : o.stage - 1;
    return {fwd ? message_kind::activation : message_kind::gradient, o.pipeline, to_stage, o.micro_batch,
            rank_offset + s.placement(o.pipeline, o.stage), rank_offset + s.placement(o.pipeline, to_stage)};
}

// One member of a replica group's gradient reduction (REDUCE_GRAD): every
// replica of `stage` over all pipelines and data-parallel groups takes part;
// members are summed in ascending `order`, so every run adds the same
// numbers in the same order (bitwise reproducible, replicas stay equal).
struct reduce_key {
    int stage = 0;
    int order = 0;    // position of this member in the fixed summation order
    int members = 0;  // how many members the reduction has
    friend constexpr auto operator<=>(const reduce_key&, const reduce_key&) = default;
};

// The reduction a REDUCE_GRAD of data-parallel group `group` joins: order
// (group, pipeline), pipelines * data_parallel members.
constexpr reduce_key reduction_of(const op& o, int group, int pipelines, int data_parallel) {
    if (o.kind != op_kind::REDUCE_GRAD) throw std::invalid_argument("reduction_of: " + to_string(o) + " is not REDUCE_GRAD");
    return {o.stage, group * pipelines + o.pipeline, pipelines * data_parallel};
}

}  // namespace chimera::runtime
