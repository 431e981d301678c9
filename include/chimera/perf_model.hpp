// Performance model (docs/design/chimera-closed-form.md#iteration-time to #choosing-a-configuration): from a
// model description (layers, hidden size, heads, sequence length, vocabulary), a device (peak FLOP/s,
// achieved fraction, memory) and a network (alpha, beta) to the per-stage cost model the simulator runs.
// Presets for the paper's models and two hardware generations. Assumptions are in docs/performance-model.md.
#pragma once

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstdio>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "simulate.hpp"

namespace chimera {

// A decoder (GPT) or encoder (BERT) transformer.
struct model_description {
    std::string_view name;
    int layers = 0;
    int hidden = 0;
    int heads = 0;
    int sequence = 0;
    int vocabulary = 0;
    bool tied_head = true;             // output projection shares the embedding (GPT-2) or not (the paper's counts)
    long long extra_parameters = 0;    // pooler, NSP head, token types... (so counts match the paper exactly)
    // Given per-layer figures (a model file's layer_parameters, layer_flops,
    // layer_activation_bytes) replace the formulas below; 0: the formula.
    long long given_layer_parameters = 0;
    double given_layer_flops = 0;
    double given_layer_activation_bytes = 0;

    // 12 h^2 + 13 h per layer (attention, MLP, two layer norms, biases).
    constexpr long long layer_parameters() const {
        if (given_layer_parameters > 0) return given_layer_parameters;
        const long long h = hidden;
        return 12 * h * h + 13 * h;
    }
    constexpr long long embedding_parameters() const {
        const long long h = hidden;
        return static_cast<long long>(vocabulary) * h + static_cast<long long>(sequence) * h;
    }
    constexpr long long head_parameters() const {
        return (tied_head ? 0 : static_cast<long long>(vocabulary) * hidden) + 2LL * hidden + extra_parameters;
    }
    constexpr long long parameters() const {
        return layers * layer_parameters() + embedding_parameters() + head_parameters();
    }
    // Forward FLOPs of one layer on one sample: dense 24 s h^2, attention 4 s^2 h.
    constexpr double layer_flops() const {
        if (given_layer_flops > 0) return given_layer_flops;
        const double s = sequence, h = hidden;
        return 24 * s * h * h + 4 * s * s * h;
    }
    // Forward FLOPs of the output projection (logits) on one sample.
    constexpr double head_flops() const { return 2.0 * sequence * hidden * vocabulary; }
    // Activation bytes one layer keeps per sample (fp16, no sequence
    // parallelism, attention scores stored: s h (34 + 5 a s / h)).
    constexpr double layer_activation_bytes() const {
        if (given_layer_activation_bytes > 0) return given_layer_activation_bytes;
        const double s = sequence, h = hidden, a = heads;
        return s * h * (34 + 5 * a * s / h);
    }
    // The tensor crossing a stage boundary (fp16), also what recomputation keeps.
    constexpr double boundary_bytes() const { return 2.0 * sequence * hidden; }
};

struct device_description {
    std::string_view name;
    double peak_flops = 0;      // per second, the precision used for training
    double efficiency = 0.5;    // fraction of peak reached on large matrix products
    double half_tokens = 256;   // tokens per op at which half that efficiency is reached (small micro-batches run slower)
    double memory_bytes = 0;
    double bytes_per_parameter = 4;   // weights + gradients (fp16)
    double gradient_bytes_per_parameter = 2;  // what the all-reduce moves (fp16)
    double optimizer_bytes_per_parameter = 12;  // fp32 master copy + Adam moments
    // Op times relative to the forward (a profile measures them).
    double backward_ratio = 2, input_backward_ratio = 1, weight_backward_ratio = 1;
    double optimizer_seconds_per_parameter = 0;  // one replica's optimizer step (0: left out, as on GPUs)
};

struct network_description {
    std::string_view name;
    double alpha = 0;  // seconds per message
    double beta = 0;   // seconds per byte
};

// Parameter counts match the paper exactly (docs/design/chimera-closed-form.md#what-the-paper-reports): GPT-2 64
// layers 1,389,327,360 (untied output layer), Bert-48 669,790,012.
inline constexpr std::array<model_description, 3> model_presets = {{
    {"gpt2-1.3b", 64, 1280, 20, 1024, 50257, false, 0},
    // extra: token types 2h, pooler h^2+h, MLM transform h^2+h and its norm
    // 2h, decoder bias V, next-sentence head 2h+2 = 2,135,868.
    {"bert-48", 48, 1024, 16, 512, 30522, false, 2135868},
    {"gpt2-124m", 12, 768, 12, 1024, 50257, true, 0},
}};

inline constexpr std::array<device_description, 2> device_presets = {{
    {"p100", 18.7e12, 0.35, 256, 16.0 * (1LL << 30), 4, 2, 12},
    {"h100", 989e12, 0.45, 1024, 80.0 * (1LL << 30), 4, 2, 12},
}};

inline constexpr std::array<network_description, 2> network_presets = {{
    {"aries", 2e-6, 1.0 / 10e9},
    {"nvlink-ib", 5e-6, 1.0 / 50e9},
}};

// A full hardware + model preset, as `chimera-sched tune --preset` names it.
struct preset {
    std::string_view name;
    std::string_view model, device, network;
};

inline constexpr std::array<preset, 6> presets = {{
    {"gpt2-1.3b-p100", "gpt2-1.3b", "p100", "aries"},
    {"bert-48-p100", "bert-48", "p100", "aries"},
    {"gpt2-124m-p100", "gpt2-124m", "p100", "aries"},
    {"gpt2-1.3b-h100", "gpt2-1.3b", "h100", "nvlink-ib"},
    {"bert-48-h100", "bert-48", "h100", "nvlink-ib"},
    {"gpt2-124m-h100", "gpt2-124m", "h100", "nvlink-ib"},
}};

template <class Array>
constexpr auto find_preset(const Array& array, std::string_view name) -> std::optional<typename Array::value_type> {
    for (const auto& entry : array)
        if (entry.name == name) return entry;
    return std::nullopt;
}

// Layers per stage: the output layer costs `head` layers' worth of time,
// so the last stage gets fewer transformer layers. Every stage gets at least
// one layer (so D <= layers); the rest are spread evenly over the others.
inline std::vector<int> partition_layers(const model_description& m, int stages) {
    const double head = m.head_flops() / m.layer_flops();
    std::vector<int> best;
    double best_cost = 0;
    for (int last = 1; last <= m.layers - (stages - 1); ++last) {
        if (stages == 1 && last != m.layers) continue;
        const int rest = m.layers - last, others = stages - 1;
        const double cost =
            std::max(others > 0 ? static_cast<double>((rest + others - 1) / others) : 0.0, last + head);
        if (best.empty() || cost < best_cost) {
            best_cost = cost;
            best.assign(static_cast<std::size_t>(stages), 0);
            for (int s = 0; s < others; ++s) best[static_cast<std::size_t>(s)] = rest / others + (s < rest % others ? 1 : 0);
            best.back() = last;
        }
    }
    return best;
}

// `network` joins nodes; `intra_node` joins the devices of one node (a
// cluster file's intra_node; unused while devices_per_node is 1). A pipeline
// replica's D stages sit on consecutive devices: its messages stay inside a
// node when D divides devices_per_node, and a stage's all-reduce crosses
// nodes unless all P devices fit in one node.
struct hardware {
    device_description device;
    // Measured speed at given micro-batch sizes (calibrate); empty: the device's.
    struct measured_speed {
        double micro_batch_size = 1, flops_per_second = 0, backward_ratio = 2, input_backward_ratio = 1,
               weight_backward_ratio = 1;
    };
    network_description network;
    network_description intra_node{};
    int devices_per_node = 1;
    int cores_per_node = 0;  // ranks that can compute at once on one node (0: one per device)
    std::vector<measured_speed> measured{};  // ascending micro_batch_size

