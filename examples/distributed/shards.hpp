// Checkpoints of a multi-process run (docs/distributed.md): after step n
// every rank writes its shard DIR/step-<n>/rank-<r>/checkpoint.bin
// atomically; once every rank has returned from that (a barrier), rank 0
// writes DIR/step-<n>/manifest, also atomically. A step counts only with
// its manifest. --resume takes the newest step that has one; a missing,
// torn or foreign shard of that step, or one whose stages disagree with
// the schedule and model, is refused on every rank, naming the rank.
//
// A shard (format 2) holds only the stages its rank holds, each once.
// Layout (little-endian host order):
//   "CHIMSHRD" | u32 format 2 | u32 value size | 6 x i32 model config |
//   i64 next step | u64 seed | i32 MPI rank | i32 stages D | u32 count S |
//   S x (i32 stage, u64 offset, u64 size), stage ids ascending, offset and
//   size in the whole-model buffer | per stage: size values x3 (params,
//   m, v) | u64 FNV-1a of all before
// (Format 1 was a whole-model checkpoint file per rank with the stages the
// rank does not hold left zero; it is refused by name.)
//
// Collective steps go through the run's control plane (control_plane.hpp).
#pragma once

#include <algorithm>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include <chimera/placement.hpp>

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
    durable::write_atomically<checkpoint_error>(
        step_dir, step_dir + "/manifest", fmt::format("chimera-train shards\nstep {}\nranks {}\n", step, ranks));
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

// Whether step `s` in `directory` is complete: its manifest, written last, names it.
inline bool complete_step(const std::string& directory, int s) {
    return read_manifest(step_directory(directory, s)).first == s;
}

// Steps present in `directory`, ascending (complete or not): the entries
// named step-NNNNNNNN (eight digits); anything else is not ours.
inline std::vector<int> steps_in(const std::string& directory) {
    std::vector<int> steps;
    std::error_code ec;
    for (const auto& e : std::filesystem::directory_iterator(directory, ec)) {
        const std::string name = e.path().filename().string();
        const auto digits = std::string_view(name).substr(std::min<std::size_t>(5, name.size()));
        if (name.rfind("step-", 0) != 0 || digits.size() != 8 ||
            !std::all_of(digits.begin(), digits.end(), [](char c) { return c >= '0' && c <= '9'; }))
            continue;
        steps.push_back(std::stoi(std::string(digits)));
    }
    std::sort(steps.begin(), steps.end());
    return steps;
}

// Collective: a run that does not resume must start in a directory (or
// none yet) without steps. Another run's complete step would count as this
// run's newest (a later --resume would take it), and its shards could mix
// with this run's. Throws consistency_error on every rank otherwise (rank
// 0 looks), before step 0.
inline void require_fresh_directory(control_plane& control, const std::string& directory) {
    std::string problem;
    if (control.rank() == 0) {
        std::string found;
        bool complete = false;
        for (const int s : steps_in(directory)) {
            found += (found.empty() ? "" : ", ") + step_directory(directory, s);
            complete = complete || complete_step(directory, s);
        }
        std::error_code ec;
        if (std::filesystem::exists(directory, ec) && !std::filesystem::is_directory(directory, ec))
            problem = "--checkpoint " + directory + " is not a directory";
        else if (complete)
            problem = "--checkpoint " + directory + " holds the steps of an earlier run (" + found +
                      "): continue that run with --resume, or give this one an empty directory";
        else if (!found.empty())
            problem = "--checkpoint " + directory + " holds incomplete steps of an earlier run (" + found +
                      "), which no run can resume: delete them, or give this run an empty directory";
    }
    problem = control.broadcast(problem);
    if (!problem.empty()) throw consistency_error(problem);
}

inline constexpr char shard_magic[8] = {'C', 'H', 'I', 'M', 'S', 'H', 'R', 'D'};
inline constexpr std::uint32_t shard_format = 2;

// A stage a shard holds: its id and its values' range in the whole-model buffer.
struct shard_stage {
    int stage = 0;
    std::size_t offset = 0, size = 0;
    friend bool operator==(const shard_stage&, const shard_stage&) = default;
};

