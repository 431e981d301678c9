// The CUDA backend of one virtual worker (docs/cuda.md): its own
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
#include <chrono>
#include <span>
#include <utility>
#include <vector>

#include <chimera/op.hpp>
#include <chimera/placement.hpp>
#include <chimera/schedule.hpp>

#include <chimera/runtime/backend.hpp>
#include <chimera/runtime/message.hpp>
#include <chimera/runtime/transport.hpp>

#include "../common/message_box.hpp"
#include "../common/shape.hpp"
#include "../common/trainer.hpp"
#include "../gpt/data.hpp"
#include "device.hpp"
#include "stage.hpp"
#include "transport.hpp"

namespace chimera::runtime::gpu {

// The local transport of one step, as the common trainer makes it: device
// buffers come from the trainer's pool (reused every step); no issue-order
// check (messages match by key only).
class step_transport : public local_transport {
public:
    step_transport(int /*ranks*/, std::chrono::milliseconds watchdog, buffer_pool& pool)
        : local_transport(watchdog, &pool) {}
    void finish(int /*rank*/) {}
    int order_mismatches() const { return 0; }
};

// A device payload: pointer and element count.
struct device_span {
    float* data = nullptr;
    std::size_t count = 0;
};
// Where a received message's device buffer (owned by the transport) goes.
struct device_receipt {
    const float** data = nullptr;
    std::size_t count = 0;
};

// One comm group of one worker on the local transport: models
// runtime::transport. Sends and reduction arrivals are enqueued when
// posted; complete() then waits for the receives and the reductions'
// results, in posting order (the group's canonical order).
class device_channel {
public:
    device_channel(local_transport& t, cudaStream_t stream, int group) : t_(t), stream_(stream), group_(group) {}
    void post_send(const message_key& key, device_span data) { t_.send(id(key), data.data, data.count, stream_); }
    void post_recv(const message_key& key, device_receipt out) { receives_.emplace_back(key, out); }
    void post_reduce(const reduce_key& key, device_span data) {
        t_.post_all_reduce(key.stage, key.order, key.members, data.data, data.count, stream_);
        reductions_.emplace_back(key.stage, data.data);
    }
    void complete() {
        for (const auto& [key, out] : receives_) *out.data = t_.receive(id(key), out.count, stream_);
        for (const auto& [stage, buffer] : reductions_) t_.finish_all_reduce(stage, buffer, stream_);
        receives_.clear();
        reductions_.clear();
    }

private:
    // The transport's id: (kind, pipeline, micro-batch, sending stage, receiving stage, data-parallel group).
    message_id id(const message_key& k) const {
        return {static_cast<int>(k.kind), k.pipeline, k.micro_batch, producer_stage(k), k.stage, group_};
    }
    local_transport& t_;
    cudaStream_t stream_;
    int group_;
    std::vector<std::pair<message_key, device_receipt>> receives_;
    std::vector<std::pair<int, float*>> reductions_;
};
static_assert(runtime::transport<device_channel, device_span, device_receipt, device_span>);

struct gpu_replica {
    replica id;
    std::unique_ptr<gpu_stage_model> model;
    device_buffer<float> params, grads, first_moment, second_moment;
};

class cuda_backend {
public:
    using value_type = float;
    using transport_type = step_transport;
    using transport_resources = buffer_pool;
    using options = gpu_stage_options;
    static constexpr std::chrono::milliseconds default_watchdog{60000};

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
            boxes_.for_each([&](const message_key&, box& b) {
                if (b.owned) cudaFreeAsync(b.data, stream_);
            });
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
    // After every step: the device is idle before the trainer reads results.
    static void after_step() { check(cudaDeviceSynchronize(), "cudaDeviceSynchronize"); }

