// CUDA kernels for the resampling family; see resampling_gpu.h for the contract.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "kernels/common/cuda_utils.cuh"
#include "kernels/resampling/resampling_gpu.h"

namespace tfkit {
namespace kernels {
namespace resampling {
namespace {

template <typename T, typename U>
__device__ __forceinline__ bool PointTaps(const T* warp, int64_t row, const ResamplerShape& shape, Taps<U>* taps) {
  return TapsOf(Load<U>(warp[2 * row]), Load<U>(warp[2 * row + 1]), shape, taps);
}

template <typename T, typename U>
__device__ __forceinline__ U Tap(const T* image, const Taps<U>& taps, int k, int64_t channels, int64_t c) {
  return taps.pixel[k] < 0 ? U(0) : Load<U>(image[taps.pixel[k] * channels + c]);
}

// One thread per output element.
template <typename T, typename U>
__global__ void ResampleKernel(const T* __restrict__ data, const T* __restrict__ warp, ResamplerShape shape,
                               T* __restrict__ out) {
  const int64_t pixels = shape.height * shape.width;
  for (int64_t i = GridStart(); i < shape.rows * shape.channels; i += GridStep()) {
    const int64_t row = i / shape.channels, c = i % shape.channels;
    Taps<U> taps;
    U value = 0;
    if (PointTaps(warp, row, shape, &taps)) {
      const T* image = data + (row / shape.points) * pixels * shape.channels;
      for (int k = 0; k < 4; ++k) value += taps.weight[k] * Tap(image, taps, k, shape.channels, c);
    }
    out[i] = Store<T>(value);
  }
}

// One thread per point, summing over its channels.
template <typename T, typename U>
__global__ void WarpGradKernel(const T* __restrict__ data, const T* __restrict__ warp, const T* __restrict__ grad,
                               ResamplerShape shape, T* __restrict__ grad_warp) {
  const int64_t pixels = shape.height * shape.width, channels = shape.channels;
  for (int64_t row = GridStart(); row < shape.rows; row += GridStep()) {
    Taps<U> taps;
    if (!PointTaps(warp, row, shape, &taps)) {
      grad_warp[2 * row] = grad_warp[2 * row + 1] = Store<T>(U(0));
      continue;
    }
    const T* image = data + (row / shape.points) * pixels * channels;
    ChunkedSum<U> gx, gy;
    for (int64_t c = 0; c < channels; ++c) {
      const U g = Load<U>(grad[row * channels + c]);
      const U v00 = Tap(image, taps, 0, channels, c), v10 = Tap(image, taps, 1, channels, c);
      const U v01 = Tap(image, taps, 2, channels, c), v11 = Tap(image, taps, 3, channels, c);
      U d_x, d_y;
      SampleSlopes(taps, v00, v10, v01, v11, &d_x, &d_y);
      gx.Add(g * d_x);
      gy.Add(g * d_y);
    }
    grad_warp[2 * row] = Store<T>(CoordinateGrad(static_cast<U>(gx.Total()), taps.x));
    grad_warp[2 * row + 1] = Store<T>(CoordinateGrad(static_cast<U>(gy.Total()), taps.y));
  }
}

// One thread per gradient element, adding into sums with atomics.
template <typename T, typename U>
__global__ void DataGradAtomicKernel(const T* __restrict__ warp, const T* __restrict__ grad, ResamplerShape shape,
                                     U* __restrict__ sums) {
  const int64_t pixels = shape.height * shape.width;
  for (int64_t i = GridStart(); i < shape.rows * shape.channels; i += GridStep()) {
    const int64_t row = i / shape.channels, c = i % shape.channels;
    Taps<U> taps;
    if (!PointTaps(warp, row, shape, &taps)) continue;
    const U g = Load<U>(grad[i]);
    U* image = sums + (row / shape.points) * pixels * shape.channels;
    for (int k = 0; k < 4; ++k) {
      if (taps.pixel[k] >= 0) atomicAdd(image + taps.pixel[k] * shape.channels + c, taps.weight[k] * g);
    }
  }
}

// One thread per (batch item, channel), adding the points in order.
template <typename T, typename U>
__global__ void DataGradOrderedKernel(const T* __restrict__ warp, const T* __restrict__ grad, ResamplerShape shape,
                                      U* __restrict__ sums) {
  const int64_t pixels = shape.height * shape.width;
  for (int64_t i = GridStart(); i < shape.batch * shape.channels; i += GridStep()) {
    const int64_t b = i / shape.channels, c = i % shape.channels;
    U* image = sums + b * pixels * shape.channels;
    for (int64_t row = b * shape.points; row < (b + 1) * shape.points; ++row) {
      Taps<U> taps;
      if (!PointTaps(warp, row, shape, &taps)) continue;
      const U g = Load<U>(grad[row * shape.channels + c]);
      for (int k = 0; k < 4; ++k) {
        if (taps.pixel[k] >= 0) image[taps.pixel[k] * shape.channels + c] += taps.weight[k] * g;
      }
    }
  }
}

template <typename T, typename U>
__global__ void StoreKernel(const U* __restrict__ sums, int64_t n, T* __restrict__ out) {
  for (int64_t i = GridStart(); i < n; i += GridStep()) out[i] = Store<T>(sums[i]);
}

}  // namespace

template <typename T>
cudaError_t LaunchResample(cudaStream_t stream, const T* data, const T* warp, const ResamplerShape& shape, T* out) {
  const int64_t n = shape.rows * shape.channels;
  if (n == 0) return cudaSuccess;
  ResampleKernel<DeviceT<T>, Acc<T>><<<ElementBlocks(n), kElementThreads, 0, stream>>>(
      reinterpret_cast<const DeviceT<T>*>(data), reinterpret_cast<const DeviceT<T>*>(warp), shape,
      reinterpret_cast<DeviceT<T>*>(out));
  return cudaGetLastError();
}

template <typename T>
cudaError_t LaunchResampleGrad(cudaStream_t stream, const T* data, const T* warp, const T* grad,
                               const ResamplerShape& shape, bool deterministic, Acc<T>* sums, T* grad_data,
                               T* grad_warp) {
  using D = DeviceT<T>;
  const D* warp_d = reinterpret_cast<const D*>(warp);
  const D* grad_d = reinterpret_cast<const D*>(grad);
  const int64_t rows = shape.rows;
  const int64_t data_size = shape.batch * shape.height * shape.width * shape.channels;
  if (rows > 0) {
    WarpGradKernel<D, Acc<T>><<<ElementBlocks(rows), kElementThreads, 0, stream>>>(
        reinterpret_cast<const D*>(data), warp_d, grad_d, shape, reinterpret_cast<D*>(grad_warp));
  }
  if (data_size == 0) return cudaGetLastError();
  cudaError_t err = cudaMemsetAsync(sums, 0, data_size * sizeof(Acc<T>), stream);
  if (err != cudaSuccess) return err;
  if (deterministic) {
    const int64_t columns = shape.batch * shape.channels;
    DataGradOrderedKernel<D, Acc<T>><<<ElementBlocks(columns), kElementThreads, 0, stream>>>(warp_d, grad_d, shape,
                                                                                             sums);
  } else if (rows > 0) {
    DataGradAtomicKernel<D, Acc<T>><<<ElementBlocks(rows * shape.channels), kElementThreads, 0, stream>>>(
        warp_d, grad_d, shape, sums);
  }
  if (static_cast<void*>(sums) != static_cast<void*>(grad_data)) {
    StoreKernel<D, Acc<T>><<<ElementBlocks(data_size), kElementThreads, 0, stream>>>(sums, data_size,
                                                                                    reinterpret_cast<D*>(grad_data));
  }
  return cudaGetLastError();
}

#define TFKIT_INSTANTIATE_RESAMPLER(T)                                                                          \
  template cudaError_t LaunchResample<T>(cudaStream_t, const T*, const T*, const ResamplerShape&, T*);          \
  template cudaError_t LaunchResampleGrad<T>(cudaStream_t, const T*, const T*, const T*, const ResamplerShape&, \
                                             bool, Acc<T>*, T*, T*);

TFKIT_INSTANTIATE_RESAMPLER(float)
TFKIT_INSTANTIATE_RESAMPLER(double)
TFKIT_INSTANTIATE_RESAMPLER(Half)
TFKIT_INSTANTIATE_RESAMPLER(BFloat16)
#undef TFKIT_INSTANTIATE_RESAMPLER

}  // namespace resampling
}  // namespace kernels
}  // namespace tfkit
