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

// y may be the same buffer as x (TF forwards the input): neither is restrict.
// Each element is read before it is written, by the thread that writes it.
// LayerNorm sums relative to the row's first element (see RowStats in
// norm_cpu.h), and every sum is chunked into Wide<U>.
template <bool kCenter, typename T, typename U>
__global__ void ForwardKernel(const T* x, const T* __restrict__ gamma,
                              const T* __restrict__ beta, int64_t rows,
                              int64_t cols, U epsilon, T* y,
                              U* __restrict__ mean, U* __restrict__ rstd) {
  using W = Wide<U>;
  __shared__ W scratch[kWarpSize];
  const W n = static_cast<W>(cols);
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const T* xr = x + r * cols;
    const U s = kCenter && cols > 0 ? Load<U>(xr[0]) : U(0);
    U md = 0;
    if (kCenter) {
      ChunkedSum<U> sum;
      for (int64_t j = threadIdx.x; j < cols; j += blockDim.x) {
        sum.Add(Load<U>(xr[j]) - s);
      }
      md = static_cast<U>(BlockSum(sum.Total(), scratch) / n);
    }
    ChunkedSum<U> squares;
    for (int64_t j = threadIdx.x; j < cols; j += blockDim.x) {
      const U d = (Load<U>(xr[j]) - s) - md;
      squares.Add(d * d);
    }
    const W var = BlockSum(squares.Total(), scratch) / n;
    const U rs = static_cast<U>(1 / sqrt(var + static_cast<W>(epsilon)));
    if (threadIdx.x == 0) {
      if (kCenter) mean[r] = s + md;
      rstd[r] = rs;
    }
    T* yr = y + r * cols;
    for (int64_t j = threadIdx.x; j < cols; j += blockDim.x) {
      U v = ((Load<U>(xr[j]) - s) - md) * rs * Load<U>(gamma[j]);
      if (kCenter) v += Load<U>(beta[j]);
      yr[j] = Store<T>(v);
    }
  }
}

// dx per row. For LayerNorm also writes the row's correction c = mean of
// (x - mean_in), which recovers what rounding the mean output lost (see
// NormBackwardRows in norm_cpu.h), for ParamGradPartialKernel.
template <bool kCenter, typename T, typename U>
__global__ void BackwardDxKernel(const T* __restrict__ dy,
                                 const T* __restrict__ x,
                                 const T* __restrict__ gamma,
                                 const U* __restrict__ mean,
                                 const U* __restrict__ rstd,
                                 const U* __restrict__ dmean,
                                 const U* __restrict__ drstd, int64_t rows,
                                 int64_t cols, T* __restrict__ dx,
                                 Wide<U>* __restrict__ row_fix) {
  using W = Wide<U>;
  __shared__ W scratch[kWarpSize];
  const W n = static_cast<W>(cols);
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const int64_t base = r * cols;
    const U mu = kCenter ? mean[r] : U(0);
    const U rs = rstd[r];
    U c = 0;
    if (kCenter) {
      ChunkedSum<U> offsets;
      for (int64_t j = threadIdx.x; j < cols; j += blockDim.x) {
        offsets.Add(Load<U>(x[base + j]) - mu);
      }
      c = static_cast<U>(BlockSum(offsets.Total(), scratch) / n);
      if (threadIdx.x == 0) row_fix[r] = c;
    }
    ChunkedSum<U> sg, sgx;
    for (int64_t j = threadIdx.x; j < cols; j += blockDim.x) {
      const U g = Load<U>(dy[base + j]) * Load<U>(gamma[j]);
      if (kCenter) sg.Add(g);
      sgx.Add(g * ((Load<U>(x[base + j]) - mu) - c));
    }
    U mean_g = 0;
    U dmean_share = 0;  // added on its own, as on the CPU (norm_cpu.h)
    if (kCenter) {
      mean_g = static_cast<U>(BlockSum(sg.Total(), scratch) / n);
      dmean_share = dmean[r] / static_cast<U>(cols);
    }
    const U mean_gx = static_cast<U>(BlockSum(sgx.Total(), scratch) * rs / n) +
                      drstd[r] * rs / static_cast<U>(cols);
    for (int64_t j = threadIdx.x; j < cols; j += blockDim.x) {
      const U g = Load<U>(dy[base + j]) * Load<U>(gamma[j]);
      const U xh = ((Load<U>(x[base + j]) - mu) - c) * rs;
      dx[base + j] = Store<T>(rs * (g - mean_g - xh * mean_gx) + dmean_share);
    }
  }
}

