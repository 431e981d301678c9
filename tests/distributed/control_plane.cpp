// The two control planes (examples/distributed/control_plane.hpp) give the
// same answers, under mpirun -np N:
//   control_plane mpi        over MPI_COMM_WORLD (mpi_control.hpp)
//   control_plane nccl DIR   over the emulated NCCL after the shared-file
//                            rendezvous in DIR (nccl_control.hpp; rank and
//                            size from OpenMPI's variables)
// Properties, over a grid of length patterns (all empty, rank-dependent
// with empty ones among them, one long): all_gather returns every rank's
// exact bytes in rank order on every rank; gather the same on rank 0 and
// nothing elsewhere; broadcast rank 0's bytes (lengths 0, 1, 1000) whatever
// the others pass; barrier returns. Exit 0 when every rank agrees.
//   control_plane nccl-silent DIR
//                            rank 1 joins the communicator, then stays
//                            silent (sleeps); every other rank's all_gather
//                            must give up after the 2 s timeout, abort its
//                            communicator and exit 1 naming the cause
//                            (NCCL itself would wait for ever).
//   control_plane mpi-silent
//                            the same over MPI: rank 1 stays silent; every
//                            other rank's all_gather (non-blocking, polled)
//                            must give up after the 2 s timeout and end the
//                            job naming the cause.
//   control_plane nccl-absent DIR
//                            rank 2 never calls ncclCommInitRank; every other
//                            rank's ncclCommInitRank, non-blocking, must
//                            give up after the 2 s timeout and exit 1
//                            naming it.
//   control_plane transport-absent init | split
//                            over MPI, the nccl transport's communicators
//                            (nccl::world, non-blocking) for GPipe D=4:
//                            rank 2 never calls ncclCommInitRankConfig
//                            (init), or joins the world communicator but
//                            never splits it (split); every other rank must
//                            give up after the 2 s join timeout, abort its
//                            communicators and exit 1 naming the call.
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <chimera/generate.hpp>
#include <distributed/mpi_control.hpp>
#include <distributed/nccl_control.hpp>

namespace {

using chimera::runtime::control_plane;

// Rank r's bytes for pattern p: every byte value, lengths varying by rank.
std::string bytes_for(int pattern, int rank) {
    const int lengths[] = {0, rank % 2 == 0 ? 0 : 3 * rank + 1, 7 * rank, 100000 + rank};
    std::string s(static_cast<std::size_t>(lengths[pattern]), '\0');
    for (std::size_t i = 0; i < s.size(); ++i) s[i] = static_cast<char>((i * 131 + std::size_t{7} * rank) & 0xff);
    return s;
}

int check_all(control_plane& c) {
    int failures = 0;
    const auto expect = [&](bool ok, const std::string& what) {
        if (ok) return;
        std::fprintf(stderr, "rank %d: FAILED: %s\n", c.rank(), what.c_str());
        ++failures;
    };
    for (int pattern = 0; pattern < 4; ++pattern) {
        std::vector<std::string> expected;
        for (int r = 0; r < c.size(); ++r) expected.push_back(bytes_for(pattern, r));
        const std::string tag = " (pattern " + std::to_string(pattern) + ")";
        expect(c.all_gather(bytes_for(pattern, c.rank())) == expected, "all_gather" + tag);
        const auto gathered = c.gather(bytes_for(pattern, c.rank()));
        expect(c.rank() == 0 ? gathered == expected : gathered.empty(), "gather" + tag);
    }
    for (const std::size_t n : {std::size_t{0}, std::size_t{1}, std::size_t{1000}}) {
        const std::string root(n, 'r'), other(5, static_cast<char>('a' + c.rank()));
        expect(c.broadcast(c.rank() == 0 ? root : other) == root, "broadcast of " + std::to_string(n) + " bytes");
    }
    c.barrier();
    expect(c.local_rank() >= 0 && c.local_rank() < c.size() && c.rank() < c.size(), "ranks in range");
    // Every rank's failure count, summed over the control plane itself.
    int total = 0;
    for (const std::string& f : c.all_gather(std::to_string(failures))) total += std::stoi(f);
    return total;
}

// Rank 2's part of the world communicator only (it never splits it).
void join_world_only(control_plane& c) {
    namespace nccl = chimera::runtime::nccl;
    ncclUniqueId id;
    std::memcpy(&id, c.broadcast("").data(), sizeof id);
    ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
    config.blocking = 0;
    ncclComm_t comm = nullptr;
    nccl::issued(ncclCommInitRankConfig(&comm, c.size(), id, c.rank(), &config), "ncclCommInitRankConfig");
    nccl::settle(comm, std::chrono::seconds(30), "rank 2's ncclCommInitRankConfig", "30 s", nccl::not_joined);
}

int transport_absent(const std::string& where) {
    chimera::runtime::mpi::control c;
    return chimera::runtime::run_rank(c, [&] {
        chimera::runtime::nccl::select_device(c.rank(), c.local_rank());
        if (c.rank() == 2) {
            if (where == "split") join_world_only(c);
            std::this_thread::sleep_for(std::chrono::seconds(60));
            return 0;
        }
        const auto s = chimera::generate({.schedule = chimera::algorithm::gpipe, .stages = 4, .micro_batches = 1});
        const chimera::runtime::rank_waits waits{std::chrono::milliseconds(3000), std::chrono::seconds(2)};
        chimera::runtime::nccl::world w(s, {.workers = 4, .data_parallel = 1}, c, waits);
        return 0;  // not reached: rank 2 never joins
    });
}

}  // namespace

