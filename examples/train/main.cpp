// chimera-train: trains the GPT example with any schedule of the library
// (or the sequential reference) on the CPU backend (one thread per worker)
// or the CUDA backend (one stream per worker on one GPU). Both backends run
// the one trainer of examples/common and print the same report.
//
//   chimera-train --schedule chimera --stages 4 --micro-batches 8 --steps 60
//
// Exit codes: 0 ok, 1 training failed (deadlock, watchdog, broken schedule),
// 2 bad usage or unreadable / mismatched checkpoint.
#include <CLI/CLI.hpp>
#include <fmt/core.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <type_traits>
#include <unistd.h>
#include <vector>

#include <chimera/analysis.hpp>
#include <chimera/check.hpp>
#include <chimera/generate.hpp>
#include <chimera/io/json.hpp>
#include <chimera/io/text.hpp>
#include <chimera/lower.hpp>
#include <chimera/registry.hpp>

#include <common/checkpoint.hpp>
#include <cpu/trainer.hpp>
#include <distributed/rendezvous.hpp>
#include <distributed/sha256.hpp>
#if CHIMERA_HAVE_MPI
#include <distributed/mpi_control.hpp>
#include <distributed/rank_trainer.hpp>
#endif
// --transport nccl: on the emulated nccl.h (chimera-train-emulated), or the
// real one where Meson found libnccl (docs/distributed.md).
#if CHIMERA_HAVE_MPI && CHIMERA_HAVE_CUDA && (defined(CHIMERA_CUDA_EMULATION) || defined(CHIMERA_HAVE_REAL_NCCL))
#define CHIMERA_HAVE_NCCL 1
#else
#define CHIMERA_HAVE_NCCL 0
#endif
#if CHIMERA_HAVE_NCCL
#include <distributed/nccl_control.hpp>
#include <distributed/nccl_transport.hpp>
#endif
#if CHIMERA_HAVE_CUDA
#include <cuda/trainer.hpp>
#endif

