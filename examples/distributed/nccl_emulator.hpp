// An emulation of the part of NCCL's API (nccl.h) that a pipeline transport
// uses, implemented over MPI, so that NCCL code runs in CI without a GPU
// (with examples/cuda/emulator for the streams). Not a model of NCCL's
// performance: it keeps the *semantics* that decide whether such code is
// right:
//
// * Work is enqueued on the stream (ncclGroupEnd enqueues the whole group
//   as one item); the host does not wait.
// * A send completes only when its receive is posted (MPI_Issend), so an
//   exchange whose two sends are not in one group deadlocks here as it
//   does on GPUs: like NCCL, the stream item waits for ever. Set
//   CHIMERA_NCCL_EMULATOR_TIMEOUT_MS to make an item that makes no
//   progress for that long give up and set the communicator's
//   asynchronous error (ncclCommGetAsyncError) instead (a test of a
//   deadlock that needs no watchdog).
// * ncclCommInitRankConfig with blocking = 0 returns ncclInProgress and
//   initialises on a thread (ncclCommGetAsyncError reads ncclInProgress
//   until it is done), so a caller can bound the wait for a rank that
//   never joins. Every later call on such a communicator is non-blocking
//   too, as on NCCL: ncclCommSplit (whose result inherits the mode unless
//   a config says otherwise) returns ncclInProgress with the new
//   communicator null and splits on a thread of its own; the parent reads
//   ncclInProgress until it is done, and only then is the new
//   communicator's handle written. An operation outside a group, or
//   ncclGroupEnd, returns ncclInProgress and enqueues *nothing* until
//   ncclCommGetAsyncError is called on one of its communicators (which
//   then reads ncclInProgress once, then ncclSuccess). So a caller that
//   records an event or issues more work before NCCL has taken the call
//   sees it run out of order, as it could on a GPU; a call on a
//   communicator whose last call is still in progress fails with
//   ncclInvalidArgument, as NCCL's does.
// * ncclCommAbort, called while work waits for a peer, ends that work
//   (the item cancels its MPI requests and returns, as NCCL's kernels
//   return) and later items of the communicator are dropped; the
//   communicator is freed once no stream item holds it.
// * Point-to-point messages between two ranks match in issue order (one
//   tag per communicator).
// * ncclAllReduce (ncclSum) adds the ranks' buffers in rank order on the
//   lowest rank and sends the sum back: the same bits on every run.
// * ncclAllGather and ncclBroadcast: collectives over the communicator,
//   in-stream, in the order the ranks issue them.
//
// Communicators: ncclCommInitRank must be called by every rank of
// MPI_COMM_WORLD (the usual world communicator) with the same unique id
// (ncclGetUniqueId makes a fresh one per call); a rank whose id differs
// makes the call fail on every rank (on NCCL it would hang or fail).
// ncclCommSplit splits any communicator. MPI must be initialised with
// MPI_THREAD_MULTIPLE (stream threads call MPI); where the program did not
// initialise MPI (a rank started without it: --rendezvous file:DIR),
// ncclCommInitRank does, and finalizes it at exit: the emulator stands in
// for NCCL's own bootstrap network, as the CUDA emulator for a GPU.
#pragma once

#include <mpi.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <functional>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <unistd.h>

#if defined(CHIMERA_CUDA_EMULATION)
#include "../cuda/emulator/cuda_emulator.hpp"
#else
using cudaStream_t = struct CUstream_st*;  // host-only builds: work runs at the call
#endif

enum ncclResult_t {
    ncclSuccess = 0,
    ncclUnhandledCudaError = 1,
    ncclSystemError = 2,
    ncclInternalError = 3,
    ncclInvalidArgument = 4,
    ncclInvalidUsage = 5,
    ncclRemoteError = 6,
    ncclInProgress = 7,
};
enum ncclDataType_t { ncclInt8 = 0, ncclChar = 0, ncclUint8 = 1, ncclInt32 = 2, ncclFloat32 = 7, ncclFloat = 7, ncclFloat64 = 8, ncclDouble = 8 };
enum ncclRedOp_t { ncclSum = 0 };
struct ncclUniqueId {
    char internal[128];
};
struct ncclConfig_t {
    int blocking = 1;
};
#define NCCL_CONFIG_INITIALIZER \
    {}
