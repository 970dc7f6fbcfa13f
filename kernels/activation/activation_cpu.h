// The activation family: fused bias + activation, y = act(x + bias) with
// bias along the last axis, and gated activations, y = act(a) * b with
// x = [a, b] split along the last axis. CPU kernels.
//
// Framework-free: plain templates over raw pointers, on [rows, cols] row
// ranges [begin, end) so callers can shard. T is the storage type, U the
// computation type (Acc<T>), A the activation (activation_math.h).
#ifndef TFKIT_KERNELS_ACTIVATION_ACTIVATION_CPU_H_
#define TFKIT_KERNELS_ACTIVATION_ACTIVATION_CPU_H_

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <type_traits>

#include "kernels/activation/activation_math.h"
#include "kernels/common/types.h"

// The row loops are built for the baseline instruction set and, with GCC on
// x86-64, also for AVX2 and AVX-512, and run in the widest the CPU has.
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && !defined(__CUDACC__)
#define TFKIT_X86_64_GCC 1
#else
#define TFKIT_X86_64_GCC 0
#endif

TFKIT_VECTORIZE_BEGIN

namespace tfkit {
namespace kernels {
namespace activation {

namespace generic {
#include "kernels/activation/activation_rows.inc"
}  // namespace generic

#if TFKIT_X86_64_GCC
#pragma GCC push_options
#pragma GCC target("avx2,fma")
namespace avx2 {
#include "kernels/activation/activation_rows.inc"
}  // namespace avx2
#pragma GCC pop_options

#pragma GCC push_options
#pragma GCC target("avx512f,avx512dq,avx512vl,avx512bw,avx2,fma")
namespace avx512 {
#include "kernels/activation/activation_rows.inc"
}  // namespace avx512
#pragma GCC pop_options
#endif

enum class Isa { kBaseline, kAvx2, kAvx512 };

// The widest of the loops' builds this CPU runs: AVX-512 (16 floats per
// instruction), AVX2 + FMA (8), else the baseline. TFKIT_CPU_ISA=baseline
// or avx2 in the environment caps it (to test or compare the builds).
inline Isa ThisCpu() {
#if TFKIT_X86_64_GCC
  static const Isa isa = [] {
    __builtin_cpu_init();
    Isa widest = Isa::kBaseline;
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") &&
        __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512bw")) {
      widest = Isa::kAvx512;
    } else if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
      widest = Isa::kAvx2;
    }
    const char* cap = std::getenv("TFKIT_CPU_ISA");
    if (cap != nullptr && std::strcmp(cap, "baseline") == 0) return Isa::kBaseline;
    if (cap != nullptr && std::strcmp(cap, "avx2") == 0 && widest == Isa::kAvx512) return Isa::kAvx2;
    return widest;
  }();
  return isa;
#else
  return Isa::kBaseline;
#endif
}

// float and double only: the 16-bit types spend their time converting, and
// their loops stay the baseline build (a third of the code to compile).
#if TFKIT_X86_64_GCC
#define TFKIT_ON_THIS_CPU(call)                                        \
  if constexpr (std::is_same_v<T, float> || std::is_same_v<T, double>) { \
    switch (ThisCpu()) {                                               \
      case Isa::kAvx512: return avx512::call;                          \
      case Isa::kAvx2: return avx2::call;                              \
      case Isa::kBaseline: break;                                      \
    }                                                                  \
  }                                                                    \
  return generic::call;
#else
#define TFKIT_ON_THIS_CPU(call) return generic::call;
#endif

template <Activation A, typename T>
void BiasActivationRows(const T* x, const T* bias, int64_t cols, int64_t begin, int64_t end, T* y) {
  TFKIT_ON_THIS_CPU(BiasActivationRows<A>(x, bias, cols, begin, end, y))
}

template <Activation A, typename T, typename W>
void BiasActivationGradRows(const T* dy, const T* x, const T* bias, int64_t cols, int64_t begin, int64_t end, T* dx,
                            W* dbias_partial) {
  TFKIT_ON_THIS_CPU(BiasActivationGradRows<A>(dy, x, bias, cols, begin, end, dx, dbias_partial))
}

template <Activation A, typename T>
void GatedActivationRows(const T* x, int64_t half, int64_t begin, int64_t end, T* y) {
  TFKIT_ON_THIS_CPU(GatedActivationRows<A>(x, half, begin, end, y))
}

template <Activation A, typename T>
void GatedActivationGradRows(const T* dy, const T* x, int64_t half, int64_t begin, int64_t end, T* dx) {
  TFKIT_ON_THIS_CPU(GatedActivationGradRows<A>(dy, x, half, begin, end, dx))
}

#undef TFKIT_ON_THIS_CPU

}  // namespace activation
}  // namespace kernels
}  // namespace tfkit

TFKIT_VECTORIZE_END

#undef TFKIT_X86_64_GCC

#endif  // TFKIT_KERNELS_ACTIVATION_ACTIVATION_CPU_H_
