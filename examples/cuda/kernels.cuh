// The hand-written CUDA kernels (runtime.md §7), fp32 unless named bf16.
// Per-element and per-row formulas come from common/math.hpp and
// common/bf16.hpp, shared with the CPU twins; here only the parallel loops
// and reductions. Reductions use fixed trees (warp xor-shuffles, then one
// warp over the warp sums), so results are bitwise reproducible for a given
// launch shape; nothing uses float atomics.
#pragma once

#include <cstddef>
#include <cstdint>

#include "cuda_api.hpp"
#include "gpu_kernels.hpp"

#include "../common/bf16.hpp"
#include "../common/math.hpp"

namespace chimera::runtime::gpu::kernels {

using std::size_t;

constexpr int threads = 256;
inline unsigned grid_for(size_t n, int per_block = threads) {
    return static_cast<unsigned>((n + static_cast<size_t>(per_block) - 1) / static_cast<size_t>(per_block));
}

// Sum over the block (blockDim.x a multiple of 32); every thread gets the
// total. `shared` holds 32 floats.
__device__ inline float block_sum(float v, float* shared) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
    __syncthreads();  // the previous call's readers are done with `shared`
    if (lane == 0) shared[warp] = v;
    __syncthreads();
    v = lane < static_cast<int>(blockDim.x / 32) ? shared[lane] : 0.f;
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

__device__ inline float block_max(float v, float* shared) {
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
    __syncthreads();
    if (lane == 0) shared[warp] = v;
    __syncthreads();
    v = lane < static_cast<int>(blockDim.x / 32) ? shared[lane] : -INFINITY;
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

// --- embeddings -------------------------------------------------------------

__global__ void encoder_forward(float* out, const int* tokens, const float* wte, const float* wpe, int B, int T,
                                int C) {
    const size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x;
    if (i >= static_cast<size_t>(B) * T * C) return;
    const size_t row = i / C;
    const int c = static_cast<int>(i % C), t = static_cast<int>(row % T);
    out[i] = wte[static_cast<size_t>(tokens[row]) * C + c] + wpe[static_cast<size_t>(t) * C + c];
}

// One thread per (bucket, channel): the rows holding that token, in order.
__global__ void encoder_backward_wte(float* dwte, const float* dout, const int* buckets, int C) {
    const int unique = buckets[0];
    const int u = blockIdx.y, c = blockIdx.x * blockDim.x + threadIdx.x;
    if (u >= unique || c >= C) return;
    const int* tokens = buckets + 1;
    const int* starts = tokens + unique;
    const int* positions = starts + unique + 1;
    float sum = 0.f;
    for (int p = starts[u]; p < starts[u + 1]; ++p) sum += dout[static_cast<size_t>(positions[p]) * C + c];
    dwte[static_cast<size_t>(tokens[u]) * C + c] += sum;
}

__global__ void encoder_backward_wpe(float* dwpe, const float* dout, int B, int T, int C) {
    const size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x;
    if (i >= static_cast<size_t>(T) * C) return;
    float sum = 0.f;
    for (int b = 0; b < B; ++b) sum += dout[static_cast<size_t>(b) * T * C + i];
    dwpe[i] += sum;
}

// --- layernorm --------------------------------------------------------------

// One block per row; two passes (mean, then variance) like the twin.
__global__ void layernorm_forward(float* out, float* mean, float* rstd, const float* inp, const float* weight,
                                  const float* bias, int C) {
    __shared__ float shared[32];
    const size_t row = blockIdx.x;
    const float* x = inp + row * C;
    float s = 0.f;
    for (int i = threadIdx.x; i < C; i += blockDim.x) s += x[i];
    const float m = block_sum(s, shared) / C;
    float v = 0.f;
    for (int i = threadIdx.x; i < C; i += blockDim.x) v += (x[i] - m) * (x[i] - m);
    const float r = math::layernorm_rstd(block_sum(v, shared) / C);
    float* o = out + row * C;
    for (int i = threadIdx.x; i < C; i += blockDim.x) o[i] = (x[i] - m) * r * weight[i] + bias[i];
    if (threadIdx.x == 0) mean[row] = m, rstd[row] = r;
}

__global__ void layernorm_backward_input(float* dinp, const float* dout, const float* inp, const float* weight,
                                         const float* mean, const float* rstd, int C) {
    __shared__ float shared[32];
    const size_t row = blockIdx.x;
    const float* d = dout + row * C;
    const float* x = inp + row * C;
    const float m = mean[row], r = rstd[row];
    float a = 0.f, b = 0.f;
    for (int i = threadIdx.x; i < C; i += blockDim.x) {
        const float norm = (x[i] - m) * r, dnorm = weight[i] * d[i];
        a += dnorm;
        b += dnorm * norm;
    }
    const float dnorm_mean = block_sum(a, shared) / C;
    const float dnorm_norm_mean = block_sum(b, shared) / C;
    float* dx = dinp + row * C;
    for (int i = threadIdx.x; i < C; i += blockDim.x) {
        const float norm = (x[i] - m) * r, dnorm = weight[i] * d[i];
        dx[i] += (dnorm - dnorm_mean - norm * dnorm_norm_mean) * r;
    }
}

// Column reductions (layernorm weight and bias gradients, bias gradients of
// the matmuls) in two passes, no atomics, one fixed order per shape:
// pass 1, grid (column tiles of 32, row blocks of column_rows_per_block
// rows), 256 threads as 32 columns x 8 row lanes; lane r sums rows r,
// r + 8, ... of its block, then lane 0 adds the 8 lane sums in order. With
// one row block it adds into the output directly; otherwise it writes its
// partial sums [row block][column] and pass 2 adds them, row blocks in
// order, into the output. `sums` is 1 (out[c] += sum in[r, c]) or 2 (the
// layernorm's dweight, dbias).
constexpr int colsum_cols = 32, colsum_lanes = 8;
template <int sums>
__device__ inline void column_partial(float* out0, float* out1, float* partial, const float* dout, const float* inp,
                                      const float* mean, const float* rstd, int N, int C) {
    __shared__ float lanes[sums][colsum_lanes][colsum_cols + 1];
    const int cx = threadIdx.x % colsum_cols, ry = threadIdx.x / colsum_cols;
    const int c = blockIdx.x * colsum_cols + cx;
    const int first = blockIdx.y * column_rows_per_block, last = min(N, first + column_rows_per_block);
    float s0 = 0.f, s1 = 0.f;
    if (c < C)
        for (int n = first + ry; n < last; n += colsum_lanes) {
            const size_t i = static_cast<size_t>(n) * C + c;
            if constexpr (sums == 2) {
                s0 += (inp[i] - mean[n]) * rstd[n] * dout[i];
                s1 += dout[i];
            } else {
                s0 += dout[i];
            }
        }
    lanes[0][ry][cx] = s0;
    if constexpr (sums == 2) lanes[1][ry][cx] = s1;
    __syncthreads();
    if (ry != 0 || c >= C) return;
    for (int k = 0; k < sums; ++k) {
        float t = 0.f;
        for (int r = 0; r < colsum_lanes; ++r) t += lanes[k][r][cx];
        if (gridDim.y == 1) (k == 0 ? out0 : out1)[c] += t;
        else partial[(static_cast<size_t>(k) * gridDim.y + blockIdx.y) * C + c] = t;
    }
}

__global__ void __launch_bounds__(256) column_sum_partial(float* out, float* partial, const float* in, int N, int C) {
    column_partial<1>(out, nullptr, partial, in, nullptr, nullptr, nullptr, N, C);
}

__global__ void __launch_bounds__(256) layernorm_backward_weight_partial(float* dweight, float* dbias, float* partial,
                                                                         const float* dout, const float* inp,
                                                                         const float* mean, const float* rstd, int N,
                                                                         int C) {
    column_partial<2>(dweight, dbias, partial, dout, inp, mean, rstd, N, C);
}

// Pass 2: out0[c] += sum over row blocks of partial[0][b][c] (out1 likewise
// from partial[1] when not null), row blocks in order.
__global__ void column_partials_finish(float* out0, float* out1, const float* partial, int row_blocks, int C) {
    const int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= C) return;
    float s0 = 0.f, s1 = 0.f;
    for (int b = 0; b < row_blocks; ++b) s0 += partial[static_cast<size_t>(b) * C + c];
    out0[c] += s0;
    if (!out1) return;
    for (int b = 0; b < row_blocks; ++b) s1 += partial[(static_cast<size_t>(row_blocks) + b) * C + c];
    out1[c] += s1;
}

// --- element-wise -----------------------------------------------------------

__global__ void residual_forward(float* out, const float* a, const float* b, size_t n) {
    const size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x;
    if (i < n) out[i] = a[i] + b[i];
}

__global__ void gelu_forward(float* out, const float* inp, size_t n) {
    const size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x;
    if (i < n) out[i] = math::gelu(inp[i]);
}

__global__ void gelu_backward(float* dinp, const float* inp, const float* dout, size_t n) {
    const size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x;
    if (i < n) dinp[i] += math::gelu_derivative(inp[i]) * dout[i];
}

// --- GEMM ladder --------------------------------------------------------------

// The launchers' description of a GEMM (gpu_kernels.hpp), passed by value.
using gemm_params = gemm_args;

__device__ inline void gemm_store(const gemm_params& g, int m, int n, float sum) {
    if (m >= g.M || n >= g.N) return;
    if (g.bias) sum += g.bias[n];
    float* o = g.out + static_cast<size_t>(m) * g.ldc + n;
    *o = g.accumulate ? *o + sum : sum;
}

// G0: one thread per output element.
__global__ void gemm_naive(gemm_params g) {
    const int n = blockIdx.x * blockDim.x + threadIdx.x, m = blockIdx.y;
    if (n >= g.N) return;
    float sum = 0.f;
    for (int k = 0; k < g.K; ++k) sum += g.a[m * g.a_m + k * g.a_k] * g.b[k * g.b_k + n * g.b_n];
    gemm_store(g, m, n, sum);
}

// G1: 64x64 output tile per block of 256 threads, each thread 4x4 outputs
// strided by 16 (conflict-free shared reads, coalesced stores); K in steps
// of 16 through shared memory. Loads follow whichever of the operand's
// strides is 1, so every layout reads global memory coalesced.
constexpr int g1_tile = 64, g1_k = 16;
__global__ void __launch_bounds__(256) gemm_tiled(gemm_params g) {
    __shared__ float as[g1_k][g1_tile + 1];
    __shared__ float bs[g1_k][g1_tile + 1];
    const int tx = threadIdx.x % 16, ty = threadIdx.x / 16;
    const int m0 = blockIdx.y * g1_tile, n0 = blockIdx.x * g1_tile;
    float acc[4][4] = {};
    for (int k0 = 0; k0 < g.K; k0 += g1_k) {
        for (int i = threadIdx.x; i < g1_tile * g1_k; i += 256) {
            int mm, kk;
            if (g.a_k == 1) mm = i / g1_k, kk = i % g1_k;
            else kk = i / g1_tile, mm = i % g1_tile;
            const int m = m0 + mm, k = k0 + kk;
            as[kk][mm] = m < g.M && k < g.K ? g.a[m * g.a_m + k * g.a_k] : 0.f;
            int nn;
            if (g.b_n == 1) kk = i / g1_tile, nn = i % g1_tile;
            else nn = i / g1_k, kk = i % g1_k;
            const int n = n0 + nn, k2 = k0 + kk;
            bs[kk][nn] = n < g.N && k2 < g.K ? g.b[k2 * g.b_k + n * g.b_n] : 0.f;
        }
        __syncthreads();
#pragma unroll
        for (int kk = 0; kk < g1_k; ++kk) {
            float a[4], b[4];
#pragma unroll
            for (int i = 0; i < 4; ++i) a[i] = as[kk][ty + 16 * i], b[i] = bs[kk][tx + 16 * i];
#pragma unroll
            for (int i = 0; i < 4; ++i)
#pragma unroll
                for (int j = 0; j < 4; ++j) acc[i][j] += a[i] * b[j];
        }
        __syncthreads();
    }
#pragma unroll
    for (int i = 0; i < 4; ++i)
#pragma unroll
        for (int j = 0; j < 4; ++j) gemm_store(g, m0 + ty + 16 * i, n0 + tx + 16 * j, acc[i][j]);
}

// G2: bf16 tensor cores, NT layout (A [M,K], B [N,K], both K-contiguous).
// 128x128 block tile, K step 32, 8 warps as 2 (m) x 4 (n), each warp 64x32
// = 4x4 mma.sync m16n8k16 tiles. Operands go global -> shared with
// cp.async (16-byte chunks, zero-filled outside the matrix) into two
// buffers, so the next K step loads while this one computes; shared ->
// registers with ldmatrix.
constexpr int g2_tile = 128, g2_k = 32, g2_pad = 8;
#if defined(CHIMERA_CUDA_EMULATION)
using ::chimera_emulator::cp_async_16;
using ::chimera_emulator::cp_async_commit;
using ::chimera_emulator::cp_async_wait;
using ::chimera_emulator::ldmatrix_x2;
using ::chimera_emulator::ldmatrix_x4;
using ::chimera_emulator::mma_bf16_16816;
#else
__device__ inline unsigned shared_address(const void* p) {
    return static_cast<unsigned>(__cvta_generic_to_shared(p));
}
// 16 bytes global -> shared, asynchronous; zero-filled when !valid.
__device__ inline void cp_async_16(void* dst, const void* src, bool valid) {
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(shared_address(dst)), "l"(src),
                 "r"(valid ? 16 : 0));
}
__device__ inline void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int pending>
__device__ inline void cp_async_wait() {
    asm volatile("cp.async.wait_group %0;\n" ::"n"(pending));
}
// Four (two) 8x8 b16 matrices from shared memory; lanes 8i..8i+7 give the
// row addresses of matrix i, lane l receives row l/4, columns 2(l%4) and
// 2(l%4)+1 of matrix i in r[i].
__device__ inline void ldmatrix_x4(unsigned (&r)[4], const void* row) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(shared_address(row)));
}
__device__ inline void ldmatrix_x2(unsigned (&r)[2], const void* row) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x2.shared.b16 {%0,%1}, [%2];\n"
                 : "=r"(r[0]), "=r"(r[1])
                 : "r"(shared_address(row)));
}
// d += A (16x16, row) * B (16x8, col), bf16 in, fp32 accumulate.
__device__ inline void mma_bf16_16816(float (&d)[4], const unsigned (&a)[4], const unsigned (&b)[2]) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
        "{%8,%9}, {%0,%1,%2,%3};\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}
