// Training on the CPU backend: the pipelined trainer (the common trainer
// over cpu_backend), the sequential reference (one worker, whole model, the
// same global batch and micro-batches, accumulators grouped as asked), the
// simulator's prediction from measured op times, and the held-out loss.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <chimera/analysis.hpp>
#include <chimera/simulate.hpp>
#include <chimera/schedule.hpp>

#include "../common/trainer.hpp"
#include "backend.hpp"

namespace chimera::runtime::cpu {

using runtime::mean_loss;
using runtime::op_times;
using runtime::step_result;
using runtime::times_snapshot;
using runtime::train_state;

// The pipelined trainer on the CPU backend: one thread per worker, D*W
// workers, any lowered schedule (the one trainer of examples/common).
template <class R>
using pipeline_trainer = runtime::trainer<cpu_backend<R>>;

// The unpipelined reference: whole model on one worker, the same W*N
// micro-batches. `groups` lists global micro-batch ids per gradient
// accumulator; accumulators are summed in list order, as the pipelined
// all-reduce sums replicas in (group, pipeline) order. One group holding
// every id is plain gradient accumulation.
template <class R>
class sequential_trainer {
public:
    sequential_trainer(const run_shape& shape, const gpt::dataset& data, const std::vector<R>& initial,
                       std::vector<std::vector<int>> groups)
        : shape_(shape), data_(data), groups_(std::move(groups)),
          model_(shape.model, gpt::partition(shape.model, 1)[0], shape.batch, shape.seq) {
        state_.params = initial;
        state_.first_moment.assign(initial.size(), R(0));
        state_.second_moment.assign(initial.size(), R(0));
        for (const auto& g : groups_) total_ += static_cast<int>(g.size());
    }
    // Plain accumulation over the W*N micro-batches of a step.
    static std::vector<std::vector<int>> one_group(int micro_batches) {
        std::vector<int> all;
        for (int i = 0; i < micro_batches; ++i) all.push_back(i);
        return {all};
    }
    // One accumulator per (group g, pipeline p), as the replicas of `s`,
    // each summing its micro-batches in the order its first stage forms
    // their weight gradients (B or W ops), as the pipelined replica does.
    static std::vector<std::vector<int>> by_replica(const schedule& s, int data_parallel) {
        std::vector<std::vector<int>> groups;
        for (int g = 0; g < data_parallel; ++g)
            for (int p = 0; p < s.pipelines(); ++p) {
                groups.emplace_back();
                for (const op& o : s.ops(s.placement(p, 0)))
                    if ((o.kind == op_kind::B || o.kind == op_kind::W) && o.pipeline == p && o.stage == 0)
                        groups.back().push_back(g * s.micro_batches() + o.micro_batch);
            }
        return groups;
    }

    step_result step(int step_index) {
        const auto start = std::chrono::steady_clock::now();
        std::vector<R> grads(state_.params.size(), R(0)), accumulator(grads.size());
        std::vector<std::pair<int, double>> losses;
        const R scale = R(1) / static_cast<R>(total_);
        for (const auto& group : groups_) {
            std::fill(accumulator.begin(), accumulator.end(), R(0));
            for (int id : group) {
                stash<R> st = model_.make_stash();
                data_.micro_batch(false, shape_.data_seed, step_index, id, shape_.batch, shape_.seq, st.tokens,
                                  st.targets);
                model_.forward(state_.params.data(), st, nullptr, nullptr);
                losses.emplace_back(id, st.loss);
                model_.backward_input(state_.params.data(), st, nullptr, nullptr, scale);
                model_.backward_weight(accumulator.data(), st);
            }
            for (std::size_t i = 0; i < grads.size(); ++i) grads[i] += accumulator[i];
        }
        const auto table = gpt::tensor_table(shape_.model);
        for (const auto& t : table)
            for (std::size_t i = t.offset; i < t.offset + t.size; ++i)
                math::adamw_update(state_.params[i], state_.first_moment[i], state_.second_moment[i], grads[i],
                                   step_index + 1, shape_.adam, t.decay);
        step_result result;
        result.loss = mean_loss(losses, result.micro_batch_losses);
        result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
        return result;
    }

    const train_state<R>& state() const { return state_; }
    void load(const train_state<R>& state) { state_ = state; }

private:
    run_shape shape_;
    const gpt::dataset& data_;
    std::vector<std::vector<int>> groups_;
    stage_model<R> model_;
    train_state<R> state_;
    int total_ = 0;
};

}  // namespace chimera::runtime::cpu

