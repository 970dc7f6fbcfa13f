// Float math for CPU loops that must vectorize, shared by the families'
// kernels: branch-free exp and tanh (the C library's are scalar calls), and
// the pragmas that let GCC turn float selects into blends.
#ifndef TFKIT_KERNELS_COMMON_FAST_MATH_H_
#define TFKIT_KERNELS_COMMON_FAST_MATH_H_

#include <cstdint>
#include <cstring>

#include "kernels/common/types.h"

// GCC vectorizes the CPU loops only when it may turn float selects into
// blends, which -ftrapping-math (its default) forbids; nothing in tfkit
// reads floating-point exception flags. These bracket a family's math and
// loops.
#if defined(__GNUC__) && !defined(__clang__) && !defined(__CUDACC__)
#define TFKIT_VECTORIZE_BEGIN _Pragma("GCC push_options") _Pragma("GCC optimize(\"no-trapping-math\")")
#define TFKIT_VECTORIZE_END _Pragma("GCC pop_options")
#else
#define TFKIT_VECTORIZE_BEGIN
#define TFKIT_VECTORIZE_END
#endif

TFKIT_VECTORIZE_BEGIN

namespace tfkit {
namespace kernels {

// e^x and tanh for float CPU loops; the GPU kernels and double use the
// math library's.
namespace fast {

TFKIT_HOST_DEVICE float FromBits(uint32_t bits) {
  float f;
  std::memcpy(&f, &bits, sizeof(f));
  return f;
}

TFKIT_HOST_DEVICE uint32_t ToBits(float f) {
  uint32_t bits;
  std::memcpy(&bits, &f, sizeof(bits));
  return bits;
}

constexpr float kRound = 12582912.0f;  // 1.5 * 2^23: adding it rounds to an integer

// 2^n for an integer-valued n in [-126, 127], from the exponent bits.
TFKIT_HOST_DEVICE float Pow2(float n) { return FromBits((ToBits(n + kRound) - ToBits(kRound) + 127u) << 23); }

// e^x over the whole float range: subnormal results, 0 below -104 and
// infinity above 89; NaN stays NaN. x = n ln2 + r with |r| <= ln2 / 2 (ln2
// in two parts so n ln2 is exact), e^r by its Taylor polynomial to r^7
// (truncation < 1e-8 relative), then scaled by 2^n in two halves, each a
// normal float, so that the only rounding into subnormals is the last.
TFKIT_HOST_DEVICE float Exp(float x) {
  x = x < -104.0f ? -104.0f : x;
  x = x > 89.0f ? 89.0f : x;
  const float n = (x * 1.44269504088896341f + kRound) - kRound;
  const float r = (x - n * 0.693145751953125f) - n * 1.42860682030941723212e-6f;
  float p = 1.0f / 5040.0f;
  p = p * r + 1.0f / 720.0f;
  p = p * r + 1.0f / 120.0f;
  p = p * r + 1.0f / 24.0f;
  p = p * r + 1.0f / 6.0f;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  const float n_low = (n * 0.5f + kRound) - kRound;
  return p * Pow2(n - n_low) * Pow2(n_low);
}

// tanh: its odd Taylor polynomial below |x| = 0.2 (truncation < 2e-10
// relative), else (1 - e) / (1 + e) with e = e^{-2|x|} and the sign of x.
TFKIT_HOST_DEVICE float Tanh(float x) {
  const float a = x < 0.0f ? -x : x;
  const float x2 = x * x;
  float s = 62.0f / 2835.0f;
  s = s * x2 - 17.0f / 315.0f;
  s = s * x2 + 2.0f / 15.0f;
  s = s * x2 - 1.0f / 3.0f;
  const float small = x + x * x2 * s;
  const float e = Exp(-2.0f * a);
  const float large = (1.0f - e) / (1.0f + e);
  return a < 0.2f ? small : (x < 0.0f ? -large : large);
}

}  // namespace fast

}  // namespace kernels
}  // namespace tfkit

TFKIT_VECTORIZE_END

#endif  // TFKIT_KERNELS_COMMON_FAST_MATH_H_
