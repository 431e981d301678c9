// The `nccl` transport (docs/distributed.md): one process per GPU, the CUDA
// backend's comm groups on NCCL. The ncclUniqueId goes from rank 0 to
// everyone over the run's control plane (MPI, or NCCL after the shared-file
// rendezvous: nccl_control.hpp); point-to-point messages use the world communicator,
// each stage's replica group its own (ncclCommSplit, ordered by the
// members' fixed order so the emulator's sum equals the local run's);
// a comm group's sends and receives are one ncclGroupStart/End on the
// worker's communication stream, its gradient reductions another on a
// reduction stream of their own, both joined to the compute stream by
// events (so an eager gradient sync holds up neither the messages nor the
// backward passes behind it).
// The communicators are non-blocking (config.blocking = 0): their
// creation is bounded by --rendezvous-timeout (a rank that never joins
// ends the others), and every NCCL group is polled until NCCL has taken it
// (bounded by the watchdog: connecting to a silent peer would otherwise
// block in ncclGroupEnd) before its end is recorded.
// Errors are checked. The end of a step is awaited without blocking in
// CUDA (an NCCL kernel that waits for a silent peer never returns by
// itself): the host polls each comm group's end event and NCCL's
// asynchronous errors; an error, or no group ending for the watchdog,
// aborts every communicator (the waiting kernels return) and throws,
// naming the oldest group still open and its peers.
//
// Built against examples/distributed/nccl_emulator.hpp in the emulated
// CUDA build (CI); against the real nccl.h otherwise (never run here).
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <exception>
#include <memory>
#include <span>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#if defined(CHIMERA_CUDA_EMULATION)
#include "nccl_emulator.hpp"
#else
#include <nccl.h>
#endif

#include <chimera/placement.hpp>
#include <chimera/runtime/message.hpp>
#include <chimera/runtime/transport.hpp>
#include <chimera/schedule.hpp>

#include "../cuda/backend.hpp"
#include "control_plane.hpp"

