// The kernels and their launchers, compiled as host C++ for the CUDA
// emulator (cuda_emulator.hpp); meson defines CHIMERA_CUDA_EMULATION for
// this file and for everything that links it.
#include "../kernels.cu"
