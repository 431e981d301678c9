// The shared-file rendezvous (docs/distributed.md#without-mpi-shared-file-rendezvous):
// how ranks started without MPI (Slurm's srun, a torchrun-style launcher)
// agree on a blob (the ncclUniqueId) through a directory every node sees.
//
// Rank 0 writes DIR/.chimera-<tag>.id.tmp.<pid> (magic, format version,
// world size, tag, payload, SHA-256 of all of it), fsyncs it, renames it to
// DIR/chimera-<tag>.nccl-id (a reader sees the whole file or none) and
// fsyncs the directory. It refuses a final file that already exists (a
// crashed run with the same tag, or two jobs sharing one). Every other rank
// polls for the file (back-off growing to 50 ms) and validates it, or gives
// up after the timeout. Rank 0 removes the file once every rank has read it.
//
// Also: rank, world size and node-local rank from a launcher's environment.
// No MPI, no NCCL: bytes in, bytes out.
#pragma once

#include <fcntl.h>
#include <stdio.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>

#include "../common/durable_file.hpp"
#include "sha256.hpp"

namespace chimera::runtime::rendezvous {

// The rendezvous cannot complete (timeout, a foreign or stale file, I/O).
class error : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};
// Bad input from the user: a tag, the launcher's environment (usage, exit 2).
class config_error : public std::invalid_argument {
public:
    using std::invalid_argument::invalid_argument;
};

inline constexpr std::string_view magic = "chimrdzv";
inline constexpr std::uint32_t format_version = 1;
inline constexpr std::size_t max_payload = 1 << 20;

// A run tag: [A-Za-z0-9._-]{1,64} (it becomes part of a file name).
inline void check_tag(std::string_view tag) {
    const bool ok = !tag.empty() && tag.size() <= 64 && std::all_of(tag.begin(), tag.end(), [](char c) {
        return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
               c == '-';
    });
    if (!ok)
        throw config_error("--run-tag '" + std::string(tag) +
                           "': a run tag is 1 to 64 characters of [A-Za-z0-9._-] (it names the rendezvous file)");
}

inline std::string file_path(const std::string& directory, const std::string& tag) {
    return directory + "/chimera-" + tag + ".nccl-id";
}

namespace detail {
using durable::put;
template <class T>
bool get(std::string_view& in, T& value) {
    if (in.size() < sizeof value) return false;
    std::memcpy(&value, in.data(), sizeof value);
    in.remove_prefix(sizeof value);
    return true;
}
inline std::string digest_of(std::string_view bytes) {
    const auto d = sha256().update(std::string(bytes)).digest();
    return std::string(reinterpret_cast<const char*>(d.data()), d.size());
}
// Errors of the file operations, prefixed as the rendezvous' own.
struct file_error : error {
    explicit file_error(const std::string& what) : error("rendezvous: " + what) {}
};
inline std::string seconds_text(double seconds) {
    char text[32];
    std::snprintf(text, sizeof text, "%g", seconds);
    return text;
}
inline void require_directory(const std::string& directory, const std::string& who) {
    std::error_code ec;
    if (!std::filesystem::is_directory(directory, ec))
        throw error("rendezvous: " + who + ": " + directory +
                    " is not a directory here (--rendezvous file:DIR needs one directory that every node sees at "
                    "that path: a shared filesystem)");
}
}  // namespace detail

// The file's bytes: magic, version, world size, tag, payload, checksum.
inline std::string encode(const std::string& tag, int world_size, const std::string& payload) {
    std::string out(magic);
    detail::put(out, format_version);
    detail::put(out, static_cast<std::uint32_t>(world_size));
    detail::put(out, static_cast<std::uint32_t>(tag.size()));
    out += tag;
    detail::put(out, static_cast<std::uint64_t>(payload.size()));
    out += payload;
    return out + detail::digest_of(out);
}

