// The shard file of a multi-process checkpoint (examples/distributed/
// shards.hpp, format 2) without MPI: every set of held stages of D = 1..4
// round-trips bit for bit, the file is the held fraction of the model plus
// its header and table, whole_model() puts each stage at its offset and
// zeros elsewhere; every refusal names the file and the values (format 1,
// bad magic, another format, checksum, truncation, value size, model,
// seed, rank, D, stage set, stage range).
#include <doctest/doctest.h>

#include <bit>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <stdlib.h>

#include <distributed/shards.hpp>

using namespace chimera;
using namespace chimera::runtime;

namespace {

const gpt::gpt_config model = gpt::tiny_model(39);

// A fresh directory of this process (parallel runs do not collide).
std::string directory(const std::string& name) {
    std::string pattern = (std::filesystem::temp_directory_path() / ("chimera-test-shards-" + name + "-XXXXXX")).string();
    REQUIRE(::mkdtemp(pattern.data()) != nullptr);
    return pattern;
}

// A shard of rank `rank` holding `held`, with values that differ per stage, array and index.
template <class R>
shard<R> make(int rank, int stages, const std::vector<shard_stage>& held) {
    shard<R> s{rank, stages, held, {model, 3, 11, {}, {}, {}}};
    for (const shard_stage& h : held)
        for (std::size_t i = 0; i < h.size; ++i) {
            s.state.params.push_back(static_cast<R>(h.stage * 1000 + static_cast<double>(i) * 0.5));
            s.state.first_moment.push_back(static_cast<R>(-static_cast<double>(i)));
            s.state.second_moment.push_back(static_cast<R>(h.stage + 0.25));
        }
    return s;
}

std::vector<replica> replicas_of(unsigned mask, int stages) {
    std::vector<replica> owned;
    for (int st = stages - 1; st >= 0; --st)  // unsorted, one stage twice: stages_held sorts and dedups
        if (mask & (1u << st)) owned.push_back({0, st}), owned.push_back({1, st});
    return owned;
}

std::string refusal(const std::string& dir, int rank, int stages, const std::vector<shard_stage>& expected,
                    std::uint64_t seed = 11, gpt::gpt_config m = model) {
    try {
        load_shard_file<float>(dir, m, seed, rank, stages, expected);
    } catch (const checkpoint_error& e) {
        return e.what();
    }
    return "accepted";
}

// Replaces bytes at `at` (and drops `drop` bytes before the checksum),
// with a recomputed checksum or the old one.
void rewrite(const std::string& dir, std::size_t at, const std::string& bytes, bool fix_checksum, std::size_t drop = 0) {
    std::string data = runtime::detail::read_file(checkpoint_path(dir));
    data.replace(at, bytes.size(), bytes);
    if (fix_checksum) {
        data.resize(data.size() - 8 - drop);
        runtime::detail::put(data, runtime::detail::fnv1a(data));
    }
    std::ofstream(checkpoint_path(dir), std::ios::binary | std::ios::trunc) << data;
}

constexpr std::size_t table_at = 8 + 4 + 4 + 24 + 8 + 8 + 4 + 4 + 4;  // where the stage table starts

}  // namespace

TEST_CASE("shards: every held set of D = 1..4 round-trips; size = held fraction; whole_model places stages") {
    const std::string dir = directory("roundtrip");
    const std::size_t count = gpt::parameter_count(model);
    for (int stages = 1; stages <= 4; ++stages)
        for (unsigned mask = 1; mask < (1u << stages); ++mask) {
            CAPTURE(stages);
            CAPTURE(mask);
            const auto held = stages_held(replicas_of(mask, stages), model, stages);
            REQUIRE(held.size() == static_cast<std::size_t>(std::popcount(mask)));
            const auto s = make<float>(2, stages, held);
            save_shard_file<float>(dir, s);
            const auto back = load_shard_file<float>(dir, model, 11, 2, stages, held);
            CHECK(back.held == held);
            CHECK(back.state.params == s.state.params);
            CHECK(back.state.first_moment == s.state.first_moment);
            CHECK(back.state.second_moment == s.state.second_moment);
            CHECK(back.state.next_step == 3);
            CHECK(std::filesystem::file_size(checkpoint_path(dir)) ==
                  table_at + 20 * held.size() + 3 * sizeof(float) * s.state.params.size() + 8);
            const auto whole = whole_model(back);
            REQUIRE(whole.params.size() == count);
            std::vector<float> expected(count, 0.0f);
            std::size_t at = 0;
            for (const shard_stage& h : held)
                for (std::size_t i = 0; i < h.size; ++i) expected[h.offset + i] = s.state.params[at++];
            CHECK(whole.params == expected);
        }
    std::filesystem::remove_all(dir);
}

