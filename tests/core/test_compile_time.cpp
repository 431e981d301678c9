// Compile-time schedules: generated, checked and measured inside constant
// expressions. If any of these break, this file does not compile.
#include <doctest/doctest.h>

#include <chimera/chimera.hpp>

using namespace chimera;

namespace {

constexpr auto chimera_4_4 = make_fixed<config{.schedule = algorithm::chimera, .stages = 4, .micro_batches = 4}>();
constexpr auto chimera_8_16_k4 =
    make_fixed<config{.schedule = algorithm::chimera, .stages = 8, .micro_batches = 16, .pipelines = 4}>();
constexpr auto chimera_doubling =
    make_fixed<config{.schedule = algorithm::chimera, .stages = 4, .micro_batches = 8, .scaling_mode = scaling::doubling}>();
constexpr auto chimera_partial = make_fixed<config{.schedule = algorithm::chimera, .stages = 6, .micro_batches = 7}>();
constexpr auto gpipe_4_8 = make_fixed<config{.schedule = algorithm::gpipe, .stages = 4, .micro_batches = 8}>();
constexpr auto one_f_one_b_4_8 = make_fixed<config{.schedule = algorithm::one_f_one_b, .stages = 4, .micro_batches = 8}>();

static_assert(check(chimera_4_4).ok());
static_assert(check(chimera_8_16_k4).ok());
static_assert(check(chimera_doubling).ok());
static_assert(check(chimera_partial).ok());
static_assert(check(gpipe_4_8).ok());
static_assert(check(one_f_one_b_4_8).ok());

// Storage is exactly as large as the schedule.
static_assert(decltype(chimera_4_4)::storage::op_vector<op>::capacity() == 32);
static_assert(chimera_4_4.op_count() == 32 && chimera_4_4.workers() == 4);

// Table 3 / T3 at compile time: span 2N + D/f - 2, bubble (D - 2f)/(2fN + D - 2f).
static_assert(asap(chimera_4_4).makespan == 10);
static_assert(asap(chimera_8_16_k4).makespan == 2 * 16 + 8 / 2 - 2);
static_assert(asap(chimera_4_4, {1, 2, 1, 1}).makespan == 16);
static_assert(peak_activations(chimera_4_4, 0) == 3 && peak_activations(chimera_4_4, 1) == 4);
static_assert(asap(gpipe_4_8).makespan == 2 * (8 + 4 - 1));

// The paper's P0 row "0 1 2 2 3 3 0 1".
constexpr bool paper_row() {
    const int expected[] = {0, 1, 2, 2, 3, 3, 0, 1};
    int i = 0;
    for (const op& o : chimera_4_4.ops(0))
        if (o.micro_batch != expected[i++]) return false;
    return true;
}
static_assert(paper_row());

// A mutated compile-time schedule is caught, with the right rule, at compile time.
constexpr bool mutation_caught() {
    const schedule s = to_dynamic(chimera_4_4);
    // Drop worker 3's backward of micro-batch 3.
    const schedule mutated = filter_ops(s, [&](const op& o) {
        return !(o.kind == op_kind::B && o.micro_batch == 3 && s.placement(o.pipeline, o.stage) == 3);
    });
    const auto report = check(mutated);
    return !report.ok() && report.diagnostics[0].rule == "S5";
}
static_assert(mutation_caught());

// Run-time and compile-time generation agree.
static_assert(validate_code(config{.schedule = algorithm::chimera, .stages = 5}) == config_errc::odd_stages);

// The registry answers in constant expressions: names, aliases, defaults and
// the rule text make_fixed prints.
static_assert(find_schedule("dapple") == &schedules::one_f_one_b_entry);
static_assert(to_string(algorithm::zb_v) == "zb-v" && parse_algorithm("looped-bfs") == algorithm::looped_bfs);
static_assert(pipeline_count(config{.schedule = algorithm::dualpipe}) == 2 && chunk_count(config{algorithm::zb_v}) == 2);
static_assert(first_broken_rule(config{.schedule = algorithm::chimera, .stages = 5})->summary.starts_with(
    "chimera rule S1: D must be even"));
static_assert(first_broken_rule(config{.schedule = algorithm::chimera, .stages = 4, .micro_batches = 8}) == nullptr);

}  // namespace

TEST_CASE("compile-time schedules equal run-time schedules") {
    CHECK(chimera_4_4 == generate({.schedule = algorithm::chimera, .stages = 4, .micro_batches = 4}));
    CHECK(chimera_8_16_k4 == generate({.schedule = algorithm::chimera, .stages = 8, .micro_batches = 16, .pipelines = 4}));
    CHECK(chimera_partial == generate({.schedule = algorithm::chimera, .stages = 6, .micro_batches = 7}));
    CHECK(one_f_one_b_4_8 == generate({.schedule = algorithm::one_f_one_b, .stages = 4, .micro_batches = 8}));
    CHECK(to_dynamic(chimera_doubling) ==
          generate({.schedule = algorithm::chimera, .stages = 4, .micro_batches = 8, .scaling_mode = scaling::doubling}));
}
