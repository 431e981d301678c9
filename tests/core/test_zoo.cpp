// The schedule zoo (docs/design/schedule-zoo.md#interleaved-1f1b-and-looped-bfs to #dualpipev, #summary, #reference-numbers-from-other-projects) and zero-bubble Chimera:
// every generator over a grid passes the checker and reproduces the spec's
// formulas; invalid parameters are refused with the rule; I/W mutations are
// caught.
#include <doctest/doctest.h>

#include <algorithm>
#include <numeric>
#include <string>
#include <vector>

#include <chimera/chimera.hpp>
#include <chimera/compare.hpp>

using namespace chimera;

namespace {

constexpr op_costs unit{1, 1, 1, 1};

int worst(const std::vector<int>& v) { return *std::max_element(v.begin(), v.end()); }

std::string refusal(const config& c) {
    auto e = validate(c);
    return e ? std::string(e->rule) + ": " + e->message : std::string();
}

config make(algorithm a, int d, int n, int chunks = 2) {
    config c{a, d, n};
    c.chunks = chunks;
    return c;
}

bool chunked(algorithm a) { return a == algorithm::interleaved || a == algorithm::looped_bfs; }

}  // namespace

TEST_CASE("every generator over a grid of valid parameters passes the checker") {
    int checked = 0;
    for (algorithm a : generated_algorithms)
        for (int d = 1; d <= 8; ++d)
            for (int n = 1; n <= 3 * d + 2; ++n)
                for (int v = 1; v <= (chunked(a) ? 3 : 1); ++v) {
                    const config c = make(a, d, n, chunked(a) ? v : 2);
                    if (validate(c)) continue;
                    const schedule s = generate(c);
                    const check_report r = check(s);
                    CAPTURE(to_string(a));
                    CAPTURE(d);
                    CAPTURE(n);
                    CAPTURE(v);
                    REQUIRE_MESSAGE(r.ok(), (r.ok() ? std::string() : r.diagnostics[0].message));
                    CHECK(s.name() == to_string(a));
                    CHECK(s.workers() == d);
                    CHECK(s.stages() == d * (a == algorithm::zb_v || a == algorithm::dualpipev ? 2 : chunked(a) ? v : 1));
                    ++checked;
                }
    CHECK(checked > 1000);
}

TEST_CASE("interleaved: warm-up, peak and Megatron's order invariants (docs/design/schedule-zoo.md#interleaved-1f1b-and-looped-bfs, #reference-numbers-from-other-projects)") {
    for (int p = 1; p <= 6; ++p)
        for (int n = 1; n <= 4 * p; ++n)
            for (int v = 1; v <= 3; ++v)
                for (int g = 0; g <= n; ++g) {
                    config c = make(algorithm::interleaved, p, n, v);
                    c.group_size = g;
                    if (validate(c)) continue;
                    const schedule s = generate(c);
                    REQUIRE(check(s).ok());
                    const int gs = interleaved_group_size(c);
                    for (int r = 0; r < p; ++r) {
                        const int warm_up = std::min(2 * (p - 1 - r) + (v - 1) * gs, n * v);
                        CHECK(peak_activations(s, r) == std::min(warm_up + 1, n * v));
                        // signed order list: length 2Nv, prefix sums >= 0, total 0, per chunk F = B
                        const auto list = s.ops(r);
                        REQUIRE(list.size() == static_cast<std::size_t>(2 * n * v));
                        int live = 0;
                        std::vector<int> per_chunk(static_cast<std::size_t>(v), 0);
                        for (const op& o : list) {
                            live += o.kind == op_kind::F ? 1 : -1;
                            CHECK(live >= 0);
                            per_chunk[static_cast<std::size_t>(o.stage / p)] += o.kind == op_kind::F ? 1 : -1;
                        }
                        CHECK(live == 0);
                        for (int x : per_chunk) CHECK(x == 0);
                    }
                }
}

