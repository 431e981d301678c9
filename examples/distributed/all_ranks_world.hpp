// A world in which every rank holds one replica of one stage: the
// reduction's benchmark (bench/mpi_bench.cpp) and test
// (tests/distributed/mpi_reduce.cpp). Kept out of mpi_transport.hpp, which
// needs no schedule generator.
#pragma once

#include <mpi.h>

#include <chrono>

#include <chimera/config.hpp>
#include <chimera/generate.hpp>
#include <chimera/lower.hpp>

#include "mpi_transport.hpp"

namespace chimera::runtime::mpi {

// A world of one stage held by every rank (one-stage GPipe, W = world
// size): stage 0's replica group is every rank, one member each (M =
// ranks), for benchmarks and tests of the reduction. Collective.
inline world all_ranks_world(std::chrono::milliseconds watchdog) {
    int ranks = 0;
    MPI_Comm_size(MPI_COMM_WORLD, &ranks);
    config c;
    c.schedule = algorithm::gpipe;
    c.stages = 1;
    c.micro_batches = 1;
    return world(lower(generate(c), {}), rank_map{1, ranks, rank_layout::group_major}, watchdog);
}

}  // namespace chimera::runtime::mpi
