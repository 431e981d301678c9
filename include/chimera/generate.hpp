// One entry point for every generator, at run time and at compile time.
//
//   auto s = chimera::generate({.schedule = chimera::algorithm::chimera, .stages = 8, .micro_batches = 16});
//   constexpr auto f = chimera::make_fixed<chimera::config{.stages = 4, .micro_batches = 4}>();
//   static_assert(chimera::check(f).ok());
#pragma once

#include "config.hpp"
#include "schedule.hpp"
#include "schedules/chimera.hpp"
#include "schedules/gpipe.hpp"
#include "schedules/one_f_one_b.hpp"

namespace chimera {

// Throws schedule_error (rule id + values) for an invalid config.
constexpr schedule generate(const config& c) {
    switch (c.schedule) {
        case algorithm::gpipe: return schedules::gpipe(c);
        case algorithm::one_f_one_b: return schedules::one_f_one_b(c);
        case algorithm::chimera: return schedules::chimera(c);
        case algorithm::custom: break;
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
    if constexpr (error == config_errc::ok) {
        constexpr detail::schedule_extent e = detail::extent_of<C>();
        return convert<fixed_storage<e.placement, e.micro_batches, e.workers, e.ops>>(generate(C));
    } else {
        return schedule{};
    }
}

}  // namespace chimera
