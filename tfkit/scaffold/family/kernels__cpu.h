// The ${family} family: y = x / (1 + |x| / limit), element-wise, a smooth
// clip to (-limit, limit), and its gradient, from y alone:
// dx = dy * (1 - |y| / limit)^2. CPU kernels.
//
// Framework-free: plain templates over raw pointers. Each function processes
// the elements [begin, end) so callers can shard. T is the storage type, U
// the computation type (Acc<T>: float, or double for double).
#ifndef TFKIT_KERNELS_${FAMILY}_${FAMILY}_CPU_H_
#define TFKIT_KERNELS_${FAMILY}_${FAMILY}_CPU_H_

#include <cmath>
#include <cstdint>

#include "kernels/common/types.h"

namespace tfkit {
namespace kernels {
namespace ${family} {

// y may be the buffer of x: each element is read before it is written.
template <typename T>
void ${Camel}Forward(const T* x, int64_t begin, int64_t end, Acc<T> limit, T* y) {
  using U = Acc<T>;
  for (int64_t i = begin; i < end; ++i) {
    const U v = static_cast<U>(x[i]);
    y[i] = static_cast<T>(v / (U(1) + std::abs(v) / limit));
  }
}

template <typename T>
void ${Camel}Backward(const T* dy, const T* y, int64_t begin, int64_t end, Acc<T> limit, T* dx) {
  using U = Acc<T>;
  for (int64_t i = begin; i < end; ++i) {
    const U t = U(1) - std::abs(static_cast<U>(y[i])) / limit;
    dx[i] = static_cast<T>(static_cast<U>(dy[i]) * t * t);
  }
}

}  // namespace ${family}
}  // namespace kernels
}  // namespace tfkit

#endif  // TFKIT_KERNELS_${FAMILY}_${FAMILY}_CPU_H_
