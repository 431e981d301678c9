// A CPU emulator of the part of CUDA that the Chimera CUDA backend uses, so
// that the kernels, the backend and the local transport run (slowly, at
// test sizes) on machines without a GPU. Not a simulator of a GPU: it
// reproduces CUDA's *semantics*, to catch the bugs that would otherwise
// first show on a GPU:
//
// * Streams are host threads running their work in order; events, stream
//   waits and synchronization follow the CUDA rules (a wait on a never
//   recorded event is a no-op; the legacy default stream orders against
//   blocking streams only; cudaFree synchronizes the device). Missing
//   synchronization between streams is a real race here too.
// * Copies into device memory and memsets on the legacy default stream
//   (cudaMemcpy from pageable memory, cudaMemset) return before their write
//   lands, as on a GPU: it lands at the next point ordered after it, and
//   work on a non-blocking stream that touches the written allocation
//   before then is reported ("unordered access"), not silently raced. A
//   kernel touches its pointer arguments and the pointers its struct
//   arguments list in a `device_pointers()` member.
// * A kernel runs its blocks one after the other; the threads of a block are
//   fibers switched only at __syncthreads() and warp operations,
//   so shared memory, barriers and warp shuffles behave as on a GPU.
//   A barrier that cannot complete (threads of a block waiting at
//   different barriers, a full-mask shuffle with an exited lane) is
//   reported as a launch failure naming the kernel and block, not a hang.
// * mma.sync m16n8k16 (bf16), ldmatrix and cp.async are emulated from the
//   PTX ISA's fragment layouts, with their alignment rules checked.
// * cp.async is asynchronous: a copy lands only when its thread's
//   cp.async.wait_group retires its commit group (or the thread ends), and
//   its destination reads as NaN (0xff bytes) until then. ldmatrix of bytes
//   still in flight, or landed by another thread with no __syncthreads
//   since, is reported as a launch failure (a missing wait or barrier).
//
// Errors follow CUDA: a bad launch configuration is returned by
// cudaGetLastError(); a failure inside a kernel is sticky and returned by
// every later call, with the reason in cudaGetErrorString().
#pragma once

#if !defined(__x86_64__)
#include <ucontext.h>
#endif
#include <unistd.h>

#include <math.h>  // expf, fmaxf, ... in the global namespace, as in device code

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <tuple>
#include <type_traits>
#include <unordered_map>
#include <utility>
#include <vector>

// --- the runtime API's types ---------------------------------------------------

struct dim3 {
    unsigned x = 1, y = 1, z = 1;
    constexpr dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};
using uint3 = dim3;
struct alignas(8) float2 {
    float x, y;
};
inline float2 make_float2(float x, float y) { return {x, y}; }
struct alignas(16) float4 {
    float x, y, z, w;
};

enum cudaError_t {
    cudaSuccess = 0,
    cudaErrorInvalidValue = 1,
    cudaErrorMemoryAllocation = 2,
    cudaErrorInvalidConfiguration = 9,
    cudaErrorInvalidDevicePointer = 17,
    cudaErrorInvalidDevice = 101,
    cudaErrorInvalidResourceHandle = 400,
    cudaErrorNotReady = 600,
    cudaErrorLaunchFailure = 719,
};
using cudaError = cudaError_t;

enum cudaMemcpyKind {
    cudaMemcpyHostToHost = 0,
    cudaMemcpyHostToDevice = 1,
    cudaMemcpyDeviceToHost = 2,
    cudaMemcpyDeviceToDevice = 3,
    cudaMemcpyDefault = 4,
};

enum cudaDeviceAttr {
    cudaDevAttrMaxThreadsPerBlock = 1,
    cudaDevAttrClockRate = 13,
    cudaDevAttrMultiProcessorCount = 16,
    cudaDevAttrComputeCapabilityMajor = 75,
    cudaDevAttrComputeCapabilityMinor = 76,
    cudaDevAttrMaxSharedMemoryPerBlockOptin = 97,
};

enum cudaMemPoolAttr {
    cudaMemPoolAttrReleaseThreshold = 4,
};

enum cudaFuncAttribute {
    cudaFuncAttributeMaxDynamicSharedMemorySize = 8,
};

constexpr unsigned cudaStreamDefault = 0, cudaStreamNonBlocking = 1;
constexpr unsigned cudaEventDefault = 0, cudaEventBlockingSync = 1, cudaEventDisableTiming = 2;

struct cudaDeviceProp {
    char name[256];
    std::size_t totalGlobalMem;
    std::size_t sharedMemPerBlock;
    int warpSize;
    int maxThreadsPerBlock;
    int multiProcessorCount;
    int major, minor;
    int clockRate;  // kHz
};

namespace chimera_emulator {
class stream;
class event;
}  // namespace chimera_emulator
using cudaStream_t = chimera_emulator::stream*;
using cudaEvent_t = chimera_emulator::event*;
// The device's one memory pool (its release threshold is all it models).
using cudaMemPool_t = struct cuda_emulator_mem_pool*;

