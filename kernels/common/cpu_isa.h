// CPU loops built for several x86-64 instruction sets, run in the widest the
// CPU has. A family writes its row loops in a .inc file (no include guard,
// no namespace of its own) and, inside its namespace,
//
//   #define TFKIT_ISA_LOOPS "kernels/<family>/<family>_rows.inc"
//   #include "kernels/common/isa_builds.inc"
//
// builds them as generic:: and, with GCC on x86-64, also as avx2:: and
// avx512::; its dispatchers call TFKIT_ON_THIS_CPU(Loop(args)).
#ifndef TFKIT_KERNELS_COMMON_CPU_ISA_H_
#define TFKIT_KERNELS_COMMON_CPU_ISA_H_

#include <cstdlib>
#include <cstring>
#include <type_traits>

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && !defined(__CUDACC__)
#define TFKIT_X86_64_GCC 1
#else
#define TFKIT_X86_64_GCC 0
#endif

namespace tfkit {
namespace kernels {

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

}  // namespace kernels
}  // namespace tfkit

// Returns the call `...` from the widest build for storage type T float or
// double; the 16-bit types spend their time converting, and run the
// baseline build. A family whose 16-bit types do enough arithmetic in float
// per element loaded (the attention tiles) dispatches on its computation
// type instead: TFKIT_ON_THIS_CPU_COMPUTING(U, ...).
#define TFKIT_ON_THIS_CPU(...) TFKIT_ON_THIS_CPU_COMPUTING(T, __VA_ARGS__)
#if TFKIT_X86_64_GCC
#define TFKIT_ON_THIS_CPU_COMPUTING(TYPE, ...)                                 \
  if constexpr (std::is_same_v<TYPE, float> || std::is_same_v<TYPE, double>) { \
    switch (::tfkit::kernels::ThisCpu()) {                                     \
      case ::tfkit::kernels::Isa::kAvx512:                                     \
        return avx512::__VA_ARGS__;                                            \
      case ::tfkit::kernels::Isa::kAvx2:                                       \
        return avx2::__VA_ARGS__;                                              \
      case ::tfkit::kernels::Isa::kBaseline:                                   \
        break;                                                                 \
    }                                                                          \
  }                                                                            \
  return generic::__VA_ARGS__;
#else
#define TFKIT_ON_THIS_CPU_COMPUTING(TYPE, ...) return generic::__VA_ARGS__;
#endif

#endif  // TFKIT_KERNELS_COMMON_CPU_ISA_H_
