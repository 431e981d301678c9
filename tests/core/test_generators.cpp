// Generators against the spec's worked examples and against independent
// re-implementations (phase form, pad-and-drop from a full schedule).
#include <doctest/doctest.h>

#include <algorithm>
#include <map>
#include <set>

#include "helpers.hpp"

using namespace chimera;

namespace {

config chimera_config(int d, int n, int k = 2, scaling mode = scaling::direct) {
    return {.schedule = algorithm::chimera, .stages = d, .micro_batches = n, .pipelines = k, .scaling_mode = mode};
}

// The phase forms of docs/design/chimera-closed-form.md#the-phase-form to #more-micro-batches-than-stages (f = 1): for each worker, `body(a,
// b, own, other, f, bw)` emits its phases, where f(p) and bw(p) append the
// next forward and backward of pipeline p (micro-batches FIFO per pipeline).
template <class Body>
std::vector<std::vector<op>> phases(int d, Body body) {
    const int half = d / 2;
    std::vector<std::vector<op>> lists(static_cast<std::size_t>(d));
    for (int w = 0; w < d; ++w) {
        const int m = std::min(w, d - 1 - w);
        const int stage_of[2] = {w, d - 1 - w};
        int next_f[2] = {0, 0}, next_b[2] = {0, 0};
        auto id = [&](int p, int i) { return i / half * d + p * half + i % half; };
        auto& out = lists[static_cast<std::size_t>(w)];
        auto f = [&](int p) { out.push_back(forward(p, id(p, next_f[p]++), stage_of[p])); };
        auto bw = [&](int p) { out.push_back(backward(p, id(p, next_b[p]++), stage_of[p])); };
        body(half - m, m, w < half ? 0 : 1, w < half ? 1 : 0, f, bw);
    }
    return lists;
}

// docs/design/chimera-closed-form.md#the-phase-form and #direct-concatenation: the phase form of direct mode (f = 1), written
// independently of the closed form the generator uses.
std::vector<std::vector<op>> phase_form(int d, int n) {
    return phases(d, [&](int a, int b, int own, int other, auto f, auto bw) {
        for (int u = 0; u < n / d; ++u) {
            for (int r = 0; r < a; ++r) {
                if (u > 0) bw(own);
                f(own);
            }
            for (int r = 0; r < b; ++r) f(other), f(own);
            for (int r = 0; r < a; ++r) f(other), bw(other);
            for (int r = 0; r < b; ++r) bw(own), bw(other);
        }
        for (int r = 0; r < a; ++r) bw(own);
    });
}

}  // namespace

TEST_CASE("chimera D=4 N=4: per-worker op lists of docs/design/chimera-closed-form.md#worked-example-four-stages-four-micro-batches") {
    const schedule s = generate(chimera_config(4, 4));
    CHECK(test::worker_string(s, 0) == "F0d0 F1d0 F2u3 B2u3 F3u3 B3u3 B0d0 B1d0");
    CHECK(test::worker_string(s, 1) == "F0d1 F2u2 F1d1 F3u2 B2u2 B0d1 B3u2 B1d1");
    CHECK(test::worker_string(s, 2) == "F2u1 F0d2 F3u1 F1d2 B0d2 B2u1 B1d2 B3u1");
    CHECK(test::worker_string(s, 3) == "F2u0 F3u0 F0d3 B0d3 F1d3 B1d3 B2u0 B3u0");
    // The P0 row as micro-batch numbers is the row printed in the paper.
    std::string numbers;
    for (const op& o : s.ops(0)) numbers += std::to_string(o.micro_batch);
    CHECK(numbers == "01223301");
}

