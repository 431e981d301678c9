// The zoo through chimera.schedule/1: every generator's schedule, its params
// included (chunks, group size, split backward), survives a round trip and
// still passes the checker.
#include <doctest/doctest.h>

#include <chimera/chimera.hpp>
#include <chimera/io/json.hpp>

using namespace chimera;

TEST_CASE("JSON round trip of every generator") {
    for (algorithm a : generated_algorithms)
        for (int d : {2, 4}) {
            config c{a, d, 3 * d};
            if (a == algorithm::interleaved) c.micro_batches = 2 * d;
            if (a == algorithm::looped_bfs) c.chunks = 3;
            if (validate(c)) continue;
            const schedule s = generate(c);
            const schedule back = io::read_json(io::write_json(s));
            CAPTURE(to_string(a));
            CHECK(back == s);
            CHECK(check(back).ok());
        }
}

TEST_CASE("JSON round trip keeps split backward and the interleaved group size") {
    config c{algorithm::chimera, 4, 8};
    c.split_backward = true;
    const schedule s = generate(c);
    const std::string text = io::write_json(s);
    CHECK(text.find("\"split_backward\":true") != std::string::npos);
    const schedule back = io::read_json(text);
    CHECK(back.params().split_backward);
    CHECK(back == s);
    CHECK(check(back).ok());

    config i{algorithm::interleaved, 4, 10};
    i.group_size = 6;
    i.chunks = 3;
    const schedule si = generate(i);
    const std::string ti = io::write_json(si);
    CHECK(ti.find("\"chunks\":3,\"group_size\":6,\"g\":6") != std::string::npos);
    CHECK(io::read_json(ti) == si);
}
