// Framework-free scalar helpers shared by every tfkit kernel family.
#ifndef TFKIT_KERNELS_COMMON_TYPES_H_
#define TFKIT_KERNELS_COMMON_TYPES_H_

#include <cstdint>

// Always inlined on the host too: CPU loops may be built for AVX2, and
// GCC only inlines (and so vectorizes) them there when told to.
#ifdef __CUDACC__
#define TFKIT_HOST_DEVICE __host__ __device__ __forceinline__
#elif defined(__GNUC__)
#define TFKIT_HOST_DEVICE inline __attribute__((always_inline))
#else
#define TFKIT_HOST_DEVICE inline
#endif

namespace tfkit {
namespace kernels {

// 16-bit storage types for the GPU launchers: bit-compatible with
// Eigen::half / __half and Eigen::bfloat16 / __nv_bfloat16.
struct alignas(2) Half {
  uint16_t bits;
};
struct alignas(2) BFloat16 {
  uint16_t bits;
};

// Accumulation type: float for float and the 16-bit types, double for double.
template <typename T>
struct AccumulatorOf {
  using type = float;
};
template <>
struct AccumulatorOf<double> {
  using type = double;
};
template <typename T>
using Acc = typename AccumulatorOf<T>::type;

// a * b for a shard-size estimate, saturated: a huge row of a tensor with
// no element must not overflow it.
inline int64_t RowCostOf(int64_t a, int64_t b) {
  int64_t product;
  return __builtin_mul_overflow(a, b, &product) ? INT64_MAX : product;
}

}  // namespace kernels
}  // namespace tfkit

#endif  // TFKIT_KERNELS_COMMON_TYPES_H_
