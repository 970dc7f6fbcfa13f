// The attention family's rules, written once for the op registrations and
// their shape functions, the OpKernels, the CUDA kernels and the kernels
// module (tfkit/ops/attention.py states the same rules for the Python
// wrapper and its reference, with the same messages and the same numbers):
//
// - the shapes: query [B, T, N, H], key and value [B, S, K, H] with N a
//   multiple of K (query head n reads key/value head n / (N / K)), bias and
//   mask of rank 4, each size 1 or the size of [B, N, T, S];
// - the value a masked logit takes (Keras's large negative number);
// - dropout: the keep bit of element (b, n, t, s), a pure function of the
//   seed and the four indices (DropoutBits), kept if its 32 bits are at
//   least KeepThreshold(rate), and a kept probability scaled by
//   1 / (1 - rate).
#ifndef TFKIT_KERNELS_ATTENTION_ATTENTION_RULES_H_
#define TFKIT_KERNELS_ATTENTION_ATTENTION_RULES_H_

#include <cmath>
#include <cstdint>
#include <sstream>
#include <string>

#include "kernels/common/rules.h"
#include "kernels/common/types.h"

namespace tfkit {
namespace kernels {
namespace attention {

// A masked logit is replaced by this (in the logits' type, float or
// double), as Keras's TensorFlow backend does: a row with every key masked
// is then the mean of the values.
constexpr double kMaskFill = -0.7 * 3.38953e38;

// The mixing step of the dropout hash: murmur3's 32-bit finalizer of
// (h ^ v) + golden ratio. Every operation is a uint32 multiply (mod 2**32),
// xor, shift or add, so the TensorFlow reference computes the same bits.
TFKIT_HOST_DEVICE uint32_t Mix(uint32_t h, uint32_t v) {
  h = (h ^ v) + 0x9E3779B9u;
  h ^= h >> 16;
  h *= 0x85EBCA6Bu;
  h ^= h >> 13;
  h *= 0xC2B2AE35u;
  h ^= h >> 16;
  return h;
}

// The seed [2] (int64) as the hash's key: its four 32-bit halves mixed in.
TFKIT_HOST_DEVICE uint32_t SeedKey(int64_t seed0, int64_t seed1) {
  const uint64_t a = static_cast<uint64_t>(seed0), b = static_cast<uint64_t>(seed1);
  uint32_t h = Mix(0u, static_cast<uint32_t>(a));
  h = Mix(h, static_cast<uint32_t>(a >> 32));
  h = Mix(h, static_cast<uint32_t>(b));
  return Mix(h, static_cast<uint32_t>(b >> 32));
}

// The hash of one row (b, n, t) of the probabilities, from the key.
TFKIT_HOST_DEVICE uint32_t RowKey(uint32_t key, int64_t b, int64_t n, int64_t t) {
  return Mix(Mix(Mix(key, static_cast<uint32_t>(b)), static_cast<uint32_t>(n)), static_cast<uint32_t>(t));
}

// The 32 random bits of element s of a row.
TFKIT_HOST_DEVICE uint32_t DropoutBits(uint32_t row_key, int64_t s) {
  return Mix(Mix(row_key, static_cast<uint32_t>(s)), 0u);
}

// An element is kept when its bits are >= this: floor(rate * 2**32), so
// rate 0 keeps every element and a rate r keeps 1 - r of them.
TFKIT_HOST_DEVICE uint32_t KeepThreshold(float rate) {
  return static_cast<uint32_t>(static_cast<double>(rate) * 4294967296.0);
}

// A kept probability is multiplied by this.
TFKIT_HOST_DEVICE double KeepScale(float rate) { return 1.0 / (1.0 - static_cast<double>(rate)); }

inline std::string DropoutRateError(float rate) {
  if (rate >= 0.0f && rate < 1.0f) return "";
  std::ostringstream message;
  message << "dropout_rate must be in [0, 1), got " << rate;
  return message.str();
}

// The logits' scale: `scale`, or Keras's default 1 / sqrt(head_dim)
// computed in float32.
inline float ScaleOf(bool default_scale, float scale, int64_t head_dim) {
  return default_scale ? 1.0f / std::sqrt(static_cast<float>(head_dim)) : scale;
}

inline std::string ScaleError(float scale) {
  if (std::isfinite(scale)) return "";
  std::ostringstream message;
  message << "scale must be a finite float, got " << scale;
  return message.str();
}

// The sizes of one attention call; a bias or mask's sizes are 1 along the
// dimensions of [B, N, T, S] it is broadcast along.
struct AttentionShape {
  int64_t batch = 0;     // B
  int64_t target = 0;    // T, the queries
  int64_t source = 0;    // S, the keys and values
  int64_t heads = 0;     // N, query heads
  int64_t kv_heads = 0;  // K, key and value heads
  int64_t head_dim = 0;  // H
  int64_t bias[4] = {1, 1, 1, 1};
  int64_t mask[4] = {1, 1, 1, 1};

