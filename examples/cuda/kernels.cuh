// The hand-written CUDA kernels (docs/design/runtime-contract.md#kernels-and-their-cpu-twins), fp32 unless named bf16.
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
// 128x128 block tile, K step 64, 8 warps as 2 (m) x 4 (n), each warp 64x32
// = 4x4 mma.sync m16n8k16 tiles. Operands go global -> shared with
// cp.async (16-byte chunks, zero-filled outside the matrix) through a ring
// of g2_stages buffers in dynamic shared memory (108 KB: two blocks per
// SM), so two K steps load while one computes; shared -> registers with
// ldmatrix (rows padded by 16 bytes: conflict-free).
constexpr int g2_tile = 128, g2_k = 64, g2_pad = 8, g2_stages = 3, g2_threads = 256;
constexpr int g2_pitch = g2_k + g2_pad;                  // elements per shared row
constexpr int g2_stage_elems = 2 * g2_tile * g2_pitch;  // A then B
constexpr size_t g2_shared_bytes = static_cast<size_t>(g2_stages) * g2_stage_elems * sizeof(std::uint16_t);
#if defined(CHIMERA_CUDA_EMULATION)
using ::chimera_emulator::cp_async_16;
using ::chimera_emulator::cp_async_commit;
using ::chimera_emulator::cp_async_wait;
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
// Four 8x8 b16 matrices from shared memory; lanes 8i..8i+7 give the
// row addresses of matrix i, lane l receives row l/4, columns 2(l%4) and
// 2(l%4)+1 of matrix i in r[i].
__device__ inline void ldmatrix_x4(unsigned (&r)[4], const void* row) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
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


// This thread's share of one stage's loads: rows row0 + 32 j (j < 4) of the
// A and B tiles, 16-byte chunk `chunk` of the K step. Offsets are computed
// once; a K step only adds k0.
struct g2_loader {
    const std::uint16_t *a, *b;  // row row0 of the tile, chunk's first column
    size_t row_step;             // 32 rows
    int dst, chunk_k;            // element offset in a stage's A (and B) tile; the chunk's first k
    unsigned a_rows = 0xf, b_rows = 0xf;  // which of the 4 rows lie inside the matrix (edge tiles)
};

template <bool edge>
__device__ inline g2_loader g2_make_loader(const std::uint16_t* a, const std::uint16_t* b, int M, int N, int K, int m0,
                                           int n0) {
    const int row0 = threadIdx.x / (g2_k / 8), chunk = threadIdx.x % (g2_k / 8);
    g2_loader l{a + static_cast<size_t>(m0 + row0) * K + chunk * 8, b + static_cast<size_t>(n0 + row0) * K + chunk * 8,
                32 * static_cast<size_t>(K), row0 * g2_pitch + chunk * 8, chunk * 8};
    if (edge) {
        l.a_rows = l.b_rows = 0;
        for (int j = 0; j < 4; ++j) {
            l.a_rows |= (m0 + row0 + 32 * j < M ? 1u : 0u) << j;
            l.b_rows |= (n0 + row0 + 32 * j < N ? 1u : 0u) << j;
        }
    }
    return l;
}

// One K step (k0) into `stage`; chunks past K (the last step when K is not
// a multiple of g2_k) and rows outside the matrix are zero-filled, their
// source address replaced by the (valid) matrix base. Steps wholly inside
// K of full tiles check nothing.
template <bool edge>
__device__ inline void g2_load(std::uint16_t* stage, const g2_loader& l, const std::uint16_t* a,
                               const std::uint16_t* b, int k0, int K) {
    if (!edge && k0 + g2_k <= K) {
#pragma unroll
        for (int j = 0; j < 4; ++j) {
            cp_async_16(stage + l.dst + j * 32 * g2_pitch, l.a + j * l.row_step + k0, true);
            cp_async_16(stage + g2_tile * g2_pitch + l.dst + j * 32 * g2_pitch, l.b + j * l.row_step + k0, true);
        }
        return;
    }
    const bool k_in = k0 + l.chunk_k < K;
#pragma unroll
    for (int j = 0; j < 4; ++j) {
        const bool in_a = k_in && (!edge || (l.a_rows >> j & 1u)), in_b = k_in && (!edge || (l.b_rows >> j & 1u));
        cp_async_16(stage + l.dst + j * 32 * g2_pitch, in_a ? l.a + j * l.row_step + k0 : a, in_a);
        cp_async_16(stage + g2_tile * g2_pitch + l.dst + j * 32 * g2_pitch, in_b ? l.b + j * l.row_step + k0 : b, in_b);
    }
}

