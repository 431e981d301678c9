// The schedule IR: who runs what, in which order.
//
// A schedule is one group of workers (data-parallel copies are identical and
// not listed), a placement (pipeline x stage -> worker), a routing
// (micro-batch -> pipeline) and, per worker, its ops in execution order.
// The same class template serves two storages behind one interface:
// `schedule` (std::vector, any size, run time) and `fixed_schedule<...>`
// (std::array, exact capacities, usable as a constexpr value).
#pragma once

#include <algorithm>
#include <cstddef>
#include <span>
#include <string_view>
#include <vector>

#include "config.hpp"
#include "detail/static_vector.hpp"
#include "op.hpp"

namespace chimera {

struct dynamic_storage {
    template <class T>
    using placement_vector = std::vector<T>;
    template <class T>
    using routing_vector = std::vector<T>;
    template <class T>
    using worker_vector = std::vector<T>;
    template <class T>
    using op_vector = std::vector<T>;
};

template <std::size_t PlacementCapacity, std::size_t MicroBatchCapacity, std::size_t WorkerCapacity,
          std::size_t OpCapacity>
struct fixed_storage {
    template <class T>
    using placement_vector = detail::static_vector<T, PlacementCapacity>;
    template <class T>
    using routing_vector = detail::static_vector<T, MicroBatchCapacity>;
    template <class T>
    using worker_vector = detail::static_vector<T, WorkerCapacity>;
    template <class T>
    using op_vector = detail::static_vector<T, OpCapacity>;
};

// Generator or file name, stored inline so that fixed schedules need no heap.
class schedule_name {
public:
    static constexpr std::size_t max_length = 31;
    constexpr schedule_name() = default;
    constexpr schedule_name(std::string_view text) {  // NOLINT: implicit on purpose
        length_ = std::min(text.size(), max_length);
        for (std::size_t i = 0; i < length_; ++i) chars_[i] = text[i];
    }
    constexpr std::string_view view() const { return {chars_.data(), length_}; }
    friend constexpr bool operator==(const schedule_name& a, const schedule_name& b) { return a.view() == b.view(); }

private:
    std::array<char, max_length> chars_{};
    std::size_t length_ = 0;
};

template <class Storage>
class basic_schedule {
public:
    using storage = Storage;

    constexpr basic_schedule() = default;

    // Shape. `params` is the generator's config (algorithm::custom for
    // schedules built by hand or read from a file without known params).
    constexpr void set_shape(std::string_view name, int stages, int micro_batches, int pipelines,
                             const config& params = config{algorithm::custom}) {
        name_ = name;
        stages_ = stages;
        micro_batches_ = micro_batches;
        pipelines_ = pipelines;
        params_ = params;
        placement_.clear();
        placement_.resize(static_cast<std::size_t>(std::max(0, pipelines)) * std::max(0, stages), 0);
        routing_.clear();
        routing_.resize(static_cast<std::size_t>(std::max(0, micro_batches)), 0);
        worker_end_.clear();
        ops_.clear();
    }
    constexpr void set_placement(int pipeline, int stage, int worker) {
        placement_[static_cast<std::size_t>(pipeline) * stages_ + stage] = worker;
    }
    constexpr void set_pipeline_of(int micro_batch, int pipeline) { routing_[micro_batch] = pipeline; }
    // Renames the schedule and replaces its params; shape, placement,
    // routing and ops stay (a generated schedule passed off as a custom one).
    constexpr void set_identity(std::string_view name, const config& params) {
        name_ = name;
        params_ = params;
    }
    // Opens the op list of the next worker; push_op appends to it.
    constexpr void add_worker() { worker_end_.push_back(ops_.size()); }
    constexpr void push_op(const op& o) {
        ops_.push_back(o);
        ++worker_end_.back();
    }

    constexpr std::string_view name() const { return name_.view(); }
    constexpr const config& params() const { return params_; }
    constexpr int stages() const { return stages_; }
    constexpr int micro_batches() const { return micro_batches_; }
    constexpr int pipelines() const { return pipelines_; }
    constexpr int workers() const { return static_cast<int>(worker_end_.size()); }

    constexpr int placement(int pipeline, int stage) const {
        return placement_[static_cast<std::size_t>(pipeline) * stages_ + stage];
    }
    constexpr int pipeline_of(int micro_batch) const { return routing_[micro_batch]; }

    constexpr std::span<const op> ops(int worker) const {
        const std::size_t begin = worker == 0 ? 0 : worker_end_[worker - 1];
        return {ops_.data() + begin, worker_end_[worker] - begin};
    }
    constexpr std::span<const op> all_ops() const { return {ops_.data(), ops_.size()}; }
    constexpr std::size_t op_count() const { return ops_.size(); }
    // Index of a worker's first op in all_ops().
    constexpr std::size_t first_op_index(int worker) const { return worker == 0 ? 0 : worker_end_[worker - 1]; }

    // Raw sizes, for converting between storages.
    constexpr std::size_t placement_size() const { return placement_.size(); }

