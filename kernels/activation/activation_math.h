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
#include "kernels/common/fast_math.h"
#include "kernels/common/types.h"

TFKIT_VECTORIZE_BEGIN

namespace tfkit {
namespace kernels {
namespace activation {

constexpr double kSqrtHalf = 0.70710678118654752440;
constexpr double kInvSqrt2Pi = 0.39894228040143267794;
constexpr double kSqrt2OverPi = 0.79788456080286535588;
constexpr double kGeluCubic = 0.044715;

#ifdef __CUDA_ARCH__
TFKIT_HOST_DEVICE float Exp(float v) { return expf(v); }
TFKIT_HOST_DEVICE float Tanh(float v) { return tanhf(v); }
#else
TFKIT_HOST_DEVICE float Exp(float v) { return fast::Exp(v); }
TFKIT_HOST_DEVICE float Tanh(float v) { return fast::Tanh(v); }
#endif
TFKIT_HOST_DEVICE double Exp(double v) { return exp(v); }
TFKIT_HOST_DEVICE double Tanh(double v) { return tanh(v); }

TFKIT_HOST_DEVICE float FiniteMax(float) { return 3.402823466e+38f; }
TFKIT_HOST_DEVICE double FiniteMax(double) { return 1.7976931348623157e+308; }

template <typename U>
TFKIT_HOST_DEVICE U Abs(U z) {
  return z < U(0) ? -z : z;
}

// NaN stays NaN.
template <typename U>
TFKIT_HOST_DEVICE U Min(U a, U b) {
  return b < a ? b : a;
}

// z with infinities clamped to the largest finite value: an infinite z
// times a factor that vanishes there is then the limit, 0, not NaN.
template <typename U>
TFKIT_HOST_DEVICE U Finite(U z) {
  const U m = FiniteMax(z);
  return z > m ? m : (z < -m ? -m : z);
}

// z h^2 for a vanishing factor h^2, e.g. z e^{-|z|} with h = e^{-|z|/2}:
// multiplied in this order a subnormal product is rounded once, at the end.
template <typename U>
TFKIT_HOST_DEVICE U TimesSquare(U z, U h) {
  return (Finite(z) * h) * h;
}

// e^{-|z|/2}: its square e^{-|z|} is the exponential of sigmoid, silu and
// mish, which never overflows.
template <typename U>
TFKIT_HOST_DEVICE U HalfExpOfMinusAbs(U z) {
  return Exp(U(-0.5) * Abs(z));
}

// e^{-a^2/4}, whose square is the normal density's exponential e^{-a^2/2}.
// a^2 is split into an exact part and a small one, so that its rounding
// does not become a relative error of a^2 * 2^-25; a is capped where the
// square is 0 whatever finite float multiplies it.
TFKIT_HOST_DEVICE float RootOfGaussian(float a) {
  a = Min(Abs(a), 20.0f);
  const float high = fast::FromBits(fast::ToBits(a) & ~0xFFFu);  // 12 significant bits: high^2 is exact
  const float low = -0.25f * (a - high) * (a + high);              // |low| < 0.03
  const float e_low = 1.0f + low * (1.0f + low * (0.5f + low * (1.0f / 6.0f)));
  return Exp(-0.25f * high * high) * e_low;
}

TFKIT_HOST_DEVICE double RootOfGaussian(double a) {
  a = Min(Abs(a), 60.0);
  return exp(-0.25 * a * a);
}

// The standard normal tail P(Z > a) for a >= 0, as scale * root^2 with
// root = RootOfGaussian(a) (1 for double). Float: erfc(x) e^{x^2} with
// x = a / sqrt(2) is a polynomial in t = 1 / (1 + x / 2) fitted for
// relative error (< 5e-9 for x in [0, 9.5]).
template <typename U>
struct NormalTail {
  U scale;
  U root;
};

TFKIT_HOST_DEVICE NormalTail<float> NormalTailOf(float a) {
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
  return {0.5f * q, RootOfGaussian(a)};
}

TFKIT_HOST_DEVICE NormalTail<double> NormalTailOf(double a) { return {0.5 * erfc(a * kSqrtHalf), 1.0}; }

// gelu(z) = z P(Z < z): z times the tail of -z where z < 0 (no
// cancellation), z (1 - tail) above.
template <typename U>
TFKIT_HOST_DEVICE U Gelu(U z) {
  const NormalTail<U> tail = NormalTailOf(Abs(z));
  return z < U(0) ? TimesSquare(Finite(z) * tail.scale, tail.root) : z * (U(1) - tail.scale * tail.root * tail.root);
}

// P(Z < z) + z phi(z). Float: below 0 both terms are products with
// root^2, multiplied last, so that neither is flushed alone where the sum
// is a normal float.
TFKIT_HOST_DEVICE float GeluDerivative(float z) {
  const NormalTail<float> tail = NormalTailOf(Abs(z));
  const float density = float(kInvSqrt2Pi) * z;
  return z < 0.0f ? TimesSquare(tail.scale + density, tail.root)
                  : 1.0f - tail.scale * tail.root * tail.root + TimesSquare(density, tail.root);
}

TFKIT_HOST_DEVICE double GeluDerivative(double z) {
  const double tail = NormalTailOf(Abs(z)).scale;
  return (z < 0.0 ? tail : 1.0 - tail) + kInvSqrt2Pi * TimesSquare(z, RootOfGaussian(z));
}

// The logistic family, from h = e^{-|z|/2} and e = h^2 = e^{-|z|}, which
// never overflow: sigmoid(z) = (z < 0 ? e : 1) / (1 + e).
template <typename U>
TFKIT_HOST_DEVICE U Sigmoid(U z) {
  const U e = Exp(-Abs(z));
  return (z < U(0) ? e : U(1)) / (U(1) + e);
}

// sigmoid(z) (1 - sigmoid(z)) = e / (1 + e)^2: no cancellation where
// sigmoid(z) is near 1.
template <typename U>
TFKIT_HOST_DEVICE U SigmoidDerivative(U z) {
  const U e = Exp(-Abs(z));
  return e / ((U(1) + e) * (U(1) + e));
}

// silu(z) = z sigmoid(z), its z e^{-|z|} below 0 rounded once.
template <typename U>
TFKIT_HOST_DEVICE U Silu(U z) {
  const U h = HalfExpOfMinusAbs(z);
  return (z < U(0) ? TimesSquare(z, h) : z) / (U(1) + h * h);
}

// sigmoid(z) + z sigmoid'(z) = (z < 0 ? e : 1) / (1 + e) + z e / (1 + e)^2:
// below 0 e (1 + e + z) / (1 + e)^2, one product with e.
template <typename U>
TFKIT_HOST_DEVICE U SiluDerivative(U z) {
  const U h = HalfExpOfMinusAbs(z);
  const U e = h * h;
  const U numerator = z < U(0) ? TimesSquare(U(1) + e + z, h) : U(1) + e + TimesSquare(z, h);
  return numerator / ((U(1) + e) * (U(1) + e));
}

// 1 - tanh(u)^2, without the cancellation of that form where tanh(u) is
// near +-1: 4 e / (1 + e)^2 with e = h^2 = e^{-2|u|}.
template <typename U>
TFKIT_HOST_DEVICE U SechSquared(U u) {
  const U h = Exp(-Abs(u));
  const U e = h * h;
  return TimesSquare(U(4), h) / ((U(1) + e) * (U(1) + e));
}

// e^m for a double m: float takes e^{hi} (1 + lo) with m = hi + lo split
// in floats, so m's rounding to float is not an error of the result.
TFKIT_HOST_DEVICE float ExpOfDouble(double m, float) {
  const float hi = static_cast<float>(m);
  return Exp(hi) * (1.0f + static_cast<float>(m - static_cast<double>(hi)));
}

TFKIT_HOST_DEVICE double ExpOfDouble(double m, double) { return exp(m); }

// The tanh approximation: z sigmoid(2u) with u = sqrt(2 / pi) (z + c z^3),
// which does not cancel for u < 0. Beyond |z| = 30 it is z or 0 in double
// too, so z is clamped there before z^3 can overflow. u is evaluated in
// double: for |u| in the tens its float rounding alone would be tens of
// ulp of e^{-2|u|}.
template <typename U>
struct GeluTanhTerms {
  U z;   // clamped
  U h;   // e^{-|u|}
  U du;  // du / dz
};

template <typename U>
TFKIT_HOST_DEVICE GeluTanhTerms<U> GeluTanhTermsOf(U z) {
  z = z < U(-30) ? U(-30) : (z > U(30) ? U(30) : z);
  const double zd = static_cast<double>(z);
  const double u = kSqrt2OverPi * (zd + kGeluCubic * zd * zd * zd);
  return {z, ExpOfDouble(u < 0.0 ? u : -u, z), U(kSqrt2OverPi) * (U(1) + U(3 * kGeluCubic) * z * z)};
}

template <typename U>
TFKIT_HOST_DEVICE U GeluTanh(U z) {
  const GeluTanhTerms<U> t = GeluTanhTermsOf(z);
  return (z < U(0) ? TimesSquare(t.z, t.h) : z) / (U(1) + t.h * t.h);
}

// sigmoid(2u) + z sech^2(u) du / 2 = ((z < 0 ? e : 1) (1 + e) + 2 z du e) / (1 + e)^2
// with e = e^{-2|u|}: below 0 one product with e.
template <typename U>
TFKIT_HOST_DEVICE U GeluTanhDerivative(U z) {
  const GeluTanhTerms<U> t = GeluTanhTermsOf(z);
  const U e = t.h * t.h;
  const U slope = U(2) * t.z * t.du;
  const U numerator = z < U(0) ? TimesSquare(U(1) + e + slope, t.h) : U(1) + e + TimesSquare(slope, t.h);
  return numerator / ((U(1) + e) * (U(1) + e));
}

// mish(z) = z tanh(softplus(z)), from e = e^{-|z|} without a logarithm:
// tanh(softplus(z)) = e (e + 2) / (e (e + 2) + 2) below 0 and
// (1 + 2e) / (1 + 2e (1 + e)) above, neither of which overflows.
template <typename U>
TFKIT_HOST_DEVICE U Mish(U z) {
  const U h = HalfExpOfMinusAbs(z);
  const U e = h * h;
  return z < U(0) ? TimesSquare(z, h) * (e + U(2)) / (e * (e + U(2)) + U(2))
                  : z * (U(1) + U(2) * e) / (U(1) + U(2) * e * (U(1) + e));
}

// tanh(softplus(z)) + z sech^2(softplus(z)) sigmoid(z), with d the
// denominator of tanh(softplus(z)): below 0 e ((e + 2) d + 4 z (1 + e)) / d^2,
// one product with e; above (1 + 2e) / d + 4 z e^2 (1 + e) / d^2.
template <typename U>
TFKIT_HOST_DEVICE U MishDerivative(U z) {
  const U h = HalfExpOfMinusAbs(z);
  const U e = h * h;
  if (z < U(0)) {
    const U d = e * (e + U(2)) + U(2);
    return TimesSquare((e + U(2)) * d + U(4) * Finite(z) * (U(1) + e), h) / (d * d);
  }
  const U d = U(1) + U(2) * e * (U(1) + e);
  return (U(1) + U(2) * e) / d + U(4) * TimesSquare(z, h) * e * (U(1) + e) / (d * d);
}

template <typename U>
TFKIT_HOST_DEVICE U Apply(Activation act, U z) {
  switch (act) {
    case Activation::kRelu:
      return z < U(0) ? U(0) : z;  // NaN stays NaN
    case Activation::kGelu:
      return Gelu(z);
    case Activation::kGeluTanh:
      return GeluTanh(z);
    case Activation::kSilu:
      return Silu(z);
    case Activation::kSigmoid:
      return Sigmoid(z);
    case Activation::kTanh:
      return Tanh(z);
    case Activation::kMish:
      return Mish(z);
    case Activation::kLinear:
    default:
      return z;
  }
}

// d Apply(act, z) / dz. relu's is 0 at NaN, as TensorFlow's ReluGrad.
template <typename U>
TFKIT_HOST_DEVICE U Derivative(Activation act, U z) {
  switch (act) {
    case Activation::kRelu:
      return z > U(0) ? U(1) : U(0);
    case Activation::kGelu:
      return GeluDerivative(z);
    case Activation::kGeluTanh:
      return GeluTanhDerivative(z);
    case Activation::kSilu:
      return SiluDerivative(z);
    case Activation::kSigmoid:
      return SigmoidDerivative(z);
    case Activation::kTanh:
      return SechSquared(z);
    case Activation::kMish:
      return MishDerivative(z);
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
