// The interaction family's shape rule, written once for the shape functions,
// the OpKernels and the kernels module: features [batch, features, dim]
// give the pairwise dot products [batch, pairs], pairs = F (F - 1) / 2, or
// F (F + 1) / 2 with the self-interactions (the diagonal).
#ifndef TFKIT_KERNELS_INTERACTION_INTERACTION_RULES_H_
#define TFKIT_KERNELS_INTERACTION_INTERACTION_RULES_H_

#include <cstdint>
#include <limits>
#include <string>

#include "kernels/common/rules.h"
#include "kernels/common/types.h"

namespace tfkit {
namespace kernels {
namespace interaction {

struct InteractionShape {
  int64_t batch = 0;
  int64_t features = 0;  // F
  int64_t dim = 0;       // D
  int64_t pairs = 0;     // the output's second dimension
  bool self_interaction = false;
};

// The pair count of `features` (kUnknownDim where that is unknown) into
// *pairs; false where it does not fit in int64.
inline bool PairCount(int64_t features, bool self_interaction, int64_t* pairs) {
  if (!DimKnown(features)) {
    *pairs = kUnknownDim;
    return true;
  }
  if (self_interaction && features == std::numeric_limits<int64_t>::max()) return false;
  const int64_t other = self_interaction ? features + 1 : features - 1;
  const int64_t half = (features % 2 == 0 ? features : other) / 2;
  const int64_t odd = features % 2 == 0 ? other : features;
  if (half != 0 && odd > std::numeric_limits<int64_t>::max() / half) return false;
  *pairs = half * odd;
  return true;
}

// The position of the pair (i, j), j <= i (j < i without the diagonal), in
// the row-major lower triangle: (1,0), (2,0), (2,1), (3,0), ... or, with
// the diagonal, (0,0), (1,0), (1,1), (2,0), ... (host and device code).
TFKIT_HOST_DEVICE int64_t PairIndex(int64_t i, int64_t j, bool self_interaction) {
  return (self_interaction ? i * (i + 1) : i * (i - 1)) / 2 + j;
}

// features [batch, features, dim] of a float type. Fills *shape (all but
// self_interaction, which it reads) and *output [batch, pairs]; unknown
// sizes (shape functions) agree with any.
inline std::string InteractionShapeError(const Dims& features, InteractionShape* shape, Dims* output) {
  if (features.size() != 3) {
    return "features must have rank 3 ([batch, features, dim]), got shape " + DimsString(features);
  }
  int64_t elements = 0;
  std::string error = CountError("features", features, &elements);
  if (!error.empty()) return error;
  shape->batch = features[0];
  shape->features = features[1];
  shape->dim = features[2];
  if (!PairCount(shape->features, shape->self_interaction, &shape->pairs)) {
    return std::string("the pairs of features (") + (shape->self_interaction ? "F (F + 1) / 2" : "F (F - 1) / 2") +
           " for F = " + std::to_string(shape->features) + ") must be at most " +
           std::to_string(std::numeric_limits<int64_t>::max()) + " (int64), got shape " + DimsString(features);
  }
  *output = {shape->batch, shape->pairs};
  return CountError("the output [batch, pairs]", *output, &elements);
}

}  // namespace interaction
}  // namespace kernels
}  // namespace tfkit

#endif  // TFKIT_KERNELS_INTERACTION_INTERACTION_RULES_H_