TEST_CASE("interleaved: the group sequence of docs/design/schedule-zoo.md#interleaved-1f1b-and-looped-bfs's example") {
    // P = 2, N = 5, g = 3, v = 2: micro-batches 0 1 2 0 1 2 3 4 3 4, chunks 0 0 0 1 1 1 0 0 1 1
    const auto items = schedules::detail::interleaved_forward_sequence(5, 2, 3);
    const int mb[] = {0, 1, 2, 0, 1, 2, 3, 4, 3, 4}, ch[] = {0, 0, 0, 1, 1, 1, 0, 0, 1, 1};
    REQUIRE(items.size() == 10);
    for (int i = 0; i < 10; ++i) {
        CHECK(items[static_cast<std::size_t>(i)].micro_batch == mb[i]);
        CHECK(items[static_cast<std::size_t>(i)].chunk == ch[i]);
    }
}

TEST_CASE("looped BFS holds every chunk activation") {
    for (int p = 1; p <= 5; ++p)
        for (int n = 1; n <= 9; ++n)
            for (int v = 1; v <= 3; ++v) {
                const schedule s = generate(make(algorithm::looped_bfs, p, n, v));
                for (int r = 0; r < p; ++r) CHECK(peak_activations(s, r) == n * v);
            }
}

TEST_CASE("GEMS: one micro-batch per worker in flight, steady period 2D max + 2 min (docs/design/schedule-zoo.md#gems)") {
    for (int d = 1; d <= 8; ++d) {
        CHECK(worst(peak_activations(generate(make(algorithm::gems, d, 7)))) == 1);
        for (auto [tf, tb] : {std::pair{1.0, 2.0}, std::pair{1.0, 1.0}, std::pair{2.0, 1.0}}) {
            const op_costs costs{tf, tb, 1, 1};
            const double a = asap(generate(make(algorithm::gems, d, 20)), costs).makespan;
            const double b = asap(generate(make(algorithm::gems, d, 22)), costs).makespan;
            CHECK(b - a == doctest::Approx(2 * d * std::max(tf, tb) + 2 * std::min(tf, tb)));
        }
    }
}

TEST_CASE("ZB-H1: makespan 3N + P - 1, idle P - 1 and peak P on every worker (docs/design/schedule-zoo.md#zb-h1)") {
    for (int p = 1; p <= 8; ++p)
        for (int n = p; n <= 3 * p + 1; ++n) {
            const schedule s = generate(make(algorithm::zb_h1, p, n));
            const timing t = asap(s, unit);
            CHECK(t.makespan == 3 * n + p - 1);
            for (int r = 0; r < p; ++r) {
                CHECK(t.workers[static_cast<std::size_t>(r)].idle == p - 1);
                CHECK(peak_activations(s, r) == p);
            }
            // idle (P-1)(t_F + t_I - t_W) for t_W <= t_F, t_I
            const timing t2 = asap(s, {2, 1, 2, 1});
            for (int r = 0; r < p; ++r) CHECK(t2.workers[static_cast<std::size_t>(r)].idle == (p - 1) * (2 + 2 - 1));
        }
}

TEST_CASE("ZB-H2: worker r busy without a gap from r to 3N + r - 1, peak 2P - 1 (docs/design/schedule-zoo.md#zb-h2)") {
    for (int p = 1; p <= 8; ++p)
        for (int n = 2 * p - 1; n <= 4 * p; ++n) {
            const schedule s = generate(make(algorithm::zb_h2, p, n));
            const timing t = asap(s, unit);
            for (int r = 0; r < p; ++r) {
                const auto& w = t.workers[static_cast<std::size_t>(r)];
                CHECK(w.first_start == r);
                CHECK(w.last_finish == 3 * n + r);
                CHECK(w.busy == 3 * n);
            }
            CHECK(peak_activations(s, 0) == 2 * p - 1);
        }
}

TEST_CASE("ZB-V: makespan 6N + P - 1, idle P - 1, 1F1B memory (docs/design/schedule-zoo.md#zb-v)") {
    for (int p = 1; p <= 8; ++p)
        for (int n = 2 * p; n <= 4 * p; ++n) {
            const schedule s = generate(make(algorithm::zb_v, p, n));
            const timing t = asap(s, unit);
            CHECK(t.makespan == 6 * n + p - 1);
            for (const auto& w : t.workers) CHECK(w.idle == p - 1);
            // 2P chunk activations of half a stage each: P stage activations, as 1F1B's worker 0
            CHECK(worst(peak_activations(s)) == 2 * p);
        }
}