    // The speed at `micro_batch_size` B, for `tokens` = B x sequence: the
    // device's (peak x efficiency, slower below half_tokens), or measured,
    // interpolated linearly in B between the two nearest measured sizes
    // (time per FLOP; the nearest one outside them).
    constexpr measured_speed speed(double micro_batch_size, double tokens) const {
        if (measured.empty())
            return {micro_batch_size, device.peak_flops * device.efficiency * tokens / (tokens + device.half_tokens),
                    device.backward_ratio, device.input_backward_ratio, device.weight_backward_ratio};
        std::size_t hi = 0;
        while (hi + 1 < measured.size() && measured[hi].micro_batch_size < micro_batch_size) ++hi;
        const measured_speed& b = measured[hi];
        const measured_speed& a = measured[hi > 0 ? hi - 1 : 0];
        const double span = b.micro_batch_size - a.micro_batch_size;
        const double x = span > 0 ? std::clamp((micro_batch_size - a.micro_batch_size) / span, 0.0, 1.0) : 1.0;
        const auto mix = [x](double u, double v) { return u + x * (v - u); };
        return {micro_batch_size, 1 / mix(1 / a.flops_per_second, 1 / b.flops_per_second),
                mix(a.backward_ratio, b.backward_ratio), mix(a.input_backward_ratio, b.input_backward_ratio),
                mix(a.weight_backward_ratio, b.weight_backward_ratio)};
    }

