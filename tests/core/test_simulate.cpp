// The cost-model simulator against the spec's unit-time formulas
// (docs/design/chimera-closed-form.md#the-closed-form, #more-micro-batches-than-stages, #analytical-model,
// docs/design/schedule-rules.md, docs/design/chimera-closed-form.md#expected-numbers;
// docs/design/schedule-zoo.md#gpipe, #1f1b), hand-checked timelines with unequal costs and communication, and
// memory (Tables 2, 3).
#include <doctest/doctest.h>

#include <algorithm>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include <chimera/generate.hpp>
#include <chimera/lower.hpp>
#include <chimera/simulate.hpp>

using namespace chimera;

namespace {

std::vector<double> busy(const simulation& r) {
    std::vector<double> out;
    for (const auto& w : r.workers) out.push_back(w.busy);
    return out;
}

// Position of the first op matching kind/micro-batch/stage on a worker.
std::size_t position(const schedule& s, int worker, op_kind kind, int micro_batch, int stage) {
    const auto list = s.ops(worker);
    for (std::size_t i = 0; i < list.size(); ++i)
        if (list[i].kind == kind && list[i].micro_batch == micro_batch && list[i].stage == stage)
            return s.first_op_index(worker) + i;
    FAIL("op not found");
    return 0;
}

cost_model memory_costs(bool recompute = false) {
    cost_model m;
    m.uniform.parameter_bytes = 1;  // M_theta
    m.uniform.optimizer_bytes = 2;
    m.uniform.activation_bytes = 1;  // M_a
    m.uniform.recompute_bytes = 0.25;
    m.recompute = recompute;
    return m;
}

}  // namespace

TEST_CASE("docs/design/chimera-closed-form.md#expected-numbers oracle table: span, makespan at t_B = 2 t_F, peaks") {
    struct row {
        int d, n, span, makespan;
        std::vector<int> peaks;
    };
    const std::vector<row> table = {{2, 2, 4, 6, {2, 2}},
                                    {4, 4, 10, 16, {3, 4, 4, 3}},
                                    {4, 8, 18, 30, {3, 4, 4, 3}},
                                    {6, 6, 16, 26, {4, 5, 6, 6, 5, 4}},
                                    {8, 8, 22, 36, {5, 6, 7, 8, 8, 7, 6, 5}}};
    for (const row& r : table) {
        INFO("D=", r.d, " N=", r.n);
        const schedule s = generate({algorithm::chimera, r.d, r.n});
        for (const schedule& form : {s, lower(s), lower(s, {.sync = sync_policy::eager})}) {
            const simulation unit = simulate(form);
            REQUIRE(unit.complete);
            CHECK(unit.makespan == r.span);
            for (const auto& w : unit.workers) CHECK(w.idle == r.d - 2);
            CHECK(unit.bubble_ratio() == doctest::Approx(double(r.d - 2) / (2 * r.n + r.d - 2)));
            CHECK(simulate(form, unit_costs(1, 2)).makespan == r.makespan);
            std::vector<int> peaks;
            for (const auto& w : unit.workers) peaks.push_back(w.peak_activations);
            CHECK(peaks == r.peaks);
        }
    }
}

TEST_CASE("the docs/design/chimera-closed-form.md#worked-example-four-stages-four-micro-batches ASAP table with t_F = 1, t_B = 2: makespan 16, idle 4 per worker") {
    const simulation r = simulate(generate({algorithm::chimera, 4, 4}), unit_costs(1, 2));
    CHECK(r.makespan == 16);
    for (const auto& w : r.workers) CHECK(w.idle == 4);
    // P0 runs B0 at 10-12 and B1 at 14-16 in the spec's table.
    const schedule s = generate({algorithm::chimera, 4, 4});
    CHECK(r.start[position(s, 0, op_kind::B, 0, 0)] == 10);
    CHECK(r.start[position(s, 0, op_kind::B, 1, 0)] == 14);
    CHECK(r.start[position(s, 3, op_kind::F, 1, 3)] == 6);
}

