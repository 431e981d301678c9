// Unit-time and ASAP numbers against every formula of docs/design/chimera-closed-form.md and
// docs/design/schedule-zoo.md#gpipe to #1f1b, over wide parameter grids.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>

#include "helpers.hpp"

using namespace chimera;

namespace {
config chimera_config(int d, int n, int k = 2, scaling mode = scaling::direct) {
    return {.schedule = algorithm::chimera, .stages = d, .micro_batches = n, .pipelines = k, .scaling_mode = mode};
}
constexpr op_costs unit{1, 1, 1, 1};
constexpr op_costs backward_twice{1, 2, 1, 1};

// Every N in [1, 4D] for small D; for large D the edges and every multiple
// of D and 2D (where the closed forms apply).
std::vector<int> micro_batch_grid(int d) {
    std::vector<int> grid;
    for (int n = 1; n <= 4 * d; ++n)
        if (d <= 8 || n <= 3 || n % d == 0 || n % d == 1 || n % d == d - 1 || n % d == d / 2) grid.push_back(n);
    return grid;
}
}  // namespace

TEST_CASE("expected numbers of docs/design/chimera-closed-form.md#expected-numbers") {
    struct row {
        int d, n, span, idle;
        double ratio;
        int makespan_1_2;
        std::vector<int> peaks;
    };
    const row rows[] = {
        {2, 2, 4, 0, 0.0, 6, {2, 2}},
        {4, 4, 10, 2, 0.2, 16, {3, 4, 4, 3}},
        {4, 8, 18, 2, 0.1111, 30, {3, 4, 4, 3}},
        {6, 6, 16, 4, 0.25, 26, {4, 5, 6, 6, 5, 4}},
        {8, 8, 22, 6, 0.2727, 36, {5, 6, 7, 8, 8, 7, 6, 5}},
    };
    for (const auto& r : rows) {
        CAPTURE(r.d);
        CAPTURE(r.n);
        const schedule s = generate(chimera_config(r.d, r.n));
        const timing t = asap(s, unit);
        CHECK(t.complete);
        CHECK(t.makespan == r.span);
        for (const auto& w : t.workers) CHECK(w.idle == r.idle);
        CHECK(t.bubble_ratio() == doctest::Approx(r.ratio).epsilon(1e-3));
        CHECK(asap(s, backward_twice).makespan == r.makespan_1_2);
        CHECK(peak_activations(s) == r.peaks);
    }
}

TEST_CASE("ASAP with t_F = 1, t_B = 2 on D=4, N=4 reproduces the second table of docs/design/chimera-closed-form.md#worked-example-four-stages-four-micro-batches") {
    const schedule s = generate(chimera_config(4, 4));
    const timing t = asap(s, backward_twice);
    // Start times per worker in list order, read off the table.
    const std::vector<std::vector<double>> starts = {
        {0, 1, 3, 4, 6, 7, 10, 14},
        {1, 2, 3, 4, 6, 8, 10, 12},
        {1, 2, 3, 4, 6, 8, 10, 12},
        {0, 1, 3, 4, 6, 7, 10, 14},
    };
    for (int w = 0; w < 4; ++w) {
        std::vector<double> got;
        for (std::size_t i = 0; i < s.ops(w).size(); ++i) got.push_back(t.start[s.first_op_index(w) + i]);
        CHECK(got == starts[static_cast<std::size_t>(w)]);
        CHECK(t.workers[static_cast<std::size_t>(w)].idle == 4);
    }
    CHECK(t.makespan == 16);
}

