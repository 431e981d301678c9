// One table for every generator: span, bubble ratio, peak activations, weight
// replicas and the N constraint at the same (D workers, N micro-batches) and
// costs (schedules.md §12). What `chimera-sched compare` prints.
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

namespace chimera {

struct comparison_row {
    std::string label;        // the generator name, plus options
    config params;
    bool accepted = false;    // false: the generator refuses (D, N); `refusal` says why
    std::string refusal;
    double span = 0;          // ASAP makespan under the costs
    double bubble_ratio = 0;  // idle / (busy + idle), all workers
    double peak_activations = 0;  // worst worker, in stage activations
    int weight_replicas = 0;      // copies of each stage's weights in the group
    std::string_view n_constraint;
};

// The N rule of each generator (schedules.md §12, chimera.md §4).
constexpr std::string_view n_constraint(algorithm a) {
    switch (a) {
        case algorithm::chimera: return "D even, f divides D/2; any N >= 1";
        case algorithm::interleaved: return "N mod max(1, N/P) = 0, or P <= g <= N and N mod g in {0} or >= P";
        case algorithm::zb_h2: return "N >= 1 (parallelogram from N >= 2P-1)";
        case algorithm::zb_v: return "N >= 1 (zero bubble from N >= 2P)";
        case algorithm::dualpipe: return "P even, N even, N >= 2P";
        case algorithm::dualpipev: return "N >= 2P";
        default: return "N >= 1";
    }
}

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

// Every generator at (D, N): the defaults of each (chunks v = `chunks`,
// Chimera with k = 2 direct, with and without split backward).
inline std::vector<comparison_row> compare_all(int stages, int micro_batches, const op_costs& costs, int chunks = 2) {
    std::vector<comparison_row> rows;
    for (algorithm a : generated_algorithms) {
        config c{a, stages, micro_batches};
        const bool chunked = a == algorithm::interleaved || a == algorithm::looped_bfs;
        if (chunked) c.chunks = chunks;
        std::string label(to_string(a));
        if (chunked) label += " v=" + std::to_string(chunks);
        rows.push_back(compare_one(label, c, costs));
        if (a == algorithm::chimera) {
            c.split_backward = true;
            rows.push_back(compare_one("chimera --split-backward", c, costs));
        }
    }
    return rows;
}

}  // namespace chimera
