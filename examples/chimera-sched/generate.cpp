// chimera-sched generate: a compute-only schedule as JSON or as a text grid.
#include <iostream>

#include <chimera/generate.hpp>
#include <chimera/io/json.hpp>
#include <chimera/io/text.hpp>

#include "cli.hpp"

namespace chimera_sched {

command add_generate(CLI::App& app) {
    struct state {
        schedule_options schedule;
        std::string format = "json";
    };
    auto s = std::make_shared<state>();
    CLI::App* sub = app.add_subcommand("generate", "Generate a compute-only schedule");
    add_schedule_options(*sub, s->schedule);
    sub->add_option("--format", s->format, "Output: json (chimera.schedule/1) or text (grid)")
        ->check(CLI::IsMember({"json", "text"}))
        ->capture_default_str();
    return {sub, [s] {
                const chimera::schedule schedule = chimera::generate(to_config(s->schedule));
                if (s->format == "json")
                    std::cout << chimera::io::write_json(schedule);
                else
                    std::cout << chimera::io::write_text(schedule, {.color = stdout_is_terminal()});
                return exit_ok;
            }};
}

}  // namespace chimera_sched
