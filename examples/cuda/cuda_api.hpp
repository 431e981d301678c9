// The CUDA runtime API, real or emulated. Every host file of the CUDA
// backend includes this instead of <cuda_runtime.h>: built with
// CHIMERA_CUDA_EMULATION, the same sources run on the CPU through
// emulator/cuda_emulator.hpp (streams as host threads, blocks as fibers), so
// the GPU tests execute on machines without a GPU; built normally, this is
// the CUDA runtime itself.
#pragma once

#if defined(CHIMERA_CUDA_EMULATION)
#include "emulator/cuda_emulator.hpp"
// kernel<<<grid, block, 0, stream>>>(args...) is not C++; launches go
// through this macro in both builds.
#define CHIMERA_LAUNCH(kernel, grid, block, stream) ::chimera_emulator::launcher(#kernel, kernel, grid, block, stream)
#define CHIMERA_LAUNCH_SHARED(kernel, grid, block, shared, stream) \
    ::chimera_emulator::launcher(#kernel, kernel, grid, block, shared, stream)
#else
#include <cuda_runtime.h>
#define CHIMERA_LAUNCH(kernel, grid, block, stream) kernel<<<grid, block, 0, stream>>>
// With `shared` bytes of dynamic shared memory (above 48 KB the kernel
// needs cudaFuncSetAttribute(cudaFuncAttributeMaxDynamicSharedMemorySize)).
#define CHIMERA_LAUNCH_SHARED(kernel, grid, block, shared, stream) kernel<<<grid, block, shared, stream>>>
#endif
