// The `mpi` transport (docs/distributed.md): one process per worker. A comm
// group of the lowered schedule is posted as non-blocking sends and
// receives (MPI_Isend / MPI_Irecv, the tag named by the message key) and
// completed together by one progress loop with a watchdog. A replica
// group's gradient reduction runs on that group's communicator
// (MPI_Comm_split, one per stage) as a reduce-scatter and an allgather:
// the buffer is cut into one contiguous chunk per member (owner_chunks);
// member j's rank receives every other member's slice of chunk j, adds
// the M slices in ascending reduce_key::order starting from zero (the
// order of the local transport, so the sums are bitwise equal), and sends
// the summed chunk to every other rank of the group. Each rank moves
// 2(M-1)/M of the buffer per member instead of a root's 2(M-1) buffers.
// MPI_Allreduce is not used: its summation order is unspecified.
//
// Ranks: message keys and reduction members name *logical* ranks
// (group * D + worker, as the local trainer numbers its workers); the
// layout (rank_map, chimera::rank_layout) maps them to MPI ranks.
#pragma once

#include <mpi.h>

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <exception>
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

#include "../common/link_costs.hpp"
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

// One member's chunk of a reduced buffer: values [offset, offset + size).
struct chunk {
    std::size_t offset = 0, size = 0;
    friend bool operator==(const chunk&, const chunk&) = default;
};

// The owner chunks of an n-value buffer reduced over `members` members:
// contiguous, in member order, n / members values each and one more for
// the first n % members (so chunks are empty when n < members).
inline std::vector<chunk> owner_chunks(std::size_t n, int members) {
    if (members < 1)
        throw std::invalid_argument("owner_chunks: a reduction needs at least one member, got " +
                                    std::to_string(members));
    const auto m = static_cast<std::size_t>(members);
    std::vector<chunk> chunks;
    for (std::size_t j = 0, at = 0; j < m; ++j) {
        chunks.push_back({at, n / m + (j < n % m ? 1 : 0)});
        at += chunks.back().size;
    }
    return chunks;
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
        if (!completed_within(watchdog, on_done)) throw comm_failure(report(watchdog, rank));
    }
    // False when nothing completed for `quiet` (the requests stay pending);
    // a `quiet` beyond a century (or infinite) never ends.
    bool completed_within(std::chrono::duration<double> quiet, const std::function<void(std::size_t)>& on_done = {}) {
        using clock = std::chrono::steady_clock;
        constexpr auto century = std::chrono::duration_cast<clock::duration>(std::chrono::hours(24 * 365 * 100));
        const auto limit = quiet.count() < 3.2e9 ? std::chrono::duration_cast<clock::duration>(quiet) : century;
        std::vector<int> indices;
        auto deadline = std::chrono::steady_clock::now() + limit;
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
                deadline = std::chrono::steady_clock::now() + limit;
                pause = std::chrono::microseconds{0}, idle_polls = 0;
                continue;
            }
            if (std::chrono::steady_clock::now() >= deadline) return false;
            // Yield first (a partner on this core gets to run), sleep only
            // after a while (a long wait: a peer computes), at most 100 us.
            // (20 yields instead of 2000 made mpirun -np 4 on 2 idle cores
            // 3-14 % slower: bench/results/distributed.md.)
            if (++idle_polls < 2000) {
                std::this_thread::yield();
                continue;
            }
            std::this_thread::sleep_for(pause);
            pause = std::min(std::chrono::microseconds{100}, pause + std::chrono::microseconds{10});
        }
        requests_.clear();
        labels_.clear();
        return true;
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
    // While an error propagates, the communicators are left to the abort
    // that follows: freeing them could drive MPI's progress into buffers
    // the unwinding already freed (requests are still pending).
    ~world() {
        if (std::uncaught_exceptions() > 0) return;
        for (auto& g : groups_)
            if (g.comm != MPI_COMM_NULL) MPI_Comm_free(&g.comm);
        MPI_Comm_free(&p2p_);
    }

    // Logical rank (group-major) <-> MPI rank.
    int to_mpi(int logical) const { return map_.global(logical); }
    int mpi_rank() const { return mpi_rank_; }
    std::chrono::milliseconds watchdog() const { return watchdog_; }
    MPI_Comm p2p() const { return p2p_; }
    int tag_ub() const { return tag_ub_; }

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
        if (!r.mine.empty() && r.mine.front().second.size() != data.size())
            throw comm_failure("mpi transport: REDUCE_GRAD of stage " + std::to_string(key.stage) + ": member " +
                               std::to_string(key.order) + " has " + std::to_string(data.size()) + " values, member " +
                               std::to_string(r.mine.front().first) + " has " +
                               std::to_string(r.mine.front().second.size()));
        r.mine.emplace_back(key.order, data);
    }

    void complete() {
        for (auto& [stage, r] : reductions_) start_reduction(stage, r);
        requests_.wait(world_.watchdog(), world_.mpi_rank(), [&](std::size_t index) { on_done(index); });
        for (auto& [stage, r] : reductions_)
            for (auto& [order, buffer] : r.mine) std::copy(r.result.begin(), r.result.end(), buffer.begin());
        reductions_.clear();
        arrivals_.clear();
    }