#endif

// The epilogue (bias, accumulate, ldc, bounds) is G0/G1's gemm_store; g.a and
// g.b are unused (the operands are the bf16 a [M,K] and b [N,K]).
__global__ void __launch_bounds__(256) gemm_bf16_mma(gemm_params g, const std::uint16_t* a, const std::uint16_t* b) {
#if defined(CHIMERA_CUDA_EMULATION) || (defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800)
    const int M = g.M, N = g.N, K = g.K;
    __shared__ __align__(16) std::uint16_t as[2][g2_tile][g2_k + g2_pad];
    __shared__ __align__(16) std::uint16_t bs[2][g2_tile][g2_k + g2_pad];
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int warp_m = warp / 4, warp_n = warp % 4;
    const int m0 = blockIdx.y * g2_tile, n0 = blockIdx.x * g2_tile;
    float acc[4][4][4] = {};
    auto load = [&](int buffer, int k0) {
        // 128 rows x 4 chunks of 8 elements per operand; 2 chunks per thread.
        for (int i = threadIdx.x; i < g2_tile * (g2_k / 8); i += 256) {
            const int row = i / (g2_k / 8), chunk = i % (g2_k / 8), k = k0 + chunk * 8;
            const bool in_a = m0 + row < M && k < K, in_b = n0 + row < N && k < K;
            cp_async_16(&as[buffer][row][chunk * 8], in_a ? a + static_cast<size_t>(m0 + row) * K + k : a, in_a);
            cp_async_16(&bs[buffer][row][chunk * 8], in_b ? b + static_cast<size_t>(n0 + row) * K + k : b, in_b);
        }
        cp_async_commit();
    };
    // 16x8 tiles of this warp that hold outputs (warp-uniform, so skipping
    // the others costs no divergence): small and ragged GEMMs skip most of
    // the block tile's mma and ldmatrix work.
    const int warp_tiles_m = min(4, max(0, (M - m0 - warp_m * 64 + 15) / 16));
    const int warp_tiles_n = min(4, max(0, (N - n0 - warp_n * 32 + 7) / 8));
    const int steps = (K + g2_k - 1) / g2_k;
    load(0, 0);
    for (int s = 0; s < steps; ++s) {
        const int buffer = s & 1;
        if (s + 1 < steps) {
            load(buffer ^ 1, (s + 1) * g2_k);
            cp_async_wait<1>();
        } else {
            cp_async_wait<0>();
        }
        __syncthreads();
#pragma unroll
        for (int kk = 0; kk < g2_k; kk += 16) {
            unsigned af[4][4], bf[4][2];
#pragma unroll
            for (int i = 0; i < 4; ++i)
                if (i < warp_tiles_m)
                    ldmatrix_x4(af[i], &as[buffer][warp_m * 64 + i * 16 + lane % 16][kk + (lane / 16) * 8]);
#pragma unroll
            for (int j = 0; j < 4; ++j)
                if (j < warp_tiles_n)
                    ldmatrix_x2(bf[j], &bs[buffer][warp_n * 32 + j * 8 + lane % 8][kk + ((lane / 8) % 2) * 8]);
#pragma unroll
            for (int i = 0; i < 4; ++i)
#pragma unroll
                for (int j = 0; j < 4; ++j)
                    if (i < warp_tiles_m && j < warp_tiles_n) mma_bf16_16816(acc[i][j], af[i], bf[j]);
        }
        __syncthreads();  // this buffer is refilled two steps later
    }
#pragma unroll
    for (int i = 0; i < 4; ++i)
#pragma unroll
        for (int j = 0; j < 4; ++j)
#pragma unroll
            for (int h = 0; h < 2; ++h) {
                const int m = m0 + warp_m * 64 + i * 16 + lane / 4 + h * 8;
                const int n = n0 + warp_n * 32 + j * 8 + (lane % 4) * 2;
                gemm_store(g, m, n, acc[i][j][2 * h]);
                gemm_store(g, m, n + 1, acc[i][j][2 * h + 1]);
            }
#endif
}