namespace chimera::runtime::nccl {

class nccl_failure : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

inline void check(ncclResult_t r, const std::string& what) {
    if (r == ncclSuccess) return;
    std::string reason = ncclGetErrorString(r);
#if defined(CHIMERA_CUDA_EMULATION)
    if (const std::string last = ncclGetLastError(nullptr); !last.empty()) reason += " (" + last + ")";
#endif
    throw nccl_failure(what + ": " + reason);
}

// An asynchronous error of `comm`, in words (with the emulator's reason).
inline std::string async_reason([[maybe_unused]] ncclComm_t comm, ncclResult_t error) {
    std::string reason = ncclGetErrorString(error);
#if defined(CHIMERA_CUDA_EMULATION)
    reason += std::string(": ") + ncclGetLastError(comm);
#endif
    return reason;
}

// Waiting without blocking in CUDA or NCCL (an NCCL kernel that waits for
// a silent peer never returns by itself): `step()` is called with a pause
// growing from 10 us to 1 ms between calls, and says whether the wait is
// done, made progress, or still waits (it may throw). Returns true when
// done; false when `quiet` passed without progress.
enum class poll_state { done, progressed, waiting };
template <class Step>
bool poll(std::chrono::duration<double> quiet, Step step) {
    auto deadline = std::chrono::steady_clock::now() + quiet;
    for (std::chrono::microseconds pause{10};; pause = std::min(pause * 2, std::chrono::microseconds{1000})) {
        const poll_state state = step();
        if (state == poll_state::done) return true;
        if (state == poll_state::progressed) deadline = std::chrono::steady_clock::now() + quiet;
        else if (std::chrono::steady_clock::now() >= deadline) return false;
        std::this_thread::sleep_for(pause);
    }
}

inline std::string seconds_text(double seconds) {
    char text[32];
    std::snprintf(text, sizeof text, "%g", seconds);
    return text;
}

// A call on a non-blocking communicator: ncclInProgress is no error.
inline void issued(ncclResult_t r, const std::string& what) {
    if (r != ncclInProgress) check(r, what);
}

// Polls `comm` until NCCL has taken its last call (a non-blocking
// communicator reads ncclInProgress until then). Throws nccl_failure
// naming `what` when the call failed, or when it is not done within
// `timeout` (`option` sets it; `why` says what that means).
inline void settle(ncclComm_t comm, std::chrono::duration<double> timeout, const std::string& what,
                   const char* option, const char* why) {
    const bool done = poll(timeout, [&] {
        ncclResult_t state = ncclSuccess;
        check(ncclCommGetAsyncError(comm, &state), "ncclCommGetAsyncError");
        if (state != ncclSuccess && state != ncclInProgress) throw nccl_failure(what + ": " + async_reason(comm, state));
        return state == ncclSuccess ? poll_state::done : poll_state::waiting;
    });
    if (!done)
        throw nccl_failure(what + ": not done within " + seconds_text(timeout.count()) + " s (" + option + "): " + why);
}

// What a rank that never creates a communicator with the others means.
inline constexpr const char* not_joined = "a rank did not join: it died, hangs, or never started";

// The communicators of one run, non-blocking. Collective: rank 0's
// ncclUniqueId reaches every rank over the control plane; creating them
// waits `waits.join` at most, each group `waits.watchdog`.
class world {
public:
    world(const schedule& s, const rank_map& map, control_plane& control, const rank_waits& waits)
        : map_(map), rank_(control.rank()), waits_(waits) {
        ncclUniqueId id;
        std::string mine;
        if (rank_ == 0) {
            check(ncclGetUniqueId(&id), "ncclGetUniqueId");
            mine.assign(reinterpret_cast<const char*>(&id), sizeof id);
        }
        const std::string got = control.broadcast(mine);
        if (got.size() != sizeof id) throw nccl_failure("nccl transport: the unique id from rank 0 has the wrong size");
        std::memcpy(&id, got.data(), sizeof id);
        ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
        config.blocking = 0;
        issued(ncclCommInitRankConfig(&all_, control.size(), id, rank_, &config), "ncclCommInitRankConfig");
        created({all_}, "ncclCommInitRank of the world communicator (" + std::to_string(control.size()) + " ranks)",
                not_joined);
        const int rank = rank_, data_parallel = map.data_parallel;
        stages_.assign(static_cast<std::size_t>(s.stages()), nullptr);  // NCCL writes each when its split is done
        for (int st = 0; st < s.stages(); ++st) {
            int order = -1;  // this rank's member of stage st's reduction
            for (int g = 0; g < data_parallel; ++g)
                for (int p = 0; p < s.pipelines(); ++p)
                    if (map.global(g * s.workers() + s.placement(p, st)) == rank) {
                        if (order >= 0)
                            throw nccl_failure("nccl transport: rank " + std::to_string(rank) +
                                               " holds two replicas of stage " + std::to_string(st));
                        order = g * s.pipelines() + p;
                    }
            ncclComm_t& c = stages_[static_cast<std::size_t>(st)];  // non-blocking as its parent
            issued(ncclCommSplit(all_, order >= 0 ? st : NCCL_SPLIT_NOCOLOR, order, &c, nullptr), "ncclCommSplit");
            const std::string what = "ncclCommSplit of stage " + std::to_string(st) + "'s replica group";
            const char* why = "a rank did not split it: it died or hangs";
            created({all_}, what, why);  // then c is written (null for a rank outside the group)
            if (order >= 0 && !c) fail(what + ": done, but no communicator for member " + std::to_string(order));
            created({c}, what, why);
        }
    }
    world(const world&) = delete;
    world& operator=(const world&) = delete;
    // Destroyed while an error propagates: aborted (a destroy could wait
    // for work that a failed peer never completes).
    ~world() {
        if (std::uncaught_exceptions() > 0) abort_all();
        for (ncclComm_t c : stages_)
            if (c) ncclCommDestroy(c);
        if (all_) ncclCommDestroy(all_);
    }

    ncclComm_t all() const { return all_; }
    ncclComm_t stage(int s) const { return stages_.at(static_cast<std::size_t>(s)); }
    int to_global(int logical) const { return map_.global(logical); }

