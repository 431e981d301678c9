// In-process channels with NCCL's rendezvous semantics (docs/runtime.md):
// one matching table under one mutex. A group posts all its members, then
// waits until all completed. Point-to-point messages match by key; the
// per-pair issue order is also compared, so an order that NCCL (which pairs
// by issue order) would mis-pair is reported. All-reduce sums its members
// in a fixed order (data-parallel group, then pipeline). A worker that
// waits while every other unfinished worker waits too is a deadlock: all
// pending groups are reported and every worker stops; a watchdog timeout
// backs this up.
#pragma once

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <map>
#include <mutex>
#include <stdexcept>
#include <string>
#include <tuple>
#include <span>
#include <vector>

#include <chimera/runtime/message.hpp>
#include <chimera/runtime/transport.hpp>

namespace chimera::runtime::cpu {

using runtime::message_key;
using runtime::reduce_key;

class comm_failure : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

template <class R>
struct comm_member {
    enum class type { send, recv, reduce } what = type::send;
    message_key key{};            // send / recv
    reduce_key reduction{};       // reduce
    R* buffer = nullptr;
    std::size_t count = 0;
    std::string label;            // for reports
};

// What a hub keeps between steps: nothing (the trainer's transport resources).
struct hub_resources {};

template <class R>
class hub {
public:
    hub(int ranks, std::chrono::milliseconds watchdog, const hub_resources& = {})
        : ranks_(ranks), watchdog_(watchdog), state_(ranks) {}

    // Post every member of one group of `rank`, return when all completed.
    // Throws comm_failure (on every waiting worker) on deadlock or timeout.
    void run_group(int rank, std::vector<comm_member<R>>& members, const std::string& where) {
        std::unique_lock lock(mutex_);
        auto& me = state_[static_cast<std::size_t>(rank)];
        me.remaining = static_cast<int>(members.size());
        me.where = where;
        me.members.clear();
        for (auto& m : members) me.members.push_back({&m, false});
        for (std::size_t i = 0; i < members.size(); ++i) post(rank, members[i], i);
        auto last_progress = progress_;
        auto deadline = std::chrono::steady_clock::now() + watchdog_;
        while (me.remaining > 0) {
            if (!failure_.empty()) throw comm_failure(failure_);
            me.waiting = true;
            if (all_stuck()) fail("deadlock: every unfinished worker waits for a partner that never posts");
            if (!failure_.empty()) throw comm_failure(failure_);
            cv_.wait_until(lock, deadline);
            me.waiting = false;
            if (progress_ != last_progress) {
                last_progress = progress_;
                deadline = std::chrono::steady_clock::now() + watchdog_;
            } else if (std::chrono::steady_clock::now() >= deadline && me.remaining > 0) {
                fail("watchdog: no worker made progress for " + std::to_string(watchdog_.count()) + " ms");
            }
        }
        me.waiting = false;
        me.members.clear();
    }

    // A worker finished a compute op: progress for the watchdog, so a long
    // op on one worker does not look like a hang to the others.
    void note_progress() {
        std::lock_guard lock(mutex_);
        ++progress_;
        cv_.notify_all();
    }

    // The worker ran its whole list (or stopped on an error).
    void finish(int rank) {
        std::lock_guard lock(mutex_);
        state_[static_cast<std::size_t>(rank)].finished = true;
        if (all_stuck()) fail("deadlock: every unfinished worker waits for a partner that never posts");
        cv_.notify_all();
    }

    // Stop everyone (a worker hit an error outside communication).
    void abort(const std::string& reason) {
        std::lock_guard lock(mutex_);
        if (failure_.empty()) failure_ = reason;
        cv_.notify_all();
    }

    std::string failure() const {
        std::lock_guard lock(mutex_);
        return failure_;
    }
    // Messages whose send and receive were issued at different positions of
    // their pair's order (NCCL would pair the wrong buffers).
    int order_mismatches() const {
        std::lock_guard lock(mutex_);
        return order_mismatches_;
    }

private:
    struct posted {
        comm_member<R>* member;
        bool done;
    };
    struct rank_state {
        int remaining = 0;
        bool waiting = false, finished = false;
        std::string where;
        std::vector<posted> members;
    };
    struct pending_p2p {
        int rank;
        std::size_t index;
        long sequence;
    };
    struct pending_reduce {
        std::vector<std::tuple<int, int, std::size_t>> members;  // (order, rank, index)
    };

    void complete(int rank, std::size_t index) {
        auto& s = state_[static_cast<std::size_t>(rank)];
        s.members[index].done = true;
        --s.remaining;
        ++progress_;
    }