namespace chimera_emulator {

// --- errors ------------------------------------------------------------------------

struct error_state {
    std::mutex mutex;
    cudaError_t sticky = cudaSuccess;  // a kernel failed: every later call fails
    std::string sticky_reason;
};
inline error_state& errors() {
    static error_state e;
    return e;
}
inline thread_local cudaError_t last_error = cudaSuccess;

inline cudaError_t sticky() {
    std::lock_guard lock(errors().mutex);
    return errors().sticky;
}
inline void fail(const std::string& reason) {
    {
        std::lock_guard lock(errors().mutex);
        if (errors().sticky == cudaSuccess) {
            errors().sticky = cudaErrorLaunchFailure;
            errors().sticky_reason = reason;
        }
    }
    std::fprintf(stderr, "cuda emulator: %s\n", reason.c_str());
}
// The result of an API call: the sticky error wins, as on a GPU.
inline cudaError_t result(cudaError_t e = cudaSuccess) {
    const cudaError_t s = sticky();
    const cudaError_t r = s != cudaSuccess ? s : e;
    if (r != cudaSuccess) last_error = r;
    return r;
}

// --- fibers: the threads of one block ----------------------------------------------

// AddressSanitizer must be told about stack switches (and it then checks
// every device memory access of the kernels, like compute-sanitizer).
#if defined(__SANITIZE_ADDRESS__)
#define CHIMERA_EMULATOR_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define CHIMERA_EMULATOR_ASAN 1
#endif
#endif
#if defined(CHIMERA_EMULATOR_ASAN)
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#endif

// A fiber's saved registers. On x86-64 a switch is a few instructions
// (context_switch.cpp); glibc's swapcontext makes a system call per switch,
// which made the emulator ten times slower.
#if defined(__x86_64__)
extern "C" void chimera_emulator_switch(void** save, void* load);
#endif
struct context {
#if defined(__x86_64__)
    void* stack_pointer = nullptr;
#else
    ucontext_t uc{};
#endif
    const void* stack = nullptr;  // lowest address, for the sanitizer
    std::size_t stack_size = 0;
};

// `finished`: the fiber switching away never runs again.
inline void switch_context(context& from, context& to, bool finished = false) {
#if defined(CHIMERA_EMULATOR_ASAN)
    void* fake_stack = nullptr;
    __sanitizer_start_switch_fiber(finished ? nullptr : &fake_stack, to.stack, to.stack_size);
#else
    (void)finished;
#endif
#if defined(__x86_64__)
    chimera_emulator_switch(&from.stack_pointer, to.stack_pointer);
#else
    swapcontext(&from.uc, &to.uc);
#endif
#if defined(CHIMERA_EMULATOR_ASAN)
    // The stack we came back from is the switcher's, not `from`'s: keep
    // `from`'s own bounds (overwriting them left the sanitizer believing the
    // host thread ran on a fiber stack, and its next exception aborted).
    const void* came_from = nullptr;
    std::size_t came_from_size = 0;
    __sanitizer_finish_switch_fiber(fake_stack, &came_from, &came_from_size);
#endif
}
// A fiber's first instruction: learn the stack it came from.
inline void entered_context(context& from) {
#if defined(CHIMERA_EMULATOR_ASAN)
    __sanitizer_finish_switch_fiber(nullptr, &from.stack, &from.stack_size);
#else
    (void)from;
#endif
}

inline void start_context(context& c, char* stack, std::size_t bytes, void (*entry)()) {
    c.stack = stack;
    c.stack_size = bytes;
#if defined(CHIMERA_EMULATOR_ASAN)
    __asan_unpoison_memory_region(stack, bytes);  // frames of an earlier fiber never returned
#endif
#if defined(__x86_64__)
    // The stack as chimera_emulator_switch leaves it: MXCSR and x87 control
    // word, six callee-saved registers (zero), then the return address.
    // After `ret` pops frame[7], rsp = frame + 8 words must be 8 mod 16, as
    // right after a call.
    auto top = reinterpret_cast<std::uintptr_t>(stack + bytes) & ~std::uintptr_t{15};
    auto* frame = reinterpret_cast<std::uint64_t*>(top) - 9;
    std::uint32_t mxcsr;
    std::uint16_t fpu;
    asm volatile("stmxcsr %0" : "=m"(mxcsr));
    asm volatile("fnstcw %0" : "=m"(fpu));
    frame[0] = mxcsr | static_cast<std::uint64_t>(fpu) << 32;
    for (int i = 1; i <= 6; ++i) frame[i] = 0;
    frame[7] = reinterpret_cast<std::uint64_t>(entry);
    frame[8] = 0;  // no return address: entry never returns
    c.stack_pointer = frame;
#else
    getcontext(&c.uc);
    c.uc.uc_stack.ss_sp = stack;
    c.uc.uc_stack.ss_size = bytes;
    c.uc.uc_link = nullptr;
    makecontext(&c.uc, entry, 0);
#endif
}

constexpr int warp_size = 32;

// A cp.async in flight: its 16 bytes (read at issue) land in `dst` when
// the thread's wait retires `group` (the number of its commit group).
struct async_copy {
    unsigned char* dst;
    std::uint64_t group;
    unsigned char data[16];
};

struct fiber {
    context saved;
    dim3 thread_index;
    int linear = 0;
    enum class state { ready, block_barrier, warp_barrier, done } at = state::ready;
    std::deque<async_copy> copies;  // in flight, in issue order
    std::uint64_t committed = 0;    // commit groups closed so far
};

// A 16-byte chunk of shared memory that a cp.async writes: in flight until
// its writer's wait lands it, then visible to the writer only until the
// next __syncthreads (when the entry is dropped).
struct async_write {
    int writer;  // the thread's linear index
    bool landed;
};

struct warp_exchange {
    std::uint64_t value[warp_size]{};
    const void* address[warp_size]{};
    unsigned a[warp_size][4]{}, b[warp_size][2]{};
    float d[warp_size][4]{};
};

struct block_run {
    const char* kernel = "";
    dim3 block_index, block_dim, grid_dim;
    const std::function<void()>* body = nullptr;
    unsigned char* dynamic_shared = nullptr;  // extern __shared__ of the launch, 16-byte aligned
    std::size_t dynamic_shared_bytes = 0;
    std::vector<fiber> fibers;
    std::unordered_map<std::uintptr_t, async_write> async_writes;  // by chunk address
    std::vector<warp_exchange> warps;
    context scheduler;
    std::string failure;
};

// Fiber stacks, reused by every block this host thread runs.
constexpr std::size_t stack_bytes = 128 * 1024;
struct stack_pool {
    std::vector<std::unique_ptr<char[]>> stacks;
    char* get(std::size_t i) {
        while (stacks.size() <= i) stacks.push_back(std::make_unique_for_overwrite<char[]>(stack_bytes));
        return stacks[i].get();
    }
};

inline thread_local block_run* current_block = nullptr;
inline thread_local fiber* current_fiber = nullptr;

inline std::string thread_name(const fiber& f) {
    const dim3 t = f.thread_index;
    return "thread (" + std::to_string(t.x) + "," + std::to_string(t.y) + "," + std::to_string(t.z) + ")";
}
inline std::string where() {
    const block_run& b = *current_block;
    return std::string(b.kernel) + " block (" + std::to_string(b.block_index.x) + "," +
           std::to_string(b.block_index.y) + "," + std::to_string(b.block_index.z) + ") " +
           thread_name(*current_fiber);
}

// A failure inside a kernel: unwinds the failing thread (fiber_entry
// catches it); the block's other threads are never resumed and the launch
// reports the failure.
struct kernel_abort {};
[[noreturn]] inline void kernel_failure(const std::string& what) {
    block_run& b = *current_block;
    if (b.failure.empty()) b.failure = what + " in " + where();
    throw kernel_abort{};
}

inline void wait_at(fiber::state s) {
    current_fiber->at = s;
    switch_context(current_fiber->saved, current_block->scheduler);
}

// Lands this thread's copies of the commit groups numbered below `group`.
inline void land_copies(fiber& f, std::uint64_t group) {
    while (!f.copies.empty() && f.copies.front().group < group) {
        const async_copy& c = f.copies.front();
        std::memcpy(c.dst, c.data, sizeof c.data);
        const auto it = current_block->async_writes.find(reinterpret_cast<std::uintptr_t>(c.dst));
        if (it != current_block->async_writes.end()) it->second.landed = true;
        f.copies.pop_front();
    }
}
// A __syncthreads publishes every landed copy to the whole block.
inline void publish_landed_copies(block_run& b) {
    std::erase_if(b.async_writes, [](const auto& w) { return w.second.landed; });
}

inline void fiber_entry() {
    entered_context(current_block->scheduler);
    try {
        (*current_block->body)();
        land_copies(*current_fiber, UINT64_MAX);  // a thread's copies complete before it exits
    } catch (const kernel_abort&) {
    } catch (const std::exception& e) {
        if (current_block->failure.empty()) current_block->failure = std::string("exception: ") + e.what() + " in " + where();
    }
    current_fiber->at = fiber::state::done;
    switch_context(current_fiber->saved, current_block->scheduler, true);
    std::abort();  // a finished fiber is never resumed
}

inline int lane() { return current_fiber->linear % warp_size; }
inline warp_exchange& my_warp() { return current_block->warps[static_cast<std::size_t>(current_fiber->linear / warp_size)]; }

// A warp-synchronous operation needs all 32 lanes of the warp alive.
inline void warp_barrier(unsigned mask) {
    if (mask != 0xffffffffu) kernel_failure("warp operation with partial mask (not emulated)");
    const int first = current_fiber->linear / warp_size * warp_size;
    for (int l = first; l < first + warp_size; ++l)
        if (l >= static_cast<int>(current_block->fibers.size()) ||
            current_block->fibers[static_cast<std::size_t>(l)].at == fiber::state::done)
            kernel_failure("full-mask warp operation while lane " + std::to_string(l - first) +
                           " of the warp has exited or does not exist");
    wait_at(fiber::state::warp_barrier);
}

inline void run_block(block_run& b, stack_pool& pool) {
    const unsigned count = b.block_dim.x * b.block_dim.y * b.block_dim.z;
    b.fibers.assign(count, fiber{});
    b.warps.assign((count + warp_size - 1) / warp_size, warp_exchange{});
    b.failure.clear();
    b.async_writes.clear();
    block_run* const saved_block = current_block;
    fiber* const saved_fiber = current_fiber;
    current_block = &b;
    for (unsigned i = 0; i < count; ++i) {
        fiber& f = b.fibers[i];
        f.linear = static_cast<int>(i);
        f.thread_index = dim3(i % b.block_dim.x, i / b.block_dim.x % b.block_dim.y, i / (b.block_dim.x * b.block_dim.y));
        start_context(f.saved, pool.get(i), stack_bytes, fiber_entry);
    }
    for (;;) {
        for (fiber& f : b.fibers) {
            if (f.at != fiber::state::ready) continue;
            current_fiber = &f;
            switch_context(b.scheduler, f.saved);
            if (!b.failure.empty()) break;
        }
        if (!b.failure.empty()) break;
        int done = 0, at_block = 0;
        for (const fiber& f : b.fibers) {
            done += f.at == fiber::state::done;
            at_block += f.at == fiber::state::block_barrier;
        }
        if (done == static_cast<int>(count)) break;
        bool released = false;
        if (at_block > 0 && at_block + done == static_cast<int>(count)) {
            for (fiber& f : b.fibers)
                if (f.at == fiber::state::block_barrier) f.at = fiber::state::ready;
            publish_landed_copies(b);
            released = true;
        }
        for (unsigned w = 0; at_block + done < static_cast<int>(count) && w * warp_size < count; ++w) {
            const unsigned end = std::min(count, (w + 1) * warp_size);
            bool all = true, any = false;
            for (unsigned i = w * warp_size; i < end; ++i) {
                const auto at = b.fibers[i].at;
                all = all && (at == fiber::state::warp_barrier || at == fiber::state::done);
                any = any || at == fiber::state::warp_barrier;
            }
            if (all && any) {
                for (unsigned i = w * warp_size; i < end; ++i)
                    if (b.fibers[i].at == fiber::state::warp_barrier) b.fibers[i].at = fiber::state::ready;
                released = true;
            }
        }
        if (!released) {
            b.failure = std::string("deadlock in ") + b.kernel + " block (" + std::to_string(b.block_index.x) + "," +
                        std::to_string(b.block_index.y) + "," + std::to_string(b.block_index.z) + "): " +
                        std::to_string(at_block) + " threads wait at __syncthreads while others wait at a warp " +
                        "operation or have exited (a barrier in divergent code)";
            break;
        }
    }
    current_block = saved_block;
    current_fiber = saved_fiber;
}

// Runs a whole grid on the calling host thread, block after block, in a
// shuffled order: a GPU gives no order between blocks, so a kernel that
// reads what another block of the same launch writes must not pass just
// because block 0 happened to run first. The shuffle is seeded by the grid
// shape, so runs are reproducible.
inline void run_grid(const char* kernel, dim3 grid, dim3 block, const std::function<void()>& body,
                     std::size_t dynamic_shared = 0) {
    if (sticky() != cudaSuccess) return;
    static thread_local stack_pool pool;
    static thread_local std::vector<unsigned char> shared_storage;
    shared_storage.resize(dynamic_shared + 16);
    block_run b;
    b.kernel = kernel;
    b.block_dim = block;
    b.grid_dim = grid;
    b.body = &body;
    const std::size_t blocks = static_cast<std::size_t>(grid.x) * grid.y * grid.z;
    std::vector<std::size_t> order(blocks);
    for (std::size_t i = 0; i < blocks; ++i) order[i] = i;
    std::uint64_t state = 0x9e3779b97f4a7c15ull ^ ((grid.x * 31ull + grid.y) * 31ull + grid.z);
    for (std::size_t i = blocks; i > 1; --i) {  // Fisher-Yates with splitmix64
        state += 0x9e3779b97f4a7c15ull;
        std::uint64_t z = state;
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
        std::swap(order[i - 1], order[(z ^ (z >> 31)) % i]);
    }
    for (const std::size_t i : order) {
        b.block_index = dim3(static_cast<unsigned>(i % grid.x), static_cast<unsigned>(i / grid.x % grid.y),
                             static_cast<unsigned>(i / grid.x / grid.y));
        // Uninitialised shared memory reads as NaN (0xff bytes), not as
        // the previous block's data or zeros.
        const auto base = (reinterpret_cast<std::uintptr_t>(shared_storage.data()) + 15) / 16 * 16;
        b.dynamic_shared = reinterpret_cast<unsigned char*>(base);
        b.dynamic_shared_bytes = dynamic_shared;
        std::memset(b.dynamic_shared, 0xff, dynamic_shared);
        run_block(b, pool);
        if (!b.failure.empty()) {
            fail("kernel failure: " + b.failure);
            return;
        }
    }
}

// --- device-side primitives ----------------------------------------------------------

inline void syncthreads() { wait_at(fiber::state::block_barrier); }

// The launch's dynamic shared memory (`extern __shared__` on a GPU).
inline unsigned char* dynamic_shared() { return current_block->dynamic_shared; }

template <class T>
T shuffle(unsigned mask, T v, int source) {
    static_assert(sizeof(T) <= 8 && std::is_trivially_copyable_v<T>);
    warp_exchange& w = my_warp();
    const int l = lane();
    std::memcpy(&w.value[l], &v, sizeof v);
    warp_barrier(mask);
    T r;
    std::memcpy(&r, &w.value[source & (warp_size - 1)], sizeof r);
    warp_barrier(mask);  // every lane has read before the slots are reused
    return r;
}

inline void check_aligned(const void* p, std::size_t bytes, const char* what) {
    if (reinterpret_cast<std::uintptr_t>(p) % bytes != 0)
        kernel_failure(std::string(what) + ": address not " + std::to_string(bytes) + "-byte aligned");
}

// --- cp.async (PTX semantics): a copy joins the thread's open commit group;
// commit_group closes it; wait_group n lands the thread's copies of all
// but the n most recent closed groups. Until it lands, the destination reads
// as NaN (0xff bytes); ldmatrix checks the bytes it reads (check_shared_read).

inline std::string thread_name(int linear) {
    return thread_name(current_block->fibers[static_cast<std::size_t>(linear)]);
}
// "dynamic shared byte 1024", or the address for static __shared__ arrays.
inline std::string shared_name(std::uintptr_t chunk) {
    const auto base = reinterpret_cast<std::uintptr_t>(current_block->dynamic_shared);
    if (chunk >= base && chunk < base + current_block->dynamic_shared_bytes)
        return "dynamic shared byte " + std::to_string(chunk - base);
    char name[40];
    std::snprintf(name, sizeof name, "shared address %#llx", static_cast<unsigned long long>(chunk));
    return name;
}

// A read of `bytes` shared bytes at `p` by the current thread: refused while
// a cp.async into them is in flight, or landed by another thread with no
// __syncthreads since.
inline void check_shared_read(const void* p, std::size_t bytes, const char* what) {
    auto& writes = current_block->async_writes;
    if (writes.empty()) return;
    const auto first = reinterpret_cast<std::uintptr_t>(p) / 16 * 16;
    for (auto chunk = first; chunk < reinterpret_cast<std::uintptr_t>(p) + bytes; chunk += 16) {
        const auto it = writes.find(chunk);
        if (it == writes.end()) continue;
        const std::string head = std::string(what) + " reads " + shared_name(chunk) + " that a cp.async of " +
                                 thread_name(it->second.writer);
        if (!it->second.landed)
            kernel_failure(head + " has not completed (missing cp.async.wait_group/commit_group before the read)");
        if (it->second.writer != current_fiber->linear)
            kernel_failure(head + " completed with no __syncthreads since (the writer's wait and then a barrier "
                                  "must come before another thread reads it)");
    }
}

inline void cp_async_16(void* dst, const void* src, bool valid) {
    check_aligned(dst, 16, "cp.async destination");
    if (valid) check_aligned(src, 16, "cp.async source");
    const auto chunk = reinterpret_cast<std::uintptr_t>(dst);
    fiber& f = *current_fiber;
    const auto [it, fresh] = current_block->async_writes.try_emplace(chunk, async_write{f.linear, false});
    if (!fresh && (!it->second.landed || it->second.writer != f.linear))
        kernel_failure("cp.async into " + shared_name(chunk) + " that a cp.async of " +
                       thread_name(it->second.writer) +
                       (it->second.landed ? " landed in with no __syncthreads since" : " is still writing"));
    it->second = async_write{f.linear, false};
    async_copy c{static_cast<unsigned char*>(dst), f.committed, {}};
    if (valid) std::memcpy(c.data, src, 16);  // zero-filled otherwise (src-size 0)
    f.copies.push_back(c);
    std::memset(dst, 0xff, 16);  // a read before the copy lands sees NaN, not the copy
}
inline void cp_async_commit() { ++current_fiber->committed; }
inline void cp_async_wait_group(std::uint64_t pending) {
    fiber& f = *current_fiber;
    if (f.committed > pending) land_copies(f, f.committed - pending);
}
template <int pending>
inline void cp_async_wait() {
    static_assert(pending >= 0, "cp.async.wait_group N needs N >= 0");
    cp_async_wait_group(pending);
}
// cp.async.wait_all: commit_group, then wait_group 0.
inline void cp_async_wait_all() {
    cp_async_commit();
    cp_async_wait_group(0);
}

// ldmatrix .m8n8 .b16: lanes 8i..8i+7 hold the row addresses of matrix i;
// lane l gets row l/4, columns 2(l%4) and 2(l%4)+1 of each matrix.
template <int matrices>
inline void ldmatrix(unsigned* r, const void* row) {
    check_aligned(row, 16, "ldmatrix row");
    warp_exchange& w = my_warp();
    const int l = lane();
    w.address[l] = row;
    warp_barrier(0xffffffffu);
    check_shared_read(row, 16, "ldmatrix");  // once every lane of the warp has issued what came before
    for (int i = 0; i < matrices; ++i) {
        const auto* p = static_cast<const std::uint16_t*>(w.address[8 * i + l / 4]) + 2 * (l % 4);
        r[i] = static_cast<unsigned>(p[0]) | static_cast<unsigned>(p[1]) << 16;
    }
    warp_barrier(0xffffffffu);
}
inline void ldmatrix_x4(unsigned (&r)[4], const void* row) { ldmatrix<4>(r, row); }
inline void ldmatrix_x2(unsigned (&r)[2], const void* row) { ldmatrix<2>(r, row); }

inline float bf16_half(unsigned reg, int half) {
    const std::uint32_t bits = (half ? reg >> 16 : reg & 0xffffu) << 16;
    float f;
    std::memcpy(&f, &bits, sizeof f);
    return f;
}

// mma.sync.m16n8k16.row.col.f32.bf16.bf16.f32, fragments as in the PTX ISA:
// A a[r]: row g + 8(r%2), columns 2t + 8(r/2) + {0,1}; B b[r]: rows (k)
// 2t + 8r + {0,1}, column g; D d[i]: row g + 8(i/2), column 2t + i%2,
// with g = lane/4, t = lane%4.
inline void mma_bf16_16816(float (&d)[4], const unsigned (&a)[4], const unsigned (&b)[2]) {
    warp_exchange& w = my_warp();
    const int l = lane();
    std::copy(a, a + 4, w.a[l]);
    std::copy(b, b + 2, w.b[l]);
    warp_barrier(0xffffffffu);
    auto A = [&](int row, int k) {
        return bf16_half(w.a[(row % 8) * 4 + (k % 8) / 2][(row >= 8) + 2 * (k >= 8)], k % 2);
    };
    auto B = [&](int k, int col) { return bf16_half(w.b[col * 4 + (k % 8) / 2][k >= 8], k % 2); };
    const int g = l / 4, t = l % 4;
    for (int i = 0; i < 4; ++i) {
        const int row = g + 8 * (i / 2), col = 2 * t + i % 2;
        float s = d[i];
        for (int k = 0; k < 16; ++k) s += A(row, k) * B(k, col);
        d[i] = s;
    }
    warp_barrier(0xffffffffu);
}

// --- streams and events --------------------------------------------------------------

// The state outlives the handle: queued waits and records keep it alive
// after cudaEventDestroy, as CUDA allows destroying an event in use.
class event_state {
public:
    std::uint64_t record_call() {
        std::lock_guard lock(mutex_);
        return ++recorded_;
    }
    std::uint64_t last_recorded() {
        std::lock_guard lock(mutex_);
        return recorded_;
    }
    void complete(std::uint64_t generation) {
        std::lock_guard lock(mutex_);
        completed_ = std::max(completed_, generation);
        time_ = std::chrono::steady_clock::now();
        cv_.notify_all();
    }
    void wait(std::uint64_t generation) {
        std::unique_lock lock(mutex_);
        cv_.wait(lock, [&] { return completed_ >= generation; });
    }
    bool done() {
        std::lock_guard lock(mutex_);
        return completed_ >= recorded_;
    }
    std::chrono::steady_clock::time_point time() {
        std::lock_guard lock(mutex_);
        return time_;
    }

private:
    std::mutex mutex_;
    std::condition_variable cv_;
    std::uint64_t recorded_ = 0, completed_ = 0;
    std::chrono::steady_clock::time_point time_{};
};

class event {
public:
    explicit event(unsigned flags) : timing((flags & cudaEventDisableTiming) == 0) {}
    const bool timing;
    const std::shared_ptr<event_state> state = std::make_shared<event_state>();
};

class stream {
public:
    explicit stream(bool blocking) : blocking_(blocking), worker_([this] { run(); }) {}
    stream(const stream&) = delete;
    stream& operator=(const stream&) = delete;
    ~stream() {
        {
            std::lock_guard lock(mutex_);
            stop_ = true;
            cv_.notify_all();
        }
        worker_.join();
    }
    bool blocking() const { return blocking_; }
    void enqueue(std::function<void()> work) {
        std::lock_guard lock(mutex_);
        queue_.push_back(std::move(work));
        cv_.notify_all();
    }
    void synchronize() {
        std::unique_lock lock(mutex_);
        idle_.wait(lock, [&] { return queue_.empty() && !busy_; });
    }

private:
    void run() {
        std::unique_lock lock(mutex_);
        for (;;) {
            cv_.wait(lock, [&] { return stop_ || !queue_.empty(); });
            if (queue_.empty()) return;
            auto work = std::move(queue_.front());
            queue_.pop_front();
            busy_ = true;
            lock.unlock();
            try {
                work();
            } catch (const std::exception& e) {
                fail(std::string("stream work threw: ") + e.what());
            }
            lock.lock();
            busy_ = false;
            if (queue_.empty()) idle_.notify_all();
        }
    }