// The payload of a file's bytes; refuses (error, naming `path`) a foreign,
// torn or corrupted file, another format version, tag or world size.
inline std::string decode(const std::string& path, const std::string& bytes, const std::string& tag, int world_size) {
    const auto refuse = [&](const std::string& why) { return error("rendezvous: " + path + ": " + why); };
    if (bytes.size() < magic.size() + 32 || std::string_view(bytes).substr(0, magic.size()) != magic)
        throw refuse("not a chimera rendezvous file (bad magic); remove it");
    const std::string_view body = std::string_view(bytes).substr(0, bytes.size() - 32);
    if (detail::digest_of(body) != bytes.substr(bytes.size() - 32))
        throw refuse("checksum mismatch (a torn or corrupted file); remove it");
    std::string_view in = body.substr(magic.size());
    std::uint32_t version = 0, world = 0, tag_length = 0;
    std::uint64_t length = 0;
    if (!detail::get(in, version) || version != format_version)
        throw refuse("format version " + std::to_string(version) + ", this program reads version " +
                     std::to_string(format_version));
    if (!detail::get(in, world) || !detail::get(in, tag_length) || in.size() < tag_length)
        throw refuse("truncated header");
    if (in.substr(0, tag_length) != tag)
        throw refuse("written for run tag '" + std::string(in.substr(0, tag_length)) + "', not '" + tag + "'");
    in.remove_prefix(tag_length);
    if (static_cast<int>(world) != world_size)
        throw refuse("written for a world of " + std::to_string(world) + " ranks, this rank's world has " +
                     std::to_string(world_size) + " (every rank must be launched with the same world size)");
    if (!detail::get(in, length) || length != in.size()) throw refuse("payload length does not match the file");
    return std::string(in);
}

// Rank 0's side: publishes the payload on construction, removes the file
// on destruction (or at withdraw()).
class publication {
public:
    publication(const std::string& directory, const std::string& tag, int world_size, const std::string& payload)
        : path_(file_path(directory, tag)) {
        check_tag(tag);
        detail::require_directory(directory, "rank 0");
        if (payload.size() > max_payload) throw error("rendezvous: payload too large");
        if (std::filesystem::exists(path_)) throw stale();
        const std::string temporary = directory + "/.chimera-" + tag + ".id.tmp." + std::to_string(::getpid());
        try {
            durable::write_synced<detail::file_error>(temporary, encode(tag, world_size, payload));
        } catch (...) {
            std::error_code ec;
            std::filesystem::remove(temporary, ec);
            throw;
        }
        move_into_place(temporary);
        durable::fsync_path<detail::file_error>(directory, O_RDONLY | O_DIRECTORY);
    }
    publication(const publication&) = delete;
    publication& operator=(const publication&) = delete;
    ~publication() { withdraw(); }

    const std::string& path() const { return path_; }
    void withdraw() {
        if (!published_) return;
        std::error_code ec;
        std::filesystem::remove(path_, ec);
        published_ = false;
    }

private:
    error stale() const {
        return error("rendezvous: rank 0: " + path_ +
                     " already exists: a run with this tag crashed before removing it, or another job uses the same "
                     "--run-tag. Remove the file (when no job with this tag runs) or choose another --run-tag");
    }
    // Atomic and never replacing (renameat2 RENAME_NOREPLACE); where the
    // filesystem lacks it (NFS), a plain rename after the check above.
    void move_into_place(const std::string& temporary) {
        int rc = ::renameat2(AT_FDCWD, temporary.c_str(), AT_FDCWD, path_.c_str(), RENAME_NOREPLACE);
        if (rc != 0 && (errno == EINVAL || errno == ENOSYS)) rc = ::rename(temporary.c_str(), path_.c_str());
        if (rc == 0) {
            published_ = true;
            return;
        }
        const int why = errno;
        std::error_code ec;
        std::filesystem::remove(temporary, ec);
        if (why == EEXIST) throw stale();
        throw error("rendezvous: rank 0: cannot rename " + temporary + " to " + path_ + ": " + std::strerror(why));
    }

    std::string path_;
    bool published_ = false;
};