// The warp's 4x4 mma tiles over one stage (4 k16 steps). Edge tiles skip
// the 16x8 tiles wholly outside the output (warp-uniform, no divergence);
// full tiles have no guard at all.
template <bool edge>
__device__ inline void g2_compute(float (&acc)[4][4][4], const std::uint16_t* a_frag, const std::uint16_t* b_frag,
                                  int tiles_m, int tiles_n) {
#pragma unroll
    for (int kk = 0; kk < g2_k; kk += 16) {
        unsigned af[4][4] = {}, bf[2][4] = {};  // edge tiles leave some unused
#pragma unroll
        for (int i = 0; i < 4; ++i)
            if (!edge || i < tiles_m) ldmatrix_x4(af[i], a_frag + i * 16 * g2_pitch + kk);
#pragma unroll
        for (int j = 0; j < 2; ++j)
            if (!edge || 2 * j < tiles_n) ldmatrix_x4(bf[j], b_frag + j * 16 * g2_pitch + kk);
#pragma unroll
        for (int i = 0; i < 4; ++i)
#pragma unroll
            for (int j = 0; j < 4; ++j) {
                const unsigned b2[2] = {bf[j / 2][2 * (j % 2)], bf[j / 2][2 * (j % 2) + 1]};
                if (!edge || (i < tiles_m && j < tiles_n)) mma_bf16_16816(acc[i][j], af[i], b2);
            }
    }
}

// out[m, n], out[m, n + 1] from one accumulator pair: one 8-byte store
// (and load, when accumulating) where the tile is full and aligned.
__device__ inline void g2_store_pair(const gemm_params& g, int m, int n, float x, float y, bool vector) {
    if (!vector) {
        gemm_store(g, m, n, x);
        gemm_store(g, m, n + 1, y);
        return;
    }
    float2 v = make_float2(x, y);
    if (g.bias) {
        const float2 bias = *reinterpret_cast<const float2*>(g.bias + n);
        v.x += bias.x, v.y += bias.y;
    }
    float2* o = reinterpret_cast<float2*>(g.out + static_cast<size_t>(m) * g.ldc + n);
    if (g.accumulate) {
        const float2 old = *o;
        v.x += old.x, v.y += old.y;
    }
    *o = v;
}

template <bool edge>
__device__ inline void g2_block(const gemm_params& g, const std::uint16_t* a, const std::uint16_t* b,
                                std::uint16_t* smem, int m0, int n0) {
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, warp_m = warp / 4, warp_n = warp % 4;
    const g2_loader loader = g2_make_loader<edge>(a, b, g.M, g.N, g.K, m0, n0);
    // ldmatrix row addresses inside a stage: A rows lane % 16, k half lane / 16;
    // B (x4: two n8 tiles) rows lane % 8 + 8 (lane / 16), k half (lane / 8) % 2.
    const int a_off = (warp_m * 64 + lane % 16) * g2_pitch + (lane / 16) * 8;
    const int b_off = g2_tile * g2_pitch + (warp_n * 32 + lane % 8 + (lane / 16) * 8) * g2_pitch + ((lane / 8) % 2) * 8;
    const int tiles_m = edge ? min(4, max(0, (g.M - m0 - warp_m * 64 + 15) / 16)) : 4;
    const int tiles_n = edge ? min(4, max(0, (g.N - n0 - warp_n * 32 + 7) / 8)) : 4;
    float acc[4][4][4] = {};
    const int steps = (g.K + g2_k - 1) / g2_k;
#pragma unroll
    for (int s = 0; s < g2_stages - 1; ++s) {
        if (s < steps) g2_load<edge>(smem + s * g2_stage_elems, loader, a, b, s * g2_k, g.K);
        cp_async_commit();
    }
    // Ring positions as running offsets (no modulo in the loop).
    int read = 0, write = (g2_stages - 1) * g2_stage_elems;
    constexpr int ring = g2_stages * g2_stage_elems;
    for (int s = 0; s < steps; ++s) {
        cp_async_wait<g2_stages - 2>();  // step s has landed (this thread's copies) ...
        __syncthreads();                 // ... everyone's; and step s - 1's buffer is free
        const int next = s + g2_stages - 1;
        if (next < steps) g2_load<edge>(smem + write, loader, a, b, next * g2_k, g.K);
        cp_async_commit();
        g2_compute<edge>(acc, smem + read + a_off, smem + read + b_off, tiles_m, tiles_n);
        read = read + g2_stage_elems == ring ? 0 : read + g2_stage_elems;
        write = write + g2_stage_elems == ring ? 0 : write + g2_stage_elems;
    }
    cp_async_wait<0>();
    const bool vector = !edge && g.ldc % 2 == 0 && reinterpret_cast<std::uintptr_t>(g.out) % 8 == 0 &&
                        reinterpret_cast<std::uintptr_t>(g.bias) % 8 == 0;
#pragma unroll
    for (int i = 0; i < 4; ++i)
#pragma unroll
        for (int j = 0; j < 4; ++j)
#pragma unroll
            for (int h = 0; h < 2; ++h) {
                const int m = m0 + warp_m * 64 + i * 16 + lane / 4 + h * 8;
                const int n = n0 + warp_n * 32 + j * 8 + (lane % 4) * 2;
                g2_store_pair(g, m, n, acc[i][j][2 * h], acc[i][j][2 * h + 1], vector);
            }
}

