// Pipelined training on one GPU: D*W virtual workers (one host thread and
// one stream each) run their lowered op lists through the library executor,
// talking through the local transport. It is the one trainer of
// examples/common over cuda_backend; the sequential GPU reference is the
// same trainer on a one-stage schedule (sequential_schedule).
#pragma once

#include "../common/trainer.hpp"
#include "backend.hpp"

namespace chimera::runtime::gpu {

using runtime::step_result;
using runtime::train_state;

using gpu_pipeline_trainer = runtime::trainer<cuda_backend>;

}  // namespace chimera::runtime::gpu
