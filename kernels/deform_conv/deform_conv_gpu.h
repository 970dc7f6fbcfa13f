// The deformable convolution family: CUDA launchers (see deform_conv_cpu.h
// for the math).
//
// Framework-free host functions that enqueue work on `stream`. T is one of
// float, double, Half, BFloat16 (kernels/common/types.h). All pointers are
// device pointers; `workspace` holds the Workspace size's Acc<T> elements.
// Each returns cudaGetLastError().
#ifndef TFKIT_KERNELS_DEFORM_CONV_DEFORM_CONV_GPU_H_
#define TFKIT_KERNELS_DEFORM_CONV_DEFORM_CONV_GPU_H_

#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>

#include "kernels/common/types.h"
#include "kernels/deform_conv/deform_conv_rules.h"

namespace tfkit {
namespace kernels {
namespace deform_conv {

// Output pixels per column buffer: about kGpuColumnElements columns each.
constexpr int64_t kGpuColumnElements = int64_t{1} << 24;

inline int64_t GpuChunkRows(const DeformConvShape& s) {
  const int64_t depth = std::max<int64_t>(1, s.taps() * s.channels);
  return std::max<int64_t>(1, std::min(s.rows(), kGpuColumnElements / depth));
}

inline int64_t DeformConvWorkspaceSize(const DeformConvShape& s) {
  return GpuChunkRows(s) * s.taps() * s.channels;
}

// The columns and their gradient, the kernel's gradient and x's.
inline int64_t DeformConvGradWorkspaceSize(const DeformConvShape& s) {
  return 2 * DeformConvWorkspaceSize(s) + s.taps() * s.group_channels() * s.filters +
         s.batch * s.height * s.width * s.channels;
}

// out [batch, out_h, out_w, filters].
template <typename T>
cudaError_t LaunchDeformConv(cudaStream_t stream, const T* x, const T* offsets, const T* mask, const T* kernel,
                             const DeformConvShape& shape, Acc<T>* workspace, T* out);

// The gradients for grad [batch, out_h, out_w, filters]. The x gradient is
// a scatter-add: with atomics (the order of the additions, so the last
// bits, vary from run to run), or with `deterministic` in a fixed order,
// one thread per (batch item, channel), which is much slower.
template <typename T>
cudaError_t LaunchDeformConvGrad(cudaStream_t stream, const T* x, const T* offsets, const T* mask, const T* kernel,
                                 const T* grad, const DeformConvShape& shape, bool deterministic, Acc<T>* workspace,
                                 T* grad_x, T* grad_offsets, T* grad_mask, T* grad_kernel);

}  // namespace deform_conv
}  // namespace kernels
}  // namespace tfkit

#endif  // TFKIT_KERNELS_DEFORM_CONV_DEFORM_CONV_GPU_H_