constexpr int NCCL_SPLIT_NOCOLOR = -1;

namespace chimera_nccl {

struct pending_work;

struct communicator {
    MPI_Comm p2p = MPI_COMM_NULL, collective = MPI_COMM_NULL;
    int rank = 0, size = 0;
    std::string reason;                                   // written before async_error
    std::atomic<ncclResult_t> async_error{ncclSuccess};  // set by stream work, read by ncclCommGetAsyncError
    std::atomic<bool> busy{false};                       // a non-blocking creation or split runs
    std::atomic<bool> aborted{false};                    // ncclCommAbort: stream work returns
    std::atomic<int> references{1};                      // the owner's and one per stream item
    std::vector<MPI_Request> abandoned;                  // of timed-out work; cancelled when freed
    bool blocking = true;                                // config.blocking of its creation
    std::shared_ptr<pending_work> pending;               // non-blocking: work not enqueued yet
};

// Drops one reference; the last one cancels what timed out and frees the
// communicator.
inline void release(communicator* c) {
    if (--c->references > 0) return;
    for (MPI_Request& r : c->abandoned) {
        MPI_Cancel(&r);
        MPI_Request_free(&r);
    }
    for (MPI_Comm* m : {&c->collective, &c->p2p})
        if (*m != MPI_COMM_NULL) MPI_Comm_free(m);
    delete c;
}

// Set when a non-blocking initialisation was aborted before it completed:
// its thread may wait in MPI for ever, so MPI is not finalized at exit.
inline std::atomic<bool>& init_abandoned() {
    static std::atomic<bool> abandoned{false};
    return abandoned;
}

// One call of a stream item: `post` appends its MPI requests; `after`, if
// any, runs once they completed and may append more (an all-reduce's root
// sends the sum there).
struct task {
    std::function<void(std::vector<MPI_Request>&)> post;
    std::function<void(std::vector<MPI_Request>&)> after;
    bool reduction = false;  // an all-reduce (the stream trace names its item ncclAllReduce)
};

// CHIMERA_NCCL_EMULATOR_REDUCE_DELAY_MS: an all-reduce waits that long
// before it posts, like one whose peers are late (0 by default); tests
// make the reductions long to see what runs beside them.
inline std::chrono::milliseconds reduce_delay() {
    const char* t = std::getenv("CHIMERA_NCCL_EMULATOR_REDUCE_DELAY_MS");
    return std::chrono::milliseconds(t ? std::max(0L, std::atol(t)) : 0);
}

// 0: never (NCCL's behaviour).
inline std::chrono::milliseconds timeout() {
    const char* t = std::getenv("CHIMERA_NCCL_EMULATOR_TIMEOUT_MS");
    return std::chrono::milliseconds(t ? std::max(0L, std::atol(t)) : 0);
}

inline void time_out(communicator* c, const std::vector<MPI_Request>& requests, const char* what) {
    c->reason = std::string(what) + ": no progress for " + std::to_string(timeout().count()) +
                " ms (a peer never posted the matching call: a deadlock on a GPU)";
    c->async_error = ncclRemoteError;
    for (MPI_Request r : requests)
        if (r != MPI_REQUEST_NULL) c->abandoned.push_back(r);
}

// The group being built by this thread (ncclGroupStart .. ncclGroupEnd).
struct group_state {
    int depth = 0;
    std::vector<std::pair<communicator*, task>> tasks;
    cudaStream_t stream = nullptr;
};
inline group_state& group() {
    thread_local group_state g;
    return g;
}

// Guards what host threads share about non-blocking calls: `pending`, a
// split's publication and `aborted` against it (ncclCommAbort may come from
// any host thread).
inline std::mutex& host_mutex() {
    static std::mutex m;
    return m;
}

// Work of non-blocking communicators that NCCL has not taken yet: enqueued
// by the first ncclCommGetAsyncError on one of them.
struct pending_work {
    cudaStream_t stream = nullptr;
    std::vector<std::pair<communicator*, task>> tasks;
    bool enqueued = false;
    bool dropped = false;  // a communicator of it was aborted first
};

// Runs one stream item: posts every task, then completes them by polling,
// running a task's `after` as soon as its own requests completed (so a
// root's sum never waits for unrelated calls of its group). Nothing
// completing for the timeout (if one is set) sets the async error and
// gives up; an aborted communicator ends it. It holds a reference to
// every communicator of its tasks (taken by enqueue).
inline void run_item(std::vector<std::pair<communicator*, task>> tasks) {
    struct holds {
        std::vector<std::pair<communicator*, task>>& tasks;
        ~holds() {
            for (auto& [c, t] : tasks) release(c);
        }
    } held{tasks};
    const auto aborted = [&] {
        return std::any_of(tasks.begin(), tasks.end(), [](const auto& x) { return x.first->aborted.load(); });
    };
    if (tasks.empty() || aborted() || tasks.front().first->async_error != ncclSuccess) return;
    communicator* c = tasks.front().first;
    std::vector<MPI_Request> requests;
    std::vector<std::size_t> owner;                  // task of each request
    std::vector<int> open(tasks.size(), 0);          // its requests not completed yet
    std::vector<bool> pending_after(tasks.size());   // `after` still to run
    auto post = [&](std::size_t t, const std::function<void(std::vector<MPI_Request>&)>& f) {
        const std::size_t before = requests.size();
        f(requests);
        owner.resize(requests.size(), t);
        open[t] += static_cast<int>(requests.size() - before);
    };
    for (std::size_t t = 0; t < tasks.size(); ++t) {
        post(t, tasks[t].second.post);
        pending_after[t] = static_cast<bool>(tasks[t].second.after);
    }
    const bool times_out = timeout().count() > 0;
    auto deadline = std::chrono::steady_clock::now() + timeout();
    std::vector<int> done(requests.size());
    for (;;) {
        bool waiting = false;
        for (std::size_t t = 0; t < tasks.size(); ++t) {
            if (open[t] == 0 && pending_after[t]) pending_after[t] = false, post(t, tasks[t].second.after);
            waiting = waiting || open[t] > 0 || pending_after[t];
        }
        if (!waiting) return;
        int completed = 0;
        done.resize(requests.size());
        MPI_Testsome(static_cast<int>(requests.size()), requests.data(), &completed, done.data(), MPI_STATUSES_IGNORE);
        if (completed > 0 && completed != MPI_UNDEFINED) {
            for (int k = 0; k < completed; ++k) --open[owner[static_cast<std::size_t>(done[static_cast<std::size_t>(k)])]];
            deadline = std::chrono::steady_clock::now() + timeout();
        } else if (aborted()) {
            for (MPI_Request& r : requests)
                if (r != MPI_REQUEST_NULL) MPI_Cancel(&r), MPI_Request_free(&r);
            return;
        } else if (times_out && std::chrono::steady_clock::now() >= deadline) {
            return time_out(c, requests, "nccl group");
        } else {
            std::this_thread::yield();
        }
    }
}

inline void enqueue(cudaStream_t stream, std::vector<std::pair<communicator*, task>> tasks) {
    for (auto& [c, t] : tasks) ++c->references;  // released by run_item
#if defined(CHIMERA_CUDA_EMULATION)
    const bool reduces = std::any_of(tasks.begin(), tasks.end(), [](const auto& x) { return x.second.reduction; });
    chimera_emulator::submit(stream, [tasks = std::move(tasks)]() mutable { run_item(std::move(tasks)); },
                             reduces ? "ncclAllReduce" : "nccl");
#else
    (void)stream;
    run_item(std::move(tasks));
#endif
}

// Runs `work` on a thread of its own while `c` reads ncclInProgress (a
// non-blocking creation or split); the thread holds a reference to `c`.
template <class Work>
void in_background(communicator* c, Work work) {
    c->busy = true;
    ++c->references;
    std::thread([c, work] {
        work();
        c->busy = false;
        release(c);
    }).detach();
}

// The reason of the last failed call without a communicator (ncclGetLastError(nullptr)).
inline std::string& last_error() {
    static std::string reason;
    return reason;
}

// ncclInvalidArgument (as NCCL's) when `c`'s last call is still in
// progress (a non-blocking communicator must be polled to ncclSuccess
// first). Clears the last error otherwise: each call starts afresh.
inline ncclResult_t in_progress(communicator* c) {
    std::lock_guard lock(host_mutex());
    if (!c->pending && !c->busy) return last_error().clear(), ncclSuccess;
    last_error() = "a call on a communicator whose last call is still in progress "
                   "(poll ncclCommGetAsyncError until ncclSuccess first)";
    return ncclInvalidArgument;
}

// The end of a call outside a group, or of a group: enqueued now when its
// communicators are blocking; otherwise left pending on each of them
// (ncclInProgress) until ncclCommGetAsyncError.
inline ncclResult_t submit(cudaStream_t stream, std::vector<std::pair<communicator*, task>> tasks) {
    const auto blocking = [](const auto& x) { return x.first->blocking; };
    if (std::all_of(tasks.begin(), tasks.end(), blocking)) {
        if (!tasks.empty()) enqueue(stream, std::move(tasks));
        return ncclSuccess;
    }
    if (std::any_of(tasks.begin(), tasks.end(), blocking)) {
        last_error() = "a group of blocking and non-blocking communicators";
        return ncclInvalidUsage;
    }
    auto work = std::make_shared<pending_work>();
    work->stream = stream;
    work->tasks = std::move(tasks);
    std::lock_guard lock(host_mutex());
    for (auto& [c, t] : work->tasks) c->pending = work;
    return ncclInProgress;
}

// A call on `c`: refused while its last call is in progress; kept for
// ncclGroupEnd inside a group; submitted alone otherwise.
inline ncclResult_t add(communicator* c, task t, cudaStream_t stream) {
    if (!c) return ncclInvalidArgument;
    if (const ncclResult_t busy = in_progress(c); busy != ncclSuccess) return busy;
    if (c->async_error != ncclSuccess) return c->async_error;
    auto& g = group();
    if (g.depth > 0) {
        g.tasks.emplace_back(c, std::move(t));
        g.stream = stream;
        return ncclSuccess;
    }
    std::vector<std::pair<communicator*, task>> one;
    one.emplace_back(c, std::move(t));
    return submit(stream, std::move(one));
}

inline MPI_Datatype mpi_type(ncclDataType_t t) {
    return t == ncclFloat64 ? MPI_DOUBLE : t == ncclInt32 ? MPI_INT : t <= ncclUint8 ? MPI_BYTE : MPI_FLOAT;
}
inline std::size_t type_size(ncclDataType_t t) { return t == ncclFloat64 ? 8 : t <= ncclUint8 ? 1 : 4; }

// MPI for a program that did not initialise it: initialised here, finalized at exit.
inline void ensure_mpi() {
    int initialized = 0;
    MPI_Initialized(&initialized);
    if (initialized) return;
    int provided = 0;
    MPI_Init_thread(nullptr, nullptr, MPI_THREAD_MULTIPLE, &provided);
    std::atexit([] {
        int finalized = 0;
        MPI_Finalized(&finalized);
        if (!finalized && !init_abandoned()) MPI_Finalize();
    });
}

// True when every rank of MPI_COMM_WORLD passed the same id (collective).
inline bool same_id_everywhere(const ncclUniqueId& id, int ranks) {
    std::vector<char> all(sizeof id.internal * static_cast<std::size_t>(ranks));
    MPI_Allgather(id.internal, sizeof id.internal, MPI_BYTE, all.data(), sizeof id.internal, MPI_BYTE, MPI_COMM_WORLD);
    for (int r = 0; r < ranks; ++r)
        if (std::memcmp(all.data() + r * sizeof id.internal, id.internal, sizeof id.internal) != 0) return false;
    return true;
}

// Makes `c` the world communicator (collective over MPI_COMM_WORLD): the
// ranks must pass the same id; the reason of a failure goes to c->reason.
inline ncclResult_t init_world(communicator* c, int nranks, const ncclUniqueId& id, int rank) {
    int world = 0;
    MPI_Comm_size(MPI_COMM_WORLD, &world);
    if (nranks != world) {  // the emulator's world communicator only
        c->reason = "ncclCommInitRank: nranks " + std::to_string(nranks) + ", the MPI world has " + std::to_string(world);
        return ncclInvalidUsage;
    }
    if (!same_id_everywhere(id, world)) {
        c->reason = "ncclCommInitRank: the ranks passed different unique ids";
        return ncclInvalidUsage;
    }
    MPI_Comm_split(MPI_COMM_WORLD, 0, rank, &c->p2p);
    MPI_Comm_dup(c->p2p, &c->collective);
    MPI_Comm_rank(c->p2p, &c->rank);
    MPI_Comm_size(c->p2p, &c->size);
    return ncclSuccess;
}

template <class T>
void add_in_order(std::vector<std::vector<char>>& parts, void* out, std::size_t count) {
    std::vector<T> sum(count, T(0));
    for (const auto& p : parts)
        for (std::size_t i = 0; i < count; ++i) sum[i] += reinterpret_cast<const T*>(p.data())[i];
    std::memcpy(out, sum.data(), count * sizeof(T));
}

}  // namespace chimera_nccl

