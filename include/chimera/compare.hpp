// One table for every generator: span, bubble ratio, peak activations, weight
// replicas and the N constraint at the same (D workers, N micro-batches) and
// costs (docs/design/schedule-zoo.md#summary). What `chimera-sched compare` prints.
//
// Units: D is the number of workers for every schedule; chunked schedules
// (interleaved, looped BFS, ZB-V, DualPipeV) cut the model into v*D chunks,
// so one of their ops costs 1/v of a stage op and one of their activations
// is 1/v of a stage activation. Peaks are reported in stage activations.
#pragma once

#include <algorithm>
#include <string>
#include <string_view>
#include <vector>

#include "analysis.hpp"
#include "config.hpp"
#include "generate.hpp"
#include "registry.hpp"

namespace chimera {

struct comparison_row {
    std::string label;        // the generator name, plus options
    config params;
    bool accepted = false;    // false: the generator refuses (D, N); `refusal` says why
    std::string refusal;
    double span = 0;          // ASAP makespan under the costs
    double bubble_ratio = 0;  // idle / (busy + idle), all workers
    double peak_activations = 0;  // worst worker, in stage activations
    int weight_replicas = 0;      // copies of each stage's weights in the group = stage-sized weight copies per worker
    std::string_view n_constraint;
};

// The N rule of each generator, one sentence (its registry entry's).
constexpr std::string_view n_constraint(algorithm a) { return entry_of(config{a}).n_constraint; }

// Costs of one op of `c`'s schedule: chunk ops cost 1/v of a stage op.
constexpr op_costs scaled_costs(const config& c, const op_costs& costs) {
    const double v = chunk_count(c);
    return {costs.forward / v, costs.backward / v, costs.input_backward / v, costs.weight_backward / v};
}

inline comparison_row compare_one(std::string label, const config& c, const op_costs& costs) {
    comparison_row row;
    row.label = std::move(label);
    row.params = c;
    row.n_constraint = n_constraint(c.schedule);
    if (auto error = validate(c)) {
        row.refusal = error->message;
        return row;
    }
    const schedule s = generate(c);
    const timing t = asap(s, scaled_costs(c, costs));
    row.accepted = t.complete;
    row.span = t.makespan;
    row.bubble_ratio = t.bubble_ratio();
    const std::vector<int> peaks = peak_activations(s);
    row.peak_activations = static_cast<double>(*std::max_element(peaks.begin(), peaks.end())) / chunk_count(c);
    row.weight_replicas = s.pipelines();
    return row;
}

// Every generator at (D, N), in registry order: one row per variant of its
// entry (Chimera: k = 2 and 4, direct and doubling, split backward), else
// one at its defaults; chunked schedules with v = `chunks`.
inline std::vector<comparison_row> compare_all(int stages, int micro_batches, const op_costs& costs, int chunks = 2) {
    std::vector<comparison_row> rows;
    for (const schedule_entry* e : schedule_registry) {
        config c{e->id, stages, micro_batches};
        std::string label(e->name);
        if (e->takes_chunks()) {
            c.chunks = chunks;
            label += " v=" + std::to_string(chunks);
        }
        if (e->variants.empty()) rows.push_back(compare_one(label, c, costs));
        for (const schedule_variant& v : e->variants)
            rows.push_back(compare_one(label + " " + std::string(v.label), v.apply(c), costs));
    }
    return rows;
}

}  // namespace chimera
