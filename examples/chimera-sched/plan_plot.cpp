// tune --plot: predicted throughput and memory against D, one line per
// schedule (the best configuration of that schedule at each D), the chosen
// configuration circled, the memory limit dashed.
#include <cmath>
#include <cstdio>
#include <map>
#include <set>

#include "plan_report.hpp"

namespace chimera_sched {

namespace {

constexpr double panel_w = 400, panel_h = 260, left = 70, top = 50, gap = 90;
constexpr const char* colours[] = {"#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b"};

std::string format(const char* pattern, auto... values) {
    char text[512];
    std::snprintf(text, sizeof text, pattern, values...);
    return text;
}

struct panel {
    double x0;            // left edge
    double y_max;         // value at the top
    std::set<int> depths;  // x positions: equally spaced in this order

    double x(int d) const {
        const auto i = static_cast<double>(std::distance(depths.begin(), depths.find(d)));
        return x0 + (depths.size() > 1 ? i * panel_w / static_cast<double>(depths.size() - 1) : panel_w / 2);
    }
    double y(double v) const { return top + panel_h - (y_max > 0 ? v / y_max * panel_h : 0); }

    std::string axes(const std::string& title) const {
        std::string out = format("<rect x='%g' y='%g' width='%g' height='%g' fill='none' stroke='#888'/>\n", x0, top,
                                 panel_w, panel_h);
        out += format("<text x='%g' y='%g' text-anchor='middle' font-weight='bold'>%s</text>\n", x0 + panel_w / 2,
                      top - 12, title.c_str());
        for (int d : depths)
            out += format("<text x='%g' y='%g' text-anchor='middle'>%d</text>\n", x(d), top + panel_h + 16, d);
        out += format("<text x='%g' y='%g' text-anchor='middle'>pipeline depth D</text>\n", x0 + panel_w / 2,
                      top + panel_h + 36);
        for (int i = 0; i <= 4; ++i)
            out += format("<text x='%g' y='%g' text-anchor='end'>%.3g</text>\n", x0 - 6, y(y_max * i / 4) + 4,
                          y_max * i / 4);
        return out;
    }
};

}  // namespace

std::string tune_plot(const std::string& label, const chimera::tune_request& r, const chimera::tune_result& result) {
    constexpr double gib = double(1LL << 30);
    std::map<std::string, std::map<int, const chimera::tune_candidate*>> best;  // schedule -> D -> best row
    panel speed{left, 0, {}}, memory{left + panel_w + gap, r.memory_limit() / gib * 1.1, {}};
    for (const chimera::tune_candidate& c : result.ranked) {  // best first: the first row per (schedule, D) wins
        auto& slot = best[std::string(to_string(c.point.schedule.schedule))][c.point.schedule.stages];
        if (!slot) slot = &c;
        speed.depths.insert(c.point.schedule.stages);
        speed.y_max = std::max(speed.y_max, c.throughput * 1.1);
    }
    memory.depths = speed.depths;
    std::string out = format("<svg xmlns='http://www.w3.org/2000/svg' width='%g' height='%g' font-family='sans-serif' "
                             "font-size='12'>\n<rect width='100%%' height='100%%' fill='white'/>\n",
                             2 * panel_w + gap + left + 20, top + panel_h + 90);
    out += format("<text x='%g' y='20' font-size='14'>%s: %d devices, global batch %d</text>\n", left, label.c_str(),
                  r.devices, r.global_batch);
    out += speed.axes("predicted samples/s (best per D)") + memory.axes("memory GiB of that configuration");
    out += format("<line x1='%g' x2='%g' y1='%g' y2='%g' stroke='#000' stroke-dasharray='4 3'/>\n", memory.x0,
                  memory.x0 + panel_w, memory.y(r.memory_limit() / gib), memory.y(r.memory_limit() / gib));
    out += format("<text x='%g' y='%g' text-anchor='end'>memory limit</text>\n", memory.x0 + panel_w - 4,
                  memory.y(r.memory_limit() / gib) - 4);
    std::size_t colour = 0;
    for (const auto& [name, rows] : best) {
        const char* c = colours[colour % std::size(colours)];
        std::string a, b;
        for (const auto& [d, row] : rows) {
            a += format("%g,%g ", speed.x(d), speed.y(row->throughput));
            b += format("%g,%g ", memory.x(d), memory.y(row->memory_bytes / gib));
        }
        for (const std::string& points : {a, b})
            out += format("<polyline points='%s' fill='none' stroke='%s' stroke-width='2'/>\n", points.c_str(), c);
        for (const auto& [d, row] : rows)
            out += format("<circle cx='%g' cy='%g' r='3' fill='%s'/><circle cx='%g' cy='%g' r='3' fill='%s'/>\n",
                          speed.x(d), speed.y(row->throughput), c, memory.x(d), memory.y(row->memory_bytes / gib), c);
        out += format("<text x='%g' y='%g' fill='%s'>%s</text>\n", left + 10 + 90.0 * static_cast<double>(colour),
                      top + panel_h + 56, c, name.c_str());
        ++colour;
    }
    if (!result.ranked.empty()) {
        const chimera::tune_candidate& w = result.ranked.front();
        const int d = w.point.schedule.stages;
        out += format("<circle cx='%g' cy='%g' r='8' fill='none' stroke='#000' stroke-width='2'/>\n", speed.x(d),
                      speed.y(w.throughput));
        out += format("<circle cx='%g' cy='%g' r='8' fill='none' stroke='#000' stroke-width='2'/>\n", memory.x(d),
                      memory.y(w.memory_bytes / gib));
        out += format("<text x='%g' y='%g' text-anchor='middle'>chosen: %s D=%d W=%d B=%d k=%d</text>\n", speed.x(d),
                      speed.y(w.throughput) + 24, std::string(to_string(w.point.schedule.schedule)).c_str(), d,
                      w.point.schedule.data_parallel, w.point.micro_batch_size, chimera::pipeline_count(w.point.schedule));
    }
    return out + "</svg>\n";
}

}  // namespace chimera_sched
