// Lowering (docs/design/lowering.md#the-placement-rule), the lowered-level checks (C1-C3, G1, G3)
// and the rendezvous deadlock replay (docs/design/lowering.md#deadlock-check-two-levels).
#include <doctest/doctest.h>

#include <algorithm>
#include <string>
#include <vector>

#include <chimera/check.hpp>
#include <chimera/generate.hpp>
#include <chimera/io/json.hpp>
#include <chimera/lower.hpp>
#include <chimera/placement.hpp>

using namespace chimera;

namespace {

// A worker's list in the compact op form, space separated.
std::string row(const schedule& s, int w) {
    std::string out;
    for (const op& o : s.ops(w)) {
        if (!out.empty()) out += ' ';
        out += to_string(o);
    }
    return out;
}

std::string diagnostics(const check_report& r) {
    std::string out;
    for (const auto& d : r.diagnostics) out += std::string(d.rule) + ": " + d.message + "\n";
    return out;
}

std::vector<std::vector<op>> lists_of(const schedule& s) {
    std::vector<std::vector<op>> lists;
    for (int w = 0; w < s.workers(); ++w) lists.emplace_back(s.ops(w).begin(), s.ops(w).end());
    return lists;
}

std::vector<config> grid() {
    std::vector<config> configs;
    for (int d : {1, 2, 3, 4, 5, 8})
        for (int n : {1, 2, 3, 4, 7, 8, 16}) {
            configs.push_back({algorithm::gpipe, d, n});
            configs.push_back({algorithm::one_f_one_b, d, n});
        }
    for (int d : {2, 4, 6, 8, 12})
        for (int n : {1, 2, 3, 5, 6, 8, 12, 16, 24, 32})
            for (int k : {2, 4, 6, 8})
                for (auto mode : {scaling::direct, scaling::doubling, scaling::halving}) {
                    const config c{algorithm::chimera, d, n, k, mode};
                    if (!validate(c)) configs.push_back(c);
                }
    return configs;
}

std::string name_of(const config& c) {
    return std::string(to_string(c.schedule)) + " D=" + std::to_string(c.stages) + " N=" +
           std::to_string(c.micro_batches) + " k=" + std::to_string(pipeline_count(c)) + " " +
           std::string(to_string(c.scaling_mode));
}

// Rank 0 of 1F1B and of GPipe with D=2, N=2: both run F0 F1 B0 B1 there.
constexpr const char* two_stage_rank0 =
    "F0s0p0 SEND_F0s0p0@1 F1s0p0 SEND_F1s0p0@1 RECV_B0s0p0@1 B0s0p0 RECV_B1s0p0@1 B1s0p0 REDUCE_GRADs0p0";

}  // namespace

TEST_CASE("1F1B D=2 N=2 lowers to PyTorch's rank-0 row (docs/design/schedule-zoo.md#reference-numbers-from-other-projects)") {
    const schedule s = lower(generate({algorithm::one_f_one_b, 2, 2}));
    CHECK(row(s, 0) == two_stage_rank0);
    // Rank 1 differs from PyTorch's greedy lowering: data leaves when the consumer needs it.
    CHECK(row(s, 1) ==
          "RECV_F0s1p0@0 F0s1p0 B0s1p0 RECV_F1s1p0@0 "
          "SEND_B0s1p0@0 F1s1p0 B1s1p0 SEND_B1s1p0@0 REDUCE_GRADs1p0");
    CHECK(check(s).ok());
}

TEST_CASE("GPipe D=2 N=2: sends wait for the consumer's slot") {
    const schedule s = lower(generate({algorithm::gpipe, 2, 2}));
    CHECK(row(s, 0) == two_stage_rank0);
    CHECK(row(s, 1) ==
          "RECV_F0s1p0@0 F0s1p0 RECV_F1s1p0@0 F1s1p0 "
          "B0s1p0 SEND_B0s1p0@0 B1s1p0 SEND_B1s1p0@0 REDUCE_GRADs1p0");
}