TEST_CASE("DualPipe: N/2 forwards per direction, PP + 1 activations (docs/design/schedule-zoo.md#dualpipe, #reference-numbers-from-other-projects)") {
    for (int p = 2; p <= 12; p += 2)
        for (int n = 2 * p; n <= 4 * p; n += 2) {
            const schedule s = generate(make(algorithm::dualpipe, p, n));
            for (int r = 0; r < p; ++r) {
                int forwards[2] = {0, 0};
                for (const op& o : s.ops(r))
                    if (o.kind == op_kind::F) ++forwards[o.pipeline];
                CHECK(forwards[0] == n / 2);
                CHECK(forwards[1] == n / 2);
            }
            CHECK(worst(peak_activations(s)) == p + 1);
            // with F and B of a pair run one after the other: span 3N + P/2 - 1 at t_F = t_I = t_W = 1
            CHECK(asap(s, {1, 2, 1, 1}).makespan == 3 * n + p / 2 - 1);
            for (int m = 0; m < n; ++m) CHECK(s.pipeline_of(m) == (m < n / 2 ? 0 : 1));
        }
}

TEST_CASE("DualPipeV: N forwards per chunk, 2P + 1 chunk activations, PyTorch's golden row (docs/design/schedule-zoo.md#dualpipev, #reference-numbers-from-other-projects)") {
    for (int p = 1; p <= 8; ++p)
        for (int n = 2 * p; n <= 4 * p; ++n) {
            const schedule s = generate(make(algorithm::dualpipev, p, n));
            for (int r = 0; r < p; ++r) {
                int forwards[2] = {0, 0};
                for (const op& o : s.ops(r))
                    if (o.kind == op_kind::F) ++forwards[o.stage == r ? 0 : 1];
                CHECK(forwards[0] == n);
                CHECK(forwards[1] == n);
            }
            CHECK(worst(peak_activations(s)) == 2 * p + 1);
            CHECK(asap(s, {1, 2, 1, 1}).makespan == 6 * n + p - 1);
        }
    // dualpipev_4rank_10mb.csv, rank 0 (stages 0 and 7): starts 0F0, holds (0F7;7B3) and (7F4;0B0), ends 0I9,0W9
    const schedule s = generate(make(algorithm::dualpipev, 4, 10));
    const auto row = s.ops(0);
    CHECK(row.front() == forward(0, 0, 0));
    CHECK(row[row.size() - 2] == input_gradient(0, 9, 0));
    CHECK(row.back() == weight_gradient(0, 9, 0));
    auto pair_at = [&](const op& first, const op& second) {
        for (std::size_t i = 0; i + 1 < row.size(); ++i)
            if (row[i] == first && row[i + 1] == second) return true;
        return false;
    };
    CHECK(pair_at(forward(0, 7, 0), backward(0, 3, 7)));
    CHECK(pair_at(forward(0, 4, 7), backward(0, 0, 0)));
}

TEST_CASE("zero-bubble Chimera: valid for every k and scaling mode, never more memory than Chimera") {
    int checked = 0;
    for (int d = 2; d <= 12; d += 2)
        for (int n = 1; n <= 3 * d + 1; ++n)
            for (int k = 2; k <= d; k += 2)
                for (auto mode : {scaling::direct, scaling::doubling, scaling::halving}) {
                    config c{algorithm::chimera, d, n, k, mode};
                    c.split_backward = true;
                    if (validate(c)) continue;
                    config b = c;
                    b.split_backward = false;
                    const schedule s = generate(c), base = generate(b);
                    REQUIRE(check(s).ok());
                    for (const op& o : s.all_ops()) CHECK(o.kind != op_kind::B);
                    const auto ps = peak_activations(s), pb = peak_activations(base);
                    for (int w = 0; w < d; ++w) CHECK(ps[static_cast<std::size_t>(w)] <= pb[static_cast<std::size_t>(w)]);
                    ++checked;
                }
    CHECK(checked > 300);
}

