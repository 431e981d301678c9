// How a schedule describes itself to the rest of the library, once, in its
// own header (schedules/*.hpp): name and aliases, defaults, the options it
// takes, its validation rules, its N constraint in words, the config fields
// it echoes under "params" in JSON and, optionally, checker hooks and a
// closed-form unit-time slot. registry.hpp lists the entries; generate,
// make_fixed, validate, compare, io/json, the checker and the command-line
// tools read them. An entry names no generator: the generator
// (generators/*.hpp) reads its entry, and generate.hpp maps each entry to
// its generator, so that the passes, which read entries, include no
// generator. docs/adding-a-schedule.md walks through it.
//
// The rules every schedule shares (D, N, W >= 1, size limit, options a
// schedule does not take, a fixed pipeline count) are here, once.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "config.hpp"
#include "detail/text.hpp"
#include "error.hpp"
#include "op.hpp"
#include "schedule.hpp"

namespace chimera {

struct schedule_entry;

// What a rule sees: the request, the entry it is checked against, and the
// pipeline count k and chunks per worker v after defaults.
struct rule_input {
    const config& c;
    const schedule_entry& entry;
    int k = 1;
    int v = 1;
};

// One validation rule. `summary` is a string literal that starts with
// "chimera rule <id>: ": make_fixed prints it when a compile-time config
// breaks the rule; `message` is the run-time sentence with the values and
// the fix.
struct config_rule {
    config_errc code = config_errc::schedule_rule;
    std::string_view id = "S1";
    std::string_view summary{};
    bool (*broken)(const rule_input&) = nullptr;
    std::string (*message)(const rule_input&) = nullptr;
};

// A key a schedule writes under "params" (JSON), after "pipelines" and
// before "data_parallel", in the entry's order. Fields are read back;
// derived values are written for the reader's benefit and ignored on input.
struct param_field {
    enum class type : std::uint8_t { integer, flag_if_set, scaling_mode, derived };
    std::string_view key{};
    type kind = type::integer;
    int config::*integer = nullptr;         // integer
    bool config::*flag = nullptr;           // flag_if_set: written only when true
    int (*derive)(const config&) = nullptr;  // derived
};

// A checker finding: the rule id, where, and a sentence with the values.
struct diagnostic {
    std::string_view rule;  // "S5", "D4", ...
    int worker = -1;        // -1: not about one worker
    int index = -1;         // position in the worker's op list, -1: not about one op
    std::string message;
};

// The shape of a schedule without its op lists: what a closed-form slot
// formula reads (fixed and dynamic schedules alike).
struct schedule_shape {
    std::string_view name_;
    config params_;
    int stages_ = 0, micro_batches_ = 0, pipelines_ = 0, workers_ = 0;

    constexpr std::string_view name() const { return name_; }
    constexpr const config& params() const { return params_; }
    constexpr int stages() const { return stages_; }
    constexpr int micro_batches() const { return micro_batches_; }
    constexpr int pipelines() const { return pipelines_; }
    constexpr int workers() const { return workers_; }
};

template <schedule_like S>
constexpr schedule_shape shape_of(const S& s) {
    return {s.name(), s.params(), s.stages(), s.micro_batches(), s.pipelines(), s.workers()};
}

// A setting `chimera-sched compare` shows as a row of its own ("k=4 direct").
struct schedule_variant {
    std::string_view label{};
    config (*apply)(config) = nullptr;
};

struct schedule_entry {
    algorithm id = algorithm::custom;
    std::string_view name{};                     // as on the command line and in files
    std::span<const std::string_view> aliases{}; // other accepted names
    std::string_view description{};              // one line for --help and docs
    int default_pipelines = 1;                   // k when config::pipelines is 0
    int fixed_pipelines = 1;                     // k must equal this; 0: the schedule's own rules decide
    int chunks = 1;                              // chunks per worker; 0: config::chunks (the user's v)
    bool takes_group_size = false;
    bool takes_split_backward = false;
    bool takes_scaling = false;
    std::span<const config_rule> rules{};        // after the shared ones, in order
    std::string_view n_constraint{};             // the N rule in one short sentence
    std::span<const param_field> params{};
    std::span<const schedule_variant> variants{};  // compare's rows; empty: one row at the defaults
    // Checker hooks (optional), run on schedules whose name and params name
    // this entry: shape rules before the op checks, invariants after them
    // (given the ASAP span with unit costs). D3 also checks, per (pipeline,
    // stage), that backwards run in the order of the forwards when set.
    void (*check_shape)(const schedule&, std::vector<diagnostic>&) = nullptr;
    void (*check_invariants)(const schedule&, double asap_span, std::vector<diagnostic>&) = nullptr;
    bool backward_fifo = false;
    // Closed-form unit-time slot of a compute op, where it applies.
    bool (*has_unit_slots)(const schedule_shape&) = nullptr;
    int (*unit_slot)(const schedule_shape&, const op&) = nullptr;

