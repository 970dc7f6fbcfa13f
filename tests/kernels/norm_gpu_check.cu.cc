// Standalone GPU check of the norm CUDA launchers against the CPU kernels.
// No TensorFlow: build with nvcc, run on a machine with a GPU. Exits 0 when
// every case passes, 1 on a mismatch, 77 when no GPU is visible.
//   nvcc -x cu -std=c++17 -O2 -arch=native -I. -o norm_gpu_check \
//        tests/kernels/norm_gpu_check.cu.cc kernels/norm/norm.cu.cc
#include <random>
#include <string>

#include "kernels/norm/norm_cpu.h"
#include "kernels/norm/norm_gpu.h"
#include "tests/kernels/gpu_check.cuh"

namespace nk = tfkit::kernels::norm;

// Checks one output of one case.
template <typename T, typename R>
void Expect(const char* what, const std::vector<T>& got, const std::vector<R>& want, double tol, const char* type,
            bool center, long rows, long cols) {
  Expect(std::string(type) + (center ? " layer_norm " : " rms_norm ") + what + " [" + std::to_string(rows) + ", " +
             std::to_string(cols) + "]",
         got, want, tol);
}

// x is drawn around `offset` (accuracy of the shifted row statistics);
// `tol` defaults to the dtype's tolerance.
template <typename T>
void RunCase(const char* type, bool center, long rows, long cols,
             double offset = 0.0, double tol = Tolerance<T>()) {
  using U = k::Acc<T>;
  std::mt19937 rng(rows * 131 + cols);
  std::normal_distribution<double> normal(0.5, 1.5);
  const size_t n = rows * cols;
  std::vector<T> x(n), dy(n), gamma(cols), beta(cols);
  std::vector<double> xd(n), dyd(n), gd(cols), bd(cols);
  auto fill = [&](std::vector<T>& t, std::vector<double>& d, double shift) {
    for (size_t i = 0; i < t.size(); ++i) {
      t[i] = FromDouble<T>(normal(rng) + shift);
      d[i] = ToDouble(t[i]);
    }
  };
  fill(x, xd, offset), fill(dy, dyd, 0), fill(gamma, gd, 0), fill(beta, bd, 0);
  std::vector<U> dstat(rows);
  std::vector<double> dstatd(rows);
  for (long r = 0; r < rows; ++r) dstatd[r] = dstat[r] = static_cast<U>(normal(rng));

  std::vector<double> y(n), mean(rows), rstd(rows), dx(n), dg(cols), db(cols);
  std::vector<double> pg(cols, 0.0), pb(cols, 0.0);
  if (center) {
    nk::NormForwardRows<true>(xd.data(), gd.data(), bd.data(), cols, 1e-5, 0, rows, y.data(), mean.data(), rstd.data());
    nk::NormBackwardRows<true>(dyd.data(), xd.data(), gd.data(), mean.data(), rstd.data(), dstatd.data(),
                                 dstatd.data(), cols, 0, rows, dx.data(), pg.data(), pb.data());
  } else {
    nk::NormForwardRows<false>(xd.data(), gd.data(), bd.data(), cols, 1e-5, 0, rows, y.data(), mean.data(), rstd.data());
    nk::NormBackwardRows<false>(dyd.data(), xd.data(), gd.data(), mean.data(), rstd.data(), dstatd.data(),
                                  dstatd.data(), cols, 0, rows, dx.data(), pg.data(), pb.data());
  }

  Device<T> d_x(x), d_dy(dy), d_g(gamma), d_b(beta), d_y(n), d_dx(n), d_dg(cols), d_db(cols);
  Device<U> d_mean(rows), d_rstd(rows), d_dstat(dstat);
  Device<double> d_ws(nk::NormBackwardWorkspaceSize(rows, cols));
  cudaError_t err = nk::LaunchNormForward(nullptr, center, d_x.ptr, d_g.ptr, d_b.ptr, rows, cols,
                                            U(1e-5), d_y.ptr, d_mean.ptr, d_rstd.ptr);
  if (err == cudaSuccess) {
    err = nk::LaunchNormBackward(nullptr, center, d_dy.ptr, d_x.ptr, d_g.ptr, d_mean.ptr, d_rstd.ptr,
                                   d_dstat.ptr, d_dstat.ptr, rows, cols, d_ws.ptr, d_dx.ptr, d_dg.ptr,
                                   d_db.ptr);
  }
  if (err == cudaSuccess) err = cudaDeviceSynchronize();
  if (err != cudaSuccess) {
    std::printf("FAIL %s [%ld, %ld]: %s\n", type, rows, cols, cudaGetErrorString(err));
    ++failures;
    return;
  }
  Expect("y", d_y.Get(n), y, tol, type, center, rows, cols);
  Expect("rstd", d_rstd.Get(rows), rstd, tol, type, center, rows, cols);
  if (center) Expect("mean", d_mean.Get(rows), mean, tol, type, center, rows, cols);
  Expect("dx", d_dx.Get(n), dx, tol, type, center, rows, cols);
  Expect("dgamma", d_dg.Get(cols), pg, tol, type, center, rows, cols);
  if (center) Expect("dbeta", d_db.Get(cols), pb, tol, type, center, rows, cols);
}

