// The shared-file rendezvous (examples/distributed/rendezvous.hpp): round
// trip, a reader that starts before the writer (a thread, and a forked
// process), the timeout and its message, a stale final file, a world-size
// mismatch, torn and garbage files, bad tags, and the launcher environment.
#include <doctest/doctest.h>

#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <distributed/rendezvous.hpp>

namespace rdzv = chimera::runtime::rendezvous;
using namespace std::chrono_literals;

namespace {

// A fresh directory under the system's temporary directory, removed after.
struct temp_dir {
    std::string path;
    temp_dir() {
        std::string pattern = (std::filesystem::temp_directory_path() / "chimera-rdzv-XXXXXX").string();
        REQUIRE(::mkdtemp(pattern.data()) != nullptr);
        path = pattern;
    }
    ~temp_dir() { std::filesystem::remove_all(path); }
};

// A payload with every byte value (an ncclUniqueId is 128 arbitrary bytes).
std::string payload() {
    std::string p;
    for (int i = 0; i < 256; ++i) p += static_cast<char>(i);
    return p;
}

std::string error_of(const std::function<void()>& f) {
    try {
        f();
    } catch (const std::exception& e) {
        return e.what();
    }
    return "";
}

void write_file(const std::string& path, const std::string& bytes) {
    std::ofstream(path, std::ios::binary) << bytes;
}

rdzv::environment env_of(std::map<std::string, std::string> vars) {
    return [vars = std::move(vars)](const char* name) -> const char* {
        const auto it = vars.find(name);
        return it == vars.end() ? nullptr : it->second.c_str();
    };
}

}  // namespace

TEST_CASE("rendezvous: publish and read round trip; the file goes at withdraw") {
    temp_dir d;
    for (const std::string& tag : {std::string("t"), std::string("job.12_3-x"), std::string(64, 'a')}) {
        rdzv::publication p(d.path, tag, 4, payload());
        CHECK(p.path() == d.path + "/chimera-" + tag + ".nccl-id");
        for (int rank = 1; rank < 4; ++rank) CHECK(rdzv::await(d.path, tag, 4, rank, 1s) == payload());
        p.withdraw();
        CHECK_FALSE(std::filesystem::exists(p.path()));
    }
    CHECK(std::filesystem::is_empty(d.path));  // no temporary left behind
    // Same tag again after a clean run: fine; empty payload too.
    rdzv::publication again(d.path, "t", 1, "");
    CHECK(rdzv::await(d.path, "t", 1, 0, 1s).empty());
}

TEST_CASE("rendezvous: a reader started before the writer waits for it (thread and process)") {
    temp_dir d;
    std::string got;
    std::thread reader([&] { got = rdzv::await(d.path, "early", 2, 1, 30s); });
    std::this_thread::sleep_for(200ms);
    {
        rdzv::publication p(d.path, "early", 2, payload());
        reader.join();
    }
    CHECK(got == payload());

    const pid_t child = ::fork();
    REQUIRE(child >= 0);
    if (child == 0) {
        int ok = 0;
        try {
            ok = rdzv::await(d.path, "forked", 3, 2, 30s) == payload();
        } catch (...) {
        }
        std::_Exit(ok ? 0 : 1);
    }
    std::this_thread::sleep_for(200ms);
    rdzv::publication p(d.path, "forked", 3, payload());
    int status = 0;
    REQUIRE(::waitpid(child, &status, 0) == child);
    CHECK((WIFEXITED(status) && WEXITSTATUS(status) == 0));
}

TEST_CASE("rendezvous: the timeout fires and names rank, path, tag and the causes") {
    temp_dir d;
    const auto start = std::chrono::steady_clock::now();
    const std::string e = error_of([&] { rdzv::await(d.path, "late", 4, 3, 500ms); });
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    CHECK(seconds >= 0.5);
    CHECK(seconds < 10.0);  // generous: the back-off is capped at 50 ms
    CHECK(e.find("rank 3 timed out") != std::string::npos);
    CHECK(e.find(d.path + "/chimera-late.nccl-id") != std::string::npos);
    CHECK(e.find("run tag 'late'") != std::string::npos);
    CHECK(e.find("not shared between the nodes") != std::string::npos);
    // A directory that does not exist on this node: refused at once.
    CHECK(error_of([&] { rdzv::await(d.path + "/missing", "late", 4, 3, 60s); }).find("is not a directory here") !=
          std::string::npos);
}

