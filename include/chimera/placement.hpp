// Where replicas live: Chimera's stage -> worker maps (docs/design/chimera-closed-form.md#placement), the
// data-parallel rank layouts, and the all-reduce group of every stage.
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

namespace chimera {

// Pipelines are ordered down_0 .. down_{f-1}, up_0 .. up_{f-1}; down_i is
// shifted by i*D/f workers, up_i is the mirror image shifted the same way.
constexpr int chimera_worker(int stages, int pipelines, int pipeline, int stage) {
    const int f = pipelines / 2;
    const int direction_index = pipeline % f;
    const int shift = direction_index * (stages / f);
    const bool down = pipeline < f;
    const int base = down ? stage : stages - 1 - stage;
    return (base + shift) % stages;
}

// The stage of `pipeline` that `worker` holds (inverse of chimera_worker).
constexpr int chimera_stage(int stages, int pipelines, int pipeline, int worker) {
    const int f = pipelines / 2;
    const int shift = (pipeline % f) * (stages / f);
    const int base = ((worker - shift) % stages + stages) % stages;
    return pipeline < f ? base : stages - 1 - base;
}

// Class of a worker: workers with equal class hold replicas of the same
// stages (docs/design/chimera-closed-form.md#placement), so one all-reduce communicator per class.
constexpr int chimera_replica_class(int stages, int pipelines, int worker) {
    const int period = stages / (pipelines / 2);
    const int r = worker % period;
    return std::min(r, period - 1 - r);
}

enum class rank_layout : std::uint8_t {
    group_major,  // rank = group * D + worker (this library's default)
    stage_major,  // rank = worker * W + group (the SC'21 code)
};

constexpr int global_rank(int group, int worker, int workers_per_group, int data_parallel, rank_layout layout) {
    return layout == rank_layout::group_major ? group * workers_per_group + worker : worker * data_parallel + group;
}

// Ranks (over all W groups) holding a replica of `stage`, ascending: the
// members of that stage's gradient all-reduce. Works for any schedule.
template <class Schedule>
constexpr std::vector<int> replica_ranks(const Schedule& s, int stage, int data_parallel,
                                         rank_layout layout = rank_layout::group_major) {
    std::vector<int> ranks;
    for (int g = 0; g < data_parallel; ++g)
        for (int p = 0; p < s.pipelines(); ++p)
            ranks.push_back(global_rank(g, s.placement(p, stage), s.workers(), data_parallel, layout));
    std::sort(ranks.begin(), ranks.end());
    ranks.erase(std::unique(ranks.begin(), ranks.end()), ranks.end());
    return ranks;
}

// (pipeline, stage) replicas a worker holds, in pipeline order.
struct replica {
    int pipeline = 0;
    int stage = 0;
    friend constexpr bool operator==(const replica&, const replica&) = default;
};

template <class Schedule>
constexpr std::vector<replica> replicas_on(const Schedule& s, int worker) {
    std::vector<replica> held;
    for (int p = 0; p < s.pipelines(); ++p)
        for (int st = 0; st < s.stages(); ++st)
            if (s.placement(p, st) == worker) held.push_back({p, st});
    return held;
}

}  // namespace chimera
