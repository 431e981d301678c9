// Small helpers shared by the tests: op lists as compact strings and
// schedule surgery for mutation tests.
#pragma once

#include <string>
#include <vector>

#include <chimera/chimera.hpp>

namespace test {

// "F0d1" = forward of micro-batch 0, down pipeline (p0, 'd'), stage 1 for
// two pipelines; "F0p2s1" in general.
inline std::string label(const chimera::op& o, int pipelines) {
    std::string text = std::string(chimera::to_string(o.kind)) + std::to_string(o.micro_batch);
    if (pipelines == 2) return text + (o.pipeline == 0 ? "d" : "u") + std::to_string(o.stage);
    return text + "p" + std::to_string(o.pipeline) + "s" + std::to_string(o.stage);
}

template <class S>
std::string worker_string(const S& s, int w) {
    std::string out;
    for (const auto& o : s.ops(w)) {
        if (!out.empty()) out += ' ';
        out += label(o, s.pipelines());
    }
    return out;
}

using op_lists = std::vector<std::vector<chimera::op>>;

template <class S>
op_lists lists_of(const S& s) {
    op_lists lists(static_cast<std::size_t>(s.workers()));
    for (int w = 0; w < s.workers(); ++w) lists[static_cast<std::size_t>(w)].assign(s.ops(w).begin(), s.ops(w).end());
    return lists;
}

// Same frame as `s` (params replaced when given), with other op lists.
template <class S>
chimera::schedule with_lists(const S& s, const op_lists& lists, const chimera::config* params = nullptr) {
    chimera::schedule out = chimera::with_ops(s, lists);
    if (params) out.set_identity(out.name(), *params);
    return out;
}

inline std::string rules_of(const chimera::check_report& r) {
    std::string out;
    for (const auto& d : r.diagnostics) out += std::string(d.rule) + ": " + d.message + "\n";
    return out;
}

}  // namespace test