// bf16 operands for G2, K padded with zeros to a multiple of 8 (16-byte
// cp.async rows). Row-major: out[r, k] = bf16(in[r, k]) (row stride
// padded_cols).
__global__ void cast_to_bf16_padded(std::uint16_t* out, const float* in, int rows, int cols, int padded_cols) {
    const size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x;
    if (i >= static_cast<size_t>(rows) * padded_cols) return;
    const size_t r = i / padded_cols;
    const int k = static_cast<int>(i % padded_cols);
    out[i] = k < cols ? math::to_bf16(in[r * cols + k]) : std::uint16_t{0};
}

// Transposed: out[c, r] = bf16(in[r, c]) (row stride padded_rows; rows
// r >= `rows` are zero). 32x32 tiles through shared memory, 256 threads as
// 32 x 8, so both the reads and the writes are coalesced.
constexpr int transpose_tile = 32;
__global__ void __launch_bounds__(256) transpose_to_bf16_padded(std::uint16_t* out, const float* in, int rows,
                                                                 int cols, int padded_rows) {
    __shared__ float tile[transpose_tile][transpose_tile + 1];
    const int tx = threadIdx.x % transpose_tile, ty = threadIdx.x / transpose_tile;
    const int r0 = blockIdx.y * transpose_tile, c0 = blockIdx.x * transpose_tile;
    for (int j = ty; j < transpose_tile; j += 256 / transpose_tile) {
        const int r = r0 + j, c = c0 + tx;
        tile[j][tx] = r < rows && c < cols ? in[static_cast<size_t>(r) * cols + c] : 0.f;
    }
    __syncthreads();
    for (int j = ty; j < transpose_tile; j += 256 / transpose_tile) {
        const int c = c0 + j, r = r0 + tx;
        if (c < cols && r < padded_rows) out[static_cast<size_t>(c) * padded_rows + r] = math::to_bf16(tile[tx][j]);
    }
}

