// The one training loop of every backend: D*W workers (one host thread
// each) run their lowered op lists through the library executor
// (chimera::runtime::run_iteration) and talk through the backend's
// transport; the trainer owns the training state's layout (whole model =
// concatenation of the stage slices), the loss bookkeeping and the
// replica checks. A backend supplies only what differs (buffers, kernels,
// streams, its transport). What a backend provides besides
// runtime::backend is the `trainable` concept below.
#pragma once

#include <algorithm>
#include <chrono>
#include <concepts>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <sys/resource.h>

#include <chimera/analysis.hpp>
#include <chimera/config.hpp>
#include <chimera/generate.hpp>
#include <chimera/lower.hpp>
#include <chimera/runtime/backend.hpp>
#include <chimera/runtime/executor.hpp>
#include <chimera/schedule.hpp>

#include "../gpt/data.hpp"
#include "link_costs.hpp"
#include "shape.hpp"

namespace chimera::runtime {

// Whole-model parameters and AdamW moments (the checkpoint content).
template <class R>
struct train_state {
    std::vector<R> params, first_moment, second_moment;
    friend bool operator==(const train_state&, const train_state&) = default;
};

struct step_result {
    double loss = 0;                         // mean over the global batch's micro-batches
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

// Host time spent per op kind (a backend that measures them returns one per
// stage from stage_times()); the simulator takes per-stage costs.
struct op_times {
    double forward = 0, backward = 0, input_backward = 0, weight_backward = 0, comm = 0;  // seconds
    double optimizer = 0;  // zero_grad and optimizer_step
    int forwards = 0, backwards = 0, input_backwards = 0, weight_backwards = 0;

    op_times& operator+=(const op_times& x) {
        forward += x.forward, backward += x.backward, input_backward += x.input_backward;
        weight_backward += x.weight_backward, comm += x.comm, optimizer += x.optimizer;
        forwards += x.forwards, backwards += x.backwards, input_backwards += x.input_backwards;
        weight_backwards += x.weight_backwards;
        return *this;
    }
};

// Op times summed over all workers: per stage, and the optimizer time;
// with the CPU time (user + system) of the process(es) running them, which
// includes what the workers spend outside ops (messages, waiting loops,
// bookkeeping).
struct times_snapshot {
    std::vector<op_times> stages;
    double optimizer = 0;
    double process = 0;
};

// This process's CPU time so far, all threads, user + system (seconds).
inline double process_cpu_seconds() {
    rusage u{};
    getrusage(RUSAGE_SELF, &u);
    auto seconds = [](const timeval& t) { return static_cast<double>(t.tv_sec) + static_cast<double>(t.tv_usec) * 1e-6; };
    return seconds(u.ru_utime) + seconds(u.ru_stime);
}

// What the trainer needs from a backend besides runtime::backend: its
// value type, options, transport (one per step, made from (ranks, watchdog,
// resources), where the resources live as long as the trainer: a buffer
// pool, ...; with finish(rank), abort(reason), failure(),
// order_mismatches()), and host access to one replica's state.
template <class B>
concept trainable = runtime::backend<B> &&
    requires(B& b, const B& cb, const replica& r, const train_state<typename B::value_type>& whole, int step,
             typename B::transport_type& t) {
        typename B::options;
        typename B::transport_resources;
        { B::default_watchdog } -> std::convertible_to<std::chrono::milliseconds>;
        b.begin(step, t);
        { cb.owned() } -> std::convertible_to<std::vector<replica>>;
        cb.losses();
        { cb.peak_activations() } -> std::convertible_to<int>;
        { cb.state_of(r) } -> std::convertible_to<train_state<typename B::value_type>>;
        { cb.gradients_of(r) } -> std::convertible_to<std::vector<typename B::value_type>>;
        b.load(whole);
        B::after_step();
        t.finish(step);
        t.abort(std::string());
        { t.failure() } -> std::convertible_to<std::string>;
        { t.order_mismatches() } -> std::convertible_to<int>;
    };

// The schedule's peak activation count for each of `ranks` ranks (rank r
// runs worker r mod workers: every data-parallel group alike).
inline std::vector<int> predicted_peaks_per_rank(const schedule& s, int ranks) {
    const auto per_worker = peak_activations(s);
    std::vector<int> peaks;
    for (int r = 0; r < ranks; ++r) peaks.push_back(per_worker[static_cast<std::size_t>(r % s.workers())]);
    return peaks;
}

template <trainable Backend>
class trainer {
public:
    using value_type = typename Backend::value_type;
    using R = value_type;

    trainer(schedule lowered, const run_shape& shape, const gpt::dataset& data, const std::vector<R>& initial,
            std::chrono::milliseconds watchdog = Backend::default_watchdog,
            const typename Backend::options& options = {})
        : s_(std::move(lowered)), shape_(shape), data_(data), watchdog_(watchdog) {
        shape_.micro_batches = s_.micro_batches();
        for (int g = 0; g < shape_.data_parallel; ++g)
            for (int w = 0; w < s_.workers(); ++w)
                workers_.push_back(std::make_unique<Backend>(s_, shape_, data_, g, w, initial, options));
    }
    trainer(const trainer&) = delete;  // workers refer to the schedule and shape held here
    trainer& operator=(const trainer&) = delete;

    // The unpipelined reference: whole model on one worker, the W*N
    // micro-batches accumulated in id order (run it with data_parallel 1).
    static schedule sequential_schedule(int micro_batches) {
        config c;
        c.schedule = algorithm::gpipe;
        c.stages = 1;
        c.micro_batches = micro_batches;
        return lower(generate(c), {});
    }

