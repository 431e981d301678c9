// The CUDA emulator's own semantics (examples/cuda/emulator): the rules the
// GPU tests rely on when they run on the CPU. Kernels here are plain
// functions, launched as the backend launches its kernels.
#include <doctest/doctest.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <limits>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include <cuda/cuda_api.hpp>
#include <cuda/device.hpp>
#include <cuda/stage.hpp>
#include <cuda/transport.hpp>

#include "runtime_fixture.hpp"

using chimera::runtime::gpu::device_buffer;

namespace {

__global__ void lane_sums(int* out) {
    int v = static_cast<int>(threadIdx.x);
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    out[blockIdx.x * blockDim.x + threadIdx.x] = v;
}

// Reverses a block's values through shared memory: wrong without the barrier.
__global__ void reverse_block(int* data) {
    __shared__ int tile[256];
    const int t = static_cast<int>(threadIdx.x), n = static_cast<int>(blockDim.x);
    tile[t] = data[blockIdx.x * n + t];
    __syncthreads();
    data[blockIdx.x * n + t] = tile[n - 1 - t];
}

// Warp 1 splits: lanes 0-15 at the block barrier, 16-31 at a shuffle.
__global__ void barrier_in_divergent_code(int* out) {
    if (threadIdx.x < 48) {
        __syncthreads();
    } else {
        out[0] = __shfl_xor_sync(0xffffffffu, 1, 1);
    }
}

__global__ void shuffle_after_exit(int* out) {
    if (threadIdx.x == 5) return;
    out[threadIdx.x] = __shfl_xor_sync(0xffffffffu, 1, 1);
}

// Writes only once the test releases it (host code in the emulator), so
// the stream-ordering checks below do not depend on timing.
std::atomic<bool> released{false};
__global__ void gated_write(int* out, int value) {
    while (!released.load()) std::this_thread::yield();
    out[0] = value;
}

std::vector<unsigned> block_order;  // host memory: the emulator runs kernels on the host
__global__ void note_block() {
    if (threadIdx.x == 0) block_order.push_back(blockIdx.x);
}

// Dynamic shared memory (extern __shared__ on a GPU): out[0] = what thread 0
// read before anyone wrote (uninitialised), out[1] = the block's sum.
__global__ void dynamic_shared_sum(float* out) {
    auto* tile = reinterpret_cast<float*>(chimera_emulator::dynamic_shared());
    const float before = tile[threadIdx.x];
    __syncthreads();
    tile[threadIdx.x] = static_cast<float>(threadIdx.x);
    __syncthreads();
    if (threadIdx.x != 0) return;
    float s = 0;
    for (unsigned i = 0; i < blockDim.x; ++i) s += tile[i];
    out[0] = before, out[1] = s;
}

// cp.async: thread t copies 16-byte chunk t of `src` into dynamic shared
// memory in commit group 0 and chunk 32 + t in group 1, then reads with
// ldmatrix the chunk of group `group` that thread t + 1 copied; out[4t + i]
// is matrix i's register.
enum class staging { wait_all, pipeline_api, forget_wait, wait_n_too_large, skip_barrier, wait_older_group };
__global__ void staged_copy(unsigned* out, const std::uint16_t* src, staging mode, int group) {
    using namespace chimera_emulator;
    unsigned char* smem = dynamic_shared();
    const unsigned t = threadIdx.x;
    for (unsigned g = 0; g < 2; ++g) {
        if (mode == staging::pipeline_api) {
            __pipeline_memcpy_async(smem + 16 * (32 * g + t), src + 8 * (32 * g + t), 16);
            __pipeline_commit();
        } else {
            cp_async_16(smem + 16 * (32 * g + t), src + 8 * (32 * g + t), true);
            cp_async_commit();
        }
    }
    switch (mode) {
    case staging::wait_all: cp_async_wait<0>(); break;
    case staging::pipeline_api: __pipeline_wait_prior(0); break;
    case staging::forget_wait: break;
    case staging::wait_n_too_large:  // N too large: group 1 is still in flight
    case staging::wait_older_group: cp_async_wait<1>(); break;
    case staging::skip_barrier: cp_async_wait_all(); break;
    }
    if (mode != staging::skip_barrier) __syncthreads();
    unsigned r[4];
    ldmatrix_x4(r, smem + 16 * (32 * group + (t + 1) % 32));
    for (int i = 0; i < 4; ++i) out[4 * t + i] = r[i];
}
// What staged_copy reads when src[j] = j: lane l gets, of matrix i, the
// 32-bit pair 2(l % 4) of the row that lane 8i + l / 4 addressed.
unsigned staged_expected(int lane, int matrix, int group) {
    const unsigned chunk = 32 * group + (8 * matrix + lane / 4 + 1) % 32;
    const unsigned first = 8 * chunk + 2 * (lane % 4);
    return first | (first + 1) << 16;
}

// A plain shared-memory read before the wait sees NaN, not the copy:
// out[t] before the wait, out[32 + t] after it.
__global__ void plain_read_of_copy(float* out, const float* src) {
    auto* smem = reinterpret_cast<float*>(chimera_emulator::dynamic_shared());
    const unsigned t = threadIdx.x;
    chimera_emulator::cp_async_16(smem + 4 * t, src + 4 * t, true);
    chimera_emulator::cp_async_commit();
    out[t] = smem[4 * t];
    chimera_emulator::cp_async_wait<0>();
    out[32 + t] = smem[4 * t];
}

// Two copies in flight to the same shared bytes (a write-after-write race).
__global__ void copy_twice(const std::uint16_t* src) {
    unsigned char* smem = chimera_emulator::dynamic_shared();
    chimera_emulator::cp_async_16(smem, src, true);
    chimera_emulator::cp_async_commit();
    chimera_emulator::cp_async_16(smem, src + 8, true);
}

// A struct argument holding device pointers, listed for the emulator's
// unordered-access check by device_pointers() (as gemm_args does).
struct copy_args {
    int* out;
    const int* in;
    std::array<const void*, 2> device_pointers() const { return {out, in}; }
};
__global__ void copy_first(copy_args g) { g.out[0] = g.in[0]; }

struct fresh_device {
    fresh_device() { cudaDeviceReset(); }
    ~fresh_device() { cudaDeviceReset(); }
};

}  // namespace