    void post(int rank, comm_member<R>& m, std::size_t index) {
        using type = typename comm_member<R>::type;
        if (m.what == type::reduce) {
            auto& r = reduces_[m.reduction.stage];
            r.members.emplace_back(m.reduction.order, rank, index);
            if (static_cast<int>(r.members.size()) < m.reduction.members) return;
            std::sort(r.members.begin(), r.members.end());
            std::vector<R> sum(m.count, R(0));
            for (auto& [order, member_rank, member_index] : r.members) {
                const comm_member<R>& x = *state_[static_cast<std::size_t>(member_rank)].members[member_index].member;
                for (std::size_t i = 0; i < sum.size(); ++i) sum[i] += x.buffer[i];
            }
            for (auto& [order, member_rank, member_index] : r.members) {
                comm_member<R>& x = *state_[static_cast<std::size_t>(member_rank)].members[member_index].member;
                std::copy(sum.begin(), sum.end(), x.buffer);
                complete(member_rank, member_index);
            }
            reduces_.erase(m.reduction.stage);
            cv_.notify_all();
            return;
        }
        const bool sending = m.what == type::send;
        const auto pair = std::pair{m.key.from, m.key.to};
        const long sequence = (sending ? send_sequence_ : recv_sequence_)[pair]++;
        auto& mine = sending ? sends_ : recvs_;
        auto& theirs = sending ? recvs_ : sends_;
        const auto found = theirs.find(m.key);
        if (found == theirs.end()) {
            mine[m.key] = {rank, index, sequence};
            return;
        }
        const pending_p2p other = found->second;
        theirs.erase(found);
        comm_member<R>& o = *state_[static_cast<std::size_t>(other.rank)].members[other.index].member;
        const comm_member<R>& source = sending ? m : o;
        comm_member<R>& destination = sending ? o : m;
        if (source.count != destination.count) {
            fail("message size mismatch: " + source.label + " sends " + std::to_string(source.count) + " values, " +
                 destination.label + " expects " + std::to_string(destination.count));
            return;
        }
        std::copy(source.buffer, source.buffer + source.count, destination.buffer);
        if (other.sequence != sequence) ++order_mismatches_;
        complete(rank, index);
        complete(other.rank, other.index);
        cv_.notify_all();
    }

    bool all_stuck() const {
        bool any = false;
        for (const auto& s : state_) {
            if (s.finished) continue;
            if (!s.waiting || s.remaining == 0) return false;
            any = true;
        }
        return any;
    }

    void fail(const std::string& reason) {
        if (!failure_.empty()) return;
        std::string report = reason + "; pending groups:";
        for (int r = 0; r < ranks_; ++r) {
            const auto& s = state_[static_cast<std::size_t>(r)];
            if (s.finished) {
                report += "\n  worker " + std::to_string(r) + ": finished";
                continue;
            }
            if (s.remaining == 0) {
                report += "\n  worker " + std::to_string(r) + ": running (not in a comm group)";
                continue;
            }
            report += "\n  worker " + std::to_string(r) + " blocked at " + s.where + ":";
            for (const auto& p : s.members)
                report += "\n    " + p.member->label + (p.done ? "  [matched]" : "  [waiting]");
        }
        failure_ = report;
        cv_.notify_all();
    }

    int ranks_;
    std::chrono::milliseconds watchdog_;
    mutable std::mutex mutex_;
    std::condition_variable cv_;
    std::vector<rank_state> state_;
    std::map<message_key, pending_p2p> sends_, recvs_;
    std::map<int, pending_reduce> reduces_;
    std::map<std::pair<int, int>, long> send_sequence_, recv_sequence_;
    long progress_ = 0;
    int order_mismatches_ = 0;
    std::string failure_;
};

// One comm group of one worker on the hub: models runtime::transport
// (members are collected by post_*, complete() runs the group).
template <class R>
class channel {
public:
    channel(hub<R>& h, int rank, std::string where) : hub_(h), rank_(rank), where_(std::move(where)) {}
    void post_send(const message_key& key, std::span<const R> data) {
        add(comm_member<R>::type::send, data.size(), const_cast<R*>(data.data()), "SEND_", key);
    }
    void post_recv(const message_key& key, std::span<R> data) {
        add(comm_member<R>::type::recv, data.size(), data.data(), "RECV_", key);
    }
    void post_reduce(const reduce_key& key, std::span<R> data) {
        comm_member<R>& m = members_.emplace_back();
        m.what = comm_member<R>::type::reduce;
        m.reduction = key;
        m.buffer = data.data();
        m.count = data.size();
        m.label = "worker " + std::to_string(rank_) + ": REDUCE_GRAD(stage " + std::to_string(key.stage) +
                  ", member " + std::to_string(key.order) + " of " + std::to_string(key.members) + ")";
    }
    void complete() {
        hub_.run_group(rank_, members_, where_);
        members_.clear();
    }

private:
    void add(typename comm_member<R>::type what, std::size_t count, R* buffer, const char* verb, const message_key& key) {
        comm_member<R>& m = members_.emplace_back();
        m.what = what;
        m.key = key;
        m.buffer = buffer;
        m.count = count;
        m.label = "worker " + std::to_string(rank_) + ": " + verb +
                  (key.kind == runtime::message_kind::activation ? "F" : "B") + "(" + to_string(key) + ")";
    }

    hub<R>& hub_;
    int rank_;
    std::string where_;
    std::vector<comm_member<R>> members_;
};
static_assert(runtime::transport<channel<float>, std::span<const float>, std::span<float>>);

}  // namespace chimera::runtime::cpu
