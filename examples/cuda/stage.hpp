// One model stage on the GPU: the same sequence of kernels as
// cpu::stage_model<float>, on one stream. Activations of one micro-batch
// live in one stream-ordered device allocation (the stash; the memory pool
// keeps what it frees, keep_pool_memory); its tokens and targets go up
// through page-locked slots, without a host synchronization. Temporaries of
// a backward live in a per-stage workspace, which is safe because
// everything of a worker runs in order on its stream.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "cuda_api.hpp"

#include "../gpt/model.hpp"
#include "../gpt/stash.hpp"
#include "device.hpp"
#include "gpu_kernels.hpp"

namespace chimera::runtime::gpu {

// Everything one micro-batch leaves on a stage between F and its backward.
struct gpu_stash {
    float* values = nullptr;   // activations and the gradients kept for W (device)
    int* ints = nullptr;       // tokens, targets, encoder buckets (device)
    int unique_tokens = 0;     // stage 0: buckets of the encoder backward
    bool input_backward_done = false;
};

// Arithmetic of the matmuls (docs/design/runtime-contract.md#kernels-and-their-cpu-twins). bf16: the inputs of every
// matmul are rounded to bf16 and multiplied on tensor cores (G2) with fp32
// accumulation; everything else stays fp32: parameters (the master
// weights), gradients, AdamW moments, activations and the other kernels.
enum class precision { fp32, bf16 };

// Choices of the GPU stage model beyond the model itself.
struct gpu_stage_options {
    gpt::attention_kind attention = gpt::attention_kind::v1;  // flash: head size 64 only
    precision arithmetic = precision::fp32;
};

class gpu_stage_model {
public:
    gpu_stage_model(const gpt::gpt_config& config, const gpt::stage_layout& layout, int batch, int seq,
                    const gpu_stage_options& options = {})
        : c_(config), l_(layout), B_(batch), T_(seq), attention_(options.attention), precision_(options.arithmetic),
          staging_(max_ints() * sizeof(int)) {
        // G2's body is empty below sm_80: refuse rather than compute nothing.
        if (precision_ == precision::bf16)
            require_compute_capability(8, 0, "--precision bf16 (G2: mma.sync bf16, ldmatrix, cp.async)");
        keep_pool_memory();
        if (attention_ == gpt::attention_kind::flash && (c_.channels % c_.heads != 0 || c_.channels / c_.heads != 64))
            throw std::invalid_argument("flash attention needs head size 64; this model has C/NH = " +
                                        std::to_string(c_.channels) + "/" + std::to_string(c_.heads));
        const std::size_t BT = static_cast<std::size_t>(B_) * T_, C = static_cast<std::size_t>(c_.channels);
        gpt::stash_allocator stash;
        auto take = [&](std::size_t n) { return stash.take(n); };
        input_ = take(BT * C);
        for (int l = l_.first_block; l < l_.last_block; ++l) {
            blocks_.push_back(gpt::take_block_stash(stash, c_, B_, T_, attention_));
        }
        if (l_.head) {
            lnf_ = take(BT * C), lnf_mean_ = take(BT), lnf_rstd_ = take(BT);
            d_logits_ = take(BT * c_.padded_vocab), losses_ = take(BT), d_lnf_ = take(BT * C);
        }
        d_input_ = take(BT * C);
        stash_size_ = stash.size;
        const auto table = gpt::tensor_table(c_);
        for (std::size_t t = l_.first_tensor; t < l_.last_tensor; ++t) tensor_offset_.push_back(table[t].offset - l_.offset);
        // Workspace: the residual gradient, the widest temporary, attention
        // scratch (v1: T x T per head; flash: one float per row and head).
        workspace_size_ = BT * C + BT * 4 * C + gpt::attention_saved_size(attention_, c_, B_, T_);
        check(cudaMalloc(reinterpret_cast<void**>(&workspace_), workspace_size_ * sizeof(float)), "cudaMalloc workspace");
        if (precision_ == precision::bf16) {
            // The bf16 operands of the widest matmul of this stage.
            const int N = B_ * T_, Cn = c_.channels;
            std::size_t scratch = std::max({matmul_bf16_scratch(N, Cn, 3 * Cn), matmul_bf16_scratch(N, Cn, 4 * Cn),
                                            matmul_bf16_scratch(N, 4 * Cn, Cn)});
            if (l_.head) scratch = std::max(scratch, matmul_bf16_scratch(N, Cn, c_.padded_vocab));
            check(cudaMalloc(reinterpret_cast<void**>(&bf16_scratch_), scratch * sizeof(std::uint16_t)),
                  "cudaMalloc bf16 scratch");
        }
    }
    gpu_stage_model(const gpu_stage_model&) = delete;
    gpu_stage_model& operator=(const gpu_stage_model&) = delete;
    ~gpu_stage_model() {
        cudaFree(workspace_);
        if (bf16_scratch_) cudaFree(bf16_scratch_);
    }
    precision arithmetic() const { return precision_; }

