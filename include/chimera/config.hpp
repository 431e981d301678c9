// What a user asks for: the parameters every generator reads, and the rules
// that make a request valid. A config is a structural type, so it can be a
// template argument (compile-time schedules) as well as a run-time value.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "detail/text.hpp"
#include "error.hpp"

namespace chimera {

enum class algorithm : std::uint8_t { gpipe, one_f_one_b, chimera, custom };

// Chimera's answers to N > D (chimera.md §7).
enum class scaling : std::uint8_t { direct, doubling, halving };

constexpr std::string_view to_string(algorithm a) {
    constexpr std::string_view names[] = {"gpipe", "1f1b", "chimera", "custom"};
    return names[static_cast<int>(a)];
}
constexpr std::string_view to_string(scaling s) {
    constexpr std::string_view names[] = {"direct", "doubling", "halving"};
    return names[static_cast<int>(s)];
}
constexpr std::optional<algorithm> parse_algorithm(std::string_view name) {
    for (auto a : {algorithm::gpipe, algorithm::one_f_one_b, algorithm::chimera})
        if (to_string(a) == name) return a;
    return std::nullopt;
}
constexpr std::optional<scaling> parse_scaling(std::string_view name) {
    for (auto s : {scaling::direct, scaling::doubling, scaling::halving})
        if (to_string(s) == name) return s;
    return std::nullopt;
}

struct config {
    algorithm schedule = algorithm::chimera;
    int stages = 4;          // D
    int micro_batches = 4;   // N requested (halving splits each into two, chimera.md §7.3)
    int pipelines = 0;       // k; 0 = the algorithm's default (2 for Chimera, 1 otherwise)
    scaling scaling_mode = scaling::direct;
    int data_parallel = 1;   // W

    friend constexpr bool operator==(const config&, const config&) = default;
};

// k after defaults are applied.
constexpr int pipeline_count(const config& c) {
    if (c.pipelines != 0) return c.pipelines;
    return c.schedule == algorithm::chimera ? 2 : 1;
}

// The config with defaults filled in: what a generated schedule records.
constexpr config normalized(config c) {
    c.pipelines = pipeline_count(c);
    return c;
}

// Upper bound on stages * micro-batches so that op counts and slots fit in
// 32-bit fields with room to spare (2^24 ops per worker list is far beyond
// any real training iteration).
inline constexpr long long max_stage_micro_batch_product = 1LL << 24;

enum class config_errc : std::uint8_t {
    ok,
    stages_below_one,
    micro_batches_below_one,
    data_parallel_below_one,
    too_large,
    odd_stages,
    pipelines_odd,
    pipelines_not_dividing,
    single_chain_pipelines,
    scaling_not_chimera,
    scaling_needs_two_pipelines,
    custom_not_generated,
};

// First rule a config breaks; ok when it is valid.
constexpr config_errc validate_code(const config& c) {
    const int k = pipeline_count(c);
    if (c.stages < 1) return config_errc::stages_below_one;
    if (c.micro_batches < 1) return config_errc::micro_batches_below_one;
    if (c.data_parallel < 1) return config_errc::data_parallel_below_one;
    if (static_cast<long long>(c.stages) * c.micro_batches > max_stage_micro_batch_product)
        return config_errc::too_large;
    switch (c.schedule) {
        case algorithm::custom: return config_errc::custom_not_generated;
        case algorithm::gpipe:
        case algorithm::one_f_one_b:
            if (k != 1) return config_errc::single_chain_pipelines;
            if (c.scaling_mode != scaling::direct) return config_errc::scaling_not_chimera;
            return config_errc::ok;
        case algorithm::chimera:
            if (c.stages % 2 != 0 || c.stages < 2) return config_errc::odd_stages;
            if (k < 2 || k % 2 != 0) return config_errc::pipelines_odd;
            if ((c.stages / 2) % (k / 2) != 0) return config_errc::pipelines_not_dividing;
            if (c.scaling_mode != scaling::direct && k != 2) return config_errc::scaling_needs_two_pipelines;
            return config_errc::ok;
    }
    return config_errc::ok;
}

struct config_error {
    std::string_view rule;  // "S1" for every parameter rule (chimera.md §11)
    std::string message;
};

// The sentence for a broken rule, with the values that broke it.
constexpr std::optional<config_error> validate(const config& c) {
    using detail::cat;
    const int k = pipeline_count(c);
    const std::string_view name = to_string(c.schedule);
    switch (validate_code(c)) {
        case config_errc::ok: return std::nullopt;
        case config_errc::stages_below_one:
            return config_error{"S1", cat(name, ": stages D must be >= 1 (got ", c.stages, ")")};
        case config_errc::micro_batches_below_one:
            return config_error{"S1", cat(name, ": micro-batches N must be >= 1 (got ", c.micro_batches, ")")};
        case config_errc::data_parallel_below_one:
            return config_error{"S1", cat(name, ": data-parallel width W must be >= 1 (got ", c.data_parallel, ")")};
        case config_errc::too_large:
            return config_error{"S1", cat(name, ": D*N must be <= ", max_stage_micro_batch_product, " (got D=",
                                          c.stages, ", N=", c.micro_batches, ")")};
        case config_errc::odd_stages:
            return config_error{
                "S1", cat("chimera: D must be even (got ", c.stages,
                          "); with odd D the middle worker would hold the same stage of both directions and two "
                          "ops would need the same slot")};
        case config_errc::pipelines_odd:
            return config_error{"S1", cat("chimera: the number of pipelines k must be even, k = 2f with f >= 1 (got k=",
                                          k, ")")};
        case config_errc::pipelines_not_dividing:
            return config_error{"S1", cat("chimera: f=", k / 2, " must divide D/2=", c.stages / 2, " (k=", k,
                                          " pipelines, D=", c.stages, ")")};
        case config_errc::single_chain_pipelines:
            return config_error{"S1", cat(name, " is a single pipeline: k must be 1 (got k=", k, ")")};
        case config_errc::scaling_not_chimera:
            return config_error{"S1", cat(name, ": scaling mode '", to_string(c.scaling_mode),
                                          "' exists only for chimera; use direct")};
        case config_errc::scaling_needs_two_pipelines:
            return config_error{"S1", cat("chimera: scaling mode '", to_string(c.scaling_mode),
                                          "' is defined for k=2 pipelines only (got k=", k, ")")};
        case config_errc::custom_not_generated:
            return config_error{"S1", "custom schedules are built with schedule_builder, not generated"};
    }
    return std::nullopt;
}

// Throws schedule_error naming the broken rule; generators call it first.
constexpr void require_valid(const config& c) {
    if (auto error = validate(c)) throw schedule_error(error->rule, error->message);
}

}  // namespace chimera