// --- attention v1: scores, softmax, weighted sum (and their backward) --------

// One thread per (b, h, t, t2), t2 <= t: scaled q.k.
__global__ void attention_scores(float* att, const float* qkv, int B, int T, int C, int NH) {
    const size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x;
    if (i >= static_cast<size_t>(B) * NH * T * T) return;
    const int t2 = static_cast<int>(i % T), t = static_cast<int>(i / T % T);
    const int h = static_cast<int>(i / T / T % NH), b = static_cast<int>(i / T / T / NH);
    if (t2 > t) return;
    const int hs = C / NH;
    const size_t C3 = 3 * static_cast<size_t>(C);
    const float* q = qkv + (static_cast<size_t>(b) * T + t) * C3 + h * hs;
    const float* k = qkv + (static_cast<size_t>(b) * T + t2) * C3 + C + h * hs;
    float v = 0.f;
    for (int d = 0; d < hs; ++d) v += q[d] * k[d];
    att[i] = v * (1.0f / sqrtf(static_cast<float>(hs)));
}

// One block per row (b, h, t): causal softmax in place, zeros above t.
__global__ void attention_softmax(float* att, int T) {
    __shared__ float shared[32];
    const size_t row = blockIdx.x;
    const int t = static_cast<int>(row % T);
    float* a = att + row * T;
    float m = -INFINITY;
    for (int i = threadIdx.x; i <= t; i += blockDim.x) m = fmaxf(m, a[i]);
    m = block_max(m, shared);
    float s = 0.f;
    for (int i = threadIdx.x; i <= t; i += blockDim.x) s += expf(a[i] - m);
    const float inv = 1.0f / block_sum(s, shared);
    for (int i = threadIdx.x; i < T; i += blockDim.x) a[i] = i <= t ? expf(a[i] - m) * inv : 0.f;
}

