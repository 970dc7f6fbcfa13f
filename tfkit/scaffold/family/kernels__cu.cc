// CUDA kernels for the ${family} family; see ${family}_gpu.h for the contract.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <algorithm>

#include "kernels/common/cuda_utils.cuh"
#include "kernels/${family}/${family}_gpu.h"

namespace tfkit {
namespace kernels {
namespace ${family} {
namespace {

constexpr int kThreads = 256;

template <typename T>
using DeviceT = typename DeviceType<T>::type;

// y may be the buffer of x: each thread reads its element before writing it.
template <typename T, typename U>
__global__ void ForwardKernel(const T* x, int64_t n, U limit, T* y) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const U v = Load<U>(x[i]);
    y[i] = Store<T>(v / (U(1) + fabs(v) / limit));
  }
}

template <typename T, typename U>
__global__ void BackwardKernel(const T* __restrict__ dy, const T* __restrict__ y, int64_t n, U limit,
                               T* __restrict__ dx) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const U t = U(1) - fabs(Load<U>(y[i])) / limit;
    dx[i] = Store<T>(Load<U>(dy[i]) * t * t);
  }
}

int Blocks(int64_t n) {
  return static_cast<int>(std::max<int64_t>(1, std::min<int64_t>((n + kThreads - 1) / kThreads, 65535)));
}

}  // namespace

template <typename T>
cudaError_t Launch${Camel}Forward(cudaStream_t stream, const T* x, int64_t n, Acc<T> limit, T* y) {
  if (n == 0) return cudaSuccess;
  ForwardKernel<<<Blocks(n), kThreads, 0, stream>>>(reinterpret_cast<const DeviceT<T>*>(x), n, limit,
                                                    reinterpret_cast<DeviceT<T>*>(y));
  return cudaGetLastError();
}

template <typename T>
cudaError_t Launch${Camel}Backward(cudaStream_t stream, const T* dy, const T* y, int64_t n, Acc<T> limit, T* dx) {
  if (n == 0) return cudaSuccess;
  BackwardKernel<<<Blocks(n), kThreads, 0, stream>>>(reinterpret_cast<const DeviceT<T>*>(dy),
                                                     reinterpret_cast<const DeviceT<T>*>(y), n, limit,
                                                     reinterpret_cast<DeviceT<T>*>(dx));
  return cudaGetLastError();
}

#define TFKIT_INSTANTIATE_${FAMILY}(T)                                                  \
  template cudaError_t Launch${Camel}Forward<T>(cudaStream_t, const T*, int64_t, Acc<T>, T*); \
  template cudaError_t Launch${Camel}Backward<T>(cudaStream_t, const T*, const T*, int64_t, Acc<T>, T*);

TFKIT_INSTANTIATE_${FAMILY}(float)
TFKIT_INSTANTIATE_${FAMILY}(double)
TFKIT_INSTANTIATE_${FAMILY}(Half)
TFKIT_INSTANTIATE_${FAMILY}(BFloat16)
#undef TFKIT_INSTANTIATE_${FAMILY}

}  // namespace ${family}
}  // namespace kernels
}  // namespace tfkit
