// The resampling family's rules, written once for the op registrations and
// their shape functions, the OpKernels and the kernels module: the
// boundaries' names (the ops' `boundary` attr, in the order of the Boundary
// enum) and the resampler's shape rule.
#ifndef TFKIT_KERNELS_RESAMPLING_RESAMPLING_RULES_H_
#define TFKIT_KERNELS_RESAMPLING_RESAMPLING_RULES_H_

#include <cstdint>
#include <string>

#include "kernels/common/rules.h"

namespace tfkit {
namespace kernels {
namespace resampling {

enum class Boundary : int { kZeros = 0, kClamp = 1 };

inline constexpr const char* kBoundaryNames[] = {"zeros", "clamp"};
static_assert(sizeof(kBoundaryNames) / sizeof(kBoundaryNames[0]) == static_cast<int>(Boundary::kClamp) + 1,
              "one name per Boundary, in the enum's order");

inline std::string BoundaryAttrSpec() { return AttrSpec("boundary", kBoundaryNames, "zeros"); }

inline std::string BoundaryNamed(const std::string& name, Boundary* boundary) {
  return EnumNamed("boundary", kBoundaryNames, name, boundary);
}

struct ResamplerShape {
  int64_t batch = 0;
  int64_t height = 0;
  int64_t width = 0;
  int64_t channels = 0;
  int64_t points = 0;  // sample points per batch item
  Boundary boundary = Boundary::kZeros;
};

// data [batch, height, width, channels] and warp [batch, d1, ..., dn, 2]
// give samples [batch, d1, ..., dn, channels]. Fills *shape (all but the
// boundary) and *samples; unknown sizes (shape functions) agree with any.
inline std::string ResamplerShapeError(const Dims& data, const Dims& warp, ResamplerShape* shape, Dims* samples) {
  if (data.size() != 4) {
    return "data must have rank 4 ([batch, height, width, channels]), got shape " + DimsString(data);
  }
  if (warp.size() < 2 || !DimsAgree(warp.back(), 2)) {
    return "warp must have shape [batch, ..., 2] (the x, y of each point), got shape " + DimsString(warp);
  }
  if (!DimsAgree(warp[0], data[0])) {
    return "warp's batch dimension (" + DimString(warp[0]) + ") must equal data's (" + DimString(data[0]) +
           "), got warp " + DimsString(warp) + " and data " + DimsString(data);
  }
  shape->batch = DimKnown(data[0]) ? data[0] : warp[0];
  shape->height = data[1];
  shape->width = data[2];
  shape->channels = data[3];
  shape->points = DimProduct(warp, 1, warp.size() - 1);
  *samples = warp;
  samples->front() = shape->batch;
  samples->back() = shape->channels;
  return "";
}

}  // namespace resampling
}  // namespace kernels
}  // namespace tfkit

#endif  // TFKIT_KERNELS_RESAMPLING_RESAMPLING_RULES_H_
