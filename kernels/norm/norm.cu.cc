// CUDA kernels for the norm family; see norm_gpu.h for the contract.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <algorithm>

#include "kernels/common/cuda_utils.cuh"
#include "kernels/norm/norm_gpu.h"

namespace tfkit {
namespace kernels {
namespace norm {
namespace {

constexpr int kRowThreads = 256;
constexpr int kColTile = 32;
constexpr int kRowsPerColThread = 8;
constexpr int kMaxRowChunks = 256;

// y may be the same buffer as x (TF forwards the input): neither is restrict.
template <bool kCenter, typename T, typename U>
__global__ void ForwardKernel(const T* x, const T* __restrict__ gamma,
                              const T* __restrict__ beta, int64_t rows,
                              int64_t cols, U epsilon, T* y,
                              U* __restrict__ mean, U* __restrict__ rstd) {
  __shared__ U scratch[kWarpSize];
  const U n = static_cast<U>(cols);
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const T* xr = x + r * cols;
    U mu = 0;
    if (kCenter) {
      U s = 0;
      for (int64_t j = threadIdx.x; j < cols; j += blockDim.x) s += Load<U>(xr[j]);
      mu = BlockSum(s, scratch) / n;
    }
    U ss = 0;
    for (int64_t j = threadIdx.x; j < cols; j += blockDim.x) {
      const U d = Load<U>(xr[j]) - mu;
      ss += d * d;
    }
    const U rs = U(1) / sqrt(BlockSum(ss, scratch) / n + epsilon);
    if (threadIdx.x == 0) {
      if (kCenter) mean[r] = mu;
      rstd[r] = rs;
    }
    T* yr = y + r * cols;
    for (int64_t j = threadIdx.x; j < cols; j += blockDim.x) {
      U v = (Load<U>(xr[j]) - mu) * rs * Load<U>(gamma[j]);
      if (kCenter) v += Load<U>(beta[j]);
      yr[j] = Store<T>(v);
    }
  }
}

template <bool kCenter, typename T, typename U>
__global__ void BackwardDxKernel(const T* __restrict__ dy,
                                 const T* __restrict__ x,
                                 const T* __restrict__ gamma,
                                 const U* __restrict__ mean,
                                 const U* __restrict__ rstd,
                                 const U* __restrict__ dmean,
                                 const U* __restrict__ drstd, int64_t rows,
                                 int64_t cols, T* __restrict__ dx) {
  __shared__ U scratch[kWarpSize];
  const U n = static_cast<U>(cols);
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const int64_t base = r * cols;
    const U mu = kCenter ? mean[r] : U(0);
    const U rs = rstd[r];
    U sg = 0, sgx = 0;
    for (int64_t j = threadIdx.x; j < cols; j += blockDim.x) {
      const U g = Load<U>(dy[base + j]) * Load<U>(gamma[j]);
      sg += g;
      sgx += g * (Load<U>(x[base + j]) - mu) * rs;
    }
    const U mean_g =
        kCenter ? BlockSum(sg, scratch) / n - dmean[r] / (n * rs) : U(0);
    const U mean_gx = BlockSum(sgx, scratch) / n + drstd[r] * rs / n;
    for (int64_t j = threadIdx.x; j < cols; j += blockDim.x) {
      const U g = Load<U>(dy[base + j]) * Load<U>(gamma[j]);
      const U xh = (Load<U>(x[base + j]) - mu) * rs;
      dx[base + j] = Store<T>(rs * (g - mean_g - xh * mean_gx));
    }
  }
}

// Block (kColTile, kRowsPerColThread) sums dy * xhat (and dy) over one chunk
// of rows for kColTile columns; writes one partial row per chunk.
template <bool kCenter, typename T, typename U>
__global__ void ParamGradPartialKernel(const T* __restrict__ dy,
                                       const T* __restrict__ x,
                                       const U* __restrict__ mean,
                                       const U* __restrict__ rstd, int64_t rows,
                                       int64_t cols, int64_t rows_per_chunk,
                                       U* __restrict__ dgamma_part,
                                       U* __restrict__ dbeta_part) {
  __shared__ U sg[kRowsPerColThread][kColTile + 1];
  __shared__ U sb[kRowsPerColThread][kColTile + 1];
  const int64_t col = blockIdx.x * static_cast<int64_t>(kColTile) + threadIdx.x;
  const int64_t first = blockIdx.y * rows_per_chunk;
  const int64_t last = min(rows, first + rows_per_chunk);
  U acc_g = 0, acc_b = 0;
  if (col < cols) {
    for (int64_t r = first + threadIdx.y; r < last; r += blockDim.y) {
      const U d = Load<U>(dy[r * cols + col]);
      const U mu = kCenter ? mean[r] : U(0);
      acc_g += d * (Load<U>(x[r * cols + col]) - mu) * rstd[r];
      if (kCenter) acc_b += d;
    }
  }
  sg[threadIdx.y][threadIdx.x] = acc_g;
  sb[threadIdx.y][threadIdx.x] = acc_b;
  __syncthreads();
  if (threadIdx.y == 0 && col < cols) {
    U tg = 0, tb = 0;
    for (int k = 0; k < kRowsPerColThread; ++k) {
      tg += sg[k][threadIdx.x];
      if (kCenter) tb += sb[k][threadIdx.x];
    }
    dgamma_part[blockIdx.y * cols + col] = tg;
    if (kCenter) dbeta_part[blockIdx.y * cols + col] = tb;
  }
}

template <typename T, typename U>
__global__ void SumChunksKernel(const U* __restrict__ part, int64_t chunks,
                                int64_t cols, T* __restrict__ out) {
  const int64_t col = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (col >= cols) return;
  U total = 0;
  for (int64_t c = 0; c < chunks; ++c) total += part[c * cols + col];
  out[col] = Store<T>(total);
}

int64_t RowChunks(int64_t rows) {
  const int64_t min_rows = 32;
  return std::max<int64_t>(
      1, std::min<int64_t>(kMaxRowChunks, (rows + min_rows - 1) / min_rows));
}

int RowGrid(int64_t rows) {
  return static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(rows, 1 << 20)));
}