    template <class Other>
    friend constexpr bool operator==(const basic_schedule& a, const basic_schedule<Other>& b) {
        return a.name() == b.name() && a.params() == b.params() && same_structure(a, b);
    }

private:
    schedule_name name_{};
    config params_{algorithm::custom};
    int stages_ = 0;
    int micro_batches_ = 0;
    int pipelines_ = 0;
    typename Storage::template placement_vector<int> placement_{};
    typename Storage::template routing_vector<int> routing_{};
    typename Storage::template worker_vector<std::size_t> worker_end_{};
    typename Storage::template op_vector<op> ops_{};
};

// Same shape, placement, routing and op lists; names and params may differ
// (a schedule read back from PyTorch CSV has neither).
template <class A, class B>
constexpr bool same_structure(const basic_schedule<A>& a, const basic_schedule<B>& b) {
    if (a.stages() != b.stages() || a.micro_batches() != b.micro_batches() || a.pipelines() != b.pipelines() ||
        a.workers() != b.workers())
        return false;
    for (int p = 0; p < a.pipelines(); ++p)
        for (int s = 0; s < a.stages(); ++s)
            if (a.placement(p, s) != b.placement(p, s)) return false;
    for (int m = 0; m < a.micro_batches(); ++m)
        if (a.pipeline_of(m) != b.pipeline_of(m)) return false;
    for (int w = 0; w < a.workers(); ++w)
        if (!std::ranges::equal(a.ops(w), b.ops(w))) return false;
    return true;
}

using schedule = basic_schedule<dynamic_storage>;

template <std::size_t PlacementCapacity, std::size_t MicroBatchCapacity, std::size_t WorkerCapacity,
          std::size_t OpCapacity>
using fixed_schedule =
    basic_schedule<fixed_storage<PlacementCapacity, MicroBatchCapacity, WorkerCapacity, OpCapacity>>;

// The frame of a schedule: name, params, shape, placement and routing, with
// no workers yet (add_worker/push_op fill them in).
template <class To = dynamic_storage, class From>
constexpr basic_schedule<To> copy_frame(const basic_schedule<From>& from) {
    basic_schedule<To> to;
    to.set_shape(from.name(), from.stages(), from.micro_batches(), from.pipelines(), from.params());
    for (int p = 0; p < from.pipelines(); ++p)
        for (int s = 0; s < from.stages(); ++s) to.set_placement(p, s, from.placement(p, s));
    for (int m = 0; m < from.micro_batches(); ++m) to.set_pipeline_of(m, from.pipeline_of(m));
    return to;
}

// The frame of `frame` with new op lists, one range of ops per worker.
// Precondition: lists has one entry per worker the result should have.
template <class From, class Lists>
constexpr schedule with_ops(const basic_schedule<From>& frame, const Lists& lists) {
    schedule out = copy_frame(frame);
    for (const auto& list : lists) {
        out.add_worker();
        for (const op& o : list) out.push_op(o);
    }
    return out;
}

// The same schedule keeping only the ops for which keep(op) holds, in order.
template <class From, class Keep>
constexpr schedule filter_ops(const basic_schedule<From>& s, Keep keep) {
    schedule out = copy_frame(s);
    for (int w = 0; w < s.workers(); ++w) {
        out.add_worker();
        for (const op& o : s.ops(w))
            if (keep(o)) out.push_op(o);
    }
    return out;
}

// The compute ops of one list, in order (a lowered list interleaves comm ops).
constexpr std::vector<op> compute_ops(std::span<const op> list) {
    std::vector<op> out;
    for (const op& o : list)
        if (is_compute(o.kind)) out.push_back(o);
    return out;
}

// The compute-only view of a lowered schedule: SEND/RECV/REDUCE_GRAD dropped.
template <class From>
constexpr schedule compute_only(const basic_schedule<From>& s) {
    return filter_ops(s, [](const op& o) { return is_compute(o.kind); });
}

// Copies a schedule into another storage (dynamic -> fixed at compile time,
// fixed -> dynamic to hand a compile-time schedule to run-time code).
template <class To, class From>
constexpr basic_schedule<To> convert(const basic_schedule<From>& from) {
    basic_schedule<To> to = copy_frame<To>(from);
    for (int w = 0; w < from.workers(); ++w) {
        to.add_worker();
        for (const op& o : from.ops(w)) to.push_op(o);
    }
    return to;
}

template <class From>
constexpr schedule to_dynamic(const basic_schedule<From>& from) {
    return convert<dynamic_storage>(from);
}

// Any storage of the IR; the passes are written against this.
template <class S>
concept schedule_like = requires(const S& s, int i) {
    { s.stages() } -> std::convertible_to<int>;
    { s.micro_batches() } -> std::convertible_to<int>;
    { s.pipelines() } -> std::convertible_to<int>;
    { s.workers() } -> std::convertible_to<int>;
    { s.placement(i, i) } -> std::convertible_to<int>;
    { s.pipeline_of(i) } -> std::convertible_to<int>;
    { s.ops(i) } -> std::convertible_to<std::span<const op>>;
};

}  // namespace chimera
