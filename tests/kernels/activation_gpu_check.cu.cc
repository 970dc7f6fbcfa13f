// Standalone GPU check of the activation CUDA launchers against the CPU
// kernels (run in double). No TensorFlow: build with nvcc, run on a machine
// with a GPU. Exits 0 when every case passes, 1 on a mismatch, 77 when no
// GPU is visible.
//   nvcc -x cu -std=c++17 -O2 -arch=native -I. -o activation_gpu_check \
//        tests/kernels/activation_gpu_check.cu.cc kernels/activation/activation.cu.cc
#include <random>
#include <string>

#include "kernels/activation/activation_cpu.h"
#include "kernels/activation/activation_gpu.h"
#include "tests/kernels/gpu_check.cuh"

namespace ak = tfkit::kernels::activation;
using ak::Activation;

const char* const kNames[] = {"linear", "relu", "gelu", "gelu_tanh", "silu", "sigmoid", "tanh", "mish"};

template <typename T>
std::vector<T> Random(size_t n, double scale, std::mt19937& rng, std::vector<double>* exact) {
  std::normal_distribution<double> normal(0.0, scale);
  std::vector<T> values(n);
  exact->resize(n);
  for (size_t i = 0; i < n; ++i) {
    values[i] = FromDouble<T>(normal(rng));
    (*exact)[i] = ToDouble(values[i]);
  }
  return values;
}

template <typename T>
void BiasCase(Activation act, long rows, long cols) {
  const std::string what = std::string(TypeName<T>()) + " bias_activation " + kNames[static_cast<int>(act)] + " [" +
                           std::to_string(rows) + ", " + std::to_string(cols) + "]";
  std::mt19937 rng(rows * 31 + cols);
  std::vector<double> xd, bd, dyd;
  const std::vector<T> x = Random<T>(rows * cols, 3.0, rng, &xd), bias = Random<T>(cols, 1.0, rng, &bd);
  const std::vector<T> dy = Random<T>(rows * cols, 1.0, rng, &dyd);
  std::vector<double> y(rows * cols), dx(rows * cols), dbias(cols, 0.0);
  ak::WithActivation(act, [&](auto a) {
    ak::BiasActivationRows<decltype(a)::value>(xd.data(), bd.data(), cols, 0, rows, y.data());
    ak::BiasActivationGradRows<decltype(a)::value>(dyd.data(), xd.data(), bd.data(), cols, 0, rows, dx.data(),
                                                   dbias.data());
  });
  Device<T> d_x(x), d_b(bias), d_dy(dy), d_y(x.size()), d_dx(x.size()), d_db(cols);
  Device<k::Wide<k::Acc<T>>> d_ws(ak::BiasActivationGradWorkspaceSize(rows, cols));
  cudaError_t err = ak::LaunchBiasActivation(nullptr, act, d_x.ptr, d_b.ptr, rows, cols, d_y.ptr);
  if (err == cudaSuccess) {
    err = ak::LaunchBiasActivationGrad(nullptr, act, d_dy.ptr, d_x.ptr, d_b.ptr, rows, cols, d_ws.ptr, d_dx.ptr,
                                       d_db.ptr);
  }
  if (!Launched(err, what)) return;
  const double tol = Tolerance<T>();
  Expect(what + " y", d_y.Get(y.size()), y, tol);
  Expect(what + " dx", d_dx.Get(dx.size()), dx, tol);
  Expect(what + " dbias", d_db.Get(cols), dbias, tol * (1.0 + std::sqrt(static_cast<double>(rows))));
}

template <typename T>
void GatedCase(Activation act, long rows, long half) {
  const std::string what = std::string(TypeName<T>()) + " gated_activation " + kNames[static_cast<int>(act)] + " [" +
                           std::to_string(rows) + ", 2 * " + std::to_string(half) + "]";
  std::mt19937 rng(rows * 37 + half);
  std::vector<double> xd, dyd;
  const std::vector<T> x = Random<T>(rows * 2 * half, 3.0, rng, &xd), dy = Random<T>(rows * half, 1.0, rng, &dyd);
  std::vector<double> y(rows * half), dx(rows * 2 * half);
  ak::WithActivation(act, [&](auto a) {
    ak::GatedActivationRows<decltype(a)::value>(xd.data(), half, 0, rows, y.data());
    ak::GatedActivationGradRows<decltype(a)::value>(dyd.data(), xd.data(), half, 0, rows, dx.data());
  });
  Device<T> d_x(x), d_dy(dy), d_y(y.size()), d_dx(dx.size());
  cudaError_t err = ak::LaunchGatedActivation(nullptr, act, d_x.ptr, rows, half, d_y.ptr);
  if (err == cudaSuccess) err = ak::LaunchGatedActivationGrad(nullptr, act, d_dy.ptr, d_x.ptr, rows, half, d_dx.ptr);
  if (!Launched(err, what)) return;
  Expect(what + " y", d_y.Get(y.size()), y, Tolerance<T>());
  Expect(what + " dx", d_dx.Get(dx.size()), dx, Tolerance<T>());
}

// 2**25 rows of one column, dy = 1 and linear: dbias must be the row count
// exactly (a float32 running sum stops at 2**24).
void ManyRowsCase() {
  const long rows = 1L << 25;
  const std::vector<float> zeros(rows, 0.0f), ones(rows, 1.0f), bias(1, 0.0f);
  Device<float> d_x(zeros), d_dy(ones), d_b(bias), d_dx(rows), d_db(1);
  Device<double> d_ws(ak::BiasActivationGradWorkspaceSize(rows, 1));
  const cudaError_t err = ak::LaunchBiasActivationGrad(nullptr, Activation::kLinear, d_dy.ptr, d_x.ptr, d_b.ptr,
                                                       rows, 1L, d_ws.ptr, d_dx.ptr, d_db.ptr);
  if (!Launched(err, "many rows")) return;
  const double dbias = d_db.Get(1)[0];
  const bool ok = dbias == static_cast<double>(rows);
  ok ? ++passes : ++failures;
  if (!ok) std::printf("FAIL many rows: dbias %.1f != %ld\n", dbias, rows);
}

template <typename T>
void AllCases() {
  const long shapes[][2] = {{512, 1024}, {3, 4097}, {0, 8}, {5, 1}, {1, 7}, {300, 33}, {2, 0}};
  for (int a = 0; a < 8; ++a) {
    for (const auto& s : shapes) {
      BiasCase<T>(static_cast<Activation>(a), s[0], s[1]);
      GatedCase<T>(static_cast<Activation>(a), s[0], s[1]);
    }
  }
}

int main() {
  if (const int skip = SkipWithoutGpu(); skip >= 0) return skip;
  AllCases<float>();
  AllCases<double>();
  AllCases<k::Half>();
  AllCases<k::BFloat16>();
  ManyRowsCase();
  return Report();
}
