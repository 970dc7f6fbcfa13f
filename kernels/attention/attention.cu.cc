// CUDA kernels for the attention family; see attention_gpu.h for the
// contract and attention_cpu.h for the algorithm, which these follow block
// for block: a thread block owns a tile of queries (the forward, the query
// gradient) or of keys (the key and value gradients), loads the tiles it
// pairs with into shared memory, and never writes what another block
// writes, so the results are deterministic. float16 and bfloat16 with the
// common head sizes run the tensor-core kernels of attention_mma.inc.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <mma.h>

#include <algorithm>
#include <type_traits>

#include "kernels/attention/attention_gpu.h"
#include "kernels/attention/attention_rules.h"
#include "kernels/common/cuda_utils.cuh"

namespace tfkit {
namespace kernels {
namespace attention {
namespace {

constexpr int kThreads = 128;
constexpr int kForwardQ = 16;  // queries per forward block
constexpr int kForwardK = 32;  // keys per forward tile
constexpr int kGradQ = 16;     // queries per backward tile
constexpr int kGradK = 16;     // keys per backward tile

__device__ __forceinline__ int64_t Min(int64_t a, int64_t b) { return a < b ? a : b; }

template <typename U>
__device__ __forceinline__ U MaxOf(U a, U b) {
  return (b > a || b != b) ? b : a;
}

template <typename U>
__device__ __forceinline__ U Exp(U x) {
  return exp(x);
}
template <>
__device__ __forceinline__ float Exp<float>(float x) {
  return expf(x);
}

// One (batch, head) pair: the device side of the CPU kernels' Head.
template <typename T, typename U>
struct Head {
  using D = DeviceT<T>;
  const AttentionInputs<T>& in;
  int64_t b, n, q_stride, kv_stride;
  const D* q;
  const D* k;
  const D* v;
  Broadcast bias_at, mask_at;
  uint32_t seed_key;
  U scale, fill;

  __device__ Head(const AttentionInputs<T>& inputs, int64_t batch, int64_t head) : in(inputs), b(batch), n(head) {
    const AttentionShape& sh = in.shape;
    const int64_t kv_head = n / sh.group();
    q_stride = sh.heads * sh.head_dim;
    kv_stride = sh.kv_heads * sh.head_dim;
    q = reinterpret_cast<const D*>(in.query) + b * sh.target * q_stride + n * sh.head_dim;
    k = reinterpret_cast<const D*>(in.key) + b * sh.source * kv_stride + kv_head * sh.head_dim;
    v = reinterpret_cast<const D*>(in.value) + b * sh.source * kv_stride + kv_head * sh.head_dim;
    bias_at = Broadcast::Of(sh.bias);
    mask_at = Broadcast::Of(sh.mask);
    seed_key = SeedKey(in.seed[0], in.seed[1]);
    scale = static_cast<U>(in.scale);
    fill = static_cast<U>(kMaskFill);
  }

  __device__ bool Masked(int64_t t, int64_t s) const {
    if (in.causal && s > t) return true;
    return in.mask != nullptr && !in.mask[mask_at.Row(b, n, t) + s * mask_at.s];
  }

  __device__ U Logit(U dot, int64_t t, int64_t s) const {
    if (Masked(t, s)) return fill;
    U x = dot * scale;
    if (in.bias != nullptr) {
      x += Load<U>(reinterpret_cast<const D*>(in.bias)[bias_at.Row(b, n, t) + s * bias_at.s]);
    }
    return x;
  }

  // 0 or 1 / (1 - rate) (1 without dropout), for element (t, s).
  __device__ U Dropped(int64_t t, int64_t s, uint32_t threshold, U keep_scale) const {
    if (in.dropout_rate <= 0.0f) return U(1);
    return DropoutBits(RowKey(seed_key, b, n, t), s) >= threshold ? keep_scale : U(0);
  }

