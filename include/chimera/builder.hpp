// Custom schedules by hand: append ops per worker in any order, set the
// placement (pipeline x stage -> worker) and the routing (micro-batch ->
// pipeline), build() the IR, then validate it with chimera::check like any
// generated schedule (and lower, simulate, export it the same way).
//
//   chimera::schedule_builder b("my-1f1b", {.stages = 2, .micro_batches = 2, .workers = 2});
//   b.place(0, 0, 0).place(0, 1, 1);
//   b.append(0, chimera::forward(0, 0, 0)).append(1, chimera::forward(0, 0, 1)) ...;
//   chimera::schedule s = b.build();
//   chimera::check_report r = chimera::check(s);
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "config.hpp"
#include "detail/text.hpp"
#include "error.hpp"
#include "op.hpp"
#include "schedule.hpp"

namespace chimera {

struct builder_shape {
    int stages = 1;         // stages of one pipeline (all chunks of the model for V or loop placements)
    int micro_batches = 1;  // N
    int pipelines = 1;      // stage chains sharing the workers
    int workers = 1;        // P
};

class schedule_builder {
public:
    // Defaults: stage s of every pipeline on worker s mod P, every
    // micro-batch through pipeline 0. Throws schedule_error (S0) for sizes < 1.
    constexpr schedule_builder(std::string_view name, const builder_shape& shape) : name_(name), shape_(shape) {
        using detail::cat;
        if (shape.stages < 1 || shape.micro_batches < 1 || shape.pipelines < 1 || shape.workers < 1)
            throw schedule_error("S0", cat("schedule_builder: stages, micro_batches, pipelines and workers must be >= 1 "
                                           "(got ", shape.stages, ", ", shape.micro_batches, ", ", shape.pipelines,
                                           ", ", shape.workers, ")"));
        const long long by_micro_batch = static_cast<long long>(shape.stages) * shape.micro_batches,
                        by_pipeline = static_cast<long long>(shape.stages) * shape.pipelines;
        if (by_micro_batch > max_stage_micro_batch_product || by_pipeline > max_stage_micro_batch_product)
            throw schedule_error("S0", cat("schedule_builder: stages x micro_batches and stages x pipelines must be <= ",
                                           max_stage_micro_batch_product, " (got ", by_micro_batch, " and ",
                                           by_pipeline, ")"));
        // As the JSON reader: one op list per worker is allocated up front.
        if (shape.workers > max_stage_micro_batch_product)
            throw schedule_error("S0", cat("schedule_builder: workers must be <= ", max_stage_micro_batch_product,
                                           " (got ", shape.workers, ")"));
        // push_back rather than resize/assign: clang 14 rejects the latter on
        // libstdc++'s vectors in constant expressions.
        for (int p = 0; p < shape.pipelines; ++p)
            for (int st = 0; st < shape.stages; ++st) placement_.push_back(st % shape.workers);
        for (int m = 0; m < shape.micro_batches; ++m) routing_.push_back(0);
        for (int w = 0; w < shape.workers; ++w) ops_.emplace_back();
    }

    constexpr schedule_builder& place(int pipeline, int stage, int worker) {
        require(pipeline, shape_.pipelines, "pipeline");
        require(stage, shape_.stages, "stage");
        require(worker, shape_.workers, "worker");
        placement_[static_cast<std::size_t>(pipeline) * shape_.stages + stage] = worker;
        return *this;
    }
    constexpr schedule_builder& route(int micro_batch, int pipeline) {
        require(micro_batch, shape_.micro_batches, "micro-batch");
        require(pipeline, shape_.pipelines, "pipeline");
        routing_[static_cast<std::size_t>(micro_batch)] = pipeline;
        return *this;
    }
    // Appends to the end of `worker`'s list; workers may be filled in any
    // order. Op fields are checked by chimera::check, not here, so that a
    // broken hand-written schedule gets the full diagnostic report.
    constexpr schedule_builder& append(int worker, const op& o) {
        require(worker, shape_.workers, "worker");
        ops_[static_cast<std::size_t>(worker)].push_back(o);
        return *this;
    }
    // The worker that `placement` gives (pipeline, stage): append there.
    constexpr schedule_builder& append(const op& o) {
        require(o.pipeline, shape_.pipelines, "pipeline");
        require(o.stage, shape_.stages, "stage");
        return append(placement_[static_cast<std::size_t>(o.pipeline) * shape_.stages + o.stage], o);
    }

    constexpr schedule build() const {
        schedule frame;
        frame.set_shape(name_.view(), shape_.stages, shape_.micro_batches, shape_.pipelines);
        for (int p = 0; p < shape_.pipelines; ++p)
            for (int st = 0; st < shape_.stages; ++st)
                frame.set_placement(p, st, placement_[static_cast<std::size_t>(p) * shape_.stages + st]);
        for (int m = 0; m < shape_.micro_batches; ++m) frame.set_pipeline_of(m, routing_[static_cast<std::size_t>(m)]);
        return with_ops(frame, ops_);
    }

private:
    static constexpr void require(int value, int bound, std::string_view what) {
        if (value < 0 || value >= bound)
            throw schedule_error("S0", detail::cat("schedule_builder: ", what, " ", value, " is not in [0, ", bound, ")"));
    }

    schedule_name name_;  // inline storage: usable in constant expressions with clang too
    builder_shape shape_;
    std::vector<int> placement_, routing_;
    std::vector<std::vector<op>> ops_;
};

}  // namespace chimera
