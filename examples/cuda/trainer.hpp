// Pipelined training on one GPU: D*W virtual workers (one host thread and
// one stream each) run their lowered op lists through the same executor as
// the CPU backend, talking through the local transport. The sequential GPU
// reference is the same trainer on a one-stage schedule.
#pragma once

#include <chrono>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <chimera/analysis.hpp>
#include <chimera/config.hpp>
#include <chimera/generate.hpp>
#include <chimera/lower.hpp>
#include <chimera/schedule.hpp>

#include "../common/executor.hpp"
#include "../cpu/trainer.hpp"  // train_state, step_result, mean_loss
#include "backend.hpp"

namespace chimera::runtime::gpu {

using cpu::step_result;
using cpu::train_state;

class gpu_pipeline_trainer {
public:
    gpu_pipeline_trainer(schedule lowered, const run_shape& shape, const gpt::dataset& data,
                         const std::vector<float>& initial, std::chrono::milliseconds watchdog = std::chrono::seconds(60),
                         const gpu_stage_options& options = {})
        : s_(std::move(lowered)), shape_(shape), data_(data), watchdog_(watchdog) {
        shape_.micro_batches = s_.micro_batches();
        for (int g = 0; g < shape_.data_parallel; ++g)
            for (int w = 0; w < s_.workers(); ++w)
                workers_.push_back(std::make_unique<cuda_backend>(s_, shape_, data_, g, w, initial, options));
    }

    // The unpipelined reference: whole model on one worker, the same W*N
    // micro-batches accumulated in id order.
    static schedule sequential_schedule(int micro_batches) {
        config c;
        c.schedule = algorithm::gpipe;
        c.stages = 1;
        c.micro_batches = micro_batches;
        return lower(generate(c), {});
    }

    const schedule& lowered() const { return s_; }
    int ranks() const { return static_cast<int>(workers_.size()); }
    const cuda_backend& worker(int rank) const { return *workers_[static_cast<std::size_t>(rank)]; }

    step_result step(int step_index) {
        local_transport transport(watchdog_, &buffers_);
        std::vector<std::string> errors(workers_.size());
        const auto start = std::chrono::steady_clock::now();
        std::vector<std::thread> threads;
        for (int r = 0; r < ranks(); ++r)
            threads.emplace_back([&, r] {
                auto& b = *workers_[static_cast<std::size_t>(r)];
                try {
                    b.begin(step_index, transport);
                    run_iteration(s_.ops(r % s_.workers()), b.owned(), b);
                } catch (const std::exception& e) {
                    errors[static_cast<std::size_t>(r)] = e.what();
                    transport.abort("worker " + std::to_string(r) + " failed: " + e.what());
                }
            });
        for (auto& t : threads) t.join();
        check(cudaDeviceSynchronize(), "cudaDeviceSynchronize");
        step_result result;
        result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
        for (const auto& e : errors)
            if (!e.empty()) throw std::runtime_error(e);
        std::vector<std::pair<int, double>> losses;
        for (const auto& b : workers_) losses.insert(losses.end(), b->losses().begin(), b->losses().end());
        result.loss = cpu::mean_loss(losses, result.micro_batch_losses);
        return result;
    }

    // Whole-model state, read from the lowest rank holding each stage.
    train_state<float> state() const {
        train_state<float> out;
        for (int st = 0; st < s_.stages(); ++st) {
            const auto& rep = holder(st);
            append(out.params, rep.params.download());
            append(out.first_moment, rep.first_moment.download());
            append(out.second_moment, rep.second_moment.download());
        }
        return out;
    }
    // Resume: every replica takes its stage's slice of the whole-model state
    // (parameters and AdamW moments), as cpu::pipeline_trainer::load. Call
    // between steps (nothing is in flight on the worker streams then). The
    // uploads go on each worker's own stream, so its next step's kernels are
    // ordered after them (resume is bitwise equal).
    void load(const train_state<float>& state) {
        const std::size_t count = gpt::parameter_count(shape_.model);
        if (state.params.size() != count || state.first_moment.size() != count || state.second_moment.size() != count)
            throw std::invalid_argument("gpu_pipeline_trainer::load: the state holds " +
                                        std::to_string(state.params.size()) + " parameters, the model " +
                                        std::to_string(count));
        for (auto& b : workers_)
            for (auto& rep : b->replicas()) {
                const auto& l = rep.model->layout();
                rep.params.upload(slice(state.params, l), b->stream());
                rep.first_moment.upload(slice(state.first_moment, l), b->stream());
                rep.second_moment.upload(slice(state.second_moment, l), b->stream());
            }
    }
    // Whole-model gradient of the last step (after the reduction).
    std::vector<float> gradients() const {
        std::vector<float> out;
        for (int st = 0; st < s_.stages(); ++st) append(out, holder(st).grads.download());
        return out;
    }
    bool replicas_identical() const {
        for (const auto& b : workers_)
            for (const auto& rep : b->replicas())
                if (rep.params.download() != holder(rep.id.stage).params.download()) return false;
        return true;
    }
    std::vector<int> measured_peaks() const {
        std::vector<int> peaks;
        for (const auto& b : workers_) peaks.push_back(b->peak_activations());
        return peaks;
    }

private:
    static void append(std::vector<float>& to, const std::vector<float>& from) {
        to.insert(to.end(), from.begin(), from.end());
    }
    static std::vector<float> slice(const std::vector<float>& whole, const gpt::stage_layout& l) {
        return {whole.begin() + static_cast<std::ptrdiff_t>(l.offset),
                whole.begin() + static_cast<std::ptrdiff_t>(l.offset + l.size)};
    }
    const gpu_replica& holder(int stage) const {
        for (const auto& b : workers_)
            for (const auto& rep : b->replicas())
                if (rep.id.stage == stage) return rep;
        throw std::logic_error("no replica of a stage");
    }

    schedule s_;
    run_shape shape_;
    const gpt::dataset& data_;
    std::chrono::milliseconds watchdog_;
    buffer_pool buffers_;  // the transport's device buffers, reused every step
    std::vector<std::unique_ptr<cuda_backend>> workers_;
};

}  // namespace chimera::runtime::gpu
