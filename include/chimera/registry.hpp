// The schedule registry: one line per schedule. Each schedule describes
// itself in its own header (schedules/*.hpp, a schedule_entry: name,
// aliases, defaults, options, rules, N constraint, JSON params, checker
// hooks); this list is what generate, make_fixed, validate, compare,
// io/json, the checker and the command-line tools walk. It includes the
// descriptions only, never a generator (generators/*.hpp, reached through
// generate.hpp), so that the passes, which include it, include no generator.
// docs/adding-a-schedule.md: adding a schedule = its description and
// generator headers + one line here + one line in generate.hpp (+ its value
// in config.hpp's `algorithm`).
#pragma once

#include <array>
#include <optional>
#include <span>
#include <string_view>

#include "config.hpp"
#include "schedule_entry.hpp"
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

// In the order of the command line's lists and of `chimera-sched compare`.
inline constexpr const schedule_entry* schedule_registry[] = {
    &schedules::gpipe_entry,
    &schedules::one_f_one_b_entry,
    &schedules::chimera_entry,
    &schedules::interleaved_entry,
    &schedules::looped_bfs_entry,
    &schedules::gems_entry,
    &schedules::zb_h1_entry,
    &schedules::zb_h2_entry,
    &schedules::zb_v_entry,
    &schedules::dualpipe_entry,
    &schedules::dualpipev_entry,
};

namespace detail {
inline constexpr config_rule custom_rules[] = {
    {config_errc::custom_not_generated, "S1", "chimera rule S1: custom schedules are not generated",
     [](const rule_input&) { return true; },
     [](const rule_input&) { return std::string("custom schedules are built with schedule_builder, not generated"); }},
};
}  // namespace detail

// Not a generator: what validate says about a request for a custom schedule
// (schedule_builder and files make those).
inline constexpr schedule_entry custom_entry{
    .id = algorithm::custom,
    .name = "custom",
    .description = "built by hand",
    .fixed_pipelines = 0,  // any k, any scaling: the request is refused as a whole
    .takes_scaling = true,
    .rules = detail::custom_rules,
};

constexpr const schedule_entry* find_schedule(algorithm a) {
    for (const schedule_entry* e : schedule_registry)
        if (e->id == a) return e;
    return nullptr;
}
// By name or alias.
constexpr const schedule_entry* find_schedule(std::string_view name) {
    for (const schedule_entry* e : schedule_registry)
        if (e->answers_to(name)) return e;
    return nullptr;
}
// The registry's entry for c.schedule, or custom_entry.
constexpr const schedule_entry& entry_of(const config& c) {
    const schedule_entry* e = find_schedule(c.schedule);
    return e ? *e : custom_entry;
}

inline constexpr auto generated_algorithms = [] {
    std::array<algorithm, std::size(schedule_registry)> ids{};
    for (std::size_t i = 0; i < ids.size(); ++i) ids[i] = schedule_registry[i]->id;
    return ids;
}();

constexpr std::string_view to_string(algorithm a) {
    const schedule_entry* e = find_schedule(a);
    return e ? e->name : custom_entry.name;
}
constexpr std::optional<algorithm> parse_algorithm(std::string_view name) {
    const schedule_entry* e = find_schedule(name);
    return e ? std::optional<algorithm>(e->id) : std::nullopt;
}

// k after defaults are applied.
constexpr int pipeline_count(const config& c) { return pipeline_count(c, entry_of(c)); }
// Model chunks each worker holds in the stage chain (S = chunks * P).
constexpr int chunk_count(const config& c) { return chunk_count(c, entry_of(c)); }
// The config with defaults filled in: what a generated schedule records.
constexpr config normalized(const config& c) { return normalized(c, entry_of(c)); }

constexpr const config_rule* first_broken_rule(const config& c) { return first_broken_rule(c, entry_of(c)); }
// First rule a config breaks; ok when it is valid.
constexpr config_errc validate_code(const config& c) { return validate_code(c, entry_of(c)); }
// The sentence for a broken rule, with the values that broke it.
constexpr std::optional<config_error> validate(const config& c) { return validate(c, entry_of(c)); }
// Throws schedule_error naming the broken rule.
constexpr void require_valid(const config& c) { require_valid(c, entry_of(c)); }

}  // namespace chimera
