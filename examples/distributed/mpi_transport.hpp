// The `mpi` transport (docs/distributed.md): one process per worker. A comm
// group of the lowered schedule is posted as non-blocking sends and
// receives (MPI_Isend / MPI_Irecv, the tag named by the message key) and
// completed together by one progress loop with a watchdog. A replica
// group's gradient reduction runs on that group's communicator
// (MPI_Comm_split, one per stage): every member's buffer goes to the
// group's lowest rank, which adds them in ascending reduce_key::order (the
// order of the local transport, so the sums are bitwise equal) and sends
// the sum back. MPI_Allreduce is not used: its summation order is
// unspecified.
//
// Ranks: message keys and reduction members name *logical* ranks
// (group * D + worker, as the local trainer numbers its workers); the
// layout (rank_map, chimera::rank_layout) maps them to MPI ranks.
#pragma once

#include <mpi.h>

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <functional>
#include <map>
#include <span>
#include <stdexcept>
#include <string>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

#include <chimera/placement.hpp>
#include <chimera/runtime/message.hpp>
#include <chimera/runtime/transport.hpp>
#include <chimera/schedule.hpp>

#include "control_plane.hpp"

namespace chimera::runtime::mpi {

// A communication that cannot complete (a partner never posts, or died).
class comm_failure : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

inline void check(int rc, const char* what) {
    if (rc == MPI_SUCCESS) return;
    char text[MPI_MAX_ERROR_STRING];
    int length = 0;
    MPI_Error_string(rc, text, &length);
    throw comm_failure(std::string(what) + ": " + std::string(text, static_cast<std::size_t>(length)));
}

template <class R>
MPI_Datatype datatype() {
    static_assert(std::is_same_v<R, float> || std::is_same_v<R, double>, "mpi transport: float or double");
    return std::is_same_v<R, float> ? MPI_FLOAT : MPI_DOUBLE;
}

// Outstanding requests with what each one is (for the failure report),
// completed by polling (MPI_Testsome with a growing back-off, which leaves
// the core to other ranks on an oversubscribed machine). `on_done(i)` runs
// when request i completes and may add requests.
class request_set {
public:
    void add(MPI_Request r, std::string label) {
        requests_.push_back(r);
        labels_.push_back(std::move(label));
    }
    std::size_t size() const { return requests_.size(); }

    // Throws comm_failure naming every pending request when nothing
    // completes for `watchdog`.
    void wait(std::chrono::milliseconds watchdog, int rank, const std::function<void(std::size_t)>& on_done = {}) {
        std::vector<int> indices;
        auto deadline = std::chrono::steady_clock::now() + watchdog;
        std::chrono::microseconds pause{0};
        int idle_polls = 0;
        for (std::size_t done = count_done(); done < requests_.size();) {
            int completed = 0;
            indices.resize(requests_.size());
            check(MPI_Testsome(static_cast<int>(requests_.size()), requests_.data(), &completed, indices.data(),
                               MPI_STATUSES_IGNORE),
                  "MPI_Testsome");
            if (completed > 0 && completed != MPI_UNDEFINED) {
                done += static_cast<std::size_t>(completed);
                for (int k = 0; k < completed; ++k)
                    if (on_done) on_done(static_cast<std::size_t>(indices[static_cast<std::size_t>(k)]));
                deadline = std::chrono::steady_clock::now() + watchdog;
                pause = std::chrono::microseconds{0}, idle_polls = 0;
                continue;
            }
            if (std::chrono::steady_clock::now() >= deadline) throw comm_failure(report(watchdog, rank));
            // Yield first (a partner on this core gets to run), sleep only
            // after a while (a long wait: a peer computes), at most 100 us.
            if (++idle_polls < 2000) {
                std::this_thread::yield();
                continue;
            }
            std::this_thread::sleep_for(pause);
            pause = std::min(std::chrono::microseconds{100}, pause + std::chrono::microseconds{10});
        }
        requests_.clear();
        labels_.clear();
    }

private:
    std::size_t count_done() const {
        return static_cast<std::size_t>(std::count(requests_.begin(), requests_.end(), MPI_REQUEST_NULL));
    }
    std::string report(std::chrono::milliseconds watchdog, int rank) const {
        std::string text = "watchdog: no message arrived on MPI rank " + std::to_string(rank) + " for " +
                           std::to_string(watchdog.count()) + " ms (a rank died, hangs, or runs another schedule); " +
                           "still waiting for:";
        for (std::size_t i = 0; i < requests_.size(); ++i)
            if (requests_[i] != MPI_REQUEST_NULL) text += "\n    " + labels_[i];
        return text;
    }
    std::vector<MPI_Request> requests_;
    std::vector<std::string> labels_;
};

// The MPI side of one run: this process's ranks, the point-to-point
// communicator, one communicator per stage's replica group, and where
// every reduction member lives.
class world {
public:
    // Collective over MPI_COMM_WORLD: every rank calls it with the same schedule.
    world(const schedule& s, const rank_map& map, std::chrono::milliseconds watchdog)
        : stages_(s.stages()), pipelines_(s.pipelines()), map_(map), watchdog_(watchdog) {
        MPI_Comm_rank(MPI_COMM_WORLD, &mpi_rank_);
        check(MPI_Comm_dup(MPI_COMM_WORLD, &p2p_), "MPI_Comm_dup");
        void* ub = nullptr;
        int found = 0;
        MPI_Comm_get_attr(MPI_COMM_WORLD, MPI_TAG_UB, &ub, &found);
        tag_ub_ = found ? *static_cast<int*>(ub) : 32767;
        for (int st = 0; st < stages_; ++st) {
            std::vector<int> members;  // MPI rank of member `order`
            for (int g = 0; g < map.data_parallel; ++g)
                for (int p = 0; p < pipelines_; ++p) members.push_back(to_mpi(g * s.workers() + s.placement(p, st)));
            std::vector<int> ranks = members;
            std::sort(ranks.begin(), ranks.end());
            ranks.erase(std::unique(ranks.begin(), ranks.end()), ranks.end());
            const bool here = std::binary_search(ranks.begin(), ranks.end(), mpi_rank_);
            MPI_Comm comm = MPI_COMM_NULL;
            check(MPI_Comm_split(MPI_COMM_WORLD, here ? st : MPI_UNDEFINED, mpi_rank_, &comm), "MPI_Comm_split");
            groups_.push_back({comm, std::move(members), std::move(ranks)});
        }
    }
    world(const world&) = delete;
    world& operator=(const world&) = delete;
    ~world() {
        for (auto& g : groups_)
            if (g.comm != MPI_COMM_NULL) MPI_Comm_free(&g.comm);
        MPI_Comm_free(&p2p_);
    }

