// The control plane over NCCL (--rendezvous file:DIR): a process that
// never calls MPI. Rank, world size and node-local rank come from the
// launcher's environment; rank 0's ncclUniqueId reaches the others through
// the shared-file rendezvous (rendezvous.hpp); the world communicator it
// names carries the control plane's collectives: ncclAllGather and
// ncclBroadcast through device buffers on a stream of their own, waited for
// by polling an event: an asynchronous NCCL error, or no answer within the
// timeout (a rank that hangs; NCCL itself would wait for ever), ends it.
// Variable lengths: the lengths are gathered first, then the bytes padded
// to the longest. A gather to rank 0 is an all-gather (NCCL has no gather;
// the control plane moves small data, and the whole model once at the end).
// On an error the communicator is aborted (ncclCommAbort) and the process
// exits 1; the launcher ends the other ranks. The communicator is
// non-blocking (config.blocking = 0), so that its creation, too, is bounded
// by the timeout: every call is followed by polling until NCCL has taken
// it (ncclInProgress -> ncclSuccess).
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "control_plane.hpp"
#include "nccl_transport.hpp"
#include "rendezvous.hpp"

namespace chimera::runtime::nccl {

class control final : public control_plane {
public:
    // Takes `comm`, the communicator of every rank (destroyed with this);
    // a collective not done after `timeout` fails.
    control(ncclComm_t comm, const rendezvous::launch_ranks& ranks, std::chrono::duration<double> timeout)
        : comm_(comm), ranks_(ranks), timeout_(timeout) {
        gpu::check(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking), "cudaStreamCreateWithFlags");
    }
    ~control() override {
        if (comm_) ncclCommDestroy(comm_);
        cudaStreamDestroy(stream_);
    }

    int rank() const override { return ranks_.rank; }
    int size() const override { return ranks_.size; }
    int local_rank() const override { return ranks_.local_rank; }

    std::vector<std::string> all_gather(const std::string& mine) override {
        const auto lengths = values_of<std::uint64_t>(gathered(bytes_of(std::vector<std::uint64_t>{mine.size()})));
        const std::size_t longest = *std::max_element(lengths.begin(), lengths.end());
        std::string padded = mine;
        padded.resize(longest, '\0');
        const std::string all = longest > 0 ? gathered(padded) : std::string();
        std::vector<std::string> out;
        for (std::size_t r = 0; r < lengths.size(); ++r) out.push_back(all.substr(r * longest, lengths[r]));
        return out;
    }
    std::string broadcast(const std::string& from_root) override {
        const std::string length = broadcasted(bytes_of(std::vector<std::uint64_t>{from_root.size()}), 8);
        const std::uint64_t n = values_of<std::uint64_t>(length).at(0);
        return n > 0 ? broadcasted(from_root, n) : std::string();
    }
    // An all-gather completes on a rank only once every rank contributed.
    void barrier() override { all_gather(std::string()); }
    [[noreturn]] void abort() override {
        std::fflush(nullptr);
        if (comm_) ncclCommAbort(comm_);
        comm_ = nullptr;
        std::_Exit(1);
    }

private:
    // Device memory for one collective (at least one byte), stream-ordered
    // (no implicit device synchronisation).
    struct device_bytes {
        device_bytes(std::size_t n, cudaStream_t s) : stream(s) {
            gpu::check(cudaMallocAsync(&data, std::max<std::size_t>(n, 1), stream), "cudaMallocAsync");
        }
        device_bytes(const device_bytes&) = delete;
        device_bytes& operator=(const device_bytes&) = delete;
        ~device_bytes() { cudaFreeAsync(data, stream); }
        void* data = nullptr;
        cudaStream_t stream;
    };

