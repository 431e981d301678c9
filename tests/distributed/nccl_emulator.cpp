// The emulated nccl.h (examples/distributed/nccl_emulator.hpp) under
// mpirun -np 4, on the CUDA emulator's streams:
//   nccl_emulator semantics   grouped ring exchange, per-peer order,
//                             all-reduce bits = the sum in rank order on
//                             every rank, ncclCommSplit, ncclAllGather and
//                             ncclBroadcast (every root, in issue order);
//                             exit 0
//   nccl_emulator nonblocking
//                             a non-blocking communicator (config.blocking
//                             = 0): its creation, a split, a group and a
//                             lone all-reduce return ncclInProgress; a
//                             split's communicator is written only once the
//                             parent is done; nothing runs until
//                             ncclCommGetAsyncError is polled
//                             (ncclInProgress once, then ncclSuccess), a
//                             call meanwhile is refused, and aborting one
//                             communicator of a pending group drops it
//                             (the other reports an error); exit 0
//   nccl_emulator wrong-id    rank 1 passes another ncclUniqueId to
//                             ncclCommInitRank: the call fails on every
//                             rank (NCCL would hang or fail); exit 0
//   nccl_emulator deadlock    ranks 0 and 1 exchange with ncclSend then
//                             ncclRecv *outside* a group: on GPUs both
//                             sends wait for a receive that is queued
//                             behind them. Here too: the stream item
//                             times out and ncclCommGetAsyncError reports
//                             it; exit 0 when both ranks saw it.
#include <mpi.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include <distributed/nccl_emulator.hpp>