    // Logical rank (group-major) <-> MPI rank.
    int to_mpi(int logical) const { return map_.global(logical); }
    int mpi_rank() const { return mpi_rank_; }
    std::chrono::milliseconds watchdog() const { return watchdog_; }
    MPI_Comm p2p() const { return p2p_; }

    // A point-to-point message's tag: unique per (kind, pipeline, stage,
    // micro-batch); the pair of ranks is the source / destination.
    int tag(const message_key& k) const {
        const long t = ((static_cast<long>(k.micro_batch) * pipelines_ + k.pipeline) * stages_ + k.stage) * 2 +
                       static_cast<long>(k.kind);
        if (t > tag_ub_)
            throw comm_failure("mpi transport: message tag " + std::to_string(t) + " of " + to_string(k) +
                               " exceeds this MPI's MPI_TAG_UB " + std::to_string(tag_ub_) +
                               " (fewer micro-batches per step)");
        return static_cast<int>(t);
    }

    struct replica_group {
        MPI_Comm comm;
        std::vector<int> members;  // MPI rank of each member, by order
        std::vector<int> ranks;    // distinct MPI ranks, ascending = rank in comm
        int comm_rank(int mpi) const {
            return static_cast<int>(std::lower_bound(ranks.begin(), ranks.end(), mpi) - ranks.begin());
        }
    };
    const replica_group& group(int stage) const { return groups_.at(static_cast<std::size_t>(stage)); }

private:
    int stages_, pipelines_;
    rank_map map_;
    std::chrono::milliseconds watchdog_;
    int mpi_rank_ = 0, tag_ub_ = 32767;
    MPI_Comm p2p_ = MPI_COMM_NULL;
    std::vector<replica_group> groups_;
};

// One comm group of this rank: models runtime::transport over host spans.
// Sends and receives are posted at once; reductions when complete() runs.
template <class R>
class channel {
public:
    explicit channel(world& w) : world_(w) {}

    void post_send(const message_key& key, std::span<const R> data) {
        MPI_Request r;
        check(MPI_Isend(data.data(), count(data.size()), datatype<R>(), world_.to_mpi(key.to), world_.tag(key),
                        world_.p2p(), &r),
              "MPI_Isend");
        requests_.add(r, "send of " + to_string(key) + " (to MPI rank " + std::to_string(world_.to_mpi(key.to)) + ")");
    }
    void post_recv(const message_key& key, std::span<R> data) {
        MPI_Request r;
        check(MPI_Irecv(data.data(), count(data.size()), datatype<R>(), world_.to_mpi(key.from), world_.tag(key),
                        world_.p2p(), &r),
              "MPI_Irecv");
        requests_.add(r, "receive of " + to_string(key) + " (from MPI rank " +
                             std::to_string(world_.to_mpi(key.from)) + ")");
    }
    void post_reduce(const reduce_key& key, std::span<R> data) {
        auto& r = reductions_[key.stage];
        if (key.members != static_cast<int>(world_.group(key.stage).members.size()))
            throw comm_failure("mpi transport: REDUCE_GRAD of stage " + std::to_string(key.stage) + " names " +
                               std::to_string(key.members) + " members, the run has " +
                               std::to_string(world_.group(key.stage).members.size()));
        r.mine.emplace_back(key.order, data);
    }