TEST_CASE("Chimera D=4 N=4: comm ops sit next to the closed-form neighbours, sync policies") {
    const schedule compute = generate({algorithm::chimera, 4, 4});
    const schedule end = lower(compute);
    // Worker 0 holds down stage 0 and up stage 3; F2u3 needs stage 2 of up from worker 1.
    CHECK(row(end, 0) ==
          "F0s0p0 SEND_F0s0p0@1 F1s0p0 RECV_F2s3p1@1 SEND_F1s0p0@1 F2s3p1 B2s3p1 RECV_F3s3p1@1 SEND_B2s3p1@1 "
          "F3s3p1 B3s3p1 SEND_B3s3p1@1 RECV_B0s0p0@1 B0s0p0 RECV_B1s0p0@1 B1s0p0 REDUCE_GRADs3p1 REDUCE_GRADs0p0");
    CHECK(check(end).ok());
    // eager: the collective of stage 3 joins the gap right after its last
    // backward, behind that gap's point-to-point ops (boundary 7 = slot of B0).
    const schedule eager = lower(compute, {.sync = sync_policy::eager});
    CHECK(row(eager, 0).find("B3s3p1 SEND_B3s3p1@1 RECV_B0s0p0@1 REDUCE_GRADs3p1 B0s0p0") != std::string::npos);
    CHECK(check(eager).ok());
}

TEST_CASE("every generated schedule lowers, passes the checker and keeps its compute ops") {
    for (const config& c : grid())
        for (auto sync : {sync_policy::end, sync_policy::eager, sync_policy::eager_opt}) {
            INFO(name_of(c), " sync ", to_string(sync));
            const schedule compute = generate(c);
            const schedule lowered = lower(compute, {.sync = sync});
            const check_report report = check(lowered);
            REQUIRE_MESSAGE(report.ok(), diagnostics(report));
            // The compute ops are a subsequence, unchanged.
            const schedule kept = compute_only(lowered);
            for (int w = 0; w < compute.workers(); ++w) CHECK(std::ranges::equal(kept.ops(w), compute.ops(w)));
            // One REDUCE_GRAD per replica; two p2p ops per cross-worker dependency.
            const long reduces = std::ranges::count(lowered.all_ops(), op_kind::REDUCE_GRAD, &op::kind);
            CHECK(reduces == compute.pipelines() * compute.stages());
            long crossings = 0;
            for (int m = 0; m < compute.micro_batches(); ++m)
                for (int st = 0; st + 1 < compute.stages(); ++st) {
                    const int p = compute.pipeline_of(m);
                    crossings += compute.placement(p, st) != compute.placement(p, st + 1) ? 2 : 0;
                }
            CHECK(static_cast<long>(lowered.op_count() - compute.op_count()) == reduces + 2 * crossings);
            // JSON round trip keeps the lowered schedule, peers included.
            const std::string text = io::write_json(lowered);
            CHECK(io::write_json(io::read_json(text)) == text);
            CHECK(std::ranges::equal(io::read_json(text).all_ops(), lowered.all_ops()));
        }
}

TEST_CASE("lowering gives the recorded list for a fixed input and refuses lowered or deadlocked input") {
    // A fixed input gives a fixed list: worker 0 of eager Chimera D=4 N=8 as
    // recorded from `chimera-sched lower --stages 4 --micro-batches 8 --sync
    // eager --format text` (stage 0 is pipeline 0's, stage 3 pipeline 1's).
    const schedule eager = lower(generate({algorithm::chimera, 4, 8}), {.sync = sync_policy::eager});
    CHECK(row(eager, 0) ==
          "F0s0p0 SEND_F0s0p0@1 F1s0p0 RECV_F2s3p1@1 SEND_F1s0p0@1 F2s3p1 B2s3p1 RECV_F3s3p1@1 SEND_B2s3p1@1 "
          "F3s3p1 B3s3p1 SEND_B3s3p1@1 RECV_B0s0p0@1 B0s0p0 F4s0p0 SEND_F4s0p0@1 RECV_B1s0p0@1 B1s0p0 F5s0p0 "
          "RECV_F6s3p1@1 SEND_F5s0p0@1 F6s3p1 B6s3p1 RECV_F7s3p1@1 SEND_B6s3p1@1 F7s3p1 B7s3p1 SEND_B7s3p1@1 "
          "RECV_B4s0p0@1 REDUCE_GRADs3p1 B4s0p0 RECV_B5s0p0@1 B5s0p0 REDUCE_GRADs0p0");
    const schedule lowered = lower(generate({algorithm::chimera, 8, 24, 4}));
    CHECK_THROWS_WITH_AS(lower(lowered), doctest::Contains("already holds communication ops"), schedule_error);
    auto lists = lists_of(generate({algorithm::gpipe, 2, 2}));
    std::swap(lists[1][0], lists[1][2]);  // B0 before F0 on worker 1
    CHECK_THROWS_AS(lower(with_ops(generate({algorithm::gpipe, 2, 2}), lists)), schedule_error);
}

