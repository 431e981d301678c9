// Checkpoints: the whole-model parameters and AdamW moments plus the step
// counter, in one file written atomically (temporary file, fsync, rename,
// fsync of the directory: durable_file.hpp). Layout (little-endian host order):
//   "CHIMCKP1" | u32 value size | 6 x i32 model config | i64 next step |
//   u64 seed | u64 count | count values x3 (params, m, v) | u64 FNV-1a of all before
// The stored layout is the whole model, independent of the stage cut, so a
// run can resume under another schedule or stage count.
#pragma once

#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "../gpt/model.hpp"
#include "durable_file.hpp"

namespace chimera::runtime {

class checkpoint_error : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

template <class R>
struct checkpoint {
    gpt::gpt_config model;
    std::int64_t next_step = 0;
    std::uint64_t seed = 0;
    std::vector<R> params, first_moment, second_moment;
};

namespace detail {
inline constexpr char checkpoint_magic[8] = {'C', 'H', 'I', 'M', 'C', 'K', 'P', '1'};

inline std::uint64_t fnv1a(const std::string& bytes) {
    std::uint64_t h = 0xcbf29ce484222325ULL;
    for (unsigned char c : bytes) h = (h ^ c) * 0x100000001b3ULL;
    return h;
}
using durable::put;
template <class T>
T get(const std::string& in, std::size_t& at, const std::string& path) {
    if (at + sizeof(T) > in.size()) throw checkpoint_error(path + ": truncated checkpoint");
    T value;
    std::memcpy(&value, in.data() + at, sizeof(T));
    at += sizeof(T);
    return value;
}
// What every checkpoint file holds after its magic (and version): the
// value size, the model config, the next step and the seed.
template <class R>
void put_head(std::string& bytes, const gpt::gpt_config& model, std::int64_t next_step, std::uint64_t seed) {
    put(bytes, static_cast<std::uint32_t>(sizeof(R)));
    for (int v : {model.vocab, model.padded_vocab, model.max_seq, model.channels, model.layers, model.heads})
        put(bytes, static_cast<std::int32_t>(v));
    put(bytes, next_step);
    put(bytes, seed);
}

// Reads the head into c (model, next_step, seed); refuses another value
// size, model or seed than this run's.
template <class R>
void get_head(const std::string& bytes, std::size_t& at, const std::string& path, checkpoint<R>& c,
              const gpt::gpt_config& expected_model, std::uint64_t expected_seed) {
    const auto value_size = get<std::uint32_t>(bytes, at, path);
    if (value_size != sizeof(R))
        throw checkpoint_error(path + ": holds " + std::to_string(value_size * 8) + "-bit values, this run uses " +
                               std::to_string(sizeof(R) * 8) + "-bit");
    int* fields[] = {&c.model.vocab, &c.model.padded_vocab, &c.model.max_seq, &c.model.channels, &c.model.layers,
                     &c.model.heads};
    for (int* f : fields) *f = get<std::int32_t>(bytes, at, path);
    if (!(c.model == expected_model))
        throw checkpoint_error(path + ": model mismatch (checkpoint: V=" + std::to_string(c.model.vocab) +
                               " C=" + std::to_string(c.model.channels) + " L=" + std::to_string(c.model.layers) +
                               " NH=" + std::to_string(c.model.heads) + " T=" + std::to_string(c.model.max_seq) +
                               "; this run: V=" + std::to_string(expected_model.vocab) +
                               " C=" + std::to_string(expected_model.channels) +
                               " L=" + std::to_string(expected_model.layers) +
                               " NH=" + std::to_string(expected_model.heads) +
                               " T=" + std::to_string(expected_model.max_seq) + ")");
    c.next_step = get<std::int64_t>(bytes, at, path);
    c.seed = get<std::uint64_t>(bytes, at, path);
    if (c.seed != expected_seed)
        throw checkpoint_error(path + ": seed mismatch (checkpoint " + std::to_string(c.seed) + ", this run " +
                               std::to_string(expected_seed) + ")");
}

// Appends the checksum and writes `bytes` to `final_path` atomically
// (durable_file.hpp).
inline void write_atomically(const std::string& directory, const std::string& final_path, std::string bytes) {
    put(bytes, fnv1a(bytes));
    durable::create_directories<checkpoint_error>(directory);
    durable::write_atomically<checkpoint_error>(directory, final_path, bytes);
}

// The whole file; refuses a missing one.
inline std::string read_file(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw checkpoint_error(path + ": no checkpoint to resume from");
    return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

// The length of the body before the trailing checksum; refuses a file
// whose checksum does not match.
inline std::size_t checked_body(const std::string& bytes, const std::string& path) {
    if (bytes.size() < 8 + sizeof(std::uint64_t)) throw checkpoint_error(path + ": truncated checkpoint");
    const std::size_t body = bytes.size() - sizeof(std::uint64_t);
    std::size_t at = body;
    if (get<std::uint64_t>(bytes, at, path) != fnv1a(bytes.substr(0, body)))
        throw checkpoint_error(path + ": checksum mismatch (corrupted or truncated file)");
    return body;
}
}  // namespace detail

inline std::string checkpoint_path(const std::string& directory) { return directory + "/checkpoint.bin"; }

template <class R>
void save_checkpoint(const std::string& directory, const checkpoint<R>& c) {
    std::string bytes(detail::checkpoint_magic, 8);
    detail::put_head<R>(bytes, c.model, c.next_step, c.seed);
    detail::put(bytes, static_cast<std::uint64_t>(c.params.size()));
    for (const auto* v : {&c.params, &c.first_moment, &c.second_moment})
        bytes.append(reinterpret_cast<const char*>(v->data()), v->size() * sizeof(R));
    detail::write_atomically(directory, checkpoint_path(directory), std::move(bytes));
}

// Refuses (checkpoint_error, one clear sentence) a missing, truncated,
// corrupted or mismatched file.
template <class R>
checkpoint<R> load_checkpoint(const std::string& directory, const gpt::gpt_config& expected_model,
                              std::uint64_t expected_seed) {
    const std::string path = checkpoint_path(directory);
    const std::string bytes = detail::read_file(path);
    if (bytes.size() < 8 + sizeof(std::uint64_t) || std::memcmp(bytes.data(), detail::checkpoint_magic, 8) != 0)
        throw checkpoint_error(path + ": not a chimera-train checkpoint (bad magic)");
    const std::size_t body = detail::checked_body(bytes, path);
    std::size_t at = 8;
    checkpoint<R> c;
    detail::get_head<R>(bytes, at, path, c, expected_model, expected_seed);
    const auto count = detail::get<std::uint64_t>(bytes, at, path);
    if (count != gpt::parameter_count(expected_model) || at + 3 * count * sizeof(R) != body)
        throw checkpoint_error(path + ": parameter count mismatch");
    for (auto* v : {&c.params, &c.first_moment, &c.second_moment}) {
        v->resize(count);
        std::memcpy(v->data(), bytes.data() + at, count * sizeof(R));
        at += count * sizeof(R);
    }
    return c;
}

}  // namespace chimera::runtime
