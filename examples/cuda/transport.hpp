// Local transport (docs/design/runtime-contract.md#cuda-local-transport): several virtual workers on one GPU, one
// stream each. A send copies the activation on the sender's stream into a
// buffer owned by the message and records the message's event; a receive
// makes the receiver's stream wait on that event. The host thread of the
// receiver blocks until the sender recorded (a host-side flag), so a stream
// never waits on an event that was not recorded yet (which CUDA would treat
// as a no-op). An all-reduce of a replica group: every member records an
// event; the last member to arrive makes its stream wait on all of them,
// sums the members in fixed order (replica_sum) into a result buffer and
// records a result event; each member's stream waits on it and copies the
// sum back. Everything a member enqueues is on its own stream (the member
// pointer table of the sum included: the legacy default stream would not
// be ordered with the non-blocking worker streams). Device buffers come from
// a buffer_pool that outlives the iteration, so after the first iteration
// the transport allocates nothing.
#pragma once

#include <chrono>
#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <tuple>
#include <vector>

#include "cuda_api.hpp"

#include "gpu_kernels.hpp"

namespace chimera::runtime::gpu {

// (kind, pipeline, micro-batch, sending stage, receiving stage, data-parallel group)
using message_id = std::tuple<int, int, int, int, int, int>;

// Device buffers reused from one iteration to the next, by exact size in
// bytes (each request's own size: a schedule sends the same messages every
// iteration). take() allocates only when no free buffer of that size is
// left, and never under the transport's lock. give_back() only once the
// device is done with the buffer (the transport's destructor runs after
// every stream was synchronized).
class buffer_pool {
public:
    buffer_pool() = default;
    buffer_pool(const buffer_pool&) = delete;
    buffer_pool& operator=(const buffer_pool&) = delete;
    ~buffer_pool() {
        for (auto& [bytes, list] : free_)
            for (void* p : list) cudaFree(p);
    }
    void* take(std::size_t bytes) {
        {
            std::lock_guard lock(mutex_);
            auto& list = free_[bytes];
            if (!list.empty()) {
                void* p = list.back();
                list.pop_back();
                return p;
            }
            ++allocations_;
        }
        void* p = nullptr;
        check(cudaMalloc(&p, bytes), "transport buffer");
        return p;
    }
    void give_back(void* p, std::size_t bytes) {
        if (!p) return;
        std::lock_guard lock(mutex_);
        free_[bytes].push_back(p);
    }
    // cudaMalloc calls so far.
    std::size_t allocations() {
        std::lock_guard lock(mutex_);
        return allocations_;
    }

private:
    std::mutex mutex_;
    std::map<std::size_t, std::vector<void*>> free_;
    std::size_t allocations_ = 0;
};

class local_transport {
public:
    // `pool`: where buffers come from and go back to (a trainer passes one
    // that lives across iterations); without one the transport has its own.
    explicit local_transport(std::chrono::milliseconds watchdog, buffer_pool* pool = nullptr)
        : watchdog_(watchdog), own_pool_(pool ? nullptr : std::make_unique<buffer_pool>()),
          pool_(pool ? pool : own_pool_.get()) {}
    local_transport(const local_transport&) = delete;
    local_transport& operator=(const local_transport&) = delete;
    ~local_transport() {
        // Called after every stream was synchronized.
        for (auto& [id, m] : messages_) {
            if (m.event) cudaEventDestroy(m.event);
            pool_->give_back(m.buffer, m.count * sizeof(float));
        }
        for (auto& [id, r] : reductions_) {
            if (r.result_event) cudaEventDestroy(r.result_event);
            for (cudaEvent_t e : r.member_events) cudaEventDestroy(e);
            pool_->give_back(r.result, r.count * sizeof(float));
            pool_->give_back(r.member_pointers, r.buffers.size() * sizeof(float*));
        }
    }

    void send(const message_id& id, const float* source, std::size_t count, cudaStream_t stream) {
        auto* buffer = static_cast<float*>(pool_->take(count * sizeof(float)));
        std::unique_lock lock(mutex_);
        auto& m = messages_[id];
        if (m.recorded) {
            pool_->give_back(buffer, count * sizeof(float));
            throw std::runtime_error("local transport: message sent twice in one iteration");
        }
        m.count = count;
        m.buffer = buffer;
        check(cudaMemcpyAsync(m.buffer, source, count * sizeof(float), cudaMemcpyDeviceToDevice, stream), "send");
        check(cudaEventCreateWithFlags(&m.event, cudaEventDisableTiming), "event");
        check(cudaEventRecord(m.event, stream), "cudaEventRecord");
        m.recorded = true;
        cv_.notify_all();
    }

