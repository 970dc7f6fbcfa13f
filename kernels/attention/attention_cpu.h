// Dot-product attention, tiled with an online softmax (FlashAttention-style):
// CPU kernels.
//
// query [B, T, N, H], key and value [B, S, K, H] (query head n reads key and
// value head n / (N / K)), an optional bias (T) and mask (bool) of rank 4
// broadcast to the logits [B, N, T, S], an optional causal mask (key s is
// seen by query t when s <= t), and dropout on the probabilities. The
// logits and the softmax are computed in U = Acc<T>; a masked logit is
// kMaskFill (attention_rules.h), as in Keras.
//
// The [T, S] logits of a (batch, head) are never stored: the forward walks
// a block of kBlockQ queries over blocks of kBlockK keys keeping each row's
// running maximum, sum and weighted values, and saves each row's
// log-sum-exp (lse). The backward recomputes the probabilities tile by tile
// from it, in two passes that need no atomics: the key and value gradients
// per block of keys, the query (and bias) gradients per block of queries.
// Tiles where every element is masked (a padding mask, the causal mask) are
// skipped, which is exact wherever a row has an unmasked logit above the
// fill; a row that has none (every key masked) is computed densely, as
// Keras computes it: the mean of the values.
//
// Framework-free: plain templates over raw pointers; each entry point runs
// a range [begin, end) of independent work items so callers can shard them
// over threads, and the result does not depend on how they are split.
#ifndef TFKIT_KERNELS_ATTENTION_ATTENTION_CPU_H_
#define TFKIT_KERNELS_ATTENTION_ATTENTION_CPU_H_

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <type_traits>
#include <vector>

#include "kernels/attention/attention_args.h"
#include "kernels/attention/attention_rules.h"
#include "kernels/common/cpu_isa.h"
#include "kernels/common/fast_math.h"
#include "kernels/common/types.h"

namespace tfkit {
namespace kernels {
namespace attention {

// Queries and keys per tile: the kBlockQ x kBlockK scores and the blocks
// of queries, keys and values (head_dim up to 256) stay in L2.
constexpr int64_t kBlockQ = 64;
constexpr int64_t kBlockK = 64;

// The forward's work items: one per (batch, head, block of queries).
inline int64_t ForwardItems(const AttentionShape& shape) {
  return shape.batch * shape.heads * Blocks(shape.target, kBlockQ);
}
// The backward's per-row statistics: one item per (batch, head, query).
inline int64_t RowItems(const AttentionShape& shape) { return shape.batch * shape.heads * shape.target; }
// The key and value gradients: one item per (batch, kv head, block of keys).
inline int64_t KeyValueItems(const AttentionShape& shape) {
  return shape.batch * shape.kv_heads * Blocks(shape.source, kBlockK);
}

// Work-item costs (for the shard size): multiply-adds per item.
inline int64_t ForwardItemCost(const AttentionShape& shape) {
  return std::max<int64_t>(1, 4 * kBlockQ * std::max<int64_t>(shape.source, 1) * std::max<int64_t>(shape.head_dim, 1));
}

TFKIT_VECTORIZE_BEGIN
#define TFKIT_ISA_LOOPS "kernels/attention/attention_tiles.inc"
#include "kernels/common/isa_builds.inc"
TFKIT_VECTORIZE_END

// Forward items [begin, end): out [B, T, N, H] and lse [B, N, T].
template <typename T, typename U>
void AttentionForward(const AttentionInputs<T>& in, int64_t begin, int64_t end, T* out, U* lse) {
  TFKIT_ON_THIS_CPU_COMPUTING(U, AttentionForward<T, U>(in, begin, end, out, lse))
}

// Row items [begin, end): each row's delta = dout . out and, for a row
// whose every key is masked, the inverse of its probabilities' sum.
template <typename T, typename U>
void AttentionRowStats(const AttentionInputs<T>& in, const AttentionGrads<T>& g, int64_t begin, int64_t end) {
  TFKIT_ON_THIS_CPU_COMPUTING(U, AttentionRowStats<T, U>(in, g, begin, end))
}

// Key and value gradient items [begin, end) (after AttentionRowStats).
template <typename T, typename U>
void AttentionKeyValueGrad(const AttentionInputs<T>& in, const AttentionGrads<T>& g, int64_t begin, int64_t end) {
  TFKIT_ON_THIS_CPU_COMPUTING(U, AttentionKeyValueGrad<T, U>(in, g, begin, end))
}

// Query (and bias) gradient items [begin, end) of QueryItems::Of (after
// AttentionRowStats).
template <typename T, typename U>
void AttentionQueryGrad(const AttentionInputs<T>& in, const AttentionGrads<T>& g, int64_t begin, int64_t end) {
  TFKIT_ON_THIS_CPU_COMPUTING(U, AttentionQueryGrad<T, U>(in, g, begin, end))
}

}  // namespace attention
}  // namespace kernels
}  // namespace tfkit

#endif  // TFKIT_KERNELS_ATTENTION_ATTENTION_CPU_H_
