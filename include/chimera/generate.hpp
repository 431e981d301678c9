// One entry point for every generator, at run time and at compile time.
//
//   auto s = chimera::generate({.schedule = chimera::algorithm::chimera, .stages = 8, .micro_batches = 16});
//   constexpr auto f = chimera::make_fixed<chimera::config{.stages = 4, .micro_batches = 4}>();
//   static_assert(chimera::check(f).ok());
#pragma once

#include <cstddef>
#include <string_view>

#include "config.hpp"
#include "generators/chimera.hpp"
#include "generators/dualpipe.hpp"
#include "generators/dualpipev.hpp"
#include "generators/gems.hpp"
#include "generators/gpipe.hpp"
#include "generators/interleaved.hpp"
#include "generators/looped_bfs.hpp"
#include "generators/one_f_one_b.hpp"
#include "generators/zb_h1.hpp"
#include "generators/zb_h2.hpp"
#include "generators/zb_v.hpp"
#include "registry.hpp"
#include "schedule.hpp"

namespace chimera {

using generator_fn = schedule (*)(const config&);

namespace detail {
struct generator_row {
    algorithm id;
    generator_fn generate;
};
// Each registry entry's generator, one line per schedule. The entries name
// no generator (the passes read entries and include no generator), so this
// table is where an entry meets the function that builds its op lists.
inline constexpr generator_row generators[] = {
    {algorithm::gpipe, schedules::gpipe},
    {algorithm::one_f_one_b, schedules::one_f_one_b},
    {algorithm::chimera, schedules::chimera},
    {algorithm::interleaved, schedules::interleaved},
    {algorithm::looped_bfs, schedules::looped_bfs},
    {algorithm::gems, schedules::gems},
    {algorithm::zb_h1, schedules::zb_h1},
    {algorithm::zb_h2, schedules::zb_h2},
    {algorithm::zb_v, schedules::zb_v},
    {algorithm::dualpipe, schedules::dualpipe},
    {algorithm::dualpipev, schedules::dualpipev},
};
}  // namespace detail

// The generator of a registry entry; nullptr for custom_entry.
constexpr generator_fn generator_of(const schedule_entry& e) {
    for (const detail::generator_row& row : detail::generators)
        if (row.id == e.id) return row.generate;
    return nullptr;
}

static_assert([] {
    for (const schedule_entry* e : schedule_registry)
        if (!generator_of(*e)) return false;
    return true;
}(), "every entry of schedule_registry needs its line in generate.hpp's detail::generators");

// Throws schedule_error (rule id + values) for an invalid config.
constexpr schedule generate(const config& c) {
    const schedule_entry& e = entry_of(c);
    const generator_fn g = generator_of(e);
    if (!g) {
        require_valid(c, e);  // custom: reports the rule
        return {};
    }
    return g(c);
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

// The text of a rule as a template argument, so that GCC prints it in the
// instantiation context of config_breaks.
template <std::size_t N>
struct fixed_string {
    char text[N]{};
    consteval fixed_string(std::string_view s) {
        for (std::size_t i = 0; i + 1 < N && i < s.size(); ++i) text[i] = s[i];
    }
};
template <fixed_string Rule>
inline constexpr bool rule_holds = false;

// Fails the build naming `rule` (the summary of the broken config_rule):
// GCC prints Rule in "In instantiation of ...", clang prints `rule` in the
// note "in call to 'config_breaks(...)'" of the failed evaluation.
template <fixed_string Rule>
consteval void config_breaks(std::string_view rule) {
    if (!rule.empty()) throw "invalid compile-time config";
    static_assert(rule_holds<Rule>, "invalid compile-time config: it breaks the chimera rule printed with this error");
}

}  // namespace detail

// A compile-time schedule, stored in std::arrays of exactly the needed size.
// Invalid configs fail the build with the rule that they break.
template <config C>
consteval auto make_fixed() {
    constexpr const config_rule* broken = first_broken_rule(C);
    if constexpr (broken != nullptr) {
        detail::config_breaks<detail::fixed_string<broken->summary.size() + 1>(broken->summary)>(broken->summary);
        return schedule{};
    } else {
        constexpr detail::schedule_extent e = detail::extent_of<C>();
        return convert<fixed_storage<e.placement, e.micro_batches, e.workers, e.ops>>(generate(C));
    }
}

}  // namespace chimera
