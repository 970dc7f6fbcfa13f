// Shared pieces of the framework-free GPU checks (tests/kernels/*_gpu_check.cu.cc):
// storage-type conversions, device buffers, tolerances and the pass/fail
// count. No TensorFlow.
#ifndef TFKIT_TESTS_KERNELS_GPU_CHECK_CUH_
#define TFKIT_TESTS_KERNELS_GPU_CHECK_CUH_

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <string>
#include <type_traits>
#include <vector>

#include "kernels/common/types.h"

namespace k = tfkit::kernels;

inline double ToDouble(float v) { return v; }
inline double ToDouble(double v) { return v; }
inline double ToDouble(k::Half v) {
  __half h;
  std::memcpy(&h, &v, 2);
  return __half2float(h);
}
inline double ToDouble(k::BFloat16 v) {
  __nv_bfloat16 h;
  std::memcpy(&h, &v, 2);
  return __bfloat162float(h);
}
template <typename T>
T FromDouble(double v) {
  if constexpr (std::is_same_v<T, k::Half>) {
    __half h = __float2half_rn(static_cast<float>(v));
    T out;
    std::memcpy(&out, &h, 2);
    return out;
  } else if constexpr (std::is_same_v<T, k::BFloat16>) {
    __nv_bfloat16 h = __float2bfloat16_rn(static_cast<float>(v));
    T out;
    std::memcpy(&out, &h, 2);
    return out;
  } else {
    return static_cast<T>(v);
  }
}

template <typename T>
double Tolerance() {
  if constexpr (std::is_same_v<T, double>) return 1e-9;
  if constexpr (std::is_same_v<T, float>) return 2e-3;
  if constexpr (std::is_same_v<T, k::Half>) return 3e-2;
  return 2e-1;
}

template <typename T>
struct Device {
  T* ptr = nullptr;
  explicit Device(size_t n) { cudaMalloc(&ptr, std::max<size_t>(n, 1) * sizeof(T)); }
  Device(const std::vector<T>& host) : Device(host.size()) {
    cudaMemcpy(ptr, host.data(), host.size() * sizeof(T), cudaMemcpyHostToDevice);
  }
  ~Device() { cudaFree(ptr); }
  std::vector<T> Get(size_t n) const {
    std::vector<T> host(n);
    cudaMemcpy(host.data(), ptr, n * sizeof(T), cudaMemcpyDeviceToHost);
    return host;
  }
};

inline int failures = 0, passes = 0;

// Compares got with want, errors scaled by 1 + |want|; prints `what` on a failure.
template <typename T, typename R>
void Expect(const std::string& what, const std::vector<T>& got, const std::vector<R>& want, double tol) {
  double worst = 0;
  for (size_t i = 0; i < want.size(); ++i) {
    const double w = static_cast<double>(want[i]);
    const double err = std::fabs(ToDouble(got[i]) - w) / (1.0 + std::fabs(w));
    if (!(err <= worst)) worst = err;
  }
  const bool ok = worst <= tol;
  ok ? ++passes : ++failures;
  if (!ok) std::printf("FAIL %s: worst scaled error %.3g > %.3g\n", what.c_str(), worst, tol);
}

// False (after a failure line) when the launches or the device reported an error.
inline bool Launched(cudaError_t err, const std::string& what) {
  if (err == cudaSuccess) err = cudaDeviceSynchronize();
  if (err == cudaSuccess) return true;
  std::printf("FAIL %s: %s\n", what.c_str(), cudaGetErrorString(err));
  ++failures;
  return false;
}

// Exit code 77 (skipped) when no GPU is visible, else -1 to go on.
inline int SkipWithoutGpu() {
  int devices = 0;
  if (cudaGetDeviceCount(&devices) != cudaSuccess || devices == 0) {
    std::printf("no GPU visible\n");
    return 77;
  }
  return -1;
}

inline int Report() {
  std::printf("%d passed, %d failed\n", passes, failures);
  return failures ? 1 : 0;
}

template <typename T>
const char* TypeName() {
  if constexpr (std::is_same_v<T, double>) return "float64";
  if constexpr (std::is_same_v<T, float>) return "float32";
  if constexpr (std::is_same_v<T, k::Half>) return "float16";
  return "bfloat16";
}

#endif  // TFKIT_TESTS_KERNELS_GPU_CHECK_CUH_
