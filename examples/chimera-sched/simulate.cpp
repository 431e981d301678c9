// chimera-sched simulate: time a lowered schedule with a cost model.
//   --cost F=1,B=2,I=1,W=1   per-op times (every stage)
//   --p2p ALPHA,BETA         message cost alpha + bytes * beta
// JSON: makespan, bubble_ratio, critical_path {forward, backward}, workers
// [{busy, idle, communication, peak_activations, memory_bytes}], timeline;
// text: a table and the timeline grid.
#include <algorithm>
#include <charconv>
#include <cmath>
#include <iostream>
#include <string_view>

#include <chimera/detail/text.hpp>
#include <chimera/generate.hpp>
#include <chimera/lower.hpp>
#include <chimera/simulate.hpp>

#include "cli.hpp"
#include "plan_files.hpp"

namespace chimera_sched {

namespace {

// Shortest round-trip decimal, the same bytes on every run.
std::string number(double value) {
    char buffer[64];
    const auto result = std::to_chars(buffer, buffer + sizeof buffer, value);
    return std::string(buffer, result.ptr);
}

std::optional<double> parse_number(std::string_view text) {
    double value = 0;
    const auto result = std::from_chars(text.data(), text.data() + text.size(), value);
    if (result.ec != std::errc{} || result.ptr != text.data() + text.size() || !std::isfinite(value) || value < 0)
        return std::nullopt;
    return value;
}

std::vector<std::string_view> split(std::string_view text, char separator) {
    std::vector<std::string_view> parts;
    for (std::size_t begin = 0;;) {
        const std::size_t end = text.find(separator, begin);
        parts.push_back(text.substr(begin, end == std::string_view::npos ? std::string_view::npos : end - begin));
        if (end == std::string_view::npos) return parts;
        begin = end + 1;
    }
}

}  // namespace

chimera::op_costs parse_costs(const std::string& text) {
    const std::string expected = "expected KEY=VALUE pairs like F=1,B=2,I=1,W=1 (KEY one of F, B, I, W; VALUE a number >= 0)";
    chimera::op_costs costs{1, 1, 1, 1};
    for (std::string_view pair : split(text, ',')) {
        const std::size_t equals = pair.find('=');
        const auto value = equals == std::string_view::npos ? std::nullopt : parse_number(pair.substr(equals + 1));
        const std::string_view key = pair.substr(0, equals);
        double* field = key == "F" ? &costs.forward : key == "B" ? &costs.backward : key == "I" ? &costs.input_backward
                      : key == "W" ? &costs.weight_backward : nullptr;
        if (!value || field == nullptr)
            throw usage_error("bad --cost '" + text + "' at '" + std::string(pair) + "': " + expected);
        *field = *value;
    }
    return costs;
}

std::pair<double, double> parse_p2p(const std::string& text) {
    const auto parts = split(text, ',');
    const auto alpha = parts.size() == 2 ? parse_number(parts[0]) : std::nullopt;
    const auto beta = parts.size() == 2 ? parse_number(parts[1]) : std::nullopt;
    if (!alpha || !beta)
        throw usage_error("bad --p2p '" + text + "': expected ALPHA,BETA, two numbers >= 0 (time per message, time per byte)");
    return {*alpha, *beta};
}

namespace {

std::string label(const chimera::op& o) { return chimera::detail::cat(to_string(o.kind), o.micro_batch); }

// Columns of equal time; a compute op shows its label where it starts and
// '~' while it runs (docs/design/chimera-closed-form.md#worked-example-four-stages-four-micro-batches style). At most 160 columns.
std::string timeline_grid(const chimera::schedule& s, const chimera::simulation& r) {
    using chimera::detail::cat;
    double quantum = 0;
    for (std::size_t i = 0; i < r.start.size(); ++i)
        if (chimera::is_compute(s.all_ops()[i].kind) && r.finish[i] > r.start[i])
            quantum = quantum == 0 ? r.finish[i] - r.start[i] : std::min(quantum, r.finish[i] - r.start[i]);
    if (quantum == 0 || r.makespan <= 0) return "(empty timeline)\n";
    quantum = std::max(quantum, r.makespan / 160);
    const auto columns = static_cast<std::size_t>(std::ceil(r.makespan / quantum - 1e-9));
    std::size_t width = 1;
    for (const chimera::op& o : s.all_ops())
        if (chimera::is_compute(o.kind)) width = std::max(width, label(o).size());
    std::string out = cat("timeline (one column = ", number(quantum), " time units; '~' running, '.' idle)\n");
    for (int w = 0; w < s.workers(); ++w) {
        std::vector<std::string> cells(columns, ".");
        for (std::size_t i = s.first_op_index(w); i < s.first_op_index(w) + s.ops(w).size(); ++i) {
            const chimera::op& o = s.all_ops()[i];
            if (!chimera::is_compute(o.kind) || r.start[i] < 0) continue;
            const auto first = static_cast<std::size_t>(std::floor(r.start[i] / quantum + 1e-9));
            const auto last = std::max(first + 1, static_cast<std::size_t>(std::ceil(r.finish[i] / quantum - 1e-9)));
            for (std::size_t c = first; c < std::min(last, columns); ++c) cells[c] = c == first ? label(o) : "~";
        }
        out += cat("P", w, std::string(cat(s.workers() - 1).size() - cat(w).size(), ' '));
        for (const auto& cell : cells) out += " " + cell + std::string(width - cell.size(), ' ');
        out += "\n";
    }
    return out;
}

std::string write_json(const chimera::schedule& s, const chimera::simulation& r, const chimera::critical_path& c) {
    using chimera::detail::cat;
    std::string out = cat("{\"makespan\":", number(r.makespan), ",\"bubble_ratio\":", number(r.bubble_ratio()),
                          ",\"critical_path\":{\"forward\":", c.forward, ",\"backward\":", c.backward,
                          "},\n \"workers\":[");
    for (std::size_t w = 0; w < r.workers.size(); ++w) {
        const auto& wr = r.workers[w];
        out += cat(w ? ",\n  " : "\n  ", "{\"worker\":", w, ",\"busy\":", number(wr.busy), ",\"idle\":", number(wr.idle),
                   ",\"communication\":", number(wr.communication), ",\"peak_activations\":", wr.peak_activations,
                   ",\"memory_bytes\":", number(wr.memory_bytes()), "}");
    }
    out += "],\n \"timeline\":[";
    for (int w = 0; w < s.workers(); ++w) {
        out += w ? ",\n  [" : "\n  [";
        for (std::size_t i = s.first_op_index(w); i < s.first_op_index(w) + s.ops(w).size(); ++i) {
            const chimera::op& o = s.all_ops()[i];
            out += cat(i == s.first_op_index(w) ? "" : ",", "{\"kind\":\"", to_string(o.kind), "\",\"stage\":", o.stage);
            if (o.kind != chimera::op_kind::REDUCE_GRAD) out += cat(",\"micro_batch\":", o.micro_batch);
            out += cat(",\"pipeline\":", o.pipeline, ",\"start\":", number(r.start[i]), ",\"end\":", number(r.finish[i]), "}");
        }
        out += "]";
    }
    return out + "]}\n";
}

std::string write_text(const chimera::schedule& s, const chimera::simulation& r, const chimera::critical_path& c) {
    using chimera::detail::cat;
    std::string out = cat(s.name(), ": makespan ", number(r.makespan), ", bubble ratio ", number(r.bubble_ratio()),
                          ", critical path C_f=", c.forward, " C_b=", c.backward, "\n");
    out += "worker       busy       idle  comm  peak activations\n";
    char line[160];
    for (std::size_t w = 0; w < r.workers.size(); ++w) {
        const auto& wr = r.workers[w];
        std::snprintf(line, sizeof line, "P%-5zu %10.4g %10.4g %5.4g %17d\n", w, wr.busy, wr.idle, wr.communication,
                      wr.peak_activations);
        out += line;
    }
    return out + timeline_grid(s, r);
}

struct simulate_state {
    schedule_options schedule;
    std::string sync = "end";
    int min_window = 0;
    std::string cost = "F=1,B=1,I=1,W=1";
    std::string p2p = "0,0";
    double message_bytes = 0, gradient_bytes = 0;
    bool recompute = false;
    std::string format = "json";
    std::string model_file, cluster_file;
    std::vector<std::string> profile_files;
    int micro_batch_size = 1;
};

// From --model/--cluster (the performance model) or --cost/--p2p/--*-bytes.
chimera::cost_model cost_model_of(const simulate_state& s, const chimera::config& config) {
    if (!s.model_file.empty()) {
        chimera::model_description m = read_model_file(s.model_file);
        chimera::hardware machine = read_cluster_file(s.cluster_file).machine;
        calibrate_with(m, machine, s.profile_files);
        if (config.stages > m.layers)
            throw usage_error("--stages " + std::to_string(config.stages) + " is more than the model's " +
                              std::to_string(m.layers) + " layers (every stage needs one)");
        const double size = config.scaling_mode == chimera::scaling::halving ? s.micro_batch_size / 2.0 : s.micro_batch_size;
        return chimera::make_cost_model(m, machine, config.stages, size, s.recompute, config.data_parallel);
    }
    chimera::cost_model costs;
    const chimera::op_costs op = parse_costs(s.cost);
    costs.uniform.forward = op.forward;
    costs.uniform.backward = op.backward;
    costs.uniform.input_backward = op.input_backward;
    costs.uniform.weight_backward = op.weight_backward;
    costs.uniform.message_bytes = s.message_bytes;
    costs.uniform.gradient_bytes = s.gradient_bytes;
    std::tie(costs.alpha, costs.beta) = parse_p2p(s.p2p);
    costs.recompute = s.recompute;
    costs.data_parallel = config.data_parallel;
    return costs;
}

}  // namespace

command add_simulate(CLI::App& app) {
    auto s = std::make_shared<simulate_state>();
    CLI::App* sub = app.add_subcommand("simulate", "Lower a schedule and time it with a cost model");
    add_schedule_options(*sub, s->schedule);
    add_sync_options(*sub, s->sync, s->min_window);
    auto* cost = sub->add_option("--cost", s->cost, "Op times, e.g. F=1,B=2,I=1,W=1")->capture_default_str();
    auto* p2p = sub->add_option("--p2p", s->p2p, "Message cost ALPHA,BETA: alpha + bytes * beta")->capture_default_str();
    auto* message = sub->add_option("--message-bytes", s->message_bytes, "Bytes of one activation/gradient message")
                        ->check(CLI::NonNegativeNumber);
    auto* gradient = sub->add_option("--gradient-bytes", s->gradient_bytes, "Gradient bytes of one stage (all-reduce size L)")
                         ->check(CLI::NonNegativeNumber);
    auto* model = sub->add_option("--model", s->model_file, "Model file: costs from the performance model (docs/planning.md)");
    auto* cluster = sub->add_option("--cluster", s->cluster_file, "Cluster file (with --model)");
    sub->add_option("--profile", s->profile_files,
                    "Measured stage costs (chimera-train --profile-out), with --model; one file per micro-batch size")
        ->needs(model);
    sub->add_option("--micro-batch-size", s->micro_batch_size, "Samples per micro-batch B (with --model)")
        ->check(CLI::PositiveNumber)
        ->capture_default_str();
    model->needs(cluster)->excludes(cost)->excludes(p2p)->excludes(message)->excludes(gradient);
    cluster->needs(model);
    sub->add_flag("--recompute", s->recompute, "Backward re-runs the forward");
    sub->add_option("--format", s->format, "Output: json or text (table and timeline grid)")
        ->check(CLI::IsMember({"json", "text"}))
        ->capture_default_str();
    return {sub, [s] {
                const chimera::config config = to_config(s->schedule);
                const chimera::cost_model costs = cost_model_of(*s, config);
                const chimera::schedule compute = chimera::generate(config);
                const chimera::schedule lowered = chimera::lower(compute, to_lower_options(s->sync, s->min_window));
                const chimera::simulation result = chimera::simulate(lowered, costs);
                if (!result.complete) {
                    std::cerr << "chimera-sched: error: the lowered schedule does not run to completion\n";
                    return exit_invalid_schedule;
                }
                const chimera::critical_path path = chimera::critical_path_counts(compute);
                std::cout << (s->format == "json" ? write_json(lowered, result, path) : write_text(lowered, result, path));
                return exit_ok;
            }};
}

}  // namespace chimera_sched