TEST_CASE("shards: a shard that disagrees with the run is refused, naming the file and the values") {
    const std::string dir = directory("refused"), path = checkpoint_path(dir);
    const auto held = stages_held(replicas_of(0b0110, 4), model, 4);  // stages 1, 2
    save_shard_file<float>(dir, make<float>(2, 4, held));
    CHECK(refusal(dir, 2, 4, held) == "accepted");
    CHECK(refusal(dir, 1, 4, held) == path + ": written by rank 2, not 1");
    CHECK(refusal(dir, 2, 3, held) == path + ": written for 4 stages, this run has 3");
    CHECK(refusal(dir, 2, 4, held, 12).find("seed mismatch (checkpoint 11, this run 12)") != std::string::npos);
    CHECK(refusal(dir, 2, 4, held, 11, gpt::tiny_model(40)).find("model mismatch") != std::string::npos);
    CHECK_THROWS_WITH_AS(load_shard_file<double>(dir, model, 11, 2, 4, held),
                         doctest::Contains("32-bit values, this run uses 64-bit"), checkpoint_error);
    const auto other = stages_held(replicas_of(0b1010, 4), model, 4);  // stages 1, 3
    CHECK(refusal(dir, 2, 4, other) == path + ": rank 2's shard holds stage 2 where the schedule gives rank 2 stage 3 "
                                              "(shard: stages 1, 2; schedule: stages 1, 3)");
    CHECK(refusal(dir, 2, 4, {held[0]}) == path + ": rank 2's shard holds stage 2 where the schedule gives rank 2 "
                                                  "stage none (shard: stages 1, 2; schedule: stages 1)");
    auto moved = held;
    moved[1].offset += 4;
    CHECK(refusal(dir, 2, 4, moved) ==
          path + ": rank 2's shard has stage 2 at values [" + std::to_string(held[1].offset) + ", " +
              std::to_string(held[1].offset + held[1].size) + "); the model's partition into 4 stages puts it at [" +
              std::to_string(moved[1].offset) + ", " + std::to_string(moved[1].offset + moved[1].size) + ")");

    rewrite(dir, table_at + 20, std::string("\x03", 1), true);  // stage 2 -> 3, checksum recomputed
    CHECK(refusal(dir, 2, 4, held).find("rank 2's shard holds stage 3 where the schedule gives rank 2 stage 2") !=
          std::string::npos);
    rewrite(dir, table_at + 20, std::string("\x02", 1), false);  // back, under the other checksum
    CHECK(refusal(dir, 2, 4, held) == path + ": checksum mismatch (corrupted or truncated file)");
    rewrite(dir, 8, std::string("\x03", 1), true);
    CHECK(refusal(dir, 2, 4, held) == path + ": shard format 3, this build reads format 2");
    rewrite(dir, 0, "CHIMSHRX", true);
    CHECK(refusal(dir, 2, 4, held) == path + ": not a chimera-train shard (bad magic)");

    save_checkpoint<float>(dir, {model, 3, 11, std::vector<float>(gpt::parameter_count(model)), {}, {}});
    CHECK(refusal(dir, 2, 4, held).find(path + ": a format-1 shard") == 0);
    save_shard_file<float>(dir, make<float>(2, 4, held));
    rewrite(dir, 0, "CHIMSHRD", true, 4);  // the last value gone, checksum recomputed
    CHECK(refusal(dir, 2, 4, held) == path + ": size does not match its stage table");
    std::filesystem::resize_file(path, std::filesystem::file_size(path) - 100);
    CHECK(refusal(dir, 2, 4, held) == path + ": checksum mismatch (corrupted or truncated file)");
    std::filesystem::resize_file(path, 12);
    CHECK(refusal(dir, 2, 4, held) == path + ": truncated checkpoint");
    std::filesystem::remove_all(dir);
    CHECK(refusal(dir, 2, 4, held) == path + ": no checkpoint to resume from");
}

TEST_CASE("durable directories: nested ones are made (each parent fsynced); a file in the way is refused by name") {
    const std::string dir = directory("durable");
    const std::string nested = dir + "/a/b/../b/c";
    durable::create_directories<checkpoint_error>(nested);
    CHECK(std::filesystem::is_directory(dir + "/a/b/c"));
    durable::create_directories<checkpoint_error>(nested);  // already there: nothing to do
    std::ofstream(dir + "/file") << "x";
    std::string error;
    try {
        durable::create_directories<checkpoint_error>(dir + "/file/step-00000001");
    } catch (const checkpoint_error& e) {
        error = e.what();
    }
    CHECK(error.find(dir + "/file/step-00000001: cannot create the directory") == 0);
    // steps_in: only step-NNNNNNNN entries count.
    for (const char* name : {"step-00000002", "step-backup12", "step-1", "step-0000000x", "step-00000010"})
        std::filesystem::create_directories(dir + "/" + name);
    CHECK(steps_in(dir) == std::vector<int>{2, 10});
    std::filesystem::remove_all(dir);
}
