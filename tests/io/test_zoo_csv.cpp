// PyTorch CSV for the schedule zoo (issue 7): every single-chain schedule
// writes and reads back unchanged, in both flavours; replicated-stage
// schedules are refused with the rule.
#include <doctest/doctest.h>

#include <chimera/io/csv.hpp>
#include <chimera/lower.hpp>

#include "helpers.hpp"

using namespace chimera;

TEST_CASE("single-chain zoo schedules round-trip through PyTorch CSV") {
    int round_trips = 0;
    for (auto a : {algorithm::interleaved, algorithm::looped_bfs, algorithm::zb_h1, algorithm::zb_h2, algorithm::zb_v,
                   algorithm::dualpipev})
        for (int p = 1; p <= 6; ++p)
            for (int n = 1; n <= 3 * p + 1; ++n)
                for (int v : {2, 3}) {
                    config c{.schedule = a, .stages = p, .micro_batches = n};
                    if (a == algorithm::interleaved || a == algorithm::looped_bfs) c.chunks = v;
                    else if (v == 3) continue;
                    if (validate(c)) continue;
                    CAPTURE(to_string(a));
                    CAPTURE(p);
                    CAPTURE(n);
                    CAPTURE(v);
                    const schedule s = generate(c);
                    REQUIRE_FALSE(io::csv_refusal(s).has_value());
                    const schedule back = io::read_csv(io::write_csv(s), {.format = io::csv_format::compute_only});
                    CHECK(test::lists_of(back) == test::lists_of(s));
                    for (int st = 0; st < s.stages(); ++st) CHECK(back.placement(0, st) == s.placement(0, st));
                    CHECK(check(back).ok());
                    const schedule lowered = lower(s);
                    const schedule comms =
                        io::read_csv(io::write_csv(lowered, io::csv_format::compute_comms), {.format = io::csv_format::compute_comms});
                    CHECK(test::lists_of(comms) == test::lists_of(lowered));
                    ++round_trips;
                }
    CHECK(round_trips > 300);
}

TEST_CASE("GEMS and DualPipe are refused: their stages are replicated (CSV7)") {
    for (auto a : {algorithm::gems, algorithm::dualpipe}) {
        const schedule s = generate({.schedule = a, .stages = 4, .micro_batches = 8});
        const auto why = io::csv_refusal(s);
        REQUIRE(why.has_value());
        try {
            (void)io::write_csv(s);
            FAIL("wrote a replicated schedule");
        } catch (const schedule_error& e) {
            CHECK(e.rule() == "CSV7");
            CHECK(std::string(e.what()).find("JSON") != std::string::npos);
        }
    }
}
