// Chrome trace JSON (docs/design/formats.md#chrome-trace): {"traceEvents": [...]} with one
// complete event ("ph":"X") per op, pid = worker, tid 0 = compute and
// tid 1 = communication; opens unchanged in ui.perfetto.dev and
// chrome://tracing.
//
// Times come from a `timing` (start/finish per op, indexed like all_ops()):
// the ASAP model of analysis.hpp by default, or any other producer of the
// same struct (the cost-model simulator, or times measured in a run).
#pragma once

#include <charconv>
#include <string>
#include <string_view>

#include "../analysis.hpp"
#include "../detail/text.hpp"
#include "../error.hpp"
#include "../schedule.hpp"
#include "json.hpp"  // write_json_string

namespace chimera::io {

struct trace_options {
    double microseconds_per_unit = 1000;  // one cost unit of the timing = 1 ms by default
};

namespace detail {

// Shortest decimal that reads back to the same double: deterministic bytes.
inline std::string number(double value) {
    if (value == 0) return "0";  // also folds -0
    char buffer[32];
    const auto result = std::to_chars(buffer, buffer + sizeof buffer, value);
    return std::string(buffer, result.ptr);
}

inline std::string trace_name(const op& o) {
    using ::chimera::detail::cat;
    if (o.kind == op_kind::REDUCE_GRAD) return cat("REDUCE_GRAD s", o.stage, " p", o.pipeline);
    std::string name = cat(to_string(o.kind), " m", o.micro_batch, " s", o.stage, " p", o.pipeline);
    if (is_p2p(o.kind)) name += cat(" peer", o.peer);
    return name;
}

}  // namespace detail

// The trace of `s` with the given times; throws schedule_error (D4) when
// the timing did not run every op (deadlock).
template <schedule_like S>
std::string write_chrome_trace(const S& s, const timing& times, const trace_options& options = {}) {
    using ::chimera::detail::cat;
    if (!times.complete || times.start.size() != s.op_count())
        throw schedule_error("D4", cat("cannot draw a timeline of '", s.name(),
                                       "': its op lists deadlock, so some ops never run (run check)"));
    const double scale = options.microseconds_per_unit;
    std::string out = "{\"displayTimeUnit\":\"ms\",\"otherData\":{\"format\":\"chimera.schedule/1\",\"name\":";
    detail::write_json_string(out, s.name());
    out += cat(",\"workers\":", s.workers(), ",\"stages\":", s.stages(), ",\"micro_batches\":", s.micro_batches(),
               ",\"pipelines\":", s.pipelines(), "},\n\"traceEvents\":[");
    bool first = true;
    auto next = [&] {
        out += first ? "\n" : ",\n";
        first = false;
    };
    // Metadata first, so that viewers label the tracks P0, P1, ... in order.
    for (int w = 0; w < s.workers(); ++w) {
        next();
        out += cat("{\"ph\":\"M\",\"name\":\"process_name\",\"pid\":", w, ",\"tid\":0,\"args\":{\"name\":\"P", w,
                   "\"}},\n{\"ph\":\"M\",\"name\":\"process_sort_index\",\"pid\":", w,
                   ",\"tid\":0,\"args\":{\"sort_index\":", w, "}},\n{\"ph\":\"M\",\"name\":\"thread_name\",\"pid\":", w,
                   ",\"tid\":0,\"args\":{\"name\":\"compute\"}},\n{\"ph\":\"M\",\"name\":\"thread_name\",\"pid\":", w,
                   ",\"tid\":1,\"args\":{\"name\":\"communication\"}}");
    }
    std::size_t position = 0;
    for (int w = 0; w < s.workers(); ++w)
        for (const op& o : s.ops(w)) {
            const double start = times.start[position], finish = times.finish[position];
            ++position;
            next();
            out += "{\"ph\":\"X\",\"name\":\"" + detail::trace_name(o) + "\",\"cat\":\"" +
                   (is_compute(o.kind) ? "compute" : "communication") + "\"";
            out += cat(",\"pid\":", w, ",\"tid\":", is_compute(o.kind) ? 0 : 1, ",\"ts\":", detail::number(start * scale),
                       ",\"dur\":", detail::number((finish - start) * scale), ",\"args\":{\"kind\":\"",
                       to_string(o.kind), "\",\"stage\":", o.stage);
            if (o.kind != op_kind::REDUCE_GRAD) out += cat(",\"micro_batch\":", o.micro_batch);
            out += cat(",\"pipeline\":", o.pipeline);
            if (is_p2p(o.kind)) out += cat(",\"peer\":", o.peer);
            out += "}}";
        }
    out += "\n]}\n";
    return out;
}

// The trace with ASAP times from per-kind costs (communication takes no time).
template <schedule_like S>
std::string write_chrome_trace(const S& s, const op_costs& costs = {}, const trace_options& options = {}) {
    return write_chrome_trace(s, asap(s, costs), options);
}

}  // namespace chimera::io
