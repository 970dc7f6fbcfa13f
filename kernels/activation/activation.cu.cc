// CUDA kernels for the activation family; see activation_gpu.h for the contract.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <algorithm>

#include "kernels/activation/activation_gpu.h"
#include "kernels/common/cuda_utils.cuh"

namespace tfkit {
namespace kernels {
namespace activation {
namespace {

// y may be the buffer of x.
template <Activation A, typename T, typename U>
__global__ void BiasActivationKernel(const T* x, const T* __restrict__ bias, int64_t n, int64_t cols, T* y) {
  for (int64_t i = GridStart(); i < n; i += GridStep()) {
    y[i] = Store<T>(Apply<U>(A, Load<U>(x[i]) + Load<U>(bias[i % cols])));
  }
}

// One thread per (column, row block): dx for the block's rows of its column,
// and their sum into partial[block * cols + column]. dx may be dy's buffer.
template <Activation A, typename T, typename U>
__global__ void BiasActivationGradKernel(const T* dy, const T* __restrict__ x, const T* __restrict__ bias,
                                         int64_t rows, int64_t cols, int64_t rows_per_block, T* dx,
                                         Wide<U>* __restrict__ partial) {
  const int64_t j = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (j >= cols) return;
  const int64_t begin = blockIdx.y * rows_per_block;
  const int64_t end = min(rows, begin + rows_per_block);
  const U b = Load<U>(bias[j]);
  ChunkedSum<U> sum;
  for (int64_t r = begin; r < end; ++r) {
    const int64_t i = r * cols + j;
    const U g = Load<U>(dy[i]) * Derivative<U>(A, Load<U>(x[i]) + b);
    dx[i] = Store<T>(g);
    sum.Add(g);
  }
  partial[blockIdx.y * cols + j] = sum.Total();
}

// out[j] = the column's partial sums added in block order.
template <typename T, typename U>
__global__ void SumPartialsKernel(const Wide<U>* __restrict__ partial, int64_t blocks, int64_t cols, T* out) {
  const int64_t j = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (j >= cols) return;
  Wide<U> total = 0;
  for (int64_t p = 0; p < blocks; ++p) total += partial[p * cols + j];
  out[j] = Store<T>(static_cast<U>(total));
}

template <Activation A, typename T, typename U>
__global__ void GatedActivationKernel(const T* __restrict__ x, int64_t n, int64_t half, T* __restrict__ y) {
  for (int64_t i = GridStart(); i < n; i += GridStep()) {
    const int64_t a = (i / half) * 2 * half + i % half;
    y[i] = Store<T>(Apply<U>(A, Load<U>(x[a])) * Load<U>(x[a + half]));
  }
}

template <Activation A, typename T, typename U>
__global__ void GatedActivationGradKernel(const T* __restrict__ dy, const T* __restrict__ x, int64_t n, int64_t half,
                                          T* __restrict__ dx) {
  for (int64_t i = GridStart(); i < n; i += GridStep()) {
    const int64_t a = (i / half) * 2 * half + i % half;
    const U av = Load<U>(x[a]);
    const U g = Load<U>(dy[i]);
    dx[a] = Store<T>(g * Load<U>(x[a + half]) * Derivative<U>(A, av));
    dx[a + half] = Store<T>(g * Apply<U>(A, av));
  }
}

}  // namespace

int64_t BiasActivationGradWorkspaceSize(int64_t rows, int64_t cols) {
  return ColumnSumsWorkspaceSize(rows, cols, 1);  // the same row blocks as the CPU kernels
}

template <typename T>
cudaError_t LaunchBiasActivation(cudaStream_t stream, Activation act, const T* x, const T* bias, int64_t rows,
                                 int64_t cols, T* y) {
  const int64_t n = rows * cols;
  if (n == 0) return cudaSuccess;
  WithActivation(act, [&](auto a) {
    BiasActivationKernel<decltype(a)::value, DeviceT<T>, Acc<T>><<<ElementBlocks(n), kElementThreads, 0, stream>>>(
        reinterpret_cast<const DeviceT<T>*>(x), reinterpret_cast<const DeviceT<T>*>(bias), n, cols,
        reinterpret_cast<DeviceT<T>*>(y));
  });
  return cudaGetLastError();
}

template <typename T>
cudaError_t LaunchBiasActivationGrad(cudaStream_t stream, Activation act, const T* dy, const T* x, const T* bias,
                                     int64_t rows, int64_t cols, Wide<Acc<T>>* workspace, T* dx, T* dbias) {
  if (cols == 0) return cudaSuccess;
  const RowBlocks blocks = FixedRowBlocks(rows);
  const int col_tiles = static_cast<int>((cols + kElementThreads - 1) / kElementThreads);
  if (blocks.count > 0) {
    WithActivation(act, [&](auto a) {
      BiasActivationGradKernel<decltype(a)::value, DeviceT<T>, Acc<T>>
          <<<dim3(col_tiles, static_cast<unsigned>(blocks.count)), kElementThreads, 0, stream>>>(
              reinterpret_cast<const DeviceT<T>*>(dy), reinterpret_cast<const DeviceT<T>*>(x),
              reinterpret_cast<const DeviceT<T>*>(bias), rows, cols, blocks.rows_per_block,
              reinterpret_cast<DeviceT<T>*>(dx), workspace);
    });
  }
  SumPartialsKernel<DeviceT<T>, Acc<T>><<<col_tiles, kElementThreads, 0, stream>>>(workspace, blocks.count, cols,
                                                        reinterpret_cast<DeviceT<T>*>(dbias));
  return cudaGetLastError();
}

template <typename T>
cudaError_t LaunchGatedActivation(cudaStream_t stream, Activation act, const T* x, int64_t rows, int64_t half, T* y) {
  const int64_t n = rows * half;
  if (n == 0) return cudaSuccess;
  WithActivation(act, [&](auto a) {
    GatedActivationKernel<decltype(a)::value, DeviceT<T>, Acc<T>><<<ElementBlocks(n), kElementThreads, 0, stream>>>(
        reinterpret_cast<const DeviceT<T>*>(x), n, half, reinterpret_cast<DeviceT<T>*>(y));
  });
  return cudaGetLastError();
}

template <typename T>
cudaError_t LaunchGatedActivationGrad(cudaStream_t stream, Activation act, const T* dy, const T* x, int64_t rows,
                                      int64_t half, T* dx) {
  const int64_t n = rows * half;
  if (n == 0) return cudaSuccess;
  WithActivation(act, [&](auto a) {
    GatedActivationGradKernel<decltype(a)::value, DeviceT<T>, Acc<T>><<<ElementBlocks(n), kElementThreads, 0, stream>>>(
        reinterpret_cast<const DeviceT<T>*>(dy), reinterpret_cast<const DeviceT<T>*>(x), n, half,
        reinterpret_cast<DeviceT<T>*>(dx));
  });
  return cudaGetLastError();
}

#define TFKIT_INSTANTIATE_ACTIVATION(T)                                                                            \
  template cudaError_t LaunchBiasActivation<T>(cudaStream_t, Activation, const T*, const T*, int64_t, int64_t,   \
                                               T*);                                                              \
  template cudaError_t LaunchBiasActivationGrad<T>(cudaStream_t, Activation, const T*, const T*, const T*,       \
                                                   int64_t, int64_t, Wide<Acc<T>>*, T*, T*);                     \
  template cudaError_t LaunchGatedActivation<T>(cudaStream_t, Activation, const T*, int64_t, int64_t, T*);       \
  template cudaError_t LaunchGatedActivationGrad<T>(cudaStream_t, Activation, const T*, const T*, int64_t,       \
                                                    int64_t, T*);

TFKIT_INSTANTIATE_ACTIVATION(float)
TFKIT_INSTANTIATE_ACTIVATION(double)
TFKIT_INSTANTIATE_ACTIVATION(Half)
TFKIT_INSTANTIATE_ACTIVATION(BFloat16)
#undef TFKIT_INSTANTIATE_ACTIVATION

}  // namespace activation
}  // namespace kernels
}  // namespace tfkit