  TFKIT_HOST_DEVICE int64_t group() const { return kv_heads > 0 ? heads / kv_heads : 1; }
  // The shape [B, N, T, S] of the logits.
  Dims logits() const { return {batch, heads, target, source}; }
};

inline std::string RankError(const char* name, const Dims& dims, const char* layout) {
  if (dims.size() == 4) return "";
  return std::string(name) + " must have rank 4 (" + layout + "), got shape " + DimsString(dims);
}

// bias or mask: rank 4, each size 1 or that of [B, N, T, S].
inline std::string BroadcastError(const char* name, const Dims& dims, const Dims& logits) {
  bool ok = dims.size() == 4;
  for (size_t i = 0; ok && i < 4; ++i) ok = dims[i] == 1 || DimsAgree(dims[i], logits[i]) || !DimKnown(dims[i]);
  if (ok) return "";
  return std::string(name) + " must be broadcastable to the logits [batch, heads, target, source] " +
         DimsString(logits) + " (rank 4, each size 1 or the logits' size), got shape " + DimsString(dims);
}

// query [B, T, N, H], key [B, S, K, H], value key's shape; fills *shape
// (not bias and mask) and *output, query's shape. Unknown sizes (shape
// functions) agree with any.
inline std::string AttentionShapeError(const Dims& query, const Dims& key, const Dims& value, AttentionShape* shape) {
  std::string error = RankError("query", query, "[batch, target, heads, head_dim]");
  if (error.empty()) error = RankError("key", key, "[batch, source, kv_heads, head_dim]");
  if (error.empty()) error = SameShapeError("value", value, "key", key);
  if (!error.empty()) return error;
  if (!DimsAgree(key[0], query[0]) || !DimsAgree(key[3], query[3])) {
    return "key must have the batch size and head_dim of query " + DimsString(query) +
           " (dimensions 0 and 3), got shape " + DimsString(key);
  }
  const int64_t heads = query[2], kv_heads = key[2];
  if (DimKnown(heads) && DimKnown(kv_heads) && (kv_heads == 0 ? heads != 0 : heads % kv_heads != 0)) {
    return "key must have a number of heads that divides the number of query heads " + std::to_string(heads) + " (query " +
           DimsString(query) + "), got " + std::to_string(kv_heads) + " in shape " + DimsString(key);
  }
  shape->batch = DimKnown(query[0]) ? query[0] : key[0];
  shape->target = query[1];
  shape->source = key[1];
  shape->heads = heads;
  shape->kv_heads = kv_heads;
  shape->head_dim = DimKnown(query[3]) ? query[3] : key[3];
  return "";
}

// The element counts the kernels multiply, each within int64.
inline std::string AttentionCountsError(const Dims& query, const Dims& key, const AttentionShape& shape) {
  int64_t count = 0;
  std::string error = CountError("query", query, &count);
  if (error.empty()) error = CountError("key", key, &count);
  if (error.empty()) error = CountError("the logits [batch, heads, target, source]", shape.logits(), &count);
  return error;
}

// Fills the bias or mask sizes of *shape from dims (already checked).
inline void SetBroadcast(const Dims& dims, int64_t* sizes) {
  for (int i = 0; i < 4; ++i) sizes[i] = dims[i];
}

}  // namespace attention
}  // namespace kernels
}  // namespace tfkit

#endif  // TFKIT_KERNELS_ATTENTION_ATTENTION_RULES_H_