namespace {

int failures = 0;
void expect(bool ok, int rank, const std::string& what) {
    if (ok) return;
    std::fprintf(stderr, "rank %d: FAILED: %s\n", rank, what.c_str());
    ++failures;
}

// Values whose float sum depends on the order of the additions.
float value(int rank, int i) { return rank % 2 == 0 ? 1e8f * static_cast<float>(i + 1) : 1.0f + 0.1f * static_cast<float>(rank); }

void semantics(ncclComm_t comm, int rank, int ranks, cudaStream_t stream) {
    // A ring exchange in one group (each send's receive is in its peer's group).
    const int next = (rank + 1) % ranks, previous = (rank + ranks - 1) % ranks;
    std::vector<float> out(64, static_cast<float>(rank)), in(64, -1.0f);
    ncclGroupStart();
    ncclSend(out.data(), out.size(), ncclFloat32, next, comm, stream);
    ncclRecv(in.data(), in.size(), ncclFloat32, previous, comm, stream);
    ncclGroupEnd();
    cudaStreamSynchronize(stream);
    expect(in == std::vector<float>(64, static_cast<float>(previous)), rank, "grouped ring exchange");

    // Per-peer order: two messages 0 -> 1 arrive in issue order.
    std::vector<int> first(4, 0), second(4, 0);
    if (rank == 0) {
        first.assign(4, 11), second.assign(4, 22);
        ncclSend(first.data(), 4, ncclInt32, 1, comm, stream);
        ncclSend(second.data(), 4, ncclInt32, 1, comm, stream);
    } else if (rank == 1) {
        ncclRecv(first.data(), 4, ncclInt32, 0, comm, stream);
        ncclRecv(second.data(), 4, ncclInt32, 0, comm, stream);
    }
    cudaStreamSynchronize(stream);
    if (rank == 1) expect(first == std::vector<int>(4, 11) && second == std::vector<int>(4, 22), rank, "per-peer order");

    // All-reduce: the sum in rank order, bit for bit, on every rank.
    std::vector<float> mine(16), sum(16), expected(16, 0.0f);
    for (int i = 0; i < 16; ++i) {
        mine[static_cast<std::size_t>(i)] = value(rank, i);
        for (int r = 0; r < ranks; ++r) expected[static_cast<std::size_t>(i)] += value(r, i);
    }
    ncclAllReduce(mine.data(), sum.data(), 16, ncclFloat32, ncclSum, comm, stream);
    cudaStreamSynchronize(stream);
    expect(std::memcmp(sum.data(), expected.data(), sizeof(float) * 16) == 0, rank, "all-reduce bits in rank order");

    // Split: even and odd ranks reduce separately.
    ncclComm_t half = nullptr;
    ncclCommSplit(comm, rank % 2, rank, &half, nullptr);
    int size = 0;
    ncclCommCount(half, &size);
    std::vector<int> one{1}, count{0};
    ncclAllReduce(one.data(), count.data(), 1, ncclInt32, ncclSum, half, stream);
    cudaStreamSynchronize(stream);
    expect(size == ranks / 2 && count[0] == ranks / 2, rank, "ncclCommSplit by parity");
    ncclCommDestroy(half);
    ncclResult_t error = ncclSuccess;
    ncclCommGetAsyncError(comm, &error);
    expect(error == ncclSuccess, rank, "no asynchronous error");
}

// ncclAllGather: recv[8 r + i] = rank r's byte i; ncclBroadcast from two roots.
void collectives(ncclComm_t comm, int rank, int ranks, cudaStream_t stream) {
    std::vector<unsigned char> mine(8), all(8 * static_cast<std::size_t>(ranks), 0), expected;
    for (int i = 0; i < 8; ++i) mine[static_cast<std::size_t>(i)] = static_cast<unsigned char>(16 * rank + i);
    for (int r = 0; r < ranks; ++r)
        for (int i = 0; i < 8; ++i) expected.push_back(static_cast<unsigned char>(16 * r + i));
    ncclAllGather(mine.data(), all.data(), 8, ncclUint8, comm, stream);
    // Two broadcasts in a row from different roots: applied in issue order.
    std::vector<double> from_last(4, -1.0), from_first(4, -1.0);
    std::vector<double> send_last(4, 100.0 + ranks - 1), send_first(4, 7.0 + rank);
    ncclBroadcast(send_last.data(), from_last.data(), 4, ncclFloat64, ranks - 1, comm, stream);
    ncclBroadcast(send_first.data(), from_first.data(), 4, ncclFloat64, 0, comm, stream);
    cudaStreamSynchronize(stream);
    expect(all == expected, rank, "ncclAllGather: rank r's bytes at r * count");
    expect(from_last == std::vector<double>(4, 100.0 + ranks - 1), rank, "ncclBroadcast from the last rank");
    expect(from_first == std::vector<double>(4, 7.0), rank, "ncclBroadcast from rank 0");
    expect(ncclBroadcast(send_first.data(), from_first.data(), 4, ncclFloat64, ranks, comm, stream) ==
               ncclInvalidArgument,
           rank, "ncclBroadcast: a root outside the communicator is refused");
}

// Polls until `comm`'s call in progress is done (10 s at most).
ncclResult_t settle(ncclComm_t comm) {
    ncclResult_t state = ncclInProgress;
    const auto end = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (state == ncclInProgress && std::chrono::steady_clock::now() < end) ncclCommGetAsyncError(comm, &state);
    return state;
}

void nonblocking(const ncclUniqueId& id, int rank, int ranks, cudaStream_t stream) {
    ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
    config.blocking = 0;
    ncclComm_t comm = nullptr, half = nullptr;
    expect(ncclCommInitRankConfig(&comm, ranks, id, rank, &config) == ncclInProgress && settle(comm) == ncclSuccess,
           rank, "ncclCommInitRankConfig: in progress, then done");
    if (rank == 0) std::this_thread::sleep_for(std::chrono::seconds(1));  // the others' splits wait for it
    expect(ncclCommSplit(comm, rank % 2, rank, &half, nullptr) == ncclInProgress, rank,
           "ncclCommSplit of a non-blocking parent is non-blocking");
    if (rank != 0) {
        ncclResult_t state = ncclSuccess;
        ncclCommGetAsyncError(comm, &state);
        expect(state == ncclInProgress && half == nullptr, rank,
               "while the split waits for rank 0: the parent in progress, no new communicator yet");
    }
    expect(settle(comm) == ncclSuccess && half != nullptr && settle(half) == ncclSuccess, rank,
           "ncclCommSplit: the new communicator is written once the parent is done");
    ncclComm_t none = half;  // NCCL_SPLIT_NOCOLOR: no communicator, written as null
    expect(ncclCommSplit(comm, NCCL_SPLIT_NOCOLOR, rank, &none, nullptr) == ncclInProgress &&
               settle(comm) == ncclSuccess && none == nullptr,
           rank, "ncclCommSplit with NCCL_SPLIT_NOCOLOR: done, no communicator");

    const int next = (rank + 1) % ranks, previous = (rank + ranks - 1) % ranks;
    std::vector<float> out(64, static_cast<float>(rank)), in(64, -1.0f);
    ncclGroupStart();
    ncclSend(out.data(), out.size(), ncclFloat32, next, comm, stream);
    ncclRecv(in.data(), in.size(), ncclFloat32, previous, comm, stream);
    expect(ncclGroupEnd() == ncclInProgress, rank, "ncclGroupEnd of a non-blocking communicator: in progress");
    cudaStreamSynchronize(stream);
    expect(in == std::vector<float>(64, -1.0f), rank, "nothing enqueued before ncclCommGetAsyncError");
    std::vector<int> one{1}, count{0};
    expect(ncclAllReduce(one.data(), count.data(), 1, ncclInt32, ncclSum, comm, stream) == ncclInvalidArgument, rank,
           "a call while the last one is in progress is refused (ncclInvalidArgument, as NCCL's)");
    ncclResult_t first = ncclSuccess;
    ncclCommGetAsyncError(comm, &first);
    expect(first == ncclInProgress && settle(comm) == ncclSuccess, rank, "the group: in progress once, then done");
    cudaStreamSynchronize(stream);
    expect(in == std::vector<float>(64, static_cast<float>(previous)), rank, "the group ran once taken");

    expect(ncclAllReduce(one.data(), count.data(), 1, ncclInt32, ncclSum, half, stream) == ncclInProgress &&
               settle(half) == ncclSuccess,
           rank, "a lone all-reduce: in progress, then done");
    cudaStreamSynchronize(stream);
    expect(count[0] == ranks / 2, rank, "the lone all-reduce's sum");
    count[0] = 0;
    // A group over both communicators; aborting one drops it for both.
    ncclGroupStart();
    ncclAllReduce(one.data(), count.data(), 1, ncclInt32, ncclSum, half, stream);
    ncclAllReduce(one.data(), count.data(), 1, ncclInt32, ncclSum, comm, stream);
    expect(ncclGroupEnd() == ncclInProgress, rank, "a group over two non-blocking communicators: in progress");
    ncclCommAbort(half);  // every rank: the pending group is dropped
    cudaStreamSynchronize(stream);
    expect(count[0] == 0, rank, "an abort drops the work NCCL has not taken");
    expect(settle(comm) == ncclRemoteError, rank, "the other communicator of a dropped group reports an error");
    ncclCommDestroy(comm);
}

// Rank 1 joins with an id of its own: ncclCommInitRank fails on every rank.
void wrong_id(int rank, int ranks) {
    ncclUniqueId id;
    if (rank == 0) ncclGetUniqueId(&id);
    MPI_Bcast(&id, sizeof id, MPI_BYTE, 0, MPI_COMM_WORLD);
    ncclUniqueId again;
    ncclGetUniqueId(&again);
    expect(std::memcmp(&again, &id, sizeof id) != 0, rank, "ncclGetUniqueId: a fresh id per call");
    if (rank == 1) id = again;
    ncclComm_t comm = nullptr;
    const ncclResult_t r = ncclCommInitRank(&comm, ranks, id, rank);
    expect(r == ncclInvalidUsage && comm == nullptr, rank, "ncclCommInitRank with another rank's id must fail");
    std::fprintf(stderr, "rank %d: %s: %s\n", rank, ncclGetErrorString(r), ncclGetLastError(nullptr));
}

void deadlock(ncclComm_t comm, int rank, cudaStream_t stream) {
    if (rank > 1) return;
    const int peer = 1 - rank;
    std::vector<float> out(1024, 1.0f), in(1024);
    ncclSend(out.data(), out.size(), ncclFloat32, peer, comm, stream);  // not grouped with the receive
    ncclRecv(in.data(), in.size(), ncclFloat32, peer, comm, stream);
    cudaStreamSynchronize(stream);
    ncclResult_t error = ncclSuccess;
    ncclCommGetAsyncError(comm, &error);
    expect(error == ncclRemoteError, rank, "the ungrouped exchange must time out");
    std::fprintf(stderr, "rank %d: %s: %s\n", rank, ncclGetErrorString(error), ncclGetLastError(comm));
}

}  // namespace

