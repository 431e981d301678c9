// chimera-sched lower: a lowered schedule (compute + SEND/RECV/REDUCE_GRAD)
// as chimera.schedule/1 JSON or as per-worker lists with groups in brackets.
#include <iostream>

#include <chimera/detail/text.hpp>
#include <chimera/generate.hpp>
#include <chimera/io/json.hpp>
#include <chimera/lower.hpp>
#include <chimera/rendezvous.hpp>

#include "cli.hpp"

namespace chimera_sched {

void add_sync_options(CLI::App& command, std::string& sync, int& min_window) {
    command.add_option("--sync", sync, "Gradient sync: end, eager or eager-opt")
        ->check(CLI::IsMember({"end", "eager", "eager-opt"}))
        ->capture_default_str();
    command.add_option("--min-window", min_window, "eager-opt: smallest overlap window in slots, >= 1 (default D-1)")
        ->check(CLI::PositiveNumber);
}

chimera::lower_options to_lower_options(const std::string& sync, int min_window) {
    return {.sync = *chimera::parse_sync_policy(sync), .min_window = min_window};  // IsMember checked the name
}

// One line per worker; a bracket is one group (posted together).
std::string write_lowered_text(const chimera::schedule& s) {
    using chimera::detail::cat;
    std::string out = cat(s.name(), " lowered: ", s.workers(), " workers; [..] = one communication group, ",
                          ">w send to worker w, <w receive from worker w, sN stage N\n");
    for (int w = 0; w < s.workers(); ++w) {
        out += cat("P", w, ":");
        bool in_group = false;
        for (const chimera::op& o : s.ops(w)) {
            const bool comm = chimera::is_comm(o.kind);
            if (comm && !in_group) out += " [";
            else if (!comm && in_group) out += "]";
            if (!(comm && !in_group)) out += " ";
            in_group = comm;
            out += std::string(to_string(o.kind));
            if (o.kind != chimera::op_kind::REDUCE_GRAD) out += cat(o.micro_batch);
            out += cat("s", o.stage);
            if (chimera::is_p2p(o.kind)) out += cat(chimera::is_send(o.kind) ? ">" : "<", o.peer);
        }
        out += in_group ? "]\n" : "\n";
    }
    return out;
}

command add_lower(CLI::App& app) {
    struct state {
        schedule_options schedule;
        std::string sync = "end";
        int min_window = 0;
        std::string format = "json";
    };
    auto s = std::make_shared<state>();
    CLI::App* sub = app.add_subcommand("lower", "Generate a schedule and lower it to communication ops");
    add_schedule_options(*sub, s->schedule);
    add_sync_options(*sub, s->sync, s->min_window);
    sub->add_option("--format", s->format, "Output: json (chimera.schedule/1) or text (per-worker lists)")
        ->check(CLI::IsMember({"json", "text"}))
        ->capture_default_str();
    return {sub, [s] {
                const chimera::schedule lowered = chimera::lower(chimera::generate(to_config(s->schedule)),
                                                                 to_lower_options(s->sync, s->min_window));
                std::cout << (s->format == "json" ? chimera::io::write_json(lowered) : write_lowered_text(lowered));
                return exit_ok;
            }};
}

}  // namespace chimera_sched
