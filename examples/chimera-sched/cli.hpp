// Shared pieces of chimera-sched's subcommands.
#pragma once

#include <functional>
#include <string>

#include <CLI/CLI.hpp>

#include <chimera/config.hpp>
#include <chimera/lower.hpp>

namespace chimera_sched {

// Exit codes (kept stable: scripts rely on them).
inline constexpr int exit_ok = 0;
inline constexpr int exit_invalid_schedule = 1;
inline constexpr int exit_usage = 2;

// Raised for bad usage or unreadable input; main prints it and exits 2.
struct usage_error : std::runtime_error {
    using std::runtime_error::runtime_error;
};

// The options every schedule-producing subcommand takes:
//   --schedule NAME --stages D --micro-batches N [--pipelines K] [--scaling MODE] [--data-parallel W]
struct schedule_options {
    std::string schedule = "chimera";
    int stages = 0;
    int micro_batches = 0;
    int pipelines = 0;
    std::string scaling = "direct";
    int data_parallel = 1;
};

void add_schedule_options(CLI::App& command, schedule_options& options);
// Throws usage_error naming the rule a bad combination breaks.
chimera::config to_config(const schedule_options& options);

// A subcommand: registered on the app, run when it was parsed.
struct command {
    CLI::App* app = nullptr;
    std::function<int()> run;
};

command add_generate(CLI::App& app);
command add_check(CLI::App& app);
command add_lower(CLI::App& app);
command add_simulate(CLI::App& app);
command add_tune(CLI::App& app);

bool stdout_is_terminal();

// --sync end|eager|eager-opt [--min-window SLOTS] (lower, simulate).
void add_sync_options(CLI::App& command, std::string& sync, int& min_window);
chimera::lower_options to_lower_options(const std::string& sync, int min_window);

}  // namespace chimera_sched
