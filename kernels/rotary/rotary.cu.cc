// CUDA kernels for the rotary family; see rotary_gpu.h for the contract.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <algorithm>

#include "kernels/common/cuda_utils.cuh"
#include "kernels/rotary/rotary_gpu.h"

namespace tfkit {
namespace kernels {
namespace rotary {
namespace {

__device__ __forceinline__ void SinCos(float angle, float* s, float* c) { sincosf(angle, s, c); }
__device__ __forceinline__ void SinCos(double angle, double* s, double* c) { sincos(angle, s, c); }

template <typename U>
__global__ void TableKernel(const U* __restrict__ positions, const U* __restrict__ inv_freq, int64_t n, int64_t half,
                            U* __restrict__ cos_table, U* __restrict__ sin_table) {
  for (int64_t i = GridStart(); i < n; i += GridStep()) {
    const U angle = positions[i / half] * inv_freq[i % half];
    SinCos(angle, &sin_table[i], &cos_table[i]);
  }
}

// One thread per pair; y may be the buffer of x.
template <typename T, typename U>
__global__ void RotateKernel(const T* x, const U* __restrict__ cos_table, const U* __restrict__ sin_table,
                             RotaryShape shape, U sign, int64_t pairs, T* y) {
  const int64_t half = shape.dim / 2;
  const int64_t a_step = shape.interleaved ? 2 : 1;
  const int64_t b_offset = shape.interleaved ? 1 : half;
  for (int64_t i = GridStart(); i < pairs; i += GridStep()) {
    const int64_t j = i % half;
    const int64_t head_row = i / half;  // (batch, seq, head)
    const int64_t r = head_row / shape.heads;  // (batch, seq)
    const int64_t table = (shape.per_batch_positions ? r : r % shape.seq) * half + j;
    const int64_t first = head_row * shape.dim + j * a_step;
    const U a = Load<U>(x[first]);
    const U b = Load<U>(x[first + b_offset]);
    const U c = cos_table[table];
    const U s = sign * sin_table[table];
    y[first] = Store<T>(a * c - b * s);
    y[first + b_offset] = Store<T>(b * c + a * s);
  }
}

}  // namespace

template <typename T>
cudaError_t LaunchRotary(cudaStream_t stream, const T* x, const Acc<T>* positions, const Acc<T>* inv_freq,
                         const RotaryShape& shape, Acc<T> sign, Acc<T>* cos_table, Acc<T>* sin_table, T* y) {
  const int64_t half = shape.dim / 2;
  const int64_t table_size = shape.table_rows * half;
  const int64_t pairs = shape.rows * shape.heads * half;
  if (pairs == 0) return cudaSuccess;
  TableKernel<<<ElementBlocks(table_size), kElementThreads, 0, stream>>>(positions, inv_freq, table_size, half,
                                                                       cos_table, sin_table);
  RotateKernel<DeviceT<T>, Acc<T>><<<ElementBlocks(pairs), kElementThreads, 0, stream>>>(
      reinterpret_cast<const DeviceT<T>*>(x), cos_table, sin_table, shape, sign, pairs,
      reinterpret_cast<DeviceT<T>*>(y));
  return cudaGetLastError();
}

#define TFKIT_INSTANTIATE_ROTARY(T)                                                                          \
  template cudaError_t LaunchRotary<T>(cudaStream_t, const T*, const Acc<T>*, const Acc<T>*, const RotaryShape&, \
                                       Acc<T>, Acc<T>*, Acc<T>*, T*);

TFKIT_INSTANTIATE_ROTARY(float)
TFKIT_INSTANTIATE_ROTARY(double)
TFKIT_INSTANTIATE_ROTARY(Half)
TFKIT_INSTANTIATE_ROTARY(BFloat16)
#undef TFKIT_INSTANTIATE_ROTARY

}  // namespace rotary
}  // namespace kernels
}  // namespace tfkit