    // Makes `stream` wait for the message and returns its device buffer
    // (owned by the transport until the end of the iteration).
    const float* receive(const message_id& id, std::size_t count, cudaStream_t stream) {
        std::unique_lock lock(mutex_);
        wait(lock, [&] { return messages_.count(id) && messages_[id].recorded; }, "a receive");
        auto& m = messages_[id];
        if (m.count != count) throw std::runtime_error("local transport: message size mismatch");
        check(cudaStreamWaitEvent(stream, m.event, 0), "cudaStreamWaitEvent");
        return m.buffer;
    }

    // One member of the all-reduce (sum) of `key` over `members` buffers;
    // `order` is the member's place in the fixed summation order. Posting
    // never blocks; finish_all_reduce waits for the sum and copies it back.
    // (A group posts its reductions before it waits on its receives, as
    // "post all members, then wait for all" requires.)
    void post_all_reduce(int key, int order, int members, float* buffer, std::size_t count, cudaStream_t stream) {
        std::unique_lock lock(mutex_);
        auto& r = reductions_[key];
        if (r.members == 0) {
            r.members = members;
            r.count = count;
            r.buffers.assign(static_cast<std::size_t>(members), nullptr);
            r.member_events.assign(static_cast<std::size_t>(members), nullptr);
        }
        if (r.members != members || r.count != count || order < 0 || order >= members ||
            r.buffers[static_cast<std::size_t>(order)])
            throw std::runtime_error("local transport: inconsistent all-reduce members for key " + std::to_string(key));
        r.buffers[static_cast<std::size_t>(order)] = buffer;
        check(cudaEventCreateWithFlags(&r.member_events[static_cast<std::size_t>(order)], cudaEventDisableTiming),
              "event");
        check(cudaEventRecord(r.member_events[static_cast<std::size_t>(order)], stream), "cudaEventRecord");
        if (++r.arrived < members) return;
        // The last member: nobody else touches `r` until `done`, so the
        // buffers are taken without the lock.
        lock.unlock();
        auto* result = static_cast<float*>(pool_->take(count * sizeof(float)));
        auto* table = static_cast<float**>(pool_->take(r.buffers.size() * sizeof(float*)));
        lock.lock();
        r.result = result;
        r.member_pointers = table;
        for (cudaEvent_t e : r.member_events) check(cudaStreamWaitEvent(stream, e, 0), "cudaStreamWaitEvent");
        // On the kernel's stream: r.buffers lives until the transport ends.
        check(cudaMemcpyAsync(table, r.buffers.data(), r.buffers.size() * sizeof(float*), cudaMemcpyHostToDevice,
                              stream),
              "reduce list");
        replica_sum(result, table, members, count, stream);
        check(cudaEventCreateWithFlags(&r.result_event, cudaEventDisableTiming), "event");
        check(cudaEventRecord(r.result_event, stream), "cudaEventRecord");
        r.done = true;
        cv_.notify_all();
    }

    void finish_all_reduce(int key, float* buffer, cudaStream_t stream) {
        std::unique_lock lock(mutex_);
        auto& r = reductions_[key];
        wait(lock, [&] { return r.done; }, "an all-reduce");
        check(cudaStreamWaitEvent(stream, r.result_event, 0), "cudaStreamWaitEvent");
        check(cudaMemcpyAsync(buffer, r.result, r.count * sizeof(float), cudaMemcpyDeviceToDevice, stream),
              "reduce copy");
    }

    void abort(const std::string& why) {
        std::unique_lock lock(mutex_);
        if (failure_.empty()) failure_ = why;
        cv_.notify_all();
    }
    std::string failure() {
        std::unique_lock lock(mutex_);
        return failure_;
    }

private:
    template <class Ready>
    void wait(std::unique_lock<std::mutex>& lock, Ready ready, const char* what) {
        const auto deadline = std::chrono::steady_clock::now() + watchdog_;
        while (!ready()) {
            if (!failure_.empty()) throw std::runtime_error(failure_);
            if (cv_.wait_until(lock, deadline) == std::cv_status::timeout && !ready()) {
                failure_ = std::string("local transport watchdog: ") + what + " waited " +
                           std::to_string(watchdog_.count()) + " ms for its partner";
                cv_.notify_all();
                throw std::runtime_error(failure_);
            }
        }
    }

    struct message {
        float* buffer = nullptr;
        std::size_t count = 0;
        cudaEvent_t event = nullptr;
        bool recorded = false;  // host-side: the event was recorded (docs/design/runtime-contract.md#cuda-local-transport pitfall)
    };
    struct reduction {
        int members = 0, arrived = 0;
        std::size_t count = 0;
        std::vector<float*> buffers;
        std::vector<cudaEvent_t> member_events;
        float* result = nullptr;
        float** member_pointers = nullptr;
        cudaEvent_t result_event = nullptr;
        bool done = false;
    };
    std::chrono::milliseconds watchdog_;
    std::unique_ptr<buffer_pool> own_pool_;
    buffer_pool* pool_;
    std::mutex mutex_;
    std::condition_variable cv_;
    std::map<message_id, message> messages_;
    std::map<int, reduction> reductions_;
    std::string failure_;
};

}  // namespace chimera::runtime::gpu
