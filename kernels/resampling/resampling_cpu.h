// The resampling family: bilinear sampling of data [batch, height, width,
// channels] at the points of warp [batch, points, 2], each point (x, y) in
// pixels (x along the width). The four neighbours of a point are weighted
// (1 - ax)(1 - ay), ax (1 - ay), (1 - ax) ay and ax ay, with ax = x -
// floor(x), ay = y - floor(y). Two boundaries:
//   kZeros: a neighbour outside the image contributes zero (so a point
//     outside (-1, width) x (-1, height) samples zero);
//   kClamp: the point is clamped into [0, width - 1] x [0, height - 1] and
//     its lower neighbour to at most size - 2, so it samples the edge; the
//     clamped coordinates have zero gradient.
// A NaN coordinate samples zero (and has zero gradient) in both. CPU kernels
// and the tap math the CUDA kernels share.
//
// Framework-free: plain templates over raw pointers. T is the storage type
// of data, warp and the gradients; U = Acc<T> the computation type.
#ifndef TFKIT_KERNELS_RESAMPLING_RESAMPLING_CPU_H_
#define TFKIT_KERNELS_RESAMPLING_RESAMPLING_CPU_H_

#include <math.h>

#include <algorithm>
#include <cstdint>
#include <vector>

#include "kernels/common/accumulate.h"
#include "kernels/common/cpu_isa.h"
#include "kernels/common/types.h"
#include "kernels/resampling/resampling_rules.h"

namespace tfkit {
namespace kernels {
namespace resampling {

// One axis of a sample point: its lower neighbour, the upper neighbour's
// weight, and d(weight) / d(coordinate).
template <typename U>
struct Axis {
  int64_t low;
  U alpha;
  U slope;
};

// False where the point samples zero along this axis.
template <typename U>
TFKIT_HOST_DEVICE bool AxisOf(U coord, int64_t size, Boundary boundary, Axis<U>* axis) {
  if (boundary == Boundary::kZeros) {
    if (!(coord > U(-1) && coord < static_cast<U>(size))) return false;
    const U low = floor(coord);
    *axis = {static_cast<int64_t>(low), coord - low, U(1)};
    return true;
  }
  if (coord != coord || size <= 0) return false;
  const U top = static_cast<U>(size - 1);
  const U clamped = coord < U(0) ? U(0) : (coord > top ? top : coord);
  const U low = size > 1 ? floor(clamped) - (clamped == top ? U(1) : U(0)) : U(0);
  const bool inside = size > 1 && coord >= U(0) && coord <= top;
  *axis = {static_cast<int64_t>(low), clamped - low, inside ? U(1) : U(0)};
  return true;
}

// A point's four neighbours, in the order (x0, y0), (x1, y0), (x0, y1),
// (x1, y1): their pixel indices y * width + x (-1 outside the image) and
// weights.
template <typename U>
struct Taps {
  int64_t pixel[4];
  U weight[4];
  Axis<U> x;
  Axis<U> y;
};

// False where the point samples zero.
template <typename U>
TFKIT_HOST_DEVICE bool TapsOf(U x, U y, const ResamplerShape& shape, Taps<U>* taps) {
  if (!AxisOf(x, shape.width, shape.boundary, &taps->x) || !AxisOf(y, shape.height, shape.boundary, &taps->y)) {
    return false;
  }
  for (int k = 0; k < 4; ++k) {
    const int64_t px = taps->x.low + (k & 1);
    const int64_t py = taps->y.low + (k >> 1);
    const bool inside = px >= 0 && px < shape.width && py >= 0 && py < shape.height;
    taps->pixel[k] = inside ? py * shape.width + px : -1;
    const U wx = (k & 1) ? taps->x.alpha : U(1) - taps->x.alpha;
    const U wy = (k >> 1) ? taps->y.alpha : U(1) - taps->y.alpha;
    taps->weight[k] = inside ? wx * wy : U(0);
  }
  return true;
}

// d sample / d x and d sample / d y of a point whose four neighbours (in
// Taps' order) hold v00, v10, v01, v11; times the axes' slopes, the point's
// gradient.
template <typename U>
TFKIT_HOST_DEVICE void SampleSlopes(const Taps<U>& taps, U v00, U v10, U v01, U v11, U* d_x, U* d_y) {
  const U ax = taps.x.alpha, ay = taps.y.alpha;
  *d_x = (U(1) - ay) * (v10 - v00) + ay * (v11 - v01);
  *d_y = (U(1) - ax) * (v01 - v00) + ax * (v11 - v10);
}

// A coordinate's gradient from the sum of its sample slopes: 0 where its
// axis is clamped (slope 0), also where the data make that sum NaN or
// infinite (the sample does not move with the coordinate there).
template <typename U>
TFKIT_HOST_DEVICE U CoordinateGrad(U slope_sum, const Axis<U>& axis) {
  return axis.slope == U(0) ? U(0) : slope_sum * axis.slope;
}

// The data gradient is a scatter-add; it is computed deterministically in
// units of (batch item, block of kChannelBlock channels), each owned by one
// thread, which adds the points' contributions in point order in Wide<U>.
constexpr int64_t kChannelBlock = 32;

inline int64_t DataGradUnits(const ResamplerShape& shape) {
  return shape.batch * ((shape.channels + kChannelBlock - 1) / kChannelBlock);
}

#define TFKIT_ISA_LOOPS "kernels/resampling/resampling_rows.inc"
#include "kernels/common/isa_builds.inc"

// Samples the (batch, point) rows [begin, end) into out [rows, channels].
template <typename T, typename U>
void ResampleRows(const T* data, const T* warp, const ResamplerShape& shape, int64_t begin, int64_t end, T* out) {
  TFKIT_ON_THIS_CPU(ResampleRows<T, U>(data, warp, shape, begin, end, out))
}

// The warp's gradient for the (batch, point) rows [begin, end).
template <typename T, typename U>
void WarpGradRows(const T* data, const T* warp, const T* grad, const ResamplerShape& shape, int64_t begin,
                  int64_t end, T* grad_warp) {
  TFKIT_ON_THIS_CPU(WarpGradRows<T, U>(data, warp, grad, shape, begin, end, grad_warp))
}

// The data gradient of units [begin, end) of DataGradUnits.
template <typename T, typename U>
void DataGradUnitRange(const T* warp, const T* grad, const ResamplerShape& shape, int64_t begin, int64_t end,
                       T* grad_data) {
  TFKIT_ON_THIS_CPU(DataGradUnitRange<T, U>(warp, grad, shape, begin, end, grad_data))
}

}  // namespace resampling
}  // namespace kernels
}  // namespace tfkit

#endif  // TFKIT_KERNELS_RESAMPLING_RESAMPLING_CPU_H_
