// chimera-sched compare: every schedule that accepts (D, N) side by side.
#include <cstdio>
#include <iostream>
#include <sstream>

#include <chimera/compare.hpp>

#include "cli.hpp"

namespace chimera_sched {

namespace {

// "F=1,B=2" or "F=1,I=1,W=1": a missing B is I + W; missing I, W are B/2.
chimera::op_costs parse_costs(const std::string& text) {
    double value[4] = {-1, -1, -1, -1};  // F B I W
    std::stringstream in(text);
    std::string item;
    while (std::getline(in, item, ',')) {
        const auto eq = item.find('=');
        const std::string key = item.substr(0, eq);
        const char* keys = "FBIW";
        const auto k = key.size() == 1 ? std::string_view(keys).find(key[0]) : std::string_view::npos;
        double number = -1;
        if (eq != std::string::npos) {
            try {
                std::size_t used = 0;
                number = std::stod(item.substr(eq + 1), &used);
                if (used != item.size() - eq - 1) number = -1;
            } catch (const std::exception&) {
                number = -1;
            }
        }
        if (k == std::string_view::npos || !(number > 0))
            throw usage_error("--cost: expected KIND=TIME items with KIND in F, B, I, W and TIME > 0, got '" + item +
                              "'");
        value[k] = number;
    }
    if (value[0] < 0) value[0] = 1;
    if (value[1] < 0 && (value[2] < 0 || value[3] < 0))
        throw usage_error("--cost: give B, or both I and W (got '" + text + "')");
    if (value[1] < 0) value[1] = value[2] + value[3];
    if (value[2] < 0) value[2] = value[3] > 0 ? value[1] - value[3] : value[1] / 2;
    if (value[3] < 0) value[3] = value[1] - value[2];
    if (value[2] <= 0 || value[3] <= 0) throw usage_error("--cost: I and W must be > 0 (got '" + text + "')");
    return {value[0], value[1], value[2], value[3]};
}

std::string number(double x, int digits) {
    char buffer[32];
    std::snprintf(buffer, sizeof buffer, "%.*f", digits, x);
    std::string s = buffer;
    if (s.find('.') != std::string::npos) {
        while (s.back() == '0') s.pop_back();
        if (s.back() == '.') s.pop_back();
    }
    return s;
}

}  // namespace

command add_compare(CLI::App& app) {
    struct state {
        int stages = 0, micro_batches = 0, chunks = 2;
        std::string cost = "F=1,B=2", format = "text";
    };
    auto s = std::make_shared<state>();
    CLI::App* sub = app.add_subcommand("compare", "Span, bubble, memory and replicas of every schedule at (D, N)");
    sub->add_option("--stages", s->stages, "Workers D (stages per pipeline)")->required();
    sub->add_option("--micro-batches", s->micro_batches, "Micro-batches N per iteration")->required();
    sub->add_option("--cost", s->cost, "Op costs, e.g. F=1,B=2 or F=1,I=1,W=1")->capture_default_str();
    sub->add_option("--chunks", s->chunks, "Chunks v for interleaved and looped-bfs")->capture_default_str();
    sub->add_option("--format", s->format, "Output: text or markdown")
        ->check(CLI::IsMember({"text", "markdown"}))
        ->capture_default_str();
    return {sub, [s] {
                const chimera::op_costs costs = parse_costs(s->cost);
                if (s->stages < 1 || s->micro_batches < 1)
                    throw usage_error("--stages and --micro-batches must be >= 1");
                const auto rows = chimera::compare_all(s->stages, s->micro_batches, costs, s->chunks);
                const bool md = s->format == "markdown";
                const std::string head[] = {"schedule", "span", "bubble ratio", "peak act.", "weight copies", "N constraint"};
                std::vector<std::vector<std::string>> table;
                for (const auto& r : rows)
                    if (r.accepted)
                        table.push_back({r.label, number(r.span, 2), number(r.bubble_ratio, 4),
                                         number(r.peak_activations, 2), std::to_string(r.weight_replicas) + "x",
                                         std::string(r.n_constraint)});
                std::size_t width[6] = {};
                for (int i = 0; i < 6; ++i) width[i] = head[i].size();
                for (const auto& line : table)
                    for (int i = 0; i < 6; ++i) width[i] = std::max(width[i], line[static_cast<std::size_t>(i)].size());
                auto print = [&](const std::string* cells) {
                    std::string out = md ? "|" : "";
                    for (int i = 0; i < 6; ++i) {
                        std::string cell = cells[i];
                        if (i < 5) cell.resize(width[i], ' ');
                        out += md ? " " + cells[i] + " |" : cell + (i < 5 ? "  " : "");
                    }
                    std::cout << out << "\n";
                };
                std::cout << (md ? "" : "# ") << "D=" << s->stages << " workers, N=" << s->micro_batches
                          << " micro-batches, costs F=" << number(costs.forward, 3) << " B=" << number(costs.backward, 3)
                          << " I=" << number(costs.input_backward, 3) << " W=" << number(costs.weight_backward, 3)
                          << (md ? "\n\n" : "\n");
                print(head);
                if (md) std::cout << "|---|---:|---:|---:|---:|---|\n";
                for (const auto& line : table) print(line.data());
                bool first = true;
                for (const auto& r : rows)
                    if (!r.accepted) {
                        if (first) std::cout << (md ? "\nNot applicable:\n\n" : "not applicable:\n");
                        first = false;
                        std::cout << (md ? "- " : "  ") << r.refusal << "\n";  // the message names the schedule
                    }
                return exit_ok;
            }};
}

}  // namespace chimera_sched