using ncclComm_t = chimera_nccl::communicator*;

inline const char* ncclGetErrorString(ncclResult_t r) {
    switch (r) {
        case ncclSuccess: return "no error";
        case ncclSystemError: return "unhandled system error";
        case ncclInvalidArgument: return "invalid argument";
        case ncclInvalidUsage: return "invalid usage";
        case ncclRemoteError: return "remote process exited or there was a network error";
        case ncclInProgress: return "NCCL operation in progress";
        default: return "internal error";
    }
}

// A fresh id per call (process, time, a random number, a counter).
inline ncclResult_t ncclGetUniqueId(ncclUniqueId* id) {
    static int counter = 0;
    std::memset(id->internal, 0, sizeof id->internal);
    std::snprintf(id->internal, sizeof id->internal, "chimera-nccl-emulator %ld %ld %u %d", static_cast<long>(getpid()),
                  static_cast<long>(std::time(nullptr)), std::random_device{}(), ++counter);
    return ncclSuccess;
}

inline ncclResult_t ncclCommInitRank(ncclComm_t* comm, int nranks, ncclUniqueId id, int rank) {
    chimera_nccl::last_error().clear();
    chimera_nccl::ensure_mpi();
    auto* c = new chimera_nccl::communicator;
    if (const ncclResult_t r = chimera_nccl::init_world(c, nranks, id, rank); r != ncclSuccess) {
        chimera_nccl::last_error() = c->reason;
        chimera_nccl::release(c);
        return r;
    }
    *comm = c;
    return ncclSuccess;
}

