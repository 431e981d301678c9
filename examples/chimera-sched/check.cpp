// chimera-sched check FILE: validate a chimera.schedule/1 or PyTorch CSV file.
// Exit 0 valid, 1 invalid schedule, 2 unreadable input.
#include <fstream>
#include <iostream>
#include <sstream>

#include <chimera/check.hpp>

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

void print_report(const chimera::check_report& report, std::ostream& out) {
    for (const auto& d : report.diagnostics) out << d.rule << ": " << d.message << "\n";
    if (report.truncated) out << "(more problems not shown)\n";
    out << "invalid: " << report.diagnostics.size() << (report.truncated ? "+" : "") << " problem(s)\n";
}

command add_check(CLI::App& app) {
    auto path = std::make_shared<std::string>();
    auto from = std::make_shared<std::string>();
    CLI::App* sub = app.add_subcommand("check", "Validate a schedule file (chimera.schedule/1 JSON or PyTorch CSV)");
    sub->add_option("FILE", *path, "Schedule file ('-' for standard input)")->required();
    sub->add_option("--from", *from, "Format: json or pytorch-csv (default: from the extension, else sniffed)")
        ->check(CLI::IsMember({"json", "pytorch-csv"}));
    return {sub, [path, from] {
                const chimera::schedule schedule =
                    read_schedule(*path, read_input(*path), from->empty() ? std::nullopt : format_from_name(*from));
                const chimera::check_report report = chimera::check(schedule);
                if (report.ok()) {
                    std::cout << "valid: " << schedule.name() << ", " << schedule.workers() << " workers, "
                              << schedule.stages() << " stages, " << schedule.micro_batches() << " micro-batches, "
                              << schedule.op_count() << " ops\n";
                    return exit_ok;
                }
                print_report(report, std::cout);
                return exit_invalid_schedule;
            }};
}

}  // namespace chimera_sched