    // Host copies of one replica's state and gradient (after the worker's
    // stream is idle); load uploads each replica's slice of a whole-model
    // state on the worker's stream, so its next kernels are ordered after it.
    train_state<float> state_of(const replica& r) const {
        check(cudaStreamSynchronize(stream_), "state");
        const auto& rep = find(r);
        return {rep.params.download(), rep.first_moment.download(), rep.second_moment.download()};
    }
    std::vector<float> gradients_of(const replica& r) const {
        check(cudaStreamSynchronize(stream_), "gradients");
        return find(r).grads.download();
    }
    void load(const train_state<float>& whole) {
        for (auto& rep : replicas_) {
            const auto& l = rep.model->layout();
            rep.params.upload(slice(whole.params, l), stream_);
            rep.first_moment.upload(slice(whole.first_moment, l), stream_);
            rep.second_moment.upload(slice(whole.second_moment, l), stream_);
        }
    }

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
        if (!model.layout().embedding) input = take(o, "RECV_F");
        float* output = nullptr;
        if (!model.layout().head) output = allocate(shape_->activation_size());
        model.forward(rep.params.data(), st, input, output, shape_->loss_scale<float>(), stream_);
        if (!model.layout().embedding) release_input(o);
        if (model.layout().head) {
            float* losses = allocate(static_cast<std::size_t>(model.rows()));
            check(cudaMemcpyAsync(losses, st.values + model.losses_offset(), model.rows() * sizeof(float),
                                  cudaMemcpyDeviceToDevice, stream_),
                  "losses");
            losses_.emplace_back(index, losses);
        } else {
            boxes_.put(output_of(*s_, o, offset()), {output, true});
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
    // results, each in the list's canonical order (device_channel).
    void comm(std::span<const op> group) {
        device_channel transport(*transport_, stream_, group_);
        comm(group, transport);
    }
    // The same over any runtime::transport of device_span / device_receipt
    // (the nccl transport of examples/distributed). A sent buffer is freed
    // after complete(): a transport may enqueue the send only there.
    template <class Transport>
    void comm(std::span<const op> group, Transport& transport) {
        std::vector<float*> sent;
        std::vector<std::pair<message_key, const float*>> received;
        received.reserve(group.size());  // post_recv keeps pointers into it
        for (const op& o : group) {
            if (o.kind == op_kind::REDUCE_GRAD) {
                auto& grads = find({o.pipeline, o.stage}).grads;
                transport.post_reduce(reduction_of(o, group_, s_->pipelines(), shape_->data_parallel),
                                      {grads.data(), grads.size()});
                continue;
            }
            const message_key key = message_of(o, worker_, offset());
            if (o.kind == op_kind::SEND_F || o.kind == op_kind::SEND_B) {
                auto message = boxes_.take(key);
                if (!message)
                    throw error(o, o.kind == op_kind::SEND_F ? "nothing to send: its F has not run"
                                                             : "nothing to send: its B/I has not run");
                transport.post_send(key, {message->data, shape_->activation_size()});
                sent.push_back(message->data);
            } else {
                received.emplace_back(key, nullptr);
                transport.post_recv(key, {&received.back().second, shape_->activation_size()});
            }
        }
        transport.complete();
        for (float* data : sent) cudaFreeAsync(data, stream_);  // after the send, on the same stream
        for (const auto& [key, data] : received) boxes_.put(key, {const_cast<float*>(data), false});
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
        if (!boxes_.empty()) throw std::runtime_error(boxes_.leftover_report(rank()));
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
    // A message buffer: ours (an output, to free once consumed or sent) or
    // the transport's (received).
    struct box {
        float* data = nullptr;
        bool owned = true;
    };

    std::tuple<int, int, int> stash_key(const op& o) const { return {o.pipeline, o.stage, o.micro_batch}; }
    int offset() const { return group_ * s_->workers(); }
    static std::vector<float> slice(const std::vector<float>& whole, const gpt::stage_layout& l) {
        return {whole.begin() + static_cast<std::ptrdiff_t>(l.offset),
                whole.begin() + static_cast<std::ptrdiff_t>(l.offset + l.size)};
    }
    float* allocate(std::size_t count) {
        float* p = nullptr;
        check(cudaMallocAsync(reinterpret_cast<void**>(&p), count * sizeof(float), stream_), "cudaMallocAsync");
        return p;
    }
    std::runtime_error error(const op& o, const std::string& what) const {
        return std::runtime_error("worker " + std::to_string(rank()) + ", " + std::string(describe(o)) + ": " + what);
    }
    gpu_replica& find(const replica& r) { return const_cast<gpu_replica&>(std::as_const(*this).find(r)); }
    const gpu_replica& find(const replica& r) const {
        for (const auto& rep : replicas_)
            if (rep.id == r) return rep;
        throw std::runtime_error("worker " + std::to_string(rank()) + " holds no replica of pipeline " +
                                 std::to_string(r.pipeline) + ", stage " + std::to_string(r.stage));
    }
    // The input of F (activation) or B/I (output gradient): received, or
    // handed over by this worker's own producer. Stays in the box until
    // release_input (the kernels that read it are enqueued in between).
    const float* take(const op& o, const char* missing) {
        const box* b = boxes_.find(input_of(*s_, o, offset()));
        if (!b) throw error(o, std::string("input not available (no ") + missing + " before it, or its producer has not run)");
        return b->data;
    }
    void release_input(const op& o) {
        const box b = *boxes_.take(input_of(*s_, o, offset()));
        if (b.owned) cudaFreeAsync(b.data, stream_);
    }

    void input_part(const op& o) {
        auto& rep = find({o.pipeline, o.stage});
        const auto it = stashes_.find(stash_key(o));
        if (it == stashes_.end()) throw error(o, "backward without its forward's activations");
        const auto& model = *rep.model;
        const float* dout = nullptr;
        if (!model.layout().head) dout = take(o, "RECV_B");
        float* dinput = model.layout().embedding ? nullptr : allocate(shape_->activation_size());
        model.backward_input(rep.params.data(), it->second, dout, dinput, stream_);
        if (!model.layout().head) release_input(o);
        if (!model.layout().embedding) boxes_.put(output_of(*s_, o, offset()), {dinput, true});
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
    message_box<box> boxes_;
    std::vector<std::pair<int, float*>> losses_;
    std::vector<std::pair<int, double>> host_losses_;
    int peak_ = 0;
};

static_assert(runtime::trainable<cuda_backend>);

}  // namespace chimera::runtime::gpu