template <bool kCenter, typename T>
cudaError_t Forward(cudaStream_t stream, const T* x, const T* gamma,
                    const T* beta, int64_t rows, int64_t cols, Acc<T> epsilon,
                    T* y, Acc<T>* mean, Acc<T>* rstd) {
  if (rows == 0) return cudaSuccess;
  ForwardKernel<kCenter><<<RowGrid(rows), kRowThreads, 0, stream>>>(
      x, gamma, beta, rows, cols, epsilon, y, mean, rstd);
  return cudaGetLastError();
}

template <bool kCenter, typename T>
cudaError_t Backward(cudaStream_t stream, const T* dy, const T* x,
                     const T* gamma, const Acc<T>* mean, const Acc<T>* rstd,
                     const Acc<T>* dmean, const Acc<T>* drstd, int64_t rows, int64_t cols, Acc<T>* workspace, T* dx,
                     T* dgamma, T* dbeta) {
  using U = Acc<T>;
  if (cols == 0) return cudaSuccess;
  if (rows > 0) {
    BackwardDxKernel<kCenter><<<RowGrid(rows), kRowThreads, 0, stream>>>(
        dy, x, gamma, mean, rstd, dmean, drstd, rows, cols, dx);
  }
  const int64_t chunks = RowChunks(rows);
  const int64_t rows_per_chunk = (rows + chunks - 1) / chunks;
  U* dgamma_part = workspace;
  U* dbeta_part = workspace + chunks * cols;
  const dim3 block(kColTile, kRowsPerColThread);
  const dim3 grid(static_cast<unsigned>((cols + kColTile - 1) / kColTile),
                  static_cast<unsigned>(chunks));
  ParamGradPartialKernel<kCenter><<<grid, block, 0, stream>>>(
      dy, x, mean, rstd, rows, cols, rows_per_chunk, dgamma_part, dbeta_part);
  const int threads = 256;
  const unsigned blocks = static_cast<unsigned>((cols + threads - 1) / threads);
  SumChunksKernel<<<blocks, threads, 0, stream>>>(dgamma_part, chunks, cols,
                                                  dgamma);
  if (kCenter) {
    SumChunksKernel<<<blocks, threads, 0, stream>>>(dbeta_part, chunks, cols,
                                                    dbeta);
  }
  return cudaGetLastError();
}