TEST_CASE_FIXTURE(fresh_device, "warp shuffles exchange between the 32 lanes of each warp") {
    device_buffer<int> out(96);
    CHIMERA_LAUNCH(lane_sums, 1, 96, nullptr)(out.data());
    REQUIRE(cudaGetLastError() == cudaSuccess);
    const auto got = out.download();
    for (int t = 0; t < 96; ++t) CHECK(got[static_cast<std::size_t>(t)] == 496 + 1024 * (t / 32));
}

TEST_CASE_FIXTURE(fresh_device, "__syncthreads orders shared memory between the threads of a block") {
    std::vector<int> host(3 * 256);
    for (std::size_t i = 0; i < host.size(); ++i) host[i] = static_cast<int>(i);
    device_buffer<int> data(host);
    CHIMERA_LAUNCH(reverse_block, 3, 256, nullptr)(data.data());
    const auto got = data.download();
    for (int b = 0; b < 3; ++b)
        for (int t = 0; t < 256; ++t) CHECK(got[static_cast<std::size_t>(b * 256 + t)] == b * 256 + 255 - t);
}

TEST_CASE_FIXTURE(fresh_device, "blocks run in a shuffled but reproducible order") {
    std::vector<std::vector<unsigned>> runs;
    for (int run = 0; run < 2; ++run) {
        block_order.clear();
        CHIMERA_LAUNCH(note_block, 64, 32, nullptr)();
        REQUIRE(cudaDeviceSynchronize() == cudaSuccess);
        runs.push_back(block_order);
    }
    CHECK(runs[0] == runs[1]);
    auto sorted = runs[0];
    std::sort(sorted.begin(), sorted.end());
    std::vector<unsigned> identity(64);
    for (unsigned i = 0; i < 64; ++i) identity[i] = i;
    CHECK(sorted == identity);      // every block once
    CHECK(runs[0] != identity);     // not in index order
}

TEST_CASE_FIXTURE(fresh_device, "a barrier that cannot complete is a launch failure, and it is sticky") {
    device_buffer<int> out(32);
    CHIMERA_LAUNCH(barrier_in_divergent_code, 1, 64, nullptr)(out.data());
    const cudaError_t e = cudaGetLastError();
    CHECK(e == cudaErrorLaunchFailure);
    CHECK(std::string(cudaGetErrorString(e)).find("deadlock in barrier_in_divergent_code block (0,0,0)") !=
          std::string::npos);
    void* p = nullptr;
    CHECK(cudaMalloc(&p, 16) == cudaErrorLaunchFailure);  // every later call fails, as on a GPU
    CHECK(cudaDeviceSynchronize() == cudaErrorLaunchFailure);
}