// One thread per (b, t, h, d): sum over t2 <= t of att * v.
__global__ void attention_values(float* out, const float* att, const float* qkv, int B, int T, int C, int NH) {
    const size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x;
    if (i >= static_cast<size_t>(B) * T * C) return;
    const int hs = C / NH;
    const int c = static_cast<int>(i % C), h = c / hs, d = c % hs;
    const int t = static_cast<int>(i / C % T), b = static_cast<int>(i / C / T);
    const size_t C3 = 3 * static_cast<size_t>(C);
    const float* a = att + ((static_cast<size_t>(b) * NH + h) * T + t) * T;
    float s = 0.f;
    for (int t2 = 0; t2 <= t; ++t2) s += a[t2] * qkv[(static_cast<size_t>(b) * T + t2) * C3 + 2 * C + h * hs + d];
    out[i] = s;
}

// datt[b,h,t,t2] = dout[b,t,h,:] . v[b,t2,h,:] for t2 <= t.
__global__ void attention_datt(float* datt, const float* dout, const float* qkv, int B, int T, int C, int NH) {
    const size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x;
    if (i >= static_cast<size_t>(B) * NH * T * T) return;
    const int t2 = static_cast<int>(i % T), t = static_cast<int>(i / T % T);
    const int h = static_cast<int>(i / T / T % NH), b = static_cast<int>(i / T / T / NH);
    if (t2 > t) {
        datt[i] = 0.f;
        return;
    }
    const int hs = C / NH;
    const float* d = dout + (static_cast<size_t>(b) * T + t) * C + h * hs;
    const float* v = qkv + (static_cast<size_t>(b) * T + t2) * 3 * static_cast<size_t>(C) + 2 * C + h * hs;
    float s = 0.f;
    for (int k = 0; k < hs; ++k) s += d[k] * v[k];
    datt[i] = s;
}

// Softmax backward per row, in place: dpre = a * (datt - a.datt) * scale.
__global__ void attention_softmax_backward(float* datt, const float* att, int T, float scale) {
    __shared__ float shared[32];
    const size_t row = blockIdx.x;
    const int t = static_cast<int>(row % T);
    const float* a = att + row * T;
    float* d = datt + row * T;
    float s = 0.f;
    for (int i = threadIdx.x; i <= t; i += blockDim.x) s += a[i] * d[i];
    const float dot = block_sum(s, shared);
    for (int i = threadIdx.x; i <= t; i += blockDim.x) d[i] = a[i] * (d[i] - dot) * scale;
}

