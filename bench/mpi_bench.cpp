// The mpi transport's costs on this machine (bench/results/distributed.md),
// in nccl-tests' conventions: time per operation, algbw = bytes / time,
// busbw = algbw for point-to-point and algbw * 2(n-1)/n for an all-reduce
// over n ranks. A plain MPI program:
//
//   mpirun -np 4 --oversubscribe build/bench/mpi_bench [--iterations 50]
//
// Point-to-point: ping-pong between ranks 0 and 1 (the others wait), one
// way = half the round trip; alpha (the smallest message's time) and beta
// (seconds per byte at the largest) are what chimera-sched simulate --p2p
// takes. Reduction: the transport's fixed-order replica reduction over all
// ranks (examples/distributed/mpi_transport.hpp: owner-chunk reduce-scatter
// and allgather), next to MPI_Allreduce
// (whose summation order is unspecified, so the runtime does not use it).
#include <mpi.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include <distributed/all_ranks_world.hpp>
#include <distributed/mpi_control.hpp>
#include <distributed/mpi_transport.hpp>

namespace {

using namespace chimera;
using clock_type = std::chrono::steady_clock;

double seconds_since(clock_type::time_point start) {
    return std::chrono::duration<double>(clock_type::now() - start).count();
}

// Mean one-way time of `bytes` between ranks 0 and 1.
double ping_pong(int rank, std::size_t bytes, int iterations) {
    std::vector<char> buffer(bytes);
    MPI_Barrier(MPI_COMM_WORLD);
    const auto start = clock_type::now();
    for (int i = 0; i < iterations && rank < 2; ++i) {
        if (rank == 0) {
            MPI_Send(buffer.data(), static_cast<int>(bytes), MPI_CHAR, 1, 0, MPI_COMM_WORLD);
            MPI_Recv(buffer.data(), static_cast<int>(bytes), MPI_CHAR, 1, 0, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
        } else {
            MPI_Recv(buffer.data(), static_cast<int>(bytes), MPI_CHAR, 0, 0, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
            MPI_Send(buffer.data(), static_cast<int>(bytes), MPI_CHAR, 0, 0, MPI_COMM_WORLD);
        }
    }
    const double t = seconds_since(start) / iterations / 2;
    MPI_Barrier(MPI_COMM_WORLD);
    return t;
}

// Mean time of one reduction of `count` floats over every rank: the
// transport's (fixed order) or MPI_Allreduce's.
double reduction(runtime::mpi::world& w, int rank, int ranks, std::size_t count, int iterations, bool transport) {
    std::vector<float> buffer(count, 1.0f), out(count);
    MPI_Barrier(MPI_COMM_WORLD);
    const auto start = clock_type::now();
    for (int i = 0; i < iterations; ++i) {
        if (transport) {
            runtime::mpi::channel<float> c(w);
            c.post_reduce({0, rank, ranks}, buffer);
            c.complete();
        } else {
            MPI_Allreduce(buffer.data(), out.data(), static_cast<int>(count), MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
        }
    }
    double t = seconds_since(start) / iterations, slowest = 0;
    MPI_Allreduce(&t, &slowest, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
    return slowest;
}

}  // namespace

int main(int argc, char** argv) {
    const runtime::mpi::control mpi;  // MPI_Init .. MPI_Finalize, as chimera-train
    const int rank = mpi.rank(), ranks = mpi.size();
    int iterations = 50;
    for (int i = 1; i + 1 < argc; ++i)
        if (std::strcmp(argv[i], "--iterations") == 0) iterations = std::max(1, std::atoi(argv[i + 1]));
    if (ranks < 2) {
        if (rank == 0) std::fprintf(stderr, "mpi_bench: run it with mpirun -np 2 or more\n");
        return 2;
    }
    {  // the world's communicators are freed before MPI_Finalize
        // One stage held by every rank: the replica group of all ranks.
        auto w = runtime::mpi::all_ranks_world(std::chrono::milliseconds(60000));

        double alpha = 0, beta = 0;
        if (rank == 0) std::printf("| point-to-point bytes | time (us) | algbw (GB/s) | busbw (GB/s) |\n|---:|---:|---:|---:|\n");
        for (std::size_t bytes = 4; bytes <= (std::size_t{16} << 20); bytes *= 8) {
            const double t = ping_pong(rank, bytes, iterations);
            if (bytes == 4) alpha = t;
            beta = t / static_cast<double>(bytes);
            if (rank == 0) std::printf("| %zu | %.2f | %.3f | %.3f |\n", bytes, t * 1e6, bytes / t / 1e9, bytes / t / 1e9);
        }
        if (rank == 0)
            std::printf("\nalpha %.3g s, beta %.3g s/byte (chimera-sched simulate --p2p %.3g,%.3g)\n\n", alpha, beta, alpha, beta);
        if (rank == 0)
            std::printf("| all-reduce over %d ranks, bytes | fixed-order transport: time (us) | algbw | busbw (GB/s) | "
                        "MPI_Allreduce: time (us) | busbw (GB/s) |\n|---:|---:|---:|---:|---:|---:|\n", ranks);
        const double bus = 2.0 * (ranks - 1) / ranks;
        for (std::size_t bytes = 1024; bytes <= (std::size_t{16} << 20); bytes *= 16) {
            const std::size_t count = bytes / sizeof(float);
            const double fixed = reduction(w, rank, ranks, count, iterations, true);
            const double mpi = reduction(w, rank, ranks, count, iterations, false);
            if (rank == 0)
                std::printf("| %zu | %.1f | %.3f | %.3f | %.1f | %.3f |\n", bytes, fixed * 1e6, bytes / fixed / 1e9,
                            bytes / fixed / 1e9 * bus, mpi * 1e6, bytes / mpi / 1e9 * bus);
        }
    }
    return 0;
}
