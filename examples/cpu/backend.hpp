// The CPU backend of one worker (runtime.md §4): owns the replicas' flat
// parameter / gradient / AdamW buffers, the activation stashes per
// (pipeline, stage, micro-batch) and the message buffers; talks to the other
// workers through a hub. Models runtime::backend.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <tuple>
#include <vector>

#include <chimera/check.hpp>
#include <chimera/op.hpp>
#include <chimera/placement.hpp>
#include <chimera/schedule.hpp>

#include "../common/backend.hpp"
#include "../common/math.hpp"
#include "../gpt/data.hpp"
#include "stage.hpp"
#include "transport.hpp"

namespace chimera::runtime::cpu {

// The whole run's shape, shared (read-only) by every worker.
struct run_shape {
    gpt::gpt_config model;
    int batch = 4;             // rows per micro-batch
    int seq = 32;              // T
    int micro_batches = 1;     // N per pipeline group
    int data_parallel = 1;     // W
    std::uint64_t data_seed = 1;
    math::adamw_params adam{};
};

struct op_times {
    double forward = 0, backward = 0, input_backward = 0, weight_backward = 0, comm = 0;  // seconds
    double optimizer = 0;  // zero_grad and optimizer_step
    int forwards = 0, backwards = 0, input_backwards = 0, weight_backwards = 0;
};

template <class R>
struct replica_state {
    replica id;
    std::unique_ptr<stage_model<R>> model;
    std::vector<R> params, grads, first_moment, second_moment;
};

template <class R>
class cpu_backend {
public:
    cpu_backend(const schedule& s, const run_shape& shape, const gpt::dataset& data, int group, int worker,
                const std::vector<R>& whole_model)
        : s_(s), shape_(shape), data_(data), group_(group), worker_(worker) {
        const auto layouts = gpt::partition(shape.model, s.stages());
        for (const replica& r : replicas_on(s, worker)) {
            replica_state<R> state;
            state.id = r;
            state.model = std::make_unique<stage_model<R>>(shape.model, layouts[static_cast<std::size_t>(r.stage)],
                                                           shape.batch, shape.seq);
            const auto& l = layouts[static_cast<std::size_t>(r.stage)];
            state.params.assign(whole_model.begin() + static_cast<std::ptrdiff_t>(l.offset),
                                whole_model.begin() + static_cast<std::ptrdiff_t>(l.offset + l.size));
            state.grads.assign(l.size, R(0));
            state.first_moment.assign(l.size, R(0));
            state.second_moment.assign(l.size, R(0));
            replicas_.push_back(std::move(state));
        }
    }

    int rank() const { return group_ * s_.workers() + worker_; }
    std::vector<replica_state<R>>& replicas() { return replicas_; }
    const std::vector<replica_state<R>>& replicas() const { return replicas_; }
    std::vector<replica> owned() const {
        std::vector<replica> out;
        for (const auto& r : replicas_) out.push_back(r.id);
        return out;
    }
    // Before every iteration: its index (data, AdamW bias correction) and the transport.
    void begin(int step, hub<R>& transport) {
        step_ = step;
        hub_ = &transport;
        groups_ = 0;
    }
    int peak_activations() const { return peak_; }
    const op_times& times() const { return times_; }
    // (micro-batch, loss) of every micro-batch whose last stage ran here.
    const std::vector<std::pair<int, double>>& losses() const { return losses_; }
    void clear_losses() { losses_.clear(); }

    // --- runtime::backend ---
    void zero_grad(const replica& r) {
        const auto start = clock::now();
        std::fill(find(r).grads.begin(), find(r).grads.end(), R(0));
        times_.optimizer += seconds_since(start);
    }

    void forward(const op& o) {
        const auto start = clock::now();
        auto& rep = find({o.pipeline, o.stage});
        auto& model = *rep.model;
        const auto key = stash_key(o);
        if (stashes_.count(key)) throw error(o, "forward twice without a backward in between");
        stash<R> st = model.make_stash();
        const int index = group_ * shape_.micro_batches + o.micro_batch;  // global micro-batch id
        std::vector<int> tokens, targets;
        data_.micro_batch(false, shape_.data_seed, step_, index, shape_.batch, shape_.seq, tokens, targets);
        if (model.layout().embedding) st.tokens = tokens;
        if (model.layout().head) st.targets = targets;
        std::vector<R> input;
        if (!model.layout().embedding) input = take_inbox({0, o.pipeline, o.stage, o.micro_batch}, o, "RECV_F");
        std::vector<R> output(model.layout().head ? 0 : model.activation_size());
        model.forward(rep.params.data(), st, input.data(), output.data());
        if (model.layout().head) losses_.emplace_back(index, st.loss);
        else hand_over({0, o.pipeline, o.stage + 1, o.micro_batch}, std::move(output));
        stashes_.emplace(key, std::move(st));
        peak_ = std::max(peak_, static_cast<int>(stashes_.size()));
        times_.forward += seconds_since(start);
        ++times_.forwards;
        hub_->note_progress();
    }

