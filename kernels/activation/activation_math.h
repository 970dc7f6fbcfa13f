// The activation family's scalar math, shared by the CPU and CUDA kernels:
// each activation and its derivative, in the computation type U (float, or
// double for double), with the numerics of keras.activations of that name.
#ifndef TFKIT_KERNELS_ACTIVATION_ACTIVATION_MATH_H_
#define TFKIT_KERNELS_ACTIVATION_ACTIVATION_MATH_H_

#include <math.h>

#include <cstdint>
#include <cstring>
#include <type_traits>

#include "kernels/activation/activation_rules.h"
#include "kernels/common/types.h"

// GCC vectorizes the CPU loops only when it may turn float selects into
// blends, which -ftrapping-math (its default) forbids; nothing in tfkit
// reads floating-point exception flags. These bracket the family's math and
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
namespace activation {

// Branch-free float versions of exp, tanh and the normal CDF for the CPU kernels,
// so that their row loops vectorize (the C library's are scalar calls). The
// GPU kernels and double use the math library's functions.
namespace fast {

TFKIT_HOST_DEVICE float FromBits(int32_t bits) {
  float f;
  std::memcpy(&f, &bits, sizeof(f));
  return f;
}

TFKIT_HOST_DEVICE int32_t ToBits(float f) {
  int32_t bits;
  std::memcpy(&bits, &f, sizeof(bits));
  return bits;
}

// e^x, x clamped to [-87, 88] (enough for the activations: below, e^x is
// under 1.7e-38); NaN stays NaN. x = n ln2 + r with |r| <= ln2 / 2 (ln2 in
// two parts so n ln2 is exact), e^r by its Taylor polynomial to r^7
// (truncation < 1e-8 relative), 2^n built from the exponent bits.
TFKIT_HOST_DEVICE float Exp(float x) {
  x = x < -87.0f ? -87.0f : x;
  x = x > 88.0f ? 88.0f : x;
  constexpr float kRound = 12582912.0f;  // 1.5 * 2^23: adding it rounds to an integer
  const float shifted = x * 1.44269504088896341f + kRound;
  const float n = shifted - kRound;
  const float r = (x - n * 0.693145751953125f) - n * 1.42860682030941723212e-6f;
  float p = 1.0f / 5040.0f;
  p = p * r + 1.0f / 720.0f;
  p = p * r + 1.0f / 120.0f;
  p = p * r + 1.0f / 24.0f;
  p = p * r + 1.0f / 6.0f;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  return p * FromBits((ToBits(shifted) - ToBits(kRound) + 127) << 23);
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

// e^{-z^2 / 2} with z^2 split into an exact part and a small one, so that
// its rounding does not become a relative error of z^2 * 2^-25.
TFKIT_HOST_DEVICE float ExpMinusHalfSquare(float z) {
  const float high = FromBits(ToBits(z) & ~0xFFF);  // 12 significant bits: high^2 is exact
  const float low = -0.5f * (z - high) * (z + high);  // |low| < 0.05 where the result is above 1e-38
  const float e_low = 1.0f + low * (1.0f + low * (0.5f + low * (1.0f / 6.0f + low * (1.0f / 24.0f))));
  return Exp(-0.5f * high * high) * e_low;
}

// erfc(a / sqrt(2)) for a >= 0, to a few ulp of its own value: with
// x = a / sqrt(2), erfc(x) e^{x^2} is a polynomial in t = 1 / (1 + x / 2)
// fitted for relative error (< 5e-9 for x in [0, 9.5]); 0 beyond, where
// erfc is below float's range.
TFKIT_HOST_DEVICE float ErfcOfHalfSqrt2(float a) {
  const float t = 1.0f / (1.0f + 0.35355339059327376f * a);
  float q = 0.02921535260975361f;
  q = q * t - 0.2182602435350418f;
  q = q * t + 0.6615132689476013f;
  q = q * t - 0.9963443875312805f;
  q = q * t + 0.7110970616340637f;
  q = q * t - 0.26813971996307373f;
  q = q * t + 0.2918650209903717f;
  q = q * t + 0.2216339260339737f;
  q = q * t + 0.2855948805809021f;
  q = q * t + 0.2818150520324707f;
  q = q * t + 9.771183613338508e-06f;
  return a > 13.4f ? 0.0f : q * ExpMinusHalfSquare(a);
}

// The standard normal CDF, 0.5 (1 + erf(z / sqrt(2))), from the erfc of |z|:
// accurate also where it is near 0, and no cancellation near 1.
TFKIT_HOST_DEVICE float NormalCdf(float z) {
  const float tail = 0.5f * ErfcOfHalfSqrt2(z < 0.0f ? -z : z);
  return z < 0.0f ? tail : 1.0f - tail;
}

}  // namespace fast

constexpr double kSqrtHalf = 0.70710678118654752440;
constexpr double kInvSqrt2Pi = 0.39894228040143267794;
constexpr double kSqrt2OverPi = 0.79788456080286535588;
constexpr double kGeluCubic = 0.044715;

#ifdef __CUDA_ARCH__
TFKIT_HOST_DEVICE float Exp(float v) { return expf(v); }
TFKIT_HOST_DEVICE float Tanh(float v) { return tanhf(v); }
TFKIT_HOST_DEVICE float NormalCdf(float z) { return normcdff(z); }
TFKIT_HOST_DEVICE float ExpMinusHalfSquare(float z) { return expf(-0.5f * z * z); }
#else
TFKIT_HOST_DEVICE float Exp(float v) { return fast::Exp(v); }
TFKIT_HOST_DEVICE float Tanh(float v) { return fast::Tanh(v); }
TFKIT_HOST_DEVICE float NormalCdf(float z) { return fast::NormalCdf(z); }
TFKIT_HOST_DEVICE float ExpMinusHalfSquare(float z) { return fast::ExpMinusHalfSquare(z); }
#endif
TFKIT_HOST_DEVICE double Exp(double v) { return exp(v); }
TFKIT_HOST_DEVICE double Tanh(double v) { return tanh(v); }
TFKIT_HOST_DEVICE double NormalCdf(double z) { return 0.5 * erfc(-z * kSqrtHalf); }
TFKIT_HOST_DEVICE double ExpMinusHalfSquare(double z) { return exp(-0.5 * z * z); }

template <typename U>
TFKIT_HOST_DEVICE U Sigmoid(U z) {
  return U(1) / (U(1) + Exp(-z));
}

// sigmoid(z) (1 - sigmoid(z)) = e / (1 + e)^2 with e = e^{-|z|}: no
// cancellation where sigmoid(z) is near 1.
template <typename U>
TFKIT_HOST_DEVICE U SigmoidDerivative(U z) {
  const U e = Exp(z < U(0) ? z : -z);
  return e / ((U(1) + e) * (U(1) + e));
}

// 1 - tanh(u)^2, without the cancellation of that form where tanh(u) is
// near +-1: 4 e / (1 + e)^2 with e = e^{-2|u|}.
template <typename U>
TFKIT_HOST_DEVICE U SechSquared(U u) {
  const U e = Exp(U(-2) * (u < U(0) ? -u : u));
  return U(4) * e / ((U(1) + e) * (U(1) + e));
}

// tanh(softplus(z)) = tanh(log(1 + e^z)) = w / (w + 2) with w = e^z (e^z + 2),
// which needs no logarithm; e^z is capped at e^20, beyond which the result
// is 1 in double too.
template <typename U>
TFKIT_HOST_DEVICE U SoftplusW(U z) {
  const U n = Exp(z > U(20) ? U(20) : z);
  return n * (n + U(2));
}

template <typename U>
TFKIT_HOST_DEVICE U TanhSoftplus(U z) {
  const U w = SoftplusW(z);
  return w / (w + U(2));
}

// 1 - tanh(softplus(z))^2 = 4 (w + 1) / (w + 2)^2, without cancellation.
template <typename U>
TFKIT_HOST_DEVICE U SechSquaredSoftplus(U z) {
  const U w = SoftplusW(z);
  return U(4) * (w + U(1)) / ((w + U(2)) * (w + U(2)));
}

template <typename U>
TFKIT_HOST_DEVICE U Apply(Activation act, U z) {
  switch (act) {
    case Activation::kRelu:
      return z > U(0) ? z : U(0);
    case Activation::kGelu:
      return z * NormalCdf(z);
    case Activation::kGeluTanh:
      // 0.5 z (1 + tanh(u)) = z sigmoid(2u), which does not cancel for u < 0.
      return z * Sigmoid(U(2 * kSqrt2OverPi) * (z + U(kGeluCubic) * z * z * z));
    case Activation::kSilu:
      return z * Sigmoid(z);
    case Activation::kSigmoid:
      return Sigmoid(z);
    case Activation::kTanh:
      return Tanh(z);
    case Activation::kMish:
      return z * TanhSoftplus(z);
    case Activation::kLinear:
    default:
      return z;
  }
}

// d Apply(act, z) / dz.
template <typename U>
TFKIT_HOST_DEVICE U Derivative(Activation act, U z) {
  switch (act) {
    case Activation::kRelu:
      return z > U(0) ? U(1) : U(0);
    case Activation::kGelu:
      return NormalCdf(z) + z * U(kInvSqrt2Pi) * ExpMinusHalfSquare(z < U(0) ? -z : z);
    case Activation::kGeluTanh: {
      const U u = U(kSqrt2OverPi) * (z + U(kGeluCubic) * z * z * z);
      const U du = U(kSqrt2OverPi) * (U(1) + U(3 * kGeluCubic) * z * z);
      return Sigmoid(U(2) * u) + U(0.5) * z * SechSquared(u) * du;
    }
    case Activation::kSilu:
      return Sigmoid(z) + z * SigmoidDerivative(z);
    case Activation::kSigmoid:
      return SigmoidDerivative(z);
    case Activation::kTanh:
      return SechSquared(z);
    case Activation::kMish:
      return TanhSoftplus(z) + z * Sigmoid(z) * SechSquaredSoftplus(z);
    case Activation::kLinear:
    default:
      return U(1);
  }
}

// Calls f(std::integral_constant<Activation, act>()): each activation gets
// its own instantiation of a loop, with no branch per element.
template <typename F>
void WithActivation(Activation act, F&& f) {
  using A = Activation;
  switch (act) {
    case A::kRelu: return f(std::integral_constant<A, A::kRelu>());
    case A::kGelu: return f(std::integral_constant<A, A::kGelu>());
    case A::kGeluTanh: return f(std::integral_constant<A, A::kGeluTanh>());
    case A::kSilu: return f(std::integral_constant<A, A::kSilu>());
    case A::kSigmoid: return f(std::integral_constant<A, A::kSigmoid>());
    case A::kTanh: return f(std::integral_constant<A, A::kTanh>());
    case A::kMish: return f(std::integral_constant<A, A::kMish>());
    case A::kLinear:
    default: return f(std::integral_constant<A, A::kLinear>());
  }
}

}  // namespace activation
}  // namespace kernels
}  // namespace tfkit

TFKIT_VECTORIZE_END

#endif  // TFKIT_KERNELS_ACTIVATION_ACTIVATION_MATH_H_