int main(int argc, char** argv) {
    const std::string which = argc > 1 ? argv[1] : "";
    const std::string arg = argc > 2 ? argv[2] : "";
    if (which == "transport-absent" && (arg == "init" || arg == "split")) return transport_absent(arg);
    if (which == "mpi-silent") {
        chimera::runtime::mpi::control c(std::chrono::seconds(2));
        return chimera::runtime::run_rank(c, [&] {
            if (c.rank() == 1) std::this_thread::sleep_for(std::chrono::seconds(60));
            c.all_gather("x");
            return 0;
        });
    }
    if (which != "mpi" && !((which == "nccl" || which == "nccl-silent" || which == "nccl-absent") && argc > 2)) {
        std::fprintf(stderr,
                     "usage: control_plane mpi | mpi-silent | nccl DIR | nccl-silent DIR | nccl-absent DIR | "
                     "transport-absent init|split\n");
        return 2;
    }
    if (which == "nccl-absent") {
        if (const char* rank = std::getenv("OMPI_COMM_WORLD_RANK"); rank && std::string(rank) == "2") {
            // Started (MPI, the emulated NCCL's bootstrap, is collective
            // from its start), but never reaches ncclCommInitRank.
            int provided = 0;
            MPI_Init_thread(nullptr, nullptr, MPI_THREAD_MULTIPLE, &provided);
            std::this_thread::sleep_for(std::chrono::seconds(60));
            return 0;
        }
        try {
            chimera::runtime::nccl::join_by_file(argv[2], "control-plane-absent", std::chrono::seconds(2));
        } catch (const std::exception& e) {
            std::fprintf(stderr, "control_plane: %s\n", e.what());
            return 1;
        }
        return 0;  // not reached: rank 2 never joins
    }
    std::unique_ptr<control_plane> c;
    if (which == "mpi") c = std::make_unique<chimera::runtime::mpi::control>();
    else if (which == "nccl") c = chimera::runtime::nccl::join_by_file(argv[2], "control-plane-test", std::chrono::seconds(120));
    if (which == "nccl-silent") {
        c = chimera::runtime::nccl::join_by_file(argv[2], "control-plane-silent", std::chrono::seconds(2));
        return chimera::runtime::run_rank(*c, [&] {
            if (c->rank() == 1) std::this_thread::sleep_for(std::chrono::seconds(60));
            c->all_gather("x");
            return 0;
        });
    }
    const int failures = check_all(*c);
    if (c->rank() == 0) std::printf("%s: %s\n", which.c_str(), failures == 0 ? "ok" : "FAILED");
    return failures == 0 ? 0 : 1;
}