    void backward(const op& o) {
        const auto start = clock::now();
        input_part(o);
        weight_part(o);
        times_.backward += seconds_since(start);
        ++times_.backwards;
        hub_->note_progress();
    }
    void backward_input(const op& o) {
        const auto start = clock::now();
        input_part(o);
        times_.input_backward += seconds_since(start);
        ++times_.input_backwards;
        hub_->note_progress();
    }
    void backward_weight(const op& o) {
        const auto start = clock::now();
        weight_part(o);
        times_.weight_backward += seconds_since(start);
        ++times_.weight_backwards;
        hub_->note_progress();
    }
    void release_activations(const op& o) { stashes_.erase(stash_key(o)); }

    void comm(std::span<const op> group) {
        const auto start = clock::now();
        std::vector<comm_member<R>> members;
        members.reserve(group.size());
        std::vector<std::tuple<int, int, int, int>> sent;  // outbox entries to drop afterwards
        for (const op& o : group) {
            comm_member<R> m;
            m.label = std::string(describe(o));
            const bool activation = o.kind == op_kind::SEND_F || o.kind == op_kind::RECV_F;
            const int kind = activation ? 0 : 1;
            switch (o.kind) {
                case op_kind::SEND_F:
                case op_kind::SEND_B: {
                    const int to_stage = activation ? o.stage + 1 : o.stage - 1;
                    const std::tuple<int, int, int, int> box{kind, o.pipeline, to_stage, o.micro_batch};
                    const auto it = outbox_.find(box);
                    if (it == outbox_.end())
                        throw error(o, activation ? "nothing to send: its F has not run" : "nothing to send: its B/I has not run");
                    m.what = comm_member<R>::type::send;
                    m.key = {kind, o.pipeline, o.micro_batch, o.stage, to_stage, rank(), peer_rank(o)};
                    m.buffer = it->second.data();
                    m.count = it->second.size();
                    sent.push_back(box);
                    break;
                }
                case op_kind::RECV_F:
                case op_kind::RECV_B: {
                    const int from_stage = activation ? o.stage - 1 : o.stage + 1;
                    auto& buffer = inbox_[{kind, o.pipeline, o.stage, o.micro_batch}];
                    buffer.assign(activation_size(), R(0));
                    m.what = comm_member<R>::type::recv;
                    m.key = {kind, o.pipeline, o.micro_batch, from_stage, o.stage, peer_rank(o), rank()};
                    m.buffer = buffer.data();
                    m.count = buffer.size();
                    break;
                }
                case op_kind::REDUCE_GRAD: {
                    auto& rep = find({o.pipeline, o.stage});
                    m.what = comm_member<R>::type::reduce;
                    m.reduce_id = o.stage;
                    m.reduce_order = group_ * s_.pipelines() + o.pipeline;  // fixed order: (g, p)
                    m.reduce_members = s_.pipelines() * shape_.data_parallel;
                    m.buffer = rep.grads.data();
                    m.count = rep.grads.size();
                    break;
                }
                default: break;
            }
            members.push_back(std::move(m));
        }
        for (auto& m : members) m.label = "worker " + std::to_string(rank()) + ": " + m.label;
        hub_->run_group(rank(), members, "comm group " + std::to_string(groups_++) + " of its list");
        for (const auto& box : sent) outbox_.erase(box);
        times_.comm += seconds_since(start);
    }

    void synchronize() {
        // Everything is synchronous here; leftover buffers mean the list
        // produced data nobody consumed (a broken schedule).
        if (!outbox_.empty() || !inbox_.empty())
            throw std::runtime_error("worker " + std::to_string(rank()) + ": " + std::to_string(outbox_.size()) +
                                     " unsent and " + std::to_string(inbox_.size()) +
                                     " unconsumed message buffers at the end of the iteration");
    }