TEST_CASE("Chimera with 2f pipelines (T3, Table 3): span 2N + D/f - 2, bubble (D-2f)/(2fN+D-2f)") {
    for (int d : {4, 8, 12, 16})
        for (int k : {2, 4, 8})
            for (int units : {1, 2, 3}) {
                const config c{algorithm::chimera, d, d * units, k};
                if (validate(c)) continue;
                INFO("D=", d, " k=", k, " N=", c.micro_batches);
                const int f = k / 2, n = c.micro_batches;
                const schedule s = generate(c);
                const simulation r = simulate(lower(s));
                CHECK(r.makespan == 2 * n + d / f - 2);
                CHECK(r.bubble_ratio() == doctest::Approx(double(d - 2 * f) / (2 * f * n + d - 2 * f)));
                // Table 3 memory: 2f M_theta weights; activations within [D - D/(2f) + 1, D] M_a.
                const simulation m = simulate(s, memory_costs());
                double lo = 1e9, hi = 0;
                for (const auto& w : m.workers) {
                    CHECK(w.weight_bytes == 2 * f);
                    CHECK(w.optimizer_bytes == 4 * f);
                    lo = std::min(lo, w.peak_activation_bytes), hi = std::max(hi, w.peak_activation_bytes);
                }
                CHECK(lo == d - d / (2 * f) + 1);
                CHECK(hi == d);
            }
}

TEST_CASE("C_f and C_b (docs/design/chimera-closed-form.md#direct-concatenation, #iteration-time): D + 2(U-1) and U(2D-2); GPipe N + D - 1 each") {
    for (int d : {2, 4, 6, 8})
        for (int units : {1, 2, 3}) {
            INFO("D=", d, " U=", units);
            const critical_path c = critical_path_counts(generate({algorithm::chimera, d, d * units}));
            CHECK(c.forward == d + 2 * (units - 1));
            CHECK(c.backward == units * (2 * d - 2));
            CHECK(c.linear);
        }
    for (int d : {1, 3, 4})
        for (int n : {1, 4, 9}) {
            for (auto a : {algorithm::gpipe, algorithm::one_f_one_b}) {
                const critical_path c = critical_path_counts(generate({a, d, n}));
                CHECK(c.forward == n + d - 1);
                CHECK(c.backward == n + d - 1);
            }
        }
}

TEST_CASE("GPipe and 1F1B: makespan (N + D - 1)(t_F + t_B) for unequal costs, Table 2 memory") {
    for (int d : {1, 2, 4, 7})
        for (int n : {1, 3, 8, 16})
            for (auto a : {algorithm::gpipe, algorithm::one_f_one_b}) {
                INFO(to_string(a), " D=", d, " N=", n);
                const schedule s = generate({a, d, n});
                CHECK(simulate(s, unit_costs(1.5, 2.25)).makespan == doctest::Approx((n + d - 1) * 3.75));
                CHECK(simulate(lower(s), unit_costs(1.5, 2.25)).makespan == doctest::Approx((n + d - 1) * 3.75));
                CHECK(simulate(s).bubble_ratio() == doctest::Approx(double(d - 1) / (n + d - 1)));
                const simulation m = simulate(s, memory_costs());
                for (int w = 0; w < d; ++w) {
                    CHECK(m.workers[static_cast<std::size_t>(w)].weight_bytes == 1);
                    // GPipe keeps N micro-batches; 1F1B min(D - w, N) (docs/design/schedule-zoo.md#1f1b).
                    const double expected = a == algorithm::gpipe ? n : std::min(d - w, n);
                    CHECK(m.workers[static_cast<std::size_t>(w)].peak_activation_bytes == expected);
                }
            }
}

