// GPT-2-style model description (docs/design/runtime-contract.md#the-model): configuration, the global
// tensor table (llm.c layout, one flat buffer), deterministic init, and the
// cut into D stages. Head untied from wte (see docs/runtime.md).
#pragma once

#include <cmath>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "../common/partition.hpp"

namespace chimera::gpt {

struct gpt_config {
    int vocab = 64;           // V
    int padded_vocab = 128;   // Vp, multiple of 32 here (128 in llm.c); columns >= V are ignored by the loss
    int max_seq = 32;         // maximum T (wpe rows)
    int channels = 32;        // C
    int layers = 8;           // L
    int heads = 4;            // NH
    friend bool operator==(const gpt_config&, const gpt_config&) = default;
};

inline gpt_config tiny_model(int vocab) { return {vocab, 128, 32, 32, 8, 4}; }
inline gpt_config small_model(int vocab) { return {vocab, 128, 64, 64, 8, 4}; }
// Head size 64 (C = 128, NH = 2): the shape flash attention needs.
inline gpt_config wide_model(int vocab) { return {vocab, 128, 64, 128, 8, 2}; }

inline void require_valid(const gpt_config& c) {
    auto fail = [](const std::string& m) { throw std::invalid_argument("model: " + m); };
    if (c.vocab < 2 || c.padded_vocab < c.vocab) fail("need 2 <= V <= Vp");
    if (c.channels < 1 || c.heads < 1 || c.channels % c.heads != 0) fail("heads must divide channels");
    if (c.layers < 1 || c.max_seq < 1) fail("layers and sequence length must be >= 1");
}

// Tensors of one block, in layout order.
enum block_tensor : int {
    ln1w, ln1b, qkvw, qkvb, attprojw, attprojb, ln2w, ln2b, fcw, fcb, fcprojw, fcprojb, block_tensor_count
};

struct tensor_info {
    std::string name;
    std::size_t size = 0;
    std::size_t offset = 0;  // in the whole-model flat buffer
    bool decay = false;      // AdamW weight decay only on matrices (2-D tensors)
    int init = 0;            // 0: normal(0, 0.02 or scaled), 1: ones, 2: zeros
    double init_std = 0.02;
};

// The whole model's tensors in order: wte, wpe, blocks 0..L-1, lnfw, lnfb, head.
// A stage owns a contiguous range of them, so the concatenation of the stage
// buffers in stage order is the whole-model buffer.
inline std::vector<tensor_info> tensor_table(const gpt_config& c) {
    const std::size_t C = static_cast<std::size_t>(c.channels);
    std::vector<tensor_info> t;
    auto add = [&](std::string name, std::size_t size, bool decay, int init, double std_dev = 0.02) {
        tensor_info info{std::move(name), size, 0, decay, init, std_dev};
        info.offset = t.empty() ? 0 : t.back().offset + t.back().size;
        t.push_back(std::move(info));
    };
    add("wte", static_cast<std::size_t>(c.padded_vocab) * C, true, 0);
    add("wpe", static_cast<std::size_t>(c.max_seq) * C, true, 0, 0.01);
    const double residual_std = 0.02 / std::sqrt(2.0 * c.layers);  // GPT-2's scaled init of residual projections
    for (int l = 0; l < c.layers; ++l) {
        std::string p = std::to_string(l);
        p.insert(0, 1, 'h');
        p += '.';
        add(p + "ln1w", C, false, 1);
        add(p + "ln1b", C, false, 2);
        add(p + "qkvw", 3 * C * C, true, 0);
        add(p + "qkvb", 3 * C, false, 2);
        add(p + "attprojw", C * C, true, 0, residual_std);
        add(p + "attprojb", C, false, 2);
        add(p + "ln2w", C, false, 1);
        add(p + "ln2b", C, false, 2);
        add(p + "fcw", 4 * C * C, true, 0);
        add(p + "fcb", 4 * C, false, 2);
        add(p + "fcprojw", 4 * C * C, true, 0, residual_std);
        add(p + "fcprojb", C, false, 2);
    }
    add("lnfw", C, false, 1);
    add("lnfb", C, false, 2);
    add("head", static_cast<std::size_t>(c.padded_vocab) * C, true, 0);
    return t;
}

inline std::size_t parameter_count(const gpt_config& c) {
    const auto t = tensor_table(c);
    return t.back().offset + t.back().size;
}

// splitmix64: the deterministic source of every random number here.
struct rng {
    std::uint64_t state;
    std::uint64_t next() {
        std::uint64_t z = (state += 0x9e3779b97f4a7c15ULL);
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
        return z ^ (z >> 31);
    }
    double uniform() { return static_cast<double>(next() >> 11) * 0x1.0p-53; }  // [0, 1)
    double normal() {  // Box-Muller, one value per call
        const double u1 = 1.0 - uniform(), u2 = uniform();
        return std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2);
    }
};

// Whole-model initial parameters; tensor i draws from its own stream so that
// any stage cut sees the same values. Padding rows of wte/head start at 0.
template <class R>
std::vector<R> initial_parameters(const gpt_config& c, std::uint64_t seed) {
    const auto table = tensor_table(c);
    std::vector<R> out(parameter_count(c));
    for (std::size_t i = 0; i < table.size(); ++i) {
        const auto& t = table[i];
        rng g{seed * 0x100000001b3ULL + i};
        for (std::size_t j = 0; j < t.size; ++j)
            out[t.offset + j] = t.init == 1 ? R(1) : t.init == 2 ? R(0) : static_cast<R>(t.init_std * g.normal());
        if (t.name == "wte" || t.name == "head")
            for (std::size_t j = static_cast<std::size_t>(c.vocab) * c.channels; j < t.size; ++j) out[t.offset + j] = 0;
    }
    return out;
}

// One stage of the cut: its blocks, whether it has the embeddings / the head,
// and its range in the whole-model buffer.
struct stage_layout {
    int stage = 0, stages = 1;
    int first_block = 0, last_block = 0;  // [first, last)
    bool embedding = false, head = false;
    std::size_t first_tensor = 0, last_tensor = 0;  // [first, last) in tensor_table
    std::size_t offset = 0, size = 0;               // in the whole-model buffer
};

// Per-token forward costs (docs/design/runtime-contract.md#the-model): block 24C^2 + 4TC, head 2 C Vp.
inline std::vector<stage_layout> partition(const gpt_config& c, int stages) {
    const double C = c.channels;
    const double block_cost = 24 * C * C + 4.0 * c.max_seq * C;
    const double head_cost = 2 * C * c.padded_vocab;
    const auto first = runtime::balance_blocks(c.layers, stages, block_cost, 0.0, head_cost);
    const auto table = tensor_table(c);
    std::vector<stage_layout> out;
    for (int s = 0; s < stages; ++s) {
        stage_layout l;
        l.stage = s;
        l.stages = stages;
        l.first_block = first[s];
        l.last_block = first[s + 1];
        l.embedding = s == 0;
        l.head = s == stages - 1;
        l.first_tensor = l.embedding ? 0 : 2 + static_cast<std::size_t>(l.first_block) * block_tensor_count;
        l.last_tensor = l.head ? table.size() : 2 + static_cast<std::size_t>(l.last_block) * block_tensor_count;
        l.offset = table[l.first_tensor].offset;
        l.size = table[l.last_tensor - 1].offset + table[l.last_tensor - 1].size - l.offset;
        out.push_back(l);
    }
    return out;
}

}  // namespace chimera::gpt
