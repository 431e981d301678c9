// chimera.schedule/1: lossless, deterministic round trips and strict reading.
#include <doctest/doctest.h>

#include <algorithm>

#include <chimera/io/json.hpp>
#include <chimera/io/text.hpp>
#include <chimera/lower.hpp>

#include "helpers.hpp"

using namespace chimera;

TEST_CASE("round trip: write -> read -> equal schedule -> same bytes") {
    std::vector<config> configs;
    for (int d = 1; d <= 6; ++d)
        for (int n : {1, 3, 2 * d}) {
            configs.push_back({.schedule = algorithm::gpipe, .stages = d, .micro_batches = n});
            configs.push_back({.schedule = algorithm::one_f_one_b, .stages = d, .micro_batches = n, .data_parallel = 2});
            if (d % 2 == 0) {
                configs.push_back({.schedule = algorithm::chimera, .stages = d, .micro_batches = n});
                configs.push_back({.schedule = algorithm::chimera, .stages = d, .micro_batches = n, .scaling_mode = scaling::halving});
                if (d % 4 == 0) configs.push_back({.schedule = algorithm::chimera, .stages = d, .micro_batches = n, .pipelines = 4});
            }
        }
    for (const config& c : configs) {
        const schedule s = generate(c);
        const std::string text = io::write_json(s);
        const schedule back = io::read_json(text);
        CHECK(back == s);
        CHECK(io::write_json(back) == text);
        CHECK(check(back).ok());
    }
}

TEST_CASE("the example of docs/design/formats.md#the-native-json-form reads into 1F1B D=2 N=2") {
    const char* text = R"({"format":"chimera.schedule/1","name":"1f1b","stages":2,"micro_batches":2,
 "pipelines":1,"workers":2,"placement":[[0,1]],"micro_batch_pipeline":[0,0],
 "ops":[[{"kind":"F","stage":0,"micro_batch":0,"pipeline":0},
         {"kind":"F","stage":0,"micro_batch":1,"pipeline":0},
         {"kind":"B","stage":0,"micro_batch":0,"pipeline":0},
         {"kind":"B","stage":0,"micro_batch":1,"pipeline":0}],
        [{"kind":"F","stage":1,"micro_batch":0,"pipeline":0},
         {"kind":"B","stage":1,"micro_batch":0,"pipeline":0},
         {"kind":"F","stage":1,"micro_batch":1,"pipeline":0},
         {"kind":"B","stage":1,"micro_batch":1,"pipeline":0}]]})";
    const schedule s = io::read_json(text);
    const schedule g = generate({.schedule = algorithm::one_f_one_b, .stages = 2, .micro_batches = 2});
    CHECK(test::lists_of(s) == test::lists_of(g));
    CHECK(s.name() == "1f1b");
    CHECK(s.params().schedule == algorithm::custom);  // no params in the file
    CHECK(check(s).ok());
}

TEST_CASE("strict reader: each problem names its JSON path and what was expected") {
    const std::string good = io::write_json(generate({.schedule = algorithm::one_f_one_b, .stages = 2, .micro_batches = 2}));
    auto replaced = [&](const std::string& from, const std::string& to) {
        std::string t = good;
        const auto at = t.find(from);
        REQUIRE(at != std::string::npos);
        return t.replace(at, from.size(), to);
    };
    struct bad {
        std::string text;
        std::string where;
        std::string what;
    };
    const std::vector<bad> cases = {
        {"", "line 1, column 1", "invalid JSON"},
        {good.substr(0, good.size() / 2), "line", "invalid JSON"},
        {"[1,2]", "$", "expected a JSON object, got array"},
        {replaced("chimera.schedule/1", "chimera.schedule/2"), "$.format", "expected \"chimera.schedule/1\""},
        {replaced("\n \"stages\":2,", "\n "), "$", "missing required key \"stages\""},
        {replaced("\n \"stages\":2,", "\n \"stages\":\"2\","), "$.stages", "expected an integer, got string"},
        {replaced("\n \"stages\":2,", "\n \"stages\":2.5,"), "$.stages", "expected an integer, got number"},
        {replaced("\n \"stages\":2,", "\n \"stages\":99999999999999999999,"), "$.stages", "expected an integer"},
        {replaced("\"workers\":2", "\"workers\":0"), "$.workers", "expected an integer in [1, "},
        {replaced("\"placement\":[[0,1]]", "\"placement\":[[0,2]]"), "$.placement[0][1]", "in [0, 1], got 2"},
        {replaced("\"micro_batch_pipeline\":[0,0]", "\"micro_batch_pipeline\":[0]"), "$.micro_batch_pipeline",
         "expected 2 entries"},
        {replaced("{\"kind\":\"F\",\"stage\":0,", "{\"kind\":\"X\",\"stage\":0,"), "$.ops[0][0].kind", "unknown op kind \"X\""},
        {replaced("{\"kind\":\"F\",\"stage\":0,", "{\"kind\":\"F\",\"stage\":7,"), "$.ops[0][0].stage", "in [0, 1], got 7"},
        {replaced("\"micro_batch\":1,\"pipeline\":0}", "\"micro_batch\":1,\"pipeline\":0,\"peer\":1}"),
         "$.ops[0][1].peer", "only communication ops have a peer"},
        {replaced("{\"kind\":\"F\",\"stage\":0,\"micro_batch\":0,", "{\"kind\":\"F\",\"stage\":0,"), "$.ops[0][0]",
         "missing required key \"micro_batch\""},
        {replaced("\"name\":\"1f1b\"", "\"name\":\"a-name-that-is-far-too-long-to-store-inline\""), "$.name",
         "expected 1 to 31 characters"},
    };
    for (const auto& b : cases) {
        CAPTURE(b.text);
        try {
            (void)io::read_json(b.text);
            FAIL("accepted");
        } catch (const io::format_error& e) {
            CHECK(e.where().find(b.where) == 0);
            CHECK(std::string(e.what()).find(b.what) != std::string::npos);
        }
    }
}