    const bool blocking_;
    std::mutex mutex_;
    std::condition_variable cv_, idle_;
    std::deque<std::function<void()>> queue_;
    bool busy_ = false, stop_ = false;
    std::thread worker_;  // last: starts after the members it uses
};

// A write of the legacy default stream that has not landed yet: copies and
// memsets there are asynchronous to the host (a pageable host-to-device
// cudaMemcpy returns once the source is staged), and nothing orders them
// with non-blocking streams. They land at the next point that is ordered
// after them: the next legacy-stream operation, work submitted to a
// blocking stream, cudaStreamSynchronize(0), cudaDeviceSynchronize, cudaFree.
struct legacy_write {
    const void* allocation;  // the device allocation written
    std::function<void()> land;
    std::string what;
};

// The device: its streams, allocations (base -> bytes), pinned host
// buffers, the legacy stream's pending writes.
struct device_state {
    std::mutex mutex;
    std::set<stream*> streams;
    std::map<const void*, std::size_t> allocations;
    std::map<const void*, std::size_t> pinned;
    std::mutex legacy_mutex;  // taken alone, never with `mutex` held
    std::vector<legacy_write> legacy_pending;
    std::uint64_t release_threshold = 0;  // of the default memory pool, as CUDA's default
    int major = 9, minor = 0;             // compute capability reported (tests may lower it)
    ~device_state() {
        for (stream* s : streams) delete s;
        for (auto [p, bytes] : allocations) std::free(const_cast<void*>(p));
    }
};
inline device_state& device() {
    static device_state d;
    return d;
}

// The block of `blocks` (base -> bytes) holding `p`, or nullptr.
inline const void* containing(const std::map<const void*, std::size_t>& blocks, const void* p) {
    std::lock_guard lock(device().mutex);
    auto it = blocks.upper_bound(p);
    if (it == blocks.begin()) return nullptr;
    --it;
    return static_cast<const char*>(p) < static_cast<const char*>(it->first) + it->second ? it->first : nullptr;
}
// The device allocation holding `p`, or nullptr (host memory).
inline const void* allocation_of(const void* p) { return containing(device().allocations, p); }
inline bool pinned(const void* p) { return containing(device().pinned, p) != nullptr; }

// Lands the legacy stream's pending writes, in their order.
inline void land_legacy_writes() {
    std::lock_guard lock(device().legacy_mutex);
    for (auto& w : device().legacy_pending) w.land();
    device().legacy_pending.clear();
}
// Work on a non-blocking stream touching an allocation that a pending
// legacy-stream write targets is unordered with that write: on a GPU it
// may read stale data. Reported as a sticky failure naming both.
inline bool unordered_with_legacy(const char* what, const std::vector<const void*>& touches) {
    std::vector<const void*> allocations;
    for (const void* p : touches)
        if (const void* a = p ? allocation_of(p) : nullptr) allocations.push_back(a);
    if (allocations.empty()) return false;
    std::lock_guard lock(device().legacy_mutex);
    for (const auto& w : device().legacy_pending)
        if (std::find(allocations.begin(), allocations.end(), w.allocation) != allocations.end()) {
            fail(std::string("unordered access: ") + what + " on a non-blocking stream uses device memory that " +
                 w.what + " on the legacy default stream is still writing (the legacy stream is not ordered with " +
                 "non-blocking streams: copy on the same stream, or synchronize first)");
            return true;
        }
    return false;
}

inline std::vector<stream*> streams(bool blocking_only) {
    std::lock_guard lock(device().mutex);
    std::vector<stream*> out;
    for (stream* s : device().streams)
        if (!blocking_only || s->blocking()) out.push_back(s);
    return out;
}
// What the legacy default stream waits for before each of its operations:
// the blocking streams' work and its own earlier writes.
inline void join_legacy() {
    for (stream* b : streams(true)) b->synchronize();
    land_legacy_writes();
}
inline void synchronize_device() {
    for (stream* s : streams(false)) s->synchronize();
    land_legacy_writes();
}
inline bool known_stream(cudaStream_t s) {
    std::lock_guard lock(device().mutex);
    return s == nullptr || device().streams.count(s) > 0;
}

// The stream trace (CHIMERA_EMULATOR_TRACE=DIR): every piece of stream
// work appends "STREAM START END WHAT" to DIR/trace.PID when it ends,
// START and END read from one counter that every start and end of the
// process advances: which work ran while other work was running, the
// order a GPU's streams leave open (tests check overlap with it).
struct trace_state {
    std::mutex mutex;
    std::FILE* file = nullptr;
    std::atomic<std::uint64_t> clock{0};
    trace_state() {
        if (const char* dir = std::getenv("CHIMERA_EMULATOR_TRACE"))
            file = std::fopen((std::string(dir) + "/trace." + std::to_string(getpid())).c_str(), "w");
    }
    ~trace_state() {
        if (file) std::fclose(file);
    }
};
inline trace_state& trace() {
    static trace_state t;
    return t;
}
inline std::function<void()> traced(cudaStream_t s, std::function<void()> work, const char* what) {
    if (!trace().file) return work;
    return [s, what, work = std::move(work)] {
        const std::uint64_t start = trace().clock++;
        work();
        const std::uint64_t end = trace().clock++;
        std::lock_guard lock(trace().mutex);
        std::fprintf(trace().file, "%p %llu %llu %s\n", static_cast<void*>(s), static_cast<unsigned long long>(start),
                     static_cast<unsigned long long>(end), what);
        std::fflush(trace().file);
    };
}

// Work on `s`: queued on its thread, or, for the legacy default stream
// (nullptr), run now after the blocking streams finished theirs. `touches`:
// the device pointers the work uses, checked against the legacy stream's
// pending writes when `s` is non-blocking.
inline cudaError_t submit(cudaStream_t s, std::function<void()> work, const char* what = "work",
                          const std::vector<const void*>& touches = {}) {
    if (!known_stream(s)) return result(cudaErrorInvalidResourceHandle);
    if (sticky() != cudaSuccess) return result();
    work = traced(s, std::move(work), what);
    if (s == nullptr) {
        join_legacy();
        work();
    } else if (s->blocking()) {
        land_legacy_writes();  // a blocking stream's work is ordered after the legacy stream's
        s->enqueue(std::move(work));
    } else if (!unordered_with_legacy(what, touches)) {
        s->enqueue(std::move(work));
    }
    return result();
}
// A write on the legacy stream that lands lazily (see legacy_write).
inline cudaError_t submit_legacy_write(const void* destination, std::function<void()> land, std::string what) {
    if (sticky() != cudaSuccess) return result();
    join_legacy();
    const void* allocation = allocation_of(destination);
    std::lock_guard lock(device().legacy_mutex);
    device().legacy_pending.push_back({allocation, std::move(land), std::move(what)});
    return result();
}

// A 256-byte aligned block, noted in `blocks` (device or pinned memory).
inline cudaError_t allocate(std::map<const void*, std::size_t>& blocks, void** p, std::size_t bytes) {
    const std::size_t rounded = (std::max<std::size_t>(bytes, 1) + 255) / 256 * 256;
    *p = std::aligned_alloc(256, rounded);
    if (!*p) return result(cudaErrorMemoryAllocation);
    std::lock_guard lock(device().mutex);
    blocks.emplace(*p, rounded);
    return result();
}

inline cudaError_t release(void* p) {
    if (!p) return cudaSuccess;
    std::lock_guard lock(device().mutex);
    if (device().allocations.erase(p) == 0) return cudaErrorInvalidDevicePointer;
    std::free(p);
    return cudaSuccess;
}

// --- kernel launches ---------------------------------------------------------------

// Dynamic shared memory per block: 48 KB unless cudaFuncSetAttribute
// raised the kernel's limit (at most 227 KB, sm_90).
constexpr std::size_t default_dynamic_shared = 48 * 1024, max_dynamic_shared = 227 * 1024;
struct function_attributes {
    std::mutex mutex;
    std::map<const void*, std::size_t> dynamic_shared;
};
inline function_attributes& attributes() {
    static function_attributes a;
    return a;
}
inline std::size_t dynamic_shared_limit(const void* kernel) {
    std::lock_guard lock(attributes().mutex);
    const auto it = attributes().dynamic_shared.find(kernel);
    return it == attributes().dynamic_shared.end() ? default_dynamic_shared : it->second;
}

template <class... P>
class launcher {
public:
    launcher(const char* name, void (*kernel)(P...), dim3 grid, dim3 block, cudaStream_t s)
        : launcher(name, kernel, grid, block, 0, s) {}
    launcher(const char* name, void (*kernel)(P...), dim3 grid, dim3 block, std::size_t shared, cudaStream_t s)
        : name_(name), kernel_(kernel), grid_(grid), block_(block), shared_(shared), stream_(s) {}

