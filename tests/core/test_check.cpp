// The checker catches what it promises: each mutation class with its rule.
#include <doctest/doctest.h>

#include <algorithm>
#include <random>

#include "helpers.hpp"

using namespace chimera;
using test::lists_of;
using test::with_lists;

namespace {
schedule chimera44() { return generate({.schedule = algorithm::chimera, .stages = 4, .micro_batches = 4}); }
schedule one_f_one_b(int d, int n) { return generate({.schedule = algorithm::one_f_one_b, .stages = d, .micro_batches = n}); }

// The schedule as a custom one: only the generic rules apply.
schedule as_custom(schedule s) {
    s.set_identity("custom", config{algorithm::custom});
    return s;
}

const diagnostic& first(const check_report& r) {
    REQUIRE_FALSE(r.ok());
    return r.diagnostics.front();
}
}  // namespace

TEST_CASE("valid schedules pass") {
    CHECK(check(chimera44()).ok());
    CHECK(check(as_custom(chimera44())).ok());
    CHECK(check(one_f_one_b(4, 8)).ok());
}

TEST_CASE("dropped op: S5 names the missing op") {
    auto lists = lists_of(chimera44());
    lists[0].erase(lists[0].begin() + 6);  // B0d0
    const auto r = check(with_lists(chimera44(), lists));
    CHECK(first(r).rule == "S5");
    CHECK(first(r).message == "micro-batch 0, stage 0, pipeline 0: backward (B, or I and W) is missing");
}

TEST_CASE("duplicated op: S5 with worker and index") {
    auto lists = lists_of(chimera44());
    lists[2].insert(lists[2].begin() + 3, lists[2][0]);
    const auto r = check(with_lists(chimera44(), lists));
    CHECK(first(r).rule == "S5");
    CHECK(first(r).worker == 2);
    CHECK(first(r).index == 3);
    CHECK(first(r).message.find("is duplicated") != std::string::npos);
}

TEST_CASE("misplaced op: S2 (runs on a worker that does not hold the stage)") {
    auto lists = lists_of(one_f_one_b(4, 4));
    const op moved = lists[1][0];  // F0 on stage 1
    lists[1].erase(lists[1].begin());
    lists[2].insert(lists[2].begin(), moved);
    const auto r = check(with_lists(one_f_one_b(4, 4), lists));
    CHECK(first(r).rule == "S2");
    CHECK(first(r).worker == 2);
    CHECK(first(r).message.find("placed on worker 1") != std::string::npos);
}

TEST_CASE("wrong routing: S4") {
    auto lists = lists_of(chimera44());
    for (auto& list : lists)
        for (auto& o : list)
            if (o.micro_batch == 0) o.micro_batch = 2, o.pipeline = 0;  // pretend 2 went down
    const auto r = check(with_lists(chimera44(), lists));
    CHECK(r.has("S4"));
}

TEST_CASE("out-of-range fields: S0") {
    for (int field = 0; field < 4; ++field) {
        auto lists = lists_of(one_f_one_b(3, 3));
        op& o = lists[1][1];
        if (field == 0) o.stage = 3;
        if (field == 1) o.micro_batch = -1;
        if (field == 2) o.pipeline = 1;
        if (field == 3) o.kind = static_cast<op_kind>(42);
        const auto r = check(with_lists(one_f_one_b(3, 3), lists));
        CHECK(first(r).rule == "S0");
        CHECK(first(r).worker == 1);
        CHECK(first(r).index == 1);
    }
    schedule empty;
    empty.set_shape("custom", 0, 1, 1);
    CHECK(first(check(empty)).rule == "S0");
}

TEST_CASE("swapped ops on one worker: D1/D2 when a dependency is on that worker") {
    SUBCASE("B before its own F on the last stage: D2") {
        auto lists = lists_of(one_f_one_b(2, 2));
        std::swap(lists[1][0], lists[1][1]);  // B0 before F0 on worker 1
        const auto r = check(with_lists(one_f_one_b(2, 2), lists));
        CHECK(first(r).rule == "D2");
        CHECK(first(r).worker == 1);
        CHECK(first(r).index == 0);
    }
    SUBCASE("forward of a V-shaped local hand-off before its producer: D1") {
        // Custom: one worker holds stages 0 and 1 of the chain.
        schedule s;
        s.set_shape("custom", 2, 1, 1);
        s.set_placement(0, 0, 0);
        s.set_placement(0, 1, 0);
        s.add_worker();
        for (op o : {forward(0, 0, 1), forward(0, 0, 0), backward(0, 0, 1), backward(0, 0, 0)}) s.push_op(o);
        const auto r = check(s);
        CHECK(first(r).rule == "D1");
        CHECK(first(r).index == 0);
    }
}

