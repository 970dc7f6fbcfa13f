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
// from it, in passes that need no atomics (AttentionBackward): the key and
// value gradients per chunk of keys, then the query gradient, from parts
// the key pass summed or, with a bias, with the bias gradient per block of
// queries.
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
constexpr int64_t kBlockK = 128;
// Queries per forward work item: each block of keys and values is loaded
// (and converted, and transposed) once for this many queries.
constexpr int64_t kChunkQ = 4 * kBlockQ;

// The forward's work items: one per (batch, head, chunk of queries).
inline int64_t ForwardItems(const AttentionShape& shape) {
  return shape.batch * shape.heads * Blocks(shape.target, kChunkQ);
}
// The backward's per-row statistics: one item per (batch, head, query).
inline int64_t RowItems(const AttentionShape& shape) { return shape.batch * shape.heads * shape.target; }
// The key and value gradients' work items: one per (batch, kv head, chunk
// of keys), the keys split into at most kKeyChunks chunks of whole blocks.
// Without a bias an item also sums its keys' share of the query gradient
// into a part of its own (kKeyChunks times the query's size in U, linear in
// T), and the parts are added in a last pass, in order: the same sums for
// any number of threads, without atomics.
constexpr int64_t kKeyChunks = 4;
inline int64_t KeyChunks(const AttentionShape& shape) {
  return std::min<int64_t>(kKeyChunks, Blocks(shape.source, kBlockK));
}
inline int64_t KeyValueItems(const AttentionShape& shape) {
  return shape.batch * shape.kv_heads * KeyChunks(shape);
}

// Work-item costs (for the shard size): multiply-adds per item, from the
// tile products each does (two per tile in the forward, four in the key
// and value gradients, three in the query gradient).
inline int64_t TileCost(int64_t rows, int64_t cols, const AttentionShape& shape) {
  return std::max<int64_t>(1, rows * std::max<int64_t>(cols, 1) * std::max<int64_t>(shape.head_dim, 1));
}
inline int64_t ForwardItemCost(const AttentionShape& shape) { return 2 * TileCost(kChunkQ, shape.source, shape); }
inline int64_t KeyValueItemCost(const AttentionShape& shape) {
  const int64_t keys = Blocks(shape.source, std::max<int64_t>(KeyChunks(shape), 1));
  return 5 * shape.group() * TileCost(keys, shape.target, shape);
}
inline int64_t QueryItemCost(const AttentionShape& shape, const QueryItems& items) {
  const int64_t blocks = shape.batch * shape.heads * Blocks(shape.target, kBlockQ);
  return 3 * TileCost(kBlockQ, shape.source, shape) * std::max<int64_t>(1, blocks / std::max<int64_t>(items.count(), 1));
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

// Query gradient rows [begin, end): the sums of the parts (after
// AttentionKeyValueGrad).
template <typename T, typename U>
void AttentionQueryGradSum(const AttentionInputs<T>& in, const AttentionGrads<T>& g, int64_t begin, int64_t end) {
  TFKIT_ON_THIS_CPU_COMPUTING(U, AttentionQueryGradSum<T, U>(in, g, begin, end))
}

// The backward's workspace in U: row_delta, row_inverse, then dbias_sum
// with a bias, else dquery_parts.
inline int64_t BackwardWorkspaceSize(const AttentionShape& shape, bool has_bias) {
  const int64_t rows = RowItems(shape);
  if (has_bias) return 2 * rows + shape.bias[0] * shape.bias[1] * shape.bias[2] * shape.bias[3];
  return 2 * rows + KeyChunks(shape) * rows * generic::MatMulPadded(shape.head_dim);
}

// The backward, its passes each run as parallel_for(items, cost per item,
// fn(begin, end)) over items that write disjoint memory: the rows'
// statistics, the key and value gradients per chunk of keys, then the
// query (and bias) gradients. g's outputs are set; its workspace is
// `workspace` (BackwardWorkspaceSize values).
template <typename T, typename U, typename ParallelFor>
void AttentionBackward(const AttentionInputs<T>& in, AttentionGrads<T> g, U* workspace, ParallelFor&& parallel_for) {
  const AttentionShape& sh = in.shape;
  const int64_t rows = RowItems(sh);
  g.row_delta = workspace;
  g.row_inverse = workspace + rows;
  (in.bias != nullptr ? g.dbias_sum : g.dquery_parts) = workspace + 2 * rows;
  const int64_t row_cost = 4 * std::max<int64_t>(sh.head_dim, 1);
  parallel_for(rows, row_cost, [&](int64_t begin, int64_t end) { AttentionRowStats<T, U>(in, g, begin, end); });
  parallel_for(KeyValueItems(sh), KeyValueItemCost(sh),
               [&](int64_t begin, int64_t end) { AttentionKeyValueGrad<T, U>(in, g, begin, end); });
  if (in.bias == nullptr) {
    parallel_for(rows, KeyChunks(sh) * row_cost,
                 [&](int64_t begin, int64_t end) { AttentionQueryGradSum<T, U>(in, g, begin, end); });
    return;
  }
  const QueryItems items = QueryItems::Of(sh, true, kBlockQ);
  parallel_for(items.count(), QueryItemCost(sh, items),
               [&](int64_t begin, int64_t end) { AttentionQueryGrad<T, U>(in, g, begin, end); });
}

}  // namespace attention
}  // namespace kernels
}  // namespace tfkit

#endif  // TFKIT_KERNELS_ATTENTION_ATTENTION_CPU_H_