    template <class... A>
    void operator()(A&&... args) const {
        const unsigned threads = block_.x * block_.y * block_.z;
        if (threads == 0 || threads > 1024 || block_.z > 64 || grid_.x == 0 || grid_.y == 0 || grid_.z == 0 ||
            grid_.y > 65535 || grid_.z > 65535) {
            std::fprintf(stderr, "cuda emulator: invalid launch configuration for %s\n", name_);
            last_error = cudaErrorInvalidConfiguration;
            return;
        }
        if (shared_ > dynamic_shared_limit(reinterpret_cast<const void*>(kernel_))) {
            std::fprintf(stderr, "cuda emulator: %s: %zu bytes of dynamic shared memory exceed the kernel's limit %zu "
                                 "(cudaFuncSetAttribute(cudaFuncAttributeMaxDynamicSharedMemorySize) raises it)\n",
                         name_, shared_, dynamic_shared_limit(reinterpret_cast<const void*>(kernel_)));
            last_error = cudaErrorInvalidValue;
            return;
        }
        auto parameters = std::make_shared<std::tuple<std::decay_t<P>...>>(std::forward<A>(args)...);
        auto kernel = kernel_;
        const char* name = name_;
        const dim3 grid = grid_, block = block_;
        const std::size_t shared = shared_;
        std::vector<const void*> pointers;  // the arguments (or their members) that may be device memory
        std::apply([&](const auto&... a) { (note_pointer(pointers, a), ...); }, *parameters);
        submit(
            stream_,
            [=] {
                const std::function<void()> body = [&] { std::apply(kernel, *parameters); };
                run_grid(name, grid, block, body, shared);
            },
            name, pointers);
    }

private:
    // A pointer argument, or the pointers a struct argument lists in its
    // `device_pointers()` member (any range of pointers).
    template <class T>
    static void note_pointer(std::vector<const void*>& to, const T& a) {
        if constexpr (std::is_pointer_v<T>) {
            to.push_back(static_cast<const void*>(a));
        } else if constexpr (requires { a.device_pointers(); }) {
            for (const auto* p : a.device_pointers()) to.push_back(static_cast<const void*>(p));
        }
    }
    const char* name_;
    void (*kernel_)(P...);
    dim3 grid_, block_;
    std::size_t shared_;
    cudaStream_t stream_;
};

}  // namespace chimera_emulator