// config->blocking == 0: returns ncclInProgress at once; the
// initialisation runs on a thread of its own, and ncclCommGetAsyncError
// reads ncclInProgress until it is done (ncclSuccess, or the error). A
// rank that never joins leaves it in progress for ever, as on NCCL; the
// caller's timeout then aborts it.
inline ncclResult_t ncclCommInitRankConfig(ncclComm_t* comm, int nranks, ncclUniqueId id, int rank,
                                           ncclConfig_t* config) {
    if (!config || config->blocking != 0) return ncclCommInitRank(comm, nranks, id, rank);
    chimera_nccl::ensure_mpi();
    auto* c = new chimera_nccl::communicator;
    c->blocking = false;
    chimera_nccl::in_background(c, [c, nranks, id, rank] {
        c->async_error = chimera_nccl::init_world(c, nranks, id, rank);
    });
    *comm = c;
    return ncclInProgress;
}

// Collective over `comm`. The new communicator is non-blocking when the
// config says so, or without a config when the parent is. A non-blocking
// parent splits on a thread of its own: the call returns ncclInProgress
// with *newcomm null, the parent reads ncclInProgress until the split is
// done, and only then is *newcomm set (as NCCL does; `newcomm` must stay
// valid until then).
inline ncclResult_t ncclCommSplit(ncclComm_t comm, int color, int key, ncclComm_t* newcomm,
                                  ncclConfig_t* config = nullptr) {
    if (!comm) return ncclInvalidArgument;
    if (const ncclResult_t busy = chimera_nccl::in_progress(comm); busy != ncclSuccess) return busy;
    if (comm->async_error != ncclSuccess) return comm->async_error;
    *newcomm = nullptr;
    chimera_nccl::communicator* c = color == NCCL_SPLIT_NOCOLOR ? nullptr : new chimera_nccl::communicator;
    if (c) c->blocking = config ? config->blocking != 0 : comm->blocking;
    const auto split = [comm, c, color, key, newcomm] {
        MPI_Comm part = MPI_COMM_NULL;
        MPI_Comm_split(comm->p2p, c ? color : MPI_UNDEFINED, key, &part);
        if (!c) return;
        c->p2p = part;
        MPI_Comm_dup(part, &c->collective);
        MPI_Comm_rank(part, &c->rank);
        MPI_Comm_size(part, &c->size);
        std::lock_guard lock(chimera_nccl::host_mutex());
        if (!comm->aborted) *newcomm = c;  // an aborted parent's caller may have freed `newcomm` (c is left)
    };
    if (comm->blocking) {
        split();
        return color == NCCL_SPLIT_NOCOLOR || *newcomm ? ncclSuccess : ncclRemoteError;  // aborted meanwhile
    }
    chimera_nccl::in_background(comm, split);
    return ncclInProgress;
}