TEST_CASE_FIXTURE(fresh_device, "a full-mask shuffle with an exited lane is a launch failure naming the thread") {
    device_buffer<int> out(32);
    CHIMERA_LAUNCH(shuffle_after_exit, 1, 32, nullptr)(out.data());
    const std::string why = cudaGetErrorString(cudaGetLastError());
    CHECK(why.find("lane 5 of the warp has exited") != std::string::npos);
    CHECK(why.find("shuffle_after_exit block (0,0,0)") != std::string::npos);
}

TEST_CASE_FIXTURE(fresh_device, "a bad launch configuration is reported by cudaGetLastError, and not sticky") {
    device_buffer<int> out(32);
    CHIMERA_LAUNCH(lane_sums, 1, 2048, nullptr)(out.data());
    CHECK(cudaGetLastError() == cudaErrorInvalidConfiguration);
    CHECK(cudaGetLastError() == cudaSuccess);
    CHIMERA_LAUNCH(lane_sums, dim3(1, 70000), 32, nullptr)(out.data());
    CHECK(cudaGetLastError() == cudaErrorInvalidConfiguration);
    CHECK(cudaDeviceSynchronize() == cudaSuccess);
}

TEST_CASE_FIXTURE(fresh_device, "dynamic shared memory: 48 KB unless cudaFuncSetAttribute raises it, up to 227 KB") {
    const std::size_t big = 64 * 1024;
    {
        device_buffer<float> out(2);
        CHIMERA_LAUNCH_SHARED(dynamic_shared_sum, 1, 256, big, nullptr)(out.data());
        CHECK(cudaGetLastError() == cudaErrorInvalidValue);  // not raised: refused, not sticky
        CHECK(cudaGetLastError() == cudaSuccess);
        CHECK(cudaFuncSetAttribute(dynamic_shared_sum, cudaFuncAttributeMaxDynamicSharedMemorySize, 228 * 1024) ==
              cudaErrorInvalidValue);
        const int limit = static_cast<int>(big);
        CHECK(cudaFuncSetAttribute(dynamic_shared_sum, cudaFuncAttributeMaxDynamicSharedMemorySize, limit) ==
              cudaSuccess);
        CHIMERA_LAUNCH_SHARED(dynamic_shared_sum, 1, 256, big, nullptr)(out.data());
        REQUIRE(cudaDeviceSynchronize() == cudaSuccess);
        const auto got = out.download();
        CHECK(std::isnan(got[0]));  // uninitialised shared memory is garbage (NaN here), never zeros
        CHECK(got[1] == 255 * 256 / 2);
        CHIMERA_LAUNCH_SHARED(dynamic_shared_sum, 1, 256, big + 1, nullptr)(out.data());
        CHECK(cudaGetLastError() == cudaErrorInvalidValue);
    }
    cudaDeviceReset();  // a new context: the limit is 48 KB again
    device_buffer<float> out(2);
    CHIMERA_LAUNCH_SHARED(dynamic_shared_sum, 1, 256, big, nullptr)(out.data());
    CHECK(cudaGetLastError() == cudaErrorInvalidValue);
}