// The epilogue (bias, accumulate, ldc, bounds) is G0/G1's gemm_store; g.a and
// g.b are unused (the operands are the bf16 a [M,K] and b [N,K]). Blocks
// wholly inside the output take the guard-free path; only edge blocks
// check rows and skip tiles.
__global__ void __launch_bounds__(g2_threads, 2) gemm_bf16_mma(gemm_params g, const std::uint16_t* a,
                                                               const std::uint16_t* b) {
#if defined(CHIMERA_CUDA_EMULATION) || (defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800)
#if defined(CHIMERA_CUDA_EMULATION)
    auto* smem = reinterpret_cast<std::uint16_t*>(::chimera_emulator::dynamic_shared());
#else
    extern __shared__ __align__(16) unsigned char g2_shared[];
    auto* smem = reinterpret_cast<std::uint16_t*>(g2_shared);
#endif
    const int m0 = blockIdx.y * g2_tile, n0 = blockIdx.x * g2_tile;
    if (m0 + g2_tile <= g.M && n0 + g2_tile <= g.N) g2_block<false>(g, a, b, smem, m0, n0);
    else g2_block<true>(g, a, b, smem, m0, n0);
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

// --- attention v2: flash attention, head size 64 -----------------------------
// FlashAttention-2's tiling on fp32 SIMT: a block of flash_warps warps owns
// a tile of flash_tile rows (queries in the forward and dq, keys in dk/dv),
// flash_rows of them per warp; the other side streams through shared
// memory in tiles of flash_tile. Each tile pair is two warp-level products:
// scores with lane = the streamed row (flash_rows independent 64-long dot
// products per lane, the warp's own rows broadcast as float4), then
// weights x rows with lane = a dimension pair (d, d + 32), the weights
// passed through shared memory. Every sum runs in one fixed order, so
// results are bitwise reproducible; no atomics.
constexpr int flash_tile = 32, flash_warps = 4, flash_rows = flash_tile / flash_warps, flash_hs = 64;
constexpr int flash_threads = 32 * flash_warps;

__device__ inline float warp_sum(float v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}
__device__ inline float warp_max(float v) {
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

// flash_tile rows of one head into shared memory (row pitch `pitch`), zeros
// past T: dst[r][d] = src[(b T + first + r) stride + d].
__device__ inline void flash_load(float* dst, int pitch, const float* src, size_t stride, int b, int first, int T) {
    for (int i = threadIdx.x; i < flash_tile * flash_hs; i += blockDim.x) {
        const int r = i / flash_hs, d = i % flash_hs, t = first + r;
        dst[r * pitch + d] = t < T ? src[(static_cast<size_t>(b) * T + t) * stride + d] : 0.f;
    }
}

// s[r] = rows[r] . own over the 64 dims: `rows` (R rows, pitch flash_hs,
// 16-byte aligned) are the same for the whole warp (broadcast float4
// reads), `own` is this lane's row. R independent chains, d in order.
template <int R>
__device__ inline void flash_dots(float (&s)[R], const float* rows, const float* own) {
#pragma unroll
    for (int r = 0; r < R; ++r) s[r] = 0.f;
#pragma unroll 2
    for (int d = 0; d < flash_hs; d += 4) {
        const float o0 = own[d], o1 = own[d + 1], o2 = own[d + 2], o3 = own[d + 3];
#pragma unroll
        for (int r = 0; r < R; ++r) {
            const float4 x = *reinterpret_cast<const float4*>(rows + r * flash_hs + d);
            s[r] = fmaf(x.w, o3, fmaf(x.z, o2, fmaf(x.y, o1, fmaf(x.x, o0, s[r]))));
        }
    }
}

// acc[r][h] += sum over i < flash_tile of w[r][i] vecs[i][lane + 32 h]: the
// weights (R rows of flash_tile, 16-byte aligned) broadcast, `vecs` rows of
// `pitch` floats read by all lanes at consecutive columns; i in order.
template <int R>
__device__ inline void flash_accumulate(float (&acc)[R][2], const float* w, const float* vecs, int pitch) {
    const int lane = threadIdx.x % 32;
#pragma unroll 2
    for (int i = 0; i < flash_tile; i += 4) {
        float v0[4], v1[4];
#pragma unroll
        for (int u = 0; u < 4; ++u) v0[u] = vecs[(i + u) * pitch + lane], v1[u] = vecs[(i + u) * pitch + lane + 32];
#pragma unroll
        for (int r = 0; r < R; ++r) {
            const float4 x = *reinterpret_cast<const float4*>(w + r * flash_tile + i);
            acc[r][0] = fmaf(x.w, v0[3], fmaf(x.z, v0[2], fmaf(x.y, v0[1], fmaf(x.x, v0[0], acc[r][0]))));
            acc[r][1] = fmaf(x.w, v1[3], fmaf(x.z, v1[2], fmaf(x.y, v1[1], fmaf(x.x, v1[0], acc[r][1]))));
        }
    }
}

// Forward: per key tile, each row's tile maximum and sum take one warp
// reduction each (not one per key), one exp per (row, key) and one per row
// for the rescale; out = o / l and the row log-sum-exp m + log l.
__global__ void __launch_bounds__(flash_threads) attention_flash_forward(float* out, float* lse, const float* qkv,
                                                                         int /*B*/, int T, int C, int NH) {
    __shared__ __align__(16) float qs[flash_tile][flash_hs];
    __shared__ float ks[flash_tile][flash_hs + 1];  // lane = key reads its row: odd pitch, no conflicts
    __shared__ float vs[flash_tile][flash_hs];
    __shared__ __align__(16) float ps[flash_warps][flash_rows][flash_tile];
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int bh = blockIdx.y, b = bh / NH, h = bh % NH, q0 = blockIdx.x * flash_tile;
    const size_t C3 = 3 * static_cast<size_t>(C);
    const float scale = 1.0f / sqrtf(static_cast<float>(flash_hs));
    flash_load(&qs[0][0], flash_hs, qkv + h * flash_hs, C3, b, q0, T);
    float m[flash_rows], l[flash_rows], o[flash_rows][2];
#pragma unroll
    for (int r = 0; r < flash_rows; ++r) m[r] = -INFINITY, l[r] = 0.f, o[r][0] = o[r][1] = 0.f;
    const int last = min(T - 1, q0 + flash_tile - 1);
    for (int k0 = 0; k0 <= last; k0 += flash_tile) {
        __syncthreads();  // the previous tile's readers are done
        flash_load(&ks[0][0], flash_hs + 1, qkv + C + h * flash_hs, C3, b, k0, T);
        flash_load(&vs[0][0], flash_hs, qkv + 2 * C + h * flash_hs, C3, b, k0, T);
        __syncthreads();
        float s[flash_rows];
        flash_dots(s, &qs[warp * flash_rows][0], ks[lane]);
        const int key = k0 + lane;
#pragma unroll
        for (int r = 0; r < flash_rows; ++r) {
            const int t = q0 + warp * flash_rows + r;  // key k0 <= t: every row has a finite maximum
            const float x = key <= t && key < T ? s[r] * scale : -INFINITY;
            const float next = fmaxf(m[r], warp_max(x));
            const float p = expf(x - next), factor = expf(m[r] - next);
            m[r] = next;
            l[r] = l[r] * factor + warp_sum(p);
            o[r][0] *= factor, o[r][1] *= factor;
            ps[warp][r][lane] = p;
        }
        __syncwarp();
        flash_accumulate(o, &ps[warp][0][0], &vs[0][0], flash_hs);
    }
#pragma unroll
    for (int r = 0; r < flash_rows; ++r) {
        const int t = q0 + warp * flash_rows + r;
        if (t >= T) break;
        float* row = out + (static_cast<size_t>(b) * T + t) * C + h * flash_hs;
        row[lane] = o[r][0] / l[r];
        row[lane + 32] = o[r][1] / l[r];
        if (lane == 0) lse[static_cast<size_t>(bh) * T + t] = m[r] + logf(l[r]);
    }
}

// Flash backward (head size 64), from the forward's out and lse: the
// probabilities p[t,j] = exp(scale q_t.k_j - lse_t) are recomputed, never
// stored. With D_t = dout_t.out_t (= sum_j p[t,j] dout_t.v_j) the softmax
// backward is ds[t,j] = p[t,j] (dout_t.v_j - D_t) scale, so
//   dq_t = sum_{j<=t} ds[t,j] k_j, dk_j = sum_{t>=j} ds[t,j] q_t,
//   dv_j = sum_{t>=j} p[t,j] dout_t.
// dk/dv and dq are separate kernels, so no two blocks write one element.

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

// dk, dv: one block per (key tile, b*h), each warp flash_rows keys; query
// tiles stream from the block's first key on (causal), lane = query row.
// 5 blocks per SM is what its 41 KB of shared memory allows; the bound caps
// registers at 102 (without it, 120: 4 blocks).
__global__ void __launch_bounds__(flash_threads, 5) attention_flash_backward_kv(float* dqkv, const float* qkv,
                                                                             const float* dout, const float* lse,
                                                                             const float* D, int T, int C, int NH) {
    __shared__ __align__(16) float ks[flash_tile][flash_hs];  // the block's keys: broadcast reads
    __shared__ __align__(16) float vs[flash_tile][flash_hs];
    __shared__ float qs[flash_tile][flash_hs + 1];  // lane = query reads its row: odd pitch
    __shared__ float dos[flash_tile][flash_hs + 1];
    __shared__ float lses[flash_tile], Ds[flash_tile];
    __shared__ __align__(16) float ps[flash_warps][flash_rows][flash_tile];
    __shared__ __align__(16) float dss[flash_warps][flash_rows][flash_tile];
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int bh = blockIdx.y, b = bh / NH, h = bh % NH, k0 = blockIdx.x * flash_tile;
    const size_t C3 = 3 * static_cast<size_t>(C);
    const float scale = 1.0f / sqrtf(static_cast<float>(flash_hs));
    flash_load(&ks[0][0], flash_hs, qkv + C + h * flash_hs, C3, b, k0, T);
    flash_load(&vs[0][0], flash_hs, qkv + 2 * C + h * flash_hs, C3, b, k0, T);
    float dk[flash_rows][2] = {}, dv[flash_rows][2] = {};
    for (int t0 = k0; t0 < T; t0 += flash_tile) {
        __syncthreads();  // the previous tile's readers are done
        flash_load(&qs[0][0], flash_hs + 1, qkv + h * flash_hs, C3, b, t0, T);
        flash_load(&dos[0][0], flash_hs + 1, dout + h * flash_hs, C, b, t0, T);
        for (int r = threadIdx.x; r < flash_tile; r += blockDim.x) {
            const int t = t0 + r;
            lses[r] = t < T ? lse[static_cast<size_t>(bh) * T + t] : 0.f;
            Ds[r] = t < T ? D[static_cast<size_t>(bh) * T + t] : 0.f;
        }
        __syncthreads();
        float s[flash_rows], dp[flash_rows];
        flash_dots(s, &ks[warp * flash_rows][0], qs[lane]);
        flash_dots(dp, &vs[warp * flash_rows][0], dos[lane]);
        const int t = t0 + lane;
#pragma unroll
        for (int r = 0; r < flash_rows; ++r) {
            const int j = k0 + warp * flash_rows + r;
            const float p = t < T && j <= t ? expf(s[r] * scale - lses[lane]) : 0.f;
            ps[warp][r][lane] = p;
            dss[warp][r][lane] = p * (dp[r] - Ds[lane]) * scale;
        }
        __syncwarp();
        flash_accumulate(dv, &ps[warp][0][0], &dos[0][0], flash_hs + 1);
        flash_accumulate(dk, &dss[warp][0][0], &qs[0][0], flash_hs + 1);
    }
#pragma unroll
    for (int r = 0; r < flash_rows; ++r) {
        const int j = k0 + warp * flash_rows + r;
        if (j >= T) break;
        float* g = dqkv + (static_cast<size_t>(b) * T + j) * C3 + h * flash_hs;
        g[C + lane] += dk[r][0], g[C + lane + 32] += dk[r][1];
        g[2 * C + lane] += dv[r][0], g[2 * C + lane + 32] += dv[r][1];
    }
}

// dq: one block per (query tile, b*h), each warp flash_rows queries; key
// tiles stream up to the tile's last row, lane = key.
__global__ void __launch_bounds__(flash_threads) attention_flash_backward_q(float* dqkv, const float* qkv,
                                                                            const float* dout, const float* lse,
                                                                            const float* D, int T, int C, int NH) {
    __shared__ __align__(16) float qs[flash_tile][flash_hs];  // the block's queries: broadcast reads
    __shared__ __align__(16) float dos[flash_tile][flash_hs];
    __shared__ float ks[flash_tile][flash_hs + 1];  // lane = key reads its row: odd pitch
    __shared__ float vs[flash_tile][flash_hs + 1];
    __shared__ __align__(16) float dss[flash_warps][flash_rows][flash_tile];
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int bh = blockIdx.y, b = bh / NH, h = bh % NH, t0 = blockIdx.x * flash_tile;
    const size_t C3 = 3 * static_cast<size_t>(C);
    const float scale = 1.0f / sqrtf(static_cast<float>(flash_hs));
    flash_load(&qs[0][0], flash_hs, qkv + h * flash_hs, C3, b, t0, T);
    flash_load(&dos[0][0], flash_hs, dout + h * flash_hs, C, b, t0, T);
    float row_lse[flash_rows], row_D[flash_rows], dq[flash_rows][2] = {};
#pragma unroll
    for (int r = 0; r < flash_rows; ++r) {
        const int t = t0 + warp * flash_rows + r;
        row_lse[r] = t < T ? lse[static_cast<size_t>(bh) * T + t] : 0.f;
        row_D[r] = t < T ? D[static_cast<size_t>(bh) * T + t] : 0.f;
    }
    const int last = min(T - 1, t0 + flash_tile - 1);
    for (int k0 = 0; k0 <= last; k0 += flash_tile) {
        __syncthreads();
        flash_load(&ks[0][0], flash_hs + 1, qkv + C + h * flash_hs, C3, b, k0, T);
        flash_load(&vs[0][0], flash_hs + 1, qkv + 2 * C + h * flash_hs, C3, b, k0, T);
        __syncthreads();
        float s[flash_rows], dp[flash_rows];
        flash_dots(s, &qs[warp * flash_rows][0], ks[lane]);
        flash_dots(dp, &dos[warp * flash_rows][0], vs[lane]);
        const int j = k0 + lane;
#pragma unroll
        for (int r = 0; r < flash_rows; ++r) {
            const int t = t0 + warp * flash_rows + r;
            const float p = t < T && j <= t ? expf(s[r] * scale - row_lse[r]) : 0.f;
            dss[warp][r][lane] = p * (dp[r] - row_D[r]) * scale;
        }
        __syncwarp();
        flash_accumulate(dq, &dss[warp][0][0], &ks[0][0], flash_hs + 1);
    }
#pragma unroll
    for (int r = 0; r < flash_rows; ++r) {
        const int t = t0 + warp * flash_rows + r;
        if (t >= T) break;
        float* g = dqkv + (static_cast<size_t>(b) * T + t) * C3 + h * flash_hs;
        g[lane] += dq[r][0], g[lane + 32] += dq[r][1];
    }
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