private:
    struct reduction {
        std::vector<std::pair<int, std::span<R>>> mine;  // (order, buffer) of this rank's members
        std::vector<chunk> chunks;                       // member j owns chunks[j]
        std::vector<R> result;                           // the sum: owned chunks added here, the others received
        std::map<std::pair<std::size_t, int>, std::vector<R>> arrived;  // (owned chunk, order) -> another rank's slice
        std::vector<int> missing;                        // per owned chunk: slices still in flight
    };

    static int count(std::size_t n) { return static_cast<int>(n); }

    // The reduce-scatter: for every non-empty chunk, its owner posts the
    // receives of the other ranks' members' slices, every other rank sends
    // its members' slices and posts the receive of the summed chunk.
    void start_reduction(int stage, reduction& r) {
        const auto& g = world_.group(stage);
        const int members = count(g.members.size()), me = world_.mpi_rank();
        require_members_here(stage, r);
        if (static_cast<long>(members) * (members + 1) - 1 > world_.tag_ub())
            throw comm_failure("mpi transport: REDUCE_GRAD of stage " + std::to_string(stage) + " has " +
                               std::to_string(members) + " members; its tags exceed this MPI's MPI_TAG_UB " +
                               std::to_string(world_.tag_ub()));
        const std::size_t n = r.mine.front().second.size();
        r.chunks = owner_chunks(n, members);
        r.result.assign(n, R(0));
        r.missing.assign(g.members.size(), 0);
        for (std::size_t j = 0; j < r.chunks.size(); ++j) {
            const chunk c = r.chunks[j];
            const int owner = g.members[j];
            if (c.size == 0) continue;
            if (owner == me) {
                for (std::size_t order = 0; order < g.members.size(); ++order)
                    if (g.members[order] != me) receive_slice(stage, r, j, static_cast<int>(order));
                continue;
            }
            for (auto& [order, buffer] : r.mine)
                post(true, stage, buffer.subspan(c.offset, c.size), owner, order * members + count(j),
                     label(stage, j) + ": member " + std::to_string(order) + "'s slice to");
            post(false, stage, std::span<R>(r.result).subspan(c.offset, c.size), owner, members * members + count(j),
                 label(stage, j) + ": the sum from");
        }
        for (std::size_t j = 0; j < r.chunks.size(); ++j)
            if (g.members[j] == me && r.chunks[j].size > 0 && r.missing[j] == 0) finish_chunk(stage, r, j);
    }

    // Every member on this rank must be in this comm group.
    void require_members_here(int stage, const reduction& r) const {
        const auto& g = world_.group(stage);
        for (std::size_t order = 0; order < g.members.size(); ++order)
            if (g.members[order] == world_.mpi_rank() &&
                std::none_of(r.mine.begin(), r.mine.end(), [&](const auto& m) { return m.first == count(order); }))
                throw comm_failure("REDUCE_GRAD of stage " + std::to_string(stage) + ": member " +
                                   std::to_string(order) + " is missing on MPI rank " + std::to_string(world_.mpi_rank()));
    }

    void receive_slice(int stage, reduction& r, std::size_t j, int order) {
        const auto& g = world_.group(stage);
        auto& slice = r.arrived[{j, order}];
        slice.resize(r.chunks[j].size);
        arrivals_[requests_.size()] = {stage, j};
        ++r.missing[j];
        post(false, stage, std::span<R>(slice), g.members[static_cast<std::size_t>(order)],
             order * count(g.members.size()) + count(j),
             label(stage, j) + ": member " + std::to_string(order) + "'s slice from");
    }

    void on_done(std::size_t index) {
        const auto it = arrivals_.find(index);
        if (it == arrivals_.end()) return;
        const auto [stage, j] = it->second;
        auto& r = reductions_.at(stage);
        if (--r.missing[j] == 0) finish_chunk(stage, r, j);
    }

    // Every slice of owned chunk j is here: add the members in ascending
    // order, starting from zero (as the local transport), and send the sum
    // to every other rank of the group (the allgather).
    void finish_chunk(int stage, reduction& r, std::size_t j) {
        const auto& g = world_.group(stage);
        const chunk c = r.chunks[j];
        R* sum = r.result.data() + c.offset;
        for (std::size_t order = 0; order < g.members.size(); ++order) {
            const R* x = nullptr;
            if (const auto a = r.arrived.find({j, count(order)}); a != r.arrived.end()) x = a->second.data();
            for (const auto& [o, buffer] : r.mine)
                if (o == count(order)) x = buffer.data() + c.offset;
            for (std::size_t i = 0; i < c.size; ++i) sum[i] += x[i];
        }
        for (std::size_t order = 0; order < g.members.size(); ++order) r.arrived.erase({j, count(order)});
        for (const int peer : g.ranks)
            if (peer != world_.mpi_rank())
                post(true, stage, std::span<R>(r.result).subspan(c.offset, c.size), peer,
                     count(g.members.size() * g.members.size() + j), label(stage, j) + ": the sum to");
    }

    // One send or receive of a reduction of `stage` with MPI rank `peer`.
    void post(bool send, int stage, std::span<R> data, int peer, int tag, const std::string& what) {
        const auto& g = world_.group(stage);
        MPI_Request q;
        if (send)
            check(MPI_Isend(data.data(), count(data.size()), datatype<R>(), g.comm_rank(peer), tag, g.comm, &q),
                  "MPI_Isend");
        else
            check(MPI_Irecv(data.data(), count(data.size()), datatype<R>(), g.comm_rank(peer), tag, g.comm, &q),
                  "MPI_Irecv");
        requests_.add(q, what + " MPI rank " + std::to_string(peer));
    }

    static std::string label(int stage, std::size_t j) {
        return "REDUCE_GRAD of stage " + std::to_string(stage) + ", chunk " + std::to_string(j);
    }

    world& world_;
    request_set requests_;
    std::map<int, reduction> reductions_;
    std::map<std::size_t, std::pair<int, std::size_t>> arrivals_;  // request index -> (stage, owned chunk)
};
static_assert(runtime::transport<channel<float>, std::span<const float>, std::span<float>>);