TEST_CASE_FIXTURE(fresh_device, "streams: an event orders two streams; a never-recorded event does not") {
    cudaStream_t a = nullptr, b = nullptr;
    REQUIRE(cudaStreamCreateWithFlags(&a, cudaStreamNonBlocking) == cudaSuccess);
    REQUIRE(cudaStreamCreateWithFlags(&b, cudaStreamNonBlocking) == cudaSuccess);
    device_buffer<int> value(1), copy(1);
    value.zero();  // without a stream: done when it returns
    cudaEvent_t written = nullptr;
    REQUIRE(cudaEventCreateWithFlags(&written, cudaEventDisableTiming) == cudaSuccess);

    released = false;

    SUBCASE("recorded before the wait: b sees a's write") {
        CHIMERA_LAUNCH(gated_write, 1, 1, a)(value.data(), 7);
        CHECK(cudaEventRecord(written, a) == cudaSuccess);
        CHECK(cudaStreamWaitEvent(b, written, 0) == cudaSuccess);
        CHECK(cudaMemcpyAsync(copy.data(), value.data(), sizeof(int), cudaMemcpyDeviceToDevice, b) == cudaSuccess);
        released = true;  // however late a's kernel writes, b's copy waits for it
        CHECK(cudaStreamSynchronize(b) == cudaSuccess);
        CHECK(copy.download()[0] == 7);
    }
    SUBCASE("waited on before it was recorded: no ordering (the local transport's pitfall)") {
        CHECK(cudaStreamWaitEvent(b, written, 0) == cudaSuccess);
        CHIMERA_LAUNCH(gated_write, 1, 1, a)(value.data(), 7);
        CHECK(cudaEventRecord(written, a) == cudaSuccess);
        CHECK(cudaMemcpyAsync(copy.data(), value.data(), sizeof(int), cudaMemcpyDeviceToDevice, b) == cudaSuccess);
        CHECK(cudaStreamSynchronize(b) == cudaSuccess);  // completes while a's kernel is still held
        CHECK(copy.download()[0] == 0);
        released = true;
        CHECK(cudaStreamSynchronize(a) == cudaSuccess);
        CHECK(value.download()[0] == 7);
    }
    CHECK(cudaEventDestroy(written) == cudaSuccess);
    CHECK(cudaStreamDestroy(a) == cudaSuccess);
    CHECK(cudaStreamDestroy(b) == cudaSuccess);
}

TEST_CASE_FIXTURE(fresh_device, "a download into pageable memory returns once done; into page-locked memory at once") {
    cudaStream_t a = nullptr;
    REQUIRE(cudaStreamCreateWithFlags(&a, cudaStreamNonBlocking) == cudaSuccess);
    device_buffer<int> value(1);
    value.zero();
    int* pinned = nullptr;
    REQUIRE(cudaMallocHost(&pinned, sizeof(int)) == cudaSuccess);
    *pinned = 0;
    released = false;
    CHIMERA_LAUNCH(gated_write, 1, 1, a)(value.data(), 7);  // holds the stream until released
    CHECK(cudaMemcpyAsync(pinned, value.data(), sizeof(int), cudaMemcpyDeviceToHost, a) == cudaSuccess);
    CHECK(*pinned == 0);  // returned while the stream is held
    std::atomic<bool> returned{false}, returned_before_release{false};
    std::thread release_later([&] {
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
        returned_before_release = returned.load();
        released = true;
    });
    int pageable = 0;
    CHECK(cudaMemcpyAsync(&pageable, value.data(), sizeof(int), cudaMemcpyDeviceToHost, a) == cudaSuccess);
    returned = true;
    CHECK(pageable == 7);  // no synchronization: the call itself waited
    release_later.join();
    CHECK(!returned_before_release);
    CHECK(*pinned == 7);
    CHECK(cudaFreeHost(pinned) == cudaSuccess);
    CHECK(cudaStreamDestroy(a) == cudaSuccess);
}

TEST_CASE_FIXTURE(fresh_device, "cudaFree synchronizes; freeing a pointer twice is an error") {
    void* p = nullptr;
    REQUIRE(cudaMalloc(&p, 64) == cudaSuccess);
    CHECK(reinterpret_cast<std::uintptr_t>(p) % 256 == 0);
    CHECK(cudaFree(p) == cudaSuccess);
    CHECK(cudaFree(p) == cudaErrorInvalidDevicePointer);
    CHECK(cudaGetLastError() == cudaErrorInvalidDevicePointer);
}

// --- the legacy default stream against non-blocking streams --------------------------

namespace {

cudaStream_t non_blocking_stream() {
    cudaStream_t s = nullptr;
    REQUIRE(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking) == cudaSuccess);
    return s;
}
// The device memory as it is now (the emulator's device memory is host memory).
int now_in(const device_buffer<int>& b) { return *b.data(); }
bool reported_unordered(cudaError_t e) {
    return e == cudaErrorLaunchFailure &&
           std::string(cudaGetErrorString(e)).find("unordered access") != std::string::npos;
}

}  // namespace