    std::size_t parameter_size() const { return l_.size; }
    std::size_t activation_size() const { return static_cast<std::size_t>(B_) * T_ * c_.channels; }
    const gpt::stage_layout& layout() const { return l_; }
    gpt::attention_kind attention() const { return attention_; }
    int rows() const { return B_ * T_; }
    // Device offset of the per-row losses inside a head stage's stash.
    std::size_t losses_offset() const { return losses_; }

    // Allocates the stash on `stream` and uploads the tokens (stage 0) and
    // targets (last stage).
    gpu_stash make_stash(const std::vector<int>& tokens, const std::vector<int>& targets, cudaStream_t stream) const {
        gpu_stash s;
        check(cudaMallocAsync(reinterpret_cast<void**>(&s.values), stash_size_ * sizeof(float), stream), "stash");
        std::vector<int> ints;
        if (l_.embedding) {
            ints = tokens;
            const auto buckets = token_buckets(tokens.data(), static_cast<int>(tokens.size()));
            s.unique_tokens = buckets[0];
            ints.insert(ints.end(), buckets.begin(), buckets.end());
        }
        if (l_.head) ints.insert(ints.end(), targets.begin(), targets.end());
        if (!ints.empty()) {
            check(cudaMallocAsync(reinterpret_cast<void**>(&s.ints), ints.size() * sizeof(int), stream), "stash ints");
            staging_.upload(s.ints, ints, stream);  // no host synchronization
        }
        return s;
    }
    // Page-locked slots of the token uploads (one per upload in flight).
    std::size_t staging_slots() const { return staging_.slots(); }
    static void free_stash(gpu_stash& s, cudaStream_t stream) {
        if (s.values) cudaFreeAsync(s.values, stream);
        if (s.ints) cudaFreeAsync(s.ints, stream);
        s = gpu_stash{};
    }

