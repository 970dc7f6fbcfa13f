// The activation family: fused bias + activation, y = act(x + bias) with
// bias along the last axis, and gated activations, y = act(a) * b with
// x = [a, b] split along the last axis. CPU kernels.
//
// Framework-free: plain templates over raw pointers, on [rows, cols] row
// ranges [begin, end) so callers can shard. T is the storage type, U the
// computation type (Acc<T>), A the activation (activation_math.h).
#ifndef TFKIT_KERNELS_ACTIVATION_ACTIVATION_CPU_H_
#define TFKIT_KERNELS_ACTIVATION_ACTIVATION_CPU_H_

#include <cstdint>

#include "kernels/activation/activation_math.h"
#include "kernels/common/types.h"

namespace tfkit {
namespace kernels {
namespace activation {

// y may be the buffer of x.
template <Activation A, typename T>
void BiasActivationRows(const T* x, const T* bias, int64_t cols, int64_t begin, int64_t end, T* y) {
  using U = Acc<T>;
  for (int64_t r = begin; r < end; ++r) {
    const T* xr = x + r * cols;
    T* yr = y + r * cols;
    for (int64_t j = 0; j < cols; ++j) {
      yr[j] = static_cast<T>(Apply<U>(A, static_cast<U>(xr[j]) + static_cast<U>(bias[j])));
    }
  }
}

// dx = dy * act'(x + bias) (dx may be the buffer of dy), and adds the rows'
// dx, unrounded, to dbias_partial[0, cols) in the wide type W.
template <Activation A, typename T, typename W>
void BiasActivationGradRows(const T* dy, const T* x, const T* bias, int64_t cols, int64_t begin, int64_t end, T* dx,
                            W* dbias_partial) {
  using U = Acc<T>;
  for (int64_t r = begin; r < end; ++r) {
    const int64_t offset = r * cols;
    for (int64_t j = 0; j < cols; ++j) {
      const U z = static_cast<U>(x[offset + j]) + static_cast<U>(bias[j]);
      const U g = static_cast<U>(dy[offset + j]) * Derivative<U>(A, z);
      dx[offset + j] = static_cast<T>(g);
      dbias_partial[j] += static_cast<W>(g);
    }
  }
}

// x is [rows, 2 * half], y is [rows, half].
template <Activation A, typename T>
void GatedActivationRows(const T* x, int64_t half, int64_t begin, int64_t end, T* y) {
  using U = Acc<T>;
  for (int64_t r = begin; r < end; ++r) {
    const T* a = x + r * 2 * half;
    const T* b = a + half;
    T* yr = y + r * half;
    for (int64_t j = 0; j < half; ++j) {
      yr[j] = static_cast<T>(Apply<U>(A, static_cast<U>(a[j])) * static_cast<U>(b[j]));
    }
  }
}

// dx = [dy * b * act'(a), dy * act(a)], of x's shape.
template <Activation A, typename T>
void GatedActivationGradRows(const T* dy, const T* x, int64_t half, int64_t begin, int64_t end, T* dx) {
  using U = Acc<T>;
  for (int64_t r = begin; r < end; ++r) {
    const T* a = x + r * 2 * half;
    const T* b = a + half;
    const T* dyr = dy + r * half;
    T* da = dx + r * 2 * half;
    T* db = da + half;
    for (int64_t j = 0; j < half; ++j) {
      const U av = static_cast<U>(a[j]);
      const U g = static_cast<U>(dyr[j]);
      const U bv = static_cast<U>(b[j]);
      da[j] = static_cast<T>(g * bv * Derivative<U>(A, av));
      db[j] = static_cast<T>(g * Apply<U>(A, av));
    }
  }
}

}  // namespace activation
}  // namespace kernels
}  // namespace tfkit

#endif  // TFKIT_KERNELS_ACTIVATION_ACTIVATION_CPU_H_
