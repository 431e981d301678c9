// chimera-sched check FILE: validate a chimera.schedule/1 file.
// Exit 0 valid, 1 invalid schedule, 2 unreadable input.
#include <fstream>
#include <iostream>
#include <sstream>

#include <chimera/check.hpp>
#include <chimera/io/json.hpp>

#include "cli.hpp"

namespace chimera_sched {

std::string read_file(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw usage_error("cannot open '" + path + "'");
    std::ostringstream text;
    text << in.rdbuf();
    if (in.bad()) throw usage_error("cannot read '" + path + "'");
    return text.str();
}

command add_check(CLI::App& app) {
    auto path = std::make_shared<std::string>();
    CLI::App* sub = app.add_subcommand("check", "Validate a schedule file (chimera.schedule/1 JSON)");
    sub->add_option("FILE", *path, "Schedule file ('-' for standard input)")->required();
    return {sub, [path] {
                std::string text;
                if (*path == "-") {
                    std::ostringstream in;
                    in << std::cin.rdbuf();
                    text = in.str();
                } else {
                    text = read_file(*path);
                }
                chimera::schedule schedule;
                try {
                    schedule = chimera::io::read_json(text);
                } catch (const chimera::io::format_error& e) {
                    throw usage_error(*path + ": " + e.what());
                }
                const chimera::check_report report = chimera::check(schedule);
                if (report.ok()) {
                    std::cout << "valid: " << schedule.name() << ", " << schedule.workers() << " workers, "
                              << schedule.stages() << " stages, " << schedule.micro_batches() << " micro-batches, "
                              << schedule.op_count() << " ops\n";
                    return exit_ok;
                }
                for (const auto& d : report.diagnostics) std::cout << d.rule << ": " << d.message << "\n";
                if (report.truncated) std::cout << "(more problems not shown)\n";
                std::cout << "invalid: " << report.diagnostics.size() << (report.truncated ? "+" : "")
                          << " problem(s)\n";
                return exit_invalid_schedule;
            }};
}

}  // namespace chimera_sched