    // As cpu::stage_model::forward; the last stage also runs the fused
    // classifier, leaving dlogits (already scaled by loss_scale / rows) and
    // the per-row losses in the stash.
    void forward(const float* params, gpu_stash& s, const float* input, float* output, float loss_scale,
                 cudaStream_t st) const {
        const int N = B_ * T_, C = c_.channels;
        float* v = s.values;
        if (l_.embedding)
            encoder_forward(v + input_, s.ints, params + tensor(0), params + tensor(1), B_, T_, C, st);
        else
            check(cudaMemcpyAsync(v + input_, input, activation_size() * sizeof(float), cudaMemcpyDeviceToDevice, st),
                  "stage input");
        const float* x = v + input_;
        const std::size_t n = activation_size();
        for (std::size_t i = 0; i < blocks_.size(); ++i) {
            const auto& b = blocks_[i];
            auto w = [&](int k) { return params + block_tensor(i, k); };
            layernorm_forward(v + b.ln1, v + b.ln1_mean, v + b.ln1_rstd, x, w(gpt::ln1w), w(gpt::ln1b), N, C, st);
            matmul_forward(v + b.qkv, v + b.ln1, w(gpt::qkvw), w(gpt::qkvb), N, C, 3 * C, st);
            if (attention_ == gpt::attention_kind::flash)
                attention_forward_flash(v + b.atty, v + b.att, v + b.qkv, B_, T_, C, c_.heads, st);
            else
                attention_forward(v + b.atty, v + b.att, v + b.qkv, B_, T_, C, c_.heads, st);
            matmul_forward(v + b.res2, v + b.atty, w(gpt::attprojw), w(gpt::attprojb), N, C, C, st);
            residual_forward(v + b.res2, x, v + b.res2, n, st);
            layernorm_forward(v + b.ln2, v + b.ln2_mean, v + b.ln2_rstd, v + b.res2, w(gpt::ln2w), w(gpt::ln2b), N, C, st);
            matmul_forward(v + b.fch, v + b.ln2, w(gpt::fcw), w(gpt::fcb), N, C, 4 * C, st);
            gelu_forward(v + b.fch_gelu, v + b.fch, n * 4, st);
            matmul_forward(v + b.out, v + b.fch_gelu, w(gpt::fcprojw), w(gpt::fcprojb), N, 4 * C, C, st);
            residual_forward(v + b.out, v + b.res2, v + b.out, n, st);
            x = v + b.out;
        }
        if (l_.head) {
            const std::size_t t = tensor_offset_.size();
            layernorm_forward(v + lnf_, v + lnf_mean_, v + lnf_rstd_, x, params + tensor(t - 3), params + tensor(t - 2),
                              N, C, st);
            logits(params, s, v + d_logits_, st);
            fused_classifier(v + d_logits_, v + losses_, targets(s), loss_scale / static_cast<float>(N), N, c_.vocab,
                             c_.padded_vocab, st);
        } else {
            check(cudaMemcpyAsync(output, x, n * sizeof(float), cudaMemcpyDeviceToDevice, st), "stage output");
        }
    }

    // The last stage's logits [B*T, Vp] into `out` for a stash its forward
    // filled: the classifier matmul on the stashed final layernorm output
    // (the forward overwrites its own copy with dlogits; V4 compares these).
    void logits(const float* params, const gpu_stash& s, float* out, cudaStream_t st) const {
        if (!l_.head) throw std::logic_error("gpu_stage_model::logits: not the last stage");
        matmul_forward(out, s.values + lnf_, params + tensor(tensor_offset_.size() - 1), nullptr, B_ * T_,
                       c_.channels, c_.padded_vocab, st);
    }