    // After ncclGroupEnd on `comms`: polls until NCCL has taken the group
    // (`what`); not within the watchdog, or an error, fails.
    void taken(const std::vector<ncclComm_t>& comms, const std::string& what) {
        settle(comms, waits_.watchdog, "--watchdog-ms", "a peer died, hangs, or runs another schedule", what);
    }
    // Throws (and aborts every communicator) when an asynchronous error
    // happened on one of them.
    void check_async() {
        const auto check_one = [&](ncclComm_t c) {
            ncclResult_t error = ncclSuccess;
            if (c) check(ncclCommGetAsyncError(c, &error), "ncclCommGetAsyncError");
            if (error != ncclSuccess) fail(async_reason(c, error));
        };
        for (ncclComm_t c : stages_) check_one(c);
        check_one(all_);
    }
    // Aborts every communicator: work waiting on them returns.
    void abort_all() noexcept {
        for (ncclComm_t& x : stages_)
            if (x) ncclCommAbort(x), x = nullptr;
        if (all_) ncclCommAbort(all_), all_ = nullptr;
    }
    // Aborts every communicator and throws.
    [[noreturn]] void fail(const std::string& reason) {
        abort_all();
        throw nccl_failure("nccl transport, rank " + std::to_string(rank_) + ": " + reason);
    }

private:
    void created(const std::vector<ncclComm_t>& comms, const std::string& what, const char* why) {
        settle(comms, waits_.join, "--rendezvous-timeout", why, what);
    }
    // nccl::settle for each of `comms` (null: none); a failure aborts
    // every communicator.
    void settle(const std::vector<ncclComm_t>& comms, std::chrono::duration<double> within, const char* option,
                const char* why, const std::string& what) {
        for (ncclComm_t c : comms) {
            if (!c) continue;
            try {
                nccl::settle(c, within, what, option, why);
            } catch (const nccl_failure& e) {
                fail(e.what());
            }
        }
    }

    rank_map map_;
    int rank_ = 0;
    rank_waits waits_;
    ncclComm_t all_ = nullptr;
    std::vector<ncclComm_t> stages_;
};

// A comm group's end on the communication stream, and what it holds (for
// the watchdog's report).
struct group_end {
    cudaEvent_t event;
    std::string what;
};

// A worker's streams: kernels on `compute`, point-to-point groups on
// `comm`, gradient reductions on `reduce`.
struct worker_streams {
    cudaStream_t compute, comm, reduce;
};

// One comm group of one rank: models runtime::transport over the CUDA
// backend's device buffers. Its sends and receives are one NCCL group on
// the communication stream, its reductions another on the reduction
// stream, each after everything the compute stream issued before it (an
// event). The compute stream waits for the point-to-point group's end
// before its next work; the reductions' end is left in `deferred` (joined
// before the optimizer), so an eager gradient sync overlaps the backward
// passes after it and their messages. Received buffers are allocated on
// the communication stream and listed in `received` (freed after the
// step); every NCCL group's end goes to `ends` (the watchdog's marks).
class channel {
public:
    channel(world& w, const worker_streams& s, std::vector<float*>& received, std::vector<cudaEvent_t>& deferred,
            std::vector<group_end>& ends)
        : w_(w), s_(s), received_(received), deferred_(deferred), ends_(ends) {}
    void post_send(const message_key& key, gpu::device_span data) {
        open_p2p("send of " + to_string(key) + " to rank " + std::to_string(w_.to_global(key.to)));
        issued(ncclSend(data.data, data.count, ncclFloat32, w_.to_global(key.to), w_.all(), s_.comm), "ncclSend");
    }
    void post_recv(const message_key& key, gpu::device_receipt out) {
        open_p2p("receive of " + to_string(key) + " from rank " + std::to_string(w_.to_global(key.from)));
        float* buffer = nullptr;
        gpu::check(cudaMallocAsync(reinterpret_cast<void**>(&buffer), out.count * sizeof(float), s_.comm),
                   "cudaMallocAsync");
        received_.push_back(buffer);
        issued(ncclRecv(buffer, out.count, ncclFloat32, w_.to_global(key.from), w_.all(), s_.comm), "ncclRecv");
        *out.data = buffer;
    }
    void post_reduce(const reduce_key& key, gpu::device_span data) { reductions_.push_back({key.stage, data}); }
    void complete() {
        if (!p2p_what_.empty()) {
            issued(ncclGroupEnd(), "ncclGroupEnd");
            w_.taken({w_.all()}, p2p_what_);  // before its end is recorded
            join(s_.comm, s_.compute);
            ends_.push_back({record(s_.comm), std::move(p2p_what_)});
        }
        if (reductions_.empty()) return;
        join(s_.compute, s_.reduce);
        std::string what;
        std::vector<ncclComm_t> comms;
        check(ncclGroupStart(), "ncclGroupStart");
        for (const auto& [stage, data] : reductions_) {
            what += (what.empty() ? "" : ", ") + ("all-reduce of stage " + std::to_string(stage) + "'s gradients");
            comms.push_back(w_.stage(stage));
            issued(ncclAllReduce(data.data, data.data, data.count, ncclFloat32, ncclSum, comms.back(), s_.reduce),
                   "ncclAllReduce");
        }
        issued(ncclGroupEnd(), "ncclGroupEnd");
        w_.taken(comms, what);
        deferred_.push_back(record(s_.reduce));
        ends_.push_back({record(s_.reduce), std::move(what)});
    }

