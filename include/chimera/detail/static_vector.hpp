// A std::array with a size: the storage of schedules that live in constant
// expressions (compile-time schedules cannot keep a std::vector).
#pragma once

#include <array>
#include <cstddef>
#include <stdexcept>

namespace chimera::detail {

template <class T, std::size_t Capacity>
class static_vector {
public:
    using value_type = T;
    constexpr std::size_t size() const { return size_; }
    constexpr bool empty() const { return size_ == 0; }
    static constexpr std::size_t capacity() { return Capacity; }
    constexpr T* data() { return data_.data(); }
    constexpr const T* data() const { return data_.data(); }
    constexpr T& operator[](std::size_t i) { return data_[i]; }
    constexpr const T& operator[](std::size_t i) const { return data_[i]; }
    constexpr T& back() { return data_[size_ - 1]; }
    constexpr T* begin() { return data_.data(); }
    constexpr T* end() { return data_.data() + size_; }
    constexpr const T* begin() const { return data_.data(); }
    constexpr const T* end() const { return data_.data() + size_; }
    constexpr void push_back(const T& value) {
        if (size_ == Capacity) throw std::length_error("static_vector: capacity exceeded");
        data_[size_++] = value;
    }
    constexpr void resize(std::size_t n, const T& value = T{}) {
        if (n > Capacity) throw std::length_error("static_vector: capacity exceeded");
        for (std::size_t i = size_; i < n; ++i) data_[i] = value;
        size_ = n;
    }
    constexpr void clear() { size_ = 0; }

private:
    std::array<T, Capacity> data_{};
    std::size_t size_ = 0;
};

}  // namespace chimera::detail