TEST_CASE("rendezvous: a stale final file is refused by rank 0, naming the path and the fix") {
    temp_dir d;
    const std::string path = rdzv::file_path(d.path, "stale");
    write_file(path, "left by a crashed run");
    const std::string e = error_of([&] { rdzv::publication p(d.path, "stale", 2, payload()); });
    CHECK(e.find(path + " already exists") != std::string::npos);
    CHECK(e.find("Remove the file") != std::string::npos);
    CHECK(std::filesystem::exists(path));  // not ours: left alone
    // A second publisher of the same tag while the first is up.
    rdzv::publication first(d.path, "twice", 2, payload());
    CHECK(error_of([&] { rdzv::publication second(d.path, "twice", 2, payload()); }).find("already exists") !=
          std::string::npos);
}

TEST_CASE("rendezvous: rank 0 refuses a directory it cannot write, leaving nothing behind") {
    temp_dir d;
    const std::string e = error_of([&] { rdzv::publication p(d.path + "/missing", "t", 2, payload()); });
    CHECK(e.find(d.path + "/missing is not a directory here") != std::string::npos);
    if (::geteuid() != 0) {  // root writes anywhere
        std::filesystem::permissions(d.path, std::filesystem::perms::owner_read | std::filesystem::perms::owner_exec);
        CHECK(error_of([&] { rdzv::publication p(d.path, "t", 2, payload()); }).find("cannot write") !=
              std::string::npos);
        std::filesystem::permissions(d.path, std::filesystem::perms::owner_all);
    }
    CHECK(std::filesystem::is_empty(d.path));
    // As root too: a directory where the temporary file goes cannot be written as a file.
    const std::string in_the_way = d.path + "/.chimera-t.id.tmp." + std::to_string(::getpid());
    std::filesystem::create_directory(in_the_way);
    CHECK(error_of([&] { rdzv::publication p(d.path, "t", 2, payload()); }).find("cannot write") != std::string::npos);
    CHECK(!std::filesystem::exists(d.path + "/chimera-t.nccl-id"));
    std::filesystem::remove(in_the_way);
}

TEST_CASE("rendezvous: a file for another world size is refused naming both") {
    temp_dir d;
    rdzv::publication p(d.path, "w", 8, payload());
    const std::string e = error_of([&] { rdzv::await(d.path, "w", 4, 1, 1s); });
    CHECK(e.find("a world of 8 ranks, this rank's world has 4") != std::string::npos);
    CHECK(e.find(p.path()) != std::string::npos);
}

TEST_CASE("rendezvous: torn, garbage and foreign files are refused naming the path") {
    temp_dir d;
    const std::string path = rdzv::file_path(d.path, "g");
    const std::string good = rdzv::encode("g", 2, payload());
    const std::map<std::string, std::string> cases = {
        {"", "bad magic"},
        {"garbage", "bad magic"},
        {good.substr(0, good.size() / 2), "checksum mismatch"},
        {good.substr(0, good.size() - 1), "checksum mismatch"},
        {good.substr(0, 20) + 'X' + good.substr(21), "checksum mismatch"},
        {rdzv::encode("other", 2, payload()), "run tag 'other', not 'g'"},
    };
    for (const auto& [bytes, needle] : cases) {
        write_file(path, bytes);
        const std::string e = error_of([&] { rdzv::await(d.path, "g", 2, 1, 1s); });
        CAPTURE(e);
        CHECK(e.find(path) != std::string::npos);
        CHECK(e.find(needle) != std::string::npos);
    }
    // Another format version, with a valid checksum.
    std::string v2 = good.substr(0, good.size() - 32);
    v2[rdzv::magic.size()] = 2;
    write_file(path, v2 + rdzv::detail::digest_of(v2));
    CHECK(error_of([&] { rdzv::await(d.path, "g", 2, 1, 1s); }).find("format version 2") != std::string::npos);
}

TEST_CASE("rendezvous: bad run tags are refused naming the rule") {
    temp_dir d;
    for (const std::string& tag : {std::string(), std::string(65, 'a'), std::string("a/b"), std::string("../x"),
                                   std::string("a b"), std::string("t\n")}) {
        CAPTURE(tag);
        CHECK_THROWS_WITH_AS(rdzv::check_tag(tag), doctest::Contains("[A-Za-z0-9._-]"), rdzv::config_error);
        CHECK_THROWS_AS(rdzv::publication(d.path, tag, 2, payload()), rdzv::config_error);
        CHECK_THROWS_AS(rdzv::await(d.path, tag, 2, 1, 1s), rdzv::config_error);
    }
    CHECK(std::filesystem::is_empty(d.path));
}