  // Whether every (t, s) of [t0, t1) x [s0, s1) is masked: the block's
  // threads share the mask's elements.
  __device__ bool TileMasked(int64_t t0, int64_t t1, int64_t s0, int64_t s1) const {
    if (in.causal && s0 >= t1) return true;
    if (in.mask == nullptr) return false;
    const int64_t first = mask_at.t == 0 ? t1 - 1 : t0;
    const int64_t cols = s1 - s0;
    int attended = 0;
    for (int64_t e = threadIdx.x; e < (t1 - first) * cols; e += blockDim.x) {
      const int64_t t = first + e / cols, s = s0 + e % cols;
      if (!(in.causal && s > t) && in.mask[mask_at.Row(b, n, t) + s * mask_at.s]) attended = 1;
    }
    return __syncthreads_or(attended) == 0;
  }
};

// rows x dim elements of a [rows][dim] block from rows `stride` apart.
template <typename D, typename U>
__device__ void LoadTile(const D* base, int64_t stride, int64_t first, int64_t rows, int64_t dim, U* dst) {
  for (int64_t e = threadIdx.x; e < rows * dim; e += blockDim.x) {
    dst[e] = Load<U>(base[(first + e / dim) * stride + e % dim]);
  }
}

template <typename U>
__device__ U Dot(const U* a, const U* b, int64_t dim) {
  U sum = 0;
  for (int64_t h = 0; h < dim; ++h) sum += a[h] * b[h];
  return sum;
}

// Shared memory of the forward: q, acc [kForwardQ][H], k, v [kForwardK][H],
// scores [kForwardQ][kForwardK], and per row max, sum, correction.
template <typename U>
size_t ForwardSharedBytes(int64_t dim) {
  return sizeof(U) * (2 * kForwardQ * dim + 2 * kForwardK * dim + kForwardQ * kForwardK + 3 * kForwardQ);
}

// One block per (batch, head, block of kForwardQ queries). A first walk
// skips the fully masked tiles; a block with a row that has no logit above
// the fill walks again over every tile (then masked logits weigh, as in
// Keras).
template <typename T, typename U>
__global__ void ForwardKernel(AttentionInputs<T> in, DeviceT<T>* __restrict__ out, U* __restrict__ lse) {
  extern __shared__ unsigned char shared_bytes[];
  const AttentionShape& sh = in.shape;
  const int64_t dim = sh.head_dim, blocks = Blocks(sh.target, kForwardQ);
  const int64_t block = blockIdx.x % blocks, n = (blockIdx.x / blocks) % sh.heads, b = blockIdx.x / blocks / sh.heads;
  const Head<T, U> hd(in, b, n);
  U* q = reinterpret_cast<U*>(shared_bytes);
  U* acc = q + kForwardQ * dim;
  U* k = acc + kForwardQ * dim;
  U* v = k + kForwardK * dim;
  U* scores = v + kForwardK * dim;
  U* max = scores + kForwardQ * kForwardK;
  U* sum = max + kForwardQ;
  U* correction = sum + kForwardQ;
  const int64_t t0 = block * kForwardQ, rows = Min(static_cast<int64_t>(kForwardQ), sh.target - t0);
  const uint32_t threshold = KeepThreshold(in.dropout_rate);
  const U keep_scale = static_cast<U>(KeepScale(in.dropout_rate));
  LoadTile(hd.q, hd.q_stride, t0, rows, dim, q);
  for (int pass = 0; pass < 2; ++pass) {
    const bool skip = pass == 0;
    for (int64_t e = threadIdx.x; e < kForwardQ * dim; e += blockDim.x) acc[e] = 0;
    if (threadIdx.x < kForwardQ) {
      max[threadIdx.x] = -INFINITY;
      sum[threadIdx.x] = 0;
    }
    int skipped = 0;
    __syncthreads();
    for (int64_t s0 = 0; s0 < sh.source; s0 += kForwardK) {
      const int64_t cols = Min(static_cast<int64_t>(kForwardK), sh.source - s0);
      if (skip && hd.TileMasked(t0, t0 + rows, s0, s0 + cols)) {
        skipped = 1;
        continue;
      }
      LoadTile(hd.k, hd.kv_stride, s0, cols, dim, k);
      LoadTile(hd.v, hd.kv_stride, s0, cols, dim, v);
      __syncthreads();
      for (int64_t e = threadIdx.x; e < rows * kForwardK; e += blockDim.x) {
        const int64_t i = e / kForwardK, j = e % kForwardK;
        scores[e] = j < cols ? hd.Logit(Dot(q + i * dim, k + j * dim, dim), t0 + i, s0 + j) : -INFINITY;
      }
      __syncthreads();
      if (threadIdx.x < rows) {
        const int64_t i = threadIdx.x;
        U* row = scores + i * kForwardK;
        U tile_max = -INFINITY;
        for (int64_t j = 0; j < cols; ++j) tile_max = MaxOf(tile_max, row[j]);
        const U new_max = MaxOf(max[i], tile_max);
        if (new_max == -INFINITY) {
          correction[i] = 1;
          for (int64_t j = 0; j < cols; ++j) row[j] = 0;
        } else {
          correction[i] = Exp(max[i] - new_max);
          U total = sum[i] * correction[i];
          for (int64_t j = 0; j < cols; ++j) {
            const U p = Exp(row[j] - new_max);
            total += p;
            row[j] = p * hd.Dropped(t0 + i, s0 + j, threshold, keep_scale);
          }
          sum[i] = total;
          max[i] = new_max;
        }
      }
      __syncthreads();
      for (int64_t e = threadIdx.x; e < rows * dim; e += blockDim.x) {
        const int64_t i = e / dim, h = e % dim;
        U a = acc[e] * correction[i];
        for (int64_t j = 0; j < cols; ++j) a += scores[i * kForwardK + j] * v[j * dim + h];
        acc[e] = a;
      }
      __syncthreads();
    }
    int dense = 0;
    if (threadIdx.x < rows && !(max[threadIdx.x] > hd.fill)) dense = 1;
    if (__syncthreads_or(dense && skipped) == 0) break;
  }
  for (int64_t e = threadIdx.x; e < rows * dim; e += blockDim.x) {
    const int64_t i = e / dim, h = e % dim;
    const U inverse = sh.source == 0 ? U(0) : U(1) / sum[i];
    out[(b * sh.target + t0 + i) * hd.q_stride + n * dim + h] = Store<DeviceT<T>>(acc[e] * inverse);
  }
  if (threadIdx.x < rows) {
    lse[(b * sh.heads + n) * sh.target + t0 + threadIdx.x] = max[threadIdx.x] + log(sum[threadIdx.x]);
  }
}

// One warp per row (b, n, t): delta = dout . out, and for a row whose every
// key is masked the inverse of sum over keys of exp(logit - lse).
template <typename T, typename U>
__global__ void RowStatsKernel(AttentionInputs<T> in, AttentionGrads<T> g) {
  using D = DeviceT<T>;
  const AttentionShape& sh = in.shape;
  const int lane = threadIdx.x % kWarpSize;
  const int64_t rows = sh.batch * sh.heads * sh.target;
  const int64_t warps = static_cast<int64_t>(gridDim.x) * (blockDim.x / kWarpSize);
  for (int64_t r = blockIdx.x * (blockDim.x / kWarpSize) + threadIdx.x / kWarpSize; r < rows; r += warps) {
    const int64_t t = r % sh.target, n = (r / sh.target) % sh.heads, b = r / sh.target / sh.heads;
    const int64_t at = (b * sh.target + t) * sh.heads * sh.head_dim + n * sh.head_dim;
    const D* dout = reinterpret_cast<const D*>(g.dout) + at;
    const D* out = reinterpret_cast<const D*>(g.out) + at;
    U delta = 0;
    for (int64_t h = lane; h < sh.head_dim; h += kWarpSize) delta += Load<U>(dout[h]) * Load<U>(out[h]);
    delta = WarpSum(delta);
    const U lse = g.lse[r];
    const Head<T, U> hd(in, b, n);
    U inverse = 1;
    if (lse <= hd.fill) {
      const D* query = reinterpret_cast<const D*>(in.query) + at;
      U total = 0;
      for (int64_t s = lane; s < sh.source; s += kWarpSize) {
        U dot = 0;
        for (int64_t h = 0; h < sh.head_dim; ++h) dot += Load<U>(query[h]) * Load<U>(hd.k[s * hd.kv_stride + h]);
        total += Exp(hd.Logit(dot, t, s) - lse);
      }
      inverse = U(1) / WarpSum(total);
    }
    if (lane == 0) {
      g.row_delta[r] = delta;
      g.row_inverse[r] = inverse;
    }
  }
}

// The tiles of the backward kernels in shared memory.
template <typename U>
struct GradTiles {
  U *q, *dout, *k, *v, *acc, *acc2, *p, *ds;

