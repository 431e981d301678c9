// Files that survive a crash: written to a temporary file beside the
// final one, fsynced, renamed into place, the directory fsynced (so a
// reader sees the whole file or none). Shared by the checkpoints
// (checkpoint.hpp), the shard manifests (distributed/shards.hpp) and the
// shared-file rendezvous (distributed/rendezvous.hpp). POSIX only; each
// caller names the exception it throws.
#pragma once

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <system_error>
#include <vector>

namespace chimera::runtime::durable {

// Appends the bytes of `value` (host order).
template <class T>
void put(std::string& out, const T& value) {
    out.append(reinterpret_cast<const char*>(&value), sizeof(T));
}

// fsync of a file (O_RDONLY) or of a directory (O_RDONLY | O_DIRECTORY):
// what makes a write, or a rename inside the directory, durable. Throws
// Error naming the path.
template <class Error>
void fsync_path(const std::string& path, int flags) {
    const int fd = ::open(path.c_str(), flags);
    if (fd < 0) throw Error(path + ": cannot open for fsync: " + std::strerror(errno));
    const int rc = ::fsync(fd);
    const int why = errno;
    ::close(fd);
    if (rc != 0) throw Error(path + ": fsync failed: " + std::strerror(why));
}

// Writes `bytes` to the temporary file `temporary` and fsyncs it (Error,
// and no file left, when that fails).
template <class Error>
void write_synced(const std::string& temporary, const std::string& bytes) {
    {
        std::ofstream out(temporary, std::ios::binary | std::ios::trunc);
        out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
        if (!out.flush()) {
            std::error_code ec;
            std::filesystem::remove(temporary, ec);
            throw Error("cannot write " + temporary);
        }
    }
    fsync_path<Error>(temporary, O_RDONLY);
}

// `bytes` at `path` in `directory`, atomically: `path`.tmp written and
// fsynced, renamed over `path`, the directory fsynced.
template <class Error>
void write_atomically(const std::string& directory, const std::string& path, const std::string& bytes) {
    const std::string temporary = path + ".tmp";
    write_synced<Error>(temporary, bytes);
    std::error_code ec;
    std::filesystem::rename(temporary, path, ec);
    if (ec) throw Error("cannot rename " + temporary + " to " + path + ": " + ec.message());
    fsync_path<Error>(directory, O_RDONLY | O_DIRECTORY);
}

// `directory` and its missing parents, each new one durable (its parent
// fsynced after it was made: a crash cannot lose a directory whose files
// were already made durable). The outermost parent existed before; one we
// may not read (a 0711 or 1733 scratch root) is left unsynced.
template <class Error>
void create_directories(const std::string& directory) {
    namespace fs = std::filesystem;
    std::error_code ec;
    std::vector<fs::path> missing;  // innermost first
    for (fs::path p = fs::path(directory).lexically_normal(); !p.empty() && !fs::exists(p, ec); p = p.parent_path()) {
        missing.push_back(p);
        if (p == p.parent_path()) break;
    }
    fs::create_directories(directory, ec);
    if (ec) throw Error(directory + ": cannot create the directory: " + ec.message());
    for (auto p = missing.rbegin(); p != missing.rend(); ++p) {
        const fs::path parent = p->parent_path();
        const std::string path = parent.empty() ? std::string(".") : parent.string();
        if (p == missing.rbegin()) {  // existed before: may be unreadable
            const int fd = ::open(path.c_str(), O_RDONLY | O_DIRECTORY);
            if (fd < 0 && (errno == EACCES || errno == EPERM)) continue;
            if (fd >= 0) ::close(fd);
        }
        fsync_path<Error>(path, O_RDONLY | O_DIRECTORY);
    }
}

}  // namespace chimera::runtime::durable