TEST_CASE_FIXTURE(fresh_device, "legacy stream: a pageable upload returns before its write lands") {
    device_buffer<int> value(std::vector<int>{1});
    REQUIRE(cudaDeviceSynchronize() == cudaSuccess);
    REQUIRE(now_in(value) == 1);
    const std::vector<int> two{2};
    REQUIRE(cudaMemcpy(value.data(), two.data(), sizeof(int), cudaMemcpyHostToDevice) == cudaSuccess);
    CHECK(now_in(value) == 1);  // staged, not landed
    SUBCASE("landed by cudaDeviceSynchronize") { REQUIRE(cudaDeviceSynchronize() == cudaSuccess); }
    SUBCASE("landed by cudaStreamSynchronize(0)") { REQUIRE(cudaStreamSynchronize(nullptr) == cudaSuccess); }
    SUBCASE("landed before the next legacy-stream operation (a download)") { CHECK(value.download()[0] == 2); }
    SUBCASE("landed before work on a blocking stream") {
        cudaStream_t blocking = nullptr;
        REQUIRE(cudaStreamCreate(&blocking) == cudaSuccess);
        device_buffer<int> copy(1);
        REQUIRE(cudaMemcpyAsync(copy.data(), value.data(), sizeof(int), cudaMemcpyDeviceToDevice, blocking) ==
                cudaSuccess);
        REQUIRE(cudaStreamSynchronize(blocking) == cudaSuccess);
        CHECK(copy.download()[0] == 2);
    }
    CHECK(now_in(value) == 2);
}

TEST_CASE_FIXTURE(fresh_device, "legacy stream: a memset is asynchronous too") {
    device_buffer<int> value(std::vector<int>{5});
    REQUIRE(cudaDeviceSynchronize() == cudaSuccess);
    REQUIRE(cudaMemset(value.data(), 0, sizeof(int)) == cudaSuccess);
    CHECK(now_in(value) == 5);
    REQUIRE(cudaDeviceSynchronize() == cudaSuccess);
    CHECK(now_in(value) == 0);
}

TEST_CASE_FIXTURE(fresh_device, "legacy stream: a pageable upload may be reused at once (the source is staged)") {
    std::vector<int> host{3};
    device_buffer<int> value(host);
    host[0] = 4;  // after cudaMemcpy returned: must not change what lands
    CHECK(value.download()[0] == 3);
}

TEST_CASE_FIXTURE(fresh_device, "legacy stream: non-blocking work on memory it is still writing is reported") {
    cudaStream_t s = non_blocking_stream();
    device_buffer<int> value(1), copy(1);
    SUBCASE("after an upload") {
        const std::vector<int> seven{7};
        REQUIRE(cudaMemcpy(value.data(), seven.data(), sizeof(int), cudaMemcpyHostToDevice) == cudaSuccess);
    }
    SUBCASE("after a memset") { REQUIRE(cudaMemset(value.data(), 0, sizeof(int)) == cudaSuccess); }
    SUBCASE("a kernel's pointer argument") {
        REQUIRE(cudaMemset(value.data(), 0, sizeof(int)) == cudaSuccess);
        released = true;  // were it not reported, it would run
        CHIMERA_LAUNCH(gated_write, 1, 1, s)(value.data(), 1);
        const cudaError_t e = cudaGetLastError();
        CHECK(reported_unordered(e));
        CHECK(std::string(cudaGetErrorString(e)).find("gated_write") != std::string::npos);
        return;
    }
    const cudaError_t e =
        cudaMemcpyAsync(copy.data(), value.data(), sizeof(int), cudaMemcpyDeviceToDevice, s);
    CHECK(reported_unordered(e));
    CHECK(std::string(cudaGetErrorString(e)).find("legacy default stream") != std::string::npos);
}

// (A separate case: doctest never finds subcases after the early return above.)
TEST_CASE_FIXTURE(fresh_device, "legacy stream: pointers inside struct arguments (device_pointers()) are checked") {
    cudaStream_t s = non_blocking_stream();
    std::string why;
    SUBCASE("a struct argument listing its pointers") {
        device_buffer<int> value(1), copy(1);
        REQUIRE(cudaMemset(value.data(), 0, sizeof(int)) == cudaSuccess);
        CHIMERA_LAUNCH(copy_first, 1, 1, s)(copy_args{copy.data(), value.data()});
        const cudaError_t e = cudaGetLastError();
        CHECK(reported_unordered(e));
        why = cudaGetErrorString(e);
        CHECK(why.find("copy_first on a non-blocking stream") != std::string::npos);
    }
    SUBCASE("gemm_args' output of a GEMM") {
        device_buffer<float> out(1), a(std::vector<float>{2}), b(std::vector<float>{3});
        REQUIRE(cudaDeviceSynchronize() == cudaSuccess);
        REQUIRE(cudaMemset(out.data(), 0, sizeof(float)) == cudaSuccess);
        const chimera::runtime::gpu::gemm_args g{out.data(), a.data(), b.data(), nullptr, 1, 1, 1, 1, 1, 1, 1, 1, true};
        CHECK_THROWS_WITH(chimera::runtime::gpu::gemm_g1(g, s), doctest::Contains("unordered access"));
        const cudaError_t e = cudaGetLastError();
        CHECK(reported_unordered(e));
        why = cudaGetErrorString(e);
        CHECK(why.find("gemm_tiled on a non-blocking stream") != std::string::npos);
    }
    CHECK(why.find("a memset on the legacy default stream") != std::string::npos);
}