TEST_CASE("forward doubling (docs/design/chimera-closed-form.md#forward-doubling): (N + D/2 - 1)(t_F + t_B) when t_B <= 2 t_F; M2 peaks") {
    for (int d : {4, 8})
        for (int n : {2 * d, 4 * d}) {
            INFO("D=", d, " N=", n);
            const schedule s = generate({algorithm::chimera, d, n, 2, scaling::doubling});
            CHECK(simulate(s, unit_costs(1, 2)).makespan == (n + d / 2 - 1) * 3);
            CHECK(simulate(s, unit_costs(1, 1)).makespan == (n + d / 2 - 1) * 2);
            // The lowered order follows unit-time slots; with t_B = 2 t_F one
            // comm stream per worker can queue a message behind another
            // (D=8, N=32: 109 instead of 105), never gain.
            const double lowered = simulate(lower(s), unit_costs(1, 2)).makespan;
            CHECK(lowered >= (n + d / 2 - 1) * 3);
            CHECK(lowered <= (n + d / 2 - 1) * 3 * 1.05);
            const simulation r = simulate(s);
            for (int w = 0; w < d; ++w)
                CHECK(r.workers[static_cast<std::size_t>(w)].peak_activations == d + d / 2 + 1 + std::min(w, d - 1 - w));
        }
}

TEST_CASE("direct mode with t_B = 2 t_F: idle (U + 1)(D - 2) per worker, growing with N (docs/design/chimera-closed-form.md#direct-concatenation)") {
    for (int d : {4, 6, 8})
        for (int units : {1, 2, 4}) {
            const simulation r = simulate(generate({algorithm::chimera, d, d * units}), unit_costs(1, 2));
            for (const auto& w : r.workers) CHECK(w.idle == (units + 1) * (d - 2));
        }
}

TEST_CASE("hand-checked timeline: GPipe D=2 N=2 lowered, t_F = 1, t_B = 2, p2p alpha = 0.5") {
    const schedule s = lower(generate({algorithm::gpipe, 2, 2}));
    cost_model costs = unit_costs(1, 2);
    costs.alpha = 0.5;
    const simulation r = simulate(s, costs);
    REQUIRE(r.complete);
    auto at = [&](int w, op_kind kind, int m, int stage) {
        const std::size_t i = position(s, w, kind, m, stage);
        return std::pair{r.start[i], r.finish[i]};
    };
    using times = std::pair<double, double>;
    CHECK(at(0, op_kind::F, 0, 0) == times{0, 1});
    CHECK(at(0, op_kind::SEND_F, 0, 0) == times{1, 1.5});
    CHECK(at(1, op_kind::RECV_F, 0, 1) == times{1, 1.5});
    CHECK(at(1, op_kind::F, 0, 1) == times{1.5, 2.5});
    CHECK(at(0, op_kind::F, 1, 0) == times{1, 2});  // the send overlaps the next forward
    CHECK(at(1, op_kind::RECV_F, 1, 1) == times{2, 2.5});  // posted early, starts once F1 exists
    CHECK(at(1, op_kind::F, 1, 1) == times{2.5, 3.5});
    CHECK(at(1, op_kind::B, 0, 1) == times{3.5, 5.5});
    CHECK(at(1, op_kind::SEND_B, 0, 1) == times{5.5, 6});
    CHECK(at(0, op_kind::RECV_B, 0, 0) == times{5.5, 6});
    CHECK(at(0, op_kind::B, 0, 0) == times{6, 8});
    CHECK(at(1, op_kind::B, 1, 1) == times{5.5, 7.5});
    CHECK(at(0, op_kind::RECV_B, 1, 0) == times{7.5, 8});
    CHECK(at(0, op_kind::B, 1, 0) == times{8, 10});
    CHECK(r.makespan == 10);  // 9 without communication: 2 of the 4 messages are hidden
    CHECK(busy(r) == std::vector<double>{6, 6});
    CHECK(r.workers[0].idle == 4);
    CHECK(r.workers[0].communication == 2);
}