TEST_CASE("property sweep: chimera, every even D <= 32, f | D/2, N <= 4D, every mode") {
    int configs = 0;
    for (int d = 2; d <= 32; d += 2)
        for (int k = 2; k <= d; k += 2) {
            if ((d / 2) % (k / 2)) continue;
            const int f = k / 2;
            for (auto mode : {scaling::direct, scaling::doubling, scaling::halving}) {
                if (mode != scaling::direct && k != 2) continue;
                // Every N up to 4D for small D; the interesting N for large D.
                for (int n : micro_batch_grid(d)) {
                    CAPTURE(d);
                    CAPTURE(k);
                    CAPTURE(n);
                    CAPTURE(to_string(mode));
                    ++configs;
                    const schedule s = generate(chimera_config(d, n, k, mode));
                    const auto report = check(s);
                    REQUIRE_MESSAGE(report.ok(), test::rules_of(report));
                    const int emitted = s.micro_batches();
                    for (int w = 0; w < d; ++w) CHECK(s.ops(w).size() <= static_cast<std::size_t>(2 * emitted));
                    const timing t = asap(s, unit);
                    const std::vector<int> peaks = peak_activations(s);
                    if (mode == scaling::direct && n % d == 0) {
                        const int units = n / d;
                        // T3 and Table 3: span, idle, bubble ratio.
                        CHECK(t.makespan == 2 * n + d / f - 2);
                        for (const auto& w : t.workers) CHECK(w.idle == d / f - 2);
                        CHECK(t.bubble_ratio() ==
                              doctest::Approx(double(d - 2 * f) / (2 * f * n + d - 2 * f)));
                        // M1 / M3.
                        if (f == 1)
                            for (int w = 0; w < d; ++w)
                                CHECK(peaks[static_cast<std::size_t>(w)] == d / 2 + 1 + std::min(w, d - 1 - w));
                        CHECK(*std::max_element(peaks.begin(), peaks.end()) == d);
                        CHECK(*std::min_element(peaks.begin(), peaks.end()) == d - d / (2 * f) + 1);
                        // docs/design/chimera-closed-form.md#direct-concatenation and #iteration-time:
                        // makespan = C_f t_F + C_b t_B for t_B >= 2 t_F (f = 1).
                        if (f == 1) {
                            const int c_f = d + 2 * (units - 1), c_b = units * (2 * d - 2);
                            for (double tb : {2.0, 3.0, 5.0})
                                CHECK(asap(s, {1, tb, 1, 1}).makespan == doctest::Approx(c_f + c_b * tb));
                            // Intermediate bubbles: idle (U + 1)(D - 2) at t_B = 2 t_F.
                            for (const auto& w : asap(s, backward_twice).workers)
                                CHECK(w.idle == doctest::Approx((units + 1) * (d - 2)));
                        }
                    }
                    if (mode != scaling::direct && emitted % (2 * d) == 0) {
                        // M2 and docs/design/chimera-closed-form.md#forward-doubling: (N + D/2 - 1)(t_F +
                        // t_B) when t_B <= 2 t_F.
                        for (int w = 0; w < d; ++w)
                            CHECK(peaks[static_cast<std::size_t>(w)] == d + d / 2 + 1 + std::min(w, d - 1 - w));
                        for (double tb : {1.0, 1.5, 2.0}) {
                            const timing td = asap(s, {1, tb, 1, 1});
                            CHECK(td.makespan == doctest::Approx((emitted + d / 2 - 1) * (1 + tb)));
                            for (const auto& w : td.workers) CHECK(w.idle == doctest::Approx((d / 2 - 1) * (1 + tb)));
                        }
                    }
                }
            }
        }
    CHECK(configs > 1000);
}

TEST_CASE("property sweep: gpipe and 1f1b, D <= 32, N <= 4D (docs/design/schedule-zoo.md#gpipe, #1f1b)") {
    for (auto a : {algorithm::gpipe, algorithm::one_f_one_b})
        for (int d = 1; d <= 32; ++d)
            for (int n : micro_batch_grid(d)) {
                CAPTURE(to_string(a));
                CAPTURE(d);
                CAPTURE(n);
                const schedule s = generate({.schedule = a, .stages = d, .micro_batches = n});
                const auto report = check(s);
                REQUIRE_MESSAGE(report.ok(), test::rules_of(report));
                for (const op_costs& c : {unit, backward_twice}) {
                    const timing t = asap(s, c);
                    CHECK(t.makespan == (n + d - 1) * (c.forward + c.backward));
                    for (const auto& w : t.workers) CHECK(w.idle == (d - 1) * (c.forward + c.backward));
                    CHECK(t.bubble_ratio() == doctest::Approx(double(d - 1) / (n + d - 1)));
                }
                const auto peaks = peak_activations(s);
                for (int w = 0; w < d; ++w)
                    CHECK(peaks[static_cast<std::size_t>(w)] ==
                          (a == algorithm::gpipe ? n : std::min(d - w, n)));
            }
}

