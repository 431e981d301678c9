// Small constexpr text helpers: the core must build messages inside constant
// evaluation, where std::to_string and <format> are not available.
#pragma once

#include <string>
#include <string_view>

namespace chimera::detail {

constexpr std::string to_string(long long value) {
    if (value == 0) return "0";
    const bool negative = value < 0;
    // Work on the negative side so that LLONG_MIN does not overflow.
    long long rest = negative ? value : -value;
    char digits[24] = {};
    int length = 0;
    while (rest != 0) {
        digits[length++] = static_cast<char>('0' - rest % 10);
        rest /= 10;
    }
    std::string out;
    if (negative) out.push_back('-');
    while (length > 0) out.push_back(digits[--length]);
    return out;
}

// Concatenates pieces; integers are printed in decimal.
constexpr void append(std::string& out, std::string_view piece) { out.append(piece); }
constexpr void append(std::string& out, const char* piece) { out.append(piece); }
constexpr void append(std::string& out, const std::string& piece) { out.append(piece); }
constexpr void append(std::string& out, char piece) { out.push_back(piece); }
template <class Int>
    requires(std::is_integral_v<Int> && !std::is_same_v<Int, char> && !std::is_same_v<Int, bool>)
constexpr void append(std::string& out, Int value) {
    out.append(to_string(static_cast<long long>(value)));
}

template <class... Pieces>
constexpr std::string cat(const Pieces&... pieces) {
    std::string out;
    (append(out, pieces), ...);
    return out;
}

}  // namespace chimera::detail
