// Fused layer / RMS normalization over the last axis: CPU kernels.
//
// Framework-free: plain templates over raw pointers. Each function processes
// a range of rows [begin, end) of a row-major [rows, cols] matrix so callers
// can shard rows over threads. kCenter = true is LayerNorm (subtract the mean,
// add beta); kCenter = false is RMSNorm. T is the storage type, U the
// accumulation and statistics type (float, or double for double); sums use
// the shared blocked accumulation (kernels/common/accumulate.h).
#ifndef TFKIT_KERNELS_NORM_NORM_CPU_H_
#define TFKIT_KERNELS_NORM_NORM_CPU_H_

#include <cmath>
#include <cstdint>

#include "kernels/common/accumulate.h"

namespace tfkit {
namespace kernels {
namespace norm {

// Row statistics. LayerNorm (kCenter) sums relative to the row's first
// element, so a large common offset cancels exactly before anything is
// summed: mean = shift + mean of (x - shift). RMSNorm has no offset to
// remove (shift = 0). rstd = 1 / sqrt(var + epsilon), var being the mean
// square deviation from the mean (from 0 for RMSNorm).
template <bool kCenter, typename T, typename U>
inline void RowStats(const T* x, int64_t cols, U epsilon, U* shift,
                     U* mean_d, U* rstd) {
  const Wide<U> n = static_cast<Wide<U>>(cols);
  const U s = kCenter && cols > 0 ? static_cast<U>(x[0]) : U(0);
  U md = 0;
  if (kCenter) {
    md = static_cast<U>(
        BlockedSum<U>(cols, [&](int64_t j) { return static_cast<U>(x[j]) - s; }) / n);
  }
  const Wide<U> var = BlockedSum<U>(cols, [&](int64_t j) {
                        const U d = (static_cast<U>(x[j]) - s) - md;
                        return d * d;
                      }) / n;
  *shift = s;
  *mean_d = md;
  *rstd = static_cast<U>(1 / std::sqrt(var + static_cast<Wide<U>>(epsilon)));
}

// y = (x - mean) * rstd * gamma (+ beta); writes mean (if kCenter) and rstd.
// y may be the buffer of x (each element is read before it is written).
template <bool kCenter, typename T, typename U>
void NormForwardRows(const T* x, const T* gamma, const T* beta, int64_t cols,
                     U epsilon, int64_t begin, int64_t end, T* y, U* mean,
                     U* rstd) {
  for (int64_t r = begin; r < end; ++r) {
    const T* xr = x + r * cols;
    T* yr = y + r * cols;
    U s, md, rs;
    RowStats<kCenter>(xr, cols, epsilon, &s, &md, &rs);
    if (kCenter) mean[r] = s + md;
    rstd[r] = rs;
    for (int64_t j = 0; j < cols; ++j) {
      U v = ((static_cast<U>(xr[j]) - s) - md) * rs * static_cast<U>(gamma[j]);
      if (kCenter) v += static_cast<U>(beta[j]);
      yr[j] = static_cast<T>(v);
    }
  }
}

// dx for rows [begin, end), and dgamma (+ dbeta) of those rows added into
// one row block's partial sums (length cols each, zeroed by the caller):
//   xhat = (x - mean) * rstd,  g = dy * gamma
//   dx = rstd * (g - mean(g) [kCenter] - xhat * mean(g * xhat))
//   dgamma += dy * xhat,  dbeta += dy
// For LayerNorm, x - mean is taken as (x - mean_in) - c, where mean_in is
// the forward's float mean output and c the mean of x - mean_in: c recovers
// what rounding mean_in to U lost, which matters when the row's offset is
// large against its spread.
// dmean and drstd are gradients flowing into the statistics outputs (dmean
// only for kCenter). With d mean/dx = 1/n and d rstd/dx = -rstd^3 (x-mean)/n,
// drstd folds into a row mean, mean(g * xhat) += drstd * rstd / n, and
// dmean / n is added to dx on its own: folded into mean(g) it would be lost
// to rounding where it is small against g (a large rstd).
template <bool kCenter, typename T, typename U>
void NormBackwardRows(const T* __restrict__ dy, const T* __restrict__ x,
                      const T* __restrict__ gamma, const U* mean,
                      const U* rstd, const U* dmean, const U* drstd,
                      int64_t cols, int64_t begin, int64_t end,
                      T* __restrict__ dx, Wide<U>* __restrict__ dgamma_partial,
                      Wide<U>* __restrict__ dbeta_partial) {
  using W = Wide<U>;
  const W n = static_cast<W>(cols);
  for (int64_t r = begin; r < end; ++r) {
    const T* __restrict__ xr = x + r * cols;
    const T* __restrict__ dyr = dy + r * cols;
    T* __restrict__ dxr = dx + r * cols;
    const U mu = kCenter ? mean[r] : U(0);
    const U rs = rstd[r];
    U c = 0;
    U mean_g = 0;
    U dmean_share = 0;
    if (kCenter) {
      c = static_cast<U>(BlockedSum<U>(cols, [&](int64_t j) {
                           return static_cast<U>(xr[j]) - mu;
                         }) / n);
      mean_g = static_cast<U>(BlockedSum<U>(cols, [&](int64_t j) {
                                return static_cast<U>(dyr[j]) *
                                       static_cast<U>(gamma[j]);
                              }) / n);
      dmean_share = dmean[r] / static_cast<U>(cols);
    }
    const U mean_gx =
        static_cast<U>(BlockedSum<U>(cols, [&](int64_t j) {
                         return static_cast<U>(dyr[j]) *
                                static_cast<U>(gamma[j]) *
                                ((static_cast<U>(xr[j]) - mu) - c);
                       }) * rs / n) +
        drstd[r] * rs / static_cast<U>(cols);
    for (int64_t j = 0; j < cols; ++j) {
      const U d = static_cast<U>(dyr[j]);
      const U xh = ((static_cast<U>(xr[j]) - mu) - c) * rs;
      dgamma_partial[j] += static_cast<W>(d * xh);
      if (kCenter) dbeta_partial[j] += static_cast<W>(d);
      dxr[j] = static_cast<T>(rs * (d * static_cast<U>(gamma[j]) - mean_g - xh * mean_gx) + dmean_share);
    }
  }
}

}  // namespace norm
}  // namespace kernels
}  // namespace tfkit

#endif  // TFKIT_KERNELS_NORM_NORM_CPU_H_
