// Chimera's own checker rules, reached by the checker through chimera_entry
// (check_shape, check_invariants): the parameter and placement rules S1-S4,
// the unit-time rules T1-T5 of the closed form (direct mode), the order of
// the phase form (doubling and halving, reported as T1) and the memory rules
// M1-M3. Included at the end of chimera.hpp; the IR headers are all it needs.
#pragma once

#include <algorithm>
#include <vector>

#include "chimera.hpp"

namespace chimera::schedules {

namespace detail {

using ::chimera::detail::cat;

// S2: the placement of docs/design/chimera-closed-form.md#placement; S3: k distinct replicas per stage.
constexpr void check_chimera_placement(const schedule& s, int k, std::vector<diagnostic>& out) {
    for (int p = 0; p < k; ++p)
        for (int stage = 0; stage < s.stages(); ++stage)
            if (s.placement(p, stage) != chimera_worker(s.stages(), k, p, stage))
                out.push_back({"S2", -1, -1,
                               cat("chimera: placement[", p, "][", stage, "] = ", s.placement(p, stage), ", expected ",
                                   chimera_worker(s.stages(), k, p, stage), " (docs/design/chimera-closed-form.md#placement)")});
    for (int stage = 0; stage < s.stages(); ++stage) {
        std::vector<int> holders;
        for (int p = 0; p < k; ++p) holders.push_back(s.placement(p, stage));
        std::sort(holders.begin(), holders.end());
        if (std::unique(holders.begin(), holders.end()) != holders.end())
            out.push_back({"S3", -1, -1, cat("chimera: stage ", stage, " has fewer than ", k, " distinct replicas")});
    }
}

// T1 (direct): the list is the closed-form order (slots strictly increase).
constexpr void check_slot_order(const schedule& s, std::vector<diagnostic>& out) {
    for (int w = 0; w < s.workers(); ++w) {
        int previous = -1;
        const auto list = s.ops(w);
        for (int i = 0; i < static_cast<int>(list.size()); ++i) {
            const op& o = list[static_cast<std::size_t>(i)];
            if (!is_compute(o.kind)) continue;  // lowered comm ops have no slot
            const int slot = chimera_slot(s, o);
            if (slot <= previous)
                out.push_back({"T1", w, i,
                               cat("worker ", w, " op ", i, " ", describe(o), " has slot ", slot,
                                   ", not after the previous op's slot ", previous)});
            previous = slot;
        }
    }
}

// T2: every data dependency is consumed in the very next slot: F(s-1) for
// F, B(s+1) (or F(D-1) on the last stage) for B. The stash F(s) of a B is
// older and not bound to the next slot.
constexpr void check_next_slot(const schedule& s, std::vector<diagnostic>& out) {
    const compute_index index = make_compute_index(s);
    const auto all = s.all_ops();
    for (int w = 0; w < s.workers(); ++w) {
        const auto list = s.ops(w);
        for (std::size_t i = 0; i < list.size(); ++i) {
            const op& o = list[i];
            std::int32_t deps[2];
            const int count = index.dependencies(o, deps);
            if (count == 0) continue;
            const op& producer = all[static_cast<std::size_t>(deps[count - 1])];
            if (chimera_slot(s, o) != chimera_slot(s, producer) + 1)
                out.push_back({"T2", w, static_cast<int>(i),
                               cat(describe(o), " has slot ", chimera_slot(s, o), ", not right after ",
                                   describe(producer), " (slot ", chimera_slot(s, producer), ")")});
        }
    }
}

// T3: span 2N + D/f - 2 (closed form and ASAP), busy 2N per worker; T4
// (f = 1): m leading and m trailing idle slots, m = min(w, D-1-w).
constexpr void check_span(const schedule& s, double asap_span, std::vector<diagnostic>& out) {
    const int d = s.stages(), f = s.pipelines() / 2, n = s.micro_batches();
    const int span = 2 * n + d / f - 2;
    if (asap_span != span)
        out.push_back({"T3", -1, -1,
                       cat("ASAP span is ", static_cast<long long>(asap_span), ", expected 2N + D/f - 2 = ", span)});
    for (int w = 0; w < d; ++w) {
        const std::vector<op> list = compute_ops(s.ops(w));
        if (static_cast<int>(list.size()) != 2 * n) {
            out.push_back({"T3", w, -1, cat("worker ", w, " is busy ", list.size(), " slots, expected 2N = ", 2 * n)});
        } else if (chimera_slot(s, list.back()) >= span) {
            out.push_back({"T3", w, -1,
                           cat("worker ", w, " runs until slot ", chimera_slot(s, list.back()), ", past the span ", span)});
        }
        const int m = std::min(w, d - 1 - w);
        if (f == 1 && !list.empty() &&
            (chimera_slot(s, list.front()) != m || chimera_slot(s, list.back()) != span - 1 - m))
            out.push_back({"T4", w, -1,
                           cat("worker ", w, " idles ", chimera_slot(s, list.front()), " leading and ",
                               span - 1 - chimera_slot(s, list.back()), " trailing slots, expected ", m, " and ", m)});
    }
}

// T5: all replicas of a stage run their last B in one slot, decreasing with the stage.
constexpr void check_last_backward(const schedule& s, std::vector<diagnostic>& out) {
    const int d = s.stages(), k = s.pipelines(), f = k / 2, units = s.micro_batches() / d;
    std::vector<int> last(static_cast<std::size_t>(k) * d, -1);
    for (const op& o : s.all_ops())
        if (o.kind == op_kind::B) {
            int& l = last[static_cast<std::size_t>(o.pipeline) * d + o.stage];
            l = std::max(l, chimera_slot(s, o));
        }
    for (int stage = 0; stage < d; ++stage) {
        const int slot = last[static_cast<std::size_t>(stage)];
        for (int p = 1; p < k; ++p)
            if (last[static_cast<std::size_t>(p) * d + stage] != slot)
                out.push_back({"T5", -1, -1,
                               cat("stage ", stage, ": pipeline ", p, " runs its last B at slot ",
                                   last[static_cast<std::size_t>(p) * d + stage], ", pipeline 0 at slot ", slot)});
        if (stage > 0 && slot >= last[static_cast<std::size_t>(stage - 1)])
            out.push_back({"T5", -1, -1,
                           cat("last B of stage ", stage, " (slot ", slot, ") is not before that of stage ", stage - 1)});
        if (f == 1 && slot != 2 * d * (units - 1) + 3 * d - 3 - stage)
            out.push_back({"T5", -1, -1,
                           cat("last B of stage ", stage, " at slot ", slot, ", expected 2D(U-1) + 3D - 3 - stage = ",
                               2 * d * (units - 1) + 3 * d - 3 - stage)});
    }
}

// T1 (doubling, halving): every worker's compute ops follow the phase form
// of doubling_phase_order: the kind and pipeline of each position, stage
// w or D-1-w, and micro-batches FIFO per pipeline in increasing id. The
// first position that differs is reported, with what the form expects.
constexpr void check_phase_order(const schedule& s, std::vector<diagnostic>& out) {
    const int d = s.stages();
    std::vector<int> routed[2];  // ids of each pipeline, increasing
    for (int m = 0; m < s.micro_batches(); ++m) routed[s.pipeline_of(m)].push_back(m);
    for (int w = 0; w < d; ++w) {
        const std::vector<phase_step> order = doubling_phase_order(d, w, s.micro_batches() / (2 * d));
        const int stage_of[2] = {w, d - 1 - w};
        std::size_t next[2][2] = {}, position = 0;
        const auto list = s.ops(w);
        for (int i = 0; i < static_cast<int>(list.size()); ++i) {
            const op& o = list[static_cast<std::size_t>(i)];
            if (!is_compute(o.kind)) continue;
            if (position >= order.size()) break;  // S5 reports extra ops
            const phase_step step = order[position++];
            std::size_t& fifo = next[step.kind == op_kind::F ? 0 : 1][step.pipeline];
            const std::vector<int>& ids = routed[step.pipeline];
            const op expected{step.kind, stage_of[step.pipeline], fifo < ids.size() ? ids[fifo] : -1, step.pipeline,
                              no_peer};
            ++fifo;
            if (o.kind == expected.kind && o.stage == expected.stage && o.micro_batch == expected.micro_batch &&
                o.pipeline == expected.pipeline)
                continue;
            out.push_back({"T1", w, i,
                           cat("worker ", w, " op ", i, " ", describe(o), ": the ", to_string(s.params().scaling_mode),
                               " phase form runs ", describe(expected), " here")});
            break;
        }
    }
}

// M1-M3: peak in-flight activations per worker.
constexpr void check_memory(const schedule& s, std::vector<diagnostic>& out) {
    const int d = s.stages(), f = s.pipelines() / 2;
    const bool direct = s.params().scaling_mode == scaling::direct;
    const std::vector<int> peaks = peak_activations(s);
    if (f == 1) {
        const int extra = direct ? 0 : d;
        for (int w = 0; w < d; ++w) {
            const int expected = extra + d / 2 + 1 + std::min(w, d - 1 - w);
            if (peaks[static_cast<std::size_t>(w)] != expected)
                out.push_back({direct ? "M1" : "M2", w, -1,
                               cat("worker ", w, " holds up to ", peaks[static_cast<std::size_t>(w)],
                                   " activations, expected ", expected)});
        }
        return;
    }
    const auto [lo, hi] = std::minmax_element(peaks.begin(), peaks.end());
    if (*lo != d - d / (2 * f) + 1 || *hi != d)
        out.push_back({"M3", -1, -1,
                       cat("peak activations range over [", *lo, ", ", *hi, "], expected [D - D/(2f) + 1, D] = [",
                           d - d / (2 * f) + 1, ", ", d, "]")});
}

}  // namespace detail

// Chimera's own parameter and placement rules (S1-S4), before the op checks.
constexpr void check_chimera_shape(const schedule& s, std::vector<diagnostic>& out) {
    using ::chimera::detail::cat;
    const config& c = s.params();
    if (auto error = validate(c, chimera_entry)) {
        out.push_back({"S1", -1, -1, std::string(error->message)});
        return;
    }
    const int k = pipeline_count(c, chimera_entry);
    const int expected_n = detail::chimera_micro_batches(c);
    if (s.stages() != c.stages || s.pipelines() != k || s.workers() != c.stages || s.micro_batches() != expected_n) {
        out.push_back({"S1", -1, -1,
                       cat("chimera: shape (stages ", s.stages(), ", pipelines ", s.pipelines(), ", workers ",
                           s.workers(), ", micro-batches ", s.micro_batches(), ") does not match its params (D=",
                           c.stages, ", k=", k, ", N=", expected_n, ")")});
        return;
    }
    detail::check_chimera_placement(s, k, out);
    // S4: pipelines carry equal shares (full units) or shares within one.
    std::vector<int> share(static_cast<std::size_t>(k), 0);
    for (int m = 0; m < s.micro_batches(); ++m) ++share[static_cast<std::size_t>(s.pipeline_of(m))];
    const auto [lo, hi] = std::minmax_element(share.begin(), share.end());
    if (*hi - *lo > 1)
        out.push_back({"S4", -1, -1,
                       cat("chimera: pipelines carry between ", *lo, " and ", *hi,
                           " micro-batches; the shares must differ by at most one")});
}

// The closed-form invariants, on a schedule that passed every other rule:
// full units only, and full B ops (split-backward Chimera has none).
constexpr void check_chimera_invariants(const schedule& s, double asap_span, std::vector<diagnostic>& out) {
    if (s.params().split_backward) return;
    const bool direct = s.params().scaling_mode == scaling::direct;
    const int d = s.stages();
    if (s.micro_batches() % (direct ? d : 2 * d) != 0) return;
    if (direct) {
        detail::check_slot_order(s, out);
        detail::check_next_slot(s, out);
        detail::check_span(s, asap_span, out);
        detail::check_last_backward(s, out);
    } else {
        detail::check_phase_order(s, out);
    }
    detail::check_memory(s, out);
}

}  // namespace chimera::schedules
