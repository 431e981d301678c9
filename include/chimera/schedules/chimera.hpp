// Chimera with k = 2f bidirectional pipelines (chimera.md §2-§7).
//
// direct:   the closed form of §5 (every op has a unit-time slot, a worker
//           runs its ops sorted by slot); units concatenate with a 2D shift.
// doubling: the phase form of §7.2 (two forwards of one pipeline per step).
// halving:  the doubling order over 2N half-size micro-batches (§7.3).
// split_backward: the same F/B order through the zero-bubble pass
//           (split_backward.hpp), W passes in the bubbles.
// Any N >= 1: build for the next multiple of the granule and drop the
// missing micro-batches round-robin over the pipelines (§4).
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

#include "../config.hpp"
#include "../dependencies.hpp"
#include "../error.hpp"
#include "../placement.hpp"
#include "../schedule.hpp"
#include "../schedule_entry.hpp"
#include "split_backward.hpp"

namespace chimera::schedules {

// Chimera's parameter rules (after the shared ones of schedule_entry.hpp).
inline constexpr config_rule chimera_rules[] = {
    {config_errc::odd_stages, "S1",
     "chimera rule S1: D must be even for Chimera (with odd D the middle worker would hold the same stage of both "
     "directions)",
     [](const rule_input& x) { return x.c.stages % 2 != 0 || x.c.stages < 2; },
     [](const rule_input& x) {
         return ::chimera::detail::cat("chimera: D must be even (got ", x.c.stages,
                                       "); with odd D the middle worker would hold the same stage of both directions "
                                       "and two ops would need the same slot");
     }},
    {config_errc::pipelines_odd, "S1", "chimera rule S1: Chimera needs an even number of pipelines k = 2f",
     [](const rule_input& x) { return x.k < 2 || x.k % 2 != 0; },
     [](const rule_input& x) {
         return ::chimera::detail::cat(
             "chimera: the number of pipelines k must be even, k = 2f with f >= 1 (got k=", x.k, ")");
     }},
    {config_errc::pipelines_not_dividing, "S1", "chimera rule S1: f = k/2 must divide D/2",
     [](const rule_input& x) { return (x.c.stages / 2) % (x.k / 2) != 0; },
     [](const rule_input& x) {
         return ::chimera::detail::cat("chimera: f=", x.k / 2, " must divide D/2=", x.c.stages / 2, " (k=", x.k,
                                       " pipelines, D=", x.c.stages, ")");
     }},
    {config_errc::scaling_needs_two_pipelines, "S1",
     "chimera rule S1: doubling/halving are defined for k = 2 pipelines only",
     [](const rule_input& x) { return x.c.scaling_mode != scaling::direct && x.k != 2; },
     [](const rule_input& x) {
         return ::chimera::detail::cat("chimera: scaling mode '", to_string(x.c.scaling_mode),
                                       "' is defined for k=2 pipelines only (got k=", x.k, ")");
     }},
};

constexpr int chimera_f(const config& c);
inline constexpr param_field chimera_params[] = {
    {"f", param_field::type::derived, nullptr, nullptr, chimera_f},
    {"scaling", param_field::type::scaling_mode},
    {"split_backward", param_field::type::flag_if_set, nullptr, &config::split_backward},
};

// Chimera at its settings worth comparing: k = 2 and 4, direct and
// doubling, and zero-bubble Chimera (split backward).
inline constexpr schedule_variant chimera_variants[] = {
    {"k=2 direct", [](config c) { return c; }},
    {"k=2 doubling", [](config c) { return c.scaling_mode = scaling::doubling, c; }},
    {"k=4 direct", [](config c) { return c.pipelines = 4, c; }},
    {"--split-backward k=2", [](config c) { return c.split_backward = true, c; }},
    {"--split-backward k=4", [](config c) { return c.split_backward = true, c.pipelines = 4, c; }},
};

constexpr schedule chimera(const config& requested);
constexpr void check_chimera_shape(const schedule& s, std::vector<diagnostic>& out);
constexpr void check_chimera_invariants(const schedule& s, double asap_span, std::vector<diagnostic>& out);
constexpr bool chimera_has_unit_slots(const schedule_shape& s);
constexpr int chimera_unit_slot(const schedule_shape& s, const op& o);

inline constexpr schedule_entry chimera_entry{
    .id = algorithm::chimera,
    .name = "chimera",
    .description = "Chimera: k = 2f bidirectional pipelines over the same workers (direct, doubling, halving)",
    .default_pipelines = 2,
    .fixed_pipelines = 0,
    .takes_split_backward = true,
    .takes_scaling = true,
    .rules = chimera_rules,
    .n_constraint = "Any N >= 1; D must be even and f = k/2 must divide D/2.",
    .params = chimera_params,
    .variants = chimera_variants,
    .generate = chimera,
    .check_shape = check_chimera_shape,
    .check_invariants = check_chimera_invariants,
    .backward_fifo = true,
    .has_unit_slots = chimera_has_unit_slots,
    .unit_slot = chimera_unit_slot,
};

constexpr int chimera_f(const config& c) { return pipeline_count(c, chimera_entry) / 2; }

namespace detail {

// Micro-batches the schedule carries: halving splits each requested one.
constexpr int chimera_micro_batches(const config& c) {
    return c.scaling_mode == scaling::halving ? 2 * c.micro_batches : c.micro_batches;
}

struct chimera_layout {
    int stages = 0;           // D
    int pipelines = 0;        // k
    int per_pipeline = 0;     // m_p = D / k micro-batches per pipeline per basic unit
    int granule = 0;          // D (direct) or 2D (doubling, halving)
    int padded = 0;           // N' = ceil(N / granule) * granule
    std::vector<int> new_id;  // original id in [0, N') -> kept id in [0, N), or -1 if dropped