TEST_CASE("chimera D=4 N=4: worker x slot table of docs/design/chimera-closed-form.md#worked-example-four-stages-four-micro-batches") {
    const schedule s = generate(chimera_config(4, 4));
    const char* table[4][10] = {
        {"F0", "", "F1", "F2", "B2", "F3", "B3", "B0", "", "B1"},
        {"", "F0", "F2", "F1", "F3", "B2", "B0", "B3", "B1", ""},
        {"", "F2", "F0", "F3", "F1", "B0", "B2", "B1", "B3", ""},
        {"F2", "", "F3", "F0", "B0", "F1", "B1", "B2", "", "B3"},
    };
    for (int w = 0; w < 4; ++w) {
        std::vector<std::string> row(10);
        for (const op& o : s.ops(w))
            row[static_cast<std::size_t>(schedules::chimera_slot(s, o))] =
                std::string(to_string(o.kind)) + std::to_string(o.micro_batch);
        for (int slot = 0; slot < 10; ++slot) CHECK(row[static_cast<std::size_t>(slot)] == table[w][slot]);
    }
}

TEST_CASE("chimera D=4 N=8 direct: concatenated units of docs/design/chimera-closed-form.md#direct-concatenation") {
    const schedule s = generate(chimera_config(4, 8));
    CHECK(test::worker_string(s, 0) ==
          "F0d0 F1d0 F2u3 B2u3 F3u3 B3u3 B0d0 F4d0 B1d0 F5d0 F6u3 B6u3 F7u3 B7u3 B4d0 B5d0");
    CHECK(test::worker_string(s, 1) ==
          "F0d1 F2u2 F1d1 F3u2 B2u2 B0d1 B3u2 B1d1 F4d1 F6u2 F5d1 F7u2 B6u2 B4d1 B7u2 B5d1");
    CHECK(test::worker_string(s, 2) ==
          "F2u1 F0d2 F3u1 F1d2 B0d2 B2u1 B1d2 B3u1 F6u1 F4d2 F7u1 F5d2 B4d2 B6u1 B5d2 B7u1");
    CHECK(test::worker_string(s, 3) ==
          "F2u0 F3u0 F0d3 B0d3 F1d3 B1d3 B2u0 F6u0 B3u0 F7u0 F4d3 B4d3 F5d3 B5d3 B6u0 B7u0");
}

TEST_CASE("chimera direct: closed form equals the phase form (f = 1, every even D <= 24, U <= 4)") {
    for (int d = 2; d <= 24; d += 2)
        for (int units = 1; units <= 4; ++units) {
            CAPTURE(d);
            CAPTURE(units);
            const schedule s = generate(chimera_config(d, units * d));
            CHECK(test::lists_of(s) == phase_form(d, units * d));
        }
}

TEST_CASE("placement of docs/design/chimera-closed-form.md#placement") {
    SUBCASE("D=4, f=1: P0 (d0,u3), P1 (d1,u2), P2 (d2,u1), P3 (d3,u0)") {
        const schedule s = generate(chimera_config(4, 4));
        for (int w = 0; w < 4; ++w) {
            CHECK(s.placement(0, w) == w);
            CHECK(s.placement(1, 3 - w) == w);
        }
    }
    SUBCASE("D=4, f=2: stages held as (down_0, down_1, up_0, up_1)") {
        const schedule s = generate(chimera_config(4, 4, 4));
        const int held[4][4] = {{0, 2, 3, 1}, {1, 3, 2, 0}, {2, 0, 1, 3}, {3, 1, 0, 2}};
        for (int w = 0; w < 4; ++w)
            for (int p = 0; p < 4; ++p) CHECK(s.placement(p, held[w][p]) == w);
    }
    SUBCASE("every even D <= 38, every f | D/2: bijections, 2f distinct stages, one replica class per worker") {
        for (int d = 2; d <= 38; d += 2)
            for (int f = 1; f <= d / 2; ++f) {
                if ((d / 2) % f) continue;
                const int k = 2 * f;
                CAPTURE(d);
                CAPTURE(f);
                for (int p = 0; p < k; ++p) {
                    std::set<int> workers;
                    for (int st = 0; st < d; ++st) {
                        workers.insert(chimera_worker(d, k, p, st));
                        CHECK(chimera_stage(d, k, p, chimera_worker(d, k, p, st)) == st);
                    }
                    CHECK(workers.size() == static_cast<std::size_t>(d));
                }
                for (int w = 0; w < d; ++w) {
                    std::set<int> stages;
                    for (int p = 0; p < k; ++p) stages.insert(chimera_stage(d, k, p, w));
                    CHECK(stages.size() == static_cast<std::size_t>(k));
                    // Holders of each stage a worker holds = the workers of its class.
                    for (int st : stages) {
                        std::set<int> holders, same_class;
                        for (int p = 0; p < k; ++p) holders.insert(chimera_worker(d, k, p, st));
                        for (int v = 0; v < d; ++v)
                            if (chimera_replica_class(d, k, v) == chimera_replica_class(d, k, w)) same_class.insert(v);
                        CHECK(holders == same_class);
                    }
                    // down_i stage 0 and up_i stage D-1 share a worker (tied embeddings).
                }
                for (int i = 0; i < f; ++i) CHECK(chimera_worker(d, k, i, 0) == chimera_worker(d, k, f + i, d - 1));
            }
    }
}