    void backward_input(const float* params, gpu_stash& s, const float* dout, float* dinput, cudaStream_t st) const {
        const int N = B_ * T_, C = c_.channels;
        const std::size_t n = activation_size();
        float* v = s.values;
        float* dresidual = workspace_;
        float* wide = workspace_ + n;           // d_gelu (4n) or d_atty (n)
        float* scratch = workspace_ + 5 * n;    // attention backward
        auto zero = [&](float* p, std::size_t count) { check(cudaMemsetAsync(p, 0, count * sizeof(float), st), "memset"); };
        zero(dresidual, n);
        if (l_.head) {
            const std::size_t t = tensor_offset_.size();
            zero(v + d_lnf_, n);
            matmul_backward_input(v + d_lnf_, v + d_logits_, params + tensor(t - 1), N, C, c_.padded_vocab, st);
            const float* last_in = blocks_.empty() ? v + input_ : v + blocks_.back().out;
            layernorm_backward_input(dresidual, v + d_lnf_, last_in, params + tensor(t - 3), v + lnf_mean_,
                                     v + lnf_rstd_, N, C, st);
        } else {
            check(cudaMemcpyAsync(dresidual, dout, n * sizeof(float), cudaMemcpyDeviceToDevice, st), "stage dout");
        }
        for (std::size_t i = blocks_.size(); i-- > 0;) {
            const auto& b = blocks_[i];
            auto w = [&](int k) { return params + block_tensor(i, k); };
            const float* x = i == 0 ? v + input_ : v + blocks_[i - 1].out;
            check(cudaMemcpyAsync(v + b.d_out, dresidual, n * sizeof(float), cudaMemcpyDeviceToDevice, st), "copy");
            zero(wide, 4 * n);
            matmul_backward_input(wide, v + b.d_out, w(gpt::fcprojw), N, 4 * C, C, st);
            zero(v + b.d_fch, 4 * n);
            gelu_backward(v + b.d_fch, v + b.fch, wide, n * 4, st);
            zero(v + b.d_ln2, n);
            matmul_backward_input(v + b.d_ln2, v + b.d_fch, w(gpt::fcw), N, C, 4 * C, st);
            layernorm_backward_input(dresidual, v + b.d_ln2, v + b.res2, w(gpt::ln2w), v + b.ln2_mean, v + b.ln2_rstd,
                                     N, C, st);
            check(cudaMemcpyAsync(v + b.d_res2, dresidual, n * sizeof(float), cudaMemcpyDeviceToDevice, st), "copy");
            zero(wide, n);
            matmul_backward_input(wide, v + b.d_res2, w(gpt::attprojw), N, C, C, st);
            zero(v + b.d_qkv, 3 * n);
            if (attention_ == gpt::attention_kind::flash)
                attention_backward_flash(v + b.d_qkv, scratch, wide, v + b.qkv, v + b.atty, v + b.att, B_, T_, C,
                                         c_.heads, st);
            else
                attention_backward(v + b.d_qkv, scratch, wide, v + b.qkv, v + b.att, B_, T_, C, c_.heads, st);
            zero(v + b.d_ln1, n);
            matmul_backward_input(v + b.d_ln1, v + b.d_qkv, w(gpt::qkvw), N, C, 3 * C, st);
            layernorm_backward_input(dresidual, v + b.d_ln1, x, w(gpt::ln1w), v + b.ln1_mean, v + b.ln1_rstd, N, C, st);
        }
        check(cudaMemcpyAsync(v + d_input_, dresidual, n * sizeof(float), cudaMemcpyDeviceToDevice, st), "copy");
        if (!l_.embedding)
            check(cudaMemcpyAsync(dinput, dresidual, n * sizeof(float), cudaMemcpyDeviceToDevice, st), "copy");
        s.input_backward_done = true;
    }

