// What the executor needs from a backend. A backend owns every buffer
// (parameters, gradients, activation stashes, messages); the executor only
// names ops. Calls may return before the work is done (a CUDA backend
// enqueues on streams); synchronize() waits for everything issued. See
// docs/runtime.md, "The executor in the library".
#pragma once

#include <concepts>
#include <span>

#include "../op.hpp"
#include "../placement.hpp"

namespace chimera::runtime {

template <class B>
concept backend = requires(B& b, const op& o, std::span<const op> group, const replica& r) {
    b.zero_grad(r);             // start of an iteration: gradients of replica r = 0
    b.forward(o);               // stage 0 reads its micro-batch; others consume the received / handed activation
    b.backward(o);              // input gradient and weight gradient of (o.pipeline, o.stage)
    b.backward_input(o);        // input gradient only (I); keeps what backward_weight needs
    b.backward_weight(o);       // weight gradient only (W)
    b.release_activations(o);   // the stash of (pipeline, stage, micro-batch) is dead
    b.comm(group);              // post every member of one group, return when all completed
    b.synchronize();            // wait for everything issued (reductions included)
    b.optimizer_step(r);        // optimizer on replica r after its reduction
};

}  // namespace chimera::runtime
