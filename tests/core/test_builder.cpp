// schedule_builder: hand-written schedules become the same IR as generated
// ones and go through the same checker.
#include <doctest/doctest.h>

#include <chimera/builder.hpp>
#include <chimera/chimera.hpp>

#include <algorithm>
#include <string>
#include <vector>

using namespace chimera;

namespace {

// Rebuilds a generated schedule op by op, filling workers last to first.
schedule rebuild(const schedule& g) {
    schedule_builder b("copy", {g.stages(), g.micro_batches(), g.pipelines(), g.workers()});
    for (int p = 0; p < g.pipelines(); ++p)
        for (int st = 0; st < g.stages(); ++st) b.place(p, st, g.placement(p, st));
    for (int m = 0; m < g.micro_batches(); ++m) b.route(m, g.pipeline_of(m));
    for (int w = g.workers() - 1; w >= 0; --w)
        for (const op& o : g.ops(w)) b.append(w, o);
    return b.build();
}

constexpr schedule two_stage_by_hand() {
    schedule_builder b("hand", {.stages = 2, .micro_batches = 2, .pipelines = 1, .workers = 2});
    b.append(forward(0, 0, 0)).append(forward(0, 1, 0));
    b.append(forward(0, 0, 1)).append(backward(0, 0, 1)).append(forward(0, 1, 1)).append(backward(0, 1, 1));
    b.append(backward(0, 0, 0)).append(backward(0, 1, 0));
    return b.build();
}

}  // namespace

TEST_CASE("a rebuilt generated schedule is the same IR and passes the checker") {
    for (algorithm a : generated_algorithms)
        for (int d : {2, 4, 6}) {
            const config c{a, d, 2 * d};
            if (validate(c)) continue;
            const schedule g = generate(c);
            const schedule s = rebuild(g);
            CAPTURE(to_string(a));
            CHECK(check(s).ok());
            CHECK(s.name() == "copy");
            CHECK(s.params().schedule == algorithm::custom);
            for (int w = 0; w < g.workers(); ++w) CHECK(std::ranges::equal(s.ops(w), g.ops(w)));
            for (int m = 0; m < g.micro_batches(); ++m) CHECK(s.pipeline_of(m) == g.pipeline_of(m));
        }
}

TEST_CASE("the builder works in constant expressions (docs/design/formats.md#the-native-json-form example)") {
#if defined(__clang__)
    // clang 14 rejects libstdc++'s constexpr std::vector<bool> (used by asap): check at run time there
    CHECK(check(two_stage_by_hand()).ok());
#else
    static_assert(check(two_stage_by_hand()).ok());
#endif
    constexpr int workers = two_stage_by_hand().workers();
    static_assert(workers == 2);
    const schedule s = two_stage_by_hand();
    CHECK(s.ops(0).size() == 4);
    CHECK(s.ops(1)[1] == backward(0, 0, 1));
}

TEST_CASE("append(op) follows the placement; defaults are stage mod P and pipeline 0") {
    schedule_builder b("mirror", {.stages = 2, .micro_batches = 2, .pipelines = 2, .workers = 2});
    b.place(1, 0, 1).place(1, 1, 0).route(1, 1);
    for (int m = 0; m < 2; ++m)
        for (int st = 0; st < 2; ++st) b.append(forward(m, m, st));
    for (int m = 0; m < 2; ++m)
        for (int st = 1; st >= 0; --st) b.append(backward(m, m, st));
    const schedule s = b.build();
    CHECK(s.placement(0, 1) == 1);
    CHECK(s.placement(1, 0) == 1);
    CHECK(s.ops(1)[0] == forward(0, 0, 1));
    CHECK(s.ops(1)[1] == forward(1, 1, 0));
    CHECK(check(s).ok());
}

TEST_CASE("bad hand-written schedules get the checker's full report") {
    SUBCASE("cross-worker deadlock (D4)") {
        schedule_builder b("stuck", {.stages = 2, .micro_batches = 2, .pipelines = 1, .workers = 2});
        // worker 0 waits for B of micro-batch 0, which waits (on worker 1) for F of micro-batch 1
        b.append(forward(0, 0, 0)).append(backward(0, 0, 0)).append(forward(0, 1, 0)).append(backward(0, 1, 0));
        b.append(forward(0, 0, 1)).append(forward(0, 1, 1)).append(backward(0, 0, 1)).append(backward(0, 1, 1));
        const check_report r = check(b.build());
        CHECK(r.has("D4"));
    }
    SUBCASE("op on the wrong worker (S2) and missing ops (S5)") {
        schedule_builder b("wrong", {.stages = 2, .micro_batches = 1, .pipelines = 1, .workers = 2});
        b.append(1, forward(0, 0, 0)).append(forward(0, 0, 1)).append(backward(0, 0, 1));
        const check_report r = check(b.build());
        CHECK(r.has("S2"));
        CHECK(r.has("S5"));
    }
}

