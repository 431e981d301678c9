// What one message between two ranks costs: alpha + bytes * beta seconds,
// zero for the in-process copies of the local transport. Multi-process
// trainers measure it (rank_trainer::network(): a ping-pong between
// ranks); the step prediction (cpu/trainer.hpp, predict_step) charges it
// to every p2p message and to the replica all-reduce, as
// chimera::cost_model does.
#pragma once

namespace chimera::runtime {

struct link_costs {
    double alpha = 0;  // seconds per message
    double beta = 0;   // seconds per byte
};

}  // namespace chimera::runtime
