// The small model and data every runtime test trains (CPU and CUDA backends
// alike, so their results are comparable).
#pragma once

#include <cpu/trainer.hpp>

namespace test {

inline const chimera::gpt::dataset& data() {
    static const chimera::gpt::dataset d(16384, 1);
    return d;
}

inline chimera::runtime::cpu::run_shape test_shape(int micro_batches, int data_parallel) {
    chimera::runtime::cpu::run_shape shape;
    shape.model = {data().vocab(), 64, 8, 16, 8, 2};
    shape.batch = 2;
    shape.seq = 8;
    shape.micro_batches = micro_batches;
    shape.data_parallel = data_parallel;
    shape.adam.learning_rate = 1e-2;
    shape.adam.weight_decay = 0.01;
    return shape;
}

}  // namespace test
