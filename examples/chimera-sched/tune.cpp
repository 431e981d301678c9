#include "cli.hpp"
namespace chimera_sched {
command add_tune(CLI::App& app) {
    CLI::App* sub = app.add_subcommand("tune", "Search configurations with the performance model");
    return {sub, [] { return exit_ok; }};
}
}  // namespace chimera_sched
