// The mpi transport's replica reduction (examples/distributed/
// mpi_transport.hpp) under mpirun -np 3 and -np 4 (distributed.py, case
// reduce): one replica group of every rank (M = ranks members).
//   * owner_chunks: contiguous, in member order, sizes n / M and one more
//     for the first n % M, empty chunks when n < M; golden cases; M < 1 is
//     refused naming the value.
//   * the reduce-scatter + allgather gives, on every rank, the bits of the
//     local transport's sum (from zero, members in ascending order) for
//     n = 0, 1, M - 1, M, M + 1, odd and large sizes, float and double,
//     three reductions in a row. The values (1e8, 1, -1e8, ...) make any
//     other association give other bits: checked on the reference itself
//     (reverse order and a sum that starts from member 0 instead of zero
//     differ), so the comparison can fail.
//     The same with two members on every rank (2M members, a rank owns
//     two chunks).
//   * a member count that disagrees with the group, and members of one
//     rank with different sizes, are refused.
// Exit 0 when every rank passed.
#include <mpi.h>

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#include <distributed/all_ranks_world.hpp>
#include <distributed/mpi_control.hpp>
#include <distributed/mpi_transport.hpp>

namespace {

using chimera::runtime::mpi::chunk;
using chimera::runtime::mpi::owner_chunks;

int failures = 0;
void expect(bool ok, int rank, const std::string& what) {
    if (ok) return;
    std::fprintf(stderr, "rank %d: FAILED: %s\n", rank, what.c_str());
    ++failures;
}

void chunking(int rank) {
    expect(owner_chunks(10, 3) == std::vector<chunk>{{0, 4}, {4, 3}, {7, 3}}, rank, "owner_chunks(10, 3)");
    expect(owner_chunks(2, 4) == std::vector<chunk>{{0, 1}, {1, 1}, {2, 0}, {2, 0}}, rank, "owner_chunks(2, 4)");
    expect(owner_chunks(1, 3) == std::vector<chunk>{{0, 1}, {1, 0}, {1, 0}}, rank, "owner_chunks(1, 3)");
    expect(owner_chunks(0, 3) == std::vector<chunk>{{0, 0}, {0, 0}, {0, 0}}, rank, "owner_chunks(0, 3)");
    expect(owner_chunks(7, 1) == std::vector<chunk>{{0, 7}}, rank, "owner_chunks(7, 1)");
    for (std::size_t n = 0; n <= 40; ++n)
        for (int m = 1; m <= 9; ++m) {
            const auto c = owner_chunks(n, m);
            bool ok = c.size() == static_cast<std::size_t>(m);
            std::size_t at = 0;
            for (std::size_t j = 0; ok && j < c.size(); ++j) {
                ok = c[j].offset == at && c[j].size == n / c.size() + (j < n % c.size() ? 1 : 0);
                at += c[j].size;
            }
            expect(ok && at == n, rank, "owner_chunks(" + std::to_string(n) + ", " + std::to_string(m) + ")");
        }
    try {
        owner_chunks(5, 0);
        expect(false, rank, "owner_chunks(5, 0) was accepted");
    } catch (const std::invalid_argument& e) {
        expect(std::string(e.what()).find("got 0") != std::string::npos, rank, std::string("message: ") + e.what());
    }
}

// Member `order`'s value i: large and small magnitudes of both signs, so
// the float sum depends on the association; every 16th value is -0.0 on
// every member (0 + -0 = +0: the sum must start from zero).
template <class R>
R value(int order, std::size_t i, int round) {
    static constexpr double table[] = {1e8, 1.0, -1e8, 0.5, 3.0, -1e8, 1e8, -7.25, 1e-3, 1e17, -1e17, 2.0};
    if (i % 16 == 5) return R(-0.0);
    const std::uint64_t h = (static_cast<std::uint64_t>(order) * 7919u + i * 104729u + static_cast<unsigned>(round) * 31u) % 12u;
    return static_cast<R>(table[h]);
}

template <class R>
std::vector<R> sum_in_order(int members, std::size_t n, int round, bool reverse, bool from_zero) {
    std::vector<R> sum(n, R(0));
    for (int k = 0; k < members; ++k) {
        const int order = reverse ? members - 1 - k : k;
        for (std::size_t i = 0; i < n; ++i)
            sum[i] = (k == 0 && !from_zero) ? value<R>(order, i, round) : sum[i] + value<R>(order, i, round);
    }
    return sum;
}

template <class R>
bool same_bits(const std::vector<R>& a, const std::vector<R>& b) {
    return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(R)) == 0;
}