// Block (kColTile, kRowsPerColThread) sums dy * xhat (and dy) over one chunk
// of rows for kColTile columns, in Wide<U>; writes one partial row per chunk.
// The chunks depend on the row count alone, so the result is deterministic.
template <bool kCenter, typename T, typename U>
__global__ void ParamGradPartialKernel(const T* __restrict__ dy,
                                       const T* __restrict__ x,
                                       const U* __restrict__ mean,
                                       const U* __restrict__ rstd,
                                       const Wide<U>* __restrict__ row_fix,
                                       int64_t rows, int64_t cols,
                                       int64_t rows_per_chunk,
                                       Wide<U>* __restrict__ dgamma_part,
                                       Wide<U>* __restrict__ dbeta_part) {
  using W = Wide<U>;
  __shared__ W sg[kRowsPerColThread][kColTile + 1];
  __shared__ W sb[kRowsPerColThread][kColTile + 1];
  const int64_t col = blockIdx.x * static_cast<int64_t>(kColTile) + threadIdx.x;
  const int64_t first = blockIdx.y * rows_per_chunk;
  const int64_t last = min(rows, first + rows_per_chunk);
  W acc_g = 0, acc_b = 0;
  if (col < cols) {
    for (int64_t r = first + threadIdx.y; r < last; r += blockDim.y) {
      const U d = Load<U>(dy[r * cols + col]);
      const U mu = kCenter ? mean[r] : U(0);
      const U c = kCenter ? static_cast<U>(row_fix[r]) : U(0);
      acc_g += static_cast<W>(d * (((Load<U>(x[r * cols + col]) - mu) - c) * rstd[r]));
      if (kCenter) acc_b += static_cast<W>(d);
    }
  }
  sg[threadIdx.y][threadIdx.x] = acc_g;
  sb[threadIdx.y][threadIdx.x] = acc_b;
  __syncthreads();
  if (threadIdx.y == 0 && col < cols) {
    W tg = 0, tb = 0;
    for (int k = 0; k < kRowsPerColThread; ++k) {
      tg += sg[k][threadIdx.x];
      if (kCenter) tb += sb[k][threadIdx.x];
    }
    dgamma_part[blockIdx.y * cols + col] = tg;
    if (kCenter) dbeta_part[blockIdx.y * cols + col] = tb;
  }
}

template <typename T, typename W>
__global__ void SumChunksKernel(const W* __restrict__ part, int64_t chunks,
                                int64_t cols, T* __restrict__ out) {
  const int64_t col = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (col >= cols) return;
  W total = 0;
  for (int64_t c = 0; c < chunks; ++c) total += part[c * cols + col];
  out[col] = Store<T>(static_cast<Acc<T>>(total));
}

// The parameter-gradient row chunks: the CPU kernels' fixed row blocks
// (kernels/common/accumulate.h), and one empty chunk for zero rows so the
// gradients are still written.
RowBlocks RowChunks(int64_t rows) {
  RowBlocks blocks = FixedRowBlocks(rows);
  blocks.count = std::max<int64_t>(blocks.count, 1);
  return blocks;
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
                     const Acc<T>* dmean, const Acc<T>* drstd, int64_t rows,
                     int64_t cols, Wide<Acc<T>>* workspace, T* dx, T* dgamma,
                     T* dbeta) {
  using W = Wide<Acc<T>>;
  if (cols == 0) return cudaSuccess;
  const RowBlocks row_chunks = RowChunks(rows);
  const int64_t chunks = row_chunks.count;
  const int64_t rows_per_chunk = row_chunks.rows_per_block;
  W* dgamma_part = workspace;
  W* dbeta_part = workspace + chunks * cols;
  W* row_fix = workspace + 2 * chunks * cols;
  if (rows > 0) {
    BackwardDxKernel<kCenter><<<RowGrid(rows), kRowThreads, 0, stream>>>(
        dy, x, gamma, mean, rstd, dmean, drstd, rows, cols, dx, row_fix);
  }
  const dim3 block(kColTile, kRowsPerColThread);
  const dim3 grid(static_cast<unsigned>((cols + kColTile - 1) / kColTile),
                  static_cast<unsigned>(chunks));
  ParamGradPartialKernel<kCenter><<<grid, block, 0, stream>>>(
      dy, x, mean, rstd, row_fix, rows, cols, rows_per_chunk, dgamma_part,
      dbeta_part);
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


}  // namespace

int64_t NormBackwardWorkspaceSize(int64_t rows, int64_t cols) {
  return 2 * RowChunks(rows).count * cols + rows;
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
                               Wide<Acc<T>>* workspace, T* dx, T* dgamma,
                               T* dbeta) {
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
      const Acc<T>*, const Acc<T>*, const Acc<T>*, int64_t, int64_t,           \
      Wide<Acc<T>>*, T*, T*, T*);

TFKIT_INSTANTIATE_NORM(float)
TFKIT_INSTANTIATE_NORM(double)
TFKIT_INSTANTIATE_NORM(Half)
TFKIT_INSTANTIATE_NORM(BFloat16)
#undef TFKIT_INSTANTIATE_NORM

}  // namespace norm
}  // namespace kernels
}  // namespace tfkit
