// Dense bf16 tensor-core peaks of known GPUs, for MFU (the benchmarks
// divide achieved FLOP/s by these). Identified by compute capability and
// SM count, which the runtime reports exactly; the name only separates
// parts that share both (NVL boards run the same die at lower power). A
// device not in the table has no peak: report no MFU rather than a guess.
// Plain C++: tested without a GPU.
#pragma once

#include <optional>
#include <string_view>

namespace chimera::runtime::gpu {

struct peak_flops {
    double bf16_dense;    // FLOP/s
    std::string_view of;  // which parts the row stands for
};

struct peak_row {
    int major, minor, sms;
    std::string_view name_contains;  // empty: any name
    peak_flops peak;
};

// Vendor datasheet figures, dense (the sparse figures are twice these).
inline constexpr peak_row peak_table[] = {
    {9, 0, 132, "NVL", {835e12, "H100 NVL / H200 NVL (sm_90, 132 SMs)"}},
    {9, 0, 132, "", {989e12, "H100 SXM / H200 SXM / GH200 (sm_90, 132 SMs)"}},
    {9, 0, 114, "", {756e12, "H100 PCIe (sm_90, 114 SMs)"}},
    {8, 0, 108, "", {312e12, "A100 SXM / PCIe (sm_80, 108 SMs)"}},
};

inline std::optional<peak_flops> find_peak(int major, int minor, int sms, std::string_view name) {
    for (const peak_row& r : peak_table)
        if (r.major == major && r.minor == minor && r.sms == sms &&
            (r.name_contains.empty() || name.find(r.name_contains) != std::string_view::npos))
            return r.peak;
    return std::nullopt;
}

}  // namespace chimera::runtime::gpu
