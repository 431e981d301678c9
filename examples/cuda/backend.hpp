// The CUDA backend of one virtual worker (runtime.md §5.1): its own
// non-blocking stream; parameters, gradients and AdamW moments of its
// replicas in device memory (one flat buffer each, the CPU layout);
// activation stashes per (pipeline, stage, micro-batch); messages through
// the local transport. Models runtime::backend, so the executor that runs
// the CPU backend runs this one unchanged. Calls enqueue work and return;
// the host blocks only on the transport's record-before-wait flags and in
// synchronize().
#pragma once

#include <algorithm>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include <chimera/op.hpp>
#include <chimera/placement.hpp>
#include <chimera/schedule.hpp>

#include "../common/backend.hpp"
#include "../cpu/backend.hpp"  // run_shape
#include "../gpt/data.hpp"
#include "device.hpp"
#include "stage.hpp"
#include "transport.hpp"

namespace chimera::runtime::gpu {

using cpu::run_shape;

struct gpu_replica {
    replica id;
    std::unique_ptr<gpu_stage_model> model;
    device_buffer<float> params, grads, first_moment, second_moment;
};

class cuda_backend {
public:
    cuda_backend(const schedule& s, const run_shape& shape, const gpt::dataset& data, int group, int worker,
                 const std::vector<float>& whole_model, const gpu_stage_options& options = {})
        : s_(&s), shape_(&shape), data_(&data), group_(group), worker_(worker) {
        check(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking), "cudaStreamCreate");
        const auto layouts = gpt::partition(shape.model, s.stages());
        for (const replica& r : replicas_on(s, worker)) {
            const auto& l = layouts[static_cast<std::size_t>(r.stage)];
            gpu_replica rep;
            rep.id = r;
            rep.model = std::make_unique<gpu_stage_model>(shape.model, l, shape.batch, shape.seq, options);
            // On the worker's stream: its kernels are ordered after these.
            rep.params = device_buffer<float>(std::vector<float>(
                whole_model.begin() + static_cast<std::ptrdiff_t>(l.offset),
                whole_model.begin() + static_cast<std::ptrdiff_t>(l.offset + l.size)), stream_);
            rep.grads = device_buffer<float>(l.size);
            rep.first_moment = device_buffer<float>(l.size);
            rep.second_moment = device_buffer<float>(l.size);
            rep.grads.zero(stream_);
            rep.first_moment.zero(stream_);
            rep.second_moment.zero(stream_);
            replicas_.push_back(std::move(rep));
        }
    }
    cuda_backend(const cuda_backend&) = delete;
    cuda_backend& operator=(const cuda_backend&) = delete;
    ~cuda_backend() {
        if (stream_) {
            cudaStreamSynchronize(stream_);
            for (auto& [key, st] : stashes_) gpu_stage_model::free_stash(st, stream_);
            for (auto& [id, buffer] : losses_) cudaFreeAsync(buffer, stream_);
            for (auto& [key, box] : boxes_) cudaFreeAsync(box.data, stream_);
            cudaStreamSynchronize(stream_);
            cudaStreamDestroy(stream_);
        }
    }

    int rank() const { return group_ * s_->workers() + worker_; }
    // The worker's stream: uploads into its replicas go here (trainer load).
    cudaStream_t stream() const { return stream_; }
    std::vector<gpu_replica>& replicas() { return replicas_; }
    const std::vector<gpu_replica>& replicas() const { return replicas_; }
    std::vector<replica> owned() const {
        std::vector<replica> out;
        for (const auto& r : replicas_) out.push_back(r.id);
        return out;
    }
    void begin(int step, local_transport& transport) {
        step_ = step;
        transport_ = &transport;
        losses_.clear();
        host_losses_.clear();
    }
    int peak_activations() const { return peak_; }
    // (global micro-batch id, mean loss) of the micro-batches whose last
    // stage ran here; valid after synchronize().
    const std::vector<std::pair<int, double>>& losses() const { return host_losses_; }

    // --- runtime::backend ---
    void zero_grad(const replica& r) {
        auto& g = find(r).grads;
        check(cudaMemsetAsync(g.data(), 0, g.size() * sizeof(float), stream_), "zero_grad");
    }