inline ncclResult_t ncclCommCount(ncclComm_t comm, int* count) { return *count = comm->size, ncclSuccess; }
inline ncclResult_t ncclCommUserRank(ncclComm_t comm, int* rank) { return *rank = comm->rank, ncclSuccess; }
// A non-blocking communicator's pending call is taken (enqueued) here: the
// first query reads ncclInProgress, the next its state.
// A split or creation in progress reads ncclInProgress; work dropped by
// another communicator's abort reads ncclRemoteError.
inline ncclResult_t ncclCommGetAsyncError(ncclComm_t comm, ncclResult_t* error) {
    std::vector<std::pair<chimera_nccl::communicator*, chimera_nccl::task>> taken;
    cudaStream_t stream = nullptr;
    {
        std::unique_lock lock(chimera_nccl::host_mutex());
        const auto work = std::move(comm->pending);
        if (!work) {
            *error = comm->busy ? ncclInProgress : comm->async_error.load();
            return ncclSuccess;
        }
        if (work->dropped) {
            comm->reason = "its group was dropped: another communicator of it was aborted";
            comm->async_error = ncclRemoteError;
        } else if (!work->enqueued) {
            work->enqueued = true;
            taken = std::move(work->tasks), stream = work->stream;
        }
        *error = ncclInProgress;
    }
    // Outside the lock: on the legacy stream the work runs here, and may
    // wait for a peer until another thread's ncclCommAbort.
    if (!taken.empty()) chimera_nccl::enqueue(stream, std::move(taken));
    return ncclSuccess;
}
// The reason behind an asynchronous error (the emulator's; NCCL logs it
// with NCCL_DEBUG=WARN).
inline const char* ncclGetLastError(ncclComm_t comm) {
    return comm ? comm->reason.c_str() : chimera_nccl::last_error().c_str();
}

