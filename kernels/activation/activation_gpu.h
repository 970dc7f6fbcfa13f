// The activation family: CUDA launchers (see activation_cpu.h for the math).
//
// Framework-free host functions that enqueue work on `stream`. T is one of
// float, double, Half, BFloat16 (kernels/common/types.h). All pointers are
// device pointers. Each returns cudaGetLastError().
#ifndef TFKIT_KERNELS_ACTIVATION_ACTIVATION_GPU_H_
#define TFKIT_KERNELS_ACTIVATION_ACTIVATION_GPU_H_

#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/activation/activation_math.h"
#include "kernels/common/accumulate.h"
#include "kernels/common/types.h"

namespace tfkit {
namespace kernels {
namespace activation {

template <typename T>
cudaError_t LaunchBiasActivation(cudaStream_t stream, Activation act, const T* x, const T* bias, int64_t rows,
                                 int64_t cols, T* y);

// The Wide<Acc<T>> elements of workspace LaunchBiasActivationGrad needs.
int64_t BiasActivationGradWorkspaceSize(int64_t rows, int64_t cols);

// dbias is summed per fixed row block (FixedRowBlocks) into the workspace,
// then the blocks are added in order: deterministic.
template <typename T>
cudaError_t LaunchBiasActivationGrad(cudaStream_t stream, Activation act, const T* dy, const T* x, const T* bias,
                                     int64_t rows, int64_t cols, Wide<Acc<T>>* workspace, T* dx, T* dbias);

template <typename T>
cudaError_t LaunchGatedActivation(cudaStream_t stream, Activation act, const T* x, int64_t rows, int64_t half, T* y);

template <typename T>
cudaError_t LaunchGatedActivationGrad(cudaStream_t stream, Activation act, const T* dy, const T* x, int64_t rows,
                                      int64_t half, T* dx);

}  // namespace activation
}  // namespace kernels
}  // namespace tfkit

#endif  // TFKIT_KERNELS_ACTIVATION_ACTIVATION_GPU_H_
