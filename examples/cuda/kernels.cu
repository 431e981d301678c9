// The one CUDA translation unit of the runtime (docs/design/runtime-contract.md#building-and-testing-without-a-gpu: no -rdc,
// kernels in a header, one .cu per binary): launch shapes for every kernel
// declared in gpu_kernels.hpp. No fmt here (it does not compile under nvcc).
#include <algorithm>
#include <stdexcept>
#include <string>
#include <vector>

#include "gpu_kernels.hpp"
#include "kernels.cuh"

namespace chimera::runtime::gpu {

namespace k = kernels;
using k::grid_for;
using k::threads;

bool device_available(std::string& reason) {
    int count = 0;
    const cudaError_t status = cudaGetDeviceCount(&count);
    if (status != cudaSuccess) {
        reason = std::string("cudaGetDeviceCount failed: ") + cudaGetErrorString(status);
        return false;
    }
    if (count == 0) {
        reason = "no CUDA device";
        return false;
    }
    return true;
}

void check(cudaError_t status, const char* what) {
    if (status != cudaSuccess) throw std::runtime_error(std::string(what) + ": " + cudaGetErrorString(status));
}

namespace {
void launched(const char* what) { check(cudaGetLastError(), what); }
// Threads per row for the per-row kernels: a multiple of 32, at most 1024.
unsigned row_threads(int columns) {
    return static_cast<unsigned>(std::clamp((columns + 31) / 32 * 32, 32, 1024));
}
}  // namespace

void encoder_forward(float* out, const int* tokens, const float* wte, const float* wpe, int B, int T, int C,
                     cudaStream_t stream) {
    CHIMERA_LAUNCH(k::encoder_forward, grid_for(static_cast<size_t>(B) * T * C), threads, stream)(out, tokens, wte, wpe, B, T, C);
    launched("encoder_forward");
}

std::vector<int> token_buckets(const int* tokens, int count) {
    std::vector<int> order(static_cast<size_t>(count));
    for (int i = 0; i < count; ++i) order[static_cast<size_t>(i)] = i;
    std::stable_sort(order.begin(), order.end(), [&](int x, int y) { return tokens[x] < tokens[y]; });
    std::vector<int> unique, starts;
    for (int i = 0; i < count; ++i)
        if (i == 0 || tokens[order[static_cast<size_t>(i)]] != tokens[order[static_cast<size_t>(i - 1)]])
            unique.push_back(tokens[order[static_cast<size_t>(i)]]), starts.push_back(i);
    starts.push_back(count);
    std::vector<int> packed{static_cast<int>(unique.size())};
    packed.insert(packed.end(), unique.begin(), unique.end());
    packed.insert(packed.end(), starts.begin(), starts.end());
    packed.insert(packed.end(), order.begin(), order.end());
    return packed;
}

void encoder_backward(float* dwte, float* dwpe, const float* dout, const int* buckets, int unique, int B, int T, int C,
                      cudaStream_t stream) {
    if (unique > 0) {
        const dim3 grid(grid_for(static_cast<size_t>(C), 128), static_cast<unsigned>(unique));
        CHIMERA_LAUNCH(k::encoder_backward_wte, grid, 128, stream)(dwte, dout, buckets, C);
    }
    CHIMERA_LAUNCH(k::encoder_backward_wpe, grid_for(static_cast<size_t>(T) * C), threads, stream)(dwpe, dout, B, T, C);
    launched("encoder_backward");
}

void layernorm_forward(float* out, float* mean, float* rstd, const float* inp, const float* weight, const float* bias,
                       int N, int C, cudaStream_t stream) {
    CHIMERA_LAUNCH(k::layernorm_forward, N, row_threads(std::min(C, 256)), stream)(out, mean, rstd, inp, weight, bias, C);
    launched("layernorm_forward");
}

void layernorm_backward_input(float* dinp, const float* dout, const float* inp, const float* weight,
                              const float* mean, const float* rstd, int N, int C, cudaStream_t stream) {
    CHIMERA_LAUNCH(k::layernorm_backward_input, N, row_threads(std::min(C, 256)), stream)(dinp, dout, inp, weight, mean, rstd,
                                                                                  C);
    launched("layernorm_backward_input");
}

namespace {
// Runs pass 1 of a column reduction (`partial_kernel`, which gets the
// partial buffer) and, with several row blocks, pass 2; the buffer is
// stream-ordered and lives until pass 2 is done.
template <class Launch>
void column_reduction(float* out0, float* out1, int sums, int N, int C, cudaStream_t stream, const char* what,
                      Launch partial_kernel) {
    if (N <= 0 || C <= 0) return;
    const unsigned row_blocks = grid_for(static_cast<size_t>(N), column_rows_per_block);
    if (row_blocks > 65535)
        throw std::invalid_argument(std::string(what) + ": " + std::to_string(N) + " rows exceed 65535 row blocks of " +
                                    std::to_string(column_rows_per_block));
    const dim3 grid(grid_for(static_cast<size_t>(C), k::colsum_cols), row_blocks);
    float* partial = nullptr;
    if (row_blocks > 1)
        check(cudaMallocAsync(reinterpret_cast<void**>(&partial),
                              sizeof(float) * static_cast<size_t>(sums) * row_blocks * static_cast<size_t>(C), stream),
              what);
    partial_kernel(grid, partial);
    if (row_blocks > 1) {
        CHIMERA_LAUNCH(k::column_partials_finish, grid_for(static_cast<size_t>(C)), threads, stream)(
            out0, out1, partial, static_cast<int>(row_blocks), C);
        check(cudaFreeAsync(partial, stream), what);
    }
    launched(what);
}
void column_sum_add(float* out, const float* in, int rows, int cols, cudaStream_t stream, const char* what) {
    column_reduction(out, nullptr, 1, rows, cols, stream, what, [&](dim3 grid, float* partial) {
        CHIMERA_LAUNCH(k::column_sum_partial, grid, k::colsum_cols * k::colsum_lanes, stream)(out, partial, in, rows,
                                                                                             cols);
    });
}
}  // namespace

void layernorm_backward_weight(float* dweight, float* dbias, const float* dout, const float* inp, const float* mean,
                               const float* rstd, int N, int C, cudaStream_t stream) {
    column_reduction(dweight, dbias, 2, N, C, stream, "layernorm_backward_weight", [&](dim3 grid, float* partial) {
        CHIMERA_LAUNCH(k::layernorm_backward_weight_partial, grid, k::colsum_cols * k::colsum_lanes, stream)(
            dweight, dbias, partial, dout, inp, mean, rstd, N, C);
    });
}

void residual_forward(float* out, const float* a, const float* b, size_t n, cudaStream_t stream) {
    CHIMERA_LAUNCH(k::residual_forward, grid_for(n), threads, stream)(out, a, b, n);
    launched("residual_forward");
}

void gelu_forward(float* out, const float* inp, size_t n, cudaStream_t stream) {
    CHIMERA_LAUNCH(k::gelu_forward, grid_for(n), threads, stream)(out, inp, n);
    launched("gelu_forward");
}

void gelu_backward(float* dinp, const float* inp, const float* dout, size_t n, cudaStream_t stream) {
    CHIMERA_LAUNCH(k::gelu_backward, grid_for(n), threads, stream)(dinp, inp, dout, n);
    launched("gelu_backward");
}


void gemm_g0(const gemm_args& g, cudaStream_t stream) {
    if (g.M <= 0 || g.N <= 0) return;
    CHIMERA_LAUNCH(k::gemm_naive, dim3(grid_for(static_cast<size_t>(g.N), 128), static_cast<unsigned>(g.M)), 128, stream)(
        g);
    launched("gemm_g0");
}

void gemm_g1(const gemm_args& g, cudaStream_t stream) {
    if (g.M <= 0 || g.N <= 0) return;
    const dim3 grid(grid_for(static_cast<size_t>(g.N), k::g1_tile), grid_for(static_cast<size_t>(g.M), k::g1_tile));
    CHIMERA_LAUNCH(k::gemm_tiled, grid, 256, stream)(g);
    launched("gemm_g1");
}

void gemm_g2_bf16(float* out, const std::uint16_t* a, const std::uint16_t* b, int M, int N, int K,
                  cudaStream_t stream) {
    gemm_g2_bf16(out, a, b, nullptr, M, N, K, N, false, stream);
}

void gemm_g2_bf16(float* out, const std::uint16_t* a, const std::uint16_t* b, const float* bias, int M, int N, int K,
                  int ldc, bool accumulate, cudaStream_t stream) {
    if (K % 8 != 0) throw std::invalid_argument("gemm_g2_bf16: K must be a multiple of 8 (got " + std::to_string(K) + ")");
    if (ldc < N) throw std::invalid_argument("gemm_g2_bf16: ldc " + std::to_string(ldc) + " < N " + std::to_string(N));
    if (M <= 0 || N <= 0) return;
    const dim3 grid(grid_for(static_cast<size_t>(N), k::g2_tile), grid_for(static_cast<size_t>(M), k::g2_tile));
    const k::gemm_params g{out, nullptr, nullptr, bias, 0, 0, 0, 0, M, N, K, ldc, accumulate};
    // 108 KB of dynamic shared memory: above the default 48 KB, so the
    // kernel's limit is raised (a host-side attribute, no synchronization).
    const cudaError_t raised = cudaFuncSetAttribute(k::gemm_bf16_mma, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                                    static_cast<int>(k::g2_shared_bytes));
    if (raised != cudaSuccess) {
        cudaGetLastError();  // not sticky: clear it, the throw reports it
        int device = 0, limit = 0;
        cudaGetDevice(&device);
        cudaDeviceGetAttribute(&limit, cudaDevAttrMaxSharedMemoryPerBlockOptin, device);
        throw std::runtime_error("gemm_g2_bf16: needs " + std::to_string(k::g2_shared_bytes) +
                                 " bytes of shared memory per block (sm_80 or sm_90); device " +
                                 std::to_string(device) + " allows " + std::to_string(limit) + " (" +
                                 cudaGetErrorString(raised) + ")");
    }
    CHIMERA_LAUNCH_SHARED(k::gemm_bf16_mma, grid, k::g2_threads, k::g2_shared_bytes, stream)(g, a, b);
    launched("gemm_g2_bf16");
}

void cast_to_bf16_padded(std::uint16_t* out, const float* in, int rows, int cols, int padded_cols,
                         cudaStream_t stream) {
    if (padded_cols < cols)
        throw std::invalid_argument("cast_to_bf16_padded: padded_cols " + std::to_string(padded_cols) + " < cols " +
                                    std::to_string(cols));
    if (rows <= 0 || padded_cols <= 0) return;
    CHIMERA_LAUNCH(k::cast_to_bf16_padded, grid_for(static_cast<size_t>(rows) * padded_cols), threads, stream)(
        out, in, rows, cols, padded_cols);
    launched("cast_to_bf16_padded");
}

void transpose_to_bf16_padded(std::uint16_t* out, const float* in, int rows, int cols, int padded_rows,
                              cudaStream_t stream) {
    if (padded_rows < rows)
        throw std::invalid_argument("transpose_to_bf16_padded: padded_rows " + std::to_string(padded_rows) +
                                    " < rows " + std::to_string(rows));
    if (cols <= 0 || padded_rows <= 0) return;
    const dim3 grid(grid_for(static_cast<size_t>(cols), k::transpose_tile),
                    grid_for(static_cast<size_t>(padded_rows), k::transpose_tile));
    CHIMERA_LAUNCH(k::transpose_to_bf16_padded, grid, 256, stream)(out, in, rows, cols, padded_rows);
    launched("transpose_to_bf16_padded");
}

// The bf16 matmuls: both operands cast (and transposed where the layout
// needs it) into `scratch`, A first, then the NT kernel with the epilogue.
// A's part holds M * Kp elements, a multiple of 8, so B's rows stay 16-byte
// aligned.
std::size_t matmul_bf16_scratch(int N, int C, int OC) {
    const auto n = static_cast<std::size_t>(N), c = static_cast<std::size_t>(C), oc = static_cast<std::size_t>(OC);
    const auto np = static_cast<std::size_t>(bf16_padded(N)), cp = static_cast<std::size_t>(bf16_padded(C)),
               ocp = static_cast<std::size_t>(bf16_padded(OC));
    return std::max({(n + oc) * cp, (n + c) * ocp, (oc + c) * np});
}

void matmul_forward_bf16(float* out, const float* inp, const float* weight, const float* bias, int N, int C, int OC,
                         std::uint16_t* scratch, cudaStream_t stream) {
    const int Cp = bf16_padded(C);
    std::uint16_t* a = scratch;
    std::uint16_t* b = scratch + static_cast<size_t>(N) * Cp;
    cast_to_bf16_padded(a, inp, N, C, Cp, stream);
    cast_to_bf16_padded(b, weight, OC, C, Cp, stream);
    gemm_g2_bf16(out, a, b, bias, N, OC, Cp, OC, false, stream);
}

void matmul_backward_input_bf16(float* dinp, const float* dout, const float* weight, int N, int C, int OC,
                                std::uint16_t* scratch, cudaStream_t stream) {
    const int OCp = bf16_padded(OC);
    std::uint16_t* a = scratch;
    std::uint16_t* b = scratch + static_cast<size_t>(N) * OCp;
    cast_to_bf16_padded(a, dout, N, OC, OCp, stream);
    transpose_to_bf16_padded(b, weight, OC, C, OCp, stream);
    gemm_g2_bf16(dinp, a, b, nullptr, N, C, OCp, C, true, stream);
}

void matmul_backward_weight_bf16(float* dweight, float* dbias, const float* dout, const float* inp, int N, int C,
                                 int OC, std::uint16_t* scratch, cudaStream_t stream) {
    const int Np = bf16_padded(N);
    std::uint16_t* a = scratch;
    std::uint16_t* b = scratch + static_cast<size_t>(OC) * Np;
    transpose_to_bf16_padded(a, dout, N, OC, Np, stream);
    transpose_to_bf16_padded(b, inp, N, C, Np, stream);
    gemm_g2_bf16(dweight, a, b, nullptr, OC, C, Np, C, true, stream);
    if (dbias) column_sum_add(dbias, dout, N, OC, stream, "matmul_backward_weight_bf16 (bias)");
}

void matmul_forward(float* out, const float* inp, const float* weight, const float* bias, int N, int C, int OC,
                    cudaStream_t stream) {
    gemm_g1({out, inp, weight, bias, C, 1, 1, C, N, OC, C, OC, false}, stream);
}

void matmul_backward_input(float* dinp, const float* dout, const float* weight, int N, int C, int OC,
                           cudaStream_t stream) {
    gemm_g1({dinp, dout, weight, nullptr, OC, 1, C, 1, N, C, OC, C, true}, stream);
}

void matmul_backward_weight(float* dweight, float* dbias, const float* dout, const float* inp, int N, int C, int OC,
                            cudaStream_t stream) {
    gemm_g1({dweight, dout, inp, nullptr, 1, OC, C, 1, OC, C, N, C, true}, stream);
    if (dbias) column_sum_add(dbias, dout, N, OC, stream, "matmul_backward_weight (bias)");
}

void attention_forward(float* out, float* att, const float* qkv, int B, int T, int C, int NH, cudaStream_t stream) {
    const size_t scores = static_cast<size_t>(B) * NH * T * T;
    CHIMERA_LAUNCH(k::attention_scores, grid_for(scores), threads, stream)(att, qkv, B, T, C, NH);
    CHIMERA_LAUNCH(k::attention_softmax, static_cast<unsigned>(B * NH * T), row_threads(std::min(T, 256)), stream)(att, T);
    CHIMERA_LAUNCH(k::attention_values, grid_for(static_cast<size_t>(B) * T * C), threads, stream)(out, att, qkv, B, T, C, NH);
    launched("attention_forward");
}

void attention_backward(float* dqkv, float* scratch, const float* dout, const float* qkv, const float* att, int B,
                        int T, int C, int NH, cudaStream_t stream) {
    const size_t scores = static_cast<size_t>(B) * NH * T * T;
    const float scale = 1.0f / std::sqrt(static_cast<float>(C / NH));
    CHIMERA_LAUNCH(k::attention_datt, grid_for(scores), threads, stream)(scratch, dout, qkv, B, T, C, NH);
    CHIMERA_LAUNCH(k::attention_softmax_backward, static_cast<unsigned>(B * NH * T), row_threads(std::min(T, 256)), stream)(
        scratch, att, T, scale);
    CHIMERA_LAUNCH(k::attention_dqkv, grid_for(static_cast<size_t>(B) * T * 3 * C), threads, stream)(dqkv, scratch, att, dout,
                                                                                            qkv, B, T, C, NH);
    launched("attention_backward");
}

void attention_forward_flash(float* out, float* lse, const float* qkv, int B, int T, int C, int NH,
                             cudaStream_t stream) {
    if (C / NH != k::flash_hs || C % NH != 0)
        throw std::invalid_argument("attention_forward_flash: head size must be 64 (got C/NH = " +
                                    std::to_string(C / NH) + ")");
    const dim3 grid(grid_for(static_cast<size_t>(T), k::flash_tile), static_cast<unsigned>(B * NH));
    CHIMERA_LAUNCH(k::attention_flash_forward, grid, k::flash_threads, stream)(out, lse, qkv, B, T, C, NH);
    launched("attention_forward_flash");
}

void attention_backward_flash(float* dqkv, float* scratch, const float* dout, const float* qkv, const float* out,
                              const float* lse, int B, int T, int C, int NH, cudaStream_t stream) {
    if (C / NH != k::flash_hs || C % NH != 0)
        throw std::invalid_argument("attention_backward_flash: head size must be 64 (got C/NH = " +
                                    std::to_string(C / NH) + ")");
    const size_t rows = static_cast<size_t>(B) * NH * T;
    CHIMERA_LAUNCH(k::attention_flash_row_dot, grid_for(rows), threads, stream)(scratch, out, dout, B, T, C, NH);
    const dim3 grid(grid_for(static_cast<size_t>(T), k::flash_tile), static_cast<unsigned>(B * NH));
    CHIMERA_LAUNCH(k::attention_flash_backward_kv, grid, k::flash_threads, stream)(dqkv, qkv, dout, lse, scratch, T, C,
                                                                                  NH);
    CHIMERA_LAUNCH(k::attention_flash_backward_q, grid, k::flash_threads, stream)(dqkv, qkv, dout, lse, scratch, T, C,
                                                                                 NH);
    launched("attention_backward_flash");
}

void fused_classifier(float* logits, float* losses, const int* targets, float scale, int N, int V, int Vp,
                      cudaStream_t stream) {
    CHIMERA_LAUNCH(k::fused_classifier, N, 256, stream)(logits, losses, targets, scale, V, Vp);
    launched("fused_classifier");
}

void adamw(float* params, float* first_moment, float* second_moment, const float* grads, size_t n, int step,
           const math::adamw_params& p, bool decay, cudaStream_t stream) {
    if (n == 0) return;
    const math::adamw_step<float> s = math::adamw_prepare<float>(p, step);  // once per step, on the host
    CHIMERA_LAUNCH(k::adamw, grid_for(n), threads, stream)(params, first_moment, second_moment, grads, n, s, decay);
    launched("adamw");
}

void deterministic_sum(float* out, const float* in, size_t n, bool squares, cudaStream_t stream) {
    CHIMERA_LAUNCH(k::deterministic_sum, 1, 1024, stream)(out, in, n, squares);
    launched("deterministic_sum");
}

void replica_sum(float* out, const float* const* members, int count, size_t n, cudaStream_t stream) {
    if (n == 0 || count <= 0) return;
    CHIMERA_LAUNCH(k::replica_sum, grid_for(n), threads, stream)(out, members, count, n);
    launched("replica_sum");
}

void cast_to_bf16(std::uint16_t* out, const float* in, size_t n, cudaStream_t stream) {
    if (n == 0) return;
    CHIMERA_LAUNCH(k::cast_to_bf16, grid_for(n), threads, stream)(out, in, n);
    launched("cast_to_bf16");
}

void cast_from_bf16(float* out, const std::uint16_t* in, size_t n, cudaStream_t stream) {
    if (n == 0) return;
    CHIMERA_LAUNCH(k::cast_from_bf16, grid_for(n), threads, stream)(out, in, n);
    launched("cast_from_bf16");
}

}  // namespace chimera::runtime::gpu
