// chimera-sched export / convert, and the file handling they share with
// check: format names and extensions, content sniffing, strict reading, and
// writing through a temporary file so that nothing is left on failure.
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>

#include <chimera/check.hpp>
#include <chimera/generate.hpp>
#include <chimera/io/chrome_trace.hpp>
#include <chimera/io/csv.hpp>
#include <chimera/io/json.hpp>
#include <chimera/io/svg.hpp>
#include <chimera/io/text.hpp>

#include <chimera/lower.hpp>
#include <chimera/simulate.hpp>

#include "cli.hpp"

namespace chimera_sched {

namespace {

const std::vector<std::string> format_names = {"json", "pytorch-csv", "chrome-trace", "svg", "text"};

bool ends_with(const std::string& text, std::string_view suffix) {
    return text.size() >= suffix.size() && text.compare(text.size() - suffix.size(), suffix.size(), suffix) == 0;
}

}  // namespace

std::optional<file_format> format_from_name(const std::string& name) {
    for (std::size_t i = 0; i < format_names.size(); ++i)
        if (format_names[i] == name) return static_cast<file_format>(i);
    return std::nullopt;
}

std::string to_string(file_format format) { return format_names[static_cast<std::size_t>(format)]; }

std::optional<file_format> format_from_path(const std::string& path) {
    std::string lower = path;
    for (char& ch : lower) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
    if (ends_with(lower, ".trace.json") || ends_with(lower, ".trace")) return file_format::chrome_trace;
    if (ends_with(lower, ".json")) return file_format::json;
    if (ends_with(lower, ".csv")) return file_format::pytorch_csv;
    if (ends_with(lower, ".svg")) return file_format::svg;
    if (ends_with(lower, ".txt")) return file_format::text;
    return std::nullopt;
}

std::string read_input(const std::string& path) {
    if (path != "-") return read_file(path);
    std::ostringstream in;
    in << std::cin.rdbuf();
    return in.str();
}

chimera::schedule read_schedule(const std::string& path, const std::string& text, std::optional<file_format> format) {
    if (!format) format = format_from_path(path);
    if (!format) {
        // Sniff: a JSON document starts with '{' after white space; anything else is read as CSV.
        const auto first = text.find_first_not_of(" \t\r\n");
        format = first != std::string::npos && text[first] == '{' ? file_format::json : file_format::pytorch_csv;
    }
    try {
        if (*format == file_format::json) return chimera::io::read_json(text);
        if (*format == file_format::pytorch_csv) return chimera::io::read_csv(text);
    } catch (const chimera::io::format_error& e) {
        throw usage_error(path + ": " + e.what());
    }
    throw usage_error(path + ": " + to_string(*format) + " is an output-only format; read json or pytorch-csv");
}

void write_output(const std::string& path, const std::string& text) {
    if (path.empty() || path == "-") {
        std::cout << text << std::flush;
        if (!std::cout) throw usage_error("cannot write to standard output");
        return;
    }
    // A device or pipe (/dev/null, /dev/stdout, a fifo) cannot be replaced: write to it directly.
    std::error_code error;
    const auto status = std::filesystem::status(path, error);
    if (!error && std::filesystem::exists(status) && !std::filesystem::is_regular_file(status)) {
        std::ofstream out(path, std::ios::binary);
        out << text << std::flush;
        if (!out) throw usage_error("cannot write '" + path + "'");
        return;
    }
    // Same directory as the target, so that rename() is atomic.
    std::string temporary = path + ".tmp-XXXXXX";
    const int fd = mkstemp(temporary.data());
    if (fd < 0) throw usage_error("cannot create a temporary file next to '" + path + "'");
    bool ok = true;
    for (std::size_t done = 0; ok && done < text.size();) {
        const ssize_t n = ::write(fd, text.data() + done, text.size() - done);
        ok = n > 0;
        if (ok) done += static_cast<std::size_t>(n);
    }
    ok = ::close(fd) == 0 && ok;
    if (!ok || std::rename(temporary.c_str(), path.c_str()) != 0) {
        std::remove(temporary.c_str());
        throw usage_error("cannot write '" + path + "'");
    }
}

namespace {

struct output_options {
    std::string csv_format = "compute_only";
    chimera::op_costs costs;
    double microseconds_per_unit = 1000;
};

void add_output_options(CLI::App& sub, output_options& o) {
    sub.add_option("--csv-format", o.csv_format, "pytorch-csv flavour: compute_only or compute_comms (lowered)")
        ->check(CLI::IsMember({"compute_only", "compute_comms"}))
        ->capture_default_str();
    sub.add_option("--forward-cost", o.costs.forward, "chrome-trace: time of F (cost units)")->capture_default_str();
    sub.add_option("--backward-cost", o.costs.backward, "chrome-trace: time of B")->capture_default_str();
    sub.add_option("--input-backward-cost", o.costs.input_backward, "chrome-trace: time of I")->capture_default_str();
    sub.add_option("--weight-backward-cost", o.costs.weight_backward, "chrome-trace: time of W")->capture_default_str();
    sub.add_option("--us-per-unit", o.microseconds_per_unit, "chrome-trace: microseconds per cost unit")
        ->capture_default_str();
}

std::string render(const chimera::schedule& s, file_format format, const output_options& o, bool terminal) {
    switch (format) {
        case file_format::json: return chimera::io::write_json(s);
        case file_format::pytorch_csv: {
            const auto flavour = *chimera::io::parse_csv_format(o.csv_format);
            // compute_comms describes a lowered schedule: lower a compute-only one first.
            const bool lower = flavour == chimera::io::csv_format::compute_comms && !chimera::is_lowered(s) &&
                               !chimera::io::csv_refusal(s);
            return chimera::io::write_csv(lower ? chimera::lower(s) : s, flavour);
        }
        case file_format::chrome_trace: {
            // Times from the cost-model simulator, so communication ops of a
            // lowered schedule appear on their own track.
            chimera::cost_model model;
            model.uniform.forward = o.costs.forward;
            model.uniform.backward = o.costs.backward;
            model.uniform.input_backward = o.costs.input_backward;
            model.uniform.weight_backward = o.costs.weight_backward;
            const chimera::simulation simulated = chimera::simulate(s, model);
            chimera::timing times;
            times.complete = simulated.complete;
            times.makespan = simulated.makespan;
            times.start = simulated.start;
            times.finish = simulated.finish;
            return chimera::io::write_chrome_trace(s, times, {.microseconds_per_unit = o.microseconds_per_unit});
        }
        case file_format::svg: return chimera::io::write_svg(s);
        case file_format::text: return chimera::io::write_text(s, {.color = terminal});
    }
    return {};
}

}  // namespace

command add_export(CLI::App& app) {
    struct state {
        schedule_options schedule;
        std::string format = "json";
        std::string output;
        output_options out;
    };
    auto s = std::make_shared<state>();
    CLI::App* sub = app.add_subcommand("export", "Generate a schedule and write it in an interchange format");
    add_schedule_options(*sub, s->schedule);
    sub->add_option("--format", s->format, "json, pytorch-csv, chrome-trace, svg or text")
        ->check(CLI::IsMember(format_names))
        ->capture_default_str();
    sub->add_option("-o,--output", s->output, "Output file (default: standard output)");
    add_output_options(*sub, s->out);
    return {sub, [s] {
                const chimera::schedule schedule = chimera::generate(to_config(s->schedule));
                const bool terminal = s->output.empty() && stdout_is_terminal();
                write_output(s->output, render(schedule, *format_from_name(s->format), s->out, terminal));
                return exit_ok;
            }};
}

command add_convert(CLI::App& app) {
    struct state {
        std::string input, output, from, to;
        output_options out;
    };
    auto s = std::make_shared<state>();
    CLI::App* sub = app.add_subcommand(
        "convert", "Read a schedule (json or pytorch-csv), check it, and write it in another format");
    sub->add_option("IN", s->input, "Input file ('-' for standard input)")->required();
    sub->add_option("OUT", s->output, "Output file ('-' for standard output)")->required();
    sub->add_option("--from", s->from, "Input format (default: from the extension, else sniffed)")
        ->check(CLI::IsMember({"json", "pytorch-csv"}));
    sub->add_option("--to", s->to, "Output format (default: from the extension)")->check(CLI::IsMember(format_names));
    add_output_options(*sub, s->out);
    return {sub, [s] {
                const auto to = s->to.empty() ? format_from_path(s->output) : format_from_name(s->to);
                if (!to)
                    throw usage_error("cannot tell the output format from '" + s->output +
                                      "': use --to json|pytorch-csv|chrome-trace|svg|text");
                const auto from = s->from.empty() ? std::nullopt : format_from_name(s->from);
                const chimera::schedule schedule = read_schedule(s->input, read_input(s->input), from);
                const chimera::check_report report = chimera::check(schedule);
                if (!report.ok()) {
                    print_report(report, std::cerr);
                    std::cerr << "chimera-sched: " << s->input << " is not a valid schedule; nothing written\n";
                    return exit_invalid_schedule;
                }
                write_output(s->output, render(schedule, *to, s->out, false));
                return exit_ok;
            }};
}

}  // namespace chimera_sched
