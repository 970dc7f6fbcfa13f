// The interaction family: CUDA launchers (see interaction_cpu.h for the math).
//
// Framework-free host functions that enqueue work on `stream`. T is one of
// float, double, Half, BFloat16 (kernels/common/types.h). All pointers are
// device pointers. Each returns cudaGetLastError().
#ifndef TFKIT_KERNELS_INTERACTION_INTERACTION_GPU_H_
#define TFKIT_KERNELS_INTERACTION_INTERACTION_GPU_H_

#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/common/types.h"
#include "kernels/interaction/interaction_rules.h"

namespace tfkit {
namespace kernels {
namespace interaction {

// out [batch, pairs]: the dot products of the pairs of features [batch,
// features, dim]. One block per batch item, its features in shared memory
// where they fit (else read from global memory).
template <typename T>
cudaError_t LaunchInteract(cudaStream_t stream, const T* features, const InteractionShape& shape, T* out);

// grad_features [batch, features, dim] for the output gradient grad [batch,
// pairs]: one block per batch item, one thread per element (in order over
// the features, so deterministic).
template <typename T>
cudaError_t LaunchInteractGrad(cudaStream_t stream, const T* features, const T* grad, const InteractionShape& shape,
                               T* grad_features);

}  // namespace interaction
}  // namespace kernels
}  // namespace tfkit

#endif  // TFKIT_KERNELS_INTERACTION_INTERACTION_GPU_H_
