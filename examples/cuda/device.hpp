// Host-side helpers around device memory: an owning typed buffer with
// upload/download, for the backend, the tests and the benchmarks.
//
// Ordering: upload() and zero() with a stream are ordered on that stream
// (the backend passes its worker's non-blocking stream, so its kernels see
// the data); without one they return only once the data is on the device,
// so work submitted afterwards on any stream sees it. (A plain cudaMemcpy or
// cudaMemset runs on the legacy default stream, which is not ordered with
// non-blocking streams, and a pageable upload may land after it returns.)
#pragma once

#include <cstddef>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "cuda_api.hpp"

#include "gpu_kernels.hpp"

namespace chimera::runtime::gpu {

template <class T>
class device_buffer {
public:
    device_buffer() = default;
    explicit device_buffer(std::size_t count) : count_(count) {
        if (count_ > 0) check(cudaMalloc(reinterpret_cast<void**>(&data_), count_ * sizeof(T)), "cudaMalloc");
    }
    explicit device_buffer(const std::vector<T>& host, cudaStream_t stream = nullptr) : device_buffer(host.size()) {
        upload(host, stream);
    }
    device_buffer(const device_buffer&) = delete;
    device_buffer& operator=(const device_buffer&) = delete;
    device_buffer(device_buffer&& other) noexcept
        : data_(std::exchange(other.data_, nullptr)), count_(std::exchange(other.count_, 0)) {}
    device_buffer& operator=(device_buffer&& other) noexcept {
        std::swap(data_, other.data_);
        std::swap(count_, other.count_);
        return *this;
    }
    ~device_buffer() {
        if (data_) cudaFree(data_);
    }

    T* data() { return data_; }
    const T* data() const { return data_; }
    std::size_t size() const { return count_; }

    // `host` may be reused as soon as this returns (a pageable source is
    // staged by the copy call).
    void upload(const std::vector<T>& host, cudaStream_t stream = nullptr) {
        if (host.size() != count_)
            throw std::invalid_argument("device_buffer::upload: " + std::to_string(host.size()) +
                                        " values for a buffer of " + std::to_string(count_));
        if (count_ == 0) return;
        check(cudaMemcpyAsync(data_, host.data(), count_ * sizeof(T), cudaMemcpyHostToDevice, stream), "upload");
        if (!stream) check(cudaStreamSynchronize(nullptr), "upload");
    }
    std::vector<T> download() const {
        std::vector<T> host(count_);
        if (count_ > 0) check(cudaMemcpy(host.data(), data_, count_ * sizeof(T), cudaMemcpyDeviceToHost), "download");
        return host;
    }
    void zero(cudaStream_t stream = nullptr) {
        if (count_ == 0) return;
        check(cudaMemsetAsync(data_, 0, count_ * sizeof(T), stream), "cudaMemset");
        if (!stream) check(cudaStreamSynchronize(nullptr), "cudaMemset");
    }

private:
    T* data_ = nullptr;
    std::size_t count_ = 0;
};

}  // namespace chimera::runtime::gpu
