// Host-side declarations of the hand-written CUDA kernels (docs/design/runtime-contract.md#kernels-and-their-cpu-twins).
// Plain C++ (only the CUDA runtime header), so host .cpp files compiled by
// g++ can launch kernels; the kernels themselves live in kernels.cuh and are
// compiled once, in kernels.cu. Argument order follows the CPU twins in
// cpu/kernels.hpp: outputs, inputs, sizes, then the stream. Every launcher
// is asynchronous on `stream`. Backward kernels add into their gradient
// outputs, like the twins; no kernel uses float atomics.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "cuda_api.hpp"

#include "../common/math.hpp"

namespace chimera::runtime::gpu {

// True when a CUDA device is usable; otherwise `reason` says why (no
// driver, no device). GPU tests exit 77 when this is false.
bool device_available(std::string& reason);
// Throws std::runtime_error naming `what` when `status` is an error.
void check(cudaError_t status, const char* what);

// --- embeddings -------------------------------------------------------------
void encoder_forward(float* out, const int* tokens, const float* wte, const float* wpe, int B, int T, int C,
                     cudaStream_t stream);
// Tokens bucketed on the host (deterministic backward without atomics):
// [U, unique tokens (U), bucket starts (U+1), positions (B*T)], positions
// increasing inside a bucket.
std::vector<int> token_buckets(const int* tokens, int count);
// `buckets` is the device copy of token_buckets(); `unique` its U.
void encoder_backward(float* dwte, float* dwpe, const float* dout, const int* buckets, int unique, int B, int T, int C,
                      cudaStream_t stream);

// --- layernorm, residual, GELU --------------------------------------------
void layernorm_forward(float* out, float* mean, float* rstd, const float* inp, const float* weight, const float* bias,
                       int N, int C, cudaStream_t stream);
void layernorm_backward_input(float* dinp, const float* dout, const float* inp, const float* weight,
                              const float* mean, const float* rstd, int N, int C, cudaStream_t stream);
// Column reductions (layernorm_backward_weight, the bias gradients of the
// matmuls) run in two passes over blocks of this many rows: ceil(N / it)
// row blocks, their partial sums in a stream-ordered temporary
// (cudaMallocAsync) when there is more than one; fixed order, no atomics.
constexpr int column_rows_per_block = 256;
void layernorm_backward_weight(float* dweight, float* dbias, const float* dout, const float* inp, const float* mean,
                               const float* rstd, int N, int C, cudaStream_t stream);
void residual_forward(float* out, const float* a, const float* b, std::size_t n, cudaStream_t stream);
void gelu_forward(float* out, const float* inp, std::size_t n, cudaStream_t stream);
void gelu_backward(float* dinp, const float* inp, const float* dout, std::size_t n, cudaStream_t stream);

// --- GEMM ladder ----------------------------------------------------------
// out[m*ldc + n] = (accumulate ? out : 0) + bias[n] + sum_k A(m,k) B(k,n),
// with A(m,k) = A[m*a_m + k*a_k] and B(k,n) = B[k*b_k + n*b_n] (any of the
// three matmul layouts). G0: one thread per output. G1: 64x64 block tiles in
// shared memory, 4x4 outputs per thread.
struct gemm_args {
    float* out;
    const float *a, *b, *bias;
    long long a_m, a_k, b_k, b_n;
    int M, N, K, ldc;
    bool accumulate;
    // The device memory a kernel taking these by value touches (the CUDA
    // emulator checks it against unordered legacy-stream writes).
    std::array<const void*, 4> device_pointers() const { return {out, a, b, bias}; }
};
void gemm_g0(const gemm_args& g, cudaStream_t stream);
void gemm_g1(const gemm_args& g, cudaStream_t stream);
// G2: bf16 inputs (bit patterns), fp32 accumulate and output, tensor cores
// (mma.sync m16n8k16, ldmatrix, a 3-stage cp.async pipeline). Layout NT only:
// out[M,N] = A[M,K] * B[N,K]^T, K a multiple of 8 (16-byte rows).
void gemm_g2_bf16(float* out, const std::uint16_t* a, const std::uint16_t* b, int M, int N, int K,
                  cudaStream_t stream);
// G2 with G0/G1's epilogue: out[m*ldc + n] = (accumulate ? out : 0) +
// bias[n] (when not null) + sum_k A[m,k] B[n,k]; K a multiple of 8, a and b
// 16-byte aligned.
void gemm_g2_bf16(float* out, const std::uint16_t* a, const std::uint16_t* b, const float* bias, int M, int N, int K,
                  int ldc, bool accumulate, cudaStream_t stream);
// G2's K: rounded up to a multiple of 8 (16-byte rows for cp.async).
inline int bf16_padded(int k) { return (k + 7) / 8 * 8; }
// bf16 operands for G2, padding with zeros: out[r, k] = bf16(in[r, k]) with
// row stride padded_cols >= cols; transposed, out[c, r] = bf16(in[r, c])
// with row stride padded_rows >= rows. `in` is fp32 [rows, cols].
void cast_to_bf16_padded(std::uint16_t* out, const float* in, int rows, int cols, int padded_cols,
                         cudaStream_t stream);
void transpose_to_bf16_padded(std::uint16_t* out, const float* in, int rows, int cols, int padded_rows,
                              cudaStream_t stream);

// The three matmul layouts of the model on G1 (as the CPU twins).
void matmul_forward(float* out, const float* inp, const float* weight, const float* bias, int N, int C, int OC,
                    cudaStream_t stream);
void matmul_backward_input(float* dinp, const float* dout, const float* weight, int N, int C, int OC,
                           cudaStream_t stream);
void matmul_backward_weight(float* dweight, float* dbias, const float* dout, const float* inp, int N, int C, int OC,
                            cudaStream_t stream);
// The same three layouts on G2 (bf16 tensor cores, fp32 accumulate, fp32
// inputs and outputs): inputs rounded to bf16 into `scratch`, which holds
// matmul_bf16_scratch(N, C, OC) elements and is in use until the stream
// reaches the end of the call. The bias gradient stays an fp32 column sum.
std::size_t matmul_bf16_scratch(int N, int C, int OC);
void matmul_forward_bf16(float* out, const float* inp, const float* weight, const float* bias, int N, int C, int OC,
                         std::uint16_t* scratch, cudaStream_t stream);
void matmul_backward_input_bf16(float* dinp, const float* dout, const float* weight, int N, int C, int OC,
                                std::uint16_t* scratch, cudaStream_t stream);
void matmul_backward_weight_bf16(float* dweight, float* dbias, const float* dout, const float* inp, int N, int C,
                                 int OC, std::uint16_t* scratch, cudaStream_t stream);

// --- attention v1 (unfused) ------------------------------------------------
// att: [B, NH, T, T] softmax probabilities (kept for backward). scratch for
// backward: B*NH*T*T floats.
void attention_forward(float* out, float* att, const float* qkv, int B, int T, int C, int NH, cudaStream_t stream);
void attention_backward(float* dqkv, float* scratch, const float* dout, const float* qkv, const float* att, int B,
                        int T, int C, int NH, cudaStream_t stream);
// Attention v2: flash-style forward with the online softmax (head size 64):
// never stores T x T; saves the row log-sum-exp ([B, NH, T]).
void attention_forward_flash(float* out, float* lse, const float* qkv, int B, int T, int C, int NH,
                             cudaStream_t stream);
// Its backward (adds into dqkv, like attention_backward) from the forward's
// out and lse; recomputes the probabilities tile by tile, no T x T buffer.
// scratch: B*NH*T floats (the row dots dout.out).
void attention_backward_flash(float* dqkv, float* scratch, const float* dout, const float* qkv, const float* out,
                              const float* lse, int B, int T, int C, int NH, cudaStream_t stream);

// --- loss -----------------------------------------------------------------
// Fused softmax + cross-entropy + dlogits: losses[n] per row, and logits is
// overwritten with (softmax - onehot(target)) * scale over the first V of Vp
// columns (padding columns 0). Never stores probabilities.
void fused_classifier(float* logits, float* losses, const int* targets, float scale, int N, int V, int Vp,
                      cudaStream_t stream);

// --- optimizer, reductions, casts ------------------------------------------
void adamw(float* params, float* first_moment, float* second_moment, const float* grads, std::size_t n, int step,
           const math::adamw_params& p, bool decay, cudaStream_t stream);
// out[0] = sum of in (squares when `squares`), one block, fixed order.
void deterministic_sum(float* out, const float* in, std::size_t n, bool squares, cudaStream_t stream);
// out[i] = members[0][i] + members[1][i] + ... in member order; `members` is
// a device array of `count` device pointers.
void replica_sum(float* out, const float* const* members, int count, std::size_t n, cudaStream_t stream);
void cast_to_bf16(std::uint16_t* out, const float* in, std::size_t n, cudaStream_t stream);
void cast_from_bf16(float* out, const std::uint16_t* in, std::size_t n, cudaStream_t stream);

}  // namespace chimera::runtime::gpu