TEST_CASE_FIXTURE(fresh_device, "legacy stream: after a synchronization, or on the stream itself, it is ordered") {
    cudaStream_t s = non_blocking_stream();
    const std::vector<int> seven{7};
    device_buffer<int> value(1), copy(1);
    SUBCASE("cudaStreamSynchronize(0) between") {
        REQUIRE(cudaMemcpy(value.data(), seven.data(), sizeof(int), cudaMemcpyHostToDevice) == cudaSuccess);
        REQUIRE(cudaStreamSynchronize(nullptr) == cudaSuccess);
    }
    SUBCASE("the upload on the non-blocking stream") {
        REQUIRE(cudaMemcpyAsync(value.data(), seven.data(), sizeof(int), cudaMemcpyHostToDevice, s) == cudaSuccess);
    }
    SUBCASE("device_buffer's upload on the stream") { value.upload(seven, s); }
    SUBCASE("device_buffer's upload without a stream (lands before it returns)") { value.upload(seven); }
    REQUIRE(cudaMemcpyAsync(copy.data(), value.data(), sizeof(int), cudaMemcpyDeviceToDevice, s) == cudaSuccess);
    REQUIRE(cudaStreamSynchronize(s) == cudaSuccess);
    CHECK(copy.download()[0] == 7);
}

TEST_CASE_FIXTURE(fresh_device, "page-locked memory: cudaMemcpy from it is synchronous") {
    int* pinned = nullptr;
    REQUIRE(cudaMallocHost(&pinned, sizeof(int)) == cudaSuccess);
    *pinned = 9;
    device_buffer<int> value(1);
    REQUIRE(cudaMemcpy(value.data(), pinned, sizeof(int), cudaMemcpyHostToDevice) == cudaSuccess);
    CHECK(now_in(value) == 9);
    CHECK(cudaFreeHost(pinned) == cudaSuccess);
    CHECK(cudaFreeHost(pinned) == cudaErrorInvalidValue);
}

// The local transport's all-reduce on two workers' non-blocking streams:
// its pointer table must be ordered with replica_sum (issue: it went up on
// the legacy stream, and the kernel could read stale pointers).
TEST_CASE_FIXTURE(fresh_device, "local transport: an all-reduce on non-blocking streams is ordered and sums") {
    cudaStream_t a = non_blocking_stream(), b = non_blocking_stream();
    device_buffer<float> x(3), y(3);
    chimera::runtime::gpu::buffer_pool pool;
    for (int iteration = 0; iteration < 2; ++iteration) {
        x.upload({1, 2, 3}, a);
        y.upload({10, 20, 30}, b);
        {
            chimera::runtime::gpu::local_transport transport(std::chrono::seconds(10), &pool);
            transport.post_all_reduce(0, 0, 2, x.data(), 3, a);
            transport.post_all_reduce(0, 1, 2, y.data(), 3, b);
            transport.send({0, 0, 0, 0, 1, 0}, x.data(), 3, a);
            const float* got = transport.receive({0, 0, 0, 0, 1, 0}, 3, b);
            transport.finish_all_reduce(0, x.data(), a);
            transport.finish_all_reduce(0, y.data(), b);
            REQUIRE(cudaDeviceSynchronize() == cudaSuccess);
            CHECK(std::vector<float>(got, got + 3) == std::vector<float>{1, 2, 3});  // emulator: host memory
        }
        CHECK(x.download() == std::vector<float>{11, 22, 33});
        CHECK(y.download() == std::vector<float>{11, 22, 33});
        // A message buffer, the sum and its pointer table: allocated in the
        // first iteration, reused in the second.
        CHECK(pool.allocations() == 3);
    }
}

// --- the stage model's host side ------------------------------------------------------