TEST_CASE("chimera halves the idle slots of GPipe/1F1B at N = D: D - 2 against 2(D - 1)") {
    for (int d = 2; d <= 32; d += 2) {
        const double chimera_idle = asap(generate(chimera_config(d, d)), unit).workers[0].idle;
        const double gpipe_idle = asap(generate({.schedule = algorithm::gpipe, .stages = d, .micro_batches = d}), unit).workers[0].idle;
        CHECK(chimera_idle == d - 2);
        CHECK(gpipe_idle == 2 * (d - 1));
    }
}

TEST_CASE("T4: f = 1 worker w idles m = min(w, D-1-w) leading and trailing slots, D - 2 - 2m inside") {
    for (int d = 2; d <= 16; d += 2) {
        const schedule s = generate(chimera_config(d, 2 * d));
        const int span = 2 * 2 * d + d - 2;
        for (int w = 0; w < d; ++w) {
            const int m = std::min(w, d - 1 - w);
            const auto list = s.ops(w);
            CHECK(schedules::chimera_slot(s, list.front()) == m);
            CHECK(span - 1 - schedules::chimera_slot(s, list.back()) == m);
            int inside = 0;
            for (std::size_t i = 1; i < list.size(); ++i)
                inside += schedules::chimera_slot(s, list[i]) - schedules::chimera_slot(s, list[i - 1]) - 1;
            CHECK(inside == d - 2 - 2 * m);
        }
    }
}

TEST_CASE("T5: replicas of a stage finish together; the last B slot decreases with the stage") {
    for (int d = 2; d <= 16; d += 2)
        for (int k = 2; k <= d; k += 2) {
            if ((d / 2) % (k / 2)) continue;
            const schedule s = generate(chimera_config(d, 3 * d, k));
            std::vector<int> last(static_cast<std::size_t>(k * d), -1);
            for (const op& o : s.all_ops())
                if (o.kind == op_kind::B) {
                    int& l = last[static_cast<std::size_t>(o.pipeline * d + o.stage)];
                    l = std::max(l, schedules::chimera_slot(s, o));
                }
            for (int st = 0; st < d; ++st) {
                for (int p = 1; p < k; ++p) CHECK(last[static_cast<std::size_t>(p * d + st)] == last[static_cast<std::size_t>(st)]);
                if (k == 2) CHECK(last[static_cast<std::size_t>(st)] == 2 * d * 2 + 3 * d - 3 - st);
                if (st > 0) CHECK(last[static_cast<std::size_t>(st)] < last[static_cast<std::size_t>(st - 1)]);
            }
        }
}

TEST_CASE("unit slots: closed form for Chimera direct, ASAP otherwise; both give the same span") {
    for (int d = 2; d <= 12; d += 2)
        for (int n : {d, 2 * d, 3 * d}) {
            const schedule s = generate(chimera_config(d, n));
            const unit_slots u = make_unit_slots(s);
            CHECK(u.complete);
            CHECK(u.span == asap(s).makespan);
            // Per worker the slots strictly increase (T1).
            for (int w = 0; w < d; ++w)
                for (std::size_t i = 1; i < s.ops(w).size(); ++i)
                    CHECK(u.slot[s.first_op_index(w) + i] > u.slot[s.first_op_index(w) + i - 1]);
        }
    const schedule g = generate({.schedule = algorithm::one_f_one_b, .stages = 4, .micro_batches = 6});
    const unit_slots u = make_unit_slots(g);
    const timing t = asap(g);
    for (std::size_t i = 0; i < g.op_count(); ++i) CHECK(u.slot[i] == t.start[i]);
}