TEST_CASE("FIFO per channel: D3") {
    auto lists = lists_of(one_f_one_b(3, 4));
    // Worker 0 sends 0,1,... ; make worker 1 run its first two forwards swapped.
    auto& w1 = lists[1];
    auto f0 = std::find(w1.begin(), w1.end(), forward(0, 0, 1));
    auto f1 = std::find(w1.begin(), w1.end(), forward(0, 1, 1));
    std::iter_swap(f0, f1);
    const auto r = check(as_custom(with_lists(one_f_one_b(3, 4), lists)));
    CHECK(r.has("D3"));
}

TEST_CASE("cross-worker cycle: D4 deadlock names each stuck worker and what it waits for") {
    // Worker 0 waits for B0 of stage 1 before sending F1; worker 1 waits for F1 before B0.
    schedule s;
    s.set_shape("custom", 2, 2, 1);
    s.set_placement(0, 0, 0);
    s.set_placement(0, 1, 1);
    s.add_worker();
    for (op o : {forward(0, 0, 0), backward(0, 0, 0), forward(0, 1, 0), backward(0, 1, 0)}) s.push_op(o);
    s.add_worker();
    for (op o : {forward(0, 0, 1), forward(0, 1, 1), backward(0, 0, 1), backward(0, 1, 1)}) s.push_op(o);
    const auto r = check(s);
    REQUIRE(r.has("D4"));
    CHECK(r.diagnostics.size() == 2);
    CHECK(r.diagnostics[0].message ==
          "deadlock: worker 0 cannot run op 1 B(micro-batch 0, stage 0, pipeline 0), which waits for "
          "B(micro-batch 0, stage 1, pipeline 0) on worker 1");
    CHECK(r.diagnostics[1].worker == 1);
    CHECK(r.diagnostics[1].index == 1);
}

TEST_CASE("chimera rules: a reordered but otherwise valid list breaks the closed form (T1)") {
    // Swap two independent forwards on worker 1: still deadlock-free, but not Chimera's order.
    auto lists = lists_of(chimera44());
    std::swap(lists[1][1], lists[1][2]);  // F2u2 <-> F1d1
    const schedule mutated = with_lists(chimera44(), lists);
    const auto r = check(mutated);
    CHECK(first(r).rule == "T1");
    CHECK(check(as_custom(mutated)).ok());  // valid as a custom schedule
}

TEST_CASE("chimera rules: placement must be docs/design/chimera-closed-form.md#placement (S2) and params must match the shape (S1)") {
    schedule s = chimera44();
    schedule moved = with_lists(s, lists_of(s));
    moved.set_placement(0, 0, 3);
    CHECK(check(moved).has("S2"));
    const config six{.schedule = algorithm::chimera, .stages = 6, .micro_batches = 4};
    const auto r = check(with_lists(s, lists_of(s), &six));
    CHECK(first(r).rule == "S1");
    CHECK(first(r).message.find("does not match its params (D=6") != std::string::npos);
}

TEST_CASE("random mutations of chimera schedules are always caught") {
    std::mt19937 rng(12345);
    int caught = 0;
    for (int trial = 0; trial < 400; ++trial) {
        const int d = 2 * (1 + static_cast<int>(rng() % 5));
        const int k = (d / 2) % 2 == 0 && rng() % 2 ? 4 : 2;
        const schedule s = generate({.schedule = algorithm::chimera, .stages = d, .micro_batches = d * (1 + static_cast<int>(rng() % 3)), .pipelines = k});
        auto lists = lists_of(s);
        auto& list = lists[rng() % lists.size()];
        const std::size_t i = rng() % list.size();
        std::size_t j = rng() % list.size();
        if (j == i) j = (i + 1) % list.size();
        switch (trial % 4) {
            case 0: std::swap(list[i], list[j]); break;                      // swapped
            case 1: list.erase(list.begin() + static_cast<long>(i)); break;  // dropped
            case 2: list.insert(list.begin() + static_cast<long>(j), list[i]); break;  // duplicated
            case 3: {  // moved to another worker
                const op o = list[i];
                list.erase(list.begin() + static_cast<long>(i));
                auto& other = lists[(static_cast<std::size_t>(s.placement(o.pipeline, o.stage)) + 1) % lists.size()];
                other.insert(other.begin() + static_cast<long>(rng() % (other.size() + 1)), o);
                break;
            }
        }
        const auto r = check(with_lists(s, lists));
        caught += !r.ok();
        CHECK_FALSE(r.ok());
    }
    CHECK(caught == 400);
}