TEST_CASE("zero-bubble Chimera: span 3N + D/2 - 1 at unit costs, ratio and memory at most DualPipe's") {
    for (int d = 2; d <= 16; d += 2)
        for (int units = 1; units <= 4; ++units) {
            const int n = units * d;
            config c{algorithm::chimera, d, n};
            c.split_backward = true;
            const schedule s = generate(c);
            const timing t = asap(s, unit);
            CHECK(t.makespan == 3 * n + d / 2 - 1);
            if (n < 2 * d) continue;
            const schedule dp = generate(make(algorithm::dualpipe, d, n));
            const op_costs split{1, 2, 1, 1};
            CHECK(asap(s, split).bubble_ratio() <= asap(dp, split).bubble_ratio() + 1e-12);
            CHECK(worst(peak_activations(s)) <= worst(peak_activations(dp)));
        }
}

TEST_CASE("I/W mutations are caught: W before its I (D2), W on another worker (S2)") {
    const schedule good = generate(make(algorithm::zb_h1, 4, 6));
    REQUIRE(check(good).ok());
    auto rebuild = [&](auto&& edit) {
        std::vector<std::vector<op>> lists;
        for (int w = 0; w < good.workers(); ++w) lists.emplace_back(good.ops(w).begin(), good.ops(w).end());
        edit(lists);
        return with_ops(good, lists);
    };
    const schedule early = rebuild([](auto& lists) {
        auto& l = lists[1];
        auto w = std::find(l.begin(), l.end(), weight_gradient(0, 2, 1));
        auto i = std::find(l.begin(), l.end(), input_gradient(0, 2, 1));
        REQUIRE(w != l.end());
        REQUIRE(i < w);
        const op moved = *w;
        l.erase(w);
        l.insert(i, moved);
    });
    CHECK(check(early).has("D2"));
    const schedule elsewhere = rebuild([](auto& lists) {
        auto& l = lists[1];
        auto w = std::find(l.begin(), l.end(), weight_gradient(0, 2, 1));
        l.erase(w);
        lists[2].push_back(weight_gradient(0, 2, 1));
    });
    CHECK(check(elsewhere).has("S2"));
    const schedule missing = rebuild([](auto& lists) {
        auto& l = lists[3];
        l.erase(std::find(l.begin(), l.end(), weight_gradient(0, 5, 3)));
    });
    CHECK(check(missing).has("S5"));
}

TEST_CASE("invalid parameters are refused with the rule and the values") {
    CHECK(refusal(make(algorithm::dualpipe, 3, 8)).find("must be even (got 3)") != std::string::npos);
    CHECK(refusal(make(algorithm::dualpipe, 4, 9)).find("N must be even") != std::string::npos);
    CHECK(refusal(make(algorithm::dualpipe, 4, 6)).find("N >= 2P") != std::string::npos);
    CHECK(refusal(make(algorithm::dualpipev, 4, 7)).find("N >= 2P") != std::string::npos);
    CHECK(refusal(make(algorithm::dualpipev, 4, 8)).empty());
    CHECK(refusal(make(algorithm::interleaved, 4, 9)).find("PyTorch's rule") != std::string::npos);
    config g = make(algorithm::interleaved, 4, 10);
    g.group_size = 3;
    CHECK(refusal(g).find("Megatron's group rule") != std::string::npos);
    g.group_size = 6;  // 10 mod 6 = 4 >= P
    CHECK(refusal(g).empty());
    g.group_size = 4;  // 10 mod 4 = 2 < P
    CHECK(refusal(g).find("N mod g=2") != std::string::npos);
    CHECK(refusal(make(algorithm::interleaved, 4, 8, 0)).find("chunks per worker") != std::string::npos);
    CHECK(refusal(make(algorithm::gpipe, 4, 8, 3)).find("chunks apply to") != std::string::npos);
    CHECK(refusal(make(algorithm::zb_v, 4, 8, 3)).find("exactly 2") != std::string::npos);
    config split = make(algorithm::one_f_one_b, 4, 8);
    split.split_backward = true;
    CHECK(refusal(split).find("split backward") != std::string::npos);
    config gems = make(algorithm::gems, 4, 8);
    gems.pipelines = 4;
    CHECK(refusal(gems).find("exactly two pipelines") != std::string::npos);
    config scaled = make(algorithm::zb_h1, 4, 8);
    scaled.scaling_mode = scaling::doubling;
    CHECK(refusal(scaled).find("exists only for chimera") != std::string::npos);
    for (algorithm a : generated_algorithms) CHECK(refusal(make(a, 4, 0)).rfind("S1: ", 0) == 0);
    CHECK_THROWS_AS(generate(make(algorithm::dualpipe, 4, 6)), schedule_error);
    CHECK(parse_algorithm("looped-bfs") == algorithm::looped_bfs);
    CHECK(parse_algorithm("dualpipev") == algorithm::dualpipev);
    CHECK(!parse_algorithm("zb_h1"));
}

