// What a user asks for: the parameters every generator reads, and the rules
// that make a request valid. A config is a structural type, so it can be a
// template argument (compile-time schedules) as well as a run-time value.
#pragma once

#include <algorithm>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "detail/text.hpp"
#include "error.hpp"

namespace chimera {

// New schedules are appended after custom so that existing values keep their numbers.
enum class algorithm : std::uint8_t {
    gpipe,
    one_f_one_b,
    chimera,
    custom,
    interleaved,  // Megatron virtual pipeline (schedules.md §4)
    looped_bfs,   // PyTorch LoopedBFS (§4)
    gems,         // two mirrored replicas, one micro-batch each in flight (§5)
    zb_h1,        // zero bubble, 1F1B memory (§6)
    zb_h2,        // zero bubble, about twice the memory (§7)
    zb_v,         // zero bubble, V placement (§8)
    dualpipe,     // DeepSeek, bidirectional with replicated stages (§9)
    dualpipev,    // DualPipe cut in half, V placement (§10)
};
inline constexpr algorithm generated_algorithms[] = {
    algorithm::gpipe, algorithm::one_f_one_b, algorithm::chimera,  algorithm::interleaved, algorithm::looped_bfs,
    algorithm::gems,  algorithm::zb_h1,       algorithm::zb_h2,    algorithm::zb_v,        algorithm::dualpipe,
    algorithm::dualpipev};

// Chimera's answers to N > D (chimera.md §7).
enum class scaling : std::uint8_t { direct, doubling, halving };

constexpr std::string_view to_string(algorithm a) {
    constexpr std::string_view names[] = {"gpipe", "1f1b",  "chimera", "custom",   "interleaved", "looped-bfs",
                                          "gems",  "zb-h1", "zb-h2",   "zb-v",     "dualpipe",    "dualpipev"};
    return names[static_cast<int>(a)];
}
constexpr std::string_view to_string(scaling s) {
    constexpr std::string_view names[] = {"direct", "doubling", "halving"};
    return names[static_cast<int>(s)];
}
constexpr std::optional<algorithm> parse_algorithm(std::string_view name) {
    for (auto a : generated_algorithms)
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
    int chunks = 2;          // v, model chunks per worker: interleaved and looped BFS (ZB-V, DualPipeV: exactly 2)
    int group_size = 0;      // interleaved: micro-batches per group g; 0 = derive (PyTorch rule, schedules.md §4)
    bool split_backward = false;  // chimera: split each B into I and W (zero-bubble Chimera)

    friend constexpr bool operator==(const config&, const config&) = default;
};

// k after defaults are applied.
constexpr int pipeline_count(const config& c) {
    if (c.pipelines != 0) return c.pipelines;
    const bool two = c.schedule == algorithm::chimera || c.schedule == algorithm::gems || c.schedule == algorithm::dualpipe;
    return two ? 2 : 1;
}

// Model chunks each worker holds in the stage chain (S = chunks * P).
constexpr int chunk_count(const config& c) {
    switch (c.schedule) {
        case algorithm::interleaved:
        case algorithm::looped_bfs: return c.chunks;
        case algorithm::zb_v:
        case algorithm::dualpipev: return 2;
        default: return 1;
    }
}

// Interleaved 1F1B's group size g: the user's, or PyTorch's derivation
// g = N / max(1, floor(N/P)) (schedules.md §4).
constexpr int interleaved_group_size(const config& c) {
    if (c.group_size != 0) return c.group_size;
    const int rounds = std::max(1, c.micro_batches / c.stages);
    return c.micro_batches / rounds;
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
    chunks_below_one,
    chunks_not_applicable,
    group_size_not_interleaved,
    interleaved_group_rule,
    interleaved_rounds_rule,
    split_backward_not_chimera,
    two_pipeline_schedule,
    dualpipe_odd_workers,
    dualpipe_odd_micro_batches,
    too_few_micro_batches,
};

// First rule a config breaks; ok when it is valid.
constexpr config_errc validate_code(const config& c) {
    const int k = pipeline_count(c);
    if (c.stages < 1) return config_errc::stages_below_one;
    if (c.micro_batches < 1) return config_errc::micro_batches_below_one;
    if (c.data_parallel < 1) return config_errc::data_parallel_below_one;
    const bool chunked = c.schedule == algorithm::interleaved || c.schedule == algorithm::looped_bfs;
    if (chunked && c.chunks < 1) return config_errc::chunks_below_one;
    if (static_cast<long long>(c.stages) * chunk_count(c) * c.micro_batches > max_stage_micro_batch_product)
        return config_errc::too_large;
    if (!chunked && c.chunks != 2) return config_errc::chunks_not_applicable;
    if (c.group_size != 0 && c.schedule != algorithm::interleaved) return config_errc::group_size_not_interleaved;
    if (c.split_backward && c.schedule != algorithm::chimera) return config_errc::split_backward_not_chimera;
    // (gpipe and 1f1b check scaling after k below, as before the zoo was added)
    if (c.scaling_mode != scaling::direct && c.schedule > algorithm::custom) return config_errc::scaling_not_chimera;
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
        case algorithm::interleaved: {
            if (k != 1) return config_errc::single_chain_pipelines;
            const int n = c.micro_batches, p = c.stages, g = c.group_size;
            if (g != 0) {  // Megatron's rule for a chosen g
                if (g < p || g > n || (n % g != 0 && n % g < p)) return config_errc::interleaved_group_rule;
            } else if (n % std::max(1, n / p) != 0) {
                return config_errc::interleaved_rounds_rule;
            }
            return config_errc::ok;
        }
        case algorithm::looped_bfs:
        case algorithm::zb_h1:
        case algorithm::zb_h2:
        case algorithm::zb_v:
            return k != 1 ? config_errc::single_chain_pipelines : config_errc::ok;
        case algorithm::dualpipev:
            if (k != 1) return config_errc::single_chain_pipelines;
            if (c.micro_batches < 2 * c.stages) return config_errc::too_few_micro_batches;
            return config_errc::ok;
        case algorithm::gems:
            return k != 2 ? config_errc::two_pipeline_schedule : config_errc::ok;
        case algorithm::dualpipe:
            if (k != 2) return config_errc::two_pipeline_schedule;
            if (c.stages % 2 != 0) return config_errc::dualpipe_odd_workers;
            if (c.micro_batches % 2 != 0) return config_errc::dualpipe_odd_micro_batches;
            if (c.micro_batches < 2 * c.stages) return config_errc::too_few_micro_batches;
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
        case config_errc::chunks_below_one:
            return config_error{"S1", cat(name, ": chunks per worker v must be >= 1 (got ", c.chunks, ")")};
        case config_errc::chunks_not_applicable:
            return config_error{"S1", cat(name, ": chunks apply to interleaved and looped-bfs only (zb-v and dualpipev "
                                                "hold exactly 2 per worker); got chunks=", c.chunks)};
        case config_errc::group_size_not_interleaved:
            return config_error{"S1", cat(name, ": a group size applies to interleaved only (got group_size=",
                                          c.group_size, ")")};
        case config_errc::interleaved_group_rule:
            return config_error{"S1", cat("interleaved: Megatron's group rule needs P <= g <= N and (N mod g = 0 or "
                                          "N mod g >= P) (schedules.md §4); got P=", c.stages, ", N=", c.micro_batches,
                                          ", g=", c.group_size, ", N mod g=",
                                          c.group_size > 0 ? c.micro_batches % c.group_size : 0,
                                          "; smaller groups stall in dependency bubbles")};
        case config_errc::interleaved_rounds_rule:
            return config_error{"S1", cat("interleaved: PyTorch's rule needs N mod rounds = 0 with rounds = max(1, "
                                          "floor(N/P)) (schedules.md §4); got P=", c.stages, ", N=", c.micro_batches,
                                          ", rounds=", std::max(1, c.micro_batches / c.stages),
                                          "; pick N as a multiple of P, or a group size g satisfying Megatron's "
                                          "rule")};
        case config_errc::split_backward_not_chimera:
            return config_error{"S1", cat(name, ": split backward is an option of chimera only (zb-*, dualpipe and "
                                                "dualpipev split it by construction)")};
        case config_errc::two_pipeline_schedule:
            return config_error{"S1", cat(name, " has exactly two pipelines (down and up): k must be 2 (got k=", k,
                                          ")")};
        case config_errc::dualpipe_odd_workers:
            return config_error{"S1", cat("dualpipe: the number of workers P = D must be even (got ", c.stages,
                                          "); each half of the workers starts one direction")};
        case config_errc::dualpipe_odd_micro_batches:
            return config_error{"S1", cat("dualpipe: N must be even, N/2 per direction (got N=", c.micro_batches, ")")};
        case config_errc::too_few_micro_batches:
            return config_error{"S1", cat(name, ": needs N >= 2P micro-batches to fill its steady phase (got N=",
                                          c.micro_batches, ", P=", c.stages, ")")};
    }
    return std::nullopt;
}

// Throws schedule_error naming the broken rule; generators call it first.
constexpr void require_valid(const config& c) {
    if (auto error = validate(c)) throw schedule_error(error->rule, error->message);
}

}  // namespace chimera
