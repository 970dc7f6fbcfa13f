// CUDA kernels for the interaction family; see interaction_gpu.h for the contract.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cmath>

#include "kernels/common/cuda_utils.cuh"
#include "kernels/interaction/interaction_gpu.h"

namespace tfkit {
namespace kernels {
namespace interaction {
namespace {

constexpr int kThreads = 256;
constexpr int64_t kSharedBytes = 48 * 1024;
constexpr int kMaxBlocks = 65535;

// The pair at position p of the lower triangle (PairIndex's inverse).
__device__ __forceinline__ void PairAt(int64_t p, bool self_interaction, int64_t* i, int64_t* j) {
  const double root = sqrt(8.0 * static_cast<double>(p) + 1.0);
  int64_t row = static_cast<int64_t>(self_interaction ? (root - 1.0) / 2.0 : (root + 1.0) / 2.0);
  while (row > 0 && PairIndex(row, 0, self_interaction) > p) --row;
  while (PairIndex(row + 1, 0, self_interaction) <= p) ++row;
  *i = row;
  *j = p - PairIndex(row, 0, self_interaction);
}

// Rows of `ld` elements: the item's features copied into shared memory
// (ld odd, so a warp's rows fall in different banks).
template <typename U, typename T>
__device__ __forceinline__ void CopyTile(const T* x, const InteractionShape& shape, int64_t ld, U* tile) {
  for (int64_t e = threadIdx.x; e < shape.features * shape.dim; e += blockDim.x) {
    tile[(e / shape.dim) * ld + e % shape.dim] = Load<U>(x[e]);
  }
  __syncthreads();
}

// x: one item's features, rows `ld` apart (shared memory, or T in global).
template <typename U, typename S, typename T>
__device__ __forceinline__ void ItemPairs(const S* x, int64_t ld, const InteractionShape& shape, T* out) {
  for (int64_t p = threadIdx.x; p < shape.pairs; p += blockDim.x) {
    int64_t i, j;
    PairAt(p, shape.self_interaction, &i, &j);
    ChunkedSum<U> sum;
    for (int64_t d = 0; d < shape.dim; ++d) sum.Add(Load<U>(x[i * ld + d]) * Load<U>(x[j * ld + d]));
    out[p] = Store<T>(static_cast<U>(sum.Total()));
  }
}

template <typename T, typename U, bool kShared>
__global__ void InteractKernel(const T* __restrict__ features, InteractionShape shape, T* __restrict__ out) {
  extern __shared__ unsigned char shared[];
  U* tile = reinterpret_cast<U*>(shared);
  const int64_t ld = shape.dim | 1;
  for (int64_t b = blockIdx.x; b < shape.batch; b += gridDim.x) {
    const T* x = features + b * shape.features * shape.dim;
    if (kShared) {
      CopyTile(x, shape, ld, tile);
      ItemPairs<U>(tile, ld, shape, out + b * shape.pairs);
      __syncthreads();
    } else {
      ItemPairs<U>(x, shape.dim, shape, out + b * shape.pairs);
    }
  }
}

// S[i, j] of the output gradient g of one item.
template <typename U, typename S>
__device__ __forceinline__ U SymmetricGrad(const S* g, int64_t i, int64_t j, bool self_interaction) {
  if (i == j) return self_interaction ? U(2) * Load<U>(g[PairIndex(i, i, true)]) : U(0);
  return i > j ? Load<U>(g[PairIndex(i, j, self_interaction)]) : Load<U>(g[PairIndex(j, i, self_interaction)]);
}

template <typename U, typename S, typename G, typename T>
__device__ __forceinline__ void ItemGrad(const S* x, const G* g, const InteractionShape& shape, T* dx) {
  for (int64_t e = threadIdx.x; e < shape.features * shape.dim; e += blockDim.x) {
    const int64_t i = e / shape.dim, d = e % shape.dim;
    ChunkedSum<U> sum;
    for (int64_t j = 0; j < shape.features; ++j) {
      sum.Add(SymmetricGrad<U>(g, i, j, shape.self_interaction) * Load<U>(x[j * shape.dim + d]));
    }
    dx[e] = Store<T>(static_cast<U>(sum.Total()));
  }
}

template <typename T, typename U, bool kShared>
__global__ void InteractGradKernel(const T* __restrict__ features, const T* __restrict__ grad, InteractionShape shape,
                                   T* __restrict__ grad_features) {
  extern __shared__ unsigned char shared[];
  U* tile = reinterpret_cast<U*>(shared);
  U* g_tile = tile + shape.features * shape.dim;
  const int64_t size = shape.features * shape.dim;
  for (int64_t b = blockIdx.x; b < shape.batch; b += gridDim.x) {
    const T* x = features + b * size;
    const T* g = grad + b * shape.pairs;
    if (kShared) {
      for (int64_t e = threadIdx.x; e < size; e += blockDim.x) tile[e] = Load<U>(x[e]);
      for (int64_t p = threadIdx.x; p < shape.pairs; p += blockDim.x) g_tile[p] = Load<U>(g[p]);
      __syncthreads();
      ItemGrad<U>(tile, g_tile, shape, grad_features + b * size);
      __syncthreads();
    } else {
      ItemGrad<U>(x, g, shape, grad_features + b * size);
    }
  }
}

int ItemBlocks(int64_t batch) { return static_cast<int>(std::min<int64_t>(batch, kMaxBlocks)); }

}  // namespace

template <typename T>
cudaError_t LaunchInteract(cudaStream_t stream, const T* features, const InteractionShape& shape, T* out) {
  if (shape.batch == 0 || shape.pairs == 0) return cudaSuccess;
  using D = DeviceT<T>;
  using U = Acc<T>;
  const D* x = reinterpret_cast<const D*>(features);
  D* y = reinterpret_cast<D*>(out);
  const int64_t bytes = shape.features * (shape.dim | 1) * static_cast<int64_t>(sizeof(U));
  if (bytes <= kSharedBytes) {
    InteractKernel<D, U, true><<<ItemBlocks(shape.batch), kThreads, bytes, stream>>>(x, shape, y);
  } else {
    InteractKernel<D, U, false><<<ItemBlocks(shape.batch), kThreads, 0, stream>>>(x, shape, y);
  }
  return cudaGetLastError();
}

template <typename T>
cudaError_t LaunchInteractGrad(cudaStream_t stream, const T* features, const T* grad, const InteractionShape& shape,
                               T* grad_features) {
  if (shape.batch == 0 || shape.features == 0 || shape.dim == 0) return cudaSuccess;
  using D = DeviceT<T>;
  using U = Acc<T>;
  const D* x = reinterpret_cast<const D*>(features);
  const D* g = reinterpret_cast<const D*>(grad);
  D* dx = reinterpret_cast<D*>(grad_features);
  const int64_t bytes = (shape.features * shape.dim + shape.pairs) * static_cast<int64_t>(sizeof(U));
  if (bytes <= kSharedBytes) {
    InteractGradKernel<D, U, true><<<ItemBlocks(shape.batch), kThreads, bytes, stream>>>(x, g, shape, dx);
  } else {
    InteractGradKernel<D, U, false><<<ItemBlocks(shape.batch), kThreads, 0, stream>>>(x, g, shape, dx);
  }
  return cudaGetLastError();
}

#define TFKIT_INSTANTIATE_INTERACTION(T)                                                                     \
  template cudaError_t LaunchInteract<T>(cudaStream_t, const T*, const InteractionShape&, T*);              \
  template cudaError_t LaunchInteractGrad<T>(cudaStream_t, const T*, const T*, const InteractionShape&, T*);

TFKIT_INSTANTIATE_INTERACTION(float)
TFKIT_INSTANTIATE_INTERACTION(double)
TFKIT_INSTANTIATE_INTERACTION(Half)
TFKIT_INSTANTIATE_INTERACTION(BFloat16)
#undef TFKIT_INSTANTIATE_INTERACTION

}  // namespace interaction
}  // namespace kernels
}  // namespace tfkit
