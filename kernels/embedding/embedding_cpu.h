// The embedding family: embedding bags. Bag b holds the ids
// ids[splits[b] .. splits[b + 1]) and, optionally, one weight per id:
//   y[b] = scale_b * sum_i w_i * params[ids[i]]
// with scale_b = 1 ("sum"), 1 / length ("mean") or 1 / sqrt(sum_i w_i^2)
// ("sqrtn"); an empty bag (or a zero normaliser) gives zeros. The gradient
// for params is one row per id, w_i * scale_b * dy[b]; for the weights it is
// scale_b * dy[b] . params[ids[i]], less, for "sqrtn", the normaliser's
// share (dy[b] . y[b]) * w_i * scale_b^2. CPU kernels.
//
// Framework-free: plain templates over raw pointers. params is [vocab, dim],
// ids and weights [n], splits [bags + 1] (int64), y and dy [bags, dim]. The
// kernels trust the ids and splits: check them first (FirstBadId,
// FirstBadSplit).
#ifndef TFKIT_KERNELS_EMBEDDING_EMBEDDING_CPU_H_
#define TFKIT_KERNELS_EMBEDDING_EMBEDDING_CPU_H_

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <type_traits>
#include <vector>

#include "kernels/common/accumulate.h"
#include "kernels/common/types.h"
#include "kernels/embedding/embedding_rules.h"

#ifdef __CUDACC__
#define TFKIT_EMBEDDING_HOST_DEVICE __host__ __device__
#else
#define TFKIT_EMBEDDING_HOST_DEVICE
#endif

