// The rotary family: CUDA launchers (see rotary_cpu.h for the math).
//
// Framework-free host functions that enqueue work on `stream`. T is one of
// float, double, Half, BFloat16 (kernels/common/types.h), U = Acc<T>. All
// pointers are device pointers. Each returns cudaGetLastError().
#ifndef TFKIT_KERNELS_ROTARY_ROTARY_GPU_H_
#define TFKIT_KERNELS_ROTARY_ROTARY_GPU_H_

#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/common/types.h"
#include "kernels/rotary/rotary_cpu.h"

namespace tfkit {
namespace kernels {
namespace rotary {

// cos_table and sin_table are [position_rows, dim / 2] workspaces of U.
template <typename T>
cudaError_t LaunchRotary(cudaStream_t stream, const T* x, const Acc<T>* positions, const Acc<T>* inv_freq,
                         const RotaryShape& shape, Acc<T> sign, Acc<T>* cos_table, Acc<T>* sin_table, T* y);

}  // namespace rotary
}  // namespace kernels
}  // namespace tfkit

#endif  // TFKIT_KERNELS_ROTARY_ROTARY_GPU_H_