namespace chimera::runtime::cpu {

// The step time the simulator (chimera::simulate) predicts from per-stage
// op costs measured between two total_times() readings over `steps` steps,
// the mean optimizer time per worker (spread evenly over the replicas it
// holds) and the link's message costs: each activation or gradient message
// costs alpha + bytes * beta, each replica all-reduce the cost model's
// formula over the stage's gradient (free for the local transport's
// in-process copies).
struct step_prediction {
    double forward = 0, backward = 0;  // mean op cost over all stages (seconds)
    double optimizer = 0;              // seconds per worker per step
    double makespan = 0;               // one core per worker
    double core_bound = 0;             // the workers of every replica on `cores` cores (shared_core_time)
    double cpu_ops = 0;                // CPU seconds per step in ops and optimizer steps, all workers
    double cpu_process = -1;           // CPU seconds per step of the process(es); < 0: `before` is empty
};

template <class Trainer>  // pipeline_trainer, or mpi::rank_trainer (examples/distributed)
step_prediction predict_step(const Trainer& trainer, const times_snapshot& before, const times_snapshot& after,
                             int steps, unsigned cores, const link_costs& link = {}) {
    using R = typename Trainer::value_type;
    auto mean = [](double a, double b, int n, int m) { return m > n ? (b - a) / (m - n) : 0.0; };
    const schedule& s = trainer.lowered();
    const auto layouts = gpt::partition(trainer.shape().model, s.stages());
    step_prediction p;
    p.optimizer = steps > 0 ? (after.optimizer - before.optimizer) / steps / trainer.ranks() : 0;
    cost_model model;
    model.data_parallel = trainer.ranks() / s.workers();
    model.alpha = link.alpha, model.beta = link.beta;
    op_times all_before, all_after;
    const op_times zero{};
    for (std::size_t st = 0; st < after.stages.size(); ++st) {
        // An empty `before` reads as zero (times since construction).
        const op_times& x = st < before.stages.size() ? before.stages[st] : zero;
        const op_times& y = after.stages[st];
        stage_profile profile;
        profile.forward = mean(x.forward, y.forward, x.forwards, y.forwards);
        profile.backward = mean(x.backward, y.backward, x.backwards, y.backwards);
        profile.input_backward = mean(x.input_backward, y.input_backward, x.input_backwards, y.input_backwards);
        profile.weight_backward = mean(x.weight_backward, y.weight_backward, x.weight_backwards, y.weight_backwards);
        profile.optimizer = p.optimizer * s.workers() / (s.stages() * s.pipelines());
        profile.message_bytes = static_cast<double>(trainer.shape().activation_size() * sizeof(R));
        profile.gradient_bytes = static_cast<double>(layouts[st].size * sizeof(R));
        model.per_stage.push_back(profile);
        all_before += x, all_after += y;
    }
    p.forward = mean(all_before.forward, all_after.forward, all_before.forwards, all_after.forwards);
    p.backward = mean(all_before.backward, all_after.backward, all_before.backwards, all_after.backwards);
    if (steps > 0) {
        const auto busy = [](const op_times& t) { return t.forward + t.backward + t.input_backward + t.weight_backward; };
        p.cpu_ops = (busy(all_after) - busy(all_before) + after.optimizer - before.optimizer) / steps;
        if (!before.stages.empty()) p.cpu_process = (after.process - before.process) / steps;
    }
    const simulation sim = simulate(s, model);
    p.makespan = sim.makespan;
    p.core_bound = shared_core_time(s, sim, cores, model.data_parallel);
    return p;
}

// Mean loss of the whole model on `count` held-out micro-batches (forward only).
template <class R>
double held_out_loss(const run_shape& shape, const gpt::dataset& data, const std::vector<R>& params, int count) {
    const stage_model<R> model(shape.model, gpt::partition(shape.model, 1)[0], shape.batch, shape.seq);
    double sum = 0;
    for (int i = 0; i < count; ++i) {
        stash<R> st = model.make_stash();
        data.micro_batch(true, shape.data_seed, 0, i, shape.batch, shape.seq, st.tokens, st.targets);
        model.forward(params.data(), st, nullptr, nullptr);
        sum += st.loss;
    }
    return sum / count;
}

}  // namespace chimera::runtime::cpu