// What one message costs between MPI ranks 2i and 2i + 1 of `comm` (in an
// odd world the last rank has no partner and only joins the average): the
// one-way time of an 8-byte ping-pong (median of `repeats` round trips,
// halved) is alpha; the extra one-way time per byte of a `bytes`-byte
// ping-pong (at least 1 KiB) is beta. Both are averaged over the pairs and
// the same on every rank. Collective over `comm`; a partner that never
// answers ends it with comm_failure after the watchdog.
inline link_costs measure_link(MPI_Comm comm, std::size_t bytes, std::chrono::milliseconds watchdog,
                               int repeats = 21) {
    int rank = 0, size = 1;
    MPI_Comm_rank(comm, &rank);
    MPI_Comm_size(comm, &size);
    const int partner = rank ^ 1;
    const std::size_t small = 8, large = std::max<std::size_t>(bytes, 1024);
    std::vector<char> buffer(large);
    auto one_way = [&](std::size_t n) {
        std::vector<double> trips;
        for (int i = 0; i < repeats + 2; ++i) {  // two round trips to warm up the path
            const auto start = std::chrono::steady_clock::now();
            for (const bool sending : {rank % 2 == 0, rank % 2 != 0}) {
                MPI_Request r = MPI_REQUEST_NULL;
                if (sending)
                    check(MPI_Isend(buffer.data(), static_cast<int>(n), MPI_BYTE, partner, 0, comm, &r), "MPI_Isend");
                else
                    check(MPI_Irecv(buffer.data(), static_cast<int>(n), MPI_BYTE, partner, 0, comm, &r), "MPI_Irecv");
                request_set pending;
                pending.add(r, "link probe: " + std::to_string(n) + " bytes " + (sending ? "to" : "from") +
                                   " MPI rank " + std::to_string(partner));
                pending.wait(watchdog, rank);
            }
            if (i >= 2) trips.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
        }
        std::nth_element(trips.begin(), trips.begin() + repeats / 2, trips.end());
        return trips[static_cast<std::size_t>(repeats / 2)] / 2;
    };
    double mine[3] = {0, 0, 0};  // alpha, beta, pairs (counted by the even rank)
    if (partner < size) {
        const double alpha = one_way(small), at_large = one_way(large);
        if (rank % 2 == 0)
            mine[0] = alpha, mine[1] = std::max(0.0, at_large - alpha) / static_cast<double>(large - small), mine[2] = 1;
    }
    double sum[3] = {0, 0, 0};
    check(MPI_Allreduce(mine, sum, 3, MPI_DOUBLE, MPI_SUM, comm), "MPI_Allreduce");
    if (sum[2] == 0) return {};
    return {sum[0] / sum[2], sum[1] / sum[2]};
}

}  // namespace chimera::runtime::mpi