TEST_CASE("diagnostics are capped and marked truncated") {
    auto lists = lists_of(generate({.schedule = algorithm::gpipe, .stages = 8, .micro_batches = 64}));
    for (auto& list : lists) list.clear();
    const auto r = check(with_lists(generate({.schedule = algorithm::gpipe, .stages = 8, .micro_batches = 64}), lists),
                         {.max_diagnostics = 10});
    CHECK(r.diagnostics.size() == 10);
    CHECK(r.truncated);
}

namespace {
schedule chimera_mode(int d, int n, int k, scaling mode) {
    return generate({.schedule = algorithm::chimera, .stages = d, .micro_batches = n, .pipelines = k, .scaling_mode = mode});
}

// `s` with op i of worker w moved to position j of the same list.
schedule moved(const schedule& s, int w, int i, int j) {
    auto lists = lists_of(s);
    auto& list = lists[static_cast<std::size_t>(w)];
    const op o = list[static_cast<std::size_t>(i)];
    list.erase(list.begin() + i);
    list.insert(list.begin() + j, o);
    return with_lists(s, lists);
}

// Every single-op move within a worker's list: {moves, caught by a named rule}.
std::pair<int, int> all_moves(const schedule& s) {
    int moves = 0, caught = 0;
    for (int w = 0; w < s.workers(); ++w) {
        const int length = static_cast<int>(s.ops(w).size());
        for (int i = 0; i < length; ++i)
            for (int j = 0; j < length; ++j) {
                if (i == j) continue;
                const auto r = check(moved(s, w, i, j));
                ++moves;
                caught += !r.ok() && !r.diagnostics.front().rule.empty();
            }
    }
    return {moves, caught};
}
}  // namespace

TEST_CASE("doubling and halving: every single-op move breaks a named rule") {
    // D=4, N=8 doubling: 4 workers x 16 ops x 15 other positions.
    const auto [moves, caught] = all_moves(chimera_mode(4, 8, 2, scaling::doubling));
    CHECK(moves == 960);
    CHECK(caught == 960);
    for (int d = 2; d <= 6; d += 2)
        for (int n : {d, 2 * d}) {
            CAPTURE(d);
            CAPTURE(n);
            const auto [m, c] = all_moves(chimera_mode(d, n, 2, scaling::halving));
            CHECK(m == d * 4 * n * (4 * n - 1));  // 2N micro-batches: 4N ops per worker
            CHECK(c == m);
        }
}

TEST_CASE("doubling order (T1): a moved op is named with what the phase form runs there") {
    // Worker 0 of D=4, N=8 doubling: F6u3 moved before B2u3 keeps every dependency.
    const schedule s = moved(chimera_mode(4, 8, 2, scaling::doubling), 0, 6, 8);
    CHECK(check(s, {.chimera_invariants = false}).ok());  // only Chimera's own rules catch it
    const auto r = check(s);
    CHECK(first(r).rule == "T1");
    CHECK(first(r).worker == 0);
    CHECK(first(r).index == 6);
    CHECK(first(r).message ==
          "worker 0 op 6 F(micro-batch 6, stage 3, pipeline 1): the doubling phase form runs B(micro-batch 2, stage 3, "
          "pipeline 1) here");
    // The same order holds for halving (the doubling order over 2N micro-batches).
    CHECK(check(moved(chimera_mode(4, 4, 2, scaling::halving), 0, 6, 8)).has("T1"));
}

TEST_CASE("memory rules: M2 (doubling), M1 (direct, f = 1), M3 (k = 4) name the peak") {
    const auto m2 = check(moved(chimera_mode(4, 8, 2, scaling::doubling), 0, 6, 8));
    REQUIRE(m2.has("M2"));
    const auto in = [](const check_report& r, std::string_view rule) {
        return std::find_if(r.diagnostics.begin(), r.diagnostics.end(), [&](const diagnostic& d) { return d.rule == rule; });
    };
    // D + D/2 + 1 + min(w, D-1-w) = 7 on worker 0; the move holds 8.
    CHECK(in(m2, "M2")->message == "worker 0 holds up to 8 activations, expected 7");
    CHECK(in(m2, "M2")->worker == 0);

    const auto m1 = check(moved(chimera_mode(4, 8, 2, scaling::direct), 0, 7, 2));
    REQUIRE(m1.has("M1"));
    CHECK(in(m1, "M1")->message == "worker 0 holds up to 4 activations, expected 3");  // D/2 + 1 + 0

    const auto m3 = check(moved(chimera_mode(8, 8, 4, scaling::direct), 0, 4, 9));
    REQUIRE(m3.has("M3"));
    CHECK(in(m3, "M3")->message ==
          "peak activations range over [6, 8], expected [D - D/(2f) + 1, D] = [7, 8]");
}
