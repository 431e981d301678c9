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

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <deque>
#include <limits>
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

// Throws, naming `what`, unless the current device has compute capability
// major.minor or newer (kernels built for newer targets only would silently
// do nothing, or fail with "no kernel image", on an older device).
inline void require_compute_capability(int major, int minor, const std::string& what) {
    int device = 0, got_major = 0, got_minor = 0;
    check(cudaGetDevice(&device), "cudaGetDevice");
    check(cudaDeviceGetAttribute(&got_major, cudaDevAttrComputeCapabilityMajor, device), "compute capability");
    check(cudaDeviceGetAttribute(&got_minor, cudaDevAttrComputeCapabilityMinor, device), "compute capability");
    if (got_major * 10 + got_minor < major * 10 + minor)
        throw std::runtime_error(what + " needs compute capability " + std::to_string(major) + "." +
                                 std::to_string(minor) + " or newer; device " + std::to_string(device) + " has " +
                                 std::to_string(got_major) + "." + std::to_string(got_minor));
}

// Stream-ordered allocations (cudaMallocAsync: the stashes, activations,
// messages) come from the device's default memory pool. With CUDA's default
// release threshold (0) the pool hands its memory back to the system at
// every synchronization, and the next large allocation maps it again; this
// keeps it (the pool then holds its peak until the process ends).
inline void keep_pool_memory() {
    int device = 0;
    check(cudaGetDevice(&device), "cudaGetDevice");
    cudaMemPool_t pool = nullptr;
    check(cudaDeviceGetDefaultMemPool(&pool, device), "cudaDeviceGetDefaultMemPool");
    std::uint64_t keep = std::numeric_limits<std::uint64_t>::max();
    check(cudaMemPoolSetAttribute(pool, cudaMemPoolAttrReleaseThreshold, &keep), "release threshold");
}

// Host-to-device uploads of small per-operation data (a micro-batch's
// tokens) without a host synchronization: the values are copied into a
// page-locked slot, the copy is enqueued on the stream from there and the
// slot's event recorded after it. A slot is reused once its event has
// completed (cudaEventQuery: never waits); otherwise another slot is made,
// so there are as many as uploads in flight. Slots hold at least
// `slot_bytes` (the caller's largest upload) or the request. One user
// thread at a time.
class pinned_uploader {
public:
    explicit pinned_uploader(std::size_t slot_bytes) : slot_bytes_(slot_bytes) {}
    pinned_uploader(const pinned_uploader&) = delete;
    pinned_uploader& operator=(const pinned_uploader&) = delete;
    ~pinned_uploader() {
        for (auto& s : slots_) {  // cudaFreeHost waits for the device first
            cudaFreeHost(s.data);
            cudaEventDestroy(s.done);
        }
    }

    template <class V>
    void upload(V* device, const std::vector<V>& host, cudaStream_t stream) {
        const std::size_t bytes = host.size() * sizeof(V);
        if (bytes == 0) return;
        slot& s = free_slot(bytes);
        std::memcpy(s.data, host.data(), bytes);
        check(cudaMemcpyAsync(device, s.data, bytes, cudaMemcpyHostToDevice, stream), "pinned upload");
        check(cudaEventRecord(s.done, stream), "pinned upload");
    }
    std::size_t slots() const { return slots_.size(); }

private:
    struct slot {
        void* data = nullptr;
        std::size_t capacity = 0;
        cudaEvent_t done = nullptr;
    };
    slot& free_slot(std::size_t bytes) {
        for (auto& s : slots_) {
            if (s.capacity < bytes) continue;
            const cudaError_t state = cudaEventQuery(s.done);  // a never-recorded event is complete
            if (state == cudaSuccess) return s;
            if (state != cudaErrorNotReady) check(state, "pinned upload slot");
        }
        slot s;
        s.capacity = std::max(bytes, slot_bytes_);
        check(cudaMallocHost(&s.data, s.capacity), "cudaMallocHost");
        check(cudaEventCreateWithFlags(&s.done, cudaEventDisableTiming), "event");
        slots_.push_back(s);
        return slots_.back();
    }

    std::size_t slot_bytes_;
    std::deque<slot> slots_;  // stable references
};

}  // namespace chimera::runtime::gpu