// 2**25 rows of one column with dy = 1: dbeta must be exactly the row count
// (a float32 running sum stops at 2**24).
void RunManyRowsCase() {
  const long rows = 1L << 25;
  std::vector<float> x(rows), ones(rows, 1.0f), zeros(rows, 0.0f);
  std::mt19937 rng(7);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  for (float& v : x) v = normal(rng);
  const std::vector<float> gamma(1, 1.0f), beta(1, 0.0f);
  Device<float> d_x(x), d_dy(ones), d_zero(zeros), d_g(gamma), d_b(beta), d_y(rows), d_dx(rows),
      d_dg(1), d_db(1), d_mean(rows), d_rstd(rows);
  Device<double> d_ws(nk::NormBackwardWorkspaceSize(rows, 1));
  cudaError_t err = nk::LaunchNormForward(nullptr, true, d_x.ptr, d_g.ptr, d_b.ptr, rows, 1L, 1e-5f,
                                          d_y.ptr, d_mean.ptr, d_rstd.ptr);
  if (err == cudaSuccess) {
    err = nk::LaunchNormBackward(nullptr, true, d_dy.ptr, d_x.ptr, d_g.ptr, d_mean.ptr, d_rstd.ptr,
                                 d_zero.ptr, d_zero.ptr, rows, 1L, d_ws.ptr, d_dx.ptr, d_dg.ptr, d_db.ptr);
  }
  if (err == cudaSuccess) err = cudaDeviceSynchronize();
  const double dbeta = err == cudaSuccess ? d_db.Get(1)[0] : -1.0;
  const bool ok = dbeta == static_cast<double>(rows);
  ok ? ++passes : ++failures;
  if (!ok) std::printf("FAIL many rows: dbeta %.1f != %ld (%s)\n", dbeta, rows, cudaGetErrorString(err));
}

int main() {
  if (const int skip = SkipWithoutGpu(); skip >= 0) return skip;
  const long shapes[][2] = {{8192, 1024}, {3, 4097}, {0, 8}, {5, 1}, {1, 7}, {300, 33}, {2, 0}};
  for (bool center : {true, false}) {
    for (const auto& s : shapes) {
      RunCase<float>("float32", center, s[0], s[1]);
      RunCase<double>("float64", center, s[0], s[1]);
      RunCase<k::Half>("float16", center, s[0], s[1]);
      RunCase<k::BFloat16>("bfloat16", center, s[0], s[1]);
    }
  }
  // Accuracy targets: offsets up to 1e4 and 16M-long rows in float32.
  for (bool center : {true, false}) {
    for (double offset : {1e2, 1e4}) RunCase<float>("float32", center, 64, 1024, offset, 1e-4);
    RunCase<float>("float32", center, 1, 1L << 24, 0.0, 1e-5);
  }
  RunManyRowsCase();
  return Report();
}
