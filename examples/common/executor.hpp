// The executor (runtime.md §2): walks one worker's lowered op list and calls
// the backend. Nothing here knows which schedule produced the list; any
// valid lowered list runs.
#pragma once

#include <span>

#include <chimera/op.hpp>
#include <chimera/placement.hpp>

#include "backend.hpp"

namespace chimera::runtime {

// One iteration of one worker: zero gradients, run the list (a maximal run
// of comm ops is one group), wait, then one optimizer step per replica.
template <backend B>
void run_iteration(std::span<const op> ops, std::span<const replica> owned, B& b) {
    for (const replica& r : owned) b.zero_grad(r);
    std::size_t i = 0;
    while (i < ops.size()) {
        if (is_comm(ops[i].kind)) {
            std::size_t end = i;
            while (end < ops.size() && is_comm(ops[end].kind)) ++end;
            b.comm(ops.subspan(i, end - i));
            i = end;
            continue;
        }
        const op& o = ops[i++];
        switch (o.kind) {
            case op_kind::F: b.forward(o); break;
            case op_kind::B:
                b.backward(o);
                b.release_activations(o);  // dead after the full backward
                break;
            case op_kind::I: b.backward_input(o); break;
            case op_kind::W:
                b.backward_weight(o);
                b.release_activations(o);  // dead after the weight half
                break;
            default: break;
        }
    }
    b.synchronize();
    for (const replica& r : owned) b.optimizer_step(r);
}

}  // namespace chimera::runtime
