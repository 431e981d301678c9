// One model stage on the CPU: forward into a stash, input-gradient backward
// (I) that keeps the gradients the weight part needs, and weight-gradient
// backward (W). A full backward B is I followed by W, so B and a split I/W
// give bitwise the same gradients.
#pragma once

#include <cstddef>
#include <stdexcept>
#include <vector>

#include "../gpt/model.hpp"
#include "../gpt/stash.hpp"
#include "kernels.hpp"

namespace chimera::runtime::cpu {

// Everything one micro-batch leaves on a stage between F and its backward.
template <class R>
struct stash {
    std::vector<R> values;    // activations and the gradients kept for W
    std::vector<int> tokens;  // stage 0: inputs; last stage: targets
    std::vector<int> targets;
    double loss = 0;          // last stage: mean token loss of the micro-batch
    bool input_backward_done = false;
};

template <class R>
class stage_model {
public:
    stage_model(const gpt::gpt_config& config, const gpt::stage_layout& layout, int batch, int seq)
        : c_(config), l_(layout), B_(batch), T_(seq) {
        const std::size_t BT = static_cast<std::size_t>(B_) * T_, C = static_cast<std::size_t>(c_.channels);
        gpt::stash_allocator stash;
        auto take = [&](std::size_t n) { return stash.take(n); };
        input_ = take(BT * C);  // embedding output on stage 0, received activation otherwise
        for (int l = l_.first_block; l < l_.last_block; ++l) {
            blocks_.push_back(gpt::take_block_stash(stash, c_, B_, T_));
        }
        if (l_.head) {
            lnf_ = take(BT * C), lnf_mean_ = take(BT), lnf_rstd_ = take(BT);
            probs_ = take(BT * c_.padded_vocab), losses_ = take(BT);
            d_logits_ = take(BT * c_.padded_vocab), d_lnf_ = take(BT * C);
        }
        d_input_ = take(BT * C);  // gradient at the stage input (kept for the embedding's W)
        stash_size_ = stash.size;
        const auto table = gpt::tensor_table(c_);
        for (std::size_t t = l_.first_tensor; t < l_.last_tensor; ++t) tensor_offset_.push_back(table[t].offset - l_.offset);
    }

    std::size_t parameter_size() const { return l_.size; }
    std::size_t activation_size() const { return static_cast<std::size_t>(B_) * T_ * c_.channels; }
    const gpt::stage_layout& layout() const { return l_; }

    stash<R> make_stash() const {
        stash<R> s;
        s.values.assign(stash_size_, R(0));
        return s;
    }

    // Stage 0 reads s.tokens; others read `input` (B*T*C). The last stage
    // reads s.targets and sets s.loss; others write `output` (B*T*C).
    void forward(const R* params, stash<R>& s, const R* input, R* output) const {
        const int N = B_ * T_, C = c_.channels;
        R* v = s.values.data();
        if (l_.embedding)
            encoder_forward(v + input_, s.tokens.data(), params + tensor(0), params + tensor(1), B_, T_, C);
        else
            std::copy(input, input + activation_size(), v + input_);
        const R* x = v + input_;
        for (std::size_t i = 0; i < blocks_.size(); ++i) {
            const auto& b = blocks_[i];
            auto w = [&](int k) { return params + block_tensor(i, k); };
            layernorm_forward(v + b.ln1, v + b.ln1_mean, v + b.ln1_rstd, x, w(gpt::ln1w), w(gpt::ln1b), N, C);
            matmul_forward(v + b.qkv, v + b.ln1, w(gpt::qkvw), w(gpt::qkvb), N, C, 3 * C);
            attention_forward(v + b.atty, v + b.att, v + b.qkv, B_, T_, C, c_.heads);
            matmul_forward(v + b.res2, v + b.atty, w(gpt::attprojw), w(gpt::attprojb), N, C, C);
            residual_forward(v + b.res2, x, v + b.res2, activation_size());
            layernorm_forward(v + b.ln2, v + b.ln2_mean, v + b.ln2_rstd, v + b.res2, w(gpt::ln2w), w(gpt::ln2b), N, C);
            matmul_forward(v + b.fch, v + b.ln2, w(gpt::fcw), w(gpt::fcb), N, C, 4 * C);
            gelu_forward(v + b.fch_gelu, v + b.fch, activation_size() * 4);
            matmul_forward(v + b.out, v + b.fch_gelu, w(gpt::fcprojw), w(gpt::fcprojb), N, 4 * C, C);
            residual_forward(v + b.out, v + b.res2, v + b.out, activation_size());
            x = v + b.out;
        }
        if (l_.head) {
            const std::size_t t = tensor_offset_.size();
            layernorm_forward(v + lnf_, v + lnf_mean_, v + lnf_rstd_, x, params + tensor(t - 3), params + tensor(t - 2),
                              N, C);
            const std::vector<R> scores = logits(params, s);
            s.loss = classifier_forward(v + probs_, v + losses_, scores.data(), s.targets.data(), N, c_.vocab,
                                        c_.padded_vocab);
        } else {
            std::copy(x, x + activation_size(), output);
        }
    }

