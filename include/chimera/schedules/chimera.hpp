// Chimera with k = 2f bidirectional pipelines (docs/design/chimera-closed-form.md#placement to #more-micro-batches-than-stages), described:
// its entry and rules, and the closed forms the generator
// (generators/chimera.hpp) and the checker share: the micro-batch layout,
// the unit-time slot of direct mode, the phase order of doubling and
// halving, and the invariants (chimera_invariants.hpp).
//
// direct:   the closed form of docs/design/chimera-closed-form.md#the-closed-form (every op has a unit-time slot, a worker
//           runs its ops sorted by slot); units concatenate with a 2D shift.
// doubling: the phase form of docs/design/chimera-closed-form.md#forward-doubling (two forwards of one pipeline per step).
// halving:  the doubling order over 2N half-size micro-batches (docs/design/chimera-closed-form.md#backward-halving).
// split_backward: the same F/B order through the zero-bubble pass
//           (generators/split_backward.hpp), W passes in the bubbles.
// Any N >= 1: build for the next multiple of the granule and drop the
// missing micro-batches round-robin over the pipelines (docs/design/chimera-closed-form.md#parameter-rules-and-any-n).
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

struct phase_step {
    op_kind kind = op_kind::F;
    int pipeline = 0;
};

// The phase form of forward doubling (docs/design/chimera-closed-form.md#forward-doubling), f = 1: the kind and
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

}  // namespace detail

// Closed-form unit-time slot of an op of a Chimera schedule in direct mode
// with full units (docs/design/chimera-closed-form.md#the-closed-form): the slot it has in the paper's figures.
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
