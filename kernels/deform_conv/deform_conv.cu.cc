// CUDA kernels for the deformable convolution family; see deform_conv_gpu.h
// for the contract. Per chunk of output pixels: the columns (bilinear
// samples times the mask), then tiled matrix products with the kernel.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "kernels/common/cuda_utils.cuh"
#include "kernels/deform_conv/deform_conv_gpu.h"
#include "kernels/deform_conv/deform_conv_taps.h"

namespace tfkit {
namespace kernels {
namespace deform_conv {
namespace {

using resampling::ResamplerShape;

// The column of tap t and channel c: per conv group a block of
// group_depth columns, tap-major.
__device__ __forceinline__ int64_t ColumnOf(const DeformConvShape& s, int64_t t, int64_t c) {
  const int64_t cg = s.group_channels();
  return (c / cg) * s.group_depth() + t * cg + c % cg;
}

template <typename T, typename U>
__device__ __forceinline__ U Neighbour(const T* image, const Taps<U>& taps, int k, int64_t channels, int64_t c) {
  return taps.pixel[k] < 0 ? U(0) : Load<U>(image[taps.pixel[k] * channels + c]);
}

// col [n, taps * channels] for output pixels [r0, r0 + n): one thread per
// (pixel, tap, channel).
template <typename T, typename U>
__global__ void ColumnsKernel(const T* __restrict__ x, const T* __restrict__ offsets, const T* __restrict__ mask,
                              DeformConvShape s, ResamplerShape image, int64_t r0, int64_t n, U* __restrict__ col) {
  const int64_t taps = s.taps(), depth = taps * s.channels, per_group = s.offset_group_channels();
  for (int64_t i = GridStart(); i < n * depth; i += GridStep()) {
    const int64_t c = i % s.channels, t = (i / s.channels) % taps, row = r0 + i / depth;
    Taps<U> tap{};
    U m = 0, value = 0;
    if (TapOf(offsets, mask, s, image, row, c / per_group, t, &tap, &m)) {
      const T* img = x + (row / s.pixels()) * s.height * s.width * s.channels;
      for (int k = 0; k < 4; ++k) value += tap.weight[k] * Neighbour(img, tap, k, s.channels, c);
    }
    col[(row - r0) * depth + ColumnOf(s, t, c)] = m * value;
  }
}

// One matrix product per conv group (blockIdx.z): C = A B (+ C where
// accumulate), element (m, n) of an operand at [m * row_stride + n *
// col_stride], in kTile x kTile tiles through shared memory; the rows on
// blockIdx.x (which allows 2^31 - 1 blocks).
constexpr int kTile = 16;

struct Operand {
  int64_t row_stride, col_stride, group_stride;
};

template <typename TA, typename TB, typename TC, typename U>
__global__ void GemmKernel(const TA* __restrict__ a, Operand ao, const TB* __restrict__ b, Operand bo,
                           TC* __restrict__ c, Operand co, int64_t rows, int64_t cols, int64_t depth,
                           bool accumulate) {
  __shared__ U a_tile[kTile][kTile + 1];
  __shared__ U b_tile[kTile][kTile + 1];
  a += blockIdx.z * ao.group_stride;
  b += blockIdx.z * bo.group_stride;
  c += blockIdx.z * co.group_stride;
  const int64_t row = static_cast<int64_t>(blockIdx.x) * kTile + threadIdx.y;
  const int64_t col = static_cast<int64_t>(blockIdx.y) * kTile + threadIdx.x;
  ChunkedSum<U> sum;
  for (int64_t d0 = 0; d0 < depth; d0 += kTile) {
    const int64_t ad = d0 + threadIdx.x, bd = d0 + threadIdx.y;
    a_tile[threadIdx.y][threadIdx.x] =
        row < rows && ad < depth ? Load<U>(a[row * ao.row_stride + ad * ao.col_stride]) : U(0);
    b_tile[threadIdx.y][threadIdx.x] =
        bd < depth && col < cols ? Load<U>(b[bd * bo.row_stride + col * bo.col_stride]) : U(0);
    __syncthreads();
    U part = 0;
#pragma unroll
    for (int k = 0; k < kTile; ++k) part += a_tile[threadIdx.y][k] * b_tile[k][threadIdx.x];
    sum.Add(part);
    __syncthreads();
  }
  if (row < rows && col < cols) {
    TC* out = c + row * co.row_stride + col * co.col_stride;
    const U previous = accumulate ? Load<U>(*out) : U(0);
    *out = Store<TC>(static_cast<U>(sum.Total() + previous));
  }
}

template <typename TA, typename TB, typename TC, typename U>
void Gemm(cudaStream_t stream, int64_t groups, const TA* a, Operand ao, const TB* b, Operand bo, TC* c, Operand co,
          int64_t rows, int64_t cols, int64_t depth, bool accumulate) {
  if (rows == 0 || cols == 0) return;
  const dim3 threads(kTile, kTile);
  const dim3 blocks((rows + kTile - 1) / kTile, (cols + kTile - 1) / kTile, groups);
  GemmKernel<TA, TB, TC, U><<<blocks, threads, 0, stream>>>(a, ao, b, bo, c, co, rows, cols, depth, accumulate);
}

// The offsets' and the mask's gradients of pixels [r0, r0 + n), one thread
// per (pixel, offset group, tap), from the columns' gradient gcol, which it
// then masks; with `scatter`, it also adds the x gradient with atomics.
template <typename T, typename U>
__global__ void TapGradKernel(const T* __restrict__ x, const T* __restrict__ offsets, const T* __restrict__ mask,
                              DeformConvShape s, ResamplerShape image, int64_t r0, int64_t n, U* __restrict__ gcol,
                              bool scatter, U* __restrict__ x_sums, T* __restrict__ grad_offsets,
                              T* __restrict__ grad_mask) {
  const int64_t taps = s.taps(), per_group = s.offset_group_channels(), depth = taps * s.channels;
  for (int64_t i = GridStart(); i < n * s.offset_groups * taps; i += GridStep()) {
    const int64_t t = i % taps, og = (i / taps) % s.offset_groups, row = r0 + i / (taps * s.offset_groups);
    const int64_t tap_index = row * s.offset_groups * taps + og * taps + t;
    Taps<U> tap{};
    U m = 0;
    U* g = gcol + (row - r0) * depth;
    if (!TapOf(offsets, mask, s, image, row, og, t, &tap, &m)) {
      grad_mask[tap_index] = grad_offsets[2 * tap_index] = grad_offsets[2 * tap_index + 1] = Store<T>(U(0));
      continue;
    }
    const int64_t item = row / s.pixels();
    const T* img = x + item * s.height * s.width * s.channels;
    U* sums = x_sums + item * s.height * s.width * s.channels;
    ChunkedSum<U> sum_s, sum_x, sum_y;
    for (int64_t c = og * per_group; c < (og + 1) * per_group; ++c) {
      const U v00 = Neighbour(img, tap, 0, s.channels, c), v10 = Neighbour(img, tap, 1, s.channels, c);
      const U v01 = Neighbour(img, tap, 2, s.channels, c), v11 = Neighbour(img, tap, 3, s.channels, c);
      U d_x, d_y;
      resampling::SampleSlopes(tap, v00, v10, v01, v11, &d_x, &d_y);
      const int64_t at = ColumnOf(s, t, c);
      const U gc = g[at];
      sum_s.Add(gc * (tap.weight[0] * v00 + tap.weight[1] * v10 + tap.weight[2] * v01 + tap.weight[3] * v11));
      sum_x.Add(gc * d_x);
      sum_y.Add(gc * d_y);
      g[at] = m * gc;
      if (scatter) {
        for (int k = 0; k < 4; ++k) {
          if (tap.pixel[k] >= 0) atomicAdd(sums + tap.pixel[k] * s.channels + c, tap.weight[k] * m * gc);
        }
      }
    }
    grad_mask[tap_index] = Store<T>(static_cast<U>(sum_s.Total()));
    grad_offsets[2 * tap_index] = Store<T>(static_cast<U>(sum_y.Total()) * m * tap.y.slope);
    grad_offsets[2 * tap_index + 1] = Store<T>(static_cast<U>(sum_x.Total()) * m * tap.x.slope);
  }
}

// The x gradient in a fixed order: one thread per (batch item, channel),
// adding pixels [r0, r0 + n) of its item in order.
template <typename T, typename U>
__global__ void OrderedScatterKernel(const T* __restrict__ offsets, const T* __restrict__ mask, DeformConvShape s,
                                     ResamplerShape image, int64_t r0, int64_t n, const U* __restrict__ gcol,
                                     U* __restrict__ x_sums) {
  const int64_t taps = s.taps(), depth = taps * s.channels, per_group = s.offset_group_channels();
  for (int64_t i = GridStart(); i < s.batch * s.channels; i += GridStep()) {
    const int64_t item = i / s.channels, c = i % s.channels;
    const int64_t item_first = item * s.pixels(), item_last = item_first + s.pixels();
    const int64_t first = r0 > item_first ? r0 : item_first, last = r0 + n < item_last ? r0 + n : item_last;
    U* sums = x_sums + item * s.height * s.width * s.channels;
    for (int64_t row = first; row < last; ++row) {
      for (int64_t t = 0; t < taps; ++t) {
        Taps<U> tap{};
        U m = 0;
        if (!TapOf(offsets, mask, s, image, row, c / per_group, t, &tap, &m)) continue;
        const U gc = gcol[(row - r0) * depth + ColumnOf(s, t, c)];
        for (int k = 0; k < 4; ++k) {
          if (tap.pixel[k] >= 0) sums[tap.pixel[k] * s.channels + c] += tap.weight[k] * gc;
        }
      }
    }
  }
}

template <typename T, typename U>
__global__ void StoreKernel(const U* __restrict__ sums, int64_t n, T* __restrict__ out) {
  for (int64_t i = GridStart(); i < n; i += GridStep()) out[i] = Store<T>(sums[i]);
}

// The operands of the products, by conv group: the columns [rows, groups x
// group_depth], the kernel [group_depth, filters] (its group's filters),
// the output and its gradient [rows, filters].
Operand Columns(const DeformConvShape& s) { return {s.taps() * s.channels, 1, s.group_depth()}; }
Operand KernelOperand(const DeformConvShape& s) { return {s.filters, 1, s.group_filters()}; }
Operand KernelTransposed(const DeformConvShape& s) { return {1, s.filters, s.group_filters()}; }
Operand Outputs(const DeformConvShape& s) { return {s.filters, 1, s.group_filters()}; }
Operand ColumnsTransposed(const DeformConvShape& s) { return {1, s.taps() * s.channels, s.group_depth()}; }

}  // namespace

template <typename T>
cudaError_t LaunchDeformConv(cudaStream_t stream, const T* x, const T* offsets, const T* mask, const T* kernel,
                             const DeformConvShape& s, Acc<T>* workspace, T* out) {
  using D = DeviceT<T>;
  using U = Acc<T>;
  const ResamplerShape image = SampledImage(s);
  const int64_t chunk = GpuChunkRows(s), depth = s.taps() * s.channels;
  for (int64_t r0 = 0; r0 < s.rows(); r0 += chunk) {
    const int64_t n = std::min(chunk, s.rows() - r0);
    if (n * depth > 0) {
      ColumnsKernel<D, U><<<ElementBlocks(n * depth), kElementThreads, 0, stream>>>(
          reinterpret_cast<const D*>(x), reinterpret_cast<const D*>(offsets), reinterpret_cast<const D*>(mask), s,
          image, r0, n, workspace);
    }
    Gemm<U, D, D, U>(stream, s.groups, workspace, Columns(s), reinterpret_cast<const D*>(kernel), KernelOperand(s),
                     reinterpret_cast<D*>(out) + r0 * s.filters, Outputs(s), n, s.group_filters(), s.group_depth(),
                     false);
  }
  return cudaGetLastError();
}

template <typename T>
cudaError_t LaunchDeformConvGrad(cudaStream_t stream, const T* x, const T* offsets, const T* mask, const T* kernel,
                                 const T* grad, const DeformConvShape& s, bool deterministic, Acc<T>* workspace,
                                 T* grad_x, T* grad_offsets, T* grad_mask, T* grad_kernel) {
  using D = DeviceT<T>;
  using U = Acc<T>;
  const D *xd = reinterpret_cast<const D*>(x), *od = reinterpret_cast<const D*>(offsets);
  const D *md = reinterpret_cast<const D*>(mask), *gd = reinterpret_cast<const D*>(grad);
  const ResamplerShape image = SampledImage(s);
  const int64_t chunk = GpuChunkRows(s), depth = s.taps() * s.channels;
  const int64_t kernel_size = s.group_depth() * s.filters, x_size = s.batch * s.height * s.width * s.channels;
  U* col = workspace;
  U* gcol = col + DeformConvWorkspaceSize(s);
  U* kernel_sums = gcol + DeformConvWorkspaceSize(s);
  U* x_sums = kernel_sums + kernel_size;
  cudaError_t err = cudaMemsetAsync(kernel_sums, 0, (kernel_size + x_size) * sizeof(U), stream);
  if (err != cudaSuccess) return err;
  for (int64_t r0 = 0; r0 < s.rows(); r0 += chunk) {
    const int64_t n = std::min(chunk, s.rows() - r0);
    const D* g = gd + r0 * s.filters;
    if (n * depth > 0) {
      ColumnsKernel<D, U><<<ElementBlocks(n * depth), kElementThreads, 0, stream>>>(xd, od, md, s, image, r0, n, col);
    }
    Gemm<D, D, U, U>(stream, s.groups, g, Outputs(s), reinterpret_cast<const D*>(kernel), KernelTransposed(s), gcol,
                     Columns(s), n, s.group_depth(), s.group_filters(), false);
    Gemm<U, D, U, U>(stream, s.groups, col, ColumnsTransposed(s), g, Outputs(s), kernel_sums, KernelOperand(s),
                     s.group_depth(), s.group_filters(), n, true);
    const int64_t tap_count = n * s.offset_groups * s.taps();
    if (tap_count > 0) {
      TapGradKernel<D, U><<<ElementBlocks(tap_count), kElementThreads, 0, stream>>>(
          xd, od, md, s, image, r0, n, gcol, !deterministic, x_sums, reinterpret_cast<D*>(grad_offsets),
          reinterpret_cast<D*>(grad_mask));
    }
    if (deterministic && s.batch * s.channels > 0) {
      OrderedScatterKernel<D, U><<<ElementBlocks(s.batch * s.channels), kElementThreads, 0, stream>>>(
          od, md, s, image, r0, n, gcol, x_sums);
    }
  }
  if (x_size > 0) {
    StoreKernel<D, U><<<ElementBlocks(x_size), kElementThreads, 0, stream>>>(x_sums, x_size,
                                                                             reinterpret_cast<D*>(grad_x));
  }
  if (kernel_size > 0) {
    StoreKernel<D, U><<<ElementBlocks(kernel_size), kElementThreads, 0, stream>>>(kernel_sums, kernel_size,
                                                                                  reinterpret_cast<D*>(grad_kernel));
  }
  return cudaGetLastError();
}

#define TFKIT_INSTANTIATE_DEFORM_CONV(T)                                                                         \
  template cudaError_t LaunchDeformConv<T>(cudaStream_t, const T*, const T*, const T*, const T*,                \
                                           const DeformConvShape&, Acc<T>*, T*);                                 \
  template cudaError_t LaunchDeformConvGrad<T>(cudaStream_t, const T*, const T*, const T*, const T*, const T*,  \
                                               const DeformConvShape&, bool, Acc<T>*, T*, T*, T*, T*);

TFKIT_INSTANTIATE_DEFORM_CONV(float)
TFKIT_INSTANTIATE_DEFORM_CONV(double)
TFKIT_INSTANTIATE_DEFORM_CONV(Half)
TFKIT_INSTANTIATE_DEFORM_CONV(BFloat16)
#undef TFKIT_INSTANTIATE_DEFORM_CONV

}  // namespace deform_conv
}  // namespace kernels
}  // namespace tfkit