  static size_t Bytes(int64_t dim) {
    return sizeof(U) * (2 * kGradQ * dim + 2 * kGradK * dim + 2 * kGradK * dim + 2 * kGradQ * kGradK);
  }
  __device__ explicit GradTiles(int64_t dim) {
    extern __shared__ unsigned char shared_bytes[];
    q = reinterpret_cast<U*>(shared_bytes);
    dout = q + kGradQ * dim;
    k = dout + kGradQ * dim;
    v = k + kGradK * dim;
    acc = v + kGradK * dim;
    acc2 = acc + kGradK * dim;
    p = acc2 + kGradK * dim;
    ds = p + kGradQ * kGradK;
  }
};

// Into tiles.p the probabilities times their dropout factor and into
// tiles.ds the logits' gradient (0 where masked), for queries [t0, t0 +
// rows) x keys [s0, s0 + cols) from the loaded tiles.
template <typename T, typename U>
__device__ void TileGrads(const Head<T, U>& hd, const AttentionGrads<T>& g, const GradTiles<U>& w, int64_t t0,
                          int64_t rows, int64_t s0, int64_t cols) {
  const AttentionShape& sh = hd.in.shape;
  const int64_t dim = sh.head_dim;
  const uint32_t threshold = KeepThreshold(hd.in.dropout_rate);
  const U keep_scale = static_cast<U>(KeepScale(hd.in.dropout_rate));
  for (int64_t e = threadIdx.x; e < kGradQ * kGradK; e += blockDim.x) {
    const int64_t i = e / kGradK, j = e % kGradK;
    if (i >= rows || j >= cols) {
      w.p[e] = 0;
      w.ds[e] = 0;
      continue;
    }
    const int64_t t = t0 + i, s = s0 + j, r = (hd.b * sh.heads + hd.n) * sh.target + t;
    const U logit = hd.Logit(Dot(w.q + i * dim, w.k + j * dim, dim), t, s);
    const U p = Exp(logit - g.lse[r]) * g.row_inverse[r];
    const U dropped = hd.Dropped(t, s, threshold, keep_scale);
    const U dp = Dot(w.dout + i * dim, w.v + j * dim, dim) * dropped;
    w.ds[e] = hd.Masked(t, s) ? U(0) : p * (dp - g.row_delta[r]);
    w.p[e] = p * dropped;
  }
  __syncthreads();
}

template <typename T, typename U>
__device__ bool AnyDenseRow(const Head<T, U>& hd, const AttentionGrads<T>& g, int64_t t0, int64_t rows) {
  const U* lse = g.lse + (hd.b * hd.in.shape.heads + hd.n) * hd.in.shape.target + t0;
  int dense = 0;
  for (int64_t i = threadIdx.x; i < rows; i += blockDim.x) dense |= lse[i] <= hd.fill;
  return __syncthreads_or(dense) != 0;
}

// One block per (batch, kv head, block of kGradK keys): dkey and dvalue,
// summed over the heads of the group and every tile of queries.
template <typename T, typename U>
__global__ void KeyValueGradKernel(AttentionInputs<T> in, AttentionGrads<T> g) {
  using D = DeviceT<T>;
  const AttentionShape& sh = in.shape;
  const int64_t dim = sh.head_dim, blocks = Blocks(sh.source, kGradK), group = sh.group();
  const int64_t block = blockIdx.x % blocks, kv_head = (blockIdx.x / blocks) % sh.kv_heads;
  const int64_t b = blockIdx.x / blocks / sh.kv_heads;
  const int64_t s0 = block * kGradK, cols = Min(static_cast<int64_t>(kGradK), sh.source - s0);
  const GradTiles<U> w(dim);
  for (int64_t e = threadIdx.x; e < kGradK * dim; e += blockDim.x) w.acc[e] = w.acc2[e] = 0;
  for (int64_t n = kv_head * group; n < (kv_head + 1) * group; ++n) {
    const Head<T, U> hd(in, b, n);
    if (n == kv_head * group) {
      LoadTile(hd.k, hd.kv_stride, s0, cols, dim, w.k);
      LoadTile(hd.v, hd.kv_stride, s0, cols, dim, w.v);
    }
    const D* dout = reinterpret_cast<const D*>(g.dout) + (hd.q - reinterpret_cast<const D*>(in.query));
    for (int64_t t0 = 0; t0 < sh.target; t0 += kGradQ) {
      const int64_t rows = Min(static_cast<int64_t>(kGradQ), sh.target - t0);
      const bool dense = AnyDenseRow(hd, g, t0, rows);
      if (hd.TileMasked(t0, t0 + rows, s0, s0 + cols) && !dense) continue;
      LoadTile(hd.q, hd.q_stride, t0, rows, dim, w.q);
      LoadTile(dout, hd.q_stride, t0, rows, dim, w.dout);
      __syncthreads();
      TileGrads(hd, g, w, t0, rows, s0, cols);
      for (int64_t e = threadIdx.x; e < cols * dim; e += blockDim.x) {
        const int64_t j = e / dim, h = e % dim;
        U dv = 0, dk = 0;
        for (int64_t i = 0; i < rows; ++i) {
          dv += w.p[i * kGradK + j] * w.dout[i * dim + h];
          dk += w.ds[i * kGradK + j] * w.q[i * dim + h];
        }
        w.acc2[e] += dv;
        w.acc[e] += dk * hd.scale;
      }
      __syncthreads();
    }
  }
  const int64_t at = (b * sh.source + s0) * sh.kv_heads * dim + kv_head * dim;
  for (int64_t e = threadIdx.x; e < cols * dim; e += blockDim.x) {
    const int64_t j = e / dim, h = e % dim;
    reinterpret_cast<D*>(g.dkey)[at + j * sh.kv_heads * dim + h] = Store<D>(w.acc[e]);
    reinterpret_cast<D*>(g.dvalue)[at + j * sh.kv_heads * dim + h] = Store<D>(w.acc2[e]);
  }
}

// One block per item of QueryItems::Of(shape, has bias, kGradQ): dquery of
// the query tiles it covers, and the bias gradient elements it owns, each
// summed by one thread in a fixed order.
template <typename T, typename U>
__global__ void QueryGradKernel(AttentionInputs<T> in, AttentionGrads<T> g) {
  using D = DeviceT<T>;
  const AttentionShape& sh = in.shape;
  const int64_t dim = sh.head_dim, blocks = Blocks(sh.target, kGradQ);
  const QueryItems items = QueryItems::Of(sh, in.bias != nullptr, kGradQ);
  const Broadcast bias_at = Broadcast::Of(sh.bias);
  const int64_t block = blockIdx.x % items.blocks, head = (blockIdx.x / items.blocks) % items.heads;
  const int64_t batch = blockIdx.x / items.blocks / items.heads;
  const GradTiles<U> w(dim);
  U* dq = w.acc;  // kGradQ * dim <= kGradK * dim
  const int64_t bias_t0 = sh.bias[2] == 1 ? 0 : block * kGradQ;
  const int64_t bias_rows = sh.bias[2] == 1 ? 1 : Min(static_cast<int64_t>(kGradQ), sh.target - bias_t0);
  U* dbias_rows = nullptr;
  if (in.bias != nullptr) {
    dbias_rows = g.dbias_sum + bias_at.Row(sh.bias[0] == 1 ? 0 : batch, sh.bias[1] == 1 ? 0 : head, 0) +
                 bias_t0 * sh.bias[3];
    for (int64_t e = threadIdx.x; e < bias_rows * sh.bias[3]; e += blockDim.x) dbias_rows[e] = 0;
  }
  __syncthreads();
  for (int64_t b = items.all_batches ? 0 : batch; b < (items.all_batches ? sh.batch : batch + 1); ++b) {
    for (int64_t n = items.all_heads ? 0 : head; n < (items.all_heads ? sh.heads : head + 1); ++n) {
      const Head<T, U> hd(in, b, n);
      const D* dout = reinterpret_cast<const D*>(g.dout) + (hd.q - reinterpret_cast<const D*>(in.query));
      for (int64_t qb = items.all_blocks ? 0 : block; qb < (items.all_blocks ? blocks : block + 1); ++qb) {
        const int64_t t0 = qb * kGradQ, rows = Min(static_cast<int64_t>(kGradQ), sh.target - t0);
        LoadTile(hd.q, hd.q_stride, t0, rows, dim, w.q);
        LoadTile(dout, hd.q_stride, t0, rows, dim, w.dout);
        for (int64_t e = threadIdx.x; e < rows * dim; e += blockDim.x) dq[e] = 0;
        for (int64_t s0 = 0; s0 < sh.source; s0 += kGradK) {
          const int64_t cols = Min(static_cast<int64_t>(kGradK), sh.source - s0);
          if (hd.TileMasked(t0, t0 + rows, s0, s0 + cols)) continue;
          LoadTile(hd.k, hd.kv_stride, s0, cols, dim, w.k);
          LoadTile(hd.v, hd.kv_stride, s0, cols, dim, w.v);
          __syncthreads();
          TileGrads(hd, g, w, t0, rows, s0, cols);
          for (int64_t e = threadIdx.x; e < rows * dim; e += blockDim.x) {
            const int64_t i = e / dim, h = e % dim;
            U sum = 0;
            for (int64_t j = 0; j < cols; ++j) sum += w.ds[i * kGradK + j] * w.k[j * dim + h];
            dq[e] += sum * hd.scale;
          }
          if (dbias_rows != nullptr) {
            // The tile's bias elements: one thread each sums its (i, j).
            const int64_t brows = sh.bias[2] == 1 ? 1 : rows, bcols = sh.bias[3] == 1 ? 1 : cols;
            for (int64_t e = threadIdx.x; e < brows * bcols; e += blockDim.x) {
              const int64_t a = e / bcols, c = e % bcols;
              U sum = 0;
              for (int64_t i = (brows == 1 ? 0 : a); i < (brows == 1 ? rows : a + 1); ++i) {
                for (int64_t j = (bcols == 1 ? 0 : c); j < (bcols == 1 ? cols : c + 1); ++j) sum += w.ds[i * kGradK + j];
              }
              g.dbias_sum[bias_at.Row(b, n, t0 + a) + (s0 + c) * bias_at.s] += sum;
            }
          }
          __syncthreads();
        }
        for (int64_t e = threadIdx.x; e < rows * dim; e += blockDim.x) {
          const int64_t i = e / dim, h = e % dim;
          reinterpret_cast<D*>(g.dquery)[(hd.q - reinterpret_cast<const D*>(in.query)) + (t0 + i) * hd.q_stride + h] =
              Store<D>(dq[e]);
        }
        __syncthreads();
      }
    }
  }
  if (dbias_rows != nullptr) {
    D* dbias = reinterpret_cast<D*>(g.dbias) + (dbias_rows - g.dbias_sum);
    for (int64_t e = threadIdx.x; e < bias_rows * sh.bias[3]; e += blockDim.x) dbias[e] = Store<D>(dbias_rows[e]);
  }
}

#include "kernels/attention/attention_mma.inc"

// Launches kernel<<<blocks, kThreads, bytes>>>, raising its shared-memory
// limit where the tiles need more than the default.
template <typename Kernel, typename... Args>
cudaError_t LaunchTiled(Kernel kernel, int64_t blocks, size_t bytes, cudaStream_t stream, Args... args) {
  if (blocks <= 0) return cudaSuccess;
  if (blocks > 2147483647) return cudaErrorInvalidConfiguration;
  if (bytes > 48 * 1024) {
    const cudaError_t err = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, bytes);
    if (err != cudaSuccess) return err;
  }
  kernel<<<static_cast<unsigned>(blocks), kThreads, bytes, stream>>>(args...);
  return cudaGetLastError();
}

}  // namespace

template <typename T>
cudaError_t LaunchAttentionForward(cudaStream_t stream, const AttentionInputs<T>& in, T* out, Acc<T>* lse) {
  using U = Acc<T>;
  const AttentionShape& sh = in.shape;
  if constexpr (kHasTensorCores<T>) {
    cudaError_t err = cudaSuccess;
    const auto launch = [&](auto dim) {
      constexpr int kDim = decltype(dim)::value;
      err = LaunchTiled(MmaForwardKernel<T, kDim>, sh.batch * sh.heads * Blocks(sh.target, kMmaRows),
                        MmaForwardTiles<kDim>::Bytes(sizeof(T)), stream, in, reinterpret_cast<DeviceT<T>*>(out), lse);
    };
    if (WithMmaDim(sh.head_dim, launch)) return err;
  }
  const int64_t blocks = sh.batch * sh.heads * Blocks(sh.target, kForwardQ);
  return LaunchTiled(ForwardKernel<T, U>, blocks, ForwardSharedBytes<U>(sh.head_dim), stream, in,
                     reinterpret_cast<DeviceT<T>*>(out), lse);
}

int64_t AttentionBackwardWorkspaceSize(const AttentionShape& shape, int64_t bias_size) {
  return 2 * shape.batch * shape.heads * shape.target + bias_size;
}

template <typename T>
cudaError_t LaunchAttentionBackward(cudaStream_t stream, const AttentionInputs<T>& in, const AttentionGrads<T>& grads,
                                    Acc<T>* workspace) {
  using U = Acc<T>;
  const AttentionShape& sh = in.shape;
  AttentionGrads<T> g = grads;
  const int64_t rows = sh.batch * sh.heads * sh.target;
  g.row_delta = workspace;
  g.row_inverse = workspace + rows;
  g.dbias_sum = workspace + 2 * rows;
  const int64_t warps_per_block = kThreads / kWarpSize;
  const int64_t row_blocks = std::min<int64_t>((rows + warps_per_block - 1) / warps_per_block, 65535);
  cudaError_t err = LaunchTiled(RowStatsKernel<T, U>, row_blocks, 0, stream, in, g);
  if (err != cudaSuccess) return err;
  if constexpr (kHasTensorCores<T>) {
    const auto launch = [&](auto dim) {
      constexpr int kDim = decltype(dim)::value;
      const size_t mma_bytes = MmaGradTiles<kDim>::Bytes(sizeof(T));
      err = LaunchTiled(MmaKeyValueGradKernel<T, kDim>, sh.batch * sh.kv_heads * Blocks(sh.source, kMmaRows),
                        mma_bytes, stream, in, g);
      if (err != cudaSuccess || in.bias != nullptr) return;  // the bias gradient's owners are QueryGradKernel's
      err = LaunchTiled(MmaQueryGradKernel<T, kDim>, sh.batch * sh.heads * Blocks(sh.target, kMmaRows), mma_bytes,
                        stream, in, g);
    };
    if (WithMmaDim(sh.head_dim, launch)) {
      if (err != cudaSuccess || in.bias == nullptr) return err;
      return LaunchTiled(QueryGradKernel<T, U>, QueryItems::Of(sh, true, kGradQ).count(),
                         GradTiles<U>::Bytes(sh.head_dim), stream, in, g);
    }
  }
  const size_t bytes = GradTiles<U>::Bytes(sh.head_dim);
  err = LaunchTiled(KeyValueGradKernel<T, U>, sh.batch * sh.kv_heads * Blocks(sh.source, kGradK), bytes, stream, in,
                    g);
  if (err != cudaSuccess) return err;
  return LaunchTiled(QueryGradKernel<T, U>, QueryItems::Of(sh, in.bias != nullptr, kGradQ).count(), bytes, stream,
                     in, g);
}

#define TFKIT_INSTANTIATE_ATTENTION(T)                                                                        \
  template cudaError_t LaunchAttentionForward<T>(cudaStream_t, const AttentionInputs<T>&, T*, Acc<T>*);      \
  template cudaError_t LaunchAttentionBackward<T>(cudaStream_t, const AttentionInputs<T>&, const AttentionGrads<T>&, \
                                                  Acc<T>*);
TFKIT_INSTANTIATE_ATTENTION(float)
TFKIT_INSTANTIATE_ATTENTION(double)
TFKIT_INSTANTIATE_ATTENTION(Half)
TFKIT_INSTANTIATE_ATTENTION(BFloat16)
#undef TFKIT_INSTANTIATE_ATTENTION

}  // namespace attention
}  // namespace kernels
}  // namespace tfkit