TEST_CASE("micro-batch routing of docs/design/chimera-closed-form.md#routing-micro-batches-to-pipelines") {
    const schedule s = generate(chimera_config(8, 16, 4));
    for (int m = 0; m < 16; ++m) CHECK(s.pipeline_of(m) == (m % 8) / 2);
    const schedule t = generate(chimera_config(4, 8));
    const int expected[] = {0, 0, 1, 1, 0, 0, 1, 1};
    for (int m = 0; m < 8; ++m) CHECK(t.pipeline_of(m) == expected[m]);
}

namespace {
// Independent oracle for docs/design/chimera-closed-form.md#parameter-rules-and-any-n: the full schedule for N' with the
// dropped micro-batches deleted and the rest renumbered.
schedule pad_and_drop(const config& c) {
    const int d = c.stages, k = pipeline_count(c);
    const int granule = c.scaling_mode == scaling::direct ? d : 2 * d;
    const int n = c.scaling_mode == scaling::halving ? 2 * c.micro_batches : c.micro_batches;
    const int padded = (n + granule - 1) / granule * granule;
    config full = c;
    full.micro_batches = c.scaling_mode == scaling::halving ? padded / 2 : padded;
    const schedule big = generate(full);
    const int base = n / granule * granule, r = n - base;
    // Round-robin over down_0, up_0, down_1, up_1, ...
    std::vector<int> quota(static_cast<std::size_t>(k), 0);
    for (int i = 0; i < r; ++i) {
        const int turn = i % k;
        const int p = turn % 2 == 0 ? turn / 2 : k / 2 + turn / 2;
        ++quota[static_cast<std::size_t>(p)];
    }
    std::vector<int> new_id(static_cast<std::size_t>(padded), -1);
    std::vector<int> seen(static_cast<std::size_t>(k), 0);
    int next = 0;
    for (int m = 0; m < padded; ++m) {
        bool keep = m < base;
        if (!keep) {
            const int p = big.pipeline_of(m);
            keep = seen[static_cast<std::size_t>(p)]++ < quota[static_cast<std::size_t>(p)];
        }
        if (keep) new_id[static_cast<std::size_t>(m)] = next++;
    }
    schedule out;
    out.set_shape("chimera", d, n, k, big.params());
    for (int p = 0; p < k; ++p)
        for (int st = 0; st < d; ++st) out.set_placement(p, st, big.placement(p, st));
    for (int m = 0; m < padded; ++m)
        if (new_id[static_cast<std::size_t>(m)] >= 0) out.set_pipeline_of(new_id[static_cast<std::size_t>(m)], big.pipeline_of(m));
    for (int w = 0; w < big.workers(); ++w) {
        out.add_worker();
        for (op o : big.ops(w))
            if (new_id[static_cast<std::size_t>(o.micro_batch)] >= 0) {
                o.micro_batch = new_id[static_cast<std::size_t>(o.micro_batch)];
                out.push_op(o);
            }
    }
    return out;
}
}  // namespace

