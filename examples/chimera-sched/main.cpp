// chimera-sched: generate, check (and, as they land, lower, simulate, export...)
// pipeline-parallel training schedules from the command line.
#include <cstdio>
#include <exception>
#include <vector>

#include <chimera/error.hpp>

#include "cli.hpp"

int main(int argc, char** argv) {
    using namespace chimera_sched;
    CLI::App app{"chimera-sched: pipeline-parallel training schedules (Chimera, GPipe, 1F1B)", "chimera-sched"};
    app.require_subcommand(1);
    const std::vector<command> commands = {add_generate(app), add_check(app),    add_lower(app),  add_simulate(app),
                                           add_tune(app),     add_compare(app),  add_export(app), add_convert(app),
                                           add_schedules(app)};
    // CLI11 would only say "a subcommand is required"; name the word it did not know.
    if (argc > 1 && argv[1][0] != '-') {
        bool known = false;
        for (const command& c : commands) known = known || c.app->check_name(argv[1]);
        if (!known) {
            std::fprintf(stderr, "chimera-sched: error: unknown subcommand '%s' (see --help)\n", argv[1]);
            return exit_usage;
        }
    }
    try {
        app.parse(argc, argv);
    } catch (const CLI::CallForHelp& e) {
        return app.exit(e);
    } catch (const CLI::CallForAllHelp& e) {
        return app.exit(e);
    } catch (const CLI::ParseError& e) {
        std::fprintf(stderr, "chimera-sched: error: %s (see --help)\n", e.what());
        return exit_usage;
    }
    try {
        for (const command& c : commands)
            if (c.app->parsed()) return c.run();
    } catch (const usage_error& e) {
        std::fprintf(stderr, "chimera-sched: error: %s\n", e.what());
        return exit_usage;
    } catch (const chimera::schedule_error& e) {
        std::fprintf(stderr, "chimera-sched: error: [%.*s] %s\n", static_cast<int>(e.rule().size()), e.rule().data(),
                     e.what());
        return exit_usage;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "chimera-sched: error: %s\n", e.what());
        return exit_usage;
    }
    return exit_usage;
}