// Abort, from any host thread and while work waits (NCCL's way out of a
// hang): the stream work of the communicator returns, later work is
// dropped, and the communicator is freed once no stream item holds it.
inline ncclResult_t ncclCommAbort(ncclComm_t comm) {
    if (!comm) return ncclSuccess;
    {
        std::lock_guard lock(chimera_nccl::host_mutex());
        if (comm->busy) chimera_nccl::init_abandoned() = true;
        if (const auto work = std::move(comm->pending)) work->dropped = true;  // for every communicator of it
        comm->aborted = true;
    }
    chimera_nccl::release(comm);
    return ncclSuccess;
}
inline ncclResult_t ncclCommDestroy(ncclComm_t comm) {
    if (!comm) return ncclSuccess;
    bool in_progress = false;
    {
        std::lock_guard lock(chimera_nccl::host_mutex());
        in_progress = comm->pending || comm->busy;
    }
    if (comm->async_error != ncclSuccess || in_progress) return ncclCommAbort(comm);
    chimera_nccl::release(comm);
    return ncclSuccess;
}

inline ncclResult_t ncclGroupStart() {
    ++chimera_nccl::group().depth;
    return ncclSuccess;
}
inline ncclResult_t ncclGroupEnd() {
    chimera_nccl::last_error().clear();
    auto& g = chimera_nccl::group();
    if (g.depth == 0) return ncclInvalidUsage;
    if (--g.depth > 0) return ncclSuccess;
    auto tasks = std::move(g.tasks);
    g.tasks.clear();
    return chimera_nccl::submit(g.stream, std::move(tasks));
}

