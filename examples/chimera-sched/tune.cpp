// chimera-sched tune: rank configurations of a preset model on P devices by
// simulated throughput (performance model + simulator).
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <iostream>

#include <chimera/tune.hpp>

#include "cli.hpp"

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

}  // namespace

command add_tune(CLI::App& app) {
    struct state {
        std::string preset;
        int devices = 0, global_batch = 0, max_micro_batch = 64;
        double memory_gib = 0;
        std::size_t top = 10;
        std::string sync = "eager";
        std::vector<std::string> schedules;
        int max_pipelines = 0;
        std::vector<int> depths;
    };
    auto s = std::make_shared<state>();
    CLI::App* sub = app.add_subcommand("tune", "Rank configurations of a preset model by simulated throughput");
    sub->add_option("--preset", s->preset, "Model and hardware: " + preset_names())->required();
    sub->add_option("--devices", s->devices, "Devices P")->required();
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
    return {sub, [s] {
                const auto p = chimera::find_preset(chimera::presets, s->preset);
                if (!p) throw usage_error("unknown preset '" + s->preset + "' (known: " + preset_names() + ")");
                if (s->devices < 1) throw usage_error("--devices must be >= 1 (got " + std::to_string(s->devices) + ")");
                if (s->global_batch < 1)
                    throw usage_error("--global-batch must be >= 1 (got " + std::to_string(s->global_batch) + ")");
                if (s->memory_gib < 0) throw usage_error("--memory must be > 0 GiB");
                if (s->max_micro_batch < 1) throw usage_error("--max-micro-batch must be >= 1");
                chimera::tune_request r{
                    .model = *chimera::find_preset(chimera::model_presets, p->model),
                    .machine = {*chimera::find_preset(chimera::device_presets, p->device),
                                *chimera::find_preset(chimera::network_presets, p->network)},
                    .devices = s->devices,
                    .global_batch = s->global_batch,
                    .memory_limit_bytes = s->memory_gib * double(1LL << 30),
                    .max_micro_batch_size = s->max_micro_batch,
                    .max_pipelines = s->max_pipelines,
                    .depths = s->depths,
                    .sync = *chimera::parse_sync_policy(s->sync)};
                if (!s->schedules.empty()) {
                    r.algorithms.clear();
                    for (const auto& name : s->schedules) r.algorithms.push_back(*chimera::parse_algorithm(name));
                }
                chimera::tune_result result;
                {
                    progress_bar bar;
                    result = chimera::tune(r, std::ref(bar));
                }
                if (result.ranked.empty())
                    throw usage_error("no configuration of " + std::string(r.model.name) + " on " +
                                      std::to_string(s->devices) + " devices with global batch " +
                                      std::to_string(s->global_batch) + " fits in " +
                                      format_gib(r.memory_limit()) + " GiB per device (" +
                                      std::to_string(result.evaluated) + " configurations tried)");
                std::cout << s->preset << ": " << r.model.name << " (" << r.model.parameters() << " parameters) on "
                          << s->devices << " x " << r.machine.device.name << " / " << r.machine.network.name
                          << ", global batch " << s->global_batch << "; " << result.ranked.size() << " of "
                          << result.evaluated << " configurations fit\n"
                          << table(result, s->top);
                return exit_ok;
            }};
}

}  // namespace chimera_sched
