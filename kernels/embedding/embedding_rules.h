// The embedding family's rules, written once for the op registrations, the
// OpKernels and the kernels module: the combiners' names (the ops'
// `combiner` attr, in the order of the Combiner enum), the bags' shape rule
// and the messages for a bad id, split or variable handle.
#ifndef TFKIT_KERNELS_EMBEDDING_EMBEDDING_RULES_H_
#define TFKIT_KERNELS_EMBEDDING_EMBEDDING_RULES_H_

#include <cstdint>
#include <string>

#include "kernels/common/rules.h"

namespace tfkit {
namespace kernels {
namespace embedding {

enum class Combiner : int { kSum = 0, kMean = 1, kSqrtn = 2 };

inline constexpr const char* kCombinerNames[] = {"sum", "mean", "sqrtn"};
static_assert(sizeof(kCombinerNames) / sizeof(kCombinerNames[0]) == static_cast<int>(Combiner::kSqrtn) + 1,
              "one name per Combiner, in the enum's order");

inline std::string CombinerAttrSpec() { return AttrSpec("combiner", kCombinerNames, "sum"); }

inline std::string CombinerNamed(const std::string& name, Combiner* combiner) {
  return EnumNamed("combiner", kCombinerNames, name, combiner);
}

// The shape of one call; weighted is false when no weights are given.
struct BagShape {
  int64_t bags = 0;
  int64_t ids = 0;
  int64_t vocab = 0;
  int64_t dim = 0;
  bool weighted = false;
  Combiner combiner = Combiner::kSum;
};

// indices [n], row_splits [bags + 1], params [vocabulary, dim], weights [n]
// or [0] for none. Fills *shape (all but the combiner); unknown sizes (shape
// functions) agree with any.
inline std::string BagShapeError(const Dims& ids, const Dims& splits, const Dims& params, const Dims& weights,
                                 BagShape* shape) {
  if (ids.size() != 1) return "indices must be flat ids [n], got shape " + DimsString(ids);
  if (splits.size() == 1 && splits[0] == 0) {
    return "row_splits must not be empty: it has shape [bags + 1], [1] (a single 0) for no bags, got shape [0]";
  }
  if (splits.size() != 1) return "row_splits must have shape [bags + 1], got shape " + DimsString(splits);
  if (params.size() != 2) return "params must have shape [vocabulary, dim], got shape " + DimsString(params);
  shape->ids = ids[0];
  shape->bags = DimKnown(splits[0]) ? splits[0] - 1 : kUnknownDim;
  shape->vocab = params[0];
  shape->dim = params[1];
  if (weights.size() != 1 || !(weights[0] == 0 || DimsAgree(weights[0], shape->ids))) {
    return "weights must have the shape of indices " + DimsString({shape->ids}) + " (or [0] for none), got shape " +
           DimsString(weights);
  }
  shape->weighted = shape->ids > 0 && weights[0] == shape->ids;
  return "";
}

// params of the resource ops: a variable's handle, a scalar.
inline std::string HandleShapeError(const Dims& params) {
  return ShapeError("params", params, {}, "the handle of a resource variable");
}

inline std::string BadIdError(int64_t position, int64_t value, int64_t vocab) {
  return "indices must be in [0, " + std::to_string(vocab) + ") (the vocabulary size, the rows of params), got " +
         std::to_string(value) + " at flat position " + std::to_string(position);
}

inline std::string BadSplitError(int64_t position, int64_t ids) {
  return "row_splits must start at 0, never decrease and end at " + std::to_string(ids) +
         " (the number of indices); position " + std::to_string(position) + " breaks that";
}

}  // namespace embedding
}  // namespace kernels
}  // namespace tfkit

#endif  // TFKIT_KERNELS_EMBEDDING_EMBEDDING_RULES_H_