// --- the runtime API -----------------------------------------------------------------

inline const char* cudaGetErrorString(cudaError_t e) {
    switch (e) {
    case cudaSuccess: return "no error";
    case cudaErrorInvalidValue: return "invalid argument";
    case cudaErrorMemoryAllocation: return "out of memory";
    case cudaErrorInvalidConfiguration: return "invalid configuration argument";
    case cudaErrorInvalidDevicePointer: return "invalid device pointer";
    case cudaErrorInvalidDevice: return "invalid device ordinal";
    case cudaErrorInvalidResourceHandle: return "invalid resource handle";
    case cudaErrorNotReady: return "device not ready";
    case cudaErrorLaunchFailure: {
        static thread_local std::string reason;
        std::lock_guard lock(chimera_emulator::errors().mutex);
        reason = "unspecified launch failure (emulator: " + chimera_emulator::errors().sticky_reason + ")";
        return reason.c_str();
    }
    }
    return "unknown error";
}
template <class... P>
cudaError_t cudaFuncSetAttribute(void (*kernel)(P...), cudaFuncAttribute attribute, int value) {
    using namespace chimera_emulator;
    if (attribute != cudaFuncAttributeMaxDynamicSharedMemorySize || value < 0 ||
        static_cast<std::size_t>(value) > max_dynamic_shared)
        return result(cudaErrorInvalidValue);
    std::lock_guard lock(attributes().mutex);
    attributes().dynamic_shared[reinterpret_cast<const void*>(kernel)] = static_cast<std::size_t>(value);
    return result();
}

