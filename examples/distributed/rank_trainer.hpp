// One process per worker (docs/distributed.md): the backend of this rank's
// worker runs its own op list through the library executor and talks to the
// other ranks through its transport (mpi, nccl). Results that the local
// trainer reads from every worker (losses, the whole-model state, replica
// checks, peaks) are gathered to rank 0 over the run's control plane
// (control_plane.hpp: MPI, or NCCL without MPI).
//
// Before anything collective depends on them, every rank exchanges a digest
// of what must be equal everywhere (configuration, lowered schedule, model)
// and of the world size; a mismatch stops every rank with the same message,
// naming the first rank that differs.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstring>
#include <map>
#include <memory>
#include <span>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include <chimera/placement.hpp>
#include <chimera/runtime/executor.hpp>
#include <chimera/schedule.hpp>

#include "../common/shape.hpp"
#include "../common/trainer.hpp"
#include "../cpu/backend.hpp"
#include "control_plane.hpp"
#include "mpi_transport.hpp"
#include "sha256.hpp"
#include "shards.hpp"

namespace chimera::runtime::mpi {

// The lowered schedule as text (what every rank must agree on).
inline std::string schedule_text(const schedule& s) {
    std::string text = std::string(s.name()) + " D=" + std::to_string(s.stages()) + " N=" +
                       std::to_string(s.micro_batches()) + " k=" + std::to_string(s.pipelines()) + "\n";
    for (int w = 0; w < s.workers(); ++w) {
        for (const op& o : s.ops(w)) text += to_string(o) + " ";
        text += "\n";
    }
    return text;
}

// This rank's worker on the CPU backend, its comm groups on the mpi
// transport (collective over MPI_COMM_WORLD). What rank_trainer needs from a
// worker besides the backend: begin_step(step) / end_step() around each
// iteration.
template <class R>
class cpu_worker : public cpu::cpu_backend<R> {
public:
    using options = typename cpu::cpu_backend<R>::options;
    cpu_worker(const rank_context& c, const schedule& s, const run_shape& shape, const gpt::dataset& data, int group,
               int worker, const std::vector<R>& initial, const options& o = {})
        : cpu::cpu_backend<R>(s, shape, data, group, worker, initial, o), world_(s, c.map, c.waits.watchdog) {}
    void begin_step(int step) {
        progress_ = std::make_unique<cpu::hub<R>>(1, world_.watchdog());  // the backend reports progress to it
        this->begin(step, *progress_);
    }
    void end_step() {}
    link_costs measure_link(std::size_t bytes) const { return mpi::measure_link(world_.p2p(), bytes, world_.watchdog()); }
    void comm(std::span<const op> group) {
        channel<R> transport(world_);
        cpu::cpu_backend<R>::comm(group, transport);
    }

private:
    world world_;
    std::unique_ptr<cpu::hub<R>> progress_;
};

// One rank of a multi-process run: the trainer's interface (step, state,
// replica checks, peaks, checkpoints) over this rank's Worker (cpu_worker
// on the mpi transport, nccl::cuda_worker on NCCL) and the control plane.
template <class Worker>
class rank_trainer {
public:
    using value_type = typename Worker::value_type;
    using R = value_type;

    // Collective: every rank constructs it with the same arguments.
    rank_trainer(control_plane& control, schedule lowered, const run_shape& shape, const gpt::dataset& data,
                 const std::vector<R>& initial, rank_waits waits, rank_layout layout,
                 const typename Worker::options& options = {})
        : control_(control), s_(std::move(lowered)), shape_(with_micro_batches(shape, s_)),
          map_{checked(control, s_, shape_).workers(), shape_.data_parallel, layout},
          backend_(rank_context{control, map_, waits}, s_, shape_, data, logical_rank() / s_.workers(),
                   logical_rank() % s_.workers(), initial, options) {}

    const schedule& lowered() const { return s_; }
    const run_shape& shape() const { return shape_; }
    int ranks() const { return control_.size(); }
    bool root() const { return control_.rank() == 0; }
    int order_mismatches() const { return 0; }  // messages match by tag, i.e. by key

