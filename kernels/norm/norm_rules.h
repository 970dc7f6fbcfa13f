// The norm family's rules, written once for the op registrations and their
// shape functions, the OpKernels and the kernels module (tfkit/ops/_checks.py
// states the same rule for the Python wrappers, with the same message).
#ifndef TFKIT_KERNELS_NORM_NORM_RULES_H_
#define TFKIT_KERNELS_NORM_NORM_RULES_H_

#include <cmath>
#include <limits>
#include <sstream>
#include <string>

namespace tfkit {
namespace kernels {
namespace norm {

// epsilon, a float32 attr: finite and at least the smallest normal float32,
// so no denormal flush can turn it into 0.
inline std::string EpsilonError(float epsilon) {
  constexpr float kSmallestNormal = std::numeric_limits<float>::min();
  if (std::isfinite(epsilon) && epsilon >= kSmallestNormal) return "";
  std::ostringstream message;
  message << "epsilon must be > 0, finite and a normal float32 (>= " << kSmallestNormal << "), got " << epsilon;
  return message.str();
}

}  // namespace norm
}  // namespace kernels
}  // namespace tfkit

#endif  // TFKIT_KERNELS_NORM_NORM_RULES_H_
