// The activation family's rules, written once for the op registrations, the
// shape functions, the OpKernels and the kernels module: the activations'
// names (the ops' `activation` attr, in the order of the Activation enum)
// and the gated ops' shape rules.
#ifndef TFKIT_KERNELS_ACTIVATION_ACTIVATION_RULES_H_
#define TFKIT_KERNELS_ACTIVATION_ACTIVATION_RULES_H_

#include <cstdint>
#include <string>

#include "kernels/common/rules.h"

namespace tfkit {
namespace kernels {
namespace activation {

enum class Activation : int32_t { kLinear, kRelu, kGelu, kGeluTanh, kSilu, kSigmoid, kTanh, kMish };

inline constexpr const char* kActivationNames[] = {"linear", "relu",    "gelu", "gelu_tanh",
                                                   "silu",   "sigmoid", "tanh", "mish"};
static_assert(sizeof(kActivationNames) / sizeof(kActivationNames[0]) == static_cast<int>(Activation::kMish) + 1,
              "one name per Activation, in the enum's order");

// The ops' `activation` attr spec, defaulting to `default_name`.
inline std::string ActivationAttrSpec(const char* default_name) {
  return AttrSpec("activation", kActivationNames, default_name);
}

// Reads an activation name; the error message when it is none.
inline std::string ActivationNamed(const std::string& name, Activation* act) {
  return EnumNamed("activation", kActivationNames, name, act);
}

// The gated ops: x [..., 2h] (the halves [a, b]) gives y [..., h]. An
// unknown last dimension gives an unknown h; rank 0 is refused elsewhere.
inline std::string GatedShapeError(const Dims& x, Dims* y) {
  *y = x;
  if (x.empty()) return "x must have rank >= 1, got shape " + DimsString(x);
  const int64_t last = x.back();
  if (DimKnown(last) && last % 2 != 0) {
    return "the last dimension of x must be even (2 * units: the halves [a, b]), got shape " + DimsString(x);
  }
  y->back() = DimKnown(last) ? last / 2 : kUnknownDim;
  return "";
}

// The gated grad ops: dy has y's shape, x's with its last dimension halved.
inline std::string GatedGradShapeError(const Dims& dy, const Dims& x) {
  Dims y;
  const std::string error = GatedShapeError(x, &y);
  return error.empty() ? ShapeError("dy", dy, y, "x's with its last dimension halved") : error;
}

}  // namespace activation
}  // namespace kernels
}  // namespace tfkit

#endif  // TFKIT_KERNELS_ACTIVATION_ACTIVATION_RULES_H_
