// The deformable convolution family (DCNv2, torchvision's deform_conv2d in
// NHWC): out[b, oy, ox, f] = sum over taps (i, j) and the channels c of f's
// group of kernel[i, j, c % (C / groups), f] * mask * x~(b, y, x, c), where
// x~ samples x bilinearly at y = oy * stride_h - pad_top + i * dilation_h +
// dy, x = ox * stride_w - pad_left + j * dilation_w + dx, (dy, dx) and mask
// being tap (i, j)'s offsets and modulation in c's offset group. The
// sampling is the resampling family's (its Taps, boundary "zeros": each
// neighbour outside the image contributes zero).
//
// CPU: a blocked im2col of the bilinear samples, kMatMulChunkRows output
// pixels at a time, multiplied by the kernel (matmul_tiles.inc). The
// backward runs in waves of output pixels whose column buffers are bounded
// (kWaveBytes): the columns' gradient is a product by the kernel, the
// offsets' and the mask's come from it and the taps; the x gradient is a
// scatter-add, computed deterministically in units of (batch item, block of
// channels), each owned by one thread; the kernel's gradient is summed in
// Wide<U> over the waves. Every result is the same for any thread count.
//
// Framework-free: plain templates over raw pointers. T is the storage type;
// U = Acc<T> the computation type.
#ifndef TFKIT_KERNELS_DEFORM_CONV_DEFORM_CONV_CPU_H_
#define TFKIT_KERNELS_DEFORM_CONV_DEFORM_CONV_CPU_H_

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

#include "kernels/common/accumulate.h"
#include "kernels/common/cpu_isa.h"
#include "kernels/common/types.h"
#include "kernels/deform_conv/deform_conv_rules.h"
#include "kernels/deform_conv/deform_conv_taps.h"
#include "kernels/resampling/resampling_cpu.h"

namespace tfkit {
namespace kernels {
namespace deform_conv {

// Output pixels per im2col block, and the bound on a backward wave's buffers.
constexpr int64_t kMatMulChunkRows = 64;
constexpr int64_t kWaveBytes = int64_t{48} << 20;

// The backward's workspace (DeformConvGradWorkspace): `wave` elements of U
// for a wave of `wave_rows` output pixels, `sums` elements of Wide<U>.
struct GradWorkspace {
  int64_t wave_rows = 0;
  int64_t wave = 0;
  int64_t sums = 0;
};

#define TFKIT_ISA_LOOPS "kernels/deform_conv/deform_conv_rows.inc"
#include "kernels/common/isa_builds.inc"

// The same for every build (one matmul tile width, kMatMulCols).
template <typename U>
GradWorkspace DeformConvGradWorkspace(const DeformConvShape& shape) {
  return generic::GradWorkspaceOf<U>(shape);
}

// out [batch, out_h, out_w, filters]. parallel_for(n, cost_per_item,
// fn(begin, end)) runs fn over [0, n) (a thread pool, or serially).
template <typename T, typename U, typename ParallelFor>
void DeformConv(const T* x, const T* offsets, const T* mask, const T* kernel, const DeformConvShape& shape,
                ParallelFor&& parallel_for, T* out) {
  TFKIT_ON_THIS_CPU_COMPUTING(U, DeformConv<T, U>(x, offsets, mask, kernel, shape, parallel_for, out))
}

// The gradients of x, offsets, mask and kernel for grad [batch, out_h,
// out_w, filters]; the workspaces hold DeformConvGradWorkspace's sizes.
template <typename T, typename U, typename ParallelFor>
void DeformConvGrad(const T* x, const T* offsets, const T* mask, const T* kernel, const T* grad,
                    const DeformConvShape& shape, ParallelFor&& parallel_for, U* wave_workspace,
                    Wide<U>* sums_workspace, T* grad_x, T* grad_offsets, T* grad_mask, T* grad_kernel) {
  TFKIT_ON_THIS_CPU_COMPUTING(U, DeformConvGrad<T, U>(x, offsets, mask, kernel, grad, shape, parallel_for,
                                                      wave_workspace, sums_workspace, grad_x, grad_offsets,
                                                      grad_mask, grad_kernel))
}

}  // namespace deform_conv
}  // namespace kernels
}  // namespace tfkit

#endif  // TFKIT_KERNELS_DEFORM_CONV_DEFORM_CONV_CPU_H_
