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

#include "kernels/activation/activation_math.h"
#include "kernels/common/cpu_isa.h"
#include "kernels/common/types.h"

TFKIT_VECTORIZE_BEGIN

namespace tfkit {
namespace kernels {
namespace activation {

#define TFKIT_ISA_LOOPS "kernels/activation/activation_rows.inc"
#include "kernels/common/isa_builds.inc"

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

}  // namespace activation
}  // namespace kernels
}  // namespace tfkit

TFKIT_VECTORIZE_END

#endif  // TFKIT_KERNELS_ACTIVATION_ACTIVATION_CPU_H_