TEST_CASE("any N >= 1: pad to the granule, drop round-robin, renumber (docs/design/chimera-closed-form.md#parameter-rules-and-any-n)") {
    for (int d = 2; d <= 12; d += 2)
        for (int k = 2; k <= d; k += 2) {
            if ((d / 2) % (k / 2)) continue;
            for (auto mode : {scaling::direct, scaling::doubling, scaling::halving}) {
                if (mode != scaling::direct && k != 2) continue;
                for (int n = 1; n <= 3 * d + 1; ++n) {
                    const config c = chimera_config(d, n, k, mode);
                    CAPTURE(d);
                    CAPTURE(k);
                    CAPTURE(n);
                    CAPTURE(to_string(mode));
                    const schedule s = generate(c);
                    const schedule oracle = pad_and_drop(c);
                    CHECK(test::lists_of(s) == test::lists_of(oracle));
                    for (int m = 0; m < s.micro_batches(); ++m) CHECK(s.pipeline_of(m) == oracle.pipeline_of(m));
                    const auto report = check(s);
                    CHECK_MESSAGE(report.ok(), test::rules_of(report));
                }
            }
        }
}

TEST_CASE("small N keeps both directions busy: N=2 on D=4 sends one micro-batch each way") {
    const schedule s = generate(chimera_config(4, 2));
    CHECK(s.pipeline_of(0) == 0);
    CHECK(s.pipeline_of(1) == 1);
}

TEST_CASE("halving runs the doubling order over 2N half-size micro-batches (docs/design/chimera-closed-form.md#backward-halving)") {
    const schedule h = generate(chimera_config(4, 8, 2, scaling::halving));
    const schedule d = generate(chimera_config(4, 16, 2, scaling::doubling));
    CHECK(h.micro_batches() == 16);
    CHECK(test::lists_of(h) == test::lists_of(d));
    CHECK(h.params().scaling_mode == scaling::halving);
    CHECK(h.params().micro_batches == 8);
}

TEST_CASE("forward doubling: two forwards of one pipeline back to back, D forwards per pipeline per doubled unit") {
    const schedule s = generate(chimera_config(4, 8, 2, scaling::doubling));
    // Worker 0 (a = 2, b = 0, c = 2): F F, F F, then F(other) F(other) B(other) twice, ...
    CHECK(test::worker_string(s, 0) ==
          "F0d0 F1d0 F4d0 F5d0 F2u3 F3u3 B2u3 F6u3 F7u3 B3u3 B0d0 B6u3 B1d0 B7u3 B4d0 B5d0");
}

TEST_CASE("gpipe and 1f1b orders (docs/design/schedule-zoo.md#gpipe, #1f1b; docs/design/formats.md#the-native-json-form example)") {
    const schedule g = generate({.schedule = algorithm::gpipe, .stages = 3, .micro_batches = 3});
    for (int w = 0; w < 3; ++w) {
        std::string expect;
        for (const char* k : {"F", "B"})
            for (int m = 0; m < 3; ++m) {
                if (!expect.empty()) expect += ' ';
                expect += std::string(k) + std::to_string(m) + "p0s" + std::to_string(w);
            }
        CHECK(test::worker_string(g, w) == expect);
    }
    const schedule o = generate({.schedule = algorithm::one_f_one_b, .stages = 2, .micro_batches = 2});
    CHECK(test::worker_string(o, 0) == "F0p0s0 F1p0s0 B0p0s0 B1p0s0");
    CHECK(test::worker_string(o, 1) == "F0p0s1 B0p0s1 F1p0s1 B1p0s1");
    // Warm-up min(P-1-s, N): with N < P the schedule degenerates to GPipe order.
    const schedule few = generate({.schedule = algorithm::one_f_one_b, .stages = 4, .micro_batches = 2});
    CHECK(test::worker_string(few, 0) == "F0p0s0 F1p0s0 B0p0s0 B1p0s0");
    CHECK(test::worker_string(few, 3) == "F0p0s3 B0p0s3 F1p0s3 B1p0s3");
}