namespace {

using namespace chimera;
using namespace chimera::runtime;

struct options {
    std::string schedule = "chimera";
    int stages = 4, micro_batches = 8, pipelines = 0, data_parallel = 1;
    int chunks = 2, group_size = 0;
    bool split_backward = false;
    std::string scaling = "direct", sync = "end";
    int steps = 150;
    std::string model = "tiny";
    std::uint64_t seed = 1;
    std::string checkpoint_dir;
    bool resume = false, json = false, fp64 = false, no_check = false;
    int batch = 4;
    double learning_rate = 3e-3, weight_decay = 0.0;
    int watchdog_ms = 10000;
    std::string schedule_file;
    int eval_batches = 8;
    std::string profile_out;  // --profile-out FILE (docs/planning.md#measured-inputs)
    std::string backend = "cpu";
    std::string precision = "fp32";
    std::string attention = "v1";  // cuda only: v1 or flash (head size 64)
    std::string transport = "local";  // local (threads) or mpi (one process per worker)
    std::string rank_layout = "group-major";
    std::string rendezvous = "mpi";  // mpi, or file:DIR (nccl without MPI)
    std::string run_tag;             // file: names the rendezvous file
    double rendezvous_timeout = 300;
};

struct usage_error : std::runtime_error {
    using std::runtime_error::runtime_error;
};

// Every schedule of the library's registry (names and aliases), plus the
// sequential reference.
std::vector<std::string> schedule_names() {
    std::vector<std::string> names;
    for (const schedule_entry* e : schedule_registry) {
        names.emplace_back(e->name);
        for (std::string_view alias : e->aliases) names.emplace_back(alias);
    }
    names.emplace_back("sequential");
    return names;
}

std::string schedule_help() {
    std::string text = "Schedule: ";
    for (const schedule_entry* e : schedule_registry) {
        text += std::string(e->name) + ", ";
        for (std::string_view alias : e->aliases) text += std::string(alias) + " (= " + std::string(e->name) + "), ";
    }
    return text + "or sequential (one worker, the whole model: the reference)";
}

config to_config(const options& o) {
    if (o.pipelines < 0) throw usage_error("--pipelines must be >= 1 (got " + std::to_string(o.pipelines) + ")");
    config c;
    c.schedule = *parse_algorithm(o.schedule);  // --schedule is checked against schedule_names()
    c.stages = o.stages;
    c.micro_batches = o.micro_batches;
    c.pipelines = o.pipelines;
    c.scaling_mode = *parse_scaling(o.scaling);
    c.data_parallel = o.data_parallel;
    c.chunks = o.chunks;
    c.group_size = o.group_size;
    c.split_backward = o.split_backward;
    if (auto error = validate(c)) throw usage_error("[" + std::string(error->rule) + "] " + error->message);
    return c;
}

std::string read_file(const std::string& path) {
    std::FILE* f = std::fopen(path.c_str(), "rb");
    if (!f) throw usage_error(path + ": cannot open");
    std::string text;
    char buffer[4096];
    for (std::size_t n; (n = std::fread(buffer, 1, sizeof buffer, f)) > 0;) text.append(buffer, n);
    std::fclose(f);
    return text;
}

// What a run trains with: the schedule (compute-only, for the grid, and
// lowered), the shape, and the global batch.
struct run_plan {
    bool sequential = false;
    schedule compute, lowered;
    run_shape shape;
    double tokens_per_step = 0;
};

// The schedule to run, lowered; for --schedule-file the file's own ops
// (lowered if it holds compute ops only). Sequential: one worker, the whole
// global batch of W*N micro-batches accumulated in id order.
template <class Trainer>
schedule make_lowered(const options& o, schedule& compute) {
    if (o.schedule == "sequential") return Trainer::sequential_schedule(o.micro_batches * o.data_parallel);
    const lower_options lowering{.sync = *parse_sync_policy(o.sync)};
    if (!o.schedule_file.empty()) {
        schedule s = io::read_json(read_file(o.schedule_file));
        compute = is_lowered(s) ? compute_only(s) : s;
        return is_lowered(s) ? s : lower(s, lowering);
    }
    compute = generate(to_config(o));
    return lower(compute, lowering);
}

// Every checker diagnostic; fatal unless --no-check (then a warning).
void check_schedule(const options& o, const schedule& lowered) {
    const auto report = check(lowered);
    if (report.ok()) return;
    std::string text = "the lowered schedule is invalid:";
    for (const auto& d : report.diagnostics) text += "\n  [" + std::string(d.rule) + "] " + d.message;
    if (!o.no_check) throw std::runtime_error(text);
    fmt::print(stderr, "chimera-train: warning (--no-check, running it anyway): {}\n", text);
}

template <class Trainer>
run_plan plan(const options& o, const gpt::dataset& data) {
    run_plan p;
    p.sequential = o.schedule == "sequential";
    p.shape.model = o.model == "small"  ? gpt::small_model(data.vocab())
                    : o.model == "wide" ? gpt::wide_model(data.vocab())
                                        : gpt::tiny_model(data.vocab());
    p.shape.batch = o.batch;
    p.shape.seq = p.shape.model.max_seq;
    p.shape.data_parallel = p.sequential ? 1 : o.data_parallel;
    p.shape.data_seed = o.seed;
    p.shape.adam.learning_rate = o.learning_rate;
    p.shape.adam.weight_decay = o.weight_decay;
    p.lowered = make_lowered<Trainer>(o, p.compute);
    if (!p.sequential) check_schedule(o, p.lowered);
    if (p.lowered.stages() > p.shape.model.layers)
        throw usage_error("the model has " + std::to_string(p.shape.model.layers) + " layers; " +
                          std::to_string(p.lowered.stages()) + " stages need L >= stages");
    p.shape.micro_batches = p.lowered.micro_batches();
    p.tokens_per_step =
        static_cast<double>(p.lowered.micro_batches()) * p.shape.data_parallel * p.shape.batch * p.shape.seq;
    return p;
}

// The checkpoint's step to continue from (0 without --resume); the
// checkpoint holds the whole model in fp32 or fp64, whatever the backend.
// A fresh run with sharded checkpoints needs a directory without steps.
template <class Trainer>
int resume(const options& o, const run_plan& p, Trainer& t) {
    if (!o.resume) {
        if constexpr (requires { t.begin_checkpoints(o.checkpoint_dir); })
            if (!o.checkpoint_dir.empty()) t.begin_checkpoints(o.checkpoint_dir);
        return 0;
    }
    if (o.checkpoint_dir.empty()) throw usage_error("--resume needs --checkpoint DIR");
    if constexpr (requires { t.resume_shards(o.checkpoint_dir, p.shape.model, o.seed); })
        return t.resume_shards(o.checkpoint_dir, p.shape.model, o.seed);
    using R = typename Trainer::value_type;
    auto c = load_checkpoint<R>(o.checkpoint_dir, p.shape.model, o.seed);
    t.load({std::move(c.params), std::move(c.first_moment), std::move(c.second_moment)});
    return static_cast<int>(c.next_step);
}

std::string backend_line(const options& o, int ranks) {
#if CHIMERA_HAVE_CUDA
    if (o.backend == "cuda") {
        cudaDeviceProp device{};
        gpu::check(cudaGetDeviceProperties(&device, 0), "cudaGetDeviceProperties");
        return fmt::format("cuda ({} matmuls, attention {}), {} virtual workers on {}", o.precision, o.attention,
                           ranks, device.name);
    }
#endif
    return fmt::format("cpu ({}), {} worker threads", o.fp64 ? "fp64" : "fp32", ranks);
}

// The checkpoint a run resumed from: the whole-model file, or the step's
// directory of shards.
template <class Trainer>
std::string resumed_from(const options& o, int first_step) {
    if constexpr (requires { Trainer::resumed_from(o.checkpoint_dir, first_step); })
        return Trainer::resumed_from(o.checkpoint_dir, first_step);
    else
        return checkpoint_path(o.checkpoint_dir);
}

template <class Trainer>
void print_header(const options& o, const run_plan& p, const Trainer& t, int first_step) {
    const run_shape& shape = p.shape;
    fmt::print("backend: {}\n", backend_line(o, t.ranks()));
    fmt::print("model: GPT, V={} (padded {}), T={}, C={}, L={}, NH={}, {} parameters, {}-bit\n", shape.model.vocab,
               shape.model.padded_vocab, shape.model.max_seq, shape.model.channels, shape.model.layers,
               shape.model.heads, gpt::parameter_count(shape.model), sizeof(typename Trainer::value_type) * 8);
    fmt::print("data: synthetic language, {} micro-batches x {} rows x {} tokens = {} tokens per step\n",
               p.lowered.micro_batches() * shape.data_parallel, shape.batch, shape.seq,
               static_cast<long>(p.tokens_per_step));
    if (p.sequential) {
        fmt::print("schedule: sequential (one worker, whole model, gradient accumulation)\n");
    } else {
        std::string cut;
        for (const auto& l : gpt::partition(shape.model, p.lowered.stages()))
            cut += fmt::format(" s{}:{}{}{}", l.stage, l.embedding ? "emb+" : "", l.last_block - l.first_block,
                               l.head ? "+head" : "");
        fmt::print("stage cut (blocks per stage):{}\n", cut);
        fmt::print("{}", io::write_text(p.compute, {.color = isatty(STDOUT_FILENO) != 0}));
        fmt::print("lowered: {} ops ({} sync), {} workers ({} per group x W={})\n", p.lowered.op_count(), o.sync,
                   t.ranks(), p.lowered.workers(), shape.data_parallel);
    }
    if (first_step > 0) fmt::print("resumed from {} at step {}\n", resumed_from<Trainer>(o, first_step), first_step);
}

struct loop_result {
    int steps = 0;
    double first_loss = 0, last_loss = 0, seconds = 0;
    std::vector<double> step_seconds;
    // Op times after the first and after the last step (trainers that measure them).
    std::optional<times_snapshot> after_first, after_last;
};

// A checkpoint after a step: the whole model in one file, or one shard
// per rank and a manifest (trainers that save shards: --transport mpi).
template <class Trainer>
void save(const options& o, const run_plan& p, const Trainer& t, int next_step) {
    using R = typename Trainer::value_type;
    if constexpr (requires { t.save_shards(o.checkpoint_dir, p.shape.model, o.seed, next_step); }) {
        t.save_shards(o.checkpoint_dir, p.shape.model, o.seed, next_step);
    } else {
        const train_state<R> state = t.state();
        save_checkpoint<R>(o.checkpoint_dir,
                           {p.shape.model, next_step, o.seed, state.params, state.first_moment, state.second_moment});
    }
}

template <class Trainer>
loop_result run_steps(const options& o, const run_plan& p, Trainer& t, int first_step) {
    loop_result out;
    for (int step = first_step; step < o.steps; ++step) {
        const step_result r = t.step(step);
        if (step == first_step) out.first_loss = r.loss;
        if constexpr (requires { t.total_times(); })  // the prediction leaves out the first step's warm-up
            if (step == first_step && step + 1 < o.steps) out.after_first = t.total_times();
        out.last_loss = r.loss;
        out.seconds += r.seconds;
        out.step_seconds.push_back(r.seconds);
        ++out.steps;
        const double tokens_per_second = p.tokens_per_step / r.seconds;
        if (o.json)
            fmt::print("{}\n", nlohmann::json{{"step", step},
                                              {"loss", r.loss},
                                              {"tokens_per_s", tokens_per_second},
                                              {"seconds", r.seconds}}
                                   .dump());
        else
            fmt::print("step {:4d}  loss {:.6f}  {:8.0f} tokens/s  ({:.3f} s)\n", step, r.loss, tokens_per_second,
                       r.seconds);
        std::fflush(stdout);
        if (!o.checkpoint_dir.empty()) save(o, p, t, step + 1);
    }
    if constexpr (requires { t.total_times(); }) out.after_last = t.total_times();
    return out;
}

// Per-op costs measured on this run after its first step, and the link's
// message costs (measured between ranks; free in-process), fed to the
// simulator; to be compared with median_step_seconds (backends that
// measure op times; null for the others, whose calls only enqueue work).
template <class Trainer>
void add_prediction(nlohmann::json& summary, const Trainer& t, const loop_result& r) {
    for (const char* key : {"op_seconds", "predicted_step_seconds", "predicted_step_seconds_core_bound", "p2p",
                            "cpu_seconds_per_step"})
        summary[key] = nullptr;
    const unsigned cores = std::max(1u, std::thread::hardware_concurrency());
    summary["cores"] = cores;
    if constexpr (requires { t.total_times(); }) {
        link_costs link;
        std::string source = "in-process copies (free)";
        if constexpr (requires { t.network(); }) {
            link = t.network();
            source = t.ranks() > 1 ? "measured (ping-pong between ranks)" : "no partner rank (free)";
        }
        const int steps = r.after_first ? r.steps - 1 : r.steps;
        const cpu::step_prediction prediction =
            cpu::predict_step(t, r.after_first.value_or(times_snapshot{}), *r.after_last, steps, cores, link);
        summary["op_seconds"] = {{"forward", prediction.forward}, {"backward", prediction.backward}};
        summary["predicted_step_seconds"] = prediction.makespan;
        summary["predicted_step_seconds_core_bound"] = prediction.core_bound;
        summary["p2p"] = {{"alpha_seconds", link.alpha}, {"beta_seconds_per_byte", link.beta}, {"source", source}};
        if (prediction.cpu_process >= 0)
            summary["cpu_seconds_per_step"] = {{"ops", prediction.cpu_ops},
                                               {"outside_ops", prediction.cpu_process - prediction.cpu_ops}};
    }
}

// The median step time, leaving out the first step (its warm-up) when
// there are more.
double median_step(std::vector<double> seconds) {
    if (seconds.size() > 1) seconds.erase(seconds.begin());
    if (seconds.empty()) return 0;
    std::sort(seconds.begin(), seconds.end());
    const std::size_t n = seconds.size();
    return n % 2 ? seconds[n / 2] : (seconds[n / 2 - 1] + seconds[n / 2]) / 2;
}

template <class Trainer>
nlohmann::json summarize(const options& o, const run_plan& p, const Trainer& t, const loop_result& r,
                         const gpt::dataset& data) {
    using R = typename Trainer::value_type;
    const train_state<R> final_state = t.state();
    nlohmann::json s{
        {"schedule", p.sequential ? "sequential" : std::string(p.lowered.name())},
        {"backend", o.backend},
        {"precision", o.fp64 ? "fp64" : o.precision},
        {"attention", o.attention},
        {"steps", r.steps},
        {"first_loss", r.first_loss},
        {"last_loss", r.last_loss},
        {"held_out_loss", cpu::held_out_loss<R>(p.shape, data, final_state.params, o.eval_batches)},
        {"tokens_per_s", r.steps > 0 ? p.tokens_per_step * r.steps / r.seconds : 0.0},
        {"mean_step_seconds", r.steps > 0 ? r.seconds / r.steps : 0.0},
        {"median_step_seconds", median_step(r.step_seconds)},
        {"peak_activations_measured", t.measured_peaks()},
        {"peak_activations_predicted", t.predicted_peaks()},
        {"replicas_identical", t.replicas_identical()},
        {"issue_order_mismatches", t.order_mismatches()},
        {"transport", o.transport},
        {"ranks", t.ranks()},
        {"params_sha256", sha256_hex(final_state.params)}};
    add_prediction(s, t, r);
    return s;
}

void print_report(const nlohmann::json& s) {
    fmt::print("held-out loss: {:.6f} (training loss {:.6f} -> {:.6f})\n", s["held_out_loss"].get<double>(),
               s["first_loss"].get<double>(), s["last_loss"].get<double>());
    fmt::print("peak activations per worker (micro-batches stashed), measured vs predicted:\n");
    const auto measured = s["peak_activations_measured"].get<std::vector<int>>();
    const auto predicted = s["peak_activations_predicted"].get<std::vector<int>>();
    for (std::size_t r = 0; r < measured.size(); ++r)
        fmt::print("  worker {:2d}: {} vs {}{}\n", r, measured[r], predicted[r],
                   measured[r] == predicted[r] ? "" : "  MISMATCH");
    fmt::print("replicas bit-identical: {}\n", s["replicas_identical"].get<bool>() ? "yes" : "NO");
    const double measured_step = s["median_step_seconds"].get<double>();
    if (s["op_seconds"].is_null()) {
        fmt::print("median step time {:.3f} s (op times not measured: this backend's calls only enqueue work)\n",
                   measured_step);
        return;
    }
    const auto& link = s["p2p"];
    fmt::print("mean op time: F {:.2f} ms, B {:.2f} ms; messages: {:.1f} us + {:.3f} ns/byte, {}\n",
               s["op_seconds"]["forward"].get<double>() * 1e3, s["op_seconds"]["backward"].get<double>() * 1e3,
               link["alpha_seconds"].get<double>() * 1e6, link["beta_seconds_per_byte"].get<double>() * 1e9,
               link["source"].get<std::string>());
    fmt::print("median step time measured {:.3f} s, simulated {:.3f} s (simulator, one core per worker), "
               "{:.3f} s ({} cores)\n",
               measured_step, s["predicted_step_seconds"].get<double>(),
               s["predicted_step_seconds_core_bound"].get<double>(), s["cores"].get<unsigned>());
    if (const auto& cpu = s["cpu_seconds_per_step"]; !cpu.is_null())
        fmt::print("CPU per step, all workers: {:.1f} ms in ops, {:.1f} ms outside them (not in the simulation)\n",
                   cpu["ops"].get<double>() * 1e3, cpu["outside_ops"].get<double>() * 1e3);
}

// --profile-out: mean seconds per op of every stage over the run (CPU time:
// examples/cpu/backend.hpp), the layers each stage held, and the optimizer
// seconds per parameter, for chimera-sched tune --profile. Rank 0 writes it.
template <class Trainer>
void write_profile(const options& o, const run_plan& p, const Trainer& t, int steps) {
    if (o.profile_out.empty()) return;
    if constexpr (requires { t.total_times(); }) {
        const auto times = t.total_times();
        if constexpr (requires { t.root(); })
            if (!t.root()) return;
        const auto layouts = gpt::partition(p.shape.model, p.lowered.stages());
        const auto mean = [](double total, int count) { return count > 0 ? total / count : 0.0; };
        nlohmann::json stages = nlohmann::json::array();
        double replica_parameters = 0;  // every replica of every stage, all data-parallel groups
        for (std::size_t s = 0; s < times.stages.size(); ++s) {
            const auto& x = times.stages[s];
            stages.push_back({{"layers", layouts[s].last_block - layouts[s].first_block},
                              {"forward", mean(x.forward, x.forwards)},
                              {"backward", mean(x.backward, x.backwards)},
                              {"input_backward", mean(x.input_backward, x.input_backwards)},
                              {"weight_backward", mean(x.weight_backward, x.weight_backwards)}});
            replica_parameters += static_cast<double>(layouts[s].size) * p.lowered.pipelines() * p.shape.data_parallel;
        }
        nlohmann::json doc{{"format", "chimera-profile"}, {"model", o.model}, {"micro_batch_size", o.batch},
                           {"stages", stages}};
        if (steps > 0) doc["optimizer_seconds_per_parameter"] = times.optimizer / steps / replica_parameters;
        std::ofstream out(o.profile_out);
        out << doc.dump(1) << "\n";
        if (!out) throw usage_error("cannot write --profile-out " + o.profile_out);
    } else {
        throw usage_error("--profile-out needs a backend that times its ops (--backend cpu)");
    }
}

// Resume, the steps, the report: the same for every trainer.
// A resume at or past --steps has nothing to train: it says so and
// succeeds (a requeued job that already finished), without a summary.
template <class Trainer>
int train_with(const options& o, const run_plan& p, const gpt::dataset& data, Trainer& t) {
    const int first_step = resume(o, p, t);
    if (first_step > 0 && first_step >= o.steps) {
        const std::string where = resumed_from<Trainer>(o, first_step);
        if (o.json)
            fmt::print("{}\n", nlohmann::json{{"nothing_to_train",
                                               {{"checkpoint", where}, {"next_step", first_step}, {"steps", o.steps}}}}
                                   .dump());
        else
            fmt::print("nothing to train: {} continues at step {}, and --steps is {} (raise --steps to train on)\n",
                       where, first_step, o.steps);
        return 0;
    }
    if (!o.json) print_header(o, p, t, first_step);
    const loop_result r = run_steps(o, p, t, first_step);
    const nlohmann::json summary = summarize(o, p, t, r, data);
    if (!p.sequential) write_profile(o, p, t, r.steps);
    if (o.json) fmt::print("{}\n", nlohmann::json{{"summary", summary}}.dump());
    else print_report(summary);
    return 0;
}

#if CHIMERA_HAVE_MPI
// The run's control plane: MPI (MPI_Init here), or with --rendezvous
// file:DIR NCCL after the shared-file rendezvous (no MPI in this process).
std::unique_ptr<control_plane> make_control([[maybe_unused]] const options& o) {
#if CHIMERA_HAVE_NCCL
    if (o.rendezvous != "mpi")
        return nccl::join_by_file(o.rendezvous.substr(5), o.run_tag,
                                  std::chrono::duration<double>(o.rendezvous_timeout));
#endif
    return std::make_unique<mpi::control>(std::chrono::duration<double>(o.rendezvous_timeout));
}

// What every rank must agree on, by name: each option that shapes the
// run or decides which collectives it calls (a rank with another
// --data-parallel, --checkpoint or --resume would otherwise wait in a
// collective the others never call), the lowered schedule (so a
// --schedule-file is compared by content, not path), the initial model.
template <class R>
std::vector<std::pair<std::string, std::string>> digest_parts(const options& o, const run_plan& p,
                                                              const std::vector<R>& initial) {
    std::vector<std::pair<std::string, std::string>> parts;
    const auto option = [&](const char* name, const auto& value) {
        parts.emplace_back(fmt::format("configuration ({})", name), fmt::format("{}", value));
    };
    option("--schedule", o.schedule), option("--stages", o.stages), option("--micro-batches", o.micro_batches);
    option("--pipelines", o.pipelines), option("--scaling", o.scaling), option("--chunks", o.chunks);
    option("--group-size", o.group_size), option("--split-backward", o.split_backward), option("--sync", o.sync);
    option("--data-parallel", o.data_parallel), option("--rank-layout", o.rank_layout), option("--model", o.model);
    option("--batch", o.batch), option("--lr", o.learning_rate), option("--weight-decay", o.weight_decay);
    option("--steps", o.steps), option("--backend", o.backend), option("--precision", o.precision);
    option("--attention", o.attention), option("--transport", o.transport);
    option("--rendezvous", o.rendezvous.substr(0, o.rendezvous.find(':')));  // DIR may be mounted elsewhere
    option("--checkpoint", o.checkpoint_dir.empty() ? "none" : "set");  // DIR may be mounted elsewhere
    option("--resume", o.resume);
    option("--profile-out", o.profile_out.empty() ? "none" : "set");  // rank 0 writes it
    parts.emplace_back("lowered schedule", mpi::schedule_text(p.lowered));
    parts.emplace_back("model", fmt::format("{} {} {}", o.seed, sizeof(R), sha256_hex(initial)));
    return parts;
}
#endif

// --transport mpi|nccl: this process is one rank of D x W
// (docs/distributed.md); the same loop and report as the local run, printed
// by rank 0. Worker: mpi::cpu_worker or nccl::cuda_worker.
template <class Worker, class Options>
int train_distributed(const options& o, const run_plan& p, const gpt::dataset& data, const Options& worker_options) {
#if CHIMERA_HAVE_MPI
    using R = typename Worker::value_type;
    if (p.sequential) throw usage_error("--transport " + o.transport + " runs a pipeline schedule (not sequential)");
    const std::unique_ptr<control_plane> control = make_control(o);
    return run_rank(*control, [&] {
        const auto initial = gpt::initial_parameters<R>(p.shape.model, o.seed);
        require_same_everywhere(*control, digest_parts<R>(o, p, initial));
        const auto layout = o.rank_layout == "stage-major" ? rank_layout::stage_major : rank_layout::group_major;
        mpi::rank_trainer<Worker> t(*control, p.lowered, p.shape, data, initial,
                                    rank_waits{std::chrono::milliseconds(o.watchdog_ms),
                                               std::chrono::duration<double>(o.rendezvous_timeout)},
                                    layout, worker_options);
        return train_with(o, p, data, t);
    });
#else
    (void)p, (void)data, (void)worker_options;
    throw usage_error("--transport " + o.transport + ": this chimera-train was configured without MPI (-Dmpi)");
#endif
}

// The one training run, for every backend.
template <class Backend>
int train(const options& o, const typename Backend::options& backend_options = {}) {
    using Trainer = runtime::trainer<Backend>;
    using R = typename Backend::value_type;
    const gpt::dataset data(65536, 1);
    const run_plan p = plan<Trainer>(o, data);
#if CHIMERA_HAVE_MPI
    if constexpr (std::is_same_v<Backend, cpu::cpu_backend<R>>)
        if (o.transport == "mpi") return train_distributed<mpi::cpu_worker<R>>(o, p, data, backend_options);
#endif
#if CHIMERA_HAVE_NCCL
    if constexpr (std::is_same_v<Backend, gpu::cuda_backend>)
        if (o.transport == "nccl") return train_distributed<nccl::cuda_worker>(o, p, data, backend_options);
#endif
    if (o.transport != "local")
        throw usage_error("--transport " + o.transport + ": this chimera-train was built without it (mpi: needs an "
                          "MPI; nccl: CUDA, MPI and libnccl, or the emulated build)");
    Trainer t(p.lowered, p.shape, data, gpt::initial_parameters<R>(p.shape.model, o.seed),
              std::chrono::milliseconds(o.watchdog_ms), backend_options);
    return train_with(o, p, data, t);
}

// --backend cuda: one GPU, one virtual worker (stream) per rank; fp32
// kernels, or bf16 tensor-core matmuls with fp32 master weights.
int train_on_cuda(const options& o) {
#if CHIMERA_HAVE_CUDA
    if (o.fp64) throw usage_error("--backend cuda runs fp32, or bf16 matmuls with --precision bf16 (drop --fp64)");
    std::string reason;
    if (!gpu::device_available(reason)) throw std::runtime_error("--backend cuda: " + reason);
    gpu::gpu_stage_options stage_options;
    if (o.attention == "flash") {
        const gpt::gpt_config m = o.model == "small"  ? gpt::small_model(1)
                                  : o.model == "wide" ? gpt::wide_model(1)
                                                      : gpt::tiny_model(1);
        if (m.channels != 64 * m.heads)
            throw usage_error("--attention flash needs head size 64; --model " + o.model + " has C/NH = " +
                              std::to_string(m.channels) + "/" + std::to_string(m.heads) + " (try --model wide)");
        stage_options.attention = gpt::attention_kind::flash;
    }
    if (o.precision == "bf16") stage_options.arithmetic = gpu::precision::bf16;
    return train<gpu::cuda_backend>(o, stage_options);
#else
    (void)o;
    throw usage_error("--backend cuda: this chimera-train was configured without CUDA (no nvcc, or -Dcuda=disabled)");
#endif
}

void add_options(CLI::App& app, options& o) {
    app.add_option("--schedule", o.schedule, schedule_help())
        ->check(CLI::IsMember(schedule_names()))
        ->capture_default_str();
    app.add_option("--stages", o.stages, "Pipeline depth D (workers per pipeline)")->capture_default_str();
    app.add_option("--micro-batches", o.micro_batches, "Micro-batches N per iteration")->capture_default_str();
    app.add_option("--pipelines", o.pipelines, "Chimera: pipelines k = 2f (default 2)");
    app.add_option("--scaling", o.scaling, "Chimera for N > D: direct, doubling or halving")
        ->check(CLI::IsMember({"direct", "doubling", "halving"}))
        ->capture_default_str();
    app.add_option("--chunks", o.chunks, "Interleaved, looped-bfs: model chunks v per worker")->capture_default_str();
    app.add_option("--group-size", o.group_size, "Interleaved: micro-batches per group g (default: derived)");
    app.add_flag("--split-backward", o.split_backward, "Chimera: split each backward into I and W (zero-bubble Chimera)");
    app.add_option("--data-parallel", o.data_parallel, "Data-parallel width W")->capture_default_str();
    app.add_option("--sync", o.sync, "Gradient sync placement: end, eager or eager-opt")
        ->check(CLI::IsMember({"end", "eager", "eager-opt"}))
        ->capture_default_str();
    app.add_option("--steps", o.steps, "Iterations to run (resume: up to this step)")->capture_default_str();
    app.add_option("--model", o.model, "tiny, small or wide (C=128, NH=2: head size 64)")
        ->check(CLI::IsMember({"tiny", "small", "wide"}))
        ->capture_default_str();
    app.add_option("--batch", o.batch, "Rows (sequences) per micro-batch")->capture_default_str();
    app.add_option("--lr", o.learning_rate, "AdamW learning rate")->capture_default_str();
    app.add_option("--weight-decay", o.weight_decay, "AdamW weight decay (matrices only)")->capture_default_str();
    app.add_option("--seed", o.seed, "Seed of the initial weights and of the data order")->capture_default_str();
    app.add_option("--checkpoint", o.checkpoint_dir, "Directory: save a checkpoint after every step");
    app.add_flag("--resume", o.resume, "Continue from the checkpoint in --checkpoint DIR");
    app.add_flag("--json", o.json, "One JSON object per step and a final summary object");
    app.add_option("--backend", o.backend, "cpu (threads, fp32/fp64) or cuda (virtual workers on one GPU, fp32)")
        ->check(CLI::IsMember({"cpu", "cuda"}))
        ->capture_default_str();
    app.add_flag("--fp64", o.fp64, "Run the fp64 twin kernels instead of fp32");
    app.add_option("--precision", o.precision,
                   "cuda: fp32, or bf16 (matmuls on bf16 tensor cores; fp32 master weights, gradients, moments)")
        ->check(CLI::IsMember({"fp32", "bf16"}))
        ->capture_default_str();
    app.add_option("--attention", o.attention, "cuda: v1 (unfused) or flash (head size 64, e.g. --model wide)")
        ->check(CLI::IsMember({"v1", "flash"}))
        ->capture_default_str();
    app.add_option("--transport", o.transport,
                   "local (one thread per worker), mpi (--backend cpu) or nccl (--backend cuda): one process per "
                   "worker, mpirun -np D*W chimera-train ...")
        ->check(CLI::IsMember({"local", "mpi", "nccl"}))
        ->capture_default_str();
    app.add_option("--rendezvous", o.rendezvous,
                   "nccl: how ranks find each other: mpi (started by an MPI launcher), or file:DIR (no MPI: a shared "
                   "directory; rank and size from the launcher's environment, e.g. srun)")
        ->capture_default_str();
    app.add_option("--run-tag", o.run_tag,
                   "file: names the rendezvous file; unique per run (default with Slurm: $SLURM_JOB_ID.$SLURM_STEP_ID)");
    app.add_option("--rendezvous-timeout", o.rendezvous_timeout,
                   "Seconds a rank waits for the others: rank 0's rendezvous file (file:), creating the nccl "
                   "communicators, each control-plane collective")
        ->capture_default_str();
    app.add_option("--rank-layout", o.rank_layout,
                   "mpi, nccl: the rank of (group g, worker w): group-major g*D+w, or stage-major w*W+g")
        ->check(CLI::IsMember({"group-major", "stage-major"}))
        ->capture_default_str();
    app.add_option("--schedule-file", o.schedule_file,
                   "Run a schedule from a chimera.schedule/1 JSON file (compute-only or lowered) instead");
    app.add_flag("--no-check", o.no_check,
                 "Run a schedule even if the checker rejects it (the runtime then reports the deadlock)");
    app.add_option("--profile-out", o.profile_out,
                   "Write per-stage op times of this run (JSON, for chimera-sched tune --profile)");
    app.add_option("--watchdog-ms", o.watchdog_ms, "Stop and report when no worker progresses for this long")
        ->capture_default_str();
}

// --rendezvous mpi | file:DIR, and with file: a run tag and a timeout.
void check_rendezvous(options& o) {
    if (!(o.rendezvous_timeout > 0))
        throw usage_error("--rendezvous-timeout must be > 0 seconds (got " + std::to_string(o.rendezvous_timeout) +
                          ")");
    if (o.rendezvous == "mpi") return;
    if (o.rendezvous.rfind("file:", 0) != 0 || o.rendezvous.size() == 5)
        throw usage_error("--rendezvous '" + o.rendezvous + "': mpi, or file:DIR (a directory every rank sees)");
    if (o.transport != "nccl")
        throw usage_error("--rendezvous file: runs the nccl transport only (--transport nccl --backend cuda; the mpi "
                          "transport needs an MPI launcher)");
    if (o.run_tag.empty()) o.run_tag = rendezvous::default_run_tag();
    if (o.run_tag.empty())
        throw usage_error("--rendezvous file: needs --run-tag TAG, unique per run (Slurm sets the default "
                          "$SLURM_JOB_ID.$SLURM_STEP_ID)");
    rendezvous::check_tag(o.run_tag);
}

int run(options o) {
    if (o.steps < 0 || o.batch < 1 || o.watchdog_ms < 1)
        throw usage_error("--steps >= 0, --batch >= 1, --watchdog-ms >= 1 (got " + std::to_string(o.steps) + ", " +
                          std::to_string(o.batch) + ", " + std::to_string(o.watchdog_ms) + ")");
    if (o.precision == "bf16" && o.backend != "cuda")
        throw usage_error("--precision bf16 needs --backend cuda (the CPU backend runs fp32 or --fp64)");
    if (o.attention != "v1" && o.backend != "cuda")
        throw usage_error("--attention " + o.attention + " needs --backend cuda (the CPU backend runs v1)");
    if ((o.transport == "mpi" && o.backend != "cpu") || (o.transport == "nccl" && o.backend != "cuda"))
        throw usage_error("--transport " + o.transport + " runs the " + (o.transport == "mpi" ? "cpu" : "cuda") +
                          " backend (--backend " + (o.transport == "mpi" ? "cpu" : "cuda") + ")");
    check_rendezvous(o);
    if (o.backend == "cuda") return train_on_cuda(o);
    return o.fp64 ? train<cpu::cpu_backend<double>>(o) : train<cpu::cpu_backend<float>>(o);
}

}  // namespace

int main(int argc, char** argv) {
    CLI::App app{"chimera-train: train a small GPT with a pipeline schedule on the CPU or CUDA backend"};
    options o;
    add_options(app, o);
    try {
        app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
        const int rc = app.exit(e);
        return rc == 0 ? 0 : 2;
    }
    try {
        return run(o);
    } catch (const usage_error& e) {
        fmt::print(stderr, "chimera-train: {}\n", e.what());
        return 2;
    } catch (const rendezvous::config_error& e) {
        fmt::print(stderr, "chimera-train: {}\n", e.what());
        return 2;
    } catch (const checkpoint_error& e) {
        fmt::print(stderr, "chimera-train: {}\n", e.what());
        return 2;
    } catch (const io::format_error& e) {
        fmt::print(stderr, "chimera-train: {}\n", e.what());
        return 2;
    } catch (const schedule_error& e) {
        fmt::print(stderr, "chimera-train: [{}] {}\n", e.rule(), e.what());
        return 1;
    } catch (const std::exception& e) {
        fmt::print(stderr, "chimera-train: {}\n", e.what());
        return 1;
    }
}
