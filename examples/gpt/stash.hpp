// Where a micro-batch's saved activations live inside its stash: one layout
// for the CPU and the CUDA stage models, so the two cannot drift.
#pragma once

#include <cstddef>

#include "model.hpp"

namespace chimera::gpt {

// Hands out consecutive offsets; `size` is the stash length so far.
struct stash_allocator {
    std::size_t size = 0;
    std::size_t take(std::size_t n) {
        const std::size_t at = size;
        size += n;
        return at;
    }
};

// Which attention a stage runs, and so what it keeps for the backward in
// block_stash::att: v1 (the CPU twin, the CUDA default) the softmax
// probabilities [B, NH, T, T]; flash (CUDA, head size 64) only the row
// log-sum-exp [B, NH, T], recomputing the probabilities from it and atty.
enum class attention_kind { v1, flash };

inline std::size_t attention_saved_size(attention_kind kind, const gpt_config& c, int batch, int seq) {
    const std::size_t rows = static_cast<std::size_t>(batch) * c.heads * seq;
    return kind == attention_kind::flash ? rows : rows * static_cast<std::size_t>(seq);
}

// One transformer block: forward tensors kept for the backward, and the
// gradients the backward writes.
struct block_stash {
    std::size_t ln1, ln1_mean, ln1_rstd, qkv, att, atty, res2, ln2, ln2_mean, ln2_rstd, fch, fch_gelu, out;
    std::size_t d_ln1, d_qkv, d_res2, d_ln2, d_fch, d_out;
};

inline block_stash take_block_stash(stash_allocator& a, const gpt_config& c, int batch, int seq,
                                    attention_kind attention = attention_kind::v1) {
    const std::size_t BT = static_cast<std::size_t>(batch) * seq, C = static_cast<std::size_t>(c.channels);
    block_stash b;
    b.ln1 = a.take(BT * C), b.ln1_mean = a.take(BT), b.ln1_rstd = a.take(BT);
    b.qkv = a.take(BT * 3 * C), b.att = a.take(attention_saved_size(attention, c, batch, seq));
    b.atty = a.take(BT * C), b.res2 = a.take(BT * C);
    b.ln2 = a.take(BT * C), b.ln2_mean = a.take(BT), b.ln2_rstd = a.take(BT);
    b.fch = a.take(BT * 4 * C), b.fch_gelu = a.take(BT * 4 * C), b.out = a.take(BT * C);
    b.d_ln1 = a.take(BT * C), b.d_qkv = a.take(BT * 3 * C), b.d_res2 = a.take(BT * C);
    b.d_ln2 = a.take(BT * C), b.d_fch = a.take(BT * 4 * C), b.d_out = a.take(BT * C);
    return b;
}

}  // namespace chimera::gpt