// One thread per (b, t, h, d) of q, k and v gradients (3C columns).
__global__ void attention_dqkv(float* dqkv, const float* dpre, const float* att, const float* dout, const float* qkv,
                               int B, int T, int C, int NH) {
    const size_t C3 = 3 * static_cast<size_t>(C);
    const size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x;
    if (i >= static_cast<size_t>(B) * T * C3) return;
    const int hs = C / NH;
    const int col = static_cast<int>(i % C3), part = col / C, c = col % C, h = c / hs, d = c % hs;
    const int t = static_cast<int>(i / C3 % T), b = static_cast<int>(i / C3 / T);
    const size_t head = (static_cast<size_t>(b) * NH + h) * T;
    auto at = [&](int row, int which) { return qkv[(static_cast<size_t>(b) * T + row) * C3 + which * C + h * hs + d]; };
    float s = 0.f;
    if (part == 0) {  // dq[t] = sum_{t2<=t} dpre[t,t2] k[t2]
        for (int t2 = 0; t2 <= t; ++t2) s += dpre[(head + t) * T + t2] * at(t2, 1);
    } else if (part == 1) {  // dk[t] = sum_{t1>=t} dpre[t1,t] q[t1]
        for (int t1 = t; t1 < T; ++t1) s += dpre[(head + t1) * T + t] * at(t1, 0);
    } else {  // dv[t] = sum_{t1>=t} att[t1,t] dout[t1]
        for (int t1 = t; t1 < T; ++t1)
            s += att[(head + t1) * T + t] * dout[(static_cast<size_t>(b) * T + t1) * C + h * hs + d];
    }
    dqkv[i] += s;
}

// --- attention v2: flash-style forward, head size 64 -------------------------
// One warp per query row (4 rows per block, consecutive t); keys and values
// stream through shared memory in tiles of 32; the row keeps the running
// (max, sum) of the online softmax (math::online_softmax_update) and its
// rescaled output accumulator (2 of 64 dims per lane).
constexpr int flash_rows = 4, flash_keys = 32, flash_hs = 64;
__global__ void __launch_bounds__(128) attention_flash_forward(float* out, float* lse, const float* qkv, int /*B*/,
                                                               int T, int C, int NH) {
    __shared__ float ks[flash_keys][flash_hs + 1];
    __shared__ float vs[flash_keys][flash_hs + 1];
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int bh = blockIdx.y, b = bh / NH, h = bh % NH;
    const int t = blockIdx.x * flash_rows + warp;
    const size_t C3 = 3 * static_cast<size_t>(C);
    const float scale = 1.0f / sqrtf(static_cast<float>(flash_hs));
    float q0 = 0.f, q1 = 0.f;
    if (t < T) {
        const float* q = qkv + (static_cast<size_t>(b) * T + t) * C3 + h * flash_hs;
        q0 = q[lane], q1 = q[lane + 32];
    }
    float running_max = -INFINITY, running_sum = 0.f, o0 = 0.f, o1 = 0.f;
    const int last = min(T - 1, static_cast<int>(blockIdx.x) * flash_rows + flash_rows - 1);
    for (int k0 = 0; k0 <= last; k0 += flash_keys) {
        __syncthreads();
        for (int i = threadIdx.x; i < flash_keys * flash_hs; i += blockDim.x) {
            const int r = i / flash_hs, d = i % flash_hs, key = k0 + r;
            const bool in = key < T;
            const float* base = qkv + (static_cast<size_t>(b) * T + (in ? key : 0)) * C3 + h * flash_hs + d;
            ks[r][d] = in ? base[C] : 0.f;
            vs[r][d] = in ? base[2 * C] : 0.f;
        }
        __syncthreads();
        if (t >= T) continue;
        for (int r = 0; r < flash_keys && k0 + r <= t; ++r) {
            float s = q0 * ks[r][lane] + q1 * ks[r][lane + 32];
            for (int o = 16; o > 0; o >>= 1) s += __shfl_xor_sync(0xffffffffu, s, o);
            s *= scale;
            const float previous = running_max;
            math::online_softmax_update(running_max, running_sum, s);
            const float factor = expf(previous - running_max), p = expf(s - running_max);
            o0 = o0 * factor + p * vs[r][lane];
            o1 = o1 * factor + p * vs[r][lane + 32];
        }
    }
    if (t >= T) return;
    float* o = out + (static_cast<size_t>(b) * T + t) * C + h * flash_hs;
    o[lane] = o0 / running_sum;
    o[lane + 32] = o1 / running_sum;
    if (lane == 0) lse[static_cast<size_t>(bh) * T + t] = running_max + logf(running_sum);
}

// Flash backward (head size 64), from the forward's out and lse: the
// probabilities p[t,j] = exp(scale q_t.k_j - lse_t) are recomputed, never
// stored. With D_t = dout_t.out_t (= sum_j p[t,j] dout_t.v_j) the softmax
// backward is ds[t,j] = p[t,j] (dout_t.v_j - D_t) scale, so
//   dq_t = sum_{j<=t} ds[t,j] k_j, dk_j = sum_{t>=j} ds[t,j] q_t,
//   dv_j = sum_{t>=j} p[t,j] dout_t.
// One thread per row in all three kernels and loops in index order, so each
// sum has one fixed order and no two threads write the same element.
constexpr int flash_tile = 32;