TEST_CASE("hand-checked timeline: 1F1B D=2 N=2 compute-only, every cross-worker input pays one p2p message") {
    // Worker 0 runs F0 F1 B0 B1 (stage 0), worker 1 F0 B0 F1 B1 (stage 1).
    // With message cost c = alpha + bytes * beta and unit compute:
    //   w0 F0 [0,1]  F1 [1,2]                 B0 [3+2c,4+2c]  B1 [5+2c,6+2c]
    //   w1 F0 [1+c,2+c] B0 [2+c,3+c] F1 [3+c,4+c] B1 [4+c,5+c]
    // so the makespan is 6 + 2c (6 with free communication).
    const schedule s = generate({algorithm::one_f_one_b, 2, 2});
    for (const auto& [alpha, bytes, beta] : {std::tuple{0.0, 0.0, 0.0}, std::tuple{0.5, 0.0, 0.0},
                                             std::tuple{0.5, 10.0, 0.05}, std::tuple{0.0, 100.0, 0.02}}) {
        cost_model m;
        m.alpha = alpha;
        m.beta = beta;
        m.uniform.message_bytes = bytes;
        const double c = alpha + bytes * beta;
        INFO("alpha ", alpha, " bytes ", bytes, " beta ", beta);
        const simulation r = simulate(s, m);
        REQUIRE(r.complete);
        CHECK(r.makespan == doctest::Approx(6 + 2 * c));
        CHECK(r.start[position(s, 1, op_kind::F, 0, 1)] == doctest::Approx(1 + c));
        CHECK(r.start[position(s, 1, op_kind::F, 1, 1)] == doctest::Approx(3 + c));
        CHECK(r.start[position(s, 0, op_kind::B, 0, 0)] == doctest::Approx(3 + 2 * c));
        CHECK(r.start[position(s, 0, op_kind::B, 1, 0)] == doctest::Approx(5 + 2 * c));
        CHECK(r.workers[0].busy == doctest::Approx(4));  // communication is not compute
    }
}

TEST_CASE("what does not fit the schedule is refused with S0, naming it") {
    const schedule lowered = lower(generate({algorithm::gpipe, 2, 2}));
    const auto refusal = [](const schedule& s, const cost_model& costs = {}) -> std::string {
        try {
            (void)simulate(s, costs);
        } catch (const schedule_error& e) {
            return std::string(e.rule()) + " " + e.what();
        }
        return "accepted";
    };
    REQUIRE(refusal(lowered) == "accepted");
    cost_model three;
    three.per_stage.resize(3);
    CHECK(refusal(lowered, three) == "S0 simulate: the cost model describes 3 stages, the schedule has 2");
    // One field of worker 0's SEND_F of micro-batch 0 (pipeline 0, peer 1) out of range at a time.
    std::vector<std::vector<op>> lists;
    for (int w = 0; w < 2; ++w) lists.emplace_back(lowered.ops(w).begin(), lowered.ops(w).end());
    const auto send = static_cast<std::size_t>(
        std::ranges::find_if(lists[0], [](const op& o) { return o.kind == op_kind::SEND_F; }) - lists[0].begin());
    REQUIRE(send < lists[0].size());
    const op good = lists[0][send];
    for (const auto& [bad, text] : {std::pair{op{op_kind::SEND_F, 0, 2, 0, 1}, "SEND_F(micro-batch 2, stage 0, "
                                                                                  "pipeline 0, peer 1)"},
                                    std::pair{op{op_kind::SEND_F, 0, 0, 0, 2}, "SEND_F(micro-batch 0, stage 0, "
                                                                                  "pipeline 0, peer 2)"},
                                    std::pair{op{op_kind::SEND_F, 0, 0, 1, 1}, "SEND_F(micro-batch 0, stage 0, "
                                                                                  "pipeline 1, peer 1)"},
                                    std::pair{op{op_kind::SEND_F, 0, 0, 0, no_peer}, "SEND_F(micro-batch 0, stage "
                                                                                       "0, pipeline 0)"}}) {
        lists[0][send] = bad;
        CHECK(refusal(with_ops(lowered, lists)) ==
              std::string("S0 simulate: ") + text + " is out of range; run check first");
    }
    lists[0][send] = good;
    CHECK(refusal(with_ops(lowered, lists)) == "accepted");
}

