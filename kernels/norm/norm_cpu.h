// Fused layer / RMS normalization over the last axis: CPU kernels.
//
// Framework-free: plain templates over raw pointers. Each function processes
// a range of rows [begin, end) of a row-major [rows, cols] matrix so callers
// can shard rows over threads. kCenter = true is LayerNorm (subtract the mean,
// add beta); kCenter = false is RMSNorm. T is the storage type, U the
// accumulation and statistics type (float, or double for double).
#ifndef TFKIT_KERNELS_NORM_NORM_CPU_H_
#define TFKIT_KERNELS_NORM_NORM_CPU_H_

#include <cmath>
#include <cstdint>

namespace tfkit {
namespace kernels {
namespace norm {

// Sums f(0) + ... + f(n-1) in kLanes independent accumulators so the
// compiler can vectorize the reduction without reassociating floating point.
template <typename U, typename F>
inline U LaneSum(int64_t n, F f) {
  constexpr int kLanes = 16;
  U lanes[kLanes] = {};
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    for (int l = 0; l < kLanes; ++l) lanes[l] += f(i + l);
  }
  U total = 0;
  for (; i < n; ++i) total += f(i);
  for (int l = 0; l < kLanes; ++l) total += lanes[l];
  return total;
}

// Row statistics: mean (0 for RMSNorm) and 1 / sqrt(var + epsilon), where
// var is the mean square deviation from the mean (or from 0 for RMSNorm).
template <bool kCenter, typename T, typename U>
inline void RowStats(const T* x, int64_t cols, U epsilon, U* mean, U* rstd) {
  const U n = static_cast<U>(cols);
  U mu = 0;
  if (kCenter) {
    mu = LaneSum<U>(cols, [&](int64_t j) { return static_cast<U>(x[j]); }) / n;
  }
  const U var = LaneSum<U>(cols, [&](int64_t j) {
                  const U d = static_cast<U>(x[j]) - mu;
                  return d * d;
                }) / n;
  *mean = mu;
  *rstd = U(1) / std::sqrt(var + epsilon);
}

// y = (x - mean) * rstd * gamma (+ beta); writes mean (if kCenter) and rstd.
template <bool kCenter, typename T, typename U>
void NormForwardRows(const T* x, const T* gamma, const T* beta, int64_t cols,
                     U epsilon, int64_t begin, int64_t end, T* y, U* mean,
                     U* rstd) {
  for (int64_t r = begin; r < end; ++r) {
    const T* xr = x + r * cols;
    T* yr = y + r * cols;
    U mu, rs;
    RowStats<kCenter>(xr, cols, epsilon, &mu, &rs);
    if (kCenter) mean[r] = mu;
    rstd[r] = rs;
    for (int64_t j = 0; j < cols; ++j) {
      U v = (static_cast<U>(xr[j]) - mu) * rs * static_cast<U>(gamma[j]);
      if (kCenter) v += static_cast<U>(beta[j]);
      yr[j] = static_cast<T>(v);
    }
  }
}

// dx for rows [begin, end), and dgamma (+ dbeta) of those rows added into
// this shard's own partial sums (length cols each, zeroed by the caller):
//   xhat = (x - mean) * rstd,  g = dy * gamma
//   dx = rstd * (g - mean(g) [kCenter] - xhat * mean(g * xhat))
//   dgamma += dy * xhat,  dbeta += dy
// dmean and drstd are gradients flowing into the statistics outputs (dmean
// only for kCenter). With d mean/dx = 1/n and d rstd/dx = -rstd^3 (x-mean)/n
// they fold into the two row means: mean(g) -= dmean / (n rstd) and
// mean(g * xhat) += drstd * rstd / n.
template <bool kCenter, typename T, typename U>
void NormBackwardRows(const T* __restrict__ dy, const T* __restrict__ x,
                      const T* __restrict__ gamma, const U* mean,
                      const U* rstd, const U* dmean, const U* drstd,
                      int64_t cols, int64_t begin, int64_t end,
                      T* __restrict__ dx, U* __restrict__ dgamma_partial,
                      U* __restrict__ dbeta_partial) {
  const U n = static_cast<U>(cols);
  for (int64_t r = begin; r < end; ++r) {
    const T* __restrict__ xr = x + r * cols;
    const T* __restrict__ dyr = dy + r * cols;
    T* __restrict__ dxr = dx + r * cols;
    const U mu = kCenter ? mean[r] : U(0);
    const U rs = rstd[r];
    U mean_g = 0;
    if (kCenter) {
      mean_g = LaneSum<U>(cols, [&](int64_t j) {
                 return static_cast<U>(dyr[j]) * static_cast<U>(gamma[j]);
               }) / n -
               dmean[r] / (n * rs);
    }
    const U mean_gx = LaneSum<U>(cols, [&](int64_t j) {
                        return static_cast<U>(dyr[j]) *
                               static_cast<U>(gamma[j]) *
                               (static_cast<U>(xr[j]) - mu);
                      }) * rs / n +
                      drstd[r] * rs / n;
    for (int64_t j = 0; j < cols; ++j) {
      const U g = static_cast<U>(dyr[j]) * static_cast<U>(gamma[j]);
      const U xh = (static_cast<U>(xr[j]) - mu) * rs;
      dxr[j] = static_cast<T>(rs * (g - mean_g - xh * mean_gx));
    }
    for (int64_t j = 0; j < cols; ++j) {
      dgamma_partial[j] += static_cast<U>(dyr[j]) * (static_cast<U>(xr[j]) - mu) * rs;
    }
    if (kCenter) {
      for (int64_t j = 0; j < cols; ++j) dbeta_partial[j] += static_cast<U>(dyr[j]);
    }
  }
}

// out[j] = sum over p of partials[p * cols + j], for columns [begin, end).
template <typename T, typename U>
void SumPartials(const U* partials, int64_t num_partials, int64_t cols,
                 int64_t begin, int64_t end, T* out) {
  for (int64_t j = begin; j < end; ++j) {
    U total = 0;
    for (int64_t p = 0; p < num_partials; ++p) total += partials[p * cols + j];
    out[j] = static_cast<T>(total);
  }
}

}  // namespace norm
}  // namespace kernels
}  // namespace tfkit

#endif  // TFKIT_KERNELS_NORM_NORM_CPU_H_
