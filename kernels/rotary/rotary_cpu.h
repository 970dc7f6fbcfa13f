// The rotary family: rotary position embedding (RoPE). Each pair of
// features (x_a, x_b) at sequence position s is rotated by the angle
// positions[s] * inv_freq[j]:
//   y_a = x_a cos - x_b sin,   y_b = x_b cos + x_a sin,
// with the pairs (j, j + dim/2) ("half" layout) or (2j, 2j + 1)
// ("interleaved"). The gradient is the inverse rotation (sign = -1). CPU
// kernels.
//
// Framework-free: plain templates over raw pointers. x is viewed as
// [batch, seq, heads, dim]; positions are [1 or batch, seq]. T is the
// storage type, U the angle and computation type (float, or double for
// double).
#ifndef TFKIT_KERNELS_ROTARY_ROTARY_CPU_H_
#define TFKIT_KERNELS_ROTARY_ROTARY_CPU_H_

#include <cmath>
#include <cstdint>

#include "kernels/common/types.h"
#include "kernels/rotary/rotary_rules.h"

namespace tfkit {
namespace kernels {
namespace rotary {

// The angles' cosines and sines for table rows [begin, end) of the
// [position rows, dim / 2] tables, each angle rounded to U once as the
// product positions[r] * inv_freq[j].
template <typename U>
void RotaryTableRows(const U* positions, const U* inv_freq, int64_t half, int64_t begin, int64_t end, U* cos_table,
                     U* sin_table) {
  for (int64_t r = begin; r < end; ++r) {
    for (int64_t j = 0; j < half; ++j) {
      const U angle = positions[r] * inv_freq[j];
      cos_table[r * half + j] = std::cos(angle);
      sin_table[r * half + j] = std::sin(angle);
    }
  }
}

// Rotates the (batch, seq) rows [begin, end) by sign * angle; y may be the
// buffer of x (each pair is read before it is written).
template <typename T, typename U>
void RotaryRows(const T* x, const U* cos_table, const U* sin_table, const RotaryShape& shape, U sign, int64_t begin,
                int64_t end, T* y) {
  const int64_t half = shape.dim / 2;
  const int64_t a_step = shape.interleaved ? 2 : 1;    // where pair j's first element is: j * a_step
  const int64_t b_offset = shape.interleaved ? 1 : half;  // and its second: + b_offset
  for (int64_t r = begin; r < end; ++r) {
    const int64_t table_row = shape.per_batch_positions ? r : r % shape.seq;
    const U* c = cos_table + table_row * half;
    const U* s = sin_table + table_row * half;
    for (int64_t m = 0; m < shape.heads; ++m) {
      const int64_t offset = (r * shape.heads + m) * shape.dim;
      const T* xr = x + offset;
      T* yr = y + offset;
      for (int64_t j = 0; j < half; ++j) {
        const U a = static_cast<U>(xr[j * a_step]);
        const U b = static_cast<U>(xr[j * a_step + b_offset]);
        const U sn = sign * s[j];
        yr[j * a_step] = static_cast<T>(a * c[j] - b * sn);
        yr[j * a_step + b_offset] = static_cast<T>(b * c[j] + a * sn);
      }
    }
  }
}

}  // namespace rotary
}  // namespace kernels
}  // namespace tfkit

#endif  // TFKIT_KERNELS_ROTARY_ROTARY_CPU_H_