    void forward(const op& o) {
        auto& rep = find({o.pipeline, o.stage});
        const auto& model = *rep.model;
        const auto key = stash_key(o);
        if (stashes_.count(key)) throw error(o, "forward twice without a backward in between");
        const int index = group_ * shape_->micro_batches + o.micro_batch;
        std::vector<int> tokens, targets;
        data_->micro_batch(false, shape_->data_seed, step_, index, shape_->batch, shape_->seq, tokens, targets);
        gpu_stash st = model.make_stash(tokens, targets, stream_);
        const float* input = nullptr;
        if (!model.layout().embedding) input = take({0, o.pipeline, o.stage, o.micro_batch}, o, "RECV_F");
        float* output = nullptr;
        if (!model.layout().head) output = allocate(activation_size());
        model.forward(rep.params.data(), st, input, output, loss_scale(), stream_);
        if (!model.layout().embedding) release_input({0, o.pipeline, o.stage, o.micro_batch});
        if (model.layout().head) {
            float* losses = allocate(static_cast<std::size_t>(model.rows()));
            check(cudaMemcpyAsync(losses, st.values + model.losses_offset(), model.rows() * sizeof(float),
                                  cudaMemcpyDeviceToDevice, stream_),
                  "losses");
            losses_.emplace_back(index, losses);
        } else {
            hand_over({0, o.pipeline, o.stage + 1, o.micro_batch}, output);
        }
        stashes_.emplace(key, st);
        peak_ = std::max(peak_, static_cast<int>(stashes_.size()));
    }

    void backward(const op& o) {
        input_part(o);
        weight_part(o);
    }
    void backward_input(const op& o) { input_part(o); }
    void backward_weight(const op& o) { weight_part(o); }
    void release_activations(const op& o) {
        const auto it = stashes_.find(stash_key(o));
        if (it == stashes_.end()) return;
        gpu_stage_model::free_stash(it->second, stream_);
        stashes_.erase(it);
    }

    // Post every member, then wait for all: sends (buffered: they never
    // block) and reduction arrivals first, then receives and the reductions'
    // results. Each step follows the list's canonical order.
    void comm(std::span<const op> group) {
        for (const op& o : group) {
            if (o.kind == op_kind::SEND_F || o.kind == op_kind::SEND_B) {
                const bool activation = o.kind == op_kind::SEND_F;
                const int kind = activation ? 0 : 1, to_stage = activation ? o.stage + 1 : o.stage - 1;
                const std::tuple<int, int, int, int> key{kind, o.pipeline, to_stage, o.micro_batch};
                const auto it = boxes_.find(key);
                if (it == boxes_.end() || !it->second.outgoing)
                    throw error(o, activation ? "nothing to send: its F has not run"
                                              : "nothing to send: its B/I has not run");
                transport_->send({kind, o.pipeline, o.micro_batch, o.stage, to_stage, group_}, it->second.data,
                                 activation_size(), stream_);
                cudaFreeAsync(it->second.data, stream_);
                boxes_.erase(it);
            } else if (o.kind == op_kind::REDUCE_GRAD) {
                auto& rep = find({o.pipeline, o.stage});
                transport_->post_all_reduce(o.stage, group_ * s_->pipelines() + o.pipeline,
                                            s_->pipelines() * shape_->data_parallel, rep.grads.data(),
                                            rep.grads.size(), stream_);
            }
        }
        for (const op& o : group) {
            if (o.kind == op_kind::RECV_F || o.kind == op_kind::RECV_B) {
                const bool activation = o.kind == op_kind::RECV_F;
                const int kind = activation ? 0 : 1, from_stage = activation ? o.stage - 1 : o.stage + 1;
                const float* data = transport_->receive({kind, o.pipeline, o.micro_batch, from_stage, o.stage, group_},
                                                        activation_size(), stream_);
                boxes_[{kind, o.pipeline, o.stage, o.micro_batch}] = box{const_cast<float*>(data), false, false};
            }
        }
        for (const op& o : group)
            if (o.kind == op_kind::REDUCE_GRAD) transport_->finish_all_reduce(o.stage, find({o.pipeline, o.stage}).grads.data(), stream_);
    }

    void synchronize() {
        check(cudaStreamSynchronize(stream_), "cudaStreamSynchronize");
        for (auto& [index, buffer] : losses_) {
            std::vector<float> rows(static_cast<std::size_t>(shape_->batch) * shape_->seq);
            check(cudaMemcpy(rows.data(), buffer, rows.size() * sizeof(float), cudaMemcpyDeviceToHost), "losses");
            cudaFreeAsync(buffer, stream_);
            float total = 0;  // as cpu::classifier_forward: float sum in row order, then the mean
            for (float l : rows) total += l;
            host_losses_.emplace_back(index, static_cast<double>(total / static_cast<float>(rows.size())));
        }
        losses_.clear();
        if (!boxes_.empty())
            throw std::runtime_error("worker " + std::to_string(rank()) + ": " + std::to_string(boxes_.size()) +
                                     " message buffers unsent or unconsumed at the end of the iteration");
    }