namespace chimera_nccl {
// A send (synchronous: completes once the receive is posted) or a receive,
// tag 0: messages between two ranks match in issue order.
inline ncclResult_t point_to_point(bool send, void* data, std::size_t count, ncclDataType_t type, int peer,
                                   ncclComm_t comm, cudaStream_t stream) {
    return add(comm,
               {[=](std::vector<MPI_Request>& r) {
                    r.emplace_back();
                    const int n = static_cast<int>(count);
                    if (send) MPI_Issend(data, n, mpi_type(type), peer, 0, comm->p2p, &r.back());
                    else MPI_Irecv(data, n, mpi_type(type), peer, 0, comm->p2p, &r.back());
                },
                {}},
               stream);
}
}  // namespace chimera_nccl

inline ncclResult_t ncclSend(const void* data, std::size_t count, ncclDataType_t type, int peer, ncclComm_t comm,
                             cudaStream_t stream) {
    return chimera_nccl::point_to_point(true, const_cast<void*>(data), count, type, peer, comm, stream);
}
inline ncclResult_t ncclRecv(void* data, std::size_t count, ncclDataType_t type, int peer, ncclComm_t comm,
                             cudaStream_t stream) {
    return chimera_nccl::point_to_point(false, data, count, type, peer, comm, stream);
}