TEST_CASE("a p2p op naming a valid but wrong peer is refused with S0, naming both sides") {
    const schedule lowered = lower(generate({algorithm::gpipe, 3, 2}));
    std::vector<std::vector<op>> lists;
    for (int w = 0; w < 3; ++w) lists.emplace_back(lowered.ops(w).begin(), lowered.ops(w).end());
    int moved = 0;
    for (int w = 0; w < 3; ++w)
        for (std::size_t i = 0; i < lists[static_cast<std::size_t>(w)].size(); ++i) {
            op& o = lists[static_cast<std::size_t>(w)][i];
            if (!is_p2p(o.kind)) continue;
            const op right = o;
            o.peer = 3 - w - right.peer;  // the third worker: in range, but not the partner's
            std::string text = "accepted";
            try {
                (void)simulate(with_ops(lowered, lists), unit_costs());
            } catch (const schedule_error& e) {
                text = std::string(e.rule()) + " " + e.what();
            }
            CHECK(text.starts_with("S0 simulate: " + std::string(describe(o)) + " on worker " + std::to_string(w) +
                                   " names peer " + std::to_string(o.peer) + ", but its partner "));
            CHECK(text.ends_with(" is on worker " + std::to_string(right.peer) + "; run check first"));
            o = right;
            ++moved;
        }
    CHECK(moved == 16);  // 2 micro-batches x 2 boundaries x (F, B) x (SEND, RECV)
    CHECK(simulate(with_ops(lowered, lists), unit_costs()).complete);
}

TEST_CASE("unequal per-stage costs: the slowest stage paces GPipe") {
    cost_model costs;
    costs.per_stage = {{.forward = 1, .backward = 2}, {.forward = 3, .backward = 6}, {.forward = 1, .backward = 2}};
    const simulation r = simulate(generate({algorithm::gpipe, 3, 4}), costs);
    // Forwards: 1 + 4*3 + 1 (stage 1 busy back to back), backwards: 2 + 4*6 + 2.
    CHECK(r.makespan == 1 + 4 * 3 + 1 + 2 + 4 * 6 + 2);
    CHECK(r.workers[1].busy == 36);
    CHECK(r.workers[1].idle == r.makespan - 36);
}

TEST_CASE("all-reduce cost and eager overlap (docs/design/chimera-closed-form.md#gradient-synchronisation-facts, #iteration-time)") {
    cost_model costs;
    costs.uniform.gradient_bytes = 2;  // L
    costs.beta = 1;                     // p2p messages are empty: only all-reduces cost
    costs.data_parallel = 2;            // r = 2 replicas x 2 groups = 4: 2 (r-1) beta L / r = 3
    CHECK(costs.allreduce(0, 2) == 3);
    cost_model latency;
    latency.alpha = 1;
    CHECK(latency.allreduce(0, 2) == 2);  // 2 log2(2) alpha
    CHECK(latency.allreduce(0, 1) == 0);  // a single replica does not communicate

    const schedule s = generate({algorithm::chimera, 4, 4, 2, scaling::direct, 2});
    // end: both all-reduces of a worker after the span of 10, one after another.
    CHECK(simulate(lower(s), costs).makespan == 10 + 3 + 3);
    // eager: every all-reduce starts right after its stage's last backward;
    // the edge workers hide stage 3's (slots 7-10), the middle workers
    // start stage 2's at 8 and stage 1's once that ends: 8 + 3 + 3 = 14.
    CHECK(simulate(lower(s, {.sync = sync_policy::eager}), costs).makespan == 14);
    // eager-opt (window >= D-1): only stage 3 is eager; the middle workers
    // reduce after their last op (slot 8): 9 + 3 + 3 = 15.
    CHECK(simulate(lower(s, {.sync = sync_policy::eager_opt}), costs).makespan == 15);
}

TEST_CASE("recomputation: backward re-runs the forward, activations shrink to the stage input") {
    const schedule s = generate({algorithm::one_f_one_b, 4, 8});
    cost_model costs = memory_costs(true);
    costs.uniform.backward = 2;
    const simulation r = simulate(s, costs);
    CHECK(r.makespan == (8 + 4 - 1) * (1 + 2 + 1));
    // Worker 0 keeps 4 inputs (0.25 each) and one full set during a backward; worker 3 one input.
    CHECK(r.workers[0].peak_activation_bytes == doctest::Approx(4 * 0.25 + 1));
    CHECK(r.workers[3].peak_activation_bytes == doctest::Approx(1.25));
}