TEST_CASE("invalid configs are refused with the rule and the values") {
    struct bad {
        config c;
        const char* text;
    };
    const bad cases[] = {
        {chimera_config(5, 4), "D must be even (got 5)"},
        {chimera_config(0, 4), "stages D must be >= 1 (got 0)"},
        {chimera_config(4, 0), "micro-batches N must be >= 1 (got 0)"},
        {chimera_config(4, -2), "micro-batches N must be >= 1 (got -2)"},
        {chimera_config(8, 8, 3), "k must be even, k = 2f with f >= 1 (got k=3)"},
        {chimera_config(8, 8, 6), "f=3 must divide D/2=4"},
        {chimera_config(8, 8, 4, scaling::doubling), "defined for k=2 pipelines only (got k=4)"},
        {{.schedule = algorithm::gpipe, .stages = 4, .micro_batches = 4, .pipelines = 2}, "k must be 1 (got k=2)"},
        {{.schedule = algorithm::one_f_one_b, .stages = 4, .micro_batches = 4, .scaling_mode = scaling::doubling},
         "exists only for chimera"},
        {{.schedule = algorithm::chimera, .stages = 4, .micro_batches = 4, .data_parallel = 0}, "W must be >= 1 (got 0)"},
        {chimera_config(1 << 13, 1 << 13), "D*N must be <="},
        {{.schedule = algorithm::custom}, "custom schedules"},
    };
    for (const auto& b : cases) {
        CAPTURE(b.text);
        const auto error = validate(b.c);
        REQUIRE(error.has_value());
        CHECK(error->rule == "S1");
        CHECK(error->message.find(b.text) != std::string::npos);
        try {
            (void)generate(b.c);
            FAIL("generate accepted an invalid config");
        } catch (const schedule_error& e) {
            CHECK(e.rule() == "S1");
            CHECK(std::string(e.what()) == error->message);
        }
    }
}