    void optimizer_step(const replica& r) {
        const auto start = clock::now();
        auto& rep = find(r);
        const auto table = gpt::tensor_table(shape_.model);
        const auto& l = rep.model->layout();
        for (std::size_t t = l.first_tensor; t < l.last_tensor; ++t) {
            const std::size_t begin = table[t].offset - l.offset, end = begin + table[t].size;
            for (std::size_t i = begin; i < end; ++i)
                math::adamw_update(rep.params[i], rep.first_moment[i], rep.second_moment[i], rep.grads[i], step_ + 1,
                                   shape_.adam, table[t].decay);
        }
        times_.optimizer += seconds_since(start);
    }

private:
    using clock = std::chrono::steady_clock;
    static double seconds_since(clock::time_point start) {
        return std::chrono::duration<double>(clock::now() - start).count();
    }
    std::tuple<int, int, int> stash_key(const op& o) const { return {o.pipeline, o.stage, o.micro_batch}; }
    std::size_t activation_size() const {
        return static_cast<std::size_t>(shape_.batch) * shape_.seq * shape_.model.channels;
    }
    int peer_rank(const op& o) const { return group_ * s_.workers() + o.peer; }

    std::runtime_error error(const op& o, const std::string& what) const {
        return std::runtime_error("worker " + std::to_string(rank()) + ", " + std::string(describe(o)) + ": " + what);
    }

    replica_state<R>& find(const replica& r) {
        for (auto& rep : replicas_)
            if (rep.id == r) return rep;
        throw std::runtime_error("worker " + std::to_string(rank()) + " holds no replica of pipeline " +
                                 std::to_string(r.pipeline) + ", stage " + std::to_string(r.stage));
    }

    // An output goes to the next consumer: locally when this worker runs it,
    // else it waits in the outbox for its SEND.
    void hand_over(std::tuple<int, int, int, int> box, std::vector<R> data) {
        const auto [kind, pipeline, stage, micro_batch] = box;
        if (s_.placement(pipeline, stage) == worker_) inbox_[box] = std::move(data);
        else outbox_[box] = std::move(data);
    }
    std::vector<R> take_inbox(std::tuple<int, int, int, int> box, const op& o, const char* missing) {
        const auto it = inbox_.find(box);
        if (it == inbox_.end())
            throw error(o, std::string("input not available (no ") + missing + " before it, or its producer has not run)");
        std::vector<R> data = std::move(it->second);
        inbox_.erase(it);
        return data;
    }

    void input_part(const op& o) {
        auto& rep = find({o.pipeline, o.stage});
        const auto it = stashes_.find(stash_key(o));
        if (it == stashes_.end()) throw error(o, "backward without its forward's activations");
        auto& model = *rep.model;
        std::vector<R> dout;
        if (!model.layout().head) dout = take_inbox({1, o.pipeline, o.stage, o.micro_batch}, o, "RECV_B");
        std::vector<R> dinput(model.layout().embedding ? 0 : activation_size());
        const R scale = R(1) / static_cast<R>(shape_.micro_batches * shape_.data_parallel);
        model.backward_input(rep.params.data(), it->second, dout.data(), dinput.data(), scale);
        if (!model.layout().embedding) hand_over({1, o.pipeline, o.stage - 1, o.micro_batch}, std::move(dinput));
    }
    void weight_part(const op& o) {
        auto& rep = find({o.pipeline, o.stage});
        const auto it = stashes_.find(stash_key(o));
        if (it == stashes_.end() || !it->second.input_backward_done)
            throw error(o, "weight backward without its input backward");
        rep.model->backward_weight(rep.grads.data(), it->second);
    }

    const schedule& s_;
    const run_shape& shape_;
    const gpt::dataset& data_;
    hub<R>* hub_ = nullptr;
    int group_, worker_, step_ = 0, groups_ = 0;
    std::vector<replica_state<R>> replicas_;
    std::map<std::tuple<int, int, int>, stash<R>> stashes_;
    std::map<std::tuple<int, int, int, int>, std::vector<R>> inbox_, outbox_;  // (kind, pipeline, consumer stage, mb)
    int peak_ = 0;
    op_times times_;
    std::vector<std::pair<int, double>> losses_;
};

static_assert(runtime::backend<cpu_backend<float>>);

}  // namespace chimera::runtime::cpu
