// Training loops on the CPU backend: the pipelined trainer (one thread per
// worker, D*W workers, any lowered schedule) and the sequential reference
// (one worker, whole model, the same global batch and micro-batches).
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <chimera/analysis.hpp>
#include <chimera/schedule.hpp>

#include "../common/executor.hpp"
#include "backend.hpp"

namespace chimera::runtime::cpu {

// Whole-model parameters and AdamW moments (the checkpoint content).
template <class R>
struct train_state {
    std::vector<R> params, first_moment, second_moment;
    friend bool operator==(const train_state&, const train_state&) = default;
};

struct step_result {
    double loss = 0;                      // mean over the global batch's micro-batches
    std::vector<double> micro_batch_losses;  // by global micro-batch id g*N + m
    double seconds = 0;
};

// Mean of the micro-batch losses in id order (the same sum everywhere).
inline double mean_loss(std::vector<std::pair<int, double>> losses, std::vector<double>& ordered) {
    std::sort(losses.begin(), losses.end());
    ordered.clear();
    double sum = 0;
    for (const auto& [id, loss] : losses) ordered.push_back(loss), sum += loss;
    return ordered.empty() ? 0 : sum / static_cast<double>(ordered.size());
}

template <class R>
class pipeline_trainer {
public:
    pipeline_trainer(schedule lowered, const run_shape& shape, const gpt::dataset& data,
                     const std::vector<R>& initial, std::chrono::milliseconds watchdog = std::chrono::seconds(10))
        : s_(std::move(lowered)), shape_(shape), data_(data), watchdog_(watchdog) {
        shape_.micro_batches = s_.micro_batches();
        for (int g = 0; g < shape_.data_parallel; ++g)
            for (int w = 0; w < s_.workers(); ++w) workers_.emplace_back(s_, shape_, data_, g, w, initial);
    }

    const schedule& lowered() const { return s_; }
    int ranks() const { return static_cast<int>(workers_.size()); }
    const cpu_backend<R>& worker(int rank) const { return workers_[static_cast<std::size_t>(rank)]; }

    // One iteration on all workers; throws std::runtime_error with the
    // per-worker report when a worker fails, deadlocks or times out.
    step_result step(int step_index) {
        hub<R> transport(ranks(), watchdog_);
        std::vector<std::string> errors(workers_.size());
        const auto start = std::chrono::steady_clock::now();
        std::vector<std::thread> threads;
        for (int r = 0; r < ranks(); ++r)
            threads.emplace_back([&, r] {
                auto& b = workers_[static_cast<std::size_t>(r)];
                try {
                    b.begin(step_index, transport);
                    b.clear_losses();
                    const auto owned = b.owned();
                    run_iteration(s_.ops(r % s_.workers()), owned, b);
                } catch (const comm_failure&) {
                    errors[static_cast<std::size_t>(r)] = "comm";
                } catch (const std::exception& e) {
                    errors[static_cast<std::size_t>(r)] = e.what();
                    transport.abort("worker " + std::to_string(r) + " failed: " + e.what());
                }
                transport.finish(r);
            });
        for (auto& t : threads) t.join();
        step_result result;
        result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
        if (std::string failure = transport.failure(); !failure.empty()) throw std::runtime_error(failure);
        for (const auto& e : errors)
            if (!e.empty()) throw std::runtime_error(e);
        order_mismatches_ += transport.order_mismatches();
        std::vector<std::pair<int, double>> losses;
        for (const auto& b : workers_) losses.insert(losses.end(), b.losses().begin(), b.losses().end());
        result.loss = mean_loss(losses, result.micro_batch_losses);
        return result;
    }

    // Whole-model state, read from the lowest rank holding each stage.
    train_state<R> state() const {
        train_state<R> out;
        for (int st = 0; st < s_.stages(); ++st) {
            const auto& rep = holder(st);
            append(out.params, rep.params);
            append(out.first_moment, rep.first_moment);
            append(out.second_moment, rep.second_moment);
        }
        return out;
    }
    void load(const train_state<R>& state) {
        for (auto& b : workers_)
            for (auto& rep : b.replicas()) {
                const auto& l = rep.model->layout();
                copy_range(rep.params, state.params, l.offset);
                copy_range(rep.first_moment, state.first_moment, l.offset);
                copy_range(rep.second_moment, state.second_moment, l.offset);
            }
    }

