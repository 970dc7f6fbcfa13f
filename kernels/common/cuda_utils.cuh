// Framework-free CUDA helpers shared by tfkit kernel families.
#ifndef TFKIT_KERNELS_COMMON_CUDA_UTILS_CUH_
#define TFKIT_KERNELS_COMMON_CUDA_UTILS_CUH_

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <algorithm>
#include <cstdint>

#include "kernels/common/accumulate.h"
#include "kernels/common/types.h"

namespace tfkit {
namespace kernels {

constexpr int kWarpSize = 32;

// Maps the launchers' storage types to CUDA's own scalar types.
template <typename T>
struct DeviceType {
  using type = T;
};
template <>
struct DeviceType<Half> {
  using type = __half;
};
template <>
struct DeviceType<BFloat16> {
  using type = __nv_bfloat16;
};
template <typename T>
using DeviceT = typename DeviceType<T>::type;

// Threads per block of the element-wise kernels, and the blocks of a
// grid-stride loop over n elements (capped; each thread then loops).
constexpr int kElementThreads = 256;
inline int ElementBlocks(int64_t n) {
  const int64_t blocks = (n + kElementThreads - 1) / kElementThreads;
  return static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(blocks, 65535)));
}

// A grid-stride loop: for (int64_t i = GridStart(); i < n; i += GridStep()).
__device__ __forceinline__ int64_t GridStart() { return blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; }
__device__ __forceinline__ int64_t GridStep() { return static_cast<int64_t>(gridDim.x) * blockDim.x; }

template <typename U, typename T>
__device__ __forceinline__ U Load(T v) {
  return static_cast<U>(v);
}
template <>
__device__ __forceinline__ float Load<float, __half>(__half v) {
  return __half2float(v);
}
template <>
__device__ __forceinline__ float Load<float, __nv_bfloat16>(__nv_bfloat16 v) {
  return __bfloat162float(v);
}

template <typename T, typename U>
__device__ __forceinline__ T Store(U v) {
  return static_cast<T>(v);
}
template <>
__device__ __forceinline__ __half Store<__half, float>(float v) {
  return __float2half_rn(v);
}
template <>
__device__ __forceinline__ __nv_bfloat16 Store<__nv_bfloat16, float>(float v) {
  return __float2bfloat16_rn(v);
}

template <typename U>
__device__ __forceinline__ U WarpSum(U v) {
  for (int offset = kWarpSize / 2; offset > 0; offset /= 2) {
    v += __shfl_xor_sync(0xffffffffu, v, offset);
  }
  return v;
}

// One thread's share of a long sum: terms are added in U, and every kChunk
// terms the chunk is moved into a Wide<U> total, so the error does not grow
// with the number of terms (the GPU counterpart of BlockedSum).
template <typename U>
struct ChunkedSum {
  static constexpr int kChunk = 256;
  U chunk = 0;
  int count = 0;
  Wide<U> total = 0;

  __device__ __forceinline__ void Add(U v) {
    chunk += v;
    if (++count == kChunk) {
      total += static_cast<Wide<U>>(chunk);
      chunk = 0;
      count = 0;
    }
  }
  __device__ __forceinline__ Wide<U> Total() const {
    return total + static_cast<Wide<U>>(chunk);
  }
};

// Sum of v over the block, returned to every thread. `scratch` holds one
// value per warp; blockDim.x must be a multiple of kWarpSize.
template <typename U>
__device__ __forceinline__ U BlockSum(U v, U* scratch) {
  const int lane = threadIdx.x % kWarpSize;
  const int warp = threadIdx.x / kWarpSize;
  const int warps = blockDim.x / kWarpSize;
  v = WarpSum(v);
  __syncthreads();
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  v = lane < warps ? scratch[lane] : U(0);
  return WarpSum(v);
}

}  // namespace kernels
}  // namespace tfkit

#endif  // TFKIT_KERNELS_COMMON_CUDA_UTILS_CUH_
