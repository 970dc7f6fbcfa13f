// The interaction family: DLRM's dot interaction. For each batch item b,
// features x[b] [F, D] give the dot products x[b, i] . x[b, j] of the pairs
// j < i (j <= i with the self-interactions) in the row-major order of the
// lower triangle, (1,0), (2,0), (2,1), (3,0), ... (PairIndex). The gradient
// is dx[b, i] = sum_j S[i, j] x[b, j], S the symmetric matrix of the output
// gradient (its diagonal, with the self-interactions, twice theirs). CPU
// kernels over ranges of batch items, so that the caller can shard.
//
// Framework-free: plain templates over raw pointers. T is the storage type,
// U = Acc<T> the computation type. The products are MatMulAdd's register
// tiles (kernels/common/matmul_tiles.inc): each dot product sums
// kDepthBlock terms at a time in U, in the order of the dimension, and the
// block sums in Wide<U>, so a result depends on neither the thread count
// nor how long the dimension is.
#ifndef TFKIT_KERNELS_INTERACTION_INTERACTION_CPU_H_
#define TFKIT_KERNELS_INTERACTION_INTERACTION_CPU_H_

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <type_traits>
#include <vector>

#include "kernels/common/accumulate.h"
#include "kernels/common/cpu_isa.h"
#include "kernels/common/types.h"
#include "kernels/interaction/interaction_rules.h"

namespace tfkit {
namespace kernels {
namespace interaction {

// The terms of a dot product summed in U before their sum moves to Wide<U>.
constexpr int64_t kDepthBlock = 256;
// The columns of the feature gradient computed at a time.
constexpr int64_t kGradColumns = 256;

#define TFKIT_ISA_LOOPS "kernels/interaction/interaction_rows.inc"
#include "kernels/common/isa_builds.inc"

// The dot products of batch items [begin, end) into out [batch, pairs].
template <typename T, typename U>
void InteractRows(const T* features, const InteractionShape& shape, int64_t begin, int64_t end, T* out) {
  TFKIT_ON_THIS_CPU(InteractRows<T, U>(features, shape, begin, end, out))
}

// The gradient for the features of batch items [begin, end), given grad
// [batch, pairs], into grad_features [batch, features, dim].
template <typename T, typename U>
void InteractGradRows(const T* features, const T* grad, const InteractionShape& shape, int64_t begin, int64_t end,
                      T* grad_features) {
  TFKIT_ON_THIS_CPU(InteractGradRows<T, U>(features, grad, shape, begin, end, grad_features))
}

// Rough operation counts of one batch item (for the shard sizes).
inline int64_t ItemCost(const InteractionShape& shape) {
  const int64_t padded = (shape.features + 31) / 32 * 32;
  const double cost = static_cast<double>(shape.features) * static_cast<double>(padded + 2) *
                      static_cast<double>(std::max<int64_t>(shape.dim, 1));
  return cost < 9e18 ? static_cast<int64_t>(cost) : int64_t{9000000000000000000};
}

}  // namespace interaction
}  // namespace kernels
}  // namespace tfkit

#endif  // TFKIT_KERNELS_INTERACTION_INTERACTION_CPU_H_