// Sum in rank order: every rank sends its buffer to rank 0, which adds them
// from zero in rank order and sends the sum back (all synchronous sends).
inline ncclResult_t ncclAllReduce(const void* send, void* recv, std::size_t count, ncclDataType_t type, ncclRedOp_t op,
                                  ncclComm_t comm, cudaStream_t stream) {
    if (op != ncclSum) return ncclInvalidArgument;
    auto parts = std::make_shared<std::vector<std::vector<char>>>();
    chimera_nccl::task t;
    t.reduction = true;
    const std::size_t bytes = count * chimera_nccl::type_size(type);
    t.post = [=](std::vector<MPI_Request>& r) {
        std::this_thread::sleep_for(chimera_nccl::reduce_delay());
        if (comm->rank == 0) {
            parts->assign(static_cast<std::size_t>(comm->size), std::vector<char>(bytes));
            std::memcpy((*parts)[0].data(), send, bytes);
            for (int from = 1; from < comm->size; ++from) {
                r.emplace_back();
                MPI_Irecv((*parts)[static_cast<std::size_t>(from)].data(), static_cast<int>(bytes), MPI_BYTE, from, 1,
                          comm->collective, &r.back());
            }
            return;
        }
        r.emplace_back();
        MPI_Issend(send, static_cast<int>(bytes), MPI_BYTE, 0, 1, comm->collective, &r.back());
        r.emplace_back();
        MPI_Irecv(recv, static_cast<int>(bytes), MPI_BYTE, 0, 2, comm->collective, &r.back());
    };
    t.after = [=](std::vector<MPI_Request>& r) {
        if (comm->rank != 0) return;
        if (type == ncclFloat64) chimera_nccl::add_in_order<double>(*parts, recv, count);
        else if (type == ncclInt32) chimera_nccl::add_in_order<std::int32_t>(*parts, recv, count);
        else chimera_nccl::add_in_order<float>(*parts, recv, count);
        for (int to = 1; to < comm->size; ++to) {
            r.emplace_back();
            MPI_Issend(recv, static_cast<int>(bytes), MPI_BYTE, to, 2, comm->collective, &r.back());
        }
    };
    return chimera_nccl::add(comm, std::move(t), stream);
}

// recv[r * count ..] = rank r's send: rank 0 collects every rank's buffer,
// then sends the whole to every other rank (synchronous sends).
inline ncclResult_t ncclAllGather(const void* send, void* recv, std::size_t count, ncclDataType_t type, ncclComm_t comm,
                                  cudaStream_t stream) {
    if (!comm) return ncclInvalidArgument;
    const std::size_t bytes = count * chimera_nccl::type_size(type);
    const int n = static_cast<int>(bytes), whole = static_cast<int>(bytes) * comm->size;
    auto* out = static_cast<char*>(recv);
    chimera_nccl::task t;
    t.post = [=](std::vector<MPI_Request>& r) {
        if (comm->rank != 0) {
            r.emplace_back();
            MPI_Issend(send, n, MPI_BYTE, 0, 3, comm->collective, &r.back());
            r.emplace_back();
            MPI_Irecv(out, whole, MPI_BYTE, 0, 4, comm->collective, &r.back());
            return;
        }
        std::memmove(out, send, bytes);
        for (int from = 1; from < comm->size; ++from) {
            r.emplace_back();
            MPI_Irecv(out + static_cast<std::size_t>(from) * bytes, n, MPI_BYTE, from, 3, comm->collective, &r.back());
        }
    };
    t.after = [=](std::vector<MPI_Request>& r) {
        if (comm->rank != 0) return;
        for (int to = 1; to < comm->size; ++to) {
            r.emplace_back();
            MPI_Issend(out, whole, MPI_BYTE, to, 4, comm->collective, &r.back());
        }
    };
    return chimera_nccl::add(comm, std::move(t), stream);
}

// recv = root's send on every rank (synchronous sends from the root).
inline ncclResult_t ncclBroadcast(const void* send, void* recv, std::size_t count, ncclDataType_t type, int root,
                                  ncclComm_t comm, cudaStream_t stream) {
    if (!comm) return ncclInvalidArgument;
    if (root < 0 || root >= comm->size) return ncclInvalidArgument;
    const std::size_t bytes = count * chimera_nccl::type_size(type);
    chimera_nccl::task t;
    t.post = [=](std::vector<MPI_Request>& r) {
        const int n = static_cast<int>(bytes);
        if (comm->rank != root) {
            r.emplace_back();
            MPI_Irecv(recv, n, MPI_BYTE, root, 5, comm->collective, &r.back());
            return;
        }
        std::memmove(recv, send, bytes);
        for (int to = 0; to < comm->size; ++to) {
            if (to == root) continue;
            r.emplace_back();
            MPI_Issend(recv, n, MPI_BYTE, to, 5, comm->collective, &r.back());
        }
    };
    return chimera_nccl::add(comm, std::move(t), stream);
}
