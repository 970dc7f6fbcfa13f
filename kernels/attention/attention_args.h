// The arguments of one attention call, shared by the CPU kernels
// (attention_cpu.h) and the CUDA launchers (attention_gpu.h); framework-free.
#ifndef TFKIT_KERNELS_ATTENTION_ATTENTION_ARGS_H_
#define TFKIT_KERNELS_ATTENTION_ATTENTION_ARGS_H_

#include <cstdint>

#include "kernels/attention/attention_rules.h"
#include "kernels/common/types.h"

namespace tfkit {
namespace kernels {
namespace attention {

TFKIT_HOST_DEVICE int64_t Blocks(int64_t n, int64_t block) { return (n + block - 1) / block; }

// The strides of a rank-4 bias or mask broadcast to [B, N, T, S]: 0 along
// a dimension of size 1.
struct Broadcast {
  int64_t b = 0, n = 0, t = 0, s = 0;

  TFKIT_HOST_DEVICE static Broadcast Of(const int64_t sizes[4]) {
    Broadcast strides;
    strides.s = sizes[3] == 1 ? 0 : 1;
    strides.t = sizes[2] == 1 ? 0 : sizes[3];
    strides.n = sizes[1] == 1 ? 0 : sizes[2] * sizes[3];
    strides.b = sizes[0] == 1 ? 0 : sizes[1] * sizes[2] * sizes[3];
    return strides;
  }
  TFKIT_HOST_DEVICE int64_t Row(int64_t bi, int64_t ni, int64_t ti) const { return bi * b + ni * n + ti * t; }
};

// One forward call's inputs; bias and mask null where absent.
template <typename T>
struct AttentionInputs {
  AttentionShape shape;
  const T* query = nullptr;
  const T* key = nullptr;
  const T* value = nullptr;
  const T* bias = nullptr;
  const bool* mask = nullptr;
  bool causal = false;
  float scale = 1.0f;
  float dropout_rate = 0.0f;
  int64_t seed[2] = {0, 0};
};

// The backward's further inputs, outputs and workspace: row_delta and
// row_inverse hold B * N * T values each, dbias_sum (when there is a bias)
// one U per bias element; dquery_parts (CPU, without a bias) the query
// gradient's parts, one per chunk of keys (attention_cpu.h).
template <typename T>
struct AttentionGrads {
  const T* dout = nullptr;
  const T* out = nullptr;
  const Acc<T>* lse = nullptr;
  Acc<T>* row_delta = nullptr;
  Acc<T>* row_inverse = nullptr;
  Acc<T>* dbias_sum = nullptr;
  Acc<T>* dquery_parts = nullptr;
  T* dquery = nullptr;
  T* dkey = nullptr;
  T* dvalue = nullptr;
  T* dbias = nullptr;
};

// The query gradient's items own disjoint parts of dquery and of dbias: one
// per (batch, head, block of queries) of the bias's own sizes, covering
// every batch item, head or query block it is broadcast along.
struct QueryItems {
  int64_t batches = 0, heads = 0, blocks = 0;  // the items' grid
  bool all_batches = false, all_heads = false, all_blocks = false;

  TFKIT_HOST_DEVICE static QueryItems Of(const AttentionShape& shape, bool has_bias, int64_t block_q) {
    QueryItems items;
    const int64_t blocks = Blocks(shape.target, block_q);
    items.all_batches = has_bias && shape.bias[0] == 1 && shape.batch != 1;
    items.all_heads = has_bias && shape.bias[1] == 1 && shape.heads != 1;
    items.all_blocks = has_bias && shape.bias[2] == 1 && blocks > 1;
    items.batches = items.all_batches ? 1 : shape.batch;
    items.heads = items.all_heads ? 1 : shape.heads;
    items.blocks = items.all_blocks ? 1 : blocks;
    return items;
  }
  TFKIT_HOST_DEVICE int64_t count() const { return batches * heads * blocks; }
};

}  // namespace attention
}  // namespace kernels
}  // namespace tfkit

#endif  // TFKIT_KERNELS_ATTENTION_ATTENTION_ARGS_H_