TEST_CASE("rendezvous: ranks from the launcher's environment, first complete set wins") {
    auto ranks = rdzv::ranks_from_environment(env_of({{"SLURM_PROCID", "5"}, {"SLURM_NTASKS", "8"},
                                                      {"SLURM_LOCALID", "1"}, {"RANK", "0"},
                                                      {"WORLD_SIZE", "2"}, {"LOCAL_RANK", "0"}}));
    CHECK((ranks.rank == 5 && ranks.size == 8 && ranks.local_rank == 1 && ranks.source == "slurm"));
    // An incomplete set is skipped.
    ranks = rdzv::ranks_from_environment(env_of({{"CHIMERA_RANK", "1"}, {"OMPI_COMM_WORLD_RANK", "3"},
                                                 {"OMPI_COMM_WORLD_SIZE", "4"}, {"OMPI_COMM_WORLD_LOCAL_RANK", "3"}}));
    CHECK((ranks.rank == 3 && ranks.size == 4 && ranks.local_rank == 3 && ranks.source == "openmpi"));
    ranks = rdzv::ranks_from_environment(
        env_of({{"CHIMERA_RANK", "0"}, {"CHIMERA_WORLD_SIZE", "1"}, {"CHIMERA_LOCAL_RANK", "0"}, {"RANK", "x"}}));
    CHECK((ranks.rank == 0 && ranks.size == 1 && ranks.source == "chimera"));
    // CHIMERA_LOCAL_RANK left out: the rank (one node).
    ranks = rdzv::ranks_from_environment(env_of({{"CHIMERA_RANK", "2"}, {"CHIMERA_WORLD_SIZE", "4"}}));
    CHECK((ranks.rank == 2 && ranks.size == 4 && ranks.local_rank == 2 && ranks.source == "chimera"));
    ranks = rdzv::ranks_from_environment(env_of({{"RANK", "2"}, {"WORLD_SIZE", "3"}, {"LOCAL_RANK", "0"}}));
    CHECK((ranks.rank == 2 && ranks.source == "torchrun"));
}

TEST_CASE("rendezvous: missing, garbage or inconsistent launcher variables are a usage error listing them") {
    const std::vector<std::pair<std::map<std::string, std::string>, std::string>> cases = {
        {{}, "none of the launcher variables is set"},
        {{{"RANK", "1"}, {"WORLD_SIZE", "4"}}, "none of the launcher variables is set"},
        {{{"CHIMERA_RANK", "1"}}, "none of the launcher variables is set"},
        {{{"RANK", "one"}, {"WORLD_SIZE", "4"}, {"LOCAL_RANK", "0"}}, "RANK='one' is not a number"},
        {{{"RANK", ""}, {"WORLD_SIZE", "4"}, {"LOCAL_RANK", "0"}}, "RANK='' is not a number"},
        {{{"RANK", "1"}, {"WORLD_SIZE", "4x"}, {"LOCAL_RANK", "0"}}, "WORLD_SIZE='4x' is not a number"},
        {{{"RANK", "-1"}, {"WORLD_SIZE", "4"}, {"LOCAL_RANK", "0"}}, "RANK='-1' is not a number"},
        {{{"CHIMERA_RANK", "4"}, {"CHIMERA_WORLD_SIZE", "4"}, {"CHIMERA_LOCAL_RANK", "0"}}, "are inconsistent"},
        {{{"SLURM_PROCID", "0"}, {"SLURM_NTASKS", "0"}, {"SLURM_LOCALID", "0"}}, "are inconsistent"},
        {{{"SLURM_PROCID", "1"}, {"SLURM_NTASKS", "2"}, {"SLURM_LOCALID", "2"}}, "are inconsistent"},
    };
    for (const auto& [vars, needle] : cases) {
        const std::string e = error_of([&] { rdzv::ranks_from_environment(env_of(vars)); });
        CAPTURE(e);
        CHECK(e.find(needle) != std::string::npos);
        for (const char* listed : {"CHIMERA_RANK CHIMERA_WORLD_SIZE CHIMERA_LOCAL_RANK", "SLURM_PROCID SLURM_NTASKS",
                                   "OMPI_COMM_WORLD_RANK", "RANK WORLD_SIZE LOCAL_RANK"})
            CHECK(e.find(listed) != std::string::npos);
        CHECK_THROWS_AS(rdzv::ranks_from_environment(env_of(vars)), rdzv::config_error);
    }
}

TEST_CASE("rendezvous: the default run tag is Slurm's job.step, else empty") {
    CHECK(rdzv::default_run_tag(env_of({{"SLURM_JOB_ID", "4711"}, {"SLURM_STEP_ID", "0"}})) == "4711.0");
    CHECK(rdzv::default_run_tag(env_of({{"SLURM_JOB_ID", "4711"}})).empty());
    CHECK(rdzv::default_run_tag(env_of({})).empty());
}