TEST_CASE("eager sync: every replica issues at the shared boundary (G4)") {
    for (const config& c : grid()) {
        INFO(name_of(c));
        const schedule compute = generate(c);
        const unit_slots u = make_unit_slots(compute);
        const std::vector<int> boundary = reduce_boundaries(compute, u, {.sync = sync_policy::eager});
        const schedule lowered = lower(compute, {.sync = sync_policy::eager});
        // Slot of each compute op of the lowered lists, by walking both in step.
        for (int w = 0; w < lowered.workers(); ++w) {
            const std::size_t first = compute.first_op_index(w);
            std::size_t next = 0;  // index of the next compute op
            for (const op& o : lowered.ops(w)) {
                if (is_compute(o.kind)) {
                    ++next;
                    continue;
                }
                if (o.kind != op_kind::REDUCE_GRAD) continue;
                const int b = boundary[static_cast<std::size_t>(o.stage)];
                if (next > 0) CHECK(u.slot[first + next - 1] < b);
                if (next < compute.ops(w).size()) CHECK(u.slot[first + next] >= b);
            }
        }
        // Full Chimera units: the boundary is right after each replica's own last B (T5).
        if (schedules::has_closed_form(compute))
            for (int w = 0; w < lowered.workers(); ++w) {
                const auto list = lowered.ops(w);
                for (std::size_t i = 0; i < list.size(); ++i)
                    if (list[i].kind == op_kind::REDUCE_GRAD) {
                        std::size_t j = i;
                        while (!is_compute(list[j].kind)) --j;
                        CHECK(list[j].kind == op_kind::B);
                        CHECK(list[j].stage == list[i].stage);
                    }
            }
    }
}

TEST_CASE("eager-opt: min_window D-1 syncs only the edge stage early, 3 syncs stages > D/2, 1 equals eager") {
    for (int d : {4, 6, 8, 16})
        for (int units : {1, 3}) {
            const schedule compute = generate({algorithm::chimera, d, d * units});
            const unit_slots u = make_unit_slots(compute);
            const auto eager = reduce_boundaries(compute, u, {.sync = sync_policy::eager});
            const auto by_default = reduce_boundaries(compute, u, {.sync = sync_policy::eager_opt});
            const auto three = reduce_boundaries(compute, u, {.sync = sync_policy::eager_opt, .min_window = 3});
            for (int st = 0; st < d; ++st) {
                INFO("D=", d, " stage ", st);
                CHECK((by_default[static_cast<std::size_t>(st)] < u.span) == (st == d - 1));
                CHECK((three[static_cast<std::size_t>(st)] < u.span) == (st > d / 2));
                CHECK(eager[static_cast<std::size_t>(st)] == 2 * d * (units - 1) + 3 * d - 3 - st + 1);  // T5 + 1
            }
            CHECK(lower(compute, {.sync = sync_policy::eager_opt, .min_window = 1}) ==
                  lower(compute, {.sync = sync_policy::eager}));
        }
    CHECK(parse_sync_policy("eager-opt") == sync_policy::eager_opt);
    CHECK(!parse_sync_policy("eager_opt"));
}

TEST_CASE("all-reduce members over data-parallel groups, both rank layouts") {
    const schedule s = generate({algorithm::chimera, 4, 4, 2, scaling::direct, 2});
    // Stage 1 lives on worker 1 (down) and worker 2 (up) of each group.
    CHECK(replica_ranks(s, 1, 2, rank_layout::group_major) == std::vector<int>{1, 2, 5, 6});
    CHECK(replica_ranks(s, 1, 2, rank_layout::stage_major) == std::vector<int>{2, 3, 4, 5});
    CHECK(replica_ranks(s, 0, 2, rank_layout::group_major) == std::vector<int>{0, 3, 4, 7});
}

