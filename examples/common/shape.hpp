// The whole run's shape, shared (read-only) by every worker of every
// backend: model, micro-batch size, micro-batches per group, data-parallel
// width, data seed and optimizer settings.
#pragma once

#include <cstdint>

#include "../gpt/model.hpp"
#include "math.hpp"

namespace chimera::runtime {

struct run_shape {
    gpt::gpt_config model;
    int batch = 4;             // rows per micro-batch
    int seq = 32;              // T
    int micro_batches = 1;     // N per pipeline group
    int data_parallel = 1;     // W
    std::uint64_t data_seed = 1;
    math::adamw_params adam{};

    // Values in one activation (or activation gradient) message.
    std::size_t activation_size() const { return static_cast<std::size_t>(batch) * seq * model.channels; }
    // The last stage seeds dlogits with 1/(N*W): gradients are sums over
    // every micro-batch of the global batch.
    template <class R>
    R loss_scale() const {
        return R(1) / static_cast<R>(micro_batches * data_parallel);
    }
};

// The spelling of the time when only the CPU backend had it.
namespace cpu {
using runtime::run_shape;
}

}  // namespace chimera::runtime
