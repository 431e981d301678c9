// The CPU backend of one worker (docs/runtime.md): owns the replicas' flat
// parameter / gradient / AdamW buffers, the activation stashes per
// (pipeline, stage, micro-batch) and the message buffers; talks to the other
// workers through a hub. Models runtime::backend and runtime::trainable.
// Compute ops and the optimizer are timed in the worker thread's CPU time:
// what the op costs on a core of its own, also when more workers than
// cores share the machine (time slicing does not inflate it); comm groups
// in wall-clock time (their cost is waiting).
#pragma once

#include <time.h>

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include <chimera/check.hpp>
#include <chimera/op.hpp>
#include <chimera/placement.hpp>
#include <chimera/schedule.hpp>

#include <chimera/runtime/backend.hpp>
#include <chimera/runtime/message.hpp>

#include "../common/math.hpp"
#include "../common/message_box.hpp"
#include "../common/shape.hpp"
#include "../common/trainer.hpp"
#include "../gpt/data.hpp"
#include "stage.hpp"
#include "transport.hpp"

namespace chimera::runtime::cpu {

using runtime::run_shape;


template <class R>
struct replica_state {
    replica id;
    std::unique_ptr<stage_model<R>> model;
    std::vector<R> params, grads, first_moment, second_moment;
};

template <class R>
class cpu_backend {
public:
    using value_type = R;
    using transport_type = hub<R>;
    using transport_resources = hub_resources;
    struct options {};
    static constexpr std::chrono::milliseconds default_watchdog{10000};

    cpu_backend(const schedule& s, const run_shape& shape, const gpt::dataset& data, int group, int worker,
                const std::vector<R>& whole_model, const options& = {})
        : s_(s), shape_(shape), data_(data), group_(group), worker_(worker),
          stage_times_(static_cast<std::size_t>(s.stages())) {
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
        losses_.clear();
    }
    static void after_step() {}
    int peak_activations() const { return peak_; }
    const op_times& times() const { return times_; }
    // The same, per stage (the simulator takes per-stage costs).
    const std::vector<op_times>& stage_times() const { return stage_times_; }
    // (micro-batch, loss) of every micro-batch whose last stage ran here.
    const std::vector<std::pair<int, double>>& losses() const { return losses_; }

    // Host copies of one replica's state and gradient; load takes each
    // replica's slice of a whole-model state.
    train_state<R> state_of(const replica& r) const {
        const auto& rep = find(r);
        return {rep.params, rep.first_moment, rep.second_moment};
    }
    std::vector<R> gradients_of(const replica& r) const { return find(r).grads; }
    void load(const train_state<R>& whole) {
        for (auto& rep : replicas_) {
            const auto& l = rep.model->layout();
            copy_range(rep.params, whole.params, l.offset);
            copy_range(rep.first_moment, whole.first_moment, l.offset);
            copy_range(rep.second_moment, whole.second_moment, l.offset);
        }
    }

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
        if (!model.layout().embedding) input = take_input(o, "RECV_F");
        std::vector<R> output(model.layout().head ? 0 : model.activation_size());
        model.forward(rep.params.data(), st, input.data(), output.data());
        if (model.layout().head) losses_.emplace_back(index, st.loss);
        else boxes_.put(output_of(s_, o, offset()), std::move(output));
        stashes_.emplace(key, std::move(st));
        peak_ = std::max(peak_, static_cast<int>(stashes_.size()));
        record(o, &op_times::forward, &op_times::forwards, seconds_since(start));
        hub_->note_progress();
    }

    void backward(const op& o) {
        const auto start = clock::now();
        input_part(o);
        weight_part(o);
        record(o, &op_times::backward, &op_times::backwards, seconds_since(start));
        hub_->note_progress();
    }
    void backward_input(const op& o) {
        const auto start = clock::now();
        input_part(o);
        record(o, &op_times::input_backward, &op_times::input_backwards, seconds_since(start));
        hub_->note_progress();
    }
    void backward_weight(const op& o) {
        const auto start = clock::now();
        weight_part(o);
        record(o, &op_times::weight_backward, &op_times::weight_backwards, seconds_since(start));
        hub_->note_progress();
    }
    void release_activations(const op& o) { stashes_.erase(stash_key(o)); }

