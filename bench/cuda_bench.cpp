// CUDA benchmarks (docs/design/runtime-contract.md#performance-anchors): the GEMM ladder next to cuBLAS at the
// GPT-2 124M shapes and 4096^3, attention v1 vs the flash forward, and
// GPT-2 124M (T = 1024) tokens/s and MFU on one GPU, sequential and Chimera
// on virtual workers. cuBLAS appears only here, as the baseline.
// Warm medians of 20 repetitions, L2 flushed before each.
//
//   build/bench/cuda_bench [--quick]
//
// Without a usable GPU it prints why and exits 0.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <chimera/generate.hpp>
#include <chimera/lower.hpp>
#include <cuda/device.hpp>
#include <cuda/gpu_kernels.hpp>
#include <cuda/peak_flops.hpp>
#include <cuda/trainer.hpp>

namespace gpu = chimera::runtime::gpu;
using gpu::device_buffer;

namespace {

void cublas_check(cublasStatus_t s, const char* what) {
    if (s != CUBLAS_STATUS_SUCCESS) throw std::runtime_error(std::string(what) + ": cuBLAS status " + std::to_string(s));
}

// Median milliseconds of `run` over `reps` repetitions, L2 flushed before each.
double median_ms(const std::function<void()>& run, int reps = 20) {
    static device_buffer<char> flush(256u << 20);
    cudaEvent_t start, stop;
    gpu::check(cudaEventCreate(&start), "event");
    gpu::check(cudaEventCreate(&stop), "event");
    run();  // warm-up
    std::vector<double> times;
    for (int i = 0; i < reps; ++i) {
        gpu::check(cudaMemsetAsync(flush.data(), i, flush.size()), "flush");
        gpu::check(cudaEventRecord(start), "record");
        run();
        gpu::check(cudaEventRecord(stop), "record");
        gpu::check(cudaEventSynchronize(stop), "sync");
        float ms = 0;
        gpu::check(cudaEventElapsedTime(&ms, start, stop), "elapsed");
        times.push_back(ms);
    }
    cudaEventDestroy(start);
    cudaEventDestroy(stop);
    std::sort(times.begin(), times.end());
    return times[times.size() / 2];
}

// The device's dense bf16 peak from the table (peak_flops.hpp), if known.
std::optional<gpu::peak_flops> device_peak() {
    cudaDeviceProp p{};
    gpu::check(cudaGetDeviceProperties(&p, 0), "properties");
    return gpu::find_peak(p.major, p.minor, p.multiProcessorCount, p.name);
}

void print_device() {
    cudaDeviceProp p{};
    gpu::check(cudaGetDeviceProperties(&p, 0), "properties");
    int driver = 0, runtime = 0, clock_khz = 0;
    cudaDriverGetVersion(&driver);
    cudaRuntimeGetVersion(&runtime);
    cudaDeviceGetAttribute(&clock_khz, cudaDevAttrClockRate, 0);  // CUDA 13: no cudaDeviceProp::clockRate
    std::printf("device: %s (sm_%d%d, %d SMs, %.0f MHz), driver %d, runtime %d\n", p.name, p.major, p.minor,
                p.multiProcessorCount, clock_khz / 1e3, driver, runtime);
    const auto peak = device_peak();
    if (peak)
        std::printf("MFU peak: %.0f TFLOPS dense bf16 (%.*s)\n", peak->bf16_dense / 1e12,
                    static_cast<int>(peak->of.size()), peak->of.data());
    else
        std::printf("MFU peak: unknown device: MFU not reported (add it to examples/cuda/peak_flops.hpp)\n");
}

// out[M,N] = A[M,K] B[N,K]^T for every rung and cuBLAS (row-major: cuBLAS
// computes out^T = B A^T in column-major).
void gemm_row(cublasHandle_t handle, int M, int N, int K) {
    std::vector<float> host(static_cast<std::size_t>(std::max(M, N)) * K);
    for (std::size_t i = 0; i < host.size(); ++i) host[i] = static_cast<float>((i * 2654435761u) % 1000) / 1000.f - 0.5f;
    device_buffer<float> a(static_cast<std::size_t>(M) * K), b(static_cast<std::size_t>(N) * K),
        out(static_cast<std::size_t>(M) * N);
    gpu::check(cudaMemcpy(a.data(), host.data(), a.size() * sizeof(float), cudaMemcpyHostToDevice), "upload");
    gpu::check(cudaMemcpy(b.data(), host.data(), b.size() * sizeof(float), cudaMemcpyHostToDevice), "upload");
    device_buffer<std::uint16_t> a16(a.size()), b16(b.size());
    gpu::cast_to_bf16(a16.data(), a.data(), a.size(), nullptr);
    gpu::cast_to_bf16(b16.data(), b.data(), b.size(), nullptr);
    const double flop = 2.0 * M * N * K;
    auto tflops = [&](double ms) { return flop / (ms * 1e-3) / 1e12; };
    const float one = 1, zero = 0;
    const gpu::gemm_args g{out.data(), a.data(), b.data(), nullptr, K, 1, 1, K, M, N, K, N, false};
    const double g1 = median_ms([&] { gpu::gemm_g1(g, nullptr); });
    const double g2 = median_ms([&] { gpu::gemm_g2_bf16(out.data(), a16.data(), b16.data(), M, N, K, nullptr); });
    const double s32 = median_ms([&] {
        cublas_check(cublasSgemm(handle, CUBLAS_OP_T, CUBLAS_OP_N, N, M, K, &one, b.data(), K, a.data(), K, &zero,
                                 out.data(), N),
                     "sgemm");
    });
    const double s16 = median_ms([&] {
        cublas_check(cublasGemmEx(handle, CUBLAS_OP_T, CUBLAS_OP_N, N, M, K, &one, b16.data(), CUDA_R_16BF, K,
                                  a16.data(), CUDA_R_16BF, K, &zero, out.data(), CUDA_R_32F, N, CUBLAS_COMPUTE_32F,
                                  CUBLAS_GEMM_DEFAULT),
                     "gemm bf16");
    });
    std::printf("| %5d x %5d x %5d | %7.2f | %7.2f | %5.1f %% | %7.2f | %7.2f | %5.1f %% |\n", M, N, K, tflops(g1),
                tflops(s32), 100 * s32 / g1, tflops(g2), tflops(s16), 100 * s16 / g2);
}

void attention(int B, int T, int NH) {
    const int C = 64 * NH;
    const std::size_t n = static_cast<std::size_t>(B) * T * C, scores = static_cast<std::size_t>(B) * NH * T * T;
    device_buffer<float> qkv(3 * n), dqkv(3 * n), out(n), dout(n), att(scores), scratch(scores),
        lse(static_cast<std::size_t>(B) * NH * T);
    gpu::check(cudaMemset(qkv.data(), 0, qkv.size() * sizeof(float)), "memset");
    gpu::check(cudaMemset(dout.data(), 0, dout.size() * sizeof(float)), "memset");
    const double v1 = median_ms([&] { gpu::attention_forward(out.data(), att.data(), qkv.data(), B, T, C, NH, nullptr); });
    const double v1_backward = median_ms([&] {
        gpu::attention_backward(dqkv.data(), scratch.data(), dout.data(), qkv.data(), att.data(), B, T, C, NH, nullptr);
    });
    const double v2 =
        median_ms([&] { gpu::attention_forward_flash(out.data(), lse.data(), qkv.data(), B, T, C, NH, nullptr); });
    const double v2_backward = median_ms([&] {
        gpu::attention_backward_flash(dqkv.data(), scratch.data(), dout.data(), qkv.data(), out.data(), lse.data(), B, T,
                                      C, NH, nullptr);
    });
    std::printf("attention B=%d T=%d NH=%d hs=64, forward / backward: v1 (unfused) %.3f / %.3f ms, "
                "v2 (flash) %.3f / %.3f ms\n",
                B, T, NH, v1, v1_backward, v2, v2_backward);
}

void model(const chimera::config& c, const char* label, int steps, const gpu::gpu_stage_options& options = {}) {
    using namespace chimera;
    static const gpt::dataset data(1 << 20, 1);
    runtime::cpu::run_shape shape;
    shape.model = {50257, 50304, 1024, 768, 12, 12};  // GPT-2 124M
    shape.batch = 4;
    shape.seq = 1024;
    const schedule lowered = c.stages == 1 ? gpu::gpu_pipeline_trainer::sequential_schedule(c.micro_batches)
                                           : lower(generate(c));
    shape.micro_batches = lowered.micro_batches();
    gpu::gpu_pipeline_trainer trainer(lowered, shape, data, gpt::initial_parameters<float>(shape.model, 1),
                                      std::chrono::seconds(600), options);
    trainer.step(0);  // warm-up
    double seconds = 0;
    for (int s = 1; s <= steps; ++s) seconds += trainer.step(s).seconds;
    const double tokens = static_cast<double>(lowered.micro_batches()) * shape.batch * shape.seq * steps;
    const double params = static_cast<double>(gpt::parameter_count(shape.model));
    // llm.c's MFU convention: 6 N + 6 L C T, T the model's context length.
    const double flop_per_token =
        6 * params + 6.0 * shape.model.layers * shape.model.channels * shape.model.max_seq;
    const auto peak = device_peak();
    if (!peak) {
        std::printf("GPT-2 124M, %s: %.0f tokens/s (unknown device: MFU not reported)\n", label, tokens / seconds);
        return;
    }
    std::printf("GPT-2 124M, %s: %.0f tokens/s, MFU %.2f %% of %.0f TFLOPS dense bf16 (%.*s)\n", label,
                tokens / seconds, 100 * tokens / seconds * flop_per_token / peak->bf16_dense, peak->bf16_dense / 1e12,
                static_cast<int>(peak->of.size()), peak->of.data());
}

}  // namespace