    constexpr int pipeline_of_original(int m) const { return (m % stages) / per_pipeline; }
};

constexpr chimera_layout make_chimera_layout(const config& c) {
    chimera_layout l;
    l.stages = c.stages;
    l.pipelines = pipeline_count(c, chimera_entry);
    l.per_pipeline = l.stages / l.pipelines;
    l.granule = c.scaling_mode == scaling::direct ? l.stages : 2 * l.stages;
    const int n = chimera_micro_batches(c);
    l.padded = (n + l.granule - 1) / l.granule * l.granule;
    const int last_base = n / l.granule * l.granule;  // first id of the incomplete granule
    const int remainder = n - last_base;
    const int f = l.pipelines / 2;
    l.new_id.assign(static_cast<std::size_t>(l.padded), -1);
    int next = 0;
    for (int m = 0; m < l.padded; ++m) {
        bool keep = m < last_base;
        if (!keep && remainder > 0 && m < last_base + l.granule) {
            const int p = l.pipeline_of_original(m);
            // FIFO position inside the pipeline's block of this granule.
            const int position = (m - last_base) / l.stages * l.per_pipeline + (m % l.stages - p * l.per_pipeline);
            // Round-robin order down_0, up_0, down_1, up_1, ... keeps directions balanced.
            const int turn = p < f ? 2 * p : 2 * (p - f) + 1;
            const int count = remainder / l.pipelines + (turn < remainder % l.pipelines ? 1 : 0);
            keep = position < count;
        }
        if (keep) l.new_id[static_cast<std::size_t>(m)] = next++;
    }
    return l;
}

constexpr void chimera_direct_ops(schedule& s, const chimera_layout& l) {
    const int d = l.stages;
    const int span = 2 * l.padded + 2 * l.per_pipeline - 2;  // 2N' + D/f - 2
    const int units = l.padded / d;
    std::vector<op> by_slot(static_cast<std::size_t>(span));
    std::vector<std::uint8_t> taken(static_cast<std::size_t>(span));  // not vector<bool>: clang cannot evaluate it in constexpr
    for (int w = 0; w < d; ++w) {
        std::fill(taken.begin(), taken.end(), std::uint8_t{0});
        for (int p = 0; p < l.pipelines; ++p) {
            const int st = chimera_stage(d, l.pipelines, p, w);
            for (int u = 0; u < units; ++u)
                for (int j = 0; j < l.per_pipeline; ++j) {
                    const int id = l.new_id[static_cast<std::size_t>(u * d + p * l.per_pipeline + j)];
                    if (id < 0) continue;
                    const int f_slot = st + 2 * j + 2 * d * u;
                    const int b_slot = 2 * d - 1 - st + 2 * j + 2 * d * u;
                    for (auto [slot, o] : {std::pair{f_slot, forward(p, id, st)}, std::pair{b_slot, backward(p, id, st)}}) {
                        // Never overwrite: a collision is a generator bug (chimera.md §13.1).
                        if (taken[static_cast<std::size_t>(slot)])
                            throw schedule_error("T1", ::chimera::detail::cat("chimera: internal error, two ops of worker ",
                                                                              w, " need slot ", slot));
                        taken[static_cast<std::size_t>(slot)] = true;
                        by_slot[static_cast<std::size_t>(slot)] = o;
                    }
                }
        }
        s.add_worker();
        for (int slot = 0; slot < span; ++slot)
            if (taken[static_cast<std::size_t>(slot)]) s.push_op(by_slot[static_cast<std::size_t>(slot)]);
    }
}

struct phase_step {
    op_kind kind = op_kind::F;
    int pipeline = 0;
};

// The phase form of forward doubling (chimera.md §7.2), f = 1: the kind and
// pipeline of every op of worker w over `doubled_units` doubled units, in
// order; micro-batches are taken FIFO per pipeline. Halving runs the same
// order over twice the micro-batches.
constexpr std::vector<phase_step> doubling_phase_order(int d, int w, int doubled_units) {
    const int half = d / 2;
    const int m = std::min(w, d - 1 - w);
    const int a = half - m, b = m, c = b + half;
    const int own = w < half ? 0 : 1;  // the pipeline whose stage here is < D/2
    const int other = 1 - own;
    std::vector<phase_step> out;
    auto put = [&](op_kind kind, int p) { out.push_back({kind, p}); };
    for (int v = 0; v < doubled_units; ++v) {
        for (int r = 0; r < a; ++r) {
            if (v > 0) put(op_kind::B, own);
            put(op_kind::F, own), put(op_kind::F, own);
        }
        for (int r = 0; r < b; ++r)
            put(op_kind::F, other), put(op_kind::F, other), put(op_kind::F, own), put(op_kind::F, own);
        for (int r = 0; r < a; ++r) put(op_kind::F, other), put(op_kind::F, other), put(op_kind::B, other);
        for (int r = 0; r < c; ++r) put(op_kind::B, own), put(op_kind::B, other);
    }
    for (int r = 0; r < a; ++r) put(op_kind::B, own);
    return out;
}

constexpr void chimera_doubling_ops(schedule& s, const chimera_layout& l) {
    const int d = l.stages;
    const int half = d / 2;
    for (int w = 0; w < d; ++w) {
        const int stage_of[2] = {w, d - 1 - w};
        int next[2][2] = {};  // [F, B][pipeline]: FIFO position
        s.add_worker();
        for (const phase_step& step : doubling_phase_order(d, w, l.padded / (2 * d))) {
            const int i = next[step.kind == op_kind::F ? 0 : 1][step.pipeline]++;
            const int original = i / half * d + step.pipeline * half + i % half;
            const int id = l.new_id[static_cast<std::size_t>(original)];
            if (id >= 0) s.push_op(op{step.kind, stage_of[step.pipeline], id, step.pipeline, no_peer});
        }
    }
}

}  // namespace detail

constexpr schedule chimera(const config& requested) {
    require_valid(requested, chimera_entry);
    const config c = normalized(requested, chimera_entry);
    const detail::chimera_layout l = detail::make_chimera_layout(c);
    schedule s;
    s.set_shape(chimera_entry.name, c.stages, detail::chimera_micro_batches(c), l.pipelines, c);
    for (int p = 0; p < l.pipelines; ++p)
        for (int st = 0; st < c.stages; ++st) s.set_placement(p, st, chimera_worker(c.stages, l.pipelines, p, st));
    for (int m = 0; m < l.padded; ++m)
        if (l.new_id[static_cast<std::size_t>(m)] >= 0)
            s.set_pipeline_of(l.new_id[static_cast<std::size_t>(m)], l.pipeline_of_original(m));
    if (c.scaling_mode == scaling::direct)
        detail::chimera_direct_ops(s, l);
    else
        detail::chimera_doubling_ops(s, l);
    // Zero-bubble Chimera: every worker may hold as many micro-batches as it
    // does without the split, so the W passes cost no extra memory.
    if (c.split_backward) return split_backward(s, peak_activations(s));
    return s;
}

// Closed-form unit-time slot of an op of a Chimera schedule in direct mode
// with full units (chimera.md §5): the slot it has in the paper's figures.
template <class S>
constexpr int chimera_slot(const S& s, const op& o) {
    const int d = s.stages();
    const int per_pipeline = d / s.pipelines();
    const int unit = o.micro_batch / d;
    const int j = o.micro_batch % d - o.pipeline * per_pipeline;
    const int base = o.kind == op_kind::F ? o.stage : 2 * d - 1 - o.stage;
    return base + 2 * j + 2 * d * unit;
}

// True when chimera_slot applies: a Chimera schedule in direct mode with full
// units whose shape matches valid params (a file can claim anything).
template <class S>
constexpr bool has_closed_form(const S& s) {
    const config& c = s.params();
    return s.name() == chimera_entry.name && c.schedule == algorithm::chimera && c.scaling_mode == scaling::direct &&
           !c.split_backward && validate_code(c, chimera_entry) == config_errc::ok && s.stages() == c.stages &&
           s.workers() == c.stages && s.pipelines() == pipeline_count(c, chimera_entry) &&
           s.micro_batches() == c.micro_batches && s.micro_batches() % s.stages() == 0;
}

constexpr bool chimera_has_unit_slots(const schedule_shape& s) { return has_closed_form(s); }
constexpr int chimera_unit_slot(const schedule_shape& s, const op& o) { return chimera_slot(s, o); }

}  // namespace chimera::schedules

#include "chimera_invariants.hpp"  // the checker hooks declared above
