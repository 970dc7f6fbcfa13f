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
#include "kernels/common/types.h"

namespace tfkit {
namespace kernels {
namespace resampling {

enum class Boundary : int { kZeros = 0, kClamp = 1 };

struct ResamplerShape {
  int64_t batch = 0;
  int64_t height = 0;
  int64_t width = 0;
  int64_t channels = 0;
  int64_t points = 0;  // sample points per batch item
  Boundary boundary = Boundary::kZeros;
};

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

// The points' channel rows: each of the four neighbours' rows of `image`
// (one batch item's [height * width, channels]), `zeros` where outside.
template <typename T, typename U>
void NeighbourRows(const T* image, const Taps<U>& taps, int64_t channels, const T* zeros, const T* rows[4]) {
  for (int k = 0; k < 4; ++k) rows[k] = taps.pixel[k] < 0 ? zeros : image + taps.pixel[k] * channels;
}

// Samples the (batch, point) rows [begin, end) into out [rows, channels].
template <typename T, typename U>
void ResampleRows(const T* data, const T* warp, const ResamplerShape& shape, int64_t begin, int64_t end, T* out) {
  const int64_t channels = shape.channels;
  const std::vector<T> zeros(channels, static_cast<T>(0.0f));
  for (int64_t r = begin; r < end; ++r) {
    T* y = out + r * channels;
    Taps<U> taps;
    if (!TapsOf(static_cast<U>(warp[2 * r]), static_cast<U>(warp[2 * r + 1]), shape, &taps)) {
      std::fill(y, y + channels, static_cast<T>(0.0f));
      continue;
    }
    const T* rows[4];
    NeighbourRows(data + (r / shape.points) * shape.height * shape.width * channels, taps, channels, zeros.data(),
                  rows);
    const U* w = taps.weight;
    for (int64_t c = 0; c < channels; ++c) {
      y[c] = static_cast<T>(w[0] * static_cast<U>(rows[0][c]) + w[1] * static_cast<U>(rows[1][c]) +
                            w[2] * static_cast<U>(rows[2][c]) + w[3] * static_cast<U>(rows[3][c]));
    }
  }
}

// d output / d (x, y) of one point, summed over its channels against the
// output gradient g.
template <typename T, typename U>
void PointWarpGrad(const T* rows[4], const T* g, const Taps<U>& taps, int64_t channels, T* grad_xy) {
  const U ax = taps.x.alpha, ay = taps.y.alpha;
  const Wide<U> gx = BlockedSum<U>(channels, [&](int64_t c) {
    const U v00 = static_cast<U>(rows[0][c]), v10 = static_cast<U>(rows[1][c]);
    const U v01 = static_cast<U>(rows[2][c]), v11 = static_cast<U>(rows[3][c]);
    return static_cast<U>(g[c]) * ((U(1) - ay) * (v10 - v00) + ay * (v11 - v01));
  });
  const Wide<U> gy = BlockedSum<U>(channels, [&](int64_t c) {
    const U v00 = static_cast<U>(rows[0][c]), v10 = static_cast<U>(rows[1][c]);
    const U v01 = static_cast<U>(rows[2][c]), v11 = static_cast<U>(rows[3][c]);
    return static_cast<U>(g[c]) * ((U(1) - ax) * (v01 - v00) + ax * (v11 - v10));
  });
  grad_xy[0] = static_cast<T>(static_cast<U>(gx * taps.x.slope));
  grad_xy[1] = static_cast<T>(static_cast<U>(gy * taps.y.slope));
}

// The warp's gradient for the (batch, point) rows [begin, end).
template <typename T, typename U>
void WarpGradRows(const T* data, const T* warp, const T* grad, const ResamplerShape& shape, int64_t begin,
                  int64_t end, T* grad_warp) {
  const int64_t channels = shape.channels;
  const std::vector<T> zeros(channels, static_cast<T>(0.0f));
  for (int64_t r = begin; r < end; ++r) {
    Taps<U> taps;
    if (!TapsOf(static_cast<U>(warp[2 * r]), static_cast<U>(warp[2 * r + 1]), shape, &taps)) {
      grad_warp[2 * r] = grad_warp[2 * r + 1] = static_cast<T>(0.0f);
      continue;
    }
    // Neighbours outside the image hold zero, which their zero weight
    // already gives the output; the slopes see them as zero too.
    const T* rows[4];
    NeighbourRows(data + (r / shape.points) * shape.height * shape.width * channels, taps, channels, zeros.data(),
                  rows);
    PointWarpGrad(rows, grad + r * channels, taps, channels, grad_warp + 2 * r);
  }
}

// The data gradient is a scatter-add; it is computed deterministically in
// units of (batch item, block of kChannelBlock channels), each owned by one
// thread, which adds the points' contributions in point order in Wide<U>.
constexpr int64_t kChannelBlock = 32;

inline int64_t DataGradUnits(const ResamplerShape& shape) {
  return shape.batch * ((shape.channels + kChannelBlock - 1) / kChannelBlock);
}

// The data gradient of units [begin, end) of DataGradUnits.
template <typename T, typename U>
void DataGradUnitRange(const T* warp, const T* grad, const ResamplerShape& shape, int64_t begin, int64_t end,
                       T* grad_data) {
  const int64_t blocks = (shape.channels + kChannelBlock - 1) / kChannelBlock;
  const int64_t pixels = shape.height * shape.width;
  std::vector<Wide<U>> sums;
  for (int64_t unit = begin; unit < end; ++unit) {
    const int64_t b = unit / blocks;
    const int64_t first = (unit % blocks) * kChannelBlock;
    const int64_t width = std::min(kChannelBlock, shape.channels - first);
    sums.assign(pixels * width, Wide<U>(0));
    for (int64_t p = 0; p < shape.points; ++p) {
      const int64_t r = b * shape.points + p;
      Taps<U> taps;
      if (!TapsOf(static_cast<U>(warp[2 * r]), static_cast<U>(warp[2 * r + 1]), shape, &taps)) continue;
      const T* g = grad + r * shape.channels + first;
      for (int k = 0; k < 4; ++k) {
        if (taps.pixel[k] < 0) continue;
        Wide<U>* acc = sums.data() + taps.pixel[k] * width;
        const Wide<U> w = taps.weight[k];
        for (int64_t c = 0; c < width; ++c) acc[c] += w * static_cast<Wide<U>>(static_cast<U>(g[c]));
      }
    }
    T* out = grad_data + b * pixels * shape.channels + first;
    for (int64_t q = 0; q < pixels; ++q) {
      for (int64_t c = 0; c < width; ++c) out[q * shape.channels + c] = static_cast<T>(static_cast<U>(sums[q * width + c]));
    }
  }
}

}  // namespace resampling
}  // namespace kernels
}  // namespace tfkit

#endif  // TFKIT_KERNELS_RESAMPLING_RESAMPLING_CPU_H_
