// The vocabulary of the rules every family writes once and every caller
// shares: the op registrations and their shape functions, the OpKernels and
// the kernels module (framework-free; host code only).
//
// - Names: the allowed values of a string attr, listed once in the order of
//   the family's enum; `IndexOfName` reads an attr, `AttrSpec` writes the
//   REGISTER_OP attr ("activation: {'linear', 'relu'} = 'relu'"),
//   `JoinNames` the list in messages, `EnumNamed` reads a name into its enum.
// - Dims: a shape as sizes, `kUnknownDim` where a shape function does not
//   know a size yet. A rule returns the empty string when the shapes agree,
//   else the message of the InvalidArgument error (or Python ValueError) to
//   raise, which names the argument and what was expected. The checks every
//   family shares (ranks, shapes, element counts) are here too.
#ifndef TFKIT_KERNELS_COMMON_RULES_H_
#define TFKIT_KERNELS_COMMON_RULES_H_

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

namespace tfkit {
namespace kernels {

template <size_t N>
using Names = const char* const (&)[N];

// The position of `name` in `names`, or -1.
template <size_t N>
int IndexOfName(Names<N> names, const std::string& name) {
  for (size_t i = 0; i < N; ++i) {
    if (name == names[i]) return static_cast<int>(i);
  }
  return -1;
}

// "a, b, c", each name between `quote`s.
template <size_t N>
std::string JoinNames(Names<N> names, const char* quote = "") {
  std::string joined;
  for (size_t i = 0; i < N; ++i) joined += std::string(i ? ", " : "") + quote + names[i] + quote;
  return joined;
}

// The REGISTER_OP spec of a string attr restricted to `names`.
template <size_t N>
std::string AttrSpec(const char* attr, Names<N> names, const char* default_name) {
  return std::string(attr) + ": {" + JoinNames(names, "'") + "} = '" + default_name + "'";
}

// The error for a name that is not in `names`.
template <size_t N>
std::string UnknownNameError(const char* attr, Names<N> names, const std::string& name) {
  return std::string(attr) + " must be one of " + JoinNames(names) + ", got '" + name + "'";
}

// Reads `name`, an allowed value of the string attr `attr`, into the enum
// whose values are listed in `names`' order; the error message when it is
// none of them.
template <typename Enum, size_t N>
std::string EnumNamed(const char* attr, Names<N> names, const std::string& name, Enum* value) {
  const int index = IndexOfName(names, name);
  if (index < 0) return UnknownNameError(attr, names, name);
  *value = static_cast<Enum>(index);
  return "";
}

using Dims = std::vector<int64_t>;
constexpr int64_t kUnknownDim = -1;

inline bool DimKnown(int64_t dim) { return dim >= 0; }

// Whether two sizes can be the same (an unknown size agrees with any).
inline bool DimsAgree(int64_t a, int64_t b) { return !DimKnown(a) || !DimKnown(b) || a == b; }

inline std::string DimString(int64_t dim) { return DimKnown(dim) ? std::to_string(dim) : "?"; }

// "[2,3,?]", as TensorShape::DebugString writes a shape: how every tfkit
// message prints one (tfkit/_shapes.py's shape_string is the same rule for
// Python's messages).
inline std::string DimsString(const Dims& dims) {
  std::string s = "[";
  for (size_t i = 0; i < dims.size(); ++i) s += (i ? "," : "") + DimString(dims[i]);
  return s + "]";
}

// The product of `dims` into *product: 0 if a size is 0, else kUnknownDim
// if one is unknown. False where it does not fit in int64 (as the sizes of
// a tensor with no elements, or a part of them, may not).
inline bool DimProduct(const Dims& dims, int64_t* product) {
  *product = 1;
  if (std::find(dims.begin(), dims.end(), 0) != dims.end()) {
    *product = 0;
  } else if (!std::all_of(dims.begin(), dims.end(), DimKnown)) {
    *product = kUnknownDim;
  } else {
    for (int64_t dim : dims) {
      if (*product > std::numeric_limits<int64_t>::max() / dim) return false;
      *product *= dim;
    }
  }
  return true;
}

// The number of elements of `dims` into *count, or the error when it does
// not fit in int64; `what` names them ("x", "the rows of x").
inline std::string CountError(const std::string& what, const Dims& dims, int64_t* count) {
  if (DimProduct(dims, count)) return "";
  return what + " must have at most " + std::to_string(std::numeric_limits<int64_t>::max()) +
         " elements (int64), got the sizes " + DimsString(dims);
}

// The number of elements of the part dims[begin, end) of a shape, which
// `what` names ("the rows of x"): 0 when the shape has none (and the part's
// sizes may multiply past int64); the error where a static shape's count
// does not fit in int64. `name` names the whole shape.
inline std::string PartCountError(const char* name, const std::string& what, const Dims& dims, size_t begin,
                                  size_t end, int64_t* count) {
  std::string error = CountError(name, dims, count);
  if (error.empty() && *count != 0) error = CountError(what, Dims(dims.begin() + begin, dims.begin() + end), count);
  return error;
}

// Whether two shapes can be the same: one rank, sizes that agree.
inline bool ShapesAgree(const Dims& a, const Dims& b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), DimsAgree);
}

// The input checks every family shares (tfkit/op_utils.h's Check* calls
// them on tensors in OpKernels and on static shapes in shape functions).
inline std::string RankAtLeastError(const char* name, const Dims& t, size_t rank) {
  if (t.size() >= rank) return "";
  return std::string(name) + " must have rank >= " + std::to_string(rank) + ", got shape " + DimsString(t);
}

// `why`, if given, says where the expected shape comes from.
inline std::string ShapeError(const char* name, const Dims& t, const Dims& expected, const std::string& why = "") {
  if (ShapesAgree(t, expected)) return "";
  return std::string(name) + " must have shape " + DimsString(expected) + (why.empty() ? "" : " (" + why + ")") +
         ", got shape " + DimsString(t);
}

inline std::string SameShapeError(const char* name, const Dims& t, const char* other_name, const Dims& other) {
  if (ShapesAgree(t, other)) return "";
  return std::string(name) + " must have the shape of " + other_name + " " + DimsString(other) + ", got shape " +
         DimsString(t);
}

// A per-feature parameter of x: shape [the last dimension of x].
inline std::string LastDimParamError(const char* name, const Dims& param, const Dims& x) {
  const int64_t last = x.empty() ? kUnknownDim : x.back();
  if (param.size() == 1 && DimsAgree(param[0], last)) return "";
  return std::string(name) + " must have shape " + DimsString({last}) + " (the last dimension of x " + DimsString(x) +
         "), got shape " + DimsString(param);
}

}  // namespace kernels
}  // namespace tfkit

#endif  // TFKIT_KERNELS_COMMON_RULES_H_