    // `in` on the device, `op(in, out)` on the stream, `out_size` bytes back.
    // The collective is waited for (polled) before the copy back: a copy into
    // pageable memory returns only once done, so it would block behind a
    // collective that a silent rank never completes.
    template <class Op>
    std::string on_device(const std::string& in, std::size_t out_size, Op op) {
        device_bytes device_in(in.size(), stream_), device_out(out_size, stream_);
        gpu::check(cudaMemcpyAsync(device_in.data, in.data(), in.size(), cudaMemcpyHostToDevice, stream_),
                   "cudaMemcpyAsync");
        op(device_in.data, device_out.data);
        wait();
        std::string out(out_size, '\0');
        gpu::check(cudaMemcpyAsync(out.data(), device_out.data, out_size, cudaMemcpyDeviceToHost, stream_),
                   "cudaMemcpyAsync");
        gpu::check(cudaStreamSynchronize(stream_), "cudaStreamSynchronize");
        return out;
    }
    // Every rank's `mine` (all of one length), concatenated in rank order.
    std::string gathered(const std::string& mine) {
        return on_device(mine, mine.size() * static_cast<std::size_t>(size()), [&](void* in, void* out) {
            issued(ncclAllGather(in, out, mine.size(), ncclUint8, comm_, stream_), "ncclAllGather");
        });
    }
    // Rank 0's `n` bytes (`from_root` there) on every rank.
    std::string broadcasted(std::string from_root, std::size_t n) {
        from_root.resize(n, '\0');
        return on_device(from_root, n, [&](void* in, void* out) {
            issued(ncclBroadcast(in, out, n, ncclUint8, 0, comm_, stream_), "ncclBroadcast");
        });
    }
    // A call on the non-blocking communicator, once NCCL has taken it.
    void issued(ncclResult_t r, const char* what) {
        nccl::issued(r, what);
        settle(comm_, timeout_, std::string("nccl control plane, rank ") + std::to_string(rank()) + ": " + what,
               "--rendezvous-timeout", not_joined);
    }
    // Until the stream's work so far is done; throws on an asynchronous
    // NCCL error (a peer that died) or after the timeout (a peer that never
    // joins the collective); abort() then ends the waiting work.
    void wait() {
        const cudaEvent_t done = channel::record(stream_);
        cudaError_t state = cudaErrorNotReady;
        ncclResult_t error = ncclSuccess;
        const bool finished = poll(timeout_, [&] {
            state = cudaEventQuery(done);
            check(ncclCommGetAsyncError(comm_, &error), "ncclCommGetAsyncError");
            return state != cudaErrorNotReady || error != ncclSuccess ? poll_state::done : poll_state::waiting;
        });
        cudaEventDestroy(done);
        if (!finished) throw nccl_failure(collective_timeout("nccl", rank(), "a collective", timeout_.count()));
        if (error != ncclSuccess)
            throw nccl_failure("nccl control plane, rank " + std::to_string(rank()) + ": " + async_reason(comm_, error));
        gpu::check(state, "cudaEventQuery");
    }

    ncclComm_t comm_ = nullptr;
    rendezvous::launch_ranks ranks_;
    std::chrono::duration<double> timeout_;
    cudaStream_t stream_ = nullptr;
};

// The control plane of a rank started without MPI: its place from the
// environment, its GPU, rank 0's ncclUniqueId through the shared-file
// rendezvous in `directory`, the world communicator. `timeout` bounds the
// wait for the file and each collective of the control plane. Rank 0 removes the
// file once the communicator is up (ncclCommInitRank is collective: every
// rank has read it), or when the initialisation fails.
inline std::unique_ptr<control> join_by_file(const std::string& directory, const std::string& tag,
                                             std::chrono::duration<double> timeout) {
    const rendezvous::launch_ranks ranks = rendezvous::ranks_from_environment();
    select_device(ranks.rank, ranks.local_rank);
    ncclUniqueId id;
    std::optional<rendezvous::publication> published;
    if (ranks.rank == 0) {
        check(ncclGetUniqueId(&id), "ncclGetUniqueId");
        published.emplace(directory, tag, ranks.size, std::string(reinterpret_cast<const char*>(&id), sizeof id));
    } else {
        const std::string bytes = rendezvous::await(directory, tag, ranks.size, ranks.rank, timeout);
        if (bytes.size() != sizeof id)
            throw rendezvous::error("rendezvous: " + rendezvous::file_path(directory, tag) + ": holds " +
                                    std::to_string(bytes.size()) + " bytes, an ncclUniqueId has " +
                                    std::to_string(sizeof id));
        std::memcpy(&id, bytes.data(), sizeof id);
    }
    const std::string what = "ncclCommInitRank (rank " + std::to_string(ranks.rank) + " of " +
                             std::to_string(ranks.size) + ", run tag '" + tag + "')";
    ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
    config.blocking = 0;  // a rank that never joins must not hang the others
    ncclComm_t comm = nullptr;
    if (const ncclResult_t r = ncclCommInitRankConfig(&comm, ranks.size, id, ranks.rank, &config); r != ncclInProgress)
        check(r, what);
    try {
        settle(comm, timeout, what, "--rendezvous-timeout", not_joined);
    } catch (...) {
        ncclCommAbort(comm);
        throw;
    }
    return std::make_unique<control>(comm, ranks, timeout);
}

}  // namespace chimera::runtime::nccl
