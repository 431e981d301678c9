// tune's explanations: terms, rejections, JSON and the plot (plan_report.hpp).
#include "plan_report.hpp"

#include <cmath>
#include <cstdio>
#include <map>

#include <nlohmann/json.hpp>

namespace chimera_sched {

namespace {

using json = nlohmann::ordered_json;
constexpr double gib = double(1LL << 30);

std::string format(const char* pattern, auto... values) {
    char text[512];
    std::snprintf(text, sizeof text, pattern, values...);
    return text;
}

json point_json(const chimera::tune_point& p) {
    const chimera::config& c = p.schedule;
    return {{"schedule", std::string(to_string(c.schedule))}, {"D", c.stages}, {"W", c.data_parallel},
            {"B", p.micro_batch_size}, {"N", c.micro_batches}, {"k", chimera::pipeline_count(c)},
            {"scaling", std::string(to_string(c.scaling_mode))}, {"recompute", p.recompute}};
}

json terms_json(const chimera::iteration_terms& t) {
    return {{"compute", t.compute}, {"bubble", t.bubble}, {"p2p", t.p2p}, {"allreduce", t.allreduce},
            {"shared_cores", t.shared_cores}, {"memory_headroom_bytes", t.memory_headroom}};
}

// The rule's family: the text before its first ':' ("memory", "S1", ...).
std::string family(const std::string& rule) { return rule.substr(0, rule.find(':')); }

}  // namespace

std::string terms_table(const chimera::tune_request& r, const chimera::tune_result& result, std::size_t top) {
    std::string out =
        "\nwhy (seconds per iteration = compute + bubble + p2p + all-reduce + cores; cores: waiting for a core;\n"
        "headroom = memory limit - memory):\n"
        "rank  iteration s    compute     bubble        p2p  all-reduce      cores  headroom GiB\n";
    for (std::size_t i = 0; i < std::min(top, result.ranked.size()); ++i) {
        const chimera::tune_candidate& c = result.ranked[i];
        const chimera::iteration_terms t = chimera::explain(r, c);
        out += format("%4zu %12.4f %10.4f %10.4f %10.4f %11.4f %10.4f %13.2f\n", i + 1, c.iteration_time, t.compute,
                      t.bubble, t.p2p, t.allreduce, t.shared_cores, t.memory_headroom / gib);
    }
    return out;
}

std::string rejection_summary(const chimera::tune_result& result) {
    std::map<std::string, std::pair<std::size_t, std::string>> by_family;  // family -> count, first example
    for (const chimera::tune_rejection& x : result.rejected) {
        auto& [count, example] = by_family[family(x.rule)];
        if (count++ == 0) {
            const chimera::config& c = x.point.schedule;
            example = format("%s D=%d W=%d B=%d N=%d k=%d %s%s: ", std::string(to_string(c.schedule)).c_str(), c.stages,
                             c.data_parallel, x.point.micro_batch_size, c.micro_batches, chimera::pipeline_count(c),
                             std::string(to_string(c.scaling_mode)).c_str(), x.point.recompute ? " recompute" : "") +
                      x.rule;
        }
    }
    std::string out = format("\nrejected: %zu configurations, by the first rule each broke:\n", result.rejected.size());
    for (const auto& [name, entry] : by_family)
        out += format("%6zu  %-14s e.g. %s\n", entry.first, name.c_str(), entry.second.c_str());
    return out;
}

std::string tune_json(const std::string& label, const chimera::tune_request& r, const chimera::tune_result& result,
                      std::size_t top) {
    json ranked = json::array(), rejected = json::array();
    for (std::size_t i = 0; i < result.ranked.size(); ++i) {
        const chimera::tune_candidate& c = result.ranked[i];
        json row = point_json(c.point);
        row["rank"] = i + 1;
        row["samples_per_second"] = c.throughput;
        row["iteration_seconds"] = c.iteration_time;
        row["memory_bytes"] = c.memory_bytes;
        row["bubble_ratio"] = c.bubble_ratio;
        if (i < top) row["terms"] = terms_json(chimera::explain(r, c));
        ranked.push_back(std::move(row));
    }
    for (const chimera::tune_rejection& x : result.rejected) {
        json row = point_json(x.point);
        row["rule"] = x.rule;
        rejected.push_back(std::move(row));
    }
    const json out = {{"label", label},
                      {"model", std::string(r.model.name)},
                      {"parameters", r.model.parameters()},
                      {"device", std::string(r.machine.device.name)},
                      {"devices", r.devices},
                      {"global_batch", r.global_batch},
                      {"memory_limit_bytes", r.memory_limit()},
                      {"evaluated", result.evaluated},
                      {"ranked", ranked},
                      {"rejected", rejected}};
    return out.dump(1) + "\n";
}

}  // namespace chimera_sched