inline cudaError_t cudaGetLastError() {
    const cudaError_t e = chimera_emulator::sticky() != cudaSuccess ? chimera_emulator::sticky()
                                                                    : chimera_emulator::last_error;
    chimera_emulator::last_error = cudaSuccess;
    return e;
}
inline cudaError_t cudaPeekAtLastError() {
    return chimera_emulator::sticky() != cudaSuccess ? chimera_emulator::sticky() : chimera_emulator::last_error;
}

namespace chimera_emulator {
// The devices a process sees: CHIMERA_EMULATED_GPUS (default 8, a node's
// worth, so every node-local rank of a one-machine test finds its GPU).
// All of them are this process's one emulated device; the number only
// decides which device ids are valid (as cudaSetDevice checks them).
inline int device_count() {
    static const int count = [] {
        const char* text = std::getenv("CHIMERA_EMULATED_GPUS");
        const int n = text ? std::atoi(text) : 8;
        return n > 0 ? n : 8;
    }();
    return count;
}
inline bool valid_device(int device) { return device >= 0 && device < device_count(); }
inline int& current_device() {  // per process (CUDA: per host thread)
    static int device = 0;
    return device;
}
}  // namespace chimera_emulator

inline cudaError_t cudaGetDeviceCount(int* count) {
    *count = chimera_emulator::device_count();
    return cudaSuccess;
}
inline cudaError_t cudaGetDevice(int* device) {
    *device = chimera_emulator::current_device();
    return cudaSuccess;
}
inline cudaError_t cudaSetDevice(int device) {
    if (!chimera_emulator::valid_device(device)) return chimera_emulator::result(cudaErrorInvalidDevice);
    chimera_emulator::current_device() = device;
    return cudaSuccess;
}
inline cudaError_t cudaGetDeviceProperties(cudaDeviceProp* p, int device) {
    if (!chimera_emulator::valid_device(device)) return chimera_emulator::result(cudaErrorInvalidDevice);
    *p = cudaDeviceProp{};
    std::snprintf(p->name, sizeof p->name, "Chimera CUDA emulator (CPU)");
    p->totalGlobalMem = std::size_t{1} << 32;
    p->sharedMemPerBlock = 48 * 1024;
    p->warpSize = chimera_emulator::warp_size;
    p->maxThreadsPerBlock = 1024;
    p->multiProcessorCount = 1;
    p->major = chimera_emulator::device().major;
    p->minor = chimera_emulator::device().minor;
    p->clockRate = 1000000;
    return cudaSuccess;
}
inline cudaError_t cudaDeviceGetAttribute(int* value, cudaDeviceAttr attr, int device) {
    if (!chimera_emulator::valid_device(device)) return chimera_emulator::result(cudaErrorInvalidDevice);
    switch (attr) {
    case cudaDevAttrMaxThreadsPerBlock: *value = 1024; break;
    case cudaDevAttrClockRate: *value = 1000000; break;
    case cudaDevAttrMultiProcessorCount: *value = 1; break;
    case cudaDevAttrComputeCapabilityMajor: *value = chimera_emulator::device().major; break;
    case cudaDevAttrComputeCapabilityMinor: *value = chimera_emulator::device().minor; break;
    case cudaDevAttrMaxSharedMemoryPerBlockOptin:
        *value = static_cast<int>(chimera_emulator::max_dynamic_shared);
        break;
    }
    return cudaSuccess;
}
inline cudaError_t cudaRuntimeGetVersion(int* v) {
    *v = 13000;
    return cudaSuccess;
}
inline cudaError_t cudaDriverGetVersion(int* v) {
    *v = 13000;
    return cudaSuccess;
}

