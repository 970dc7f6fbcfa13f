// The deformable convolution family's taps, shared by the CPU loops and
// the CUDA kernels: where each kernel tap of an output pixel samples x, by
// the resampling family's bilinear rule (boundary "zeros").
#ifndef TFKIT_KERNELS_DEFORM_CONV_DEFORM_CONV_TAPS_H_
#define TFKIT_KERNELS_DEFORM_CONV_DEFORM_CONV_TAPS_H_

#include <cstdint>

#include "kernels/common/types.h"
#include "kernels/deform_conv/deform_conv_rules.h"
#include "kernels/resampling/resampling_cpu.h"

namespace tfkit {
namespace kernels {
namespace deform_conv {

using resampling::Taps;

// The image one sample reads: x's height and width, boundary "zeros".
inline resampling::ResamplerShape SampledImage(const DeformConvShape& s) {
  resampling::ResamplerShape image;
  image.height = s.height;
  image.width = s.width;
  image.channels = s.channels;
  image.boundary = resampling::Boundary::kZeros;
  return image;
}

// Tap t of offset group og at output pixel `row` (of all batch items):
// its four neighbours and its mask. False where it samples zero.
template <typename T, typename U>
TFKIT_HOST_DEVICE bool TapOf(const T* offsets, const T* mask, const DeformConvShape& s,
                             const resampling::ResamplerShape& image, int64_t row, int64_t og, int64_t t,
                             Taps<U>* taps, U* modulation) {
  const int64_t pixel = row % s.pixels();
  const int64_t oy = pixel / s.out_w, ox = pixel % s.out_w;
  const int64_t i = t / s.kernel_w, j = t % s.kernel_w;
  const int64_t tap = row * s.offset_groups * s.taps() + og * s.taps() + t;
  const U dy = static_cast<U>(offsets[2 * tap]), dx = static_cast<U>(offsets[2 * tap + 1]);
  *modulation = static_cast<U>(mask[tap]);
  const U y = static_cast<U>(oy * s.stride_h - s.pad_top + i * s.dilation_h) + dy;
  const U x = static_cast<U>(ox * s.stride_w - s.pad_left + j * s.dilation_w) + dx;
  return resampling::TapsOf(x, y, image, taps);
}

}  // namespace deform_conv
}  // namespace kernels
}  // namespace tfkit

#endif  // TFKIT_KERNELS_DEFORM_CONV_DEFORM_CONV_TAPS_H_
