// CUDA kernels for the embedding family; see embedding_gpu.h for the contract.
// No floating-point atomics: every sum has one thread (or one warp, in a
// fixed order) and the results are the same on every run.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <algorithm>

#include "kernels/common/cuda_utils.cuh"
#include "kernels/embedding/embedding_gpu.h"

namespace tfkit {
namespace kernels {
namespace embedding {
namespace {

using Flag = unsigned long long;  // NOLINT(runtime/int): atomicMin's type


template <typename Index>
__global__ void CheckKernel(const Index* __restrict__ ids, const int64_t* __restrict__ splits, BagShape shape,
                            int64_t* status) {
  const int64_t count = max(shape.ids, shape.bags + 1);
  for (int64_t i = GridStart(); i < count; i += GridStep()) {
    if (i < shape.ids && (ids[i] < 0 || static_cast<int64_t>(ids[i]) >= shape.vocab)) {
      atomicMin(reinterpret_cast<Flag*>(status), static_cast<Flag>(i));
    }
    if (i <= shape.bags) {
      const bool bad = i == 0 ? splits[0] != 0
                              : splits[i] < splits[i - 1] || splits[i] > shape.ids ||
                                    (i == shape.bags && splits[i] != shape.ids);
      if (bad) atomicMin(reinterpret_cast<Flag*>(status + 1), static_cast<Flag>(i));
    }
  }
}

// Bag b's ids [*lo, *hi), clamped into [0, n) (a bad bag is empty).
__device__ __forceinline__ void BagRange(const int64_t* splits, int64_t b, int64_t n, int64_t* lo, int64_t* hi) {
  *lo = min(max(splits[b], int64_t{0}), n);
  *hi = max(min(splits[b + 1], n), *lo);
}

template <typename Index>
__device__ __forceinline__ bool GoodId(Index id, int64_t vocab) {
  return id >= 0 && static_cast<int64_t>(id) < vocab;
}

template <typename W, typename T>
__device__ __forceinline__ W WeightAt(const T* weights, bool weighted, int64_t i) {
  return weighted ? Load<W>(weights[i]) : W(1);
}

template <typename W, typename T>
__device__ W Scale(const T* weights, const BagShape& shape, int64_t lo, int64_t hi) {
  W sum_sq = static_cast<W>(hi - lo);
  if (shape.weighted) {
    sum_sq = 0;
    for (int64_t i = lo; i < hi; ++i) sum_sq += Load<W>(weights[i]) * Load<W>(weights[i]);
  }
  return BagScale(shape.combiner, hi - lo, sum_sq);
}

// One thread per (bag, column): consecutive threads read consecutive columns
// of the same params row. The rows are added in U, in chunks finished in
// Wide<U> (ChunkedSum, as the CPU kernel's blocks).
template <typename T, typename Index, typename U>
__global__ void ForwardKernel(const Index* __restrict__ ids, const int64_t* __restrict__ splits,
                              const T* __restrict__ params, const T* __restrict__ weights, BagShape shape,
                              T* __restrict__ y) {
  using W = Wide<U>;
  const int64_t dim = shape.dim;
  for (int64_t e = GridStart(); e < shape.bags * dim; e += GridStep()) {
    const int64_t b = e / dim;
    const int64_t j = e % dim;
    int64_t lo, hi;
    BagRange(splits, b, shape.ids, &lo, &hi);
    ChunkedSum<U> sum;
    W squares = 0;
    for (int64_t i = lo; i < hi; ++i) {
      const U w = WeightAt<U>(weights, shape.weighted, i);
      squares += static_cast<W>(w) * w;
      const Index id = ids[i];
      if (GoodId(id, shape.vocab)) sum.Add(w * Load<U>(params[id * dim + j]));
    }
    y[e] = Store<T>(static_cast<U>(sum.Total() * BagScale(shape.combiner, hi - lo, squares)));
  }
}

template <typename T, typename W>
__global__ void ValuesGradKernel(const T* __restrict__ dy, const int64_t* __restrict__ splits,
                                 const T* __restrict__ weights, BagShape shape, T* __restrict__ d_values) {
  const int64_t dim = shape.dim;
  for (int64_t e = GridStart(); e < shape.bags * dim; e += GridStep()) {
    const int64_t b = e / dim;
    const int64_t j = e % dim;
    int64_t lo, hi;
    BagRange(splits, b, shape.ids, &lo, &hi);
    const W g = Load<W>(dy[e]) * Scale<W>(weights, shape, lo, hi);
    for (int64_t i = lo; i < hi; ++i) {
      d_values[i * dim + j] = Store<T>(static_cast<Acc<W>>(WeightAt<W>(weights, shape.weighted, i) * g));
    }
  }
}

// The bag holding id position i: the last b with splits[b] <= i.
__device__ int64_t BagOf(const int64_t* splits, int64_t bags, int64_t i) {
  int64_t lo = 0, hi = bags - 1;
  while (lo < hi) {
    const int64_t mid = (lo + hi + 1) / 2;
    if (splits[mid] <= i) {
      lo = mid;
    } else {
      hi = mid - 1;
    }
  }
  return lo;
}

// One warp per id: dots[i] = dy[bag of i] . params[ids[i]].
template <typename T, typename Index, typename W>
__global__ void DotKernel(const T* __restrict__ dy, const Index* __restrict__ ids,
                          const int64_t* __restrict__ splits, const T* __restrict__ params, BagShape shape,
                          W* __restrict__ dots) {
  const int lane = threadIdx.x % kWarpSize;
  const int64_t warps = GridStep() / kWarpSize;
  for (int64_t i = GridStart() / kWarpSize; i < shape.ids; i += warps) {
    const Index id = ids[i];
    W dot = 0;
    if (GoodId(id, shape.vocab)) {
      const T* dy_row = dy + BagOf(splits, shape.bags, i) * shape.dim;
      const T* row = params + id * shape.dim;
      for (int64_t j = lane; j < shape.dim; j += kWarpSize) dot += Load<W>(dy_row[j]) * Load<W>(row[j]);
    }
    dot = WarpSum(dot);
    if (lane == 0) dots[i] = dot;
  }
}

// One thread per bag: d_weights from the dots (and sqrtn's normaliser term).
template <typename T, typename W>
__global__ void WeightsGradKernel(const int64_t* __restrict__ splits, const T* __restrict__ weights,
                                  const W* __restrict__ dots, BagShape shape, T* __restrict__ d_weights) {
  for (int64_t b = GridStart(); b < shape.bags; b += GridStep()) {
    int64_t lo, hi;
    BagRange(splits, b, shape.ids, &lo, &hi);
    const W scale = Scale<W>(weights, shape, lo, hi);
    W normaliser = 0;
    if (shape.combiner == Combiner::kSqrtn) {
      for (int64_t i = lo; i < hi; ++i) normaliser += Load<W>(weights[i]) * dots[i];
      normaliser *= scale * scale * scale;
    }
    for (int64_t i = lo; i < hi; ++i) {
      const W grad = WeightGrad(shape.combiner, scale, dots[i], normaliser, Load<W>(weights[i]));
      d_weights[i] = Store<T>(static_cast<Acc<W>>(grad));
    }
  }
}

}  // namespace

template <typename Index>
cudaError_t LaunchCheckBags(cudaStream_t stream, const Index* ids, const int64_t* splits, const BagShape& shape,
                            int64_t* status) {
  static_assert(sizeof(Flag) == sizeof(int64_t), "status is two int64");
  cudaError_t err = cudaMemsetAsync(status, 0x7f, 2 * sizeof(int64_t), stream);  // kNoneBad in each
  if (err != cudaSuccess) return err;
  const int64_t count = std::max(shape.ids, shape.bags + 1);
  CheckKernel<<<ElementBlocks(count), kElementThreads, 0, stream>>>(ids, splits, shape, status);
  return cudaGetLastError();
}

template <typename T, typename Index>
cudaError_t LaunchEmbeddingBag(cudaStream_t stream, const Index* ids, const int64_t* splits, const T* params,
                               const T* weights, const BagShape& shape, T* y) {
  const int64_t outputs = shape.bags * shape.dim;
  if (outputs == 0) return cudaSuccess;
  ForwardKernel<DeviceT<T>, Index, Acc<T>><<<ElementBlocks(outputs), kElementThreads, 0, stream>>>(
      ids, splits, reinterpret_cast<const DeviceT<T>*>(params), reinterpret_cast<const DeviceT<T>*>(weights), shape,
      reinterpret_cast<DeviceT<T>*>(y));
  return cudaGetLastError();
}

template <typename T, typename Index>
cudaError_t LaunchEmbeddingBagGrad(cudaStream_t stream, const T* dy, const Index* ids, const int64_t* splits,
                                   const T* params, const T* weights, const BagShape& shape, BagSum<T>* dots,
                                   T* d_values, T* d_weights) {
  using D = DeviceT<T>;
  const int64_t outputs = shape.bags * shape.dim;
  if (outputs == 0 || shape.ids == 0) return cudaSuccess;
  const D* dy_d = reinterpret_cast<const D*>(dy);
  const D* weights_d = reinterpret_cast<const D*>(weights);
  ValuesGradKernel<D, BagSum<T>><<<ElementBlocks(outputs), kElementThreads, 0, stream>>>(
      dy_d, splits, weights_d, shape, reinterpret_cast<D*>(d_values));
  if (!shape.weighted) return cudaGetLastError();
  DotKernel<D, Index, BagSum<T>><<<ElementBlocks(shape.ids * kWarpSize), kElementThreads, 0, stream>>>(
      dy_d, ids, splits, reinterpret_cast<const D*>(params), shape, dots);
  WeightsGradKernel<D, BagSum<T>><<<ElementBlocks(shape.bags), kElementThreads, 0, stream>>>(
      splits, weights_d, dots, shape, reinterpret_cast<D*>(d_weights));
  return cudaGetLastError();
}

#define TFKIT_INSTANTIATE_EMBEDDING(T, Index)                                                                    \
  template cudaError_t LaunchEmbeddingBag<T, Index>(cudaStream_t, const Index*, const int64_t*, const T*,        \
                                                    const T*, const BagShape&, T*);                              \
  template cudaError_t LaunchEmbeddingBagGrad<T, Index>(cudaStream_t, const T*, const Index*, const int64_t*,    \
                                                        const T*, const T*, const BagShape&, BagSum<T>*, T*, T*);
#define TFKIT_INSTANTIATE_EMBEDDING_TYPES(Index) \
  TFKIT_INSTANTIATE_EMBEDDING(float, Index)      \
  TFKIT_INSTANTIATE_EMBEDDING(double, Index)     \
  TFKIT_INSTANTIATE_EMBEDDING(Half, Index)       \
  TFKIT_INSTANTIATE_EMBEDDING(BFloat16, Index)   \
  template cudaError_t LaunchCheckBags<Index>(cudaStream_t, const Index*, const int64_t*, const BagShape&, int64_t*);

TFKIT_INSTANTIATE_EMBEDDING_TYPES(int32_t)
TFKIT_INSTANTIATE_EMBEDDING_TYPES(int64_t)
#undef TFKIT_INSTANTIATE_EMBEDDING_TYPES
#undef TFKIT_INSTANTIATE_EMBEDDING

}  // namespace embedding
}  // namespace kernels
}  // namespace tfkit