int main(int argc, char** argv) {
    int provided = 0;
    MPI_Init_thread(&argc, &argv, MPI_THREAD_MULTIPLE, &provided);
    int rank = 0, ranks = 0;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &ranks);
    if (provided < MPI_THREAD_MULTIPLE || ranks < 2 || argc < 2) {
        if (rank == 0) std::fprintf(stderr, "needs MPI_THREAD_MULTIPLE, 2+ ranks and a case\n");
        MPI_Finalize();
        return 2;
    }
    const std::string which = argv[1];
    if (which == "wrong-id") {
        wrong_id(rank, ranks);
    } else if (which == "nonblocking") {
        ncclUniqueId id;
        if (rank == 0) ncclGetUniqueId(&id);
        MPI_Bcast(&id, sizeof id, MPI_BYTE, 0, MPI_COMM_WORLD);
        cudaStream_t stream = nullptr;
        cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking);
        nonblocking(id, rank, ranks, stream);
        cudaStreamDestroy(stream);
    } else {
        ncclUniqueId id;
        if (rank == 0) ncclGetUniqueId(&id);
        MPI_Bcast(&id, sizeof id, MPI_BYTE, 0, MPI_COMM_WORLD);
        ncclComm_t comm = nullptr;
        expect(ncclCommInitRank(&comm, ranks, id, rank) == ncclSuccess, rank, "ncclCommInitRank");
        cudaStream_t stream = nullptr;
        cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking);
        if (which == "semantics") semantics(comm, rank, ranks, stream), collectives(comm, rank, ranks, stream);
        else deadlock(comm, rank, stream);
        cudaStreamDestroy(stream);
        ncclCommDestroy(comm);  // aborts a communicator in error (cancels the timed-out exchange)
    }
    int total = 0;
    MPI_Allreduce(&failures, &total, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
    if (rank == 0) std::printf("%s\n", total == 0 ? "ok" : "FAILED");
    MPI_Finalize();
    return total == 0 ? 0 : 1;
}