// Every other rank's side: the payload, once the file exists and
// validates; error after `timeout`, naming the rank, file, tag and the
// likely causes.
inline std::string await(const std::string& directory, const std::string& tag, int world_size, int rank,
                         std::chrono::duration<double> timeout) {
    check_tag(tag);
    const std::string who = "rank " + std::to_string(rank);
    detail::require_directory(directory, who);
    const std::string path = file_path(directory, tag);
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    std::chrono::milliseconds pause{1};
    for (;;) {
        std::ifstream in(path, std::ios::binary);
        if (in) return decode(path, std::string(std::istreambuf_iterator<char>(in), {}), tag, world_size);
        if (std::chrono::steady_clock::now() >= deadline)
            throw error("rendezvous: " + who + " timed out after " + detail::seconds_text(timeout.count()) +
                        " s waiting for " + path + " (run tag '" + tag +
                        "'): rank 0 has not published it. Likely: rank 0 did not start or failed first, the directory "
                        "is not shared between the nodes, or rank 0 runs with another --run-tag");
        std::this_thread::sleep_for(pause);
        pause = std::min(pause * 2, std::chrono::milliseconds{50});
    }
}

// This process's place in the job, from its launcher's environment.
struct launch_ranks {
    int rank = 0, size = 0, local_rank = 0;
    std::string source;  // which launcher's variables
};

using environment = std::function<const char*(const char*)>;

// The first complete set of (rank, size, local rank) variables: CHIMERA_*,
// Slurm, OpenMPI, torchrun (CHIMERA_LOCAL_RANK may be left out: it is
// then CHIMERA_RANK, one node). None, or one with non-numbers or rank >=
// size: config_error listing the variables.
inline launch_ranks ranks_from_environment(const environment& get = [](const char* n) { return std::getenv(n); }) {
    static constexpr const char* sets[][4] = {
        {"CHIMERA_RANK", "CHIMERA_WORLD_SIZE", "CHIMERA_LOCAL_RANK", "chimera"},
        {"SLURM_PROCID", "SLURM_NTASKS", "SLURM_LOCALID", "slurm"},
        {"OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_LOCAL_RANK", "openmpi"},
        {"RANK", "WORLD_SIZE", "LOCAL_RANK", "torchrun"}};
    std::string listed;
    for (const auto& set : sets) listed += std::string("\n  ") + set[0] + " " + set[1] + " " + set[2];
    const auto usage = [&](const std::string& why) {
        return config_error("--rendezvous file: " + why +
                            ". Each rank needs its rank, the world size and its node-local rank from one of "
                            "(first complete set wins):" + listed);
    };
    for (const auto& set : sets) {
        const char* values[3] = {get(set[0]), get(set[1]), get(set[2])};
        if (!values[2] && &set == &sets[0]) values[2] = values[0];  // CHIMERA_LOCAL_RANK: one node by default
        if (!values[0] || !values[1] || !values[2]) continue;
        int parsed[3];
        for (int i = 0; i < 3; ++i) {
            char* end = nullptr;
            errno = 0;
            const long v = std::strtol(values[i], &end, 10);
            if (*values[i] == '\0' || *end != '\0' || errno != 0 || v < 0 || v > 1 << 24)
                throw usage(std::string(set[i]) + "='" + values[i] + "' is not a number in [0, 2^24]");
            parsed[i] = static_cast<int>(v);
        }
        if (parsed[1] < 1 || parsed[0] >= parsed[1] || parsed[2] >= parsed[1])
            throw usage(std::string(set[0]) + "=" + values[0] + ", " + set[1] + "=" + values[1] + ", " + set[2] + "=" +
                        values[2] + " are inconsistent (needs rank < size and local rank < size)");
        return {parsed[0], parsed[1], parsed[2], set[3]};
    }
    throw usage("none of the launcher variables is set");
}

// The default run tag: Slurm's "<job id>.<step id>" when both are set,
// else empty (the caller then requires --run-tag).
inline std::string default_run_tag(const environment& get = [](const char* n) { return std::getenv(n); }) {
    const char* job = get("SLURM_JOB_ID");
    const char* step = get("SLURM_STEP_ID");
    return job && step ? std::string(job) + "." + step : std::string();
}

}  // namespace chimera::runtime::rendezvous