namespace {

chimera::runtime::gpu::gpu_stage_model whole_model_stage(const chimera::runtime::gpu::gpu_stage_options& options = {}) {
    const auto shape = test::test_shape(1, 1);
    return {shape.model, chimera::gpt::partition(shape.model, 1)[0], shape.batch, shape.seq, options};
}

}  // namespace

TEST_CASE_FIXTURE(fresh_device, "stage model: a stash's tokens go up without a host synchronization") {
    namespace gpu = chimera::runtime::gpu;
    const auto model = whole_model_stage();
    const auto shape = test::test_shape(1, 1);
    std::vector<int> tokens, targets;
    test::data().micro_batch(false, shape.data_seed, 0, 0, shape.batch, shape.seq, tokens, targets);
    cudaStream_t s = non_blocking_stream();
    device_buffer<int> gate(1);
    released = false;
    CHIMERA_LAUNCH(gated_write, 1, 1, s)(gate.data(), 1);  // holds the stream
    std::atomic<bool> returned{false};
    std::thread release_later([&] {
        for (int i = 0; i < 200 && !returned; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
        released = true;  // were make_stash to synchronize, it would return only now
    });
    gpu::gpu_stash a = model.make_stash(tokens, targets, s), b = model.make_stash(tokens, targets, s);
    returned = true;
    CHECK(!released);
    release_later.join();
    CHECK(model.staging_slots() == 2);  // two uploads in flight: two page-locked slots
    REQUIRE(cudaStreamSynchronize(s) == cudaSuccess);
    gpu::gpu_stash c = model.make_stash(tokens, targets, s);
    CHECK(model.staging_slots() == 2);  // reused once their copies completed
    REQUIRE(cudaStreamSynchronize(s) == cudaSuccess);
    for (gpu::gpu_stash* st : {&a, &b, &c}) {
        std::vector<int> got(tokens.size());
        REQUIRE(cudaMemcpy(got.data(), st->ints, got.size() * sizeof(int), cudaMemcpyDeviceToHost) == cudaSuccess);
        CHECK(got == tokens);
        gpu::gpu_stage_model::free_stash(*st, s);
    }
    // The stashes' memory pool keeps what it frees (no release at each synchronization).
    cudaMemPool_t pool = nullptr;
    REQUIRE(cudaDeviceGetDefaultMemPool(&pool, 0) == cudaSuccess);
    std::uint64_t threshold = 0;
    REQUIRE(cudaMemPoolGetAttribute(pool, cudaMemPoolAttrReleaseThreshold, &threshold) == cudaSuccess);
    CHECK(threshold == std::numeric_limits<std::uint64_t>::max());
}

TEST_CASE_FIXTURE(fresh_device, "stage model: bf16 matmuls are refused below compute capability 8.0") {
    namespace gpu = chimera::runtime::gpu;
    auto& device = chimera_emulator::device();
    device.major = 7;
    device.minor = 5;
    try {
        whole_model_stage({.arithmetic = gpu::precision::bf16});
        FAIL("no error");
    } catch (const std::runtime_error& e) {
        CHECK(std::string(e.what()) ==
              "--precision bf16 (G2: mma.sync bf16, ldmatrix, cp.async) needs compute capability 8.0 or newer; "
              "device 0 has 7.5");
    }
    CHECK_NOTHROW(whole_model_stage());  // fp32 runs anywhere
    device.major = 8;
    device.minor = 0;
    CHECK_NOTHROW(whole_model_stage({.arithmetic = gpu::precision::bf16}));
    device.major = 9;
    device.minor = 0;
}

// --- cp.async: asynchronous until the thread's wait_group retires its group -------------

namespace {

// staged_copy in `mode`, reading group `group`: "" if it ran and read the
// copies, otherwise the launch failure's reason.
std::string run_staged_copy(staging mode, int group) {
    std::vector<std::uint16_t> host(64 * 8);
    for (std::size_t j = 0; j < host.size(); ++j) host[j] = static_cast<std::uint16_t>(j);
    device_buffer<std::uint16_t> src(host);
    device_buffer<unsigned> out(32 * 4);
    CHIMERA_LAUNCH_SHARED(staged_copy, 1, 32, 64 * 16, nullptr)(out.data(), src.data(), mode, group);
    const cudaError_t e = cudaDeviceSynchronize();
    if (e != cudaSuccess) return cudaGetErrorString(e);
    const auto got = out.download();
    for (int l = 0; l < 32; ++l)
        for (int i = 0; i < 4; ++i) CHECK(got[static_cast<std::size_t>(4 * l + i)] == staged_expected(l, i, group));
    return "";
}
bool contains(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

}  // namespace

TEST_CASE_FIXTURE(fresh_device, "cp.async: read after wait_group and a barrier, the copies have landed") {
    for (const int group : {0, 1}) {
        CAPTURE(group);
        CHECK(run_staged_copy(staging::wait_all, group).empty());
        CHECK(run_staged_copy(staging::pipeline_api, group).empty());
    }
    CHECK(run_staged_copy(staging::wait_older_group, 0).empty());  // wait_group 1 lands all but the newest
}

TEST_CASE_FIXTURE(fresh_device, "cp.async: a read of bytes still in flight is a launch failure naming the block") {
    std::string why;
    SUBCASE("no wait at all") { why = run_staged_copy(staging::forget_wait, 0); }
    SUBCASE("wait_group N with N too large for the group read") { why = run_staged_copy(staging::wait_n_too_large, 1); }
    CAPTURE(why);
    CHECK(contains(why, "ldmatrix reads dynamic shared byte "));
    CHECK(contains(why, "has not completed (missing cp.async.wait_group/commit_group before the read)"));
    CHECK(contains(why, "in staged_copy block (0,0,0) thread ("));
    void* p = nullptr;
    CHECK(cudaMalloc(&p, 16) == cudaErrorLaunchFailure);  // sticky
}

TEST_CASE_FIXTURE(fresh_device, "cp.async: another thread's landed copy needs a __syncthreads before it is read") {
    const std::string why = run_staged_copy(staging::skip_barrier, 0);
    CAPTURE(why);
    // Lane 0 reads the chunk lane 1 copied (byte 16).
    CHECK(contains(why, "ldmatrix reads dynamic shared byte 16 that a cp.async of thread (1,0,0) completed with no "
                        "__syncthreads since"));
    CHECK(contains(why, "in staged_copy block (0,0,0) thread (0,0,0)"));
}

TEST_CASE_FIXTURE(fresh_device, "cp.async: a plain read before the wait sees NaN, after it the copy") {
    std::vector<float> host(32 * 4);
    for (std::size_t i = 0; i < host.size(); ++i) host[i] = static_cast<float>(i);
    device_buffer<float> src(host), out(64);
    CHIMERA_LAUNCH_SHARED(plain_read_of_copy, 1, 32, 32 * 16, nullptr)(out.data(), src.data());
    REQUIRE(cudaDeviceSynchronize() == cudaSuccess);
    const auto got = out.download();
    for (std::size_t t = 0; t < 32; ++t) {
        CHECK(std::isnan(got[t]));
        CHECK(got[32 + t] == host[4 * t]);
    }
}

TEST_CASE_FIXTURE(fresh_device, "cp.async: a second copy into bytes a copy is still writing is a launch failure") {
    device_buffer<std::uint16_t> src(16);
    CHIMERA_LAUNCH_SHARED(copy_twice, 1, 1, 16, nullptr)(src.data());
    const std::string why = cudaGetErrorString(cudaDeviceSynchronize());
    CHECK(contains(why, "cp.async into dynamic shared byte 0 that a cp.async of thread (0,0,0) is still writing in "
                        "copy_twice block (0,0,0) thread (0,0,0)"));
}

TEST_CASE("devices: CHIMERA_EMULATED_GPUS of them (default 8); an id past them is an invalid device") {
    int count = 0;
    REQUIRE(cudaGetDeviceCount(&count) == cudaSuccess);
    const char* given = std::getenv("CHIMERA_EMULATED_GPUS");
    CHECK(count == (given && std::atoi(given) > 0 ? std::atoi(given) : 8));
    CHECK(cudaSetDevice(count - 1) == cudaSuccess);
    int device = -1;
    CHECK(cudaGetDevice(&device) == cudaSuccess);
    CHECK(device == count - 1);
    CHECK(cudaSetDevice(count) == cudaErrorInvalidDevice);
    CHECK(std::string(cudaGetErrorString(cudaGetLastError())) == "invalid device ordinal");
    cudaDeviceProp p{};
    CHECK(cudaGetDeviceProperties(&p, count) == cudaErrorInvalidDevice);
    CHECK(cudaGetLastError() == cudaErrorInvalidDevice);  // reported once, not sticky
    CHECK(cudaSetDevice(0) == cudaSuccess);
    CHECK(cudaGetLastError() == cudaSuccess);
}