    // True when every replica of every stage holds the same parameter bits.
    bool replicas_identical() const {
        for (const auto& b : workers_)
            for (const auto& rep : b.replicas())
                if (rep.params != holder(rep.id.stage).params || rep.first_moment != holder(rep.id.stage).first_moment)
                    return false;
        return true;
    }

    std::vector<int> measured_peaks() const {
        std::vector<int> peaks;
        for (const auto& b : workers_) peaks.push_back(b.peak_activations());
        return peaks;
    }
    // Predicted peaks per rank (the schedule's count, every group alike).
    std::vector<int> predicted_peaks() const {
        const auto per_worker = peak_activations(s_);
        std::vector<int> peaks;
        for (int r = 0; r < ranks(); ++r) peaks.push_back(per_worker[static_cast<std::size_t>(r % s_.workers())]);
        return peaks;
    }
    int order_mismatches() const { return order_mismatches_; }

    // Op times summed over all workers since construction.
    op_times total_times() const {
        op_times t;
        for (const auto& b : workers_) {
            const op_times& x = b.times();
            t.forward += x.forward, t.forwards += x.forwards, t.backward += x.backward, t.backwards += x.backwards;
            t.input_backward += x.input_backward, t.input_backwards += x.input_backwards;
            t.weight_backward += x.weight_backward, t.weight_backwards += x.weight_backwards;
            t.comm += x.comm, t.optimizer += x.optimizer;
        }
        return t;
    }

private:
    static void append(std::vector<R>& to, const std::vector<R>& from) { to.insert(to.end(), from.begin(), from.end()); }
    static void copy_range(std::vector<R>& to, const std::vector<R>& from, std::size_t offset) {
        std::copy(from.begin() + static_cast<std::ptrdiff_t>(offset),
                  from.begin() + static_cast<std::ptrdiff_t>(offset + to.size()), to.begin());
    }
    const replica_state<R>& holder(int stage) const {
        for (const auto& b : workers_)
            for (const auto& rep : b.replicas())
                if (rep.id.stage == stage) return rep;
        throw std::logic_error("no replica of a stage");
    }

    schedule s_;
    run_shape shape_;
    const gpt::dataset& data_;
    std::chrono::milliseconds watchdog_;
    std::vector<cpu_backend<R>> workers_;
    int order_mismatches_ = 0;
};

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
    // One accumulator per (group g, pipeline p), as the replicas of `s`.
    static std::vector<std::vector<int>> by_replica(const schedule& s, int data_parallel) {
        std::vector<std::vector<int>> groups;
        for (int g = 0; g < data_parallel; ++g)
            for (int p = 0; p < s.pipelines(); ++p) {
                groups.emplace_back();
                for (int m = 0; m < s.micro_batches(); ++m)
                    if (s.pipeline_of(m) == p) groups.back().push_back(g * s.micro_batches() + m);
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

// The step time the ASAP simulator predicts from per-op costs measured
// between two total_times() readings over `steps` steps: mean F/B/I/W
// cost per op, plus the mean optimizer time per worker.
struct step_prediction {
    op_costs costs;
    double optimizer = 0;    // seconds per worker per step
    double makespan = 0;     // one core per worker
    double core_bound = 0;   // limited by `cores` cores: max(makespan, total work / cores)
};

template <class R>
step_prediction predict_step(const pipeline_trainer<R>& trainer, const op_times& before, const op_times& after,
                             int steps, unsigned cores) {
    auto mean = [](double a, double b, int n, int m) { return m > n ? (b - a) / (m - n) : 0.0; };
    step_prediction p;
    p.costs = {mean(before.forward, after.forward, before.forwards, after.forwards),
               mean(before.backward, after.backward, before.backwards, after.backwards),
               mean(before.input_backward, after.input_backward, before.input_backwards, after.input_backwards),
               mean(before.weight_backward, after.weight_backward, before.weight_backwards, after.weight_backwards)};
    p.optimizer = steps > 0 ? (after.optimizer - before.optimizer) / steps / trainer.ranks() : 0;
    const timing t = asap(trainer.lowered(), p.costs);
    p.makespan = t.makespan + p.optimizer;
    double busy = 0;
    for (const auto& w : t.workers) busy += w.busy;
    busy = busy * (trainer.ranks() / trainer.lowered().workers()) + p.optimizer * trainer.ranks();
    p.core_bound = std::max(p.makespan, busy / std::max(1u, cores));
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
