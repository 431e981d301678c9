// Shared pieces of chimera-sched's subcommands.
#pragma once

#include <functional>
#include <iosfwd>
#include <optional>
#include <string>

#include <CLI/CLI.hpp>

#include <chimera/check.hpp>
#include <chimera/config.hpp>
#include <chimera/lower.hpp>
#include <chimera/schedule.hpp>

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
    int chunks = 2;
    int group_size = 0;
    bool split_backward = false;
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
command add_compare(CLI::App& app);
command add_schedules(CLI::App& app);

bool stdout_is_terminal();

// --sync end|eager|eager-opt [--min-window SLOTS] (lower, simulate).
void add_sync_options(CLI::App& command, std::string& sync, int& min_window);
chimera::lower_options to_lower_options(const std::string& sync, int min_window);
// Files (io.cpp): interchange formats, named as on the command line.
enum class file_format { json, pytorch_csv, chrome_trace, svg, text };
std::optional<file_format> format_from_name(const std::string& name);
// .json, .csv, .trace.json, .svg, .txt; nullopt for anything else.
std::optional<file_format> format_from_path(const std::string& path);
std::string to_string(file_format format);
std::string read_file(const std::string& path);   // throws usage_error
std::string read_input(const std::string& path);  // '-' is standard input
// Strict read of json or pytorch-csv (format from the argument, else the
// extension, else the content); throws usage_error naming line/path and rule.
chimera::schedule read_schedule(const std::string& path, const std::string& text, std::optional<file_format> format);
// Writes through a temporary file and rename(): nothing is left on failure.
// Empty or '-' is standard output.
void write_output(const std::string& path, const std::string& text);
void print_report(const chimera::check_report& report, std::ostream& out);

command add_export(CLI::App& app);
command add_convert(CLI::App& app);

}  // namespace chimera_sched