// D[bh, t] = dout_t . out_t over the head's 64 dims.
__global__ void attention_flash_row_dot(float* D, const float* out, const float* dout, int B, int T, int C, int NH) {
    const size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x;
    if (i >= static_cast<size_t>(B) * NH * T) return;
    const int t = static_cast<int>(i % T), h = static_cast<int>(i / T % NH), b = static_cast<int>(i / T / NH);
    const size_t at = (static_cast<size_t>(b) * T + t) * C + h * flash_hs;
    float s = 0.f;
    for (int d = 0; d < flash_hs; ++d) s += dout[at + d] * out[at + d];
    D[i] = s;
}

// Scaled score minus the row's log-sum-exp, then its exponential: p[t,j].
__device__ inline float flash_probability(const float* q, const float* k, float lse, float scale) {
    float s = 0.f;
#pragma unroll 16
    for (int d = 0; d < flash_hs; ++d) s += q[d] * k[d];
    return expf(s * scale - lse);
}

// Tiles of 32 rows of one head into shared memory (any row pitch), zeros
// past T: keys and values, or queries and their output gradients.
template <int pitch>
__device__ inline void flash_load_keys(float (*ks)[pitch], float (*vs)[pitch], const float* qkv, int b, int h,
                                       int first, int T, int C) {
    const size_t C3 = 3 * static_cast<size_t>(C);
    for (int i = threadIdx.x; i < flash_tile * flash_hs; i += blockDim.x) {
        const int r = i / flash_hs, d = i % flash_hs, key = first + r;
        const float* base = qkv + (static_cast<size_t>(b) * T + (key < T ? key : 0)) * C3 + h * flash_hs + d;
        ks[r][d] = key < T ? base[C] : 0.f;
        vs[r][d] = key < T ? base[2 * C] : 0.f;
    }
}
template <int pitch>
__device__ inline void flash_load_queries(float (*qs)[pitch], float (*dos)[pitch], const float* qkv, const float* dout,
                                          int b, int h, int first, int T, int C) {
    for (int i = threadIdx.x; i < flash_tile * flash_hs; i += blockDim.x) {
        const int r = i / flash_hs, d = i % flash_hs, t = first + r;
        const size_t row = static_cast<size_t>(b) * T + (t < T ? t : 0);
        qs[r][d] = t < T ? qkv[row * 3 * C + h * flash_hs + d] : 0.f;
        dos[r][d] = t < T ? dout[row * C + h * flash_hs + d] : 0.f;
    }
}

// dk, dv: one block per (key tile of 32, b*h), one thread per key; query
// rows stream through shared memory in tiles of 32, from the tile's first
// key on (causal).
__global__ void __launch_bounds__(flash_tile) attention_flash_backward_kv(float* dqkv, const float* qkv,
                                                                          const float* dout, const float* lse,
                                                                          const float* D, int T, int C, int NH) {
    __shared__ float ks[flash_tile][flash_hs + 1];  // +1: a thread per row reads conflict-free
    __shared__ float vs[flash_tile][flash_hs + 1];
    __shared__ float qs[flash_tile][flash_hs];  // read by all threads at once (broadcast)
    __shared__ float dos[flash_tile][flash_hs];
    __shared__ float lses[flash_tile], Ds[flash_tile];
    const int bh = blockIdx.y, b = bh / NH, h = bh % NH;
    const int k0 = blockIdx.x * flash_tile, j = k0 + static_cast<int>(threadIdx.x);
    const size_t C3 = 3 * static_cast<size_t>(C);
    const float scale = 1.0f / sqrtf(static_cast<float>(flash_hs));
    flash_load_keys(ks, vs, qkv, b, h, k0, T, C);
    float dk[flash_hs] = {}, dv[flash_hs] = {};
    for (int t0 = k0; t0 < T; t0 += flash_tile) {
        __syncthreads();  // the previous tile's readers are done
        flash_load_queries(qs, dos, qkv, dout, b, h, t0, T, C);
        for (int r = threadIdx.x; r < flash_tile; r += blockDim.x) {
            const int t = t0 + r;
            lses[r] = t < T ? lse[static_cast<size_t>(bh) * T + t] : 0.f;
            Ds[r] = t < T ? D[static_cast<size_t>(bh) * T + t] : 0.f;
        }
        __syncthreads();
        if (j >= T) continue;
        for (int r = 0; r < flash_tile && t0 + r < T; ++r) {
            if (t0 + r < j) continue;  // causal: query t sees keys j <= t
            const float p = flash_probability(qs[r], ks[threadIdx.x], lses[r], scale);
            float dp = 0.f;
#pragma unroll 16
            for (int d = 0; d < flash_hs; ++d) dp += dos[r][d] * vs[threadIdx.x][d];
            const float ds = p * (dp - Ds[r]) * scale;
#pragma unroll
            for (int d = 0; d < flash_hs; ++d) {
                dk[d] += ds * qs[r][d];
                dv[d] += p * dos[r][d];
            }
        }
    }
    if (j >= T) return;
    float* g = dqkv + (static_cast<size_t>(b) * T + j) * C3 + h * flash_hs;
#pragma unroll
    for (int d = 0; d < flash_hs; ++d) {
        g[C + d] += dk[d];
        g[2 * C + d] += dv[d];
    }
}