TEST_CASE("out-of-range builder arguments are refused with S0") {
    CHECK_THROWS_AS(schedule_builder("x", {.stages = 0}), schedule_error);
    schedule_builder b("x", {.stages = 2, .micro_batches = 2, .pipelines = 1, .workers = 2});
    CHECK_THROWS_WITH_AS(b.append(2, forward(0, 0, 0)), "schedule_builder: worker 2 is not in [0, 2)", schedule_error);
    CHECK_THROWS_AS(b.place(0, 2, 0), schedule_error);
    CHECK_THROWS_AS(b.place(0, 0, -1), schedule_error);
    CHECK_THROWS_AS(b.route(2, 0), schedule_error);
    CHECK_THROWS_AS(b.route(0, 1), schedule_error);
    CHECK_THROWS_AS(b.append(forward(0, 0, 5)), schedule_error);
    const auto rule_of = [](auto&& call) -> std::string {
        try {
            call();
        } catch (const schedule_error& e) {
            return std::string(e.rule());
        }
        return "accepted";
    };
    CHECK(rule_of([&] { b.append(-1, forward(0, 0, 0)); }) == "S0");
    // Sizes beyond the JSON reader's limits are refused before anything is
    // allocated (2^31 - 1 workers would be one op list each), naming the values.
    const int huge = 2147483647;
    CHECK(rule_of([&] { schedule_builder("x", {.workers = huge}); }) == "S0");
    CHECK_THROWS_WITH_AS(schedule_builder("x", {.workers = huge}),
                         "schedule_builder: workers must be <= 16777216 (got 2147483647)", schedule_error);
    CHECK_THROWS_WITH_AS(schedule_builder("x", {.stages = 4096, .micro_batches = 4097}),
                         "schedule_builder: stages x micro_batches and stages x pipelines must be <= 16777216 "
                         "(got 16781312 and 4096)",
                         schedule_error);
    CHECK_NOTHROW(schedule_builder("x", {.stages = 4096, .micro_batches = 4096, .workers = 1 << 10}));
}

TEST_CASE("IR helpers: copy_frame, with_ops, filter_ops, compute_only, op text") {
    const schedule s = generate({.schedule = algorithm::chimera, .stages = 4, .micro_batches = 8});
    const schedule frame = copy_frame(s);
    CHECK(frame.workers() == 0);
    CHECK(frame.name() == s.name());
    CHECK(frame.params() == s.params());
    for (int m = 0; m < s.micro_batches(); ++m) CHECK(frame.pipeline_of(m) == s.pipeline_of(m));
    for (int p = 0; p < s.pipelines(); ++p)
        for (int st = 0; st < s.stages(); ++st) CHECK(frame.placement(p, st) == s.placement(p, st));

    std::vector<std::vector<op>> lists;
    for (int w = 0; w < s.workers(); ++w) lists.emplace_back(s.ops(w).begin(), s.ops(w).end());
    CHECK(with_ops(s, lists) == s);
    std::ranges::reverse(lists.front());
    const schedule reversed = with_ops(s, lists);
    CHECK_FALSE(reversed == s);
    CHECK(reversed.ops(0).front() == s.ops(0).back());

    const schedule forwards = filter_ops(s, [](const op& o) { return o.kind == op_kind::F; });
    CHECK(forwards.op_count() * 2 == s.op_count());
    // Stripping the comm ops of every lowered zoo schedule gives back its compute schedule.
    for (const config& c : {config{.schedule = algorithm::gpipe, .stages = 4, .micro_batches = 6},
                            config{.schedule = algorithm::chimera, .stages = 4, .micro_batches = 8, .pipelines = 4},
                            config{.schedule = algorithm::zb_v, .stages = 4, .micro_batches = 8},
                            config{.schedule = algorithm::dualpipe, .stages = 4, .micro_batches = 8}}) {
        const schedule compute = generate(c);
        const schedule lowered = lower(compute);
        CHECK(lowered.op_count() > compute.op_count());
        CHECK(compute_only(lowered) == compute);
    }

    CHECK(to_string(forward(1, 3, 2)) == "F3s2p1");
    CHECK(to_string(op{op_kind::SEND_B, 1, 2, 0, 3}) == "SEND_B2s1p0@3");
    CHECK(to_string(op{op_kind::REDUCE_GRAD, 2, no_micro_batch, 1, no_peer}) == "REDUCE_GRADs2p1");
    CHECK(describe(op{op_kind::RECV_F, 1, 4, 0, 2}) == "RECV_F(micro-batch 4, stage 1, pipeline 0, peer 2)");
}
