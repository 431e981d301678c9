#include <unistd.h>

#include <string>
#include <string_view>
#include <vector>

#include <chimera/registry.hpp>

#include "cli.hpp"

namespace chimera_sched {

namespace {

// "a, b or c": the registry's schedules that `takes` accepts, in registry order.
std::string names_where(bool (*takes)(const chimera::schedule_entry&)) {
    std::vector<std::string_view> names;
    for (const chimera::schedule_entry* e : chimera::schedule_registry)
        if (takes(*e)) names.push_back(e->name);
    std::string text;
    for (std::size_t i = 0; i < names.size(); ++i)
        text += std::string(i == 0 ? "" : i + 1 == names.size() ? " or " : ", ") + std::string(names[i]);
    return text;
}

std::string schedule_help() {
    std::string text = "Schedule: " + names_where([](const chimera::schedule_entry&) { return true; });
    for (const chimera::schedule_entry* e : chimera::schedule_registry)
        for (std::string_view alias : e->aliases) text += "; " + std::string(alias) + " = " + std::string(e->name);
    return text;
}

std::vector<std::string> schedule_names() {
    std::vector<std::string> names;
    for (const chimera::schedule_entry* e : chimera::schedule_registry) {
        names.emplace_back(e->name);
        for (std::string_view alias : e->aliases) names.emplace_back(alias);
    }
    return names;
}

std::string default_pipelines_help() {
    std::string text;
    for (const chimera::schedule_entry* e : chimera::schedule_registry)
        if (e->default_pipelines != 1) text += std::string(text.empty() ? "" : ", ") + std::string(e->name);
    return "Number of pipelines k (default 2 for " + text + ", else 1; chimera: k = 2f)";
}

}  // namespace

void add_schedule_options(CLI::App& command, schedule_options& options) {
    using chimera::schedule_entry;
    command.add_option("--schedule", options.schedule, schedule_help())
        ->check(CLI::IsMember(schedule_names()))
        ->capture_default_str();
    command.add_option("--stages", options.stages, "Pipeline depth D (stages per pipeline)")->required();
    command.add_option("--micro-batches", options.micro_batches, "Micro-batches N per iteration")->required();
    command.add_option("--pipelines", options.pipelines, default_pipelines_help());
    command.add_option("--scaling", options.scaling,
                       names_where([](const schedule_entry& e) { return e.takes_scaling; }) +
                           " for N > D: direct, doubling or halving")
        ->check(CLI::IsMember({"direct", "doubling", "halving"}))
        ->capture_default_str();
    command.add_option("--data-parallel", options.data_parallel, "Data-parallel width W")->capture_default_str();
    command.add_option("--chunks", options.chunks,
                       names_where([](const schedule_entry& e) { return e.takes_chunks(); }) +
                           ": model chunks v per worker")
        ->capture_default_str();
    command.add_option("--group-size", options.group_size,
                       names_where([](const schedule_entry& e) { return e.takes_group_size; }) +
                           ": micro-batches per group g (default: derived, N / max(1, N/P))");
    command.add_flag("--split-backward", options.split_backward,
                     names_where([](const schedule_entry& e) { return e.takes_split_backward; }) +
                         ": split each backward into I and W and fill the bubbles with W (zero-bubble Chimera)");
}

chimera::config to_config(const schedule_options& options) {
    chimera::config c;
    c.schedule = *chimera::parse_algorithm(options.schedule);  // IsMember already checked the name (or alias)
    c.stages = options.stages;
    c.micro_batches = options.micro_batches;
    c.pipelines = options.pipelines;
    c.scaling_mode = *chimera::parse_scaling(options.scaling);
    c.data_parallel = options.data_parallel;
    c.chunks = options.chunks;
    c.group_size = options.group_size;
    c.split_backward = options.split_backward;
    if (options.pipelines < 0) throw usage_error("--pipelines must be >= 1 (got " + std::to_string(options.pipelines) + ")");
    if (auto error = chimera::validate(c)) throw usage_error("[" + std::string(error->rule) + "] " + error->message);
    return c;
}

bool stdout_is_terminal() { return isatty(STDOUT_FILENO) != 0; }

}  // namespace chimera_sched
