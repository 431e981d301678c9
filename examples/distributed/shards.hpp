// Checkpoints of a multi-process run (docs/distributed.md): after step n
// every rank writes its shard DIR/step-<n>/rank-<r>/checkpoint.bin
// atomically (the whole-model checkpoint format of examples/common, with
// the stages the rank does not hold left zero); once every rank has
// returned from that (a barrier), rank 0 writes DIR/step-<n>/manifest,
// also atomically. A step counts only with its manifest. --resume takes
// the newest step that has one; a missing, torn or foreign shard of that
// step is refused on every rank, naming the rank.
//
// Collective steps go through the run's control plane (control_plane.hpp).
#pragma once

#include <fcntl.h>
#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <string>

#include <fmt/core.h>

#include "../common/checkpoint.hpp"
#include "control_plane.hpp"

namespace chimera::runtime {

inline std::string step_directory(const std::string& directory, int step) {
    return fmt::format("{}/step-{:08d}", directory, step);
}
inline std::string shard_directory(const std::string& directory, int step, int rank) {
    return fmt::format("{}/rank-{}", step_directory(directory, step), rank);
}

// Tests: CHIMERA_TEST_DIE_IN_CHECKPOINT="<step>:<rank>" makes that rank
// leave a torn temporary file in its shard of that step and die (SIGKILL),
// as a crash in the middle of the write would.
inline void maybe_die_in_checkpoint(const std::string& shard, int step, int rank) {
    const char* spec = std::getenv("CHIMERA_TEST_DIE_IN_CHECKPOINT");
    if (!spec || fmt::format("{}:{}", step, rank) != spec) return;
    std::filesystem::create_directories(shard);
    std::ofstream(checkpoint_path(shard) + ".tmp", std::ios::binary) << "torn";
    std::raise(SIGKILL);
}

// The manifest: written last, atomically (temporary file, fsync, rename,
// fsync of the directory).
inline void write_manifest(const std::string& step_dir, int step, int ranks) {
    const std::string path = step_dir + "/manifest", temporary = path + ".tmp";
    {
        std::ofstream out(temporary, std::ios::trunc);
        out << "chimera-train shards\nstep " << step << "\nranks " << ranks << "\n";
        if (!out) throw checkpoint_error(temporary + ": write failed");
    }
    detail::sync_path(temporary, O_RDONLY);
    std::filesystem::rename(temporary, path);
    detail::sync_path(step_dir, O_RDONLY | O_DIRECTORY);
}

// (step, ranks) of a manifest; step -1 when there is none.
inline std::pair<int, int> read_manifest(const std::string& step_dir) {
    std::ifstream in(step_dir + "/manifest");
    std::string magic, word;
    int step = -1, ranks = 0;
    if (!std::getline(in, magic) || magic != "chimera-train shards" || !(in >> word >> step >> word >> ranks))
        return {-1, 0};
    return {step, ranks};
}

// Steps present in `directory`, ascending (complete or not).
inline std::vector<int> steps_in(const std::string& directory) {
    std::vector<int> steps;
    std::error_code ec;
    for (const auto& e : std::filesystem::directory_iterator(directory, ec)) {
        const std::string name = e.path().filename().string();
        if (name.rfind("step-", 0) == 0 && name.size() == 13) steps.push_back(std::stoi(name.substr(5)));
    }
    std::sort(steps.begin(), steps.end());
    return steps;
}

// Collective: this rank's shard of step `next_step`, then the manifest;
// keeps the previous complete step, removes older ones.
template <class R>
void write_shard(control_plane& control, const std::string& directory, const checkpoint<R>& c) {
    const int rank = control.rank(), ranks = control.size();
    const int step = static_cast<int>(c.next_step);
    const std::string shard = shard_directory(directory, step, rank);
    maybe_die_in_checkpoint(shard, step, rank);
    save_checkpoint<R>(shard, c);
    control.barrier();  // every shard is durable
    if (rank != 0) return;
    write_manifest(step_directory(directory, step), step, ranks);
    int kept = 0;
    for (const int s : steps_in(directory))
        if (s < step && read_manifest(step_directory(directory, s)).first == s) kept = s;
    for (const int s : steps_in(directory))
        if (s < kept) std::filesystem::remove_all(step_directory(directory, s));
}

// Collective: this rank's shard of the newest complete step. Throws
// consistency_error on every rank when there is none, or when a rank
// cannot read its shard (each such rank prints why).
template <class R>
checkpoint<R> read_shard(control_plane& control, const std::string& directory, const gpt::gpt_config& model,
                         std::uint64_t seed) {
    const int rank = control.rank(), ranks = control.size();
    std::vector<int> newest{-1, 0};  // (step, ranks that wrote it): rank 0's view
    for (const int s : steps_in(directory))
        if (const auto [m, n] = read_manifest(step_directory(directory, s)); m == s) newest = {s, n};
    newest = values_of<int>(control.broadcast(bytes_of(newest)));
    const int step = newest.at(0), written_by = newest.at(1);
    if (step < 0)
        throw consistency_error(directory + ": no complete checkpoint to resume from (a step counts once its manifest "
                                "is written, after every rank's shard)");
    if (written_by != ranks)
        throw consistency_error(fmt::format("{}: written by {} ranks, this run has {}", step_directory(directory, step),
                                            written_by, ranks));
    checkpoint<R> c;
    int ok = 1;
    try {
        c = load_checkpoint<R>(shard_directory(directory, step, rank), model, seed);
        if (c.next_step != step) throw checkpoint_error(fmt::format("holds step {}, not {}", c.next_step, step));
    } catch (const std::exception& e) {
        fmt::print(stderr, "chimera-train: rank {}: {}\n", rank, e.what());
        ok = 0;
    }
    const auto all = control.all_gather(bytes_of(std::vector<int>{ok}));
    for (int r = 0; r < ranks; ++r)
        if (!values_of<int>(all[static_cast<std::size_t>(r)]).at(0))
            throw consistency_error(fmt::format("{} is incomplete: rank {} cannot read its shard; refusing to resume "
                                                "from a partial set (delete that step to resume from an older one)",
                                                step_directory(directory, step), r));
    return c;
}

}  // namespace chimera::runtime
