// The control plane over MPI_COMM_WORLD (--rendezvous mpi, the default):
// MPI_Init / MPI_Finalize around one run, collectives on the world, the
// node-local rank from MPI_Comm_split_type, MPI_Abort on an error. Each
// collective is non-blocking and polled: one not done within the timeout
// (--rendezvous-timeout; a rank hangs, e.g. in a checkpoint's fsync, or
// never calls it) ends the job naming it, instead of waiting for ever.
#pragma once

#include <mpi.h>

#include <chrono>
#include <string>
#include <vector>

#include "control_plane.hpp"
#include "mpi_transport.hpp"

namespace chimera::runtime::mpi {

class control final : public control_plane {
public:
    explicit control(std::chrono::duration<double> timeout = std::chrono::seconds(300)) : timeout_(timeout) {
        int provided = 0;
        MPI_Init_thread(nullptr, nullptr, MPI_THREAD_MULTIPLE, &provided);  // the nccl emulator calls MPI from stream threads
        MPI_Comm_rank(MPI_COMM_WORLD, &rank_);
        MPI_Comm_size(MPI_COMM_WORLD, &size_);
        MPI_Comm node = MPI_COMM_NULL;  // the ranks of this node (OpenMPI's OMPI_COMM_WORLD_LOCAL_RANK)
        check(MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, rank_, MPI_INFO_NULL, &node),
              "MPI_Comm_split_type");
        MPI_Comm_rank(node, &local_rank_);
        MPI_Comm_free(&node);
    }
    ~control() override { MPI_Finalize(); }

    int rank() const override { return rank_; }
    int size() const override { return size_; }
    int local_rank() const override { return local_rank_; }

    std::vector<std::string> all_gather(const std::string& mine) override {
        int length = static_cast<int>(mine.size());
        std::vector<int> lengths(static_cast<std::size_t>(size_));
        MPI_Request r = MPI_REQUEST_NULL;
        check(MPI_Iallgather(&length, 1, MPI_INT, lengths.data(), 1, MPI_INT, MPI_COMM_WORLD, &r), "MPI_Iallgather");
        complete(r, "an all-gather (lengths)");
        const std::vector<int> offsets = offsets_of(lengths);
        std::string all(static_cast<std::size_t>(offsets.back() + lengths.back()), '\0');
        check(MPI_Iallgatherv(mine.data(), length, MPI_CHAR, all.data(), lengths.data(), offsets.data(), MPI_CHAR,
                              MPI_COMM_WORLD, &r),
              "MPI_Iallgatherv");
        complete(r, "an all-gather");
        return split(all, lengths, offsets);
    }
    std::vector<std::string> gather(const std::string& mine) override {
        int length = static_cast<int>(mine.size());
        std::vector<int> lengths(static_cast<std::size_t>(size_));
        MPI_Request r = MPI_REQUEST_NULL;
        check(MPI_Igather(&length, 1, MPI_INT, lengths.data(), 1, MPI_INT, 0, MPI_COMM_WORLD, &r), "MPI_Igather");
        complete(r, "a gather (lengths)");
        const std::vector<int> offsets = offsets_of(lengths);
        std::string all(rank_ == 0 ? static_cast<std::size_t>(offsets.back() + lengths.back()) : 0, '\0');
        check(MPI_Igatherv(mine.data(), length, MPI_CHAR, all.data(), lengths.data(), offsets.data(), MPI_CHAR, 0,
                           MPI_COMM_WORLD, &r),
              "MPI_Igatherv");
        complete(r, "a gather");
        return rank_ == 0 ? split(all, lengths, offsets) : std::vector<std::string>{};
    }
    std::string broadcast(const std::string& from_root) override {
        unsigned long n = from_root.size();
        MPI_Request r = MPI_REQUEST_NULL;
        check(MPI_Ibcast(&n, 1, MPI_UNSIGNED_LONG, 0, MPI_COMM_WORLD, &r), "MPI_Ibcast");
        complete(r, "a broadcast (length)");
        std::string out = rank_ == 0 ? from_root : std::string(n, '\0');
        check(MPI_Ibcast(out.data(), static_cast<int>(n), MPI_CHAR, 0, MPI_COMM_WORLD, &r), "MPI_Ibcast");
        complete(r, "a broadcast");
        return out;
    }
    void barrier() override {
        MPI_Request r = MPI_REQUEST_NULL;
        check(MPI_Ibarrier(MPI_COMM_WORLD, &r), "MPI_Ibarrier");
        complete(r, "a barrier");
    }
    [[noreturn]] void abort() override {
        MPI_Abort(MPI_COMM_WORLD, 1);
        std::_Exit(1);
    }

private:
    // Polls `r` (a collective of every rank) until done; after the
    // timeout ends the job naming `what` (at once: MPI may still write into
    // the caller's buffers).
    void complete(MPI_Request r, const char* what) {
        request_set pending;
        pending.add(r, what);
        if (!pending.completed_within(timeout_))
            fail_job(*this, collective_timeout("mpi", rank_, what, timeout_.count()));
    }
    static std::vector<int> offsets_of(const std::vector<int>& lengths) {
        std::vector<int> offsets(lengths.size(), 0);
        for (std::size_t r = 1; r < lengths.size(); ++r) offsets[r] = offsets[r - 1] + lengths[r - 1];
        return offsets;
    }
    static std::vector<std::string> split(const std::string& all, const std::vector<int>& lengths,
                                          const std::vector<int>& offsets) {
        std::vector<std::string> out;
        for (std::size_t r = 0; r < lengths.size(); ++r)
            out.push_back(all.substr(static_cast<std::size_t>(offsets[r]), static_cast<std::size_t>(lengths[r])));
        return out;
    }
    std::chrono::duration<double> timeout_;
    int rank_ = 0, size_ = 0, local_rank_ = 0;
};

}  // namespace chimera::runtime::mpi
