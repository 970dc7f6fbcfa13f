// Fused layer / RMS normalization over the last axis: CUDA launchers.
//
// Framework-free host functions that enqueue work on `stream`. T is one of
// float, double, Half, BFloat16 (kernels/common/types.h); U is Acc<T>.
// center = true is LayerNorm, false is RMSNorm (mean and beta unused, may be
// null). All pointers are device pointers. Each returns cudaGetLastError().
#ifndef TFKIT_KERNELS_NORM_NORM_GPU_H_
#define TFKIT_KERNELS_NORM_NORM_GPU_H_

#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/common/accumulate.h"
#include "kernels/common/types.h"

namespace tfkit {
namespace kernels {
namespace norm {

template <typename T>
cudaError_t LaunchNormForward(cudaStream_t stream, bool center, const T* x,
                              const T* gamma, const T* beta, int64_t rows,
                              int64_t cols, Acc<T> epsilon, T* y,
                              Acc<T>* mean, Acc<T>* rstd);

// Number of Wide<Acc<T>> (double) elements of device scratch
// LaunchNormBackward needs.
int64_t NormBackwardWorkspaceSize(int64_t rows, int64_t cols);

// dmean / drstd: gradients flowing into the statistics outputs, per row
// (dmean unused for RMSNorm); see NormBackwardRows in norm_cpu.h.
template <typename T>
cudaError_t LaunchNormBackward(cudaStream_t stream, bool center, const T* dy,
                               const T* x, const T* gamma, const Acc<T>* mean,
                               const Acc<T>* rstd, const Acc<T>* dmean,
                               const Acc<T>* drstd, int64_t rows, int64_t cols,
                               Wide<Acc<T>>* workspace, T* dx, T* dgamma,
                               T* dbeta);

}  // namespace norm
}  // namespace kernels
}  // namespace tfkit

#endif  // TFKIT_KERNELS_NORM_NORM_GPU_H_
