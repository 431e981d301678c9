// One entry point for every generator, at run time and at compile time.
//
//   auto s = chimera::generate({.schedule = chimera::algorithm::chimera, .stages = 8, .micro_batches = 16});
//   constexpr auto f = chimera::make_fixed<chimera::config{.stages = 4, .micro_batches = 4}>();
//   static_assert(chimera::check(f).ok());
#pragma once

#include "config.hpp"
#include "schedule.hpp"
#include "schedules/chimera.hpp"
#include "schedules/dualpipe.hpp"
#include "schedules/dualpipev.hpp"
#include "schedules/gems.hpp"
#include "schedules/gpipe.hpp"
#include "schedules/interleaved.hpp"
#include "schedules/looped_bfs.hpp"
#include "schedules/one_f_one_b.hpp"
#include "schedules/zb_h1.hpp"
#include "schedules/zb_h2.hpp"
#include "schedules/zb_v.hpp"

namespace chimera {

// Throws schedule_error (rule id + values) for an invalid config.
constexpr schedule generate(const config& c) {
    switch (c.schedule) {
        case algorithm::gpipe: return schedules::gpipe(c);
        case algorithm::one_f_one_b: return schedules::one_f_one_b(c);
        case algorithm::chimera: return schedules::chimera(c);
        case algorithm::custom: break;
        case algorithm::interleaved: return schedules::interleaved(c);
        case algorithm::looped_bfs: return schedules::looped_bfs(c);
        case algorithm::gems: return schedules::gems(c);
        case algorithm::zb_h1: return schedules::zb_h1(c);
        case algorithm::zb_h2: return schedules::zb_h2(c);
        case algorithm::zb_v: return schedules::zb_v(c);
        case algorithm::dualpipe: return schedules::dualpipe(c);
        case algorithm::dualpipev: return schedules::dualpipev(c);
    }
    require_valid(c);  // reports the custom case
    return {};
}

namespace detail {
struct schedule_extent {
    std::size_t placement = 0, micro_batches = 0, workers = 0, ops = 0;
};
template <config C>
consteval schedule_extent extent_of() {
    const schedule s = generate(C);
    return {s.placement_size(), static_cast<std::size_t>(s.micro_batches()), static_cast<std::size_t>(s.workers()),
            s.op_count()};
}
}  // namespace detail

// A compile-time schedule, stored in std::arrays of exactly the needed size.
// Invalid configs fail the build with the rule that they break.
template <config C>
consteval auto make_fixed() {
    constexpr config_errc error = validate_code(C);
    static_assert(error != config_errc::stages_below_one, "chimera rule S1: stages D must be >= 1");
    static_assert(error != config_errc::micro_batches_below_one, "chimera rule S1: micro-batches N must be >= 1");
    static_assert(error != config_errc::data_parallel_below_one, "chimera rule S1: data-parallel width W must be >= 1");
    static_assert(error != config_errc::too_large, "chimera rule S1: D*N is too large");
    static_assert(error != config_errc::odd_stages,
                  "chimera rule S1: D must be even for Chimera (with odd D the middle worker would hold the same "
                  "stage of both directions)");
    static_assert(error != config_errc::pipelines_odd, "chimera rule S1: Chimera needs an even number of pipelines k = 2f");
    static_assert(error != config_errc::pipelines_not_dividing, "chimera rule S1: f = k/2 must divide D/2");
    static_assert(error != config_errc::single_chain_pipelines, "chimera rule S1: gpipe and 1f1b have exactly one pipeline");
    static_assert(error != config_errc::scaling_not_chimera, "chimera rule S1: doubling/halving exist only for chimera");
    static_assert(error != config_errc::scaling_needs_two_pipelines,
                  "chimera rule S1: doubling/halving are defined for k = 2 pipelines only");
    static_assert(error != config_errc::custom_not_generated, "chimera rule S1: custom schedules are not generated");
    static_assert(error != config_errc::chunks_below_one, "chimera rule S1: chunks per worker v must be >= 1");
    static_assert(error != config_errc::chunks_not_applicable,
                  "chimera rule S1: chunks apply to interleaved and looped-bfs only (zb-v, dualpipev: exactly 2)");
    static_assert(error != config_errc::group_size_not_interleaved, "chimera rule S1: a group size applies to interleaved only");
    static_assert(error != config_errc::interleaved_group_rule,
                  "chimera rule S1: interleaved needs P <= g <= N and (N mod g = 0 or N mod g >= P)");
    static_assert(error != config_errc::interleaved_rounds_rule,
                  "chimera rule S1: interleaved needs N mod max(1, N/P) = 0 when g is derived");
    static_assert(error != config_errc::split_backward_not_chimera, "chimera rule S1: split backward is a chimera option");
    static_assert(error != config_errc::two_pipeline_schedule, "chimera rule S1: gems and dualpipe have exactly 2 pipelines");
    static_assert(error != config_errc::dualpipe_odd_workers, "chimera rule S1: dualpipe needs an even number of workers");
    static_assert(error != config_errc::dualpipe_odd_micro_batches, "chimera rule S1: dualpipe needs an even N");
    static_assert(error != config_errc::too_few_micro_batches, "chimera rule S1: dualpipe and dualpipev need N >= 2P");
    if constexpr (error == config_errc::ok) {
        constexpr detail::schedule_extent e = detail::extent_of<C>();
        return convert<fixed_storage<e.placement, e.micro_batches, e.workers, e.ops>>(generate(C));
    } else {
        return schedule{};
    }
}

}  // namespace chimera
