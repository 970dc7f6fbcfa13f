// Standalone GPU check of the rotary CUDA launcher against the CPU kernels
// (run in double). No TensorFlow: build with nvcc, run on a machine with a
// GPU. Exits 0 when every case passes, 1 on a mismatch, 77 when no GPU is
// visible.
//   nvcc -x cu -std=c++17 -O2 -arch=native -I. -o rotary_gpu_check \
//        tests/kernels/rotary_gpu_check.cu.cc kernels/rotary/rotary.cu.cc
#include <random>
#include <string>

#include "kernels/rotary/rotary_cpu.h"
#include "kernels/rotary/rotary_gpu.h"
#include "tests/kernels/gpu_check.cuh"

namespace rk = tfkit::kernels::rotary;

// x [batch, seq, heads, dim], positions [1 or batch, seq] from `start`; the
// forward rotation, then the inverse (the gradient) of the result.
template <typename T>
void RunCase(long batch, long seq, long heads, long dim, bool per_batch, bool interleaved, double start) {
  using U = k::Acc<T>;
  const std::string what = std::string(TypeName<T>()) + (interleaved ? " interleaved" : " half") + " [" +
                           std::to_string(batch) + ", " + std::to_string(seq) + ", " + std::to_string(heads) + ", " +
                           std::to_string(dim) + "]" + (per_batch ? " per-batch positions" : "") + " from " +
                           std::to_string(static_cast<long>(start));
  rk::RotaryShape shape{batch, seq, heads, dim, per_batch || batch == 1, interleaved};
  const long half = dim / 2, rows = (shape.per_batch_positions ? batch : 1) * seq, n = batch * seq * heads * dim;
  std::mt19937 rng(batch * 7 + seq * 3 + dim);
  std::normal_distribution<double> normal(0.0, 1.0);
  std::vector<T> x(n);
  std::vector<double> xd(n);
  for (long i = 0; i < n; ++i) xd[i] = ToDouble(x[i] = FromDouble<T>(normal(rng)));
  std::vector<U> positions(rows), inv_freq(half);
  for (long r = 0; r < rows; ++r) positions[r] = static_cast<U>(start + r % seq + (r / seq) * 3);
  for (long j = 0; j < half; ++j) inv_freq[j] = static_cast<U>(std::pow(10000.0, -2.0 * j / dim));
  // The CPU kernels in double, on the same (U-rounded) angles.
  std::vector<double> pd(positions.begin(), positions.end()), fd(inv_freq.begin(), inv_freq.end());
  std::vector<double> angles_cos(rows * half), angles_sin(rows * half), y(n), back(n);
  for (long r = 0; r < rows; ++r) {
    for (long j = 0; j < half; ++j) {
      const double angle = static_cast<double>(positions[r] * inv_freq[j]);
      angles_cos[r * half + j] = std::cos(angle);
      angles_sin[r * half + j] = std::sin(angle);
    }
  }
  rk::RotaryRows(xd.data(), angles_cos.data(), angles_sin.data(), shape, 1.0, 0, batch * seq, y.data());
  rk::RotaryRows(y.data(), angles_cos.data(), angles_sin.data(), shape, -1.0, 0, batch * seq, back.data());
  Device<T> d_x(x), d_y(n), d_back(n);
  Device<U> d_pos(positions), d_freq(inv_freq), d_cos(rows * half), d_sin(rows * half);
  cudaError_t err = rk::LaunchRotary(nullptr, d_x.ptr, d_pos.ptr, d_freq.ptr, shape, U(1), d_cos.ptr, d_sin.ptr,
                                     d_y.ptr);
  if (err == cudaSuccess) {
    err = rk::LaunchRotary(nullptr, d_y.ptr, d_pos.ptr, d_freq.ptr, shape, U(-1), d_cos.ptr, d_sin.ptr, d_back.ptr);
  }
  if (!Launched(err, what)) return;
  Expect(what + " y", d_y.Get(n), y, Tolerance<T>());
  Expect(what + " inverse", d_back.Get(n), xd, 2 * Tolerance<T>());
}

template <typename T>
void AllCases() {
  for (bool interleaved : {false, true}) {
    RunCase<T>(8, 512, 16, 64, false, interleaved, 0);
    RunCase<T>(2, 7, 3, 10, true, interleaved, 5);
    RunCase<T>(1, 4, 1, 2, false, interleaved, 0);
    RunCase<T>(3, 5, 1, 8, false, interleaved, 100000);
    RunCase<T>(0, 4, 2, 8, false, interleaved, 0);
    RunCase<T>(2, 3, 2, 0, false, interleaved, 0);
  }
}

int main() {
  if (const int skip = SkipWithoutGpu(); skip >= 0) return skip;
  AllCases<float>();
  AllCases<double>();
  AllCases<k::Half>();
  AllCases<k::BFloat16>();
  return Report();
}