    const schedule& lowered() const { return s_; }
    const run_shape& shape() const { return shape_; }
    int ranks() const { return static_cast<int>(workers_.size()); }
    const Backend& worker(int rank) const { return *workers_[static_cast<std::size_t>(rank)]; }

    // One iteration on all workers; throws std::runtime_error with the
    // per-worker report when a worker fails, deadlocks or times out.
    step_result step(int step_index) {
        typename Backend::transport_type transport(ranks(), watchdog_, resources_);
        std::vector<std::string> errors(workers_.size());
        const auto start = std::chrono::steady_clock::now();
        std::vector<std::thread> threads;
        for (int r = 0; r < ranks(); ++r)
            threads.emplace_back([&, r] { run_worker(r, step_index, transport, errors[static_cast<std::size_t>(r)]); });
        for (auto& t : threads) t.join();
        Backend::after_step();
        step_result result;
        result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
        if (std::string failure = transport.failure(); !failure.empty()) throw std::runtime_error(failure);
        for (const auto& e : errors)
            if (!e.empty()) throw std::runtime_error(e);
        order_mismatches_ += transport.order_mismatches();
        std::vector<std::pair<int, double>> losses;
        for (const auto& b : workers_) losses.insert(losses.end(), b->losses().begin(), b->losses().end());
        result.loss = mean_loss(losses, result.micro_batch_losses);
        return result;
    }

    // Whole-model state, read from the lowest rank holding each stage.
    train_state<R> state() const {
        train_state<R> out;
        for (int st = 0; st < s_.stages(); ++st) {
            const auto [b, r] = holder(st);
            const train_state<R> part = b->state_of(r);
            append(out.params, part.params);
            append(out.first_moment, part.first_moment);
            append(out.second_moment, part.second_moment);
        }
        return out;
    }
    // Resume: every replica takes its stage's slice of the whole-model state
    // (parameters and moments). Call between steps.
    void load(const train_state<R>& state) {
        const std::size_t count = gpt::parameter_count(shape_.model);
        if (state.params.size() != count || state.first_moment.size() != count || state.second_moment.size() != count)
            throw std::invalid_argument("trainer::load: the state holds " + std::to_string(state.params.size()) +
                                        " parameters, the model " + std::to_string(count));
        for (auto& b : workers_) b->load(state);
    }
    // Whole-model gradient of the last step (after the reduction).
    std::vector<R> gradients() const {
        std::vector<R> out;
        for (int st = 0; st < s_.stages(); ++st) {
            const auto [b, r] = holder(st);
            append(out, b->gradients_of(r));
        }
        return out;
    }

    // True when every replica of every stage holds the same parameter and
    // first-moment bits.
    bool replicas_identical() const {
        for (int st = 0; st < s_.stages(); ++st) {
            const auto [hb, hr] = holder(st);
            const train_state<R> reference = hb->state_of(hr);
            for (const auto& b : workers_)
                for (const replica& r : b->owned()) {
                    if (r.stage != st) continue;
                    const train_state<R> other = b->state_of(r);
                    if (other.params != reference.params || other.first_moment != reference.first_moment) return false;
                }
        }
        return true;
    }

    std::vector<int> measured_peaks() const {
        std::vector<int> peaks;
        for (const auto& b : workers_) peaks.push_back(b->peak_activations());
        return peaks;
    }
    // Predicted peaks per rank (the schedule's count, every group alike).
    std::vector<int> predicted_peaks() const { return predicted_peaks_per_rank(s_, ranks()); }
    // Messages whose send and receive were issued at different positions of
    // their pair's order (a transport pairing by order would mis-pair them).
    int order_mismatches() const { return order_mismatches_; }

    // Op times summed over all workers since construction (backends that
    // measure them), and the process's CPU time since it started.
    times_snapshot total_times() const
        requires requires(const Backend& b) { b.stage_times(); b.times(); }
    {
        times_snapshot t;
        t.stages.assign(static_cast<std::size_t>(s_.stages()), {});
        t.process = process_cpu_seconds();
        for (const auto& b : workers_) {
            t.optimizer += b->times().optimizer;
            for (std::size_t st = 0; st < t.stages.size(); ++st) {
                op_times x = b->stage_times()[st];
                x.comm = x.optimizer = 0;
                t.stages[st] += x;
            }
        }
        return t;
    }

private:
    void run_worker(int r, int step_index, typename Backend::transport_type& transport, std::string& error) {
        auto& b = *workers_[static_cast<std::size_t>(r)];
        try {
            b.begin(step_index, transport);
            const auto owned = b.owned();
            run_iteration(s_.ops(r % s_.workers()), owned, b);
        } catch (const std::exception& e) {
            error = e.what();
            transport.abort("worker " + std::to_string(r) + " failed: " + e.what());
        }
        transport.finish(r);
    }
    static void append(std::vector<R>& to, const std::vector<R>& from) { to.insert(to.end(), from.begin(), from.end()); }
    // The lowest rank holding `stage`, and the replica.
    std::pair<const Backend*, replica> holder(int stage) const {
        for (const auto& b : workers_)
            for (const replica& r : b->owned())
                if (r.stage == stage) return {b.get(), r};
        throw std::logic_error("no replica of stage " + std::to_string(stage));
    }

    schedule s_;
    run_shape shape_;
    const gpt::dataset& data_;
    std::chrono::milliseconds watchdog_;
    typename Backend::transport_resources resources_;
    std::vector<std::unique_ptr<Backend>> workers_;
    int order_mismatches_ = 0;
};

}  // namespace chimera::runtime