namespace {
// docs/design/chimera-closed-form.md#the-closed-form: every op at its closed-form slot (F: stage + 2j + 2Du, B:
// 2D-1-stage + 2j + 2Du, j = position of m in its pipeline's block of unit
// u), each worker's ops sorted by slot; written from the formula, not from
// the generator.
std::vector<std::vector<op>> closed_form_lists(int d, int n, int k) {
    const int per = d / k;
    std::vector<std::vector<std::pair<int, op>>> slotted(static_cast<std::size_t>(d));
    for (int m = 0; m < n; ++m) {
        const int p = m % d / per, j = m % d - p * per, u = m / d;
        for (int st = 0; st < d; ++st) {
            const int w = chimera_worker(d, k, p, st);
            slotted[static_cast<std::size_t>(w)].push_back({st + 2 * j + 2 * d * u, forward(p, m, st)});
            slotted[static_cast<std::size_t>(w)].push_back({2 * d - 1 - st + 2 * j + 2 * d * u, backward(p, m, st)});
        }
    }
    std::vector<std::vector<op>> lists;
    for (auto& ops : slotted) {
        std::sort(ops.begin(), ops.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
        lists.emplace_back();
        for (const auto& [slot, o] : ops) lists.back().push_back(o);
    }
    return lists;
}

// docs/design/chimera-closed-form.md#forward-doubling: the phase table of forward doubling, full doubled units.
std::vector<std::vector<op>> doubling_form(int d, int n) {
    return phases(d, [&](int a, int b, int own, int other, auto f, auto bw) {
        for (int v = 0; v < n / (2 * d); ++v) {
            for (int r = 0; r < a; ++r) {
                if (v > 0) bw(own);
                f(own), f(own);
            }
            for (int r = 0; r < b; ++r) f(other), f(other), f(own), f(own);
            for (int r = 0; r < a; ++r) f(other), f(other), bw(other);
            for (int r = 0; r < b + d / 2; ++r) bw(own), bw(other);
        }
        for (int r = 0; r < a; ++r) bw(own);
    });
}
}  // namespace

TEST_CASE("generators equal independent oracles: closed form (k = 4), doubling table, pad and drop") {
    for (auto [d, k] : {std::pair{8, 4}, std::pair{8, 8}, std::pair{12, 4}, std::pair{4, 2}})
        for (int units = 1; units <= 3; ++units) {
            CAPTURE(d);
            CAPTURE(k);
            CHECK(test::lists_of(generate(chimera_config(d, units * d, k))) == closed_form_lists(d, units * d, k));
        }
    for (int d = 2; d <= 12; d += 2)
        for (int units = 1; units <= 3; ++units) {
            CAPTURE(d);
            const int n = 2 * d * units;
            CHECK(test::lists_of(generate(chimera_config(d, n, 2, scaling::doubling))) == doubling_form(d, n));
        }
    // Partial units: the full schedule above with the dropped micro-batches removed.
    for (auto c : {chimera_config(8, 13, 4), chimera_config(6, 30, 2, scaling::doubling)})
        CHECK(test::lists_of(generate(c)) == test::lists_of(pad_and_drop(c)));
}

TEST_CASE("data-parallel ranks and all-reduce groups, both layouts") {
    const schedule s = generate({.schedule = algorithm::chimera, .stages = 4, .micro_batches = 4, .data_parallel = 2});
    // Stage 1 lives on workers 1 (down) and 2 (up) of each group.
    CHECK(replica_ranks(s, 1, 2, rank_layout::group_major) == std::vector<int>{1, 2, 5, 6});
    CHECK(replica_ranks(s, 1, 2, rank_layout::stage_major) == std::vector<int>{2, 3, 4, 5});
    CHECK(global_rank(1, 3, 4, 2, rank_layout::group_major) == 7);
    CHECK(global_rank(1, 3, 4, 2, rank_layout::stage_major) == 7);
    CHECK(global_rank(0, 3, 4, 2, rank_layout::stage_major) == 6);
    // Every stage: 2f*W members, and one group per worker class.
    for (int k : {2, 4}) {
        const schedule t = generate({.schedule = algorithm::chimera, .stages = 8, .micro_batches = 8, .pipelines = k});
        for (int st = 0; st < 8; ++st) CHECK(replica_ranks(t, st, 3).size() == static_cast<std::size_t>(k * 3));
        for (int w = 0; w < 8; ++w) {
            const auto held = replicas_on(t, w);
            CHECK(held.size() == static_cast<std::size_t>(k));
            for (const auto& r : held) CHECK(replica_ranks(t, r.stage, 1) == replica_ranks(t, held[0].stage, 1));
        }
    }
    const schedule g = generate({.schedule = algorithm::gpipe, .stages = 4, .micro_batches = 4});
    CHECK(replica_ranks(g, 2, 3) == std::vector<int>{2, 6, 10});
}

TEST_CASE("the size rule names the chunk count when chunks multiply the stage chain") {
    const auto chunked = validate({.schedule = algorithm::interleaved, .stages = 4, .micro_batches = 8, .chunks = 1 << 20});
    REQUIRE(chunked.has_value());
    CHECK(chunked->rule == "S1");
    CHECK(chunked->message.find("D*v*N must be <= 16777216 (got D=4, v=1048576, N=8)") != std::string::npos);
    const auto plain = validate({.schedule = algorithm::gpipe, .stages = 1 << 13, .micro_batches = 1 << 12});
    REQUIRE(plain.has_value());
    CHECK(plain->message.find("D*N must be <= 16777216 (got D=8192, N=4096)") != std::string::npos);
}
