// The control plane over MPI_COMM_WORLD (--rendezvous mpi, the default):
// MPI_Init / MPI_Finalize around one run, collectives on the world, the
// node-local rank from MPI_Comm_split_type, MPI_Abort on an error.
#pragma once

#include <mpi.h>

#include <string>
#include <vector>

#include "control_plane.hpp"
#include "mpi_transport.hpp"

namespace chimera::runtime::mpi {

class control final : public control_plane {
public:
    control() {
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
        check(MPI_Allgather(&length, 1, MPI_INT, lengths.data(), 1, MPI_INT, MPI_COMM_WORLD), "MPI_Allgather");
        const std::vector<int> offsets = offsets_of(lengths);
        std::string all(static_cast<std::size_t>(offsets.back() + lengths.back()), '\0');
        check(MPI_Allgatherv(mine.data(), length, MPI_CHAR, all.data(), lengths.data(), offsets.data(), MPI_CHAR,
                             MPI_COMM_WORLD),
              "MPI_Allgatherv");
        return split(all, lengths, offsets);
    }
    std::vector<std::string> gather(const std::string& mine) override {
        int length = static_cast<int>(mine.size());
        std::vector<int> lengths(static_cast<std::size_t>(size_));
        check(MPI_Gather(&length, 1, MPI_INT, lengths.data(), 1, MPI_INT, 0, MPI_COMM_WORLD), "MPI_Gather");
        const std::vector<int> offsets = offsets_of(lengths);
        std::string all(rank_ == 0 ? static_cast<std::size_t>(offsets.back() + lengths.back()) : 0, '\0');
        check(MPI_Gatherv(mine.data(), length, MPI_CHAR, all.data(), lengths.data(), offsets.data(), MPI_CHAR, 0,
                          MPI_COMM_WORLD),
              "MPI_Gatherv");
        return rank_ == 0 ? split(all, lengths, offsets) : std::vector<std::string>{};
    }
    std::string broadcast(const std::string& from_root) override {
        unsigned long n = from_root.size();
        check(MPI_Bcast(&n, 1, MPI_UNSIGNED_LONG, 0, MPI_COMM_WORLD), "MPI_Bcast");
        std::string out = rank_ == 0 ? from_root : std::string(n, '\0');
        check(MPI_Bcast(out.data(), static_cast<int>(n), MPI_CHAR, 0, MPI_COMM_WORLD), "MPI_Bcast");
        return out;
    }
    void barrier() override { check(MPI_Barrier(MPI_COMM_WORLD), "MPI_Barrier"); }
    [[noreturn]] void abort() override {
        MPI_Abort(MPI_COMM_WORLD, 1);
        std::_Exit(1);
    }

private:
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
    int rank_ = 0, size_ = 0, local_rank_ = 0;
};

}  // namespace chimera::runtime::mpi