namespace tfkit {
namespace kernels {
namespace embedding {

// The type a bag's sum is finished in: float for the 16-bit types, double for
// float and double. The rows are added in Acc<T> lanes, kSumBlock ids at a
// time, and the blocks in BagSum<T> (accumulate.h's rule), so a bag of any
// length keeps its accuracy and a short one runs at float speed.
template <typename T>
using BagSum = std::conditional_t<(sizeof(T) <= 2), float, double>;

template <typename T>
inline BagSum<T> Widen(T v) {
  return static_cast<BagSum<T>>(static_cast<Acc<T>>(v));
}

// The position of the first id outside [0, vocab), or -1.
template <typename Index>
int64_t FirstBadId(const Index* ids, int64_t n, int64_t vocab) {
  for (int64_t i = 0; i < n; ++i) {
    if (ids[i] < 0 || static_cast<int64_t>(ids[i]) >= vocab) return i;
  }
  return -1;
}

// The first position at which splits [bags + 1] stops being a partition of
// [0, n) (splits[0] = 0, non-decreasing, splits[bags] = n), or -1.
inline int64_t FirstBadSplit(const int64_t* splits, int64_t bags, int64_t n) {
  if (splits[0] != 0) return 0;
  for (int64_t b = 0; b < bags; ++b) {
    if (splits[b + 1] < splits[b] || splits[b + 1] > n) return b + 1;
  }
  return splits[bags] == n ? -1 : bags;
}

// The combiner's scale for a bag of `length` ids whose weights' squares sum
// to sum_sq (length for an unweighted bag); 0 where it would divide by 0,
// NaN where a weight is NaN.
template <typename W>
TFKIT_EMBEDDING_HOST_DEVICE inline W BagScale(Combiner combiner, int64_t length, W sum_sq) {
  switch (combiner) {
    case Combiner::kMean:
      return length > 0 ? W(1) / static_cast<W>(length) : W(0);
    case Combiner::kSqrtn:
      return sum_sq == W(0) ? W(0) : W(1) / sqrt(sum_sq);
    default:
      return W(1);
  }
}

// d loss / d w_i of a bag: scale dot_i, dot_i = dy[b] . params[ids[i]], and
// for sqrtn, whose scale depends on the weights, - normaliser w_i with
// normaliser = (sum_j w_j dot_j) scale^3. Elsewhere a weight's NaN does not
// reach its own gradient.
template <typename W>
TFKIT_EMBEDDING_HOST_DEVICE inline W WeightGrad(Combiner combiner, W scale, W dot, W normaliser, W weight) {
  return combiner == Combiner::kSqrtn ? scale * dot - normaliser * weight : scale * dot;
}

template <typename T>
inline BagSum<T> Weight(const T* weights, const BagShape& shape, int64_t i) {
  return shape.weighted ? Widen(weights[i]) : BagSum<T>(1);
}

template <typename T>
BagSum<T> SumOfSquaredWeights(const T* weights, const BagShape& shape, int64_t begin, int64_t end) {
  if (!shape.weighted) return static_cast<BagSum<T>>(end - begin);
  BagSum<T> total = 0;
  for (int64_t i = begin; i < end; ++i) total += Widen(weights[i]) * Widen(weights[i]);
  return total;
}

// How many ids ahead the rows are prefetched: the table is far larger than
// the caches and its rows are read in random order.
constexpr int64_t kPrefetchIds = 16;

// Asks for the first four cache lines of a params row (the hardware
// prefetcher follows a longer row).
template <typename T>
inline void PrefetchRow(const T* row, int64_t dim) {
  const char* bytes = reinterpret_cast<const char*>(row);
  const int64_t size = dim * static_cast<int64_t>(sizeof(T));
  __builtin_prefetch(bytes);
  if (size > 64) __builtin_prefetch(bytes + 64);
  if (size > 128) __builtin_prefetch(bytes + 128);
  if (size > 192) __builtin_prefetch(bytes + 192);
}

// Adds ids [lo, hi) of a bag into lanes (dim U), prefetching the rows of the
// ids up to last_id ahead.
template <typename T, typename Index>
void AddRows(const Index* ids, const T* params, const T* weights, const BagShape& shape, int64_t lo, int64_t hi,
             int64_t last_id, Acc<T>* lanes) {
  using U = Acc<T>;
  const int64_t dim = shape.dim;
  for (int64_t i = lo; i < hi; ++i) {
    if (i + kPrefetchIds < last_id) PrefetchRow(params + static_cast<int64_t>(ids[i + kPrefetchIds]) * dim, dim);
    const T* row = params + static_cast<int64_t>(ids[i]) * dim;
    if (shape.weighted) {
      const U w = static_cast<U>(weights[i]);
      for (int64_t j = 0; j < dim; ++j) lanes[j] += w * static_cast<U>(row[j]);
    } else {
      for (int64_t j = 0; j < dim; ++j) lanes[j] += static_cast<U>(row[j]);
    }
  }
}

// y rows [begin, end); `sum` is a workspace of dim elements.
template <typename T, typename Index>
void EmbeddingBagRows(const Index* ids, const int64_t* splits, const T* params, const T* weights,
                      const BagShape& shape, int64_t begin, int64_t end, BagSum<T>* sum, T* y) {
  using W = BagSum<T>;
  const int64_t dim = shape.dim;
  const int64_t last_id = splits[end];
  for (int64_t i = splits[begin]; i < std::min(last_id, splits[begin] + kPrefetchIds); ++i) {
    PrefetchRow(params + static_cast<int64_t>(ids[i]) * dim, dim);
  }
  std::vector<Acc<T>> lanes(dim);
  for (int64_t b = begin; b < end; ++b) {
    const int64_t lo = splits[b];
    const int64_t hi = splits[b + 1];
    for (int64_t j = 0; j < dim; ++j) sum[j] = 0;
    for (int64_t block = lo; block < hi; block += kSumBlock) {
      std::fill(lanes.begin(), lanes.end(), Acc<T>(0));
      AddRows(ids, params, weights, shape, block, std::min(hi, block + kSumBlock), last_id, lanes.data());
      for (int64_t j = 0; j < dim; ++j) sum[j] += static_cast<W>(lanes[j]);
    }
    const W scale = BagScale(shape.combiner, hi - lo, SumOfSquaredWeights(weights, shape, lo, hi));
    T* out = y + b * dim;
    for (int64_t j = 0; j < dim; ++j) out[j] = static_cast<T>(static_cast<Acc<T>>(sum[j] * scale));
  }
}

template <typename T>
BagSum<T> Dot(const T* a, const T* b, int64_t dim) {
  BagSum<T> total = 0;
  for (int64_t j = 0; j < dim; ++j) total += Widen(a[j]) * Widen(b[j]);
  return total;
}

// The gradients of the bags [begin, end): d_values (one row per id, [n, dim])
// and, when weighted, d_weights [n]; `dots` is a workspace of one W per id
// of the longest bag.
template <typename T, typename Index>
void EmbeddingBagGradRows(const T* dy, const Index* ids, const int64_t* splits, const T* params, const T* weights,
                          const BagShape& shape, int64_t begin, int64_t end, std::vector<BagSum<T>>* dots,
                          T* d_values, T* d_weights) {
  using W = BagSum<T>;
  const int64_t dim = shape.dim;
  const int64_t last_id = splits[end];
  for (int64_t b = begin; b < end; ++b) {
    const int64_t lo = splits[b];
    const int64_t hi = splits[b + 1];
    const T* dy_row = dy + b * dim;
    const W scale = BagScale(shape.combiner, hi - lo, SumOfSquaredWeights(weights, shape, lo, hi));
    for (int64_t i = lo; i < hi; ++i) {
      const W factor = Weight(weights, shape, i) * scale;
      T* out = d_values + i * dim;
      for (int64_t j = 0; j < dim; ++j) out[j] = static_cast<T>(static_cast<Acc<T>>(factor * Widen(dy_row[j])));
    }
    if (!shape.weighted) continue;
    dots->resize(hi - lo);
    W dy_dot_sum = 0;  // dy[b] . sum_i w_i params[ids[i]]
    for (int64_t i = lo; i < hi; ++i) {
      if (i + kPrefetchIds < last_id) PrefetchRow(params + static_cast<int64_t>(ids[i + kPrefetchIds]) * dim, dim);
      const W dot = Dot(dy_row, params + static_cast<int64_t>(ids[i]) * dim, dim);
      (*dots)[i - lo] = dot;
      dy_dot_sum += Widen(weights[i]) * dot;
    }
    const W normaliser = dy_dot_sum * scale * scale * scale;
    for (int64_t i = lo; i < hi; ++i) {
      const W grad = WeightGrad(shape.combiner, scale, (*dots)[i - lo], normaliser, Widen(weights[i]));
      d_weights[i] = static_cast<T>(static_cast<Acc<T>>(grad));
    }
  }
}

}  // namespace embedding
}  // namespace kernels
}  // namespace tfkit

#undef TFKIT_EMBEDDING_HOST_DEVICE

#endif  // TFKIT_KERNELS_EMBEDDING_EMBEDDING_CPU_H_