    void backward_weight(float* grads, const gpu_stash& s, cudaStream_t st) const {
        const int N = B_ * T_, C = c_.channels;
        const float* v = s.values;
        if (l_.head) {
            const std::size_t t = tensor_offset_.size();
            matmul_backward_weight(grads + tensor(t - 1), nullptr, v + d_logits_, v + lnf_, N, C, c_.padded_vocab, st);
            const float* last_in = blocks_.empty() ? v + input_ : v + blocks_.back().out;
            layernorm_backward_weight(grads + tensor(t - 3), grads + tensor(t - 2), v + d_lnf_, last_in, v + lnf_mean_,
                                      v + lnf_rstd_, N, C, st);
        }
        for (std::size_t i = blocks_.size(); i-- > 0;) {
            const auto& b = blocks_[i];
            auto g = [&](int k) { return grads + block_tensor(i, k); };
            const float* x = i == 0 ? v + input_ : v + blocks_[i - 1].out;
            matmul_backward_weight(g(gpt::fcprojw), g(gpt::fcprojb), v + b.d_out, v + b.fch_gelu, N, 4 * C, C, st);
            matmul_backward_weight(g(gpt::fcw), g(gpt::fcb), v + b.d_fch, v + b.ln2, N, C, 4 * C, st);
            layernorm_backward_weight(g(gpt::ln2w), g(gpt::ln2b), v + b.d_ln2, v + b.res2, v + b.ln2_mean,
                                      v + b.ln2_rstd, N, C, st);
            matmul_backward_weight(g(gpt::attprojw), g(gpt::attprojb), v + b.d_res2, v + b.atty, N, C, C, st);
            matmul_backward_weight(g(gpt::qkvw), g(gpt::qkvb), v + b.d_qkv, v + b.ln1, N, C, 3 * C, st);
            layernorm_backward_weight(g(gpt::ln1w), g(gpt::ln1b), v + b.d_ln1, x, v + b.ln1_mean, v + b.ln1_rstd, N, C,
                                      st);
        }
        if (l_.embedding)
            encoder_backward(grads + tensor(0), grads + tensor(1), v + d_input_, buckets(s), s.unique_tokens, B_, T_, C,
                             st);
    }

private:
    // Named as the free launchers they wrap, so forward and backward above
    // call these (class scope hides the namespace) and read the same in
    // both precisions.
    void matmul_forward(float* out, const float* inp, const float* weight, const float* bias, int N, int C, int OC,
                        cudaStream_t st) const {
        if (precision_ == precision::bf16) gpu::matmul_forward_bf16(out, inp, weight, bias, N, C, OC, bf16_scratch_, st);
        else gpu::matmul_forward(out, inp, weight, bias, N, C, OC, st);
    }
    void matmul_backward_input(float* dinp, const float* dout, const float* weight, int N, int C, int OC,
                               cudaStream_t st) const {
        if (precision_ == precision::bf16) gpu::matmul_backward_input_bf16(dinp, dout, weight, N, C, OC, bf16_scratch_, st);
        else gpu::matmul_backward_input(dinp, dout, weight, N, C, OC, st);
    }
    void matmul_backward_weight(float* dweight, float* dbias, const float* dout, const float* inp, int N, int C, int OC,
                                cudaStream_t st) const {
        if (precision_ == precision::bf16)
            gpu::matmul_backward_weight_bf16(dweight, dbias, dout, inp, N, C, OC, bf16_scratch_, st);
        else gpu::matmul_backward_weight(dweight, dbias, dout, inp, N, C, OC, st);
    }

    // The most ints make_stash uploads: tokens and their buckets
    // (1 + 2U + 1 + BT, U <= BT) on stage 0, targets on the last stage.
    std::size_t max_ints() const {
        const std::size_t BT = static_cast<std::size_t>(B_) * T_;
        return (l_.embedding ? BT + 3 * BT + 2 : 0) + (l_.head ? BT : 0);
    }
    std::size_t tensor(std::size_t local_index) const { return tensor_offset_[local_index]; }
    std::size_t block_tensor(std::size_t block, int k) const {
        return tensor((l_.embedding ? 2 : 0) + block * gpt::block_tensor_count + static_cast<std::size_t>(k));
    }
    // Layout of gpu_stash::ints: [tokens (BT), buckets (1 + 2U + 1 + BT)] on stage 0, then targets (BT).
    const int* buckets(const gpu_stash& s) const { return s.ints + rows(); }
    const int* targets(const gpu_stash& s) const {
        return l_.embedding ? s.ints + rows() + (1 + 2 * s.unique_tokens + 1 + rows()) : s.ints;
    }

    gpt::gpt_config c_;
    gpt::stage_layout l_;
    int B_, T_;
    gpt::attention_kind attention_;
    std::size_t stash_size_ = 0;
    std::size_t input_ = 0, d_input_ = 0;
    std::vector<gpt::block_stash> blocks_;
    std::size_t lnf_ = 0, lnf_mean_ = 0, lnf_rstd_ = 0, d_logits_ = 0, losses_ = 0, d_lnf_ = 0;
    std::vector<std::size_t> tensor_offset_;
    float* workspace_ = nullptr;
    std::size_t workspace_size_ = 0;
    precision precision_ = precision::fp32;
    std::uint16_t* bf16_scratch_ = nullptr;  // bf16 only: the operands of one matmul
    mutable pinned_uploader staging_;         // make_stash's tokens and targets
};

}  // namespace chimera::runtime::gpu
