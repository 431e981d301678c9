// chimera-sched tune: rank configurations of a preset model on P devices by
// simulated throughput (performance model + simulator).
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <iostream>

#include <chimera/tune.hpp>

#include "cli.hpp"
#include "plan_files.hpp"
#include "plan_report.hpp"

namespace chimera_sched {

namespace {

std::string preset_names() {
    std::string names;
    for (const auto& p : chimera::presets) names += (names.empty() ? "" : ", ") + std::string(p.name);
    return names;
}

std::string format_gib(double bytes) {
    char text[32];
    std::snprintf(text, sizeof text, "%.3g", bytes / double(1LL << 30));
    return text;
}

// A bar on stderr, only on a terminal and only once the search has run 1 s.
class progress_bar {
public:
    void operator()(std::size_t done, std::size_t total) {
        if (!terminal_) return;
        const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - begin_).count();
        if (elapsed < 1 || (done != total && elapsed - last_ < 0.1)) return;
        last_ = elapsed;
        shown_ = true;
        const int width = 30, filled = static_cast<int>(width * done / std::max<std::size_t>(total, 1));
        std::fprintf(stderr, "\r[%s%s] %zu/%zu configurations", std::string(static_cast<std::size_t>(filled), '#').c_str(),
                     std::string(static_cast<std::size_t>(width - filled), ' ').c_str(), done, total);
    }
    ~progress_bar() {
        if (shown_) std::fprintf(stderr, "\r%60s\r", "");
    }

private:
    bool terminal_ = isatty(STDERR_FILENO) != 0;
    bool shown_ = false;
    double last_ = 0;
    std::chrono::steady_clock::time_point begin_ = std::chrono::steady_clock::now();
};

struct tune_inputs {
    std::string label;  // the preset's name, or "MODEL on CLUSTER-FILE"
    chimera::model_description model;
    chimera::hardware machine;
    int devices = 0;  // the cluster file's (0 for a preset)
};

tune_inputs load_inputs(const std::string& preset, const std::string& model_file, const std::string& cluster_file) {
    if (preset.empty() && model_file.empty())
        throw usage_error("tune needs --preset NAME or --model FILE --cluster FILE");
    if (!model_file.empty()) {
        const cluster_description cluster = read_cluster_file(cluster_file);
        tune_inputs in{"", read_model_file(model_file), cluster.machine, cluster.devices};
        in.label = std::string(in.model.name) + " on " + cluster_file;
        return in;
    }
    const auto p = chimera::find_preset(chimera::presets, preset);
    if (!p) throw usage_error("unknown preset '" + preset + "' (known: " + preset_names() + ")");
    return {preset, *chimera::find_preset(chimera::model_presets, p->model),
            {*chimera::find_preset(chimera::device_presets, p->device),
             *chimera::find_preset(chimera::network_presets, p->network)},
            0};
}

std::string table(const chimera::tune_result& result, std::size_t top) {
    std::string out =
        "rank  samples/s  iteration s  memory GiB  bubble  schedule  D     W     B     N     k  scaling   recompute\n";
    char line[256];
    for (std::size_t i = 0; i < std::min(top, result.ranked.size()); ++i) {
        const auto& c = result.ranked[i];
        const chimera::config& s = c.point.schedule;
        std::snprintf(line, sizeof line, "%4zu %10.1f %12.4f %11.2f %7.3f  %-8s %2d %5d %5d %5d %5d  %-8s  %s\n", i + 1,
                      c.throughput, c.iteration_time, c.memory_bytes / double(1LL << 30), c.bubble_ratio,
                      std::string(to_string(s.schedule)).c_str(), s.stages, s.data_parallel, c.point.micro_batch_size,
                      s.micro_batches, chimera::pipeline_count(s), std::string(to_string(s.scaling_mode)).c_str(),
                      c.point.recompute ? "yes" : "no");
        out += line;
    }
    return out;
}

struct tune_state {
    std::string preset, model_file, cluster_file;
    std::vector<std::string> profile_files;
    int devices = 0, global_batch = 0, max_micro_batch = 64;
    double memory_gib = 0;
    std::size_t top = 10;
    std::string sync = "eager";
    std::vector<std::string> schedules;
    int max_pipelines = 0;
    std::vector<int> depths;
    bool why = false;
    std::string format = "text", plot;
};

// Defaults from the cluster file, the checks, the request.
chimera::tune_request make_request(tune_state& s, const tune_inputs& in) {
    if (s.devices == 0 && in.devices > 0) s.devices = in.devices;
    if (in.devices > 0 && s.devices > in.devices)
        throw usage_error("--devices " + std::to_string(s.devices) + " is more than the cluster file's " +
                          std::to_string(in.devices) + " devices");
    if (s.devices < 1) throw usage_error("--devices must be >= 1 (got " + std::to_string(s.devices) + ")");
    if (s.global_batch < 1)
        throw usage_error("--global-batch must be >= 1 (got " + std::to_string(s.global_batch) + ")");
    if (s.memory_gib < 0) throw usage_error("--memory must be > 0 GiB");
    if (s.max_micro_batch < 1) throw usage_error("--max-micro-batch must be >= 1");
    chimera::tune_request r{
        .model = in.model,
        .machine = in.machine,
        .devices = s.devices,
        .global_batch = s.global_batch,
        .memory_limit_bytes = s.memory_gib * double(1LL << 30),
        .max_micro_batch_size = s.max_micro_batch,
        .max_pipelines = s.max_pipelines,
        .depths = s.depths,
        .sync = *chimera::parse_sync_policy(s.sync)};
    if (!s.schedules.empty()) {
        r.algorithms.clear();
        for (const auto& name : s.schedules) r.algorithms.push_back(*chimera::parse_algorithm(name));
    }
    return r;
}

int run_tune(tune_state& s) {
    tune_inputs in = load_inputs(s.preset, s.model_file, s.cluster_file);
    calibrate_with(in.model, in.machine, s.profile_files);
    const chimera::tune_request r = make_request(s, in);
    chimera::tune_result result;
    {
        progress_bar bar;
        result = chimera::tune(r, std::ref(bar));
    }
    if (result.ranked.empty()) {
        if (s.why) std::cerr << rejection_summary(result);
        throw usage_error("no configuration of " + std::string(r.model.name) + " on " +
                          std::to_string(s.devices) + " devices with global batch " +
                          std::to_string(s.global_batch) + " fits in " +
                          format_gib(r.memory_limit()) + " GiB per device (" +
                          std::to_string(result.evaluated) + " configurations tried)");
    }
    if (!s.plot.empty()) write_output(s.plot, tune_plot(in.label, r, result));
    if (s.format == "json") {
        std::cout << tune_json(in.label, r, result, s.top);
        return exit_ok;
    }
    std::cout << in.label << ": " << r.model.name << " (" << r.model.parameters() << " parameters) on "
              << s.devices << " x " << r.machine.device.name << " / " << r.machine.network.name
              << ", global batch " << s.global_batch << "; " << result.ranked.size() << " of "
              << result.evaluated << " configurations fit\n"
              << table(result, s.top);
    if (s.why) std::cout << terms_table(r, result, s.top) << rejection_summary(result);
    return exit_ok;
}

}  // namespace