    // `later` runs its next work after what `earlier` issued so far.
    static void join(cudaStream_t earlier, cudaStream_t later) {
        const cudaEvent_t e = record(earlier);
        gpu::check(cudaStreamWaitEvent(later, e, 0), "cudaStreamWaitEvent");
        gpu::check(cudaEventDestroy(e), "cudaEventDestroy");  // CUDA keeps it until the wait is done
    }
    static cudaEvent_t record(cudaStream_t s) {
        cudaEvent_t e = nullptr;
        gpu::check(cudaEventCreateWithFlags(&e, cudaEventDisableTiming), "cudaEventCreateWithFlags");
        gpu::check(cudaEventRecord(e, s), "cudaEventRecord");
        return e;
    }

private:
    // The first send or receive opens the point-to-point group.
    void open_p2p(const std::string& call) {
        if (p2p_what_.empty()) {
            join(s_.compute, s_.comm);
            check(ncclGroupStart(), "ncclGroupStart");
        } else {
            p2p_what_ += ", ";
        }
        p2p_what_ += call;
    }

    world& w_;
    worker_streams s_;
    std::vector<float*>& received_;
    std::vector<cudaEvent_t>& deferred_;
    std::vector<group_end>& ends_;
    std::string p2p_what_;  // empty until the group is open
    std::vector<std::pair<int, gpu::device_span>> reductions_;
};
static_assert(runtime::transport<channel, gpu::device_span, gpu::device_receipt, gpu::device_span>);

}  // namespace chimera::runtime::nccl

namespace chimera::runtime::nccl {

// Node-local rank -> GPU: the i-th rank of a node takes the node's GPU i;
// a rank beyond the node's GPUs is refused (NCCL does not share a GPU
// between ranks). The emulator shows CHIMERA_EMULATED_GPUS devices (8 by
// default) per process.
inline void select_device(int rank, int local) {
    int devices = 0;
    gpu::check(cudaGetDeviceCount(&devices), "cudaGetDeviceCount");
    if (local >= devices)
        throw nccl_failure("rank " + std::to_string(rank) + " is rank " + std::to_string(local) +
                           " on its node, which has " + std::to_string(devices) +
                           " GPU(s): one rank per GPU (fewer ranks per node, or more GPUs)");
    gpu::check(cudaSetDevice(local), "cudaSetDevice");
}
struct device_selection {
    explicit device_selection(const control_plane& c) { select_device(c.rank(), c.local_rank()); }
};

// This rank's worker on the CUDA backend, its comm groups on NCCL (the
// worker of mpi::rank_trainer), on its node-local GPU. Received buffers are
// freed after the step; an asynchronous NCCL error is checked when the
// stream is idle.
class cuda_worker : private device_selection, public gpu::cuda_backend {
public:
    using options = gpu::gpu_stage_options;
    cuda_worker(const rank_context& c, const schedule& s, const run_shape& shape, const gpt::dataset& data,
                int group, int worker, const std::vector<float>& initial, const options& o = {})
        : device_selection(c.control), gpu::cuda_backend(s, shape, data, group, worker, initial, o),
          watchdog_(c.waits.watchdog), nccl_(s, c.map, c.control, c.waits) {
        for (cudaStream_t* s : {&comm_stream_, &reduce_stream_})
            gpu::check(cudaStreamCreateWithFlags(s, cudaStreamNonBlocking), "cudaStreamCreateWithFlags");
    }
    cuda_worker(const cuda_worker&) = delete;
    cuda_worker& operator=(const cuda_worker&) = delete;
    // While an error propagates, the communicators are aborted first: the
    // streams may hold NCCL work that waits for a peer.
    ~cuda_worker() {
        if (std::uncaught_exceptions() > 0) nccl_.abort_all();
        free_received();
        cudaStreamDestroy(comm_stream_);
        cudaStreamDestroy(reduce_stream_);
    }