inline cudaError_t cudaDeviceSynchronize() {
    chimera_emulator::synchronize_device();
    return chimera_emulator::result();
}

// Waits for all work, destroys every stream and allocation and clears a
// sticky error: the device as new, as after CUDA's reset.
inline cudaError_t cudaDeviceReset() {
    chimera_emulator::synchronize_device();
    std::lock_guard lock(chimera_emulator::device().mutex);
    for (auto* s : chimera_emulator::device().streams) delete s;
    for (auto [p, bytes] : chimera_emulator::device().allocations) std::free(const_cast<void*>(p));
    for (auto [p, bytes] : chimera_emulator::device().pinned) std::free(const_cast<void*>(p));
    chimera_emulator::device().streams.clear();
    chimera_emulator::device().allocations.clear();
    chimera_emulator::device().pinned.clear();
    chimera_emulator::device().release_threshold = 0;
    std::lock_guard error_lock(chimera_emulator::errors().mutex);
    chimera_emulator::errors().sticky = cudaSuccess;
    chimera_emulator::errors().sticky_reason.clear();
    chimera_emulator::last_error = cudaSuccess;
    std::lock_guard attribute_lock(chimera_emulator::attributes().mutex);
    chimera_emulator::attributes().dynamic_shared.clear();  // a new context: kernels' limits back to 48 KB
    return cudaSuccess;
}

inline cudaError_t cudaMalloc(void** p, std::size_t bytes) {
    return chimera_emulator::allocate(chimera_emulator::device().allocations, p, bytes);
}
template <class T>
cudaError_t cudaMalloc(T** p, std::size_t bytes) {
    return cudaMalloc(reinterpret_cast<void**>(p), bytes);
}
// Synchronous, like CUDA's: waits for all work on the device first.
inline cudaError_t cudaFree(void* p) {
    chimera_emulator::synchronize_device();
    return chimera_emulator::result(chimera_emulator::release(p));
}
inline cudaError_t cudaMallocAsync(void** p, std::size_t bytes, cudaStream_t) { return cudaMalloc(p, bytes); }
template <class T>
cudaError_t cudaMallocAsync(T** p, std::size_t bytes, cudaStream_t s) {
    return cudaMallocAsync(reinterpret_cast<void**>(p), bytes, s);
}
inline cudaError_t cudaFreeAsync(void* p, cudaStream_t s) {
    return chimera_emulator::submit(
        s,
        [p] {
            if (chimera_emulator::release(p) != cudaSuccess)
                chimera_emulator::fail("cudaFreeAsync of a pointer that is not allocated");
        },
        "cudaFreeAsync", {p});
}
inline cudaError_t cudaDeviceGetDefaultMemPool(cudaMemPool_t* pool, int device) {
    if (!chimera_emulator::valid_device(device)) return chimera_emulator::result(cudaErrorInvalidDevice);
    static int the_pool;
    *pool = reinterpret_cast<cudaMemPool_t>(&the_pool);
    return chimera_emulator::result();
}
inline cudaError_t cudaMemPoolSetAttribute(cudaMemPool_t pool, cudaMemPoolAttr attr, void* value) {
    if (!pool || attr != cudaMemPoolAttrReleaseThreshold) return chimera_emulator::result(cudaErrorInvalidValue);
    std::lock_guard lock(chimera_emulator::device().mutex);
    chimera_emulator::device().release_threshold = *static_cast<std::uint64_t*>(value);
    return chimera_emulator::result();
}
inline cudaError_t cudaMemPoolGetAttribute(cudaMemPool_t pool, cudaMemPoolAttr attr, void* value) {
    if (!pool || attr != cudaMemPoolAttrReleaseThreshold) return chimera_emulator::result(cudaErrorInvalidValue);
    std::lock_guard lock(chimera_emulator::device().mutex);
    *static_cast<std::uint64_t*>(value) = chimera_emulator::device().release_threshold;
    return chimera_emulator::result();
}

// Page-locked host memory: copies from it need no staging.
inline cudaError_t cudaMallocHost(void** p, std::size_t bytes) {
    return chimera_emulator::allocate(chimera_emulator::device().pinned, p, bytes);
}
template <class T>
cudaError_t cudaMallocHost(T** p, std::size_t bytes) {
    return cudaMallocHost(reinterpret_cast<void**>(p), bytes);
}
// Synchronizes the device first, as CUDA's does.
inline cudaError_t cudaFreeHost(void* p) {
    chimera_emulator::synchronize_device();
    if (!p) return chimera_emulator::result();
    std::lock_guard lock(chimera_emulator::device().mutex);
    if (chimera_emulator::device().pinned.erase(p) == 0) return chimera_emulator::result(cudaErrorInvalidValue);
    std::free(p);
    return chimera_emulator::result();
}

// On the legacy default stream a copy into device memory is asynchronous:
// the source is staged at the call, the write lands later (legacy_write).
// On other streams a pageable host source is staged at the call (the caller
// may reuse it at once); a page-locked one is read when the copy runs. A
// copy from the device into pageable host memory returns only once it is
// done (after everything before it on its stream), as CUDA's does.
inline cudaError_t cudaMemcpyAsync(void* dst, const void* src, std::size_t bytes, cudaMemcpyKind, cudaStream_t s) {
    using namespace chimera_emulator;
    if (bytes == 0) return result();
    const bool legacy_write = s == nullptr && allocation_of(dst);
    if (legacy_write && sticky() == cudaSuccess) join_legacy();  // the source as the stream would read it
    if (!legacy_write && (allocation_of(src) || pinned(src) || !allocation_of(dst))) {
        const cudaError_t e = submit(s, [=] { std::memmove(dst, src, bytes); }, "cudaMemcpyAsync", {dst, src});
        if (e != cudaSuccess || s == nullptr || !allocation_of(src) || allocation_of(dst) || pinned(dst)) return e;
        s->synchronize();
        return result();
    }
    auto staged = std::make_shared<std::vector<char>>(static_cast<const char*>(src), static_cast<const char*>(src) + bytes);
    auto land = [=] { std::memcpy(dst, staged->data(), bytes); };
    if (legacy_write) return submit_legacy_write(dst, land, "a copy");
    return submit(s, land, "cudaMemcpyAsync", {dst});
}
// Synchronous only from page-locked memory or into host memory; a pageable
// upload returns once staged (the write lands later, see legacy_write).
inline cudaError_t cudaMemcpy(void* dst, const void* src, std::size_t bytes, cudaMemcpyKind kind) {
    if (bytes > 0 && chimera_emulator::pinned(src))
        return chimera_emulator::submit(nullptr, [=] { std::memmove(dst, src, bytes); });
    return cudaMemcpyAsync(dst, src, bytes, kind, nullptr);
}
inline cudaError_t cudaMemsetAsync(void* p, int value, std::size_t bytes, cudaStream_t s) {
    if (bytes == 0) return chimera_emulator::result();
    if (s == nullptr) return chimera_emulator::submit_legacy_write(p, [=] { std::memset(p, value, bytes); }, "a memset");
    return chimera_emulator::submit(s, [=] { std::memset(p, value, bytes); }, "cudaMemsetAsync", {p});
}
inline cudaError_t cudaMemset(void* p, int value, std::size_t bytes) { return cudaMemsetAsync(p, value, bytes, nullptr); }

