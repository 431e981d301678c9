// The text grid (docs/design/formats.md#text-grid-and-svg): one line per worker, one column per
// unit-time slot, cells like F3 / B3 / '.', a legend beneath. Colour (ANSI,
// one colour per pipeline) only when asked for, i.e. on a terminal.
#pragma once

#include <algorithm>
#include <string>
#include <vector>

#include "../detail/text.hpp"
#include "../schedule.hpp"
#include "../slots.hpp"

namespace chimera::io {

struct text_options {
    bool color = false;
};

template <schedule_like S>
std::string write_text(const S& s, const text_options& options = {}) {
    using ::chimera::detail::cat;
    const unit_slots u = make_unit_slots(s);
    std::vector<std::vector<std::string>> cells(static_cast<std::size_t>(s.workers()),
                                                std::vector<std::string>(static_cast<std::size_t>(u.span), "."));
    std::vector<std::vector<int>> colour(static_cast<std::size_t>(s.workers()),
                                         std::vector<int>(static_cast<std::size_t>(u.span), -1));
    std::size_t width = 1, position = 0;
    for (int w = 0; w < s.workers(); ++w)
        for (const op& o : s.ops(w)) {
            const int slot = u.slot[position++];
            if (slot < 0 || !is_compute(o.kind)) continue;
            std::string label = cat(to_string(o.kind), o.micro_batch);
            width = std::max(width, label.size());
            cells[static_cast<std::size_t>(w)][static_cast<std::size_t>(slot)] = std::move(label);
            colour[static_cast<std::size_t>(w)][static_cast<std::size_t>(slot)] = o.pipeline;
        }
    width = std::max(width, cat(u.span - 1).size());
    const std::string worker_label_width(cat("P", s.workers() - 1).size(), ' ');
    auto pad = [&](const std::string& text, std::size_t w) { return text + std::string(w - text.size(), ' '); };
    std::string out = cat(s.name(), ": ", s.workers(), " workers, ", s.stages(), " stages, ", s.micro_batches(),
                          " micro-batches, ", s.pipelines(), s.pipelines() == 1 ? " pipeline" : " pipelines",
                          ", span ", u.span, " unit-time slots", u.complete ? "" : " (DEADLOCK: stuck ops omitted)",
                          "\n");
    out += worker_label_width;
    out += ' ';
    for (int slot = 0; slot < u.span; ++slot) {
        out += ' ';
        out += pad(cat(slot), width);
    }
    while (out.back() == ' ') out.pop_back();
    out += "\n";
    constexpr const char* palette[] = {"\x1b[34m", "\x1b[31m", "\x1b[32m", "\x1b[35m", "\x1b[36m", "\x1b[33m"};
    for (int w = 0; w < s.workers(); ++w) {
        out += pad(cat("P", w), worker_label_width.size()) + " ";
        for (int slot = 0; slot < u.span; ++slot) {
            const auto& cell = cells[static_cast<std::size_t>(w)][static_cast<std::size_t>(slot)];
            const int p = colour[static_cast<std::size_t>(w)][static_cast<std::size_t>(slot)];
            out += ' ';
            if (options.color && p >= 0)
                out.append(palette[p % 6]).append(pad(cell, width)).append("\x1b[0m");
            else
                out.append(pad(cell, width));
        }
        while (out.back() == ' ') out.pop_back();
        out += "\n";
    }
    out += "legend: Fm forward, Bm backward, Im input gradient, Wm weight gradient of micro-batch m; '.' idle\n";
    if (s.pipelines() > 1) {
        out += "pipelines:";
        for (int p = 0; p < s.pipelines(); ++p) {
            std::string entry = cat(" p", p, " stage0@P", s.placement(p, 0));
            out += options.color ? std::string(palette[p % 6]) + entry + "\x1b[0m" : entry;
        }
        out += "\n";
    }
    return out;
}

}  // namespace chimera::io
