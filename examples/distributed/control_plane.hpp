// The control plane of a multi-process run (docs/distributed.md): what the
// per-rank trainer exchanges besides the schedule's messages — the digest
// check, losses and times, the whole-model state, replica checks, peaks,
// the checkpoint barrier — and how a rank ends on an error. Two
// implementations: over MPI_COMM_WORLD (mpi_control.hpp, --rendezvous mpi)
// and over an NCCL world communicator (nccl_transport.hpp, --rendezvous
// file:DIR, where the process never calls MPI). Bytes in, bytes out.
#pragma once

#include <fmt/core.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include <chimera/placement.hpp>

#include "sha256.hpp"

namespace chimera::runtime {

// Something that must be equal on every rank is not (or the world size
// does not fit, or the checkpoint to resume is incomplete): every rank
// throws the same error, nothing hangs.
class consistency_error : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

class control_plane {
public:
    control_plane() = default;
    control_plane(const control_plane&) = delete;
    control_plane& operator=(const control_plane&) = delete;
    virtual ~control_plane() = default;

    virtual int rank() const = 0;
    virtual int size() const = 0;
    // This rank's index among the ranks of its node (picks the GPU).
    virtual int local_rank() const = 0;
    // Every rank's bytes (lengths may differ), on every rank, in rank order. Collective.
    virtual std::vector<std::string> all_gather(const std::string& mine) = 0;
    // Every rank's bytes at rank 0, in rank order (empty elsewhere). Collective.
    virtual std::vector<std::string> gather(const std::string& mine) {
        auto all = all_gather(mine);
        if (rank() != 0) all.clear();
        return all;
    }
    // Rank 0's bytes on every rank (the others' argument is ignored). Collective.
    virtual std::string broadcast(const std::string& from_root) = 0;
    // Returns once every rank has called it.
    virtual void barrier() = 0;
    // Ends the whole job after an error on this rank; does not return.
    [[noreturn]] virtual void abort() = 0;
};

// Logical rank (group * D + worker, as the local trainer numbers its
// workers) <-> rank in the world (the layout, chimera::rank_layout).
struct rank_map {
    int workers = 1, data_parallel = 1;
    rank_layout layout = rank_layout::group_major;

    int global(int logical) const {
        return global_rank(logical / workers, logical % workers, workers, data_parallel, layout);
    }
    int logical(int global) const {
        return layout == rank_layout::group_major ? global
                                                  : (global % data_parallel) * workers + global / data_parallel;
    }
};

// How long a rank waits for the others: `watchdog` for a message or
// reduction to make progress (--watchdog-ms), `join` for every rank to
// create a communicator (--rendezvous-timeout).
struct rank_waits {
    std::chrono::milliseconds watchdog{10000};
    std::chrono::duration<double> join{300};
};

// Where a worker runs: the run's control plane, the rank layout and the
// waits (what every Worker of rank_trainer is constructed from).
struct rank_context {
    control_plane& control;
    rank_map map;
    rank_waits waits;
};

template <class T>
std::string bytes_of(const std::vector<T>& v) {
    return std::string(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(T));
}
template <class T>
std::vector<T> values_of(const std::string& bytes) {
    std::vector<T> v(bytes.size() / sizeof(T));
    std::memcpy(v.data(), bytes.data(), v.size() * sizeof(T));
    return v;
}

// A collective of the control plane that did not complete within
// `seconds` (--rendezvous-timeout): one wording for every plane.
inline std::string collective_timeout(const std::string& plane, int rank, const std::string& what, double seconds) {
    return fmt::format("{} control plane, rank {}: {} of every rank did not complete within {:g} s "
                       "(--rendezvous-timeout): a rank hangs, died, or stopped before it",
                       plane, rank, what, seconds);
}

// Every rank passes the same part names (what must agree) with its own
// text; throws consistency_error on every rank when one differs from
// rank 0's, naming the first such rank and the part.
inline void require_same_everywhere(control_plane& control,
                                    const std::vector<std::pair<std::string, std::string>>& parts) {
    std::string mine;
    for (const auto& [name, text] : parts) {
        const auto d = sha256().update(text).digest();
        mine.append(reinterpret_cast<const char*>(d.data()), d.size());
    }
    const auto all = control.all_gather(mine);
    for (std::size_t r = 1; r < all.size(); ++r)
        for (std::size_t p = 0; p < parts.size(); ++p)
            if (all[r].size() != mine.size() || all[r].compare(32 * p, 32, all[0], 32 * p, 32) != 0)
                throw consistency_error("rank " + std::to_string(r) + " runs a different " + parts[p].first +
                                        " than rank 0 (every rank must be launched with the same options)");
}

// Reports this rank's error and ends the whole job at once, without
// unwinding (a collective still in flight may write into the caller's
// frame).
[[noreturn]] inline void fail_job(control_plane& control, const std::string& why) {
    fmt::print(stderr, "chimera-train: rank {}: {}\n", control.rank(), why);
    std::fflush(stderr);
    control.abort();
    std::_Exit(1);  // not reached
}

// Runs one rank's job: rank 0 alone prints to stdout. Returns the exit
// code: f's; 2 for a refusal every rank agrees on (consistency_error); any
// other error is reported and ends the whole job (control.abort(), exit 1).
template <class F>
int run_rank(control_plane& control, F&& f) {
    const int rank = control.rank();
    if (rank != 0 && !std::freopen("/dev/null", "w", stdout)) std::fclose(stdout);
    try {
        return f();
    } catch (const consistency_error& e) {
        fmt::print(stderr, "chimera-train: rank {}: {}\n", rank, e.what());
        return 2;
    } catch (const std::exception& e) {
        fail_job(control, e.what());
    }
}

}  // namespace chimera::runtime
