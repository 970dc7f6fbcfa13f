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
  int64_t rows = 0;    // batch * points
  Boundary boundary = Boundary::kZeros;
};

// The sizes the loops multiply: the points, and an image with no elements
// taken as 0 x 0 pixels (it samples the same zeros), so that no product of
// the sizes of data or warp can pass int64 where they have no elements.
inline std::string CountsError(const Dims& data, const Dims& warp, ResamplerShape* shape) {
  int64_t data_elements = 0;
  std::string error = CountError("data", data, &data_elements);
  const bool no_pixels = data_elements == 0;
  shape->height = no_pixels ? 0 : data[1];
  shape->width = no_pixels ? 0 : data[2];
  shape->channels = data[3];
  if (error.empty()) error = PartCountError("warp", "the points of warp", warp, 1, warp.size() - 1, &shape->points);
  if (error.empty()) error = PartCountError("warp", "the points of warp", warp, 0, warp.size() - 1, &shape->rows);
  return error;
}

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
  const std::string count_error = CountsError(data, warp, shape);
  if (!count_error.empty()) return count_error;
  *samples = warp;
  samples->front() = shape->batch;
  samples->back() = shape->channels;
  return "";
}

}  // namespace resampling
}  // namespace kernels
}  // namespace tfkit

#endif  // TFKIT_KERNELS_RESAMPLING_RESAMPLING_RULES_H_
