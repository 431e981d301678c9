// chimera-train: trains the GPT example with any schedule on the CPU
// backend (one thread per worker) or with the sequential reference.
//
//   chimera-train --schedule chimera --stages 4 --micro-batches 8 --steps 60
//
// Exit codes: 0 ok, 1 training failed (deadlock, watchdog, broken schedule),
// 2 bad usage or unreadable / mismatched checkpoint.
#include <CLI/CLI.hpp>
#include <fmt/core.h>

#include <chrono>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <unistd.h>
#include <vector>

#include <chimera/analysis.hpp>
#include <chimera/check.hpp>
#include <chimera/generate.hpp>
#include <chimera/io/json.hpp>
#include <chimera/io/text.hpp>
#include <chimera/lower.hpp>

#include <common/checkpoint.hpp>
#include <cpu/trainer.hpp>
#include <distributed/sha256.hpp>
#if CHIMERA_HAVE_MPI
#include <distributed/train_mpi.hpp>
#endif
#if CHIMERA_HAVE_CUDA
#include <cuda/trainer.hpp>
#endif

namespace {

using namespace chimera;
using namespace chimera::runtime;
using namespace chimera::runtime::cpu;

struct options {
    std::string schedule = "chimera";
    int stages = 4, micro_batches = 8, pipelines = 0, data_parallel = 1;
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
    std::string backend = "cpu";
    std::string precision = "fp32";
    std::string attention = "v1";  // cuda only: v1 or flash (head size 64)
    std::string transport = "local";  // local (threads) or mpi (one process per worker)
    std::string rank_layout = "group-major";
};

struct usage_error : std::runtime_error {
    using std::runtime_error::runtime_error;
};

config to_config(const options& o) {
    config c;
    c.schedule = *parse_algorithm(o.schedule);
    c.stages = o.stages;
    c.micro_batches = o.micro_batches;
    c.pipelines = o.pipelines;
    c.scaling_mode = *parse_scaling(o.scaling);
    c.data_parallel = o.data_parallel;
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

// The schedule to run, lowered; for --schedule-file the file's own ops
// (lowered if it holds compute ops only), checked unless told otherwise.
schedule make_lowered(const options& o, schedule& compute) {
    const lower_options lowering{.sync = *parse_sync_policy(o.sync)};
    if (!o.schedule_file.empty()) {
        schedule s = io::read_json(read_file(o.schedule_file));
        if (is_lowered(s)) {
            compute = compute_only(s);
            return s;
        }
        compute = s;
        return lower(s, lowering);
    }
    compute = generate(to_config(o));
    return lower(compute, lowering);
}

// The model, batch and optimizer settings both backends train with.
run_shape shape_of(const options& o, const gpt::dataset& data) {
    run_shape shape;
    shape.model = o.model == "small"  ? gpt::small_model(data.vocab())
                  : o.model == "wide" ? gpt::wide_model(data.vocab())
                                      : gpt::tiny_model(data.vocab());
    shape.batch = o.batch;
    shape.seq = shape.model.max_seq;
    shape.data_parallel = o.data_parallel;
    shape.data_seed = o.seed;
    shape.adam.learning_rate = o.learning_rate;
    shape.adam.weight_decay = o.weight_decay;
    return shape;
}

// --transport mpi: this process is one rank of D x W (docs/distributed.md).
template <class R>
int train_mpi(const options& o, const schedule& lowered, const run_shape& shape, const gpt::dataset& data,
              std::vector<R> params) {
#if CHIMERA_HAVE_MPI
    mpi::run_options run;
    train_state<R> state{std::move(params), {}, {}};
    state.first_moment.assign(state.params.size(), R(0));
    state.second_moment.assign(state.params.size(), R(0));
    if (o.resume) {
        if (o.checkpoint_dir.empty()) throw usage_error("--resume needs --checkpoint DIR");
        auto c = load_checkpoint<R>(o.checkpoint_dir, shape.model, o.seed);
        run.first_step = static_cast<int>(c.next_step);
        state = {std::move(c.params), std::move(c.first_moment), std::move(c.second_moment)};
    }
    run.steps = o.steps, run.eval_batches = o.eval_batches, run.json = o.json;
    run.watchdog = std::chrono::milliseconds(o.watchdog_ms);
    run.layout = o.rank_layout == "stage-major" ? rank_layout::stage_major : rank_layout::group_major;
    run.config_text = fmt::format("{} D={} N={} k={} {} W={} sync={} steps={} model={} seed={} batch={} lr={} wd={} "
                                  "fp{} layout={} first_step={}",
                                  o.schedule, o.stages, o.micro_batches, o.pipelines, o.scaling, o.data_parallel,
                                  o.sync, o.steps, o.model, o.seed, o.batch, o.learning_rate, o.weight_decay,
                                  sizeof(R) * 8, o.rank_layout, run.first_step);
    return mpi::train<R>(lowered, shape, data, state, run);
#else
    (void)lowered, (void)shape, (void)data, (void)params;
    throw usage_error("--transport " + o.transport + ": this chimera-train was configured without MPI (-Dmpi)");
#endif
}

template <class R>
int train(const options& o) {
    const gpt::dataset data(65536, 1);
    run_shape shape = shape_of(o, data);
    const bool sequential = o.schedule == "sequential";

    schedule compute, lowered;
    if (!sequential) {
        lowered = make_lowered(o, compute);
        const auto report = check(lowered);
        if (!report.ok() && !o.no_check) {
            std::string text = "the lowered schedule is invalid:";
            for (const auto& d : report.diagnostics) text += "\n  [" + std::string(d.rule) + "] " + d.message;
            throw std::runtime_error(text);
        }
        if (o.stages > shape.model.layers || lowered.stages() > shape.model.layers)
            throw usage_error("the model has " + std::to_string(shape.model.layers) + " layers; D=" +
                              std::to_string(lowered.stages()) + " stages need L >= D");
    }
    const int micro_batches = sequential ? o.micro_batches : lowered.micro_batches();
    shape.micro_batches = micro_batches;
    const int global_micro_batches = micro_batches * o.data_parallel;
    const double tokens_per_step = static_cast<double>(global_micro_batches) * shape.batch * shape.seq;

    auto params = gpt::initial_parameters<R>(shape.model, o.seed);
    if (o.transport == "mpi") {
        if (sequential) throw usage_error("--transport mpi runs a pipeline schedule (not --schedule sequential)");
        return train_mpi<R>(o, lowered, shape, data, std::move(params));
    }
    std::optional<pipeline_trainer<R>> pipelined;
    std::optional<sequential_trainer<R>> reference;
    if (sequential)
        reference.emplace(shape, data, params, sequential_trainer<R>::one_group(global_micro_batches));
    else
        pipelined.emplace(lowered, shape, data, params, std::chrono::milliseconds(o.watchdog_ms));

    int first_step = 0;
    if (o.resume) {
        if (o.checkpoint_dir.empty()) throw usage_error("--resume needs --checkpoint DIR");
        auto c = load_checkpoint<R>(o.checkpoint_dir, shape.model, o.seed);
        first_step = static_cast<int>(c.next_step);
        const train_state<R> state{std::move(c.params), std::move(c.first_moment), std::move(c.second_moment)};
        if (sequential) reference->load(state);
        else pipelined->load(state);
    }

    const auto layouts = gpt::partition(shape.model, sequential ? 1 : lowered.stages());
    if (!o.json) {
        fmt::print("model: GPT, V={} (padded {}), T={}, C={}, L={}, NH={}, {} parameters, {}-bit\n", shape.model.vocab,
                   shape.model.padded_vocab, shape.model.max_seq, shape.model.channels, shape.model.layers,
                   shape.model.heads, gpt::parameter_count(shape.model), sizeof(R) * 8);
        fmt::print("data: synthetic language, {} micro-batches x {} rows x {} tokens = {} tokens per step\n",
                   global_micro_batches, shape.batch, shape.seq, static_cast<long>(tokens_per_step));
        if (sequential) {
            fmt::print("schedule: sequential (one worker, whole model, gradient accumulation)\n");
        } else {
            std::string cut;
            for (const auto& l : layouts)
                cut += fmt::format(" s{}:{}{}{}", l.stage, l.embedding ? "emb+" : "", l.last_block - l.first_block,
                                   l.head ? "+head" : "");
            fmt::print("stage cut (blocks per stage):{}\n", cut);
            fmt::print("{}", io::write_text(compute, {.color = isatty(STDOUT_FILENO) != 0}));
            fmt::print("lowered: {} ops ({} sync), {} worker threads ({} per group x W={})\n", lowered.op_count(),
                       o.sync, lowered.workers() * o.data_parallel, lowered.workers(), o.data_parallel);
        }
        if (first_step > 0) fmt::print("resumed from {} at step {}\n", checkpoint_path(o.checkpoint_dir), first_step);
    }

    double first_loss = 0, last_loss = 0, total_seconds = 0;
    for (int step = first_step; step < o.steps; ++step) {
        const step_result r = sequential ? reference->step(step) : pipelined->step(step);
        if (step == first_step) first_loss = r.loss;
        last_loss = r.loss;
        total_seconds += r.seconds;
        const double tokens_per_second = tokens_per_step / r.seconds;
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
        if (!o.checkpoint_dir.empty()) {
            const train_state<R> state = sequential ? reference->state() : pipelined->state();
            save_checkpoint<R>(o.checkpoint_dir, {shape.model, step + 1, o.seed, state.params, state.first_moment,
                                                  state.second_moment});
        }
    }

    const train_state<R> final_state = sequential ? reference->state() : pipelined->state();
    const double held_out = held_out_loss<R>(shape, data, final_state.params, o.eval_batches);
    const int steps_run = o.steps - first_step;
    nlohmann::json summary{{"schedule", sequential ? "sequential" : std::string(lowered.name())},
                           {"steps", steps_run},
                           {"first_loss", first_loss},
                           {"last_loss", last_loss},
                           {"held_out_loss", held_out},
                           {"tokens_per_s", steps_run > 0 ? tokens_per_step * steps_run / total_seconds : 0.0},
                           {"mean_step_seconds", steps_run > 0 ? total_seconds / steps_run : 0.0},
                           {"transport", "local"},
                           {"params_sha256", sha256_hex(final_state.params)}};
    if (!sequential) {
        const auto measured = pipelined->measured_peaks(), predicted = pipelined->predicted_peaks();
        summary["peak_activations_measured"] = measured;
        summary["peak_activations_predicted"] = predicted;
        summary["replicas_identical"] = pipelined->replicas_identical();
        summary["issue_order_mismatches"] = pipelined->order_mismatches();
        // Per-op costs measured on this run, fed to the ASAP simulator.
        const unsigned cores = std::max(1u, std::thread::hardware_concurrency());
        const step_prediction prediction =
            predict_step(*pipelined, {}, pipelined->total_times(), steps_run, cores);
        const step_prediction& costs = prediction;
        summary["op_seconds"] = {{"forward", costs.forward}, {"backward", costs.backward}};
        summary["predicted_step_seconds"] = prediction.makespan;
        summary["predicted_step_seconds_core_bound"] = prediction.core_bound;
        summary["cores"] = cores;
        if (!o.json) {
            fmt::print("held-out loss: {:.6f} (training loss {:.6f} -> {:.6f})\n", held_out, first_loss, last_loss);
            fmt::print("peak activations per worker (micro-batches stashed), measured vs predicted:\n");
            for (std::size_t r = 0; r < measured.size(); ++r)
                fmt::print("  worker {:2d}: {} vs {}{}\n", r, measured[r], predicted[r],
                           measured[r] == predicted[r] ? "" : "  MISMATCH");
            fmt::print("replicas bit-identical: {}\n", pipelined->replicas_identical() ? "yes" : "NO");
            fmt::print("mean op time: F {:.2f} ms, B {:.2f} ms; step time measured {:.3f} s, simulated {:.3f} s "
                       "(simulator, one core per worker), {:.3f} s ({} cores)\n",
                       costs.forward * 1e3, costs.backward * 1e3, steps_run > 0 ? total_seconds / steps_run : 0.0,
                       prediction.makespan, prediction.core_bound, cores);
        }
    } else if (!o.json) {
        fmt::print("held-out loss: {:.6f} (training loss {:.6f} -> {:.6f})\n", held_out, first_loss, last_loss);
    }
    if (o.json) fmt::print("{}\n", nlohmann::json{{"summary", summary}}.dump());
    return 0;
}

// --backend cuda: the same schedule on one GPU, one virtual worker (stream)
// per rank, fp32 kernels; --precision bf16 runs the matmuls on bf16 tensor
// cores with fp32 master weights (runtime.md §5.2, §7).
int train_cuda(const options& o) {
#if CHIMERA_HAVE_CUDA
    if (o.fp64) throw usage_error("--backend cuda runs fp32, or bf16 matmuls with --precision bf16 (drop --fp64)");
    std::string reason;
    if (!gpu::device_available(reason)) throw std::runtime_error("--backend cuda: " + reason);
    const gpt::dataset data(65536, 1);
    run_shape shape = shape_of(o, data);
    gpu::gpu_stage_options stage_options;
    if (o.attention == "flash") {
        if (shape.model.channels != 64 * shape.model.heads)
            throw usage_error("--attention flash needs head size 64; --model " + o.model + " has C/NH = " +
                              std::to_string(shape.model.channels) + "/" + std::to_string(shape.model.heads) +
                              " (try --model wide)");
        stage_options.attention = gpt::attention_kind::flash;
    }
    if (o.precision == "bf16") stage_options.arithmetic = gpu::precision::bf16;
    const bool sequential = o.schedule == "sequential";
    schedule compute, lowered;
    if (sequential) {
        shape.data_parallel = 1;
        lowered = gpu::gpu_pipeline_trainer::sequential_schedule(o.micro_batches * o.data_parallel);
    } else {
        lowered = make_lowered(o, compute);
        if (const auto report = check(lowered); !report.ok())
            throw std::runtime_error("the lowered schedule is invalid: [" + std::string(report.diagnostics[0].rule) +
                                     "] " + report.diagnostics[0].message);
        if (lowered.stages() > shape.model.layers)
            throw usage_error("the model has " + std::to_string(shape.model.layers) + " layers; D=" +
                              std::to_string(lowered.stages()) + " stages need L >= D");
    }
    const double tokens_per_step =
        static_cast<double>(lowered.micro_batches()) * shape.data_parallel * shape.batch * shape.seq;
    gpu::gpu_pipeline_trainer trainer(lowered, shape, data, gpt::initial_parameters<float>(shape.model, o.seed),
                                      std::chrono::milliseconds(o.watchdog_ms), stage_options);
    // Checkpoints: the CPU backend's format (whole model, fp32), so either
    // backend resumes the other's run.
    int first_step = 0;
    if (o.resume) {
        if (o.checkpoint_dir.empty()) throw usage_error("--resume needs --checkpoint DIR");
        auto c = load_checkpoint<float>(o.checkpoint_dir, shape.model, o.seed);
        first_step = static_cast<int>(c.next_step);
        trainer.load({std::move(c.params), std::move(c.first_moment), std::move(c.second_moment)});
    }
    if (!o.json) {
        cudaDeviceProp device{};
        gpu::check(cudaGetDeviceProperties(&device, 0), "cudaGetDeviceProperties");
        fmt::print("backend: cuda ({} matmuls, attention {}), {} virtual workers on {}, schedule {}\n", o.precision,
                   o.attention, trainer.ranks(), device.name, sequential ? "sequential" : std::string(lowered.name()));
        if (first_step > 0) fmt::print("resumed from {} at step {}\n", checkpoint_path(o.checkpoint_dir), first_step);
    }
    double first_loss = 0, last_loss = 0, total_seconds = 0;
    for (int step = first_step; step < o.steps; ++step) {
        const step_result r = trainer.step(step);
        if (step == first_step) first_loss = r.loss;
        last_loss = r.loss;
        total_seconds += r.seconds;
        if (o.json)
            fmt::print("{}\n", nlohmann::json{{"step", step}, {"loss", r.loss}, {"tokens_per_s", tokens_per_step / r.seconds},
                                              {"seconds", r.seconds}}.dump());
        else
            fmt::print("step {:4d}  loss {:.6f}  {:8.0f} tokens/s  ({:.3f} s)\n", step, r.loss,
                       tokens_per_step / r.seconds, r.seconds);
        std::fflush(stdout);
        if (!o.checkpoint_dir.empty()) {
            const train_state<float> state = trainer.state();
            save_checkpoint<float>(o.checkpoint_dir, {shape.model, step + 1, o.seed, state.params, state.first_moment,
                                                      state.second_moment});
        }
    }
    const int steps_run = o.steps - first_step;
    const double held_out = held_out_loss<float>(shape, data, trainer.state().params, o.eval_batches);
    nlohmann::json summary{{"backend", "cuda"}, {"precision", o.precision}, {"attention", o.attention},
                           {"steps", steps_run}, {"first_loss", first_loss},
                           {"last_loss", last_loss}, {"held_out_loss", held_out},
                           {"replicas_identical", trainer.replicas_identical()},
                           {"tokens_per_s", steps_run > 0 ? tokens_per_step * steps_run / total_seconds : 0.0}};
    if (o.json) fmt::print("{}\n", nlohmann::json{{"summary", summary}}.dump());
    else fmt::print("held-out loss: {:.6f} (training loss {:.6f} -> {:.6f}); replicas bit-identical: {}\n", held_out,
                    first_loss, last_loss, trainer.replicas_identical() ? "yes" : "NO");
    return 0;
#else
    (void)o;
    throw usage_error("--backend cuda: this chimera-train was configured without CUDA (no nvcc, or -Dcuda=disabled)");
#endif
}

}  // namespace

int main(int argc, char** argv) {
    CLI::App app{"chimera-train: train a small GPT with a pipeline schedule on the CPU backend"};
    options o;
    app.add_option("--schedule", o.schedule, "gpipe, 1f1b, chimera or sequential")
        ->check(CLI::IsMember({"gpipe", "1f1b", "chimera", "sequential"}))
        ->capture_default_str();
    app.add_option("--stages", o.stages, "Pipeline depth D")->capture_default_str();
    app.add_option("--micro-batches", o.micro_batches, "Micro-batches N per iteration")->capture_default_str();
    app.add_option("--pipelines", o.pipelines, "Chimera: pipelines k = 2f (default 2)");
    app.add_option("--scaling", o.scaling, "Chimera for N > D: direct, doubling or halving")
        ->check(CLI::IsMember({"direct", "doubling", "halving"}))
        ->capture_default_str();
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
                   "local (one thread per worker) or mpi (one process per worker: mpirun -np D*W chimera-train ...)")
        ->check(CLI::IsMember({"local", "mpi"}))
        ->capture_default_str();
    app.add_option("--rank-layout", o.rank_layout,
                   "mpi: MPI rank of (group g, worker w): group-major g*D+w, or stage-major w*W+g")
        ->check(CLI::IsMember({"group-major", "stage-major"}))
        ->capture_default_str();
    app.add_option("--schedule-file", o.schedule_file,
                   "Run a schedule from a chimera.schedule/1 JSON file (compute-only or lowered) instead");
    app.add_flag("--no-check", o.no_check,
                 "Run a schedule even if the checker rejects it (the runtime then reports the deadlock)");
    app.add_option("--watchdog-ms", o.watchdog_ms, "Stop and report when no worker progresses for this long")
        ->capture_default_str();
    try {
        app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
        const int rc = app.exit(e);
        return rc == 0 ? 0 : 2;
    }
    try {
        if (o.steps < 0 || o.batch < 1 || o.watchdog_ms < 1) throw usage_error("--steps >= 0, --batch >= 1, --watchdog-ms >= 1");
        if (o.precision == "bf16" && o.backend != "cuda")
            throw usage_error("--precision bf16 needs --backend cuda (the CPU backend runs fp32 or --fp64)");
        if (o.attention != "v1" && o.backend != "cuda")
            throw usage_error("--attention " + o.attention + " needs --backend cuda (the CPU backend runs v1)");
        if (o.transport != "local" && o.backend != "cpu")
            throw usage_error("--transport " + o.transport + " runs the CPU backend (--backend cpu)");
        if (o.backend == "cuda") return train_cuda(o);
        return o.fp64 ? train<double>(o) : train<float>(o);
    } catch (const usage_error& e) {
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