    void complete() {
        for (auto& [stage, r] : reductions_) start_reduction(stage, r);
        requests_.wait(world_.watchdog(), world_.mpi_rank(), [&](std::size_t index) { on_done(index); });
        for (auto& [stage, r] : reductions_)
            for (auto& [order, buffer] : r.mine)
                if (!r.root) std::copy(r.result.begin(), r.result.end(), buffer.begin());
        reductions_.clear();
    }

private:
    struct reduction {
        std::vector<std::pair<int, std::span<R>>> mine;       // (order, buffer) of this rank's members
        bool root = false;
        std::map<int, std::vector<R>> arrived;                // root: order -> other ranks' buffers
        std::vector<std::size_t> pending;                     // root: requests of the arrivals
        std::vector<R> result;                                // non-root: the sum
    };

    static int count(std::size_t n) { return static_cast<int>(n); }

    // Root: receive every other member; others: send theirs, receive the sum.
    void start_reduction(int stage, reduction& r) {
        const auto& g = world_.group(stage);
        const std::size_t n = r.mine.front().second.size();
        r.root = g.ranks.front() == world_.mpi_rank();
        const std::string what = "REDUCE_GRAD of stage " + std::to_string(stage);
        if (r.root) {
            for (std::size_t order = 0; order < g.members.size(); ++order) {
                if (g.members[order] == world_.mpi_rank()) continue;
                auto& buffer = r.arrived[static_cast<int>(order)];
                buffer.resize(n);
                MPI_Request q;
                check(MPI_Irecv(buffer.data(), count(n), datatype<R>(), g.comm_rank(g.members[order]),
                                static_cast<int>(order), g.comm, &q),
                      "MPI_Irecv");
                r.pending.push_back(requests_.size());
                requests_.add(q, what + ": member " + std::to_string(order) + " from MPI rank " +
                                     std::to_string(g.members[order]));
            }
            if (r.pending.empty()) finish_root(stage, r);
            return;
        }
        for (auto& [order, buffer] : r.mine) {
            MPI_Request q;
            check(MPI_Isend(buffer.data(), count(n), datatype<R>(), 0, order, g.comm, &q), "MPI_Isend");
            requests_.add(q, what + ": member " + std::to_string(order) + " to MPI rank " +
                                 std::to_string(g.ranks.front()));
        }
        r.result.resize(n);
        MPI_Request q;
        check(MPI_Irecv(r.result.data(), count(n), datatype<R>(), 0, count(g.members.size()), g.comm, &q),
              "MPI_Irecv");
        requests_.add(q, what + ": the sum from MPI rank " + std::to_string(g.ranks.front()));
    }

    void on_done(std::size_t index) {
        for (auto& [stage, r] : reductions_) {
            if (!r.root) continue;
            const auto it = std::find(r.pending.begin(), r.pending.end(), index);
            if (it == r.pending.end()) continue;
            r.pending.erase(it);
            if (r.pending.empty()) finish_root(stage, r);
        }
    }

    // Every member arrived: add them in ascending order (as the local
    // transport: from zero), write the sum to this rank's buffers and send
    // it to every other rank of the group.
    void finish_root(int stage, reduction& r) {
        const auto& g = world_.group(stage);
        const std::size_t n = r.mine.front().second.size();
        std::vector<R> sum(n, R(0));
        for (std::size_t order = 0; order < g.members.size(); ++order) {
            const R* x = nullptr;
            if (const auto a = r.arrived.find(static_cast<int>(order)); a != r.arrived.end()) x = a->second.data();
            for (const auto& [o, buffer] : r.mine)
                if (o == static_cast<int>(order)) x = buffer.data();
            if (!x) throw comm_failure("REDUCE_GRAD of stage " + std::to_string(stage) + ": member " +
                                       std::to_string(order) + " is missing on MPI rank " + std::to_string(g.members[order]));
            for (std::size_t i = 0; i < n; ++i) sum[i] += x[i];
        }
        for (auto& [o, buffer] : r.mine) std::copy(sum.begin(), sum.end(), buffer.begin());
        r.result = std::move(sum);
        for (std::size_t peer = 1; peer < g.ranks.size(); ++peer) {
            MPI_Request q;
            check(MPI_Isend(r.result.data(), count(n), datatype<R>(), static_cast<int>(peer),
                            count(g.members.size()), g.comm, &q),
                  "MPI_Isend");
            requests_.add(q, "REDUCE_GRAD of stage " + std::to_string(stage) + ": the sum to MPI rank " +
                                 std::to_string(g.ranks[peer]));
        }
    }

    world& world_;
    request_set requests_;
    std::map<int, reduction> reductions_;
};
static_assert(runtime::transport<channel<float>, std::span<const float>, std::span<float>>);

}  // namespace chimera::runtime::mpi