    constexpr bool takes_chunks() const { return chunks == 0; }
    constexpr bool answers_to(std::string_view text) const {
        if (text == name) return true;
        for (std::string_view alias : aliases)
            if (text == alias) return true;
        return false;
    }
};

// k and v after defaults, and the config with k filled in (what a generated
// schedule records).
constexpr int pipeline_count(const config& c, const schedule_entry& e) {
    return c.pipelines != 0 ? c.pipelines : e.default_pipelines;
}
constexpr int chunk_count(const config& c, const schedule_entry& e) { return e.takes_chunks() ? c.chunks : e.chunks; }
constexpr config normalized(config c, const schedule_entry& e) {
    c.pipelines = pipeline_count(c, e);
    return c;
}

namespace detail {

constexpr std::string_view who(const rule_input& x) { return x.entry.name; }

// Shared by every schedule, checked first, in this order.
inline constexpr config_rule shared_rules[] = {
    {config_errc::stages_below_one, "S1", "chimera rule S1: stages D must be >= 1",
     [](const rule_input& x) { return x.c.stages < 1; },
     [](const rule_input& x) { return cat(who(x), ": stages D must be >= 1 (got ", x.c.stages, ")"); }},
    {config_errc::micro_batches_below_one, "S1", "chimera rule S1: micro-batches N must be >= 1",
     [](const rule_input& x) { return x.c.micro_batches < 1; },
     [](const rule_input& x) { return cat(who(x), ": micro-batches N must be >= 1 (got ", x.c.micro_batches, ")"); }},
    {config_errc::data_parallel_below_one, "S1", "chimera rule S1: data-parallel width W must be >= 1",
     [](const rule_input& x) { return x.c.data_parallel < 1; },
     [](const rule_input& x) { return cat(who(x), ": data-parallel width W must be >= 1 (got ", x.c.data_parallel, ")"); }},
    {config_errc::chunks_below_one, "S1", "chimera rule S1: chunks per worker v must be >= 1",
     [](const rule_input& x) { return x.entry.takes_chunks() && x.c.chunks < 1; },
     [](const rule_input& x) { return cat(who(x), ": chunks per worker v must be >= 1 (got ", x.c.chunks, ")"); }},
    {config_errc::too_large, "S1", "chimera rule S1: D*N is too large",
     [](const rule_input& x) {
         return static_cast<long long>(x.c.stages) * x.v * x.c.micro_batches > max_stage_micro_batch_product;
     },
     [](const rule_input& x) {
         if (x.v != 1)
             return cat(who(x), ": D*v*N must be <= ", max_stage_micro_batch_product, " (got D=", x.c.stages,
                        ", v=", x.v, ", N=", x.c.micro_batches, ")");
         return cat(who(x), ": D*N must be <= ", max_stage_micro_batch_product, " (got D=", x.c.stages,
                    ", N=", x.c.micro_batches, ")");
     }},
    {config_errc::chunks_not_applicable, "S1",
     "chimera rule S1: chunks apply to interleaved and looped-bfs only (zb-v, dualpipev: exactly 2)",
     [](const rule_input& x) { return !x.entry.takes_chunks() && x.c.chunks != 2; },
     [](const rule_input& x) {
         return cat(who(x), ": chunks apply to interleaved and looped-bfs only (zb-v and dualpipev hold exactly 2 "
                            "per worker); got chunks=", x.c.chunks);
     }},
    {config_errc::group_size_not_interleaved, "S1", "chimera rule S1: a group size applies to interleaved only",
     [](const rule_input& x) { return !x.entry.takes_group_size && x.c.group_size != 0; },
     [](const rule_input& x) {
         return cat(who(x), ": a group size applies to interleaved only (got group_size=", x.c.group_size, ")");
     }},
    {config_errc::split_backward_not_chimera, "S1", "chimera rule S1: split backward is a chimera option",
     [](const rule_input& x) { return !x.entry.takes_split_backward && x.c.split_backward; },
     [](const rule_input& x) {
         return cat(who(x), ": split backward is an option of chimera only (zb-*, dualpipe and dualpipev split it "
                            "by construction)");
     }},
    {config_errc::scaling_not_chimera, "S1", "chimera rule S1: doubling/halving exist only for chimera",
     [](const rule_input& x) { return !x.entry.takes_scaling && x.c.scaling_mode != scaling::direct; },
     [](const rule_input& x) {
         return cat(who(x), ": scaling mode '", to_string(x.c.scaling_mode), "' exists only for chimera; use direct");
     }},
    {config_errc::single_chain_pipelines, "S1", "chimera rule S1: this schedule has exactly one pipeline (k = 1)",
     [](const rule_input& x) { return x.entry.fixed_pipelines == 1 && x.k != 1; },
     [](const rule_input& x) { return cat(who(x), " is a single pipeline: k must be 1 (got k=", x.k, ")"); }},
    {config_errc::two_pipeline_schedule, "S1", "chimera rule S1: this schedule has exactly 2 pipelines (k = 2)",
     [](const rule_input& x) { return x.entry.fixed_pipelines == 2 && x.k != 2; },
     [](const rule_input& x) {
         return cat(who(x), " has exactly two pipelines (down and up): k must be 2 (got k=", x.k, ")");
     }},
};

}  // namespace detail

// The first rule `c` breaks as a request for schedule `e` (shared rules
// first, then the schedule's own); nullptr when it is valid.
constexpr const config_rule* first_broken_rule(const config& c, const schedule_entry& e) {
    const rule_input x{c, e, pipeline_count(c, e), chunk_count(c, e)};
    for (const config_rule& r : detail::shared_rules)
        if (r.broken(x)) return &r;
    for (const config_rule& r : e.rules)
        if (r.broken(x)) return &r;
    return nullptr;
}

constexpr config_errc validate_code(const config& c, const schedule_entry& e) {
    const config_rule* r = first_broken_rule(c, e);
    return r ? r->code : config_errc::ok;
}

constexpr std::optional<config_error> validate(const config& c, const schedule_entry& e) {
    const config_rule* r = first_broken_rule(c, e);
    if (!r) return std::nullopt;
    return config_error{r->id, r->message({c, e, pipeline_count(c, e), chunk_count(c, e)})};
}

// Throws schedule_error naming the broken rule; generators call it first.
constexpr void require_valid(const config& c, const schedule_entry& e) {
    if (auto error = validate(c, e)) throw schedule_error(error->rule, error->message);
}

}  // namespace chimera