inline cudaError_t cudaStreamCreateWithFlags(cudaStream_t* s, unsigned flags) {
    *s = new chimera_emulator::stream((flags & cudaStreamNonBlocking) == 0);
    std::lock_guard lock(chimera_emulator::device().mutex);
    chimera_emulator::device().streams.insert(*s);
    return chimera_emulator::result();
}
inline cudaError_t cudaStreamCreate(cudaStream_t* s) { return cudaStreamCreateWithFlags(s, cudaStreamDefault); }
inline cudaError_t cudaStreamSynchronize(cudaStream_t s) {
    if (!chimera_emulator::known_stream(s)) return chimera_emulator::result(cudaErrorInvalidResourceHandle);
    if (s == nullptr) {
        chimera_emulator::join_legacy();
    } else {
        s->synchronize();
    }
    return chimera_emulator::result();
}
inline cudaError_t cudaStreamDestroy(cudaStream_t s) {
    if (s == nullptr || !chimera_emulator::known_stream(s))
        return chimera_emulator::result(cudaErrorInvalidResourceHandle);
    {
        std::lock_guard lock(chimera_emulator::device().mutex);
        chimera_emulator::device().streams.erase(s);
    }
    s->synchronize();
    delete s;
    return chimera_emulator::result();
}

inline cudaError_t cudaEventCreateWithFlags(cudaEvent_t* e, unsigned flags) {
    *e = new chimera_emulator::event(flags);
    return chimera_emulator::result();
}
inline cudaError_t cudaEventCreate(cudaEvent_t* e) { return cudaEventCreateWithFlags(e, cudaEventDefault); }
inline cudaError_t cudaEventDestroy(cudaEvent_t e) {
    if (!e) return chimera_emulator::result(cudaErrorInvalidResourceHandle);
    delete e;
    return chimera_emulator::result();
}
inline cudaError_t cudaEventRecord(cudaEvent_t e, cudaStream_t s = nullptr) {
    if (!e) return chimera_emulator::result(cudaErrorInvalidResourceHandle);
    auto state = e->state;
    const std::uint64_t generation = state->record_call();
    return chimera_emulator::submit(s, [state, generation] { state->complete(generation); }, "cudaEventRecord");
}
// Waits for the event's most recent record at the time of the call; an
// event never recorded is complete already (CUDA's rule, and its pitfall).
inline cudaError_t cudaStreamWaitEvent(cudaStream_t s, cudaEvent_t e, unsigned = 0) {
    if (!e) return chimera_emulator::result(cudaErrorInvalidResourceHandle);
    auto state = e->state;
    const std::uint64_t generation = state->last_recorded();
    if (generation == 0) return chimera_emulator::result();
    return chimera_emulator::submit(s, [state, generation] { state->wait(generation); }, "cudaStreamWaitEvent");
}
inline cudaError_t cudaEventQuery(cudaEvent_t e) {
    if (!e) return chimera_emulator::result(cudaErrorInvalidResourceHandle);
    const cudaError_t r = chimera_emulator::result();
    return r != cudaSuccess ? r : e->state->done() ? cudaSuccess : cudaErrorNotReady;
}
inline cudaError_t cudaEventSynchronize(cudaEvent_t e) {
    if (!e) return chimera_emulator::result(cudaErrorInvalidResourceHandle);
    e->state->wait(e->state->last_recorded());
    return chimera_emulator::result();
}
inline cudaError_t cudaEventElapsedTime(float* ms, cudaEvent_t start, cudaEvent_t end) {
    if (!start || !end || !start->timing || !end->timing || !start->state->done() || !end->state->done())
        return chimera_emulator::result(cudaErrorInvalidResourceHandle);
    *ms = std::chrono::duration<float, std::milli>(end->state->time() - start->state->time()).count();
    return chimera_emulator::result();
}

// --- device code ---------------------------------------------------------------------

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __align__(n) __attribute__((aligned(n)))
// One block's shared memory is the host thread's: blocks run one at a time
// on the thread of their stream, and all their fibers live on it.
#define __shared__ static thread_local
#define threadIdx (::chimera_emulator::current_fiber->thread_index)
#define blockIdx (::chimera_emulator::current_block->block_index)
#define blockDim (::chimera_emulator::current_block->block_dim)
#define gridDim (::chimera_emulator::current_block->grid_dim)

inline void __syncthreads() { chimera_emulator::syncthreads(); }
inline void __syncwarp(unsigned mask = 0xffffffffu) { chimera_emulator::warp_barrier(mask); }
template <class T>
T __shfl_sync(unsigned mask, T v, int source, int = 32) {
    return chimera_emulator::shuffle(mask, v, source);
}
template <class T>
T __shfl_xor_sync(unsigned mask, T v, int lane_mask, int = 32) {
    return chimera_emulator::shuffle(mask, v, chimera_emulator::lane() ^ lane_mask);
}
template <class T>
T __shfl_down_sync(unsigned mask, T v, unsigned delta, int = 32) {
    const int source = chimera_emulator::lane() + static_cast<int>(delta);
    const T mine = v;
    const T other = chimera_emulator::shuffle(mask, v, source < 32 ? source : chimera_emulator::lane());
    return source < 32 ? other : mine;
}
// <cuda_pipeline.h>'s primitives, over the emulated cp.async (16-byte
// copies; zfill 16 zero-fills the whole copy).
inline void __pipeline_memcpy_async(void* dst, const void* src, std::size_t size, std::size_t zfill = 0) {
    if (size != 16 || (zfill != 0 && zfill != 16))
        chimera_emulator::kernel_failure("__pipeline_memcpy_async of size " + std::to_string(size) + ", zfill " +
                                         std::to_string(zfill) + " (only 16-byte copies are emulated)");
    chimera_emulator::cp_async_16(dst, src, zfill == 0);
}
inline void __pipeline_commit() { chimera_emulator::cp_async_commit(); }
inline void __pipeline_wait_prior(std::size_t n) { chimera_emulator::cp_async_wait_group(n); }
inline int min(int a, int b) { return a < b ? a : b; }
inline int max(int a, int b) { return a > b ? a : b; }
inline unsigned min(unsigned a, unsigned b) { return a < b ? a : b; }
inline unsigned max(unsigned a, unsigned b) { return a > b ? a : b; }