    // The last stage's logits [B*T, Vp] for a stash its forward filled: the
    // classifier matmul on the stashed final layernorm output (V4 compares
    // them between backends).
    std::vector<R> logits(const R* params, const stash<R>& s) const {
        if (!l_.head) throw std::logic_error("stage_model::logits: not the last stage");
        const int N = B_ * T_;
        std::vector<R> out(static_cast<std::size_t>(N) * c_.padded_vocab);
        matmul_forward(out.data(), s.values.data() + lnf_, params + tensor(tensor_offset_.size() - 1),
                       static_cast<const R*>(nullptr), N, c_.channels, c_.padded_vocab);
        return out;
    }

    // Input-gradient backward. The last stage seeds with dloss/dlogits times
    // `loss_scale` (1/(N*W), docs/design/runtime-contract.md#the-executor); others read `dout`. Writes the
    // gradient at the stage input to `dinput` unless this is stage 0.
    void backward_input(const R* params, stash<R>& s, const R* dout, R* dinput, R loss_scale) const {
        const int N = B_ * T_, C = c_.channels;
        R* v = s.values.data();
        std::vector<R> scratch;
        const R* dx;  // gradient at the current residual stream
        std::vector<R> dresidual(activation_size(), R(0));
        if (l_.head) {
            const std::size_t t = tensor_offset_.size();
            classifier_backward(v + d_logits_, v + probs_, s.targets.data(), loss_scale / static_cast<R>(N), N,
                                c_.vocab, c_.padded_vocab);
            matmul_backward_input(v + d_lnf_, v + d_logits_, params + tensor(t - 1), N, C, c_.padded_vocab);
            const R* last_in = blocks_.empty() ? v + input_ : v + blocks_.back().out;
            layernorm_backward_input(dresidual.data(), v + d_lnf_, last_in, params + tensor(t - 3), v + lnf_mean_,
                                     v + lnf_rstd_, N, C);
        } else {
            std::copy(dout, dout + activation_size(), dresidual.begin());
        }
        for (std::size_t i = blocks_.size(); i-- > 0;) {
            const auto& b = blocks_[i];
            auto w = [&](int k) { return params + block_tensor(i, k); };
            const R* x = i == 0 ? v + input_ : v + blocks_[i - 1].out;
            const std::size_t n = activation_size();
            // out = res2 + fcproj(gelu(fc(ln2(res2))))
            std::copy(dresidual.begin(), dresidual.end(), v + b.d_out);
            std::vector<R> d_gelu(n * 4, R(0));
            matmul_backward_input(d_gelu.data(), v + b.d_out, w(gpt::fcprojw), N, 4 * C, C);
            std::fill(v + b.d_fch, v + b.d_fch + n * 4, R(0));
            gelu_backward(v + b.d_fch, v + b.fch, d_gelu.data(), n * 4);
            std::fill(v + b.d_ln2, v + b.d_ln2 + n, R(0));
            matmul_backward_input(v + b.d_ln2, v + b.d_fch, w(gpt::fcw), N, C, 4 * C);
            layernorm_backward_input(dresidual.data(), v + b.d_ln2, v + b.res2, w(gpt::ln2w), v + b.ln2_mean,
                                     v + b.ln2_rstd, N, C);
            // res2 = x + attproj(attention(qkv(ln1(x))))
            std::copy(dresidual.begin(), dresidual.end(), v + b.d_res2);
            std::vector<R> d_atty(n, R(0));
            matmul_backward_input(d_atty.data(), v + b.d_res2, w(gpt::attprojw), N, C, C);
            std::fill(v + b.d_qkv, v + b.d_qkv + n * 3, R(0));
            attention_backward(v + b.d_qkv, d_atty.data(), v + b.qkv, v + b.att, B_, T_, C, c_.heads);
            std::fill(v + b.d_ln1, v + b.d_ln1 + n, R(0));
            matmul_backward_input(v + b.d_ln1, v + b.d_qkv, w(gpt::qkvw), N, C, 3 * C);
            layernorm_backward_input(dresidual.data(), v + b.d_ln1, x, w(gpt::ln1w), v + b.ln1_mean, v + b.ln1_rstd,
                                     N, C);
        }
        dx = dresidual.data();
        std::copy(dx, dx + activation_size(), v + d_input_);
        if (!l_.embedding) std::copy(dx, dx + activation_size(), dinput);
        s.input_backward_done = true;
    }

