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
//   raise, which names the argument and what was expected.
#ifndef TFKIT_KERNELS_COMMON_RULES_H_
#define TFKIT_KERNELS_COMMON_RULES_H_

#include <cstddef>
#include <cstdint>
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

// "[2,3,?]", as TensorShape::DebugString writes a shape.
inline std::string DimsString(const Dims& dims) {
  std::string s = "[";
  for (size_t i = 0; i < dims.size(); ++i) s += (i ? "," : "") + DimString(dims[i]);
  return s + "]";
}

// The product of dims[begin, end) (unknown if one is).
inline int64_t DimProduct(const Dims& dims, size_t begin, size_t end) {
  int64_t product = 1;
  for (size_t i = begin; i < end; ++i) {
    if (!DimKnown(dims[i])) return kUnknownDim;
    product *= dims[i];
  }
  return product;
}

}  // namespace kernels
}  // namespace tfkit

#endif  // TFKIT_KERNELS_COMMON_RULES_H_