    void begin_step(int step) {
        local_ = std::make_unique<gpu::step_transport>(1, watchdog_, pool_);  // unused: comm goes to NCCL
        begin(step, *local_);
    }
    void end_step() {
        free_received();
        local_.reset();
    }
    void comm(std::span<const op> group) {
        channel transport(nccl_, {stream(), comm_stream_, reduce_stream_}, received_, deferred_, ends_);
        gpu::cuda_backend::comm(group, transport);
    }
    // Both streams idle (await_streams: NCCL's errors and the watchdog);
    // then the deferred reductions join the compute stream.
    void synchronize() {
        await_streams();
        for (cudaEvent_t e : deferred_) {
            gpu::check(cudaStreamWaitEvent(stream(), e, 0), "cudaStreamWaitEvent");
            gpu::check(cudaEventDestroy(e), "cudaEventDestroy");
        }
        deferred_.clear();
        gpu::cuda_backend::synchronize();
    }

private:
    // Polls the step's group ends, then the streams' ends, and NCCL's
    // asynchronous errors; never blocks in CUDA. An error, or no group
    // ending for the watchdog, aborts the communicators and throws naming
    // the oldest group still open.
    void await_streams() {
        ends_.push_back({channel::record(comm_stream_), "the communication stream's last work"});
        ends_.push_back({channel::record(reduce_stream_), "the reduction stream's last work"});
        ends_.push_back({channel::record(stream()), "the compute stream's last work"});
        std::vector<bool> ended(ends_.size(), false);
        std::size_t open = ends_.size();
        try {
            const bool done = poll(watchdog_, [&] {
                const std::size_t before = open;
                for (std::size_t i = 0; i < ends_.size(); ++i) {
                    if (ended[i]) continue;
                    const cudaError_t state = cudaEventQuery(ends_[i].event);
                    if (state == cudaErrorNotReady) continue;
                    gpu::check(state, "cudaEventQuery");
                    ended[i] = true, --open;
                }
                nccl_.check_async();
                return open == 0 ? poll_state::done : open < before ? poll_state::progressed : poll_state::waiting;
            });
            if (!done)
                nccl_.fail("watchdog: no NCCL group ended for " + std::to_string(watchdog_.count()) +
                           " ms (a rank died, hangs, or runs another schedule); still waiting for: " +
                           ends_[static_cast<std::size_t>(std::find(ended.begin(), ended.end(), false) -
                                                          ended.begin())].what);
        } catch (...) {
            forget_ends();
            throw;
        }
        forget_ends();
    }
    void forget_ends() {
        for (group_end& e : ends_) cudaEventDestroy(e.event);
        ends_.clear();
    }
    void free_received() {
        cudaStreamSynchronize(comm_stream_);
        cudaStreamSynchronize(reduce_stream_);
        cudaStreamSynchronize(stream());
        for (float* p : received_) cudaFree(p);
        received_.clear();
    }
    std::chrono::milliseconds watchdog_;
    world nccl_;
    gpu::buffer_pool pool_;
    std::unique_ptr<gpu::step_transport> local_;
    std::vector<float*> received_;
    cudaStream_t comm_stream_ = nullptr, reduce_stream_ = nullptr;
    std::vector<cudaEvent_t> deferred_;
    std::vector<group_end> ends_;
};

}  // namespace chimera::runtime::nccl