// The distinct stages of `owned`, ascending, with their ranges in the
// model's partition into `stages` stages: what a rank's shard holds.
inline std::vector<shard_stage> stages_held(const std::vector<replica>& owned, const gpt::gpt_config& model,
                                            int stages) {
    const auto layouts = gpt::partition(model, stages);
    std::vector<int> ids;
    for (const replica& r : owned) ids.push_back(r.stage);
    std::sort(ids.begin(), ids.end());
    ids.erase(std::unique(ids.begin(), ids.end()), ids.end());
    std::vector<shard_stage> held;
    for (const int id : ids) {
        const auto& l = layouts.at(static_cast<std::size_t>(id));
        held.push_back({id, l.offset, l.size});
    }
    return held;
}

// One rank's shard: `state` has the model, step and seed, and the held
// stages' values concatenated in `held` order.
template <class R>
struct shard {
    int rank = 0, stages = 0;
    std::vector<shard_stage> held;
    checkpoint<R> state;
};

template <class R>
void save_shard_file(const std::string& directory, const shard<R>& s) {
    using detail::put;
    std::string bytes(shard_magic, 8);
    put(bytes, shard_format);
    detail::put_head<R>(bytes, s.state.model, s.state.next_step, s.state.seed);
    put(bytes, static_cast<std::int32_t>(s.rank));
    put(bytes, static_cast<std::int32_t>(s.stages));
    put(bytes, static_cast<std::uint32_t>(s.held.size()));
    for (const shard_stage& h : s.held) {
        put(bytes, static_cast<std::int32_t>(h.stage));
        put(bytes, static_cast<std::uint64_t>(h.offset));
        put(bytes, static_cast<std::uint64_t>(h.size));
    }
    std::size_t at = 0;
    for (const shard_stage& h : s.held) {
        for (const auto* v : {&s.state.params, &s.state.first_moment, &s.state.second_moment})
            bytes.append(reinterpret_cast<const char*>(v->data() + at), h.size * sizeof(R));
        at += h.size;
    }
    detail::write_atomically(directory, checkpoint_path(directory), std::move(bytes));
}

namespace shard_table {
inline std::string stage_list(const std::vector<shard_stage>& held) {
    std::string text;
    for (const shard_stage& h : held) text += (text.empty() ? "" : ", ") + std::to_string(h.stage);
    return text.empty() ? "none" : text;
}

// Refuses a shard whose stage table is not the one the schedule and model
// give its rank, naming the rank, the stage and the values.
inline void check_held(const std::string& path, int rank, int stages, const std::vector<shard_stage>& got,
                       const std::vector<shard_stage>& expected) {
    for (std::size_t i = 0; i < std::max(got.size(), expected.size()); ++i) {
        if (i >= got.size() || i >= expected.size() || got[i].stage != expected[i].stage)
            throw checkpoint_error(fmt::format(
                "{}: rank {}'s shard holds stage {} where the schedule gives rank {} stage {} (shard: stages {}; "
                "schedule: stages {})",
                path, rank, i < got.size() ? std::to_string(got[i].stage) : "none", rank,
                i < expected.size() ? std::to_string(expected[i].stage) : "none", stage_list(got),
                stage_list(expected)));
        if (got[i] != expected[i])
            throw checkpoint_error(fmt::format(
                "{}: rank {}'s shard has stage {} at values [{}, {}); the model's partition into {} stages puts it "
                "at [{}, {})",
                path, rank, got[i].stage, got[i].offset, got[i].offset + got[i].size, stages, expected[i].offset,
                expected[i].offset + expected[i].size));
    }
}
}  // namespace shard_table