TEST_CASE("strict reader: every op field one past its range, or -1, is refused with JSON3 and the value") {
    // Lowered chimera D=4 N=4: 4 stages, 4 micro-batches, 2 pipelines, 4 workers.
    const schedule s = lower(generate({.schedule = algorithm::chimera, .stages = 4, .micro_batches = 4}));
    const nlohmann::json good = nlohmann::json::parse(io::write_json(s));
    REQUIRE(io::read_json(good.dump()) == s);
    // Worker 0's first op is a compute op; its first SEND carries a peer.
    const auto ops0 = s.ops(0);
    const auto send = std::ranges::find_if(ops0, [](const op& o) { return is_p2p(o.kind); }) - ops0.begin();
    REQUIRE(send < static_cast<long>(ops0.size()));
    struct field {
        const char* key;
        long index;  // op of worker 0
        int size;    // values must be in [0, size)
    };
    for (const field f : {field{"stage", 0, 4}, field{"micro_batch", 0, 4}, field{"pipeline", 0, 2},
                          field{"peer", send, 4}})
        for (const int value : {f.size, -1}) {
            nlohmann::json bad = good;
            bad["ops"][0][static_cast<std::size_t>(f.index)][f.key] = value;
            const std::string path = "$.ops[0][" + std::to_string(f.index) + "]." + f.key;
            CAPTURE(path);
            CAPTURE(value);
            try {
                (void)io::read_json(bad.dump());
                FAIL("accepted");
            } catch (const io::format_error& e) {
                CHECK(e.rule() == "JSON3");
                CHECK(e.where() == path);
                CHECK(std::string(e.what()).find("in [0, " + std::to_string(f.size - 1) + "], got " +
                                                 std::to_string(value)) != std::string::npos);
            }
            bad["ops"][0][static_cast<std::size_t>(f.index)][f.key] = value < 0 ? 0 : f.size - 1;  // in range again
            CHECK_NOTHROW((void)io::read_json(bad.dump()));
        }
}

TEST_CASE("syntax errors report line and column") {
    try {
        (void)io::read_json("{\"format\":\n  \"chimera.schedule/1\",,}");
        FAIL("accepted");
    } catch (const io::format_error& e) {
        CHECK(e.where() == "line 2, column 24");  // the second comma
    }
}

TEST_CASE("text grid of chimera D=4 N=4 is the slot table of docs/design/chimera-closed-form.md#worked-example-four-stages-four-micro-batches") {
    const std::string grid = io::write_text(generate({.schedule = algorithm::chimera, .stages = 4, .micro_batches = 4}));
    CHECK(grid.find("P0  F0 .  F1 F2 B2 F3 B3 B0 .  B1\n") != std::string::npos);
    CHECK(grid.find("P1  .  F0 F2 F1 F3 B2 B0 B3 B1 .\n") != std::string::npos);
    CHECK(grid.find("P2  .  F2 F0 F3 F1 B0 B2 B1 B3 .\n") != std::string::npos);
    CHECK(grid.find("P3  F2 .  F3 F0 B0 F1 B1 B2 .  B3\n") != std::string::npos);
    CHECK(grid.find("\x1b[") == std::string::npos);
    CHECK(io::write_text(generate({.schedule = algorithm::chimera, .stages = 4, .micro_batches = 4}), {.color = true})
              .find("\x1b[") != std::string::npos);
}
