// The activation family's scalar math, shared by the CPU and CUDA kernels:
// each activation and its derivative, in the computation type U (float, or
// double for double), with the numerics of keras.activations of that name.
#ifndef TFKIT_KERNELS_ACTIVATION_ACTIVATION_MATH_H_
#define TFKIT_KERNELS_ACTIVATION_ACTIVATION_MATH_H_

#include <math.h>

#include <cstdint>
#include <type_traits>

#ifdef __CUDACC__
#define TFKIT_HOST_DEVICE __host__ __device__ __forceinline__
#else
#define TFKIT_HOST_DEVICE inline
#endif

namespace tfkit {
namespace kernels {
namespace activation {

// The order of the names in the ops' `activation` attr.
enum class Activation : int32_t { kLinear, kRelu, kGelu, kGeluTanh, kSilu, kSigmoid, kTanh, kMish };

TFKIT_HOST_DEVICE float Exp(float v) { return expf(v); }
TFKIT_HOST_DEVICE double Exp(double v) { return exp(v); }
TFKIT_HOST_DEVICE float Erf(float v) { return erff(v); }
TFKIT_HOST_DEVICE double Erf(double v) { return erf(v); }
TFKIT_HOST_DEVICE float Tanh(float v) { return tanhf(v); }
TFKIT_HOST_DEVICE double Tanh(double v) { return tanh(v); }
TFKIT_HOST_DEVICE float Log1p(float v) { return log1pf(v); }
TFKIT_HOST_DEVICE double Log1p(double v) { return log1p(v); }

template <typename U>
TFKIT_HOST_DEVICE U Sigmoid(U z) {
  return U(1) / (U(1) + Exp(-z));
}

// log(1 + e^z), without overflow for large z.
template <typename U>
TFKIT_HOST_DEVICE U Softplus(U z) {
  return z > U(20) ? z : Log1p(Exp(z));
}

constexpr double kSqrtHalf = 0.70710678118654752440;
constexpr double kInvSqrt2Pi = 0.39894228040143267794;
constexpr double kSqrt2OverPi = 0.79788456080286535588;
constexpr double kGeluCubic = 0.044715;

template <typename U>
TFKIT_HOST_DEVICE U Apply(Activation act, U z) {
  switch (act) {
    case Activation::kRelu:
      return z > U(0) ? z : U(0);
    case Activation::kGelu:
      return U(0.5) * z * (U(1) + Erf(z * U(kSqrtHalf)));
    case Activation::kGeluTanh:
      return U(0.5) * z * (U(1) + Tanh(U(kSqrt2OverPi) * (z + U(kGeluCubic) * z * z * z)));
    case Activation::kSilu:
      return z * Sigmoid(z);
    case Activation::kSigmoid:
      return Sigmoid(z);
    case Activation::kTanh:
      return Tanh(z);
    case Activation::kMish:
      return z * Tanh(Softplus(z));
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
      return U(0.5) * (U(1) + Erf(z * U(kSqrtHalf))) + z * U(kInvSqrt2Pi) * Exp(U(-0.5) * z * z);
    case Activation::kGeluTanh: {
      const U t = Tanh(U(kSqrt2OverPi) * (z + U(kGeluCubic) * z * z * z));
      const U du = U(kSqrt2OverPi) * (U(1) + U(3 * kGeluCubic) * z * z);
      return U(0.5) * (U(1) + t) + U(0.5) * z * (U(1) - t * t) * du;
    }
    case Activation::kSilu: {
      const U s = Sigmoid(z);
      return s * (U(1) + z * (U(1) - s));
    }
    case Activation::kSigmoid: {
      const U s = Sigmoid(z);
      return s * (U(1) - s);
    }
    case Activation::kTanh: {
      const U t = Tanh(z);
      return U(1) - t * t;
    }
    case Activation::kMish: {
      const U t = Tanh(Softplus(z));
      return t + z * Sigmoid(z) * (U(1) - t * t);
    }
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

#endif  // TFKIT_KERNELS_ACTIVATION_ACTIVATION_MATH_H_
