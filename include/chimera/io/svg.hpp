// SVG timeline (docs/design/formats.md#text-grid-and-svg): one row of boxes per worker, one colour per
// pipeline (forward light, backward dark, weight-gradient in between), the
// micro-batch number inside each box, a time axis and worker labels.
// Self-contained: no scripts, no external fonts or links, so it renders in
// browsers, READMEs on code hosts and docs alike. Deterministic bytes.
#pragma once

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "../analysis.hpp"
#include "../detail/text.hpp"
#include "../schedule.hpp"
#include "../slots.hpp"
#include "chrome_trace.hpp"  // detail::number, detail::trace_name

namespace chimera::io {

struct svg_options {
    double unit_width = 28;  // pixels per time unit (one unit-time slot)
    double row_height = 24;
};

namespace detail {

struct svg_palette {
    const char* forward;
    const char* backward;  // B and I
    const char* weight;    // W
};

// Colour-blind-friendly-ish hue families (ColorBrewer sequential scales).
inline constexpr svg_palette svg_palettes[] = {
    {"#9ecae1", "#2171b5", "#6baed6"},  // blue
    {"#fcae91", "#cb181d", "#fb6a4a"},  // red
    {"#a1d99b", "#238b45", "#74c476"},  // green
    {"#bcbddc", "#6a51a3", "#9e9ac8"},  // purple
    {"#fdd0a2", "#d94801", "#fd8d3c"},  // orange
    {"#d9d9d9", "#525252", "#969696"},  // grey
};

inline std::string xml_escape(std::string_view text) {
    std::string out;
    for (char ch : text) {
        if (ch == '<') out += "&lt;";
        else if (ch == '>') out += "&gt;";
        else if (ch == '&') out += "&amp;";
        else if (ch == '"') out += "&quot;";
        else if (static_cast<unsigned char>(ch) < 0x20) out += ' ';  // not allowed in XML 1.0
        else out += ch;
    }
    return out;
}

inline std::string px(double value) { return number(std::round(value * 100) / 100); }

// start < 0: the op is not drawn (communication, or never ran).
template <schedule_like S>
std::string draw_svg(const S& s, const std::vector<double>& start, const std::vector<double>& duration, double span,
                     const std::string& subtitle, const svg_options& options) {
    using ::chimera::detail::cat;
    const double unit = options.unit_width, row = options.row_height, pitch = row + 6;
    const double left = 44, top = 40;
    const double axis_y = top + s.workers() * pitch + 4;
    const double legend_y = axis_y + 30;
    const double height = legend_y + 16 + 8;
    const std::string title = cat(xml_escape(s.name()), ": ", s.workers(), " workers, ", s.stages(), " stages, ",
                                  s.micro_batches(), " micro-batches, ", s.pipelines(),
                                  s.pipelines() == 1 ? " pipeline" : " pipelines");
    bool has_weight = false, has_input = false;
    for (const op& o : s.all_ops()) {
        has_weight |= o.kind == op_kind::W;
        has_input |= o.kind == op_kind::I;
    }
    // Legend: one swatch per pipeline and kind present; monospace 12px is
    // about 7.3 px per character, 13px about 7.9.
    std::string legend = "<g class=\"legend\">\n";
    double legend_x = left;
    auto swatch = [&](const char* fill, const std::string& label) {
        legend += cat("<rect x=\"", px(legend_x), "\" y=\"", px(legend_y), "\" width=\"14\" height=\"14\" rx=\"2\" fill=\"",
                      fill, "\"/><text x=\"", px(legend_x + 18), "\" y=\"", px(legend_y + 11), "\">", label, "</text>\n");
        legend_x += 26 + 7.3 * static_cast<double>(label.size());
    };
    for (int p = 0; p < std::min<int>(s.pipelines(), static_cast<int>(std::size(svg_palettes))); ++p) {
        const auto& colours = svg_palettes[static_cast<std::size_t>(p)];
        const std::string name = s.pipelines() == 1 ? std::string() : cat("p", p, " ");
        swatch(colours.forward, name + "F");
        swatch(colours.backward, name + (has_input ? "B/I" : "B"));
        if (has_weight) swatch(colours.weight, name + "W");
    }
    legend += "</g>\n";
    const double width = std::ceil(std::max({left + span * unit + 16, left + 7.9 * static_cast<double>(title.size()) + 8,
                                             left + 7.3 * static_cast<double>(subtitle.size()) + 8, legend_x}));
    std::string out = cat("<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"", px(width), "\" height=\"", px(height),
                          "\" viewBox=\"0 0 ", px(width), " ", px(height),
                          "\" font-family=\"monospace\" font-size=\"12\">\n");
    out += cat("<rect width=\"100%\" height=\"100%\" fill=\"#ffffff\"/>\n<text x=\"", px(left),
               "\" y=\"16\" font-size=\"13\">", title, "</text>\n");
    out += cat("<text x=\"", px(left), "\" y=\"31\" fill=\"#555555\">", subtitle, "</text>\n");
    // Time axis: a tick every `step` units so that labels do not collide.
    const int step = std::max(1, static_cast<int>(std::ceil(28.0 / unit)));
    out += "<g class=\"axis\" fill=\"#555555\" text-anchor=\"middle\">\n";
    for (int t = 0; t <= static_cast<int>(std::ceil(span)); t += step) {
        const double x = left + t * unit;
        out += cat("<line x1=\"", px(x), "\" y1=\"", px(top - 2), "\" x2=\"", px(x), "\" y2=\"", px(axis_y - 4),
                   "\" stroke=\"#eeeeee\"/><text x=\"", px(x), "\" y=\"", px(axis_y + 10), "\">", t, "</text>\n");
    }
    out += "</g>\n";
    std::size_t position = 0;
    for (int w = 0; w < s.workers(); ++w) {
        const double y = top + w * pitch;
        out += cat("<g class=\"worker\" id=\"P", w, "\">\n<text x=\"4\" y=\"", px(y + row / 2 + 4), "\">P", w,
                   "</text>\n");
        for (const op& o : s.ops(w)) {
            const std::size_t i = position++;
            if (start[i] < 0 || !is_compute(o.kind)) continue;
            const auto& colours = svg_palettes[static_cast<std::size_t>(o.pipeline) % std::size(svg_palettes)];
            const bool dark = o.kind == op_kind::B || o.kind == op_kind::I;
            const char* fill = o.kind == op_kind::F ? colours.forward : dark ? colours.backward : colours.weight;
            const double x = left + start[i] * unit, box = duration[i] * unit;
            out += cat("<rect class=\"op ", to_string(o.kind), "\" x=\"", px(x + 1), "\" y=\"", px(y), "\" width=\"",
                       px(std::max(1.0, box - 2)), "\" height=\"", px(row), "\" rx=\"3\" fill=\"", fill,
                       "\"><title>", trace_name(o), "</title></rect>");
            out += cat("<text x=\"", px(x + box / 2), "\" y=\"", px(y + row / 2 + 4), "\" text-anchor=\"middle\" fill=\"",
                       dark ? "#ffffff" : "#000000", "\">", o.micro_batch, "</text>\n");
        }
        out += "</g>\n";
    }
    out += legend + "</svg>\n";
    return out;
}

}  // namespace detail

// Boxes at the unit-time slots (the text grid's layout).
template <schedule_like S>
std::string write_svg(const S& s, const svg_options& options = {}) {
    using ::chimera::detail::cat;
    const unit_slots u = make_unit_slots(s);
    std::vector<double> start(u.slot.begin(), u.slot.end()), duration(u.slot.size(), 1.0);
    return detail::draw_svg(s, start, duration, u.span,
                            cat("unit-time slots, span ", u.span,
                                u.complete ? "" : " (DEADLOCK: ops that never run are not drawn)"),
                            options);
}

// Boxes at the given times (ASAP with costs, the simulator, or a run).
template <schedule_like S>
std::string write_svg(const S& s, const timing& times, const svg_options& options = {}) {
    std::vector<double> duration(times.start.size());
    for (std::size_t i = 0; i < duration.size(); ++i) duration[i] = times.finish[i] - times.start[i];
    return detail::draw_svg(s, times.start, duration, times.makespan,
                            "makespan " + detail::number(times.makespan) +
                                (times.complete ? "" : " (DEADLOCK: ops that never run are not drawn)"),
                            options);
}

}  // namespace chimera::io
