// The ${family} family: CUDA launchers (see ${family}_cpu.h for the math).
//
// Framework-free host functions that enqueue work on `stream`. T is one of
// float, double, Half, BFloat16 (kernels/common/types.h). All pointers are
// device pointers. Each returns cudaGetLastError().
#ifndef TFKIT_KERNELS_${FAMILY}_${FAMILY}_GPU_H_
#define TFKIT_KERNELS_${FAMILY}_${FAMILY}_GPU_H_

#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/common/types.h"

namespace tfkit {
namespace kernels {
namespace ${family} {

template <typename T>
cudaError_t Launch${Camel}Forward(cudaStream_t stream, const T* x, int64_t n, Acc<T> limit, T* y);

template <typename T>
cudaError_t Launch${Camel}Backward(cudaStream_t stream, const T* dy, const T* y, int64_t n, Acc<T> limit, T* dx);

}  // namespace ${family}
}  // namespace kernels
}  // namespace tfkit

#endif  // TFKIT_KERNELS_${FAMILY}_${FAMILY}_GPU_H_