// dq: one block per (query tile of 32, b*h), one thread per query row; key
// tiles stream through shared memory up to the tile's last row.
__global__ void __launch_bounds__(flash_tile) attention_flash_backward_q(float* dqkv, const float* qkv,
                                                                         const float* dout, const float* lse,
                                                                         const float* D, int T, int C, int NH) {
    __shared__ float qs[flash_tile][flash_hs + 1];
    __shared__ float dos[flash_tile][flash_hs + 1];
    __shared__ float ks[flash_tile][flash_hs];
    __shared__ float vs[flash_tile][flash_hs];
    const int bh = blockIdx.y, b = bh / NH, h = bh % NH;
    const int t0 = blockIdx.x * flash_tile, t = t0 + static_cast<int>(threadIdx.x);
    const size_t C3 = 3 * static_cast<size_t>(C);
    const float scale = 1.0f / sqrtf(static_cast<float>(flash_hs));
    flash_load_queries(qs, dos, qkv, dout, b, h, t0, T, C);
    const float row_lse = t < T ? lse[static_cast<size_t>(bh) * T + t] : 0.f;
    const float row_D = t < T ? D[static_cast<size_t>(bh) * T + t] : 0.f;
    float dq[flash_hs] = {};
    const int last = min(T - 1, t0 + flash_tile - 1);
    for (int k0 = 0; k0 <= last; k0 += flash_tile) {
        __syncthreads();
        flash_load_keys(ks, vs, qkv, b, h, k0, T, C);
        __syncthreads();
        if (t >= T) continue;
        for (int r = 0; r < flash_tile && k0 + r <= t; ++r) {
            const float p = flash_probability(qs[threadIdx.x], ks[r], row_lse, scale);
            float dp = 0.f;
#pragma unroll 16
            for (int d = 0; d < flash_hs; ++d) dp += dos[threadIdx.x][d] * vs[r][d];
            const float ds = p * (dp - row_D) * scale;
#pragma unroll
            for (int d = 0; d < flash_hs; ++d) dq[d] += ds * ks[r][d];
        }
    }
    if (t >= T) return;
    float* g = dqkv + (static_cast<size_t>(b) * T + t) * C3 + h * flash_hs;
#pragma unroll
    for (int d = 0; d < flash_hs; ++d) g[d] += dq[d];
}

// --- fused classifier -----------------------------------------------------------
// One block per row: max and sum of exp over the first V columns, the loss,
// then dlogits in place of the logits.
__global__ void fused_classifier(float* logits, float* losses, const int* targets, float scale, int V, int Vp) {
    __shared__ float shared[32];
    const size_t row = blockIdx.x;
    float* l = logits + row * Vp;
    float m = -INFINITY;
    for (int i = threadIdx.x; i < V; i += blockDim.x) m = fmaxf(m, l[i]);
    m = block_max(m, shared);
    float s = 0.f;
    for (int i = threadIdx.x; i < V; i += blockDim.x) s += expf(l[i] - m);
    const float sum = block_sum(s, shared);
    const int target = targets[row];
    const float target_logit = l[target];  // read before any thread overwrites it
    __syncthreads();
    if (threadIdx.x == 0) losses[row] = logf(sum) + m - target_logit;
    const float inv = 1.0f / sum;
    for (int i = threadIdx.x; i < Vp; i += blockDim.x)
        l[i] = i < V ? (expf(l[i] - m) * inv - (i == target ? 1.f : 0.f)) * scale : 0.f;
}

// --- optimizer, reductions, casts -------------------------------------------------

// `s` carries the step's bias corrections (computed once on the host): no
// pow and no double arithmetic per element.
__global__ void adamw(float* params, float* first_moment, float* second_moment, const float* grads, size_t n,
                      math::adamw_step<float> s, bool decay) {
    const size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x;
    if (i < n) math::adamw_update(params[i], first_moment[i], second_moment[i], grads[i], s, decay);
}

__global__ void deterministic_sum(float* out, const float* in, size_t n, bool squares) {
    __shared__ float shared[32];
    float s = 0.f;
    for (size_t i = threadIdx.x; i < n; i += blockDim.x) s += squares ? in[i] * in[i] : in[i];
    s = block_sum(s, shared);
    if (threadIdx.x == 0) out[0] = s;
}

__global__ void replica_sum(float* out, const float* const* members, int count, size_t n) {
    const size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x;
    if (i >= n) return;
    float s = members[0][i];
    for (int j = 1; j < count; ++j) s += members[j][i];
    out[i] = s;
}

__global__ void cast_to_bf16(std::uint16_t* out, const float* in, size_t n) {
    const size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x;
    if (i < n) out[i] = math::to_bf16(in[i]);
}

__global__ void cast_from_bf16(float* out, const std::uint16_t* in, size_t n) {
    const size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x;
    if (i < n) out[i] = math::from_bf16(in[i]);
}

}  // namespace chimera::runtime::gpu::kernels
