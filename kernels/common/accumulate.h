// Accurate, thread-count-independent accumulation shared by every tfkit
// kernel family (framework-free; the types also compile under nvcc).
//
// - Sums along a row: BlockedSum adds fixed-size blocks in vector lanes of
//   the accumulation type U and combines the block sums pairwise in Wide<U>,
//   so the error does not grow with the row length.
// - Sums across rows (parameter gradients): RowBlocks splits the rows into
//   blocks that depend on the row count alone; each block sums in Wide<U> and
//   the blocks are added in a fixed order, so the result is the same for any
//   number of threads.
#ifndef TFKIT_KERNELS_COMMON_ACCUMULATE_H_
#define TFKIT_KERNELS_COMMON_ACCUMULATE_H_

#include <algorithm>
#include <cstdint>

#include "kernels/common/types.h"

namespace tfkit {
namespace kernels {

// The type partial sums are finished in: double (also for double U, where
// the blocking keeps the error from growing with the count).
template <typename U>
struct WideOf {
  using type = double;
};
template <typename U>
using Wide = typename WideOf<U>::type;

constexpr int64_t kSumLanes = 16;
constexpr int64_t kSumBlock = 1024;

// Adds values pairwise, in O(log count) memory: the error grows with the
// logarithm of the count, not the count.
template <typename W>
class PairwiseTotal {
 public:
  void Add(W value) {
    int level = 0;
    for (uint64_t c = count_++; c & 1; c >>= 1) value += levels_[level++];
    levels_[level] = value;
  }
  W Total() const {
    W total = 0;
    int level = 0;
    for (uint64_t c = count_; c != 0; c >>= 1, ++level) {
      if (c & 1) total += levels_[level];
    }
    return total;
  }

 private:
  W levels_[64];
  uint64_t count_ = 0;
};

// f(0) + ... + f(n-1), f returning U: each block of kSumBlock terms is summed
// in kSumLanes independent U accumulators (so the compiler vectorizes without
// reassociating), and the block sums are combined pairwise in Wide<U>.
template <typename U, typename F>
inline Wide<U> BlockedSum(int64_t n, F f) {
  PairwiseTotal<Wide<U>> total;
  for (int64_t start = 0; start < n; start += kSumBlock) {
    const int64_t len = std::min(kSumBlock, n - start);
    U lanes[kSumLanes] = {};
    int64_t i = 0;
    for (; i + kSumLanes <= len; i += kSumLanes) {
      for (int64_t l = 0; l < kSumLanes; ++l) lanes[l] += f(start + i + l);
    }
    U block = 0;
    for (; i < len; ++i) block += f(start + i);
    for (int64_t l = 0; l < kSumLanes; ++l) block += lanes[l];
    total.Add(static_cast<Wide<U>>(block));
  }
  return total.Total();
}

// A partition of `rows` rows into `count` blocks of `rows_per_block` rows
// (the last may be shorter), fixed by the row count alone.
struct RowBlocks {
  int64_t count = 0;
  int64_t rows_per_block = 0;

  int64_t Begin(int64_t block) const { return block * rows_per_block; }
  int64_t End(int64_t block, int64_t rows) const {
    return std::min(rows, Begin(block) + rows_per_block);
  }
};

constexpr int64_t kMinRowsPerBlock = 64;
constexpr int64_t kMaxRowBlocks = 256;

inline RowBlocks FixedRowBlocks(int64_t rows) {
  RowBlocks blocks;
  if (rows <= 0) return blocks;
  const int64_t wanted = (rows + kMinRowsPerBlock - 1) / kMinRowsPerBlock;
  blocks.count = std::min(wanted, kMaxRowBlocks);
  blocks.rows_per_block = (rows + blocks.count - 1) / blocks.count;
  blocks.count = (rows + blocks.rows_per_block - 1) / blocks.rows_per_block;
  return blocks;
}

// out[j] = sum over p of partials[p * cols + j] in Wide precision, in block
// order, for columns [begin, end).
template <typename T, typename W>
void SumPartials(const W* partials, int64_t num_partials, int64_t cols,
                 int64_t begin, int64_t end, T* out) {
  for (int64_t j = begin; j < end; ++j) {
    W total = 0;
    for (int64_t p = 0; p < num_partials; ++p) total += partials[p * cols + j];
    out[j] = static_cast<T>(static_cast<Acc<T>>(total));
  }
}

// The Wide elements of workspace SumColumnsInRowBlocks needs for `sums`
// column sums over [rows, cols].
inline int64_t ColumnSumsWorkspaceSize(int64_t rows, int64_t cols, int sums) {
  return sums * std::max<int64_t>(FixedRowBlocks(rows).count, 1) * cols;
}

// `sums` column sums (parameter gradients) over `rows` rows, the same for
// any number of threads: add_rows(begin, end, partial, stride) adds rows
// [begin, end) into one row block's zeroed partial rows (sum s at
// partial + s * stride); the blocks run through
// parallel_for(count, cost_per_item, fn(first, last)), then each column's
// partials are added in block order into outs[s].
template <typename W, typename T, typename ParallelFor, typename AddRows>
void SumColumnsInRowBlocks(int64_t rows, int64_t cols, int sums, int64_t cost_per_row, W* workspace,
                           ParallelFor&& parallel_for, AddRows&& add_rows, T* const* outs) {
  const RowBlocks blocks = FixedRowBlocks(rows);
  const int64_t stride = blocks.count * cols;
  std::fill_n(workspace, sums * stride, W(0));
  parallel_for(blocks.count, blocks.rows_per_block * cost_per_row, [&](int64_t first, int64_t last) {
    for (int64_t b = first; b < last; ++b) add_rows(blocks.Begin(b), blocks.End(b, rows), workspace + b * cols, stride);
  });
  parallel_for(cols, sums * (blocks.count + 1), [&](int64_t begin, int64_t end) {
    for (int s = 0; s < sums; ++s) SumPartials(workspace + s * stride, blocks.count, cols, begin, end, outs[s]);
  });
}

}  // namespace kernels
}  // namespace tfkit

#endif  // TFKIT_KERNELS_COMMON_ACCUMULATE_H_