    void optimizer_step(const replica& r) {
        auto& rep = find(r);
        const auto table = gpt::tensor_table(shape_->model);
        const auto& l = rep.model->layout();
        for (std::size_t t = l.first_tensor; t < l.last_tensor; ++t) {
            const std::size_t begin = table[t].offset - l.offset;
            adamw(rep.params.data() + begin, rep.first_moment.data() + begin, rep.second_moment.data() + begin,
                  rep.grads.data() + begin, table[t].size, step_ + 1, shape_->adam, table[t].decay, stream_);
        }
        check(cudaStreamSynchronize(stream_), "optimizer step");
    }

private:
    // A message buffer: outgoing (ours, to free after the send), or
    // incoming/local. Received buffers belong to the transport.
    struct box {
        float* data = nullptr;
        bool outgoing = false, owned = true;
    };

    std::tuple<int, int, int> stash_key(const op& o) const { return {o.pipeline, o.stage, o.micro_batch}; }
    std::size_t activation_size() const {
        return static_cast<std::size_t>(shape_->batch) * shape_->seq * shape_->model.channels;
    }
    float loss_scale() const { return 1.0f / static_cast<float>(shape_->micro_batches * shape_->data_parallel); }
    float* allocate(std::size_t count) {
        float* p = nullptr;
        check(cudaMallocAsync(reinterpret_cast<void**>(&p), count * sizeof(float), stream_), "cudaMallocAsync");
        return p;
    }
    std::runtime_error error(const op& o, const std::string& what) const {
        return std::runtime_error("worker " + std::to_string(rank()) + ", " + std::string(describe(o)) + ": " + what);
    }
    gpu_replica& find(const replica& r) {
        for (auto& rep : replicas_)
            if (rep.id == r) return rep;
        throw std::runtime_error("worker " + std::to_string(rank()) + " holds no replica of pipeline " +
                                 std::to_string(r.pipeline) + ", stage " + std::to_string(r.stage));
    }
    // An output goes to the next consumer: kept when this worker runs it,
    // else marked outgoing for its SEND.
    void hand_over(std::tuple<int, int, int, int> key, float* data) {
        const auto [kind, pipeline, stage, micro_batch] = key;
        boxes_[key] = box{data, s_->placement(pipeline, stage) != worker_, true};
    }
    const float* take(std::tuple<int, int, int, int> key, const op& o, const char* missing) {
        const auto it = boxes_.find(key);
        if (it == boxes_.end() || it->second.outgoing)
            throw error(o, std::string("input not available (no ") + missing + " before it, or its producer has not run)");
        return it->second.data;
    }
    void release_input(std::tuple<int, int, int, int> key) {
        const auto it = boxes_.find(key);
        if (it->second.owned) cudaFreeAsync(it->second.data, stream_);
        boxes_.erase(it);
    }

    void input_part(const op& o) {
        auto& rep = find({o.pipeline, o.stage});
        const auto it = stashes_.find(stash_key(o));
        if (it == stashes_.end()) throw error(o, "backward without its forward's activations");
        const auto& model = *rep.model;
        const float* dout = nullptr;
        if (!model.layout().head) dout = take({1, o.pipeline, o.stage, o.micro_batch}, o, "RECV_B");
        float* dinput = model.layout().embedding ? nullptr : allocate(activation_size());
        model.backward_input(rep.params.data(), it->second, dout, dinput, stream_);
        if (!model.layout().head) release_input({1, o.pipeline, o.stage, o.micro_batch});
        if (!model.layout().embedding) hand_over({1, o.pipeline, o.stage - 1, o.micro_batch}, dinput);
    }
    void weight_part(const op& o) {
        auto& rep = find({o.pipeline, o.stage});
        const auto it = stashes_.find(stash_key(o));
        if (it == stashes_.end() || !it->second.input_backward_done)
            throw error(o, "weight backward without its input backward");
        rep.model->backward_weight(rep.grads.data(), it->second, stream_);
    }

    const schedule* s_;
    const run_shape* shape_;
    const gpt::dataset* data_;
    local_transport* transport_ = nullptr;
    int group_, worker_, step_ = 0;
    cudaStream_t stream_ = nullptr;
    std::vector<gpu_replica> replicas_;
    std::map<std::tuple<int, int, int>, gpu_stash> stashes_;
    std::map<std::tuple<int, int, int, int>, box> boxes_;  // (kind, pipeline, consumer stage, micro-batch)
    std::vector<std::pair<int, float*>> losses_;
    std::vector<std::pair<int, double>> host_losses_;
    int peak_ = 0;
};

static_assert(runtime::backend<cuda_backend>);

}  // namespace chimera::runtime::gpu