TEST_CASE("a mis-ordered lowered schedule deadlocks and every pending group is reported") {
    const schedule lowered = lower(generate({algorithm::gpipe, 2, 2}));
    auto lists = lists_of(lowered);
    // Worker 0 posts RECV_B0 before its first forward: it waits for worker 1,
    // which waits for the activation that worker 0 never sends.
    auto& w0 = lists[0];
    const auto recv = std::ranges::find(w0, op_kind::RECV_B, &op::kind);
    const op moved = *recv;
    w0.erase(recv);
    w0.insert(w0.begin(), moved);
    const check_report report = check(with_ops(lowered, lists));
    REQUIRE(report.has("C3"));
    CHECK(report.diagnostics.size() == 2);  // both workers are stuck
    CHECK(report.diagnostics[0].message.find("worker 0 is stuck") != std::string::npos);
    CHECK(report.diagnostics[1].message.find("worker 1 is stuck") != std::string::npos);
    CHECK(report.diagnostics[1].message.find("RECV_F(micro-batch 0, stage 1, pipeline 0, peer 0)") != std::string::npos);

    // Splitting one group of Chimera into two crossed halves also hangs.
    const schedule chimera_lowered = lower(generate({algorithm::chimera, 4, 4}));
    auto crossed = lists_of(chimera_lowered);
    // Worker 1's last RECV_B moved before its first compute op.
    auto& w1 = crossed[1];
    auto last_recv = std::find_if(w1.rbegin(), w1.rend(), [](const op& o) { return o.kind == op_kind::RECV_B; });
    const op late = *last_recv;
    w1.erase(std::next(last_recv).base());
    w1.insert(w1.begin(), late);
    CHECK(check(with_ops(chimera_lowered, crossed)).has("C3"));
}

TEST_CASE("checker: broken comm ops name their rule") {
    const schedule lowered = lower(generate({algorithm::one_f_one_b, 3, 3}));
    auto find = [](std::vector<op>& list, op_kind kind) { return std::ranges::find(list, kind, &op::kind); };
    {  // wrong peer
        auto lists = lists_of(lowered);
        find(lists[1], op_kind::SEND_F)->peer = 0;
        CHECK(check(with_ops(lowered, lists)).has("C1"));
    }
    {  // a RECV without its SEND
        auto lists = lists_of(lowered);
        lists[0].erase(find(lists[0], op_kind::SEND_F));
        CHECK(check(with_ops(lowered, lists)).has("C1"));
    }
    {  // a dependency that crosses workers without any comm op
        auto lists = lists_of(lowered);
        lists[0].erase(find(lists[0], op_kind::SEND_F));
        lists[1].erase(find(lists[1], op_kind::RECV_F));
        const auto report = check(with_ops(lowered, lists));
        CHECK(report.has("C2"));
    }
    {  // RECV after its consumer
        auto lists = lists_of(lowered);
        auto recv = find(lists[2], op_kind::RECV_F);
        std::iter_swap(recv, std::next(recv));
        CHECK(check(with_ops(lowered, lists)).has("C2"));
    }
    {  // REDUCE_GRAD missing, duplicated, too early
        auto lists = lists_of(lowered);
        lists[0].pop_back();
        CHECK(check(with_ops(lowered, lists)).has("G1"));
        lists = lists_of(lowered);
        lists[0].push_back(lists[0].back());
        CHECK(check(with_ops(lowered, lists)).has("G1"));
        lists = lists_of(lowered);
        lists[0].insert(lists[0].begin(), lists[0].back());
        lists[0].pop_back();
        CHECK(check(with_ops(lowered, lists)).has("G1"));
    }
    {  // G3: increasing stage order of collectives on a Chimera worker
        const schedule chimera_lowered = lower(generate({algorithm::chimera, 4, 4}));
        auto lists = lists_of(chimera_lowered);
        std::iter_swap(lists[0].end() - 1, lists[0].end() - 2);
        CHECK(check(with_ops(chimera_lowered, lists)).has("G3"));
    }
}

// Lowering and the lowered-level checks (incl. the rendezvous replay) run at compile time too.
static_assert(check(lower(generate({algorithm::chimera, 4, 4}), {.sync = sync_policy::eager})).ok());
static_assert(check(lower(generate({algorithm::one_f_one_b, 3, 5}))).ok());
