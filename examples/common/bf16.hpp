// bf16 rounding shared by the CPU twins and the CUDA kernels (docs/design/runtime-contract.md#kernels-and-their-cpu-twins):
// the bits of a float rounded to nearest-even bf16, and back. Kept as plain
// bit arithmetic so host and device produce the same bits.
#pragma once

#include <cstdint>
#include <cstring>

#include "math.hpp"

namespace chimera::runtime::math {

CHIMERA_HD inline std::uint32_t float_bits(float x) {
#if defined(__CUDA_ARCH__)
    return __float_as_uint(x);
#else
    std::uint32_t u;
    std::memcpy(&u, &x, sizeof u);
    return u;
#endif
}

CHIMERA_HD inline float bits_float(std::uint32_t u) {
#if defined(__CUDA_ARCH__)
    return __uint_as_float(u);
#else
    float x;
    std::memcpy(&x, &u, sizeof x);
    return x;
#endif
}

// Round to nearest, ties to even; NaN stays a (quiet) NaN.
CHIMERA_HD inline std::uint16_t to_bf16(float x) {
    const std::uint32_t u = float_bits(x);
    if ((u & 0x7f800000u) == 0x7f800000u && (u & 0x007fffffu) != 0) return static_cast<std::uint16_t>((u >> 16) | 0x40u);
    const std::uint32_t rounding = 0x7fffu + ((u >> 16) & 1u);
    return static_cast<std::uint16_t>((u + rounding) >> 16);
}

CHIMERA_HD inline float from_bf16(std::uint16_t b) { return bits_float(static_cast<std::uint32_t>(b) << 16); }

}  // namespace chimera::runtime::math