    // Weight-gradient backward: adds this micro-batch's contribution into the
    // stage's gradient buffer (same layout as the parameters).
    void backward_weight(R* grads, const stash<R>& s) const {
        const int N = B_ * T_, C = c_.channels;
        const R* v = s.values.data();
        if (l_.head) {
            const std::size_t t = tensor_offset_.size();
            matmul_backward_weight(grads + tensor(t - 1), static_cast<R*>(nullptr), v + d_logits_, v + lnf_, N, C,
                                   c_.padded_vocab);
            const R* last_in = blocks_.empty() ? v + input_ : v + blocks_.back().out;
            layernorm_backward_weight(grads + tensor(t - 3), grads + tensor(t - 2), v + d_lnf_, last_in, v + lnf_mean_,
                                      v + lnf_rstd_, N, C);
        }
        for (std::size_t i = blocks_.size(); i-- > 0;) {
            const auto& b = blocks_[i];
            auto g = [&](int k) { return grads + block_tensor(i, k); };
            const R* x = i == 0 ? v + input_ : v + blocks_[i - 1].out;
            matmul_backward_weight(g(gpt::fcprojw), g(gpt::fcprojb), v + b.d_out, v + b.fch_gelu, N, 4 * C, C);
            matmul_backward_weight(g(gpt::fcw), g(gpt::fcb), v + b.d_fch, v + b.ln2, N, C, 4 * C);
            layernorm_backward_weight(g(gpt::ln2w), g(gpt::ln2b), v + b.d_ln2, v + b.res2, v + b.ln2_mean,
                                      v + b.ln2_rstd, N, C);
            matmul_backward_weight(g(gpt::attprojw), g(gpt::attprojb), v + b.d_res2, v + b.atty, N, C, C);
            matmul_backward_weight(g(gpt::qkvw), g(gpt::qkvb), v + b.d_qkv, v + b.ln1, N, C, 3 * C);
            layernorm_backward_weight(g(gpt::ln1w), g(gpt::ln1b), v + b.d_ln1, x, v + b.ln1_mean, v + b.ln1_rstd, N, C);
        }
        if (l_.embedding) encoder_backward(grads + tensor(0), grads + tensor(1), v + d_input_, s.tokens.data(), B_, T_, C);
    }

private:
    std::size_t tensor(std::size_t local_index) const { return tensor_offset_[local_index]; }
    std::size_t block_tensor(std::size_t block, int k) const {
        return tensor((l_.embedding ? 2 : 0) + block * gpt::block_tensor_count + static_cast<std::size_t>(k));
    }

    gpt::gpt_config c_;
    gpt::stage_layout l_;
    int B_, T_;
    std::size_t stash_size_ = 0;
    std::size_t input_ = 0, d_input_ = 0;
    std::vector<gpt::block_stash> blocks_;
    std::size_t lnf_ = 0, lnf_mean_ = 0, lnf_rstd_ = 0, probs_ = 0, losses_ = 0, d_logits_ = 0, d_lnf_ = 0;
    std::vector<std::size_t> tensor_offset_;  // offsets of the stage's tensors in the stage buffer
};

}  // namespace chimera::runtime::cpu