    void comm(std::span<const op> group) {
        channel<R> transport(*hub_, rank(), "comm group " + std::to_string(groups_++) + " of its list");
        comm(group, transport);
    }
    // The same over any runtime::transport of host spans (the mpi transport
    // of examples/distributed).
    template <class Transport>
    void comm(std::span<const op> group, Transport& transport) {
        const auto start = std::chrono::steady_clock::now();
        std::vector<message_key> sent;  // outputs to drop once sent
        for (const op& o : group) {
            if (o.kind == op_kind::REDUCE_GRAD) {
                auto& grads = find({o.pipeline, o.stage}).grads;
                transport.post_reduce(reduction_of(o, group_, s_.pipelines(), shape_.data_parallel), grads);
                continue;
            }
            const message_key key = message_of(o, worker_, offset());
            if (o.kind == op_kind::SEND_F || o.kind == op_kind::SEND_B) {
                const std::vector<R>* data = boxes_.find(key);
                if (!data)
                    throw error(o, o.kind == op_kind::SEND_F ? "nothing to send: its F has not run"
                                                             : "nothing to send: its B/I has not run");
                transport.post_send(key, *data);
                sent.push_back(key);
            } else {
                transport.post_recv(key, boxes_.put(key, std::vector<R>(shape_.activation_size(), R(0))));
            }
        }
        transport.complete();
        for (const auto& key : sent) boxes_.take(key);
        times_.comm += seconds_since<std::chrono::steady_clock>(start);
    }

    void synchronize() {
        // Everything is synchronous here; leftover buffers mean the list
        // produced data nobody consumed (a broken schedule).
        if (!boxes_.empty()) throw std::runtime_error(boxes_.leftover_report(rank()));
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
    // CLOCK_THREAD_CPUTIME_ID as a std::chrono clock.
    struct clock {
        using duration = std::chrono::nanoseconds;
        using rep = duration::rep;
        using period = duration::period;
        using time_point = std::chrono::time_point<clock>;
        static constexpr bool is_steady = true;
        static time_point now() noexcept {
            timespec t{};
            clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
            return time_point(std::chrono::seconds(t.tv_sec) + duration(t.tv_nsec));
        }
    };
    template <class Clock>
    static double seconds_since(typename Clock::time_point start) {
        return std::chrono::duration<double>(Clock::now() - start).count();
    }
    static double seconds_since(clock::time_point start) { return seconds_since<clock>(start); }
    void record(const op& o, double op_times::*seconds, int op_times::*count, double elapsed) {
        for (op_times* t : {&times_, &stage_times_[static_cast<std::size_t>(o.stage)]}) {
            t->*seconds += elapsed;
            ++(t->*count);
        }
    }
    std::tuple<int, int, int> stash_key(const op& o) const { return {o.pipeline, o.stage, o.micro_batch}; }
    int offset() const { return group_ * s_.workers(); }
    static void copy_range(std::vector<R>& to, const std::vector<R>& from, std::size_t offset) {
        std::copy(from.begin() + static_cast<std::ptrdiff_t>(offset),
                  from.begin() + static_cast<std::ptrdiff_t>(offset + to.size()), to.begin());
    }

    std::runtime_error error(const op& o, const std::string& what) const {
        return std::runtime_error("worker " + std::to_string(rank()) + ", " + std::string(describe(o)) + ": " + what);
    }

    replica_state<R>& find(const replica& r) {
        return const_cast<replica_state<R>&>(std::as_const(*this).find(r));
    }
    const replica_state<R>& find(const replica& r) const {
        for (const auto& rep : replicas_)
            if (rep.id == r) return rep;
        throw std::runtime_error("worker " + std::to_string(rank()) + " holds no replica of pipeline " +
                                 std::to_string(r.pipeline) + ", stage " + std::to_string(r.stage));
    }

    // The input of F (activation) or B/I (output gradient): received, or
    // handed over by this worker's own producer.
    std::vector<R> take_input(const op& o, const char* missing) {
        auto data = boxes_.take(input_of(s_, o, offset()));
        if (!data)
            throw error(o, std::string("input not available (no ") + missing + " before it, or its producer has not run)");
        return std::move(*data);
    }

    void input_part(const op& o) {
        auto& rep = find({o.pipeline, o.stage});
        const auto it = stashes_.find(stash_key(o));
        if (it == stashes_.end()) throw error(o, "backward without its forward's activations");
        auto& model = *rep.model;
        std::vector<R> dout;
        if (!model.layout().head) dout = take_input(o, "RECV_B");
        std::vector<R> dinput(model.layout().embedding ? 0 : shape_.activation_size());
        model.backward_input(rep.params.data(), it->second, dout.data(), dinput.data(), shape_.template loss_scale<R>());
        if (!model.layout().embedding) boxes_.put(output_of(s_, o, offset()), std::move(dinput));
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
    message_box<std::vector<R>> boxes_;
    int peak_ = 0;
    op_times times_;
    std::vector<op_times> stage_times_;
    std::vector<std::pair<int, double>> losses_;
};

static_assert(runtime::trainable<cpu_backend<float>>);

}  // namespace chimera::runtime::cpu
