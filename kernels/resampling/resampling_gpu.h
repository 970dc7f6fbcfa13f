// The resampling family: CUDA launchers (see resampling_cpu.h for the math).
//
// Framework-free host functions that enqueue work on `stream`. T is one of
// float, double, Half, BFloat16 (kernels/common/types.h). All pointers are
// device pointers. Each returns cudaGetLastError().
#ifndef TFKIT_KERNELS_RESAMPLING_RESAMPLING_GPU_H_
#define TFKIT_KERNELS_RESAMPLING_RESAMPLING_GPU_H_

#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/common/types.h"
#include "kernels/resampling/resampling_cpu.h"

namespace tfkit {
namespace kernels {
namespace resampling {

// out [batch, points, channels] sampled from data at warp [batch, points, 2].
template <typename T>
cudaError_t LaunchResample(cudaStream_t stream, const T* data, const T* warp, const ResamplerShape& shape, T* out);

// The gradients for data and warp given grad [batch, points, channels].
// `sums` is a [batch, height, width, channels] workspace of Acc<T>; it may
// be grad_data itself where T is Acc<T>. The data gradient is a scatter-add:
// with atomics (the order of the additions, so the last bits, vary from run
// to run), or with `deterministic` in a fixed order, one thread per (batch
// item, channel), which is much slower.
template <typename T>
cudaError_t LaunchResampleGrad(cudaStream_t stream, const T* data, const T* warp, const T* grad,
                               const ResamplerShape& shape, bool deterministic, Acc<T>* sums, T* grad_data,
                               T* grad_warp);

}  // namespace resampling
}  // namespace kernels
}  // namespace tfkit

#endif  // TFKIT_KERNELS_RESAMPLING_RESAMPLING_GPU_H_
