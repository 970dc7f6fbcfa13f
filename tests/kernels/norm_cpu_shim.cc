// C entry points over the framework-free CPU norm kernels, for ctypes tests.
#include <vector>

#include "kernels/norm/norm_cpu.h"

namespace norm = tfkit::kernels::norm;

extern "C" {

void norm_forward(int center, const double* x, const double* gamma,
                  const double* beta, long rows, long cols, double epsilon,
                  double* y, double* mean, double* rstd) {
  if (center) {
    norm::NormForwardRows<true>(x, gamma, beta, cols, epsilon, 0, rows, y, mean, rstd);
  } else {
    norm::NormForwardRows<false>(x, gamma, beta, cols, epsilon, 0, rows, y, mean, rstd);
  }
}

// Processes rows in `shards` pieces, each with its own partial sums.
void norm_backward(int center, const double* dy, const double* x,
                   const double* gamma, const double* mean, const double* rstd,
                   const double* dmean, const double* drstd, long rows, long cols, long shards, double* dx,
                   double* dgamma, double* dbeta) {
  std::vector<double> partial(2 * shards * cols, 0.0);
  const long per = (rows + shards - 1) / shards;
  for (long s = 0; s < shards; ++s) {
    const long begin = s * per, end = begin + per < rows ? begin + per : rows;
    double* pg = partial.data() + s * cols;
    double* pb = partial.data() + (shards + s) * cols;
    if (center) {
      norm::NormBackwardRows<true>(dy, x, gamma, mean, rstd, dmean, drstd, cols, begin, end, dx, pg, pb);
    } else {
      norm::NormBackwardRows<false>(dy, x, gamma, mean, rstd, dmean, drstd, cols, begin, end, dx, pg, pb);
    }
  }
  tfkit::kernels::SumPartials(partial.data(), shards, cols, 0, cols, dgamma);
  tfkit::kernels::SumPartials(partial.data() + shards * cols, shards, cols, 0, cols, dbeta);
}
}