int main(int argc, char** argv) {
    const bool quick = argc > 1 && std::strcmp(argv[1], "--quick") == 0;
    std::string reason;
    if (!gpu::device_available(reason)) {
        std::printf("cuda_bench: no GPU (%s); nothing measured\n", reason.c_str());
        return 0;
    }
    try {
        print_device();
        cublasHandle_t handle;
        cublas_check(cublasCreate(&handle), "cublasCreate");
        cublas_check(cublasSetMathMode(handle, CUBLAS_DEFAULT_MATH), "math mode");  // SGEMM without TF32
        std::printf("| M x N x K | G1 TFLOPS | cuBLAS fp32 | G1/cuBLAS | G2 bf16 | cuBLAS bf16 | G2/cuBLAS |\n");
        std::printf("|---|---|---|---|---|---|---|\n");
        const int rows = 4 * 1024;  // B = 4, T = 1024
        for (const auto& [N, K] : {std::pair{3 * 768, 768}, std::pair{768, 768}, std::pair{4 * 768, 768},
                                   std::pair{768, 4 * 768}, std::pair{50304, 768}})
            gemm_row(handle, rows, N, K);
        gemm_row(handle, 4096, 4096, 4096);
        cublasDestroy(handle);
        attention(4, 1024, 12);
        if (!quick) {
            model({chimera::algorithm::gpipe, 1, 4, 0, chimera::scaling::direct, 1}, "sequential (1 worker, 4 micro-batches)", 3);
            model({chimera::algorithm::chimera, 4, 4, 0, chimera::scaling::direct, 1}, "Chimera D=4 N=4 (4 virtual workers)", 3);
            const gpu::gpu_stage_options bf16_flash{chimera::gpt::attention_kind::flash, gpu::precision::bf16};
            model({chimera::algorithm::gpipe, 1, 4, 0, chimera::scaling::direct, 1},
                  "sequential, bf16 matmuls + flash attention", 3, bf16_flash);
            model({chimera::algorithm::chimera, 4, 4, 0, chimera::scaling::direct, 1},
                  "Chimera D=4 N=4, bf16 matmuls + flash attention", 3, bf16_flash);
        }
    } catch (const std::exception& e) {
        std::fprintf(stderr, "cuda_bench: %s\n", e.what());
        return 1;
    }
    return 0;
}