    // One iteration of this rank's worker; the loss (and the slowest
    // rank's time) is valid on rank 0. Throws comm_failure when a partner
    // never answers within the watchdog.
    step_result step(int step_index) {
        const auto start = std::chrono::steady_clock::now();
        backend_.begin_step(step_index);
        run_iteration(s_.ops(logical_rank() % s_.workers()), backend_.owned(), backend_);
        backend_.end_step();
        const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
        std::vector<double> mine{seconds};
        for (const auto& [id, loss] : backend_.losses()) mine.push_back(id), mine.push_back(loss);
        step_result result;
        std::vector<std::pair<int, double>> losses;
        for (const std::string& blob : control_.gather(bytes_of(mine))) {
            const auto values = values_of<double>(blob);
            result.seconds = std::max(result.seconds, values.at(0));
            for (std::size_t i = 1; i + 1 < values.size(); i += 2)
                losses.emplace_back(static_cast<int>(values[i]), values[i + 1]);
        }
        result.loss = mean_loss(losses, result.micro_batch_losses);
        return result;
    }

    // Whole-model state on every rank, each stage from its lowest logical
    // rank, as the local trainer reads it. Collective.
    train_state<R> state() const {
        std::string mine;
        for (int st = 0; st < s_.stages(); ++st)
            if (const auto [rank, r] = holder(st); rank == logical_rank()) {
                const train_state<R> part = backend_.state_of(r);
                for (const auto* v : {&part.params, &part.first_moment, &part.second_moment}) mine += bytes_of(*v);
            }
        const auto all = control_.gather(mine);
        train_state<R> out;
        std::vector<std::size_t> at(all.size(), 0);
        const auto layouts = gpt::partition(shape_.model, s_.stages());
        for (int st = 0; st < s_.stages() && root(); ++st) {
            const auto from = static_cast<std::size_t>(map_.global(holder(st).first));
            const std::size_t n = layouts[static_cast<std::size_t>(st)].size * sizeof(R);
            for (auto* v : {&out.params, &out.first_moment, &out.second_moment}) {
                const auto part = values_of<R>(all[from].substr(at[from], n));
                v->insert(v->end(), part.begin(), part.end());
                at[from] += n;
            }
        }
        for (auto* v : {&out.params, &out.first_moment, &out.second_moment})
            *v = values_of<R>(control_.broadcast(bytes_of(*v)));
        return out;
    }

    void load(const train_state<R>& whole) { backend_.load(whole); }

    // True when every replica of every stage holds the same parameter and
    // first-moment bits (the answer is rank 0's, sent to all). Collective.
    bool replicas_identical() const {
        std::string mine;
        for (const replica& r : backend_.owned()) {
            const train_state<R> part = backend_.state_of(r);
            auto digest = sha256()
                              .update_values(std::span<const R>(part.params))
                              .update_values(std::span<const R>(part.first_moment))
                              .digest();
            mine += bytes_of(std::vector<int>{r.stage});
            mine.append(reinterpret_cast<const char*>(digest.data()), digest.size());
        }
        std::map<int, std::string> first;
        int identical = 1;
        for (const std::string& blob : control_.gather(mine))
            for (std::size_t i = 0; i + 36 <= blob.size(); i += 36) {
                const int stage = values_of<int>(blob.substr(i, 4)).at(0);
                const auto [it, added] = first.emplace(stage, blob.substr(i + 4, 32));
                if (!added && it->second != blob.substr(i + 4, 32)) identical = 0;
            }
        return values_of<int>(control_.broadcast(bytes_of(std::vector<int>{identical}))).at(0) != 0;
    }

    // Peak stashed micro-batches per logical rank (rank 0's view). Collective.
    std::vector<int> measured_peaks() const {
        const auto all = control_.gather(bytes_of(std::vector<int>{backend_.peak_activations()}));
        std::vector<int> peaks;
        for (int logical = 0; logical < static_cast<int>(all.size()); ++logical)
            peaks.push_back(values_of<int>(all[static_cast<std::size_t>(map_.global(logical))]).at(0));
        return peaks;
    }
    // Op times and process CPU time summed over all ranks since
    // construction, as the local trainer's (workers that measure them: the
    // CPU backend). Collective.
    times_snapshot total_times() const
        requires requires(const Worker& w) { w.stage_times(); w.times(); }
    {
        std::vector<op_times> mine = backend_.stage_times();
        mine.push_back(backend_.times());  // last: the whole worker (its optimizer time)
        times_snapshot t;
        t.stages.assign(static_cast<std::size_t>(s_.stages()), {});
        for (const std::string& blob : control_.all_gather(bytes_of(mine))) {
            const auto rank_times = values_of<op_times>(blob);
            t.optimizer += rank_times.back().optimizer;
            for (std::size_t st = 0; st < t.stages.size(); ++st) {
                op_times x = rank_times[st];
                x.comm = x.optimizer = 0;
                t.stages[st] += x;
            }
        }
        for (const std::string& blob : control_.all_gather(bytes_of(std::vector<double>{process_cpu_seconds()})))
            t.process += values_of<double>(blob).at(0);
        return t;
    }