// Refuses (checkpoint_error, naming the file and the values) a missing,
// torn, corrupted, foreign or format-1 shard, and one whose model, seed,
// rank, stage count or stage table differ from this run's.
template <class R>
shard<R> load_shard_file(const std::string& directory, const gpt::gpt_config& model, std::uint64_t seed, int rank,
                         int stages, const std::vector<shard_stage>& expected) {
    using detail::get;
    const std::string path = checkpoint_path(directory), bytes = detail::read_file(path);
    if (bytes.size() >= 8 && std::memcmp(bytes.data(), detail::checkpoint_magic, 8) == 0)
        throw checkpoint_error(path + ": a format-1 shard (a whole-model file per rank, older chimera-train); this "
                                      "build reads format-2 shards (the rank's stages only)");
    if (bytes.size() < 8 || std::memcmp(bytes.data(), shard_magic, 8) != 0)
        throw checkpoint_error(path + ": not a chimera-train shard (bad magic)");
    const std::size_t body = detail::checked_body(bytes, path);
    std::size_t at = 8;
    if (const auto format = get<std::uint32_t>(bytes, at, path); format != shard_format)
        throw checkpoint_error(fmt::format("{}: shard format {}, this build reads format {}", path, format, shard_format));
    shard<R> s;
    detail::get_head<R>(bytes, at, path, s.state, model, seed);
    s.rank = get<std::int32_t>(bytes, at, path);
    s.stages = get<std::int32_t>(bytes, at, path);
    if (s.rank != rank) throw checkpoint_error(fmt::format("{}: written by rank {}, not {}", path, s.rank, rank));
    if (s.stages != stages)
        throw checkpoint_error(fmt::format("{}: written for {} stages, this run has {}", path, s.stages, stages));
    const auto count = get<std::uint32_t>(bytes, at, path);
    for (std::uint32_t i = 0; i < count && i <= static_cast<std::uint32_t>(stages); ++i) {
        const int stage = get<std::int32_t>(bytes, at, path);
        const auto offset = get<std::uint64_t>(bytes, at, path);
        s.held.push_back({stage, offset, get<std::uint64_t>(bytes, at, path)});
    }
    shard_table::check_held(path, rank, stages, s.held, expected);
    std::size_t values = 0;
    for (const shard_stage& h : s.held) values += h.size;
    if (at + 3 * values * sizeof(R) != body) throw checkpoint_error(path + ": size does not match its stage table");
    for (const shard_stage& h : s.held)
        for (auto* v : {&s.state.params, &s.state.first_moment, &s.state.second_moment}) {
            const auto* first = reinterpret_cast<const R*>(bytes.data() + at);
            v->insert(v->end(), first, first + h.size);
            at += h.size * sizeof(R);
        }
    return s;
}

// The whole-model buffers with the shard's stages filled in and the
// others zero: what a worker's load() takes.
template <class R>
checkpoint<R> whole_model(const shard<R>& s) {
    checkpoint<R> c{s.state.model, s.state.next_step, s.state.seed, {}, {}, {}};
    std::size_t at = 0;
    for (auto* v : {&c.params, &c.first_moment, &c.second_moment}) v->assign(gpt::parameter_count(c.model), R(0));
    for (const shard_stage& h : s.held) {
        const auto from = static_cast<std::ptrdiff_t>(at), to = static_cast<std::ptrdiff_t>(h.offset);
        const auto n = static_cast<std::ptrdiff_t>(h.size);
        std::copy(s.state.params.begin() + from, s.state.params.begin() + from + n, c.params.begin() + to);
        std::copy(s.state.first_moment.begin() + from, s.state.first_moment.begin() + from + n,
                  c.first_moment.begin() + to);
        std::copy(s.state.second_moment.begin() + from, s.state.second_moment.begin() + from + n,
                  c.second_moment.begin() + to);
        at += h.size;
    }
    return c;
}

// Collective: this rank's shard of step `s.state.next_step`, then the
// manifest; keeps the previous complete step, removes older ones.
template <class R>
void write_shard(control_plane& control, const std::string& directory, const shard<R>& s) {
    const int step = static_cast<int>(s.state.next_step);
    const std::string dir = shard_directory(directory, step, s.rank);
    maybe_die_in_checkpoint(dir, step, s.rank);
    save_shard_file<R>(dir, s);
    control.barrier();  // every shard is durable
    if (s.rank != 0) return;
    write_manifest(step_directory(directory, step), step, control.size());
    int kept = 0;
    for (const int st : steps_in(directory))
        if (st < step && complete_step(directory, st)) kept = st;
    for (const int st : steps_in(directory))
        if (st < kept) std::filesystem::remove_all(step_directory(directory, st));
}

// Collective: this rank's shard of the newest complete step, checked
// against the stages it must hold (`expected`, of `stages`). Throws
// consistency_error on every rank when there is none, or when a rank
// cannot read its shard (each such rank prints why).
template <class R>
shard<R> read_shard(control_plane& control, const std::string& directory, const gpt::gpt_config& model,
                    std::uint64_t seed, int stages, const std::vector<shard_stage>& expected) {
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
    shard<R> c;
    int ok = 1;
    try {
        c = load_shard_file<R>(shard_directory(directory, step, rank), model, seed, rank, stages, expected);
        if (c.state.next_step != step)
            throw checkpoint_error(fmt::format("holds step {}, not {}", c.state.next_step, step));
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
