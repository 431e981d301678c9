// chimera-sched schedules: the registry as the command line sees it, one
// schedule per line (name, aliases, default k, options, N constraint), or
// only the names (--names) for scripts.
#include <iostream>
#include <string>

#include <chimera/registry.hpp>

#include "cli.hpp"

namespace chimera_sched {

namespace {

std::string options_of(const chimera::schedule_entry& e) {
    std::string text;
    auto add = [&](bool taken, const char* option) {
        if (taken) text += std::string(text.empty() ? "" : " ") + option;
    };
    add(e.fixed_pipelines == 0, "--pipelines");
    add(e.takes_scaling, "--scaling");
    add(e.takes_chunks(), "--chunks");
    add(e.takes_group_size, "--group-size");
    add(e.takes_split_backward, "--split-backward");
    return text.empty() ? "-" : text;
}

}  // namespace

command add_schedules(CLI::App& app) {
    auto names_only = std::make_shared<bool>(false);
    CLI::App* sub = app.add_subcommand("schedules", "List the schedules --schedule takes, with their options");
    sub->add_flag("--names", *names_only, "Only the names, one per line");
    return {sub, [names_only] {
                for (const chimera::schedule_entry* e : chimera::schedule_registry) {
                    if (*names_only) {
                        std::cout << e->name << "\n";
                        continue;
                    }
                    std::string aliases;
                    for (std::string_view alias : e->aliases) aliases.append(aliases.empty() ? "" : ",").append(alias);
                    std::cout << e->name << "\n  " << e->description << "\n  aliases: " << (aliases.empty() ? "-" : aliases)
                              << "; pipelines k: " << e->default_pipelines << (e->fixed_pipelines ? " (fixed)" : " (default)")
                              << "; options: " << options_of(*e) << "\n  N: " << e->n_constraint << "\n";
                }
                return exit_ok;
            }};
}

}  // namespace chimera_sched