    // What a message between two ranks costs, measured now by a ping-pong
    // of the activation's size (mpi::measure_link). Collective.
    link_costs network() const
        requires requires(const Worker& w) { w.measure_link(std::size_t{}); }
    {
        return backend_.measure_link(shape_.activation_size() * sizeof(R));
    }

    std::vector<int> predicted_peaks() const { return predicted_peaks_per_rank(s_, ranks()); }

    // Checkpoints: one shard per rank (the stages it holds) and a manifest (shards.hpp).
    void save_shards(const std::string& directory, const gpt::gpt_config& model, std::uint64_t seed, int next_step) const {
        const std::vector<replica> owned = backend_.owned();
        shard<R> sh{control_.rank(), s_.stages(), stages_held(owned, model, s_.stages()), {model, next_step, seed, {}, {}, {}}};
        for (const shard_stage& h : sh.held) {
            const auto r = std::find_if(owned.begin(), owned.end(), [&](const replica& x) { return x.stage == h.stage; });
            const train_state<R> part = backend_.state_of(*r);
            if (part.params.size() != h.size) throw std::logic_error("stage " + std::to_string(h.stage) + ": size mismatch");
            sh.state.params.insert(sh.state.params.end(), part.params.begin(), part.params.end());
            sh.state.first_moment.insert(sh.state.first_moment.end(), part.first_moment.begin(), part.first_moment.end());
            sh.state.second_moment.insert(sh.state.second_moment.end(), part.second_moment.begin(), part.second_moment.end());
        }
        write_shard(control_, directory, sh);
    }
    // The step to continue at.
    int resume_shards(const std::string& directory, const gpt::gpt_config& model, std::uint64_t seed) {
        checkpoint<R> c = whole_model(read_shard<R>(control_, directory, model, seed, s_.stages(),
                                                    stages_held(backend_.owned(), model, s_.stages())));
        backend_.load({std::move(c.params), std::move(c.first_moment), std::move(c.second_moment)});
        return static_cast<int>(c.next_step);
    }
    // A fresh run (no --resume): the directory must hold no steps yet.
    void begin_checkpoints(const std::string& directory) { require_fresh_directory(control_, directory); }
    static std::string resumed_from(const std::string& directory, int next_step) {
        return step_directory(directory, next_step);
    }

private:
    static run_shape with_micro_batches(run_shape shape, const schedule& s) {
        shape.micro_batches = s.micro_batches();
        return shape;
    }
    int logical_rank() const { return map_.logical(control_.rank()); }
    // The world size must be D x W (every rank agrees, having passed the digest check).
    static const schedule& checked(const control_plane& control, const schedule& s, const run_shape& shape) {
        const int expected = s.workers() * shape.data_parallel;
        if (control.size() != expected)
            throw consistency_error(fmt::format("the world has {0} ranks; the schedule needs D x W = {1} x {2} = {3} "
                                                "(launch {3} ranks: mpirun -np {3}, srun -n {3})",
                                                control.size(), s.workers(), shape.data_parallel, expected));
        return s;
    }
    // The lowest logical rank holding `stage`, and its replica (pipeline order).
    std::pair<int, replica> holder(int stage) const {
        for (int w = 0; w < s_.workers(); ++w)
            for (const replica& r : replicas_on(s_, w))
                if (r.stage == stage) return {w, r};
        throw std::logic_error("no replica of stage " + std::to_string(stage));
    }

    control_plane& control_;
    schedule s_;
    run_shape shape_;
    rank_map map_;
    Worker backend_;
};

}  // namespace chimera::runtime::mpi
