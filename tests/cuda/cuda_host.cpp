// Host-side parts of the CUDA backend that run without a GPU: the shared
// bf16 rounding (used by the cast kernels and the twins), the token
// buckets of the deterministic encoder backward, and launchers rejecting bad
// shapes before they touch the device.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <stdexcept>
#include <vector>

#include <common/bf16.hpp>
#include <cuda/gpu_kernels.hpp>
#include <cuda/peak_flops.hpp>

namespace math = chimera::runtime::math;

TEST_CASE("bf16 rounding: nearest-even, exact values kept, NaN stays NaN") {
    CHECK(math::to_bf16(1.0f) == 0x3f80);
    CHECK(math::from_bf16(0x3f80) == 1.0f);
    CHECK(math::to_bf16(-2.0f) == 0xc000);
    // 1 + 2^-8 is halfway between 1 and 1 + 2^-7: ties to even (1).
    CHECK(math::to_bf16(1.0f + 0x1.0p-8f) == 0x3f80);
    // 1 + 3 * 2^-8 is halfway between 1 + 2^-7 (odd) and 1 + 2^-6: up.
    CHECK(math::to_bf16(1.0f + 3 * 0x1.0p-8f) == 0x3f82);
    CHECK(math::to_bf16(1.0f + 0x1.0p-8f + 0x1.0p-20f) == 0x3f81);  // above halfway: up
    CHECK(std::isnan(math::from_bf16(math::to_bf16(std::numeric_limits<float>::quiet_NaN()))));
    CHECK(std::isinf(math::from_bf16(math::to_bf16(std::numeric_limits<float>::infinity()))));
    for (float x : {0.1f, -3.14159f, 1e-20f, 65504.f, 1e30f}) {
        const float r = math::from_bf16(math::to_bf16(x));
        CHECK(std::fabs(r - x) <= std::fabs(x) * 0x1.0p-8f);  // half an ulp of an 8-bit significand
    }
}

TEST_CASE("token buckets: unique tokens ascending, positions ascending inside a bucket") {
    const std::vector<int> tokens{5, 2, 5, 9, 2, 5};
    const auto b = chimera::runtime::gpu::token_buckets(tokens.data(), static_cast<int>(tokens.size()));
    // [U, unique..., starts (U+1)..., positions...]
    const std::vector<int> expected{3, 2, 5, 9, 0, 2, 5, 6, 1, 4, 0, 2, 5, 3};
    CHECK(b == expected);
    CHECK(chimera::runtime::gpu::token_buckets(tokens.data(), 0) == std::vector<int>{0, 0});
}

TEST_CASE("bf16 GEMM launchers: bad shapes are rejected before any launch") {
    namespace gpu = chimera::runtime::gpu;
    CHECK(gpu::bf16_padded(7) == 8);
    CHECK(gpu::bf16_padded(16) == 16);
    CHECK(gpu::bf16_padded(1) == 8);
    // G2 reads 16-byte rows: K must be a multiple of 8.
    CHECK_THROWS_AS(gpu::gemm_g2_bf16(nullptr, nullptr, nullptr, nullptr, 1, 1, 12, 1, false, nullptr),
                    std::invalid_argument);
    CHECK_THROWS_AS(gpu::gemm_g2_bf16(nullptr, nullptr, nullptr, nullptr, 1, 4, 16, 3, false, nullptr),
                    std::invalid_argument);  // ldc < N
    CHECK_THROWS_AS(gpu::cast_to_bf16_padded(nullptr, nullptr, 2, 9, 8, nullptr), std::invalid_argument);
    CHECK_THROWS_AS(gpu::transpose_to_bf16_padded(nullptr, nullptr, 9, 2, 8, nullptr), std::invalid_argument);
}

TEST_CASE("MFU peaks: by compute capability and SM count; an unknown device has none") {
    using chimera::runtime::gpu::find_peak;
    CHECK(find_peak(9, 0, 132, "NVIDIA H200")->bf16_dense == 989e12);
    CHECK(find_peak(9, 0, 132, "NVIDIA H100 80GB HBM3")->bf16_dense == 989e12);
    CHECK(find_peak(9, 0, 132, "NVIDIA H100 NVL")->bf16_dense == 835e12);
    CHECK(find_peak(9, 0, 132, "NVIDIA H200 NVL")->bf16_dense == 835e12);
    CHECK(find_peak(9, 0, 114, "NVIDIA H100 PCIe")->bf16_dense == 756e12);
    CHECK(find_peak(8, 0, 108, "NVIDIA A100-SXM4-80GB")->bf16_dense == 312e12);
    CHECK(find_peak(8, 0, 108, "NVIDIA A100-SXM4-80GB")->of.find("A100") != std::string_view::npos);
    // Not in the table: no guess (an A30 is sm_80 with 56 SMs; an L40S sm_89).
    CHECK_FALSE(find_peak(8, 0, 56, "NVIDIA A30").has_value());
    CHECK_FALSE(find_peak(8, 9, 142, "NVIDIA L40S").has_value());
    CHECK_FALSE(find_peak(10, 0, 148, "NVIDIA B200").has_value());
    CHECK_FALSE(find_peak(9, 0, 1, "Chimera CUDA emulator (CPU)").has_value());
}
