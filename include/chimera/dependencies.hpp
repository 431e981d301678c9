// What the IR itself says about a schedule, without running it: where each
// compute op sits (the lookup dependencies are resolved with) and the peak
// number of micro-batches a worker holds. Generators and passes both use it;
// it depends on the IR headers only.
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

#include "op.hpp"
#include "schedule.hpp"

namespace chimera {

inline constexpr std::int32_t no_op = -1;

// Where each compute op of (micro-batch, stage) sits in all_ops(): the
// lookup that dependencies are resolved with. Out-of-range ops are skipped
// (the checker reports them); a duplicate keeps its first position.
struct compute_index {
    int stages = 0;
    std::vector<std::int32_t> forward, input_backward, weight_backward;  // [micro_batch * stages + stage]

    constexpr std::size_t key(int micro_batch, int stage) const {
        return static_cast<std::size_t>(micro_batch) * stages + stage;
    }
    constexpr std::vector<std::int32_t>& table(op_kind kind) {
        return kind == op_kind::F ? forward : kind == op_kind::W ? weight_backward : input_backward;
    }
    constexpr const std::vector<std::int32_t>& table(op_kind kind) const {
        return kind == op_kind::F ? forward : kind == op_kind::W ? weight_backward : input_backward;
    }
    // The ops that must finish before `o` can start (at most two).
    constexpr int dependencies(const op& o, std::int32_t out[2]) const {
        int count = 0;
        auto add = [&](const std::vector<std::int32_t>& t, int stage) { out[count++] = t[key(o.micro_batch, stage)]; };
        switch (o.kind) {
            case op_kind::F:
                if (o.stage > 0) add(forward, o.stage - 1);
                break;
            case op_kind::B:
            case op_kind::I:
                add(forward, o.stage);
                if (o.stage + 1 < stages) add(input_backward, o.stage + 1);
                break;
            case op_kind::W: add(input_backward, o.stage); break;
            default: break;
        }
        return count;
    }
};

template <schedule_like S>
constexpr bool in_range(const S& s, const op& o) {
    return o.stage >= 0 && o.stage < s.stages() && o.micro_batch >= 0 && o.micro_batch < s.micro_batches();
}

template <schedule_like S>
constexpr compute_index make_compute_index(const S& s) {
    compute_index index;
    index.stages = s.stages();
    const std::size_t size = static_cast<std::size_t>(s.micro_batches()) * s.stages();
    index.forward.assign(size, no_op);
    index.input_backward.assign(size, no_op);
    index.weight_backward.assign(size, no_op);
    std::int32_t position = 0;
    for (int w = 0; w < s.workers(); ++w)
        for (const op& o : s.ops(w)) {
            if (is_compute(o.kind) && in_range(s, o)) {
                std::int32_t& slot = index.table(o.kind)[index.key(o.micro_batch, o.stage)];
                if (slot == no_op) slot = position;
            }
            ++position;
        }
    return index;
}

// Peak number of micro-batches whose activations a worker holds: +1 at F,
// -1 at B (or at W when the backward is split), docs/design/schedule-rules.md#memory-accounting.
template <schedule_like S>
constexpr int peak_activations(const S& s, int worker) {
    int live = 0, peak = 0;
    for (const op& o : s.ops(worker)) {
        if (o.kind == op_kind::F) peak = std::max(peak, ++live);
        if (o.kind == op_kind::B || o.kind == op_kind::W) --live;
    }
    return peak;
}

template <schedule_like S>
constexpr std::vector<int> peak_activations(const S& s) {
    std::vector<int> peaks;
    for (int w = 0; w < s.workers(); ++w) peaks.push_back(peak_activations(s, w));
    return peaks;
}

}  // namespace chimera