// Every rank holds `per_rank` members: orders rank * per_rank + k.
template <class R>
void reductions(chimera::runtime::mpi::world& w, int rank, int ranks, int per_rank) {
    const int members = ranks * per_rank;
    const std::string type = std::string(sizeof(R) == 4 ? "float" : "double") + ", " + std::to_string(members) + " members";
    const auto m = static_cast<std::size_t>(members);
    for (std::size_t n : {std::size_t{0}, std::size_t{1}, m - 1, m, m + 1, std::size_t{7}, std::size_t{1001}, std::size_t{65537}})
        for (int round = 0; round < 3; ++round) {
            std::vector<std::vector<R>> buffers(static_cast<std::size_t>(per_rank), std::vector<R>(n));
            chimera::runtime::mpi::channel<R> c(w);
            for (int k = 0; k < per_rank; ++k) {
                auto& b = buffers[static_cast<std::size_t>(k)];
                for (std::size_t i = 0; i < n; ++i) b[i] = value<R>(rank * per_rank + k, i, round);
                c.post_reduce({0, rank * per_rank + k, members}, b);
            }
            c.complete();
            const std::string what = type + " n=" + std::to_string(n) + " round " + std::to_string(round);
            const auto reference = sum_in_order<R>(members, n, round, false, true);
            for (const auto& b : buffers)
                expect(same_bits(b, reference), rank, what + ": not the bits of the ascending-order sum");
            if (n < 1000) continue;
            expect(!same_bits(reference, sum_in_order<R>(members, n, round, true, true)), rank,
                   what + ": the data cannot tell the reverse order apart");
            expect(!same_bits(reference, sum_in_order<R>(members, n, round, false, false)), rank,
                   what + ": the data cannot tell a sum that starts from member 0 apart");
        }
}

// Two members of one rank with different sizes are refused, naming both.
void bad_sizes(chimera::runtime::mpi::world& pairs, int rank, int ranks) {
    std::vector<float> a(4, 1.0f), b(5, 1.0f);
    chimera::runtime::mpi::channel<float> c(pairs);
    c.post_reduce({0, 2 * rank, 2 * ranks}, a);
    try {
        c.post_reduce({0, 2 * rank + 1, 2 * ranks}, b);
        expect(false, rank, "members of different sizes were accepted");
    } catch (const chimera::runtime::mpi::comm_failure& e) {
        const std::string expected = "member " + std::to_string(2 * rank + 1) + " has 5 values, member " +
                                     std::to_string(2 * rank) + " has 4";
        expect(std::string(e.what()).find(expected) != std::string::npos, rank, std::string("message: ") + e.what());
    }
}

// One stage, two pipelines both placed on the one worker, W = ranks: each
// rank holds two members of the stage's reduction (adjacent orders), owns
// two chunks and sends both members' slices.
chimera::runtime::mpi::world two_members_per_rank(int ranks) {
    chimera::schedule s;
    s.set_shape("two-members-per-rank", 1, 1, 2);
    s.set_placement(0, 0, 0);
    s.set_placement(1, 0, 0);
    s.add_worker();
    return chimera::runtime::mpi::world(s, chimera::runtime::rank_map{1, ranks, chimera::rank_layout::group_major},
                                        std::chrono::milliseconds(60000));
}

void bad_member_count(chimera::runtime::mpi::world& w, int rank, int ranks) {
    std::vector<float> buffer(4, 1.0f);
    chimera::runtime::mpi::channel<float> c(w);
    try {
        c.post_reduce({0, rank, ranks + 1}, buffer);
        expect(false, rank, "a member count other than the group's was accepted");
    } catch (const chimera::runtime::mpi::comm_failure& e) {
        const std::string expected = "names " + std::to_string(ranks + 1) + " members, the run has " + std::to_string(ranks);
        expect(std::string(e.what()).find(expected) != std::string::npos, rank, std::string("message: ") + e.what());
    }
}

}  // namespace

int main() {
    const chimera::runtime::mpi::control mpi;  // MPI_Init .. MPI_Finalize, as chimera-train
    const int rank = mpi.rank(), ranks = mpi.size();
    {  // the world's communicators are freed before MPI_Finalize
        auto w = chimera::runtime::mpi::all_ranks_world(std::chrono::milliseconds(60000));
        chunking(rank);
        reductions<float>(w, rank, ranks, 1);
        reductions<double>(w, rank, ranks, 1);
        bad_member_count(w, rank, ranks);
        auto pairs = two_members_per_rank(ranks);
        reductions<float>(pairs, rank, ranks, 2);
        bad_sizes(pairs, rank, ranks);
    }
    int all = 0;
    MPI_Allreduce(&failures, &all, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
    if (rank == 0 && all == 0) std::printf("mpi reduce: %d ranks, chunking and bitwise sums ok\n", ranks);
    return all == 0 ? 0 : 1;
}