    // Cores for `devices` ranks (0: unbounded, one per device).
    constexpr unsigned cores(int devices) const {
        return cores_per_node > 0 ? static_cast<unsigned>(cores_per_node) * (devices / devices_per_node) : 0;
    }

    constexpr bool pipeline_in_node(int stages) const {
        return devices_per_node > 1 && stages <= devices_per_node && devices_per_node % stages == 0;
    }
};

// Per-stage costs of one micro-batch of `micro_batch_size` samples.
inline cost_model make_cost_model(const model_description& m, const hardware& hw, int stages, double micro_batch_size,
                                  bool recompute, int data_parallel) {
    const std::vector<int> layers = partition_layers(m, stages);
    const hardware::measured_speed speed = hw.speed(micro_batch_size, micro_batch_size * m.sequence);
    cost_model c;
    c.recompute = recompute;
    const network_description& p2p = hw.pipeline_in_node(stages) ? hw.intra_node : hw.network;
    c.alpha = p2p.alpha;
    c.beta = p2p.beta;
    const bool reduce_in_node = hw.devices_per_node > 1 && stages * data_parallel <= hw.devices_per_node;
    if (reduce_in_node != hw.pipeline_in_node(stages)) {
        const network_description& reduce = reduce_in_node ? hw.intra_node : hw.network;
        c.allreduce_alpha = reduce.alpha;
        c.allreduce_beta = reduce.beta;
    }
    c.data_parallel = data_parallel;
    c.per_stage.resize(static_cast<std::size_t>(stages));
    for (int s = 0; s < stages; ++s) {
        const bool last = s == stages - 1;
        const int count = layers[static_cast<std::size_t>(s)];
        const double flops = micro_batch_size * (count * m.layer_flops() + (last ? m.head_flops() : 0));
        long long params = count * m.layer_parameters();
        if (s == 0) params += m.embedding_parameters();
        if (last) params += m.head_parameters();
        stage_profile& p = c.per_stage[static_cast<std::size_t>(s)];
        p.forward = flops / speed.flops_per_second;
        p.backward = speed.backward_ratio * p.forward;
        p.input_backward = speed.input_backward_ratio * p.forward;
        p.weight_backward = speed.weight_backward_ratio * p.forward;
        p.optimizer = static_cast<double>(params) * hw.device.optimizer_seconds_per_parameter;
        p.message_bytes = micro_batch_size * m.boundary_bytes();
        p.parameter_bytes = static_cast<double>(params) * hw.device.bytes_per_parameter;
        p.gradient_bytes = static_cast<double>(params) * hw.device.gradient_bytes_per_parameter;
        p.optimizer_bytes = static_cast<double>(params) * hw.device.optimizer_bytes_per_parameter;
        // fp32 logits for the loss on the last stage.
        const double logits = last ? 4.0 * m.sequence * m.vocabulary : 0;
        p.activation_bytes = micro_batch_size * (count * m.layer_activation_bytes() + logits);
        p.recompute_bytes = micro_batch_size * m.boundary_bytes();
    }
    return c;
}

// Stage costs measured on a run (docs/planning.md#measured-inputs): mean
// seconds per op of each stage of a D-stage pipeline, micro-batches of
// `micro_batch_size` samples.
struct measured_stage {
    int layers = 0;  // transformer layers the stage held (the last one also the output layer)
    double forward = 0, backward = 0, input_backward = 0, weight_backward = 0;  // 0: not measured
    double activation_bytes = 0;  // kept per micro-batch (0: not measured)
};
struct measured_profile {
    double micro_batch_size = 1;
    std::vector<measured_stage> stages;
    double optimizer_seconds_per_parameter = 0;  // 0: not measured
};

// Replace the device's assumed speed with the measured one: at each
// profile's micro-batch size, the FLOP rate that reproduces the measured
// forward time of all stages together and the measured backward/forward
// ratios (hardware::speed interpolates between sizes); the measured
// activation bytes per layer and sample and optimizer seconds per parameter
// (the last profile that has them). Precondition: different micro-batch
// sizes (else std::invalid_argument naming the size).
inline void calibrate(model_description& m, hardware& hw, std::span<const measured_profile> profiles) {
    for (const measured_profile& p : profiles) {
        double flops = 0, forward = 0, backward = 0, input = 0, weight = 0, activation = 0;
        int layers = 0;
        for (std::size_t s = 0; s < p.stages.size(); ++s) {
            const measured_stage& st = p.stages[s];
            const bool last = s + 1 == p.stages.size();
            flops += p.micro_batch_size * (st.layers * m.layer_flops() + (last ? m.head_flops() : 0));
            forward += st.forward, backward += st.backward, input += st.input_backward, weight += st.weight_backward;
            activation += st.activation_bytes;
            layers += st.layers;
        }
        if (forward <= 0 || layers <= 0) continue;
        hardware::measured_speed speed{p.micro_batch_size, flops / forward, hw.device.backward_ratio,
                                       hw.device.input_backward_ratio, hw.device.weight_backward_ratio};
        if (backward > 0) speed.backward_ratio = backward / forward;
        if (input > 0 && weight > 0) speed.input_backward_ratio = input / forward, speed.weight_backward_ratio = weight / forward;
        const auto at = std::find_if(hw.measured.begin(), hw.measured.end(),
                                     [&](const auto& x) { return x.micro_batch_size >= p.micro_batch_size; });
        if (at != hw.measured.end() && at->micro_batch_size == p.micro_batch_size) {
            char size[32];
            std::snprintf(size, sizeof size, "%g", p.micro_batch_size);
            throw std::invalid_argument(std::string("calibrate: two profiles at micro-batch size ") + size +
                                        " (give one profile per size)");
        }
        hw.measured.insert(at, speed);
        if (activation > 0) m.given_layer_activation_bytes = activation / (p.micro_batch_size * layers);
        if (p.optimizer_seconds_per_parameter > 0)
            hw.device.optimizer_seconds_per_parameter = p.optimizer_seconds_per_parameter;
    }
}
inline void calibrate(model_description& m, hardware& hw, const measured_profile& p) {
    calibrate(m, hw, std::span<const measured_profile>(&p, 1));
}

}  // namespace chimera