command add_tune(CLI::App& app) {
    auto s = std::make_shared<tune_state>();
    CLI::App* sub = app.add_subcommand("tune", "Rank configurations of a model on a cluster by simulated throughput");
    auto* preset = sub->add_option("--preset", s->preset, "Model and hardware: " + preset_names());
    auto* model = sub->add_option("--model", s->model_file, "Model file (JSON, docs/planning.md)");
    auto* cluster = sub->add_option("--cluster", s->cluster_file, "Cluster file (JSON, docs/planning.md)");
    preset->excludes(model)->excludes(cluster);
    model->needs(cluster);
    cluster->needs(model);
    sub->add_option("--profile", s->profile_files,
                    "Measured stage costs (chimera-train --profile-out) replace the modelled ones; one file per "
                    "micro-batch size, interpolated between them")
        ->needs(model);
    sub->add_option("--devices", s->devices, "Devices P (default: the cluster file's devices)");
    sub->add_option("--global-batch", s->global_batch, "Samples per iteration over all replicas")->required();
    sub->add_option("--memory", s->memory_gib, "Memory per device in GiB (default: the preset device's)");
    sub->add_option("--top", s->top, "Rows to print")->capture_default_str();
    sub->add_option("--max-micro-batch", s->max_micro_batch, "Largest micro-batch size B tried")->capture_default_str();
    sub->add_option("--schedules", s->schedules, "Only these schedules (comma-separated: gpipe,1f1b,chimera)")
        ->delimiter(',')
        ->check(CLI::IsMember({"gpipe", "1f1b", "chimera"}));
    sub->add_option("--depths", s->depths, "Only these pipeline depths D (comma-separated)")
        ->delimiter(',')
        ->check(CLI::PositiveNumber);
    sub->add_option("--max-pipelines", s->max_pipelines, "Chimera: largest number of pipelines k tried (default: all)")
        ->check(CLI::NonNegativeNumber);
    sub->add_option("--sync", s->sync, "Gradient sync: end, eager or eager-opt")
        ->check(CLI::IsMember({"end", "eager", "eager-opt"}))
        ->capture_default_str();
    sub->add_flag("--why", s->why, "Also print the iteration-time terms of the top rows and the rejected configurations");
    sub->add_option("--format", s->format, "Output: text or json (every row, terms of the top rows, rejections)")
        ->check(CLI::IsMember({"text", "json"}))
        ->capture_default_str();
    sub->add_option("--plot", s->plot, "Write an SVG of throughput and memory against D per schedule");
    return {sub, [s] { return run_tune(*s); }};
}

}  // namespace chimera_sched
