// chimera-train --transport mpi: the training loop of one rank. Rank 0
// prints what the local run prints (one JSON object per step and the
// summary with --json); every rank reports its own failure on stderr.
// Exit codes as chimera-train: 0 ok; 1 training failed (MPI_Abort: a
// partner died or hung past the watchdog, so the whole job stops); 2 the
// ranks disagree (options, schedule, model) or the world size is not D x W
// (every rank detects it and finalizes; nothing hangs).
#pragma once

#include <mpi.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <string>
#include <utility>
#include <vector>

#include <fmt/core.h>
#include <nlohmann/json.hpp>

#include <chimera/analysis.hpp>
#include <chimera/placement.hpp>

#include "../cpu/trainer.hpp"
#include "rank_trainer.hpp"
#include "sha256.hpp"

namespace chimera::runtime::mpi {

struct run_options {
    int first_step = 0, steps = 1, eval_batches = 8;
    bool json = false;
    std::chrono::milliseconds watchdog{10000};
    rank_layout layout = rank_layout::group_major;
    std::string config_text;  // every option that must agree between ranks, as text
};

// MPI_Init / MPI_Finalize around one run.
class session {
public:
    session() {
        int provided = 0;
        MPI_Init_thread(nullptr, nullptr, MPI_THREAD_FUNNELED, &provided);
    }
    session(const session&) = delete;
    session& operator=(const session&) = delete;
    ~session() { MPI_Finalize(); }
};

template <class R>
nlohmann::json run_steps(rank_trainer<R>& trainer, const run_shape& shape, const gpt::dataset& data,
                         const run_options& o) {
    const bool root = world_rank() == 0;
    const double tokens_per_step =
        static_cast<double>(trainer.lowered().micro_batches()) * shape.data_parallel * shape.batch * shape.seq;
    double first_loss = 0, last_loss = 0, total_seconds = 0;
    for (int step = o.first_step; step < o.steps; ++step) {
        const step_result r = trainer.step(step);
        if (step == o.first_step) first_loss = r.loss;
        last_loss = r.loss, total_seconds += r.seconds;
        if (!root) continue;
        if (o.json)
            fmt::print("{}\n", nlohmann::json{{"step", step}, {"loss", r.loss}, {"tokens_per_s", tokens_per_step / r.seconds},
                                              {"seconds", r.seconds}}.dump());
        else
            fmt::print("step {:4d}  loss {:.6f}  {:8.0f} tokens/s  ({:.3f} s)\n", step, r.loss, tokens_per_step / r.seconds,
                       r.seconds);
        std::fflush(stdout);
    }
    const train_state<R> final_state = trainer.state();
    const bool identical = trainer.replicas_identical();
    const auto measured = trainer.measured_peaks();
    if (!root) return {};
    const int steps_run = o.steps - o.first_step;
    std::vector<int> predicted;
    const auto per_worker = peak_activations(trainer.lowered());
    for (int r = 0; r < world_size(); ++r) predicted.push_back(per_worker[static_cast<std::size_t>(r % trainer.lowered().workers())]);
    return {{"schedule", std::string(trainer.lowered().name())},
            {"transport", "mpi"},
            {"ranks", world_size()},
            {"steps", steps_run},
            {"first_loss", first_loss},
            {"last_loss", last_loss},
            {"held_out_loss", cpu::held_out_loss<R>(shape, data, final_state.params, o.eval_batches)},
            {"tokens_per_s", steps_run > 0 ? tokens_per_step * steps_run / total_seconds : 0.0},
            {"mean_step_seconds", steps_run > 0 ? total_seconds / steps_run : 0.0},
            {"peak_activations_measured", measured},
            {"peak_activations_predicted", predicted},
            {"replicas_identical", identical},
            {"params_sha256", sha256_hex(final_state.params)}};
}

// Runs the whole job on this rank; `initial` is the whole-model state to
// start from (parameters, moments). Returns the process exit code.
template <class R>
int train(const schedule& lowered, const run_shape& shape, const gpt::dataset& data, const train_state<R>& initial,
          const run_options& o) {
    session mpi;
    const int rank = world_rank();
    try {
        require_same_everywhere({{"configuration", o.config_text},
                                 {"lowered schedule", schedule_text(lowered)},
                                 {"model", sha256_hex(initial.params) + sha256_hex(initial.first_moment) +
                                               sha256_hex(initial.second_moment)}});
        rank_trainer<R> trainer(lowered, shape, data, initial.params, o.layout, o.watchdog);
        trainer.load(initial);
        const nlohmann::json summary = run_steps(trainer, shape, data, o);
        if (rank != 0) return 0;
        if (o.json) fmt::print("{}\n", nlohmann::json{{"summary", summary}}.dump());
        else
            fmt::print("{} ranks; held-out loss {:.6f}; replicas bit-identical: {}; params sha256 {}\n",
                       summary["ranks"].get<int>(), summary["held_out_loss"].get<double>(),
                       summary["replicas_identical"].get<bool>() ? "yes" : "NO",
                       summary["params_sha256"].get<std::string>());
        return 0;
    } catch (const consistency_error& e) {
        fmt::print(stderr, "chimera-train: rank {}: {}\n", rank, e.what());
        return 2;
    } catch (const std::exception& e) {
        fmt::print(stderr, "chimera-train: rank {}: {}\n", rank, e.what());
        std::fflush(stderr);
        MPI_Abort(MPI_COMM_WORLD, 1);
        return 1;
    }
}

}  // namespace chimera::runtime::mpi
