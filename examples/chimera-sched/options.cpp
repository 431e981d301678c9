#include <unistd.h>

#include <chimera/config.hpp>

#include "cli.hpp"

namespace chimera_sched {

void add_schedule_options(CLI::App& command, schedule_options& options) {
    command.add_option("--schedule", options.schedule,
                       "Schedule: gpipe, 1f1b, chimera, interleaved, looped-bfs, gems, zb-h1, zb-h2, zb-v, dualpipe "
                       "or dualpipev")
        ->check(CLI::IsMember({"gpipe", "1f1b", "chimera", "interleaved", "looped-bfs", "gems", "zb-h1", "zb-h2",
                               "zb-v", "dualpipe", "dualpipev"}))
        ->capture_default_str();
    command.add_option("--stages", options.stages, "Pipeline depth D (stages per pipeline)")->required();
    command.add_option("--micro-batches", options.micro_batches, "Micro-batches N per iteration")->required();
    command.add_option("--pipelines", options.pipelines, "Chimera: number of pipelines k = 2f (default 2)");
    command.add_option("--scaling", options.scaling, "Chimera for N > D: direct, doubling or halving")
        ->check(CLI::IsMember({"direct", "doubling", "halving"}))
        ->capture_default_str();
    command.add_option("--data-parallel", options.data_parallel, "Data-parallel width W")->capture_default_str();
    command.add_option("--chunks", options.chunks, "Interleaved, looped-bfs: model chunks v per worker")
        ->capture_default_str();
    command.add_option("--group-size", options.group_size,
                       "Interleaved: micro-batches per group g (default: derived, N / max(1, N/P))");
    command.add_flag("--split-backward", options.split_backward,
                     "Chimera: split each backward into I and W and fill the bubbles with W (zero-bubble Chimera)");
}

chimera::config to_config(const schedule_options& options) {
    chimera::config c;
    c.schedule = *chimera::parse_algorithm(options.schedule);  // IsMember already checked the name
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