TEST_CASE("compile-time generation of the zoo") {
    constexpr auto zb = make_fixed<config{algorithm::zb_v, 4, 8}>();
#if defined(__clang__)
    // clang 14 rejects libstdc++'s constexpr std::vector<bool> (used by asap): check at run time there
    CHECK(check(zb).ok());
#else
    static_assert(check(zb).ok());
#endif
    constexpr auto dp = make_fixed<config{algorithm::dualpipe, 4, 8}>();
    static_assert(dp.workers() == 4 && dp.pipelines() == 2);
    CHECK(to_dynamic(dp) == generate(config{algorithm::dualpipe, 4, 8}));
}

TEST_CASE("compare: every schedule that accepts (D, N), refusals listed") {
    const auto rows = compare_all(4, 8, {1, 2, 1, 1});
    // One row per schedule, Chimera one per setting: k=2 and k=4 direct, k=2
    // doubling, split backward with k=2 and k=4.
    CHECK(rows.size() == std::size(generated_algorithms) + 4);
    for (const auto& r : rows) {
        CAPTURE(r.label);
        CHECK(r.accepted);
        CHECK(r.span > 0);
        const bool two = r.params.schedule == algorithm::chimera || r.params.schedule == algorithm::gems ||
                         r.params.schedule == algorithm::dualpipe;
        CHECK(r.weight_replicas == (r.label.find("k=4") != std::string::npos ? 4 : two ? 2 : 1));
    }
    const auto few = compare_all(4, 4, {1, 2, 1, 1});
    for (const auto& r : few)
        CHECK(r.accepted == !(r.params.schedule == algorithm::dualpipe || r.params.schedule == algorithm::dualpipev));
}

TEST_CASE("compare: rows carry the settings their labels name and the library's analysis of them") {
    const op_costs costs{1, 2, 1, 1};
    const auto rows = compare_all(8, 16, costs);
    int chimera_rows = 0;
    for (const auto& r : rows) {
        CAPTURE(r.label);
        REQUIRE(r.accepted);
        const bool chimera = r.params.schedule == algorithm::chimera;
        chimera_rows += chimera;
        CHECK(r.label.starts_with(to_string(r.params.schedule)));
        CHECK(r.n_constraint == entry_of(r.params).n_constraint);
        if (chimera) {
            CHECK(pipeline_count(r.params) == (r.label.find("k=4") != std::string::npos ? 4 : 2));
            CHECK((r.params.scaling_mode == scaling::doubling) == (r.label.find("doubling") != std::string::npos));
            CHECK(r.params.split_backward == (r.label.find("--split-backward") != std::string::npos));
        }
        const schedule s = generate(r.params);
        const timing t = asap(s, scaled_costs(r.params, costs));
        CHECK(r.span == t.makespan);
        CHECK(r.bubble_ratio == doctest::Approx(t.bubble_ratio()));
        CHECK(r.weight_replicas == s.pipelines());
    }
    CHECK(chimera_rows == 5);
    // Chimera k=4 at unit costs: span 2N + D/f - 2 (docs/design/chimera-closed-form.md#the-closed-form).
    const auto unit = compare_all(8, 16, {1, 1, 1, 1});
    const auto k4 = std::find_if(unit.begin(), unit.end(), [](const auto& r) { return r.label == "chimera k=4 direct"; });
    REQUIRE(k4 != unit.end());
    CHECK(k4->span == 2 * 16 + 8 / 2 - 2);
    CHECK(k4->weight_replicas == 4);
}
