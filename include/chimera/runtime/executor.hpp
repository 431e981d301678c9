// The executor: walks one worker's lowered op list and calls the backend.
// Nothing here knows which schedule produced the list; any valid lowered
// list runs. See docs/runtime.md, "The executor in the library".
#pragma once

#include <cstddef>
#include <span>

#include "../op.hpp"
#include "../placement.hpp"
#include "backend.hpp"

namespace chimera::runtime {

// The end of the maximal run of communication ops that starts at `begin`
// (one comm group: posted together, completed together).
inline std::size_t comm_group_end(std::span<const op> ops, std::size_t begin) {
    std::size_t end = begin;
    while (end < ops.size() && is_comm(ops[end].kind)) ++end;
    return end;
}

// One compute op. B and W release the stash (its activations are dead).
template <backend B>
void run_compute(const op& o, B& b) {
    switch (o.kind) {
        case op_kind::F: b.forward(o); break;
        case op_kind::B:
            b.backward(o);
            b.release_activations(o);
            break;
        case op_kind::I: b.backward_input(o); break;
        case op_kind::W:
            b.backward_weight(o);
            b.release_activations(o);
            break;
        default: break;
    }
}

// One iteration of one worker: zero the gradients of the replicas it owns,
// run the list (a maximal run of comm ops is one group), wait, then one
// optimizer step per replica.
template <backend B>
void run_iteration(std::span<const op> ops, std::span<const replica> owned, B& b) {
    for (const replica& r : owned) b.zero_grad(r);
    for (std::size_t i = 0; i < ops.size();) {
        if (is_comm(ops[i].kind)) {
            const std::size_t end = comm_group_end(ops, i);
            b.comm(ops.subspan(i, end - i));
            i = end;
        } else {
            run_compute(ops[i++], b);
        }
    }
    b.synchronize();
    for (const replica& r : owned) b.optimizer_step(r);
}

}  // namespace chimera::runtime