template <typename T>
using DeviceT = typename DeviceType<T>::type;

}  // namespace

int64_t NormBackwardWorkspaceSize(int64_t rows, int64_t cols) {
  return 2 * RowChunks(rows) * cols;
}

template <typename T>
cudaError_t LaunchNormForward(cudaStream_t stream, bool center, const T* x,
                              const T* gamma, const T* beta, int64_t rows,
                              int64_t cols, Acc<T> epsilon, T* y,
                              Acc<T>* mean, Acc<T>* rstd) {
  auto* dx = reinterpret_cast<const DeviceT<T>*>(x);
  auto* dg = reinterpret_cast<const DeviceT<T>*>(gamma);
  auto* db = reinterpret_cast<const DeviceT<T>*>(beta);
  auto* dy = reinterpret_cast<DeviceT<T>*>(y);
  return center ? Forward<true>(stream, dx, dg, db, rows, cols, epsilon, dy, mean, rstd)
                : Forward<false>(stream, dx, dg, db, rows, cols, epsilon, dy, mean, rstd);
}

template <typename T>
cudaError_t LaunchNormBackward(cudaStream_t stream, bool center, const T* dy,
                               const T* x, const T* gamma, const Acc<T>* mean,
                               const Acc<T>* rstd, const Acc<T>* dmean,
                               const Acc<T>* drstd, int64_t rows, int64_t cols,
                               Acc<T>* workspace, T* dx, T* dgamma, T* dbeta) {
  auto* ddy = reinterpret_cast<const DeviceT<T>*>(dy);
  auto* dxin = reinterpret_cast<const DeviceT<T>*>(x);
  auto* dg = reinterpret_cast<const DeviceT<T>*>(gamma);
  auto* ddx = reinterpret_cast<DeviceT<T>*>(dx);
  auto* ddg = reinterpret_cast<DeviceT<T>*>(dgamma);
  auto* ddb = reinterpret_cast<DeviceT<T>*>(dbeta);
  return center ? Backward<true>(stream, ddy, dxin, dg, mean, rstd, dmean,
                                 drstd, rows, cols, workspace, ddx, ddg, ddb)
                : Backward<false>(stream, ddy, dxin, dg, mean, rstd, dmean,
                                  drstd, rows, cols, workspace, ddx, ddg, ddb);
}

#define TFKIT_INSTANTIATE_NORM(T)                                              \
  template cudaError_t LaunchNormForward<T>(                                   \
      cudaStream_t, bool, const T*, const T*, const T*, int64_t, int64_t,      \
      Acc<T>, T*, Acc<T>*, Acc<T>*);                                           \
  template cudaError_t LaunchNormBackward<T>(                                  \
      cudaStream_t, bool, const T*, const T*, const T*, const Acc<T>*,         \
      const Acc<T>*, const Acc<T>*, const Acc<T>*, int64_t, int64_t, Acc<T>*,  \
      T*, T*, T*);

TFKIT_INSTANTIATE_NORM(float)
TFKIT_INSTANTIATE_NORM(double)
TFKIT_INSTANTIATE_NORM(Half)
TFKIT_INSTANTIATE_NORM(BFloat16)
#undef TFKIT_INSTANTIATE_NORM

}  // namespace norm
}  // namespace kernels
}  // namespace tfkit