TEST_CASE("optimizer steps: each worker ends with its replicas' steps, nothing else moves") {
    for (const config& c : {config{algorithm::chimera, 4, 8, 2}, config{algorithm::chimera, 4, 4, 4},
                            config{algorithm::gpipe, 4, 8}, config{algorithm::one_f_one_b, 3, 5}}) {
        CAPTURE(c);
        const schedule s = lower(generate(c));
        cost_model plain = unit_costs(1, 2);
        plain.per_stage.assign(static_cast<std::size_t>(c.stages), plain.uniform);
        cost_model with = plain;
        for (int st = 0; st < c.stages; ++st) with.per_stage[static_cast<std::size_t>(st)].optimizer = 0.25 * (st + 1);
        const simulation a = simulate(s, plain), b = simulate(s, with);
        CHECK(a.start == b.start);  // the optimizer runs after every op
        double makespan = 0;
        for (int w = 0; w < s.workers(); ++w) {
            double steps = 0;  // what this worker's replicas add, from the placement
            for (int p = 0; p < s.pipelines(); ++p)
                for (int st = 0; st < s.stages(); ++st)
                    if (s.placement(p, st) == w) steps += 0.25 * (st + 1);
            const worker_report &x = a.workers[static_cast<std::size_t>(w)], &y = b.workers[static_cast<std::size_t>(w)];
            CHECK(x.optimizer == 0);
            CHECK(y.optimizer == doctest::Approx(steps));
            CHECK(y.busy == doctest::Approx(x.busy + steps));
            CHECK(y.end == doctest::Approx(x.end + steps));
            makespan = std::max(makespan, x.end + steps);
        }
        CHECK(b.makespan == doctest::Approx(makespan));
        CHECK(b.makespan > a.makespan);
    }
}

TEST_CASE("a deadlocked schedule is reported incomplete, not timed") {
    const schedule lowered = lower(generate({algorithm::gpipe, 2, 2}));
    std::vector<std::vector<op>> lists;
    for (int w = 0; w < 2; ++w) lists.emplace_back(lowered.ops(w).begin(), lowered.ops(w).end());
    std::rotate(lists[0].begin(), lists[0].begin() + 4, lists[0].begin() + 5);  // RECV_B0 first
    const schedule broken = with_ops(lowered, lists);
    const simulation r = simulate(broken);
    CHECK_FALSE(r.complete);
    CHECK(std::ranges::count(r.start, -1.0) > 0);
}

TEST_CASE("unit costs, free communication: lowered, compute-only and analysis::asap agree") {
    for (int d : {2, 4, 6, 8})
        for (int n : {1, 3, 4, 8, 13, 16})
            for (const config& c : {config{algorithm::gpipe, d, n}, config{algorithm::one_f_one_b, d, n},
                                    config{algorithm::chimera, d, n}, config{algorithm::chimera, d, n, 2, scaling::doubling},
                                    config{algorithm::chimera, d, n, 2, scaling::halving}, config{algorithm::chimera, d, n, 4}}) {
                if (validate(c)) continue;
                INFO(to_string(c.schedule), " D=", d, " N=", n, " k=", pipeline_count(c), " ", to_string(c.scaling_mode));
                const schedule s = generate(c);
                const double span = asap(s).makespan;
                CHECK(simulate(s).makespan == span);
                for (auto sync : {sync_policy::end, sync_policy::eager, sync_policy::eager_opt})
                    CHECK(simulate(lower(s, {.sync = sync})).makespan == span);
                if (c.scaling_mode == scaling::direct)  // and at t_B = 2 t_F
                    CHECK(simulate(lower(s), unit_costs(1, 2)).makespan == asap(s, {1, 2, 1, 1}).makespan);
            }
}

TEST_CASE("bad input to the simulator is refused, not read out of bounds") {
    const schedule s = generate({algorithm::gpipe, 3, 2});
    cost_model two;
    two.per_stage.resize(2);
    CHECK_THROWS_WITH_AS(simulate(s, two), doctest::Contains("describes 2 stages, the schedule has 3"), schedule_error);
    schedule bad;
    bad.set_shape("custom", 2, 1, 1);
    bad.set_placement(0, 1, 1);
    bad.add_worker();
    bad.push_op(forward(0, 0, 5));
    CHECK_THROWS_WITH_AS(simulate(bad), doctest::Contains("out of range"), schedule_error);
}
