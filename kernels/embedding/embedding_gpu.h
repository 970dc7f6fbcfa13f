// The embedding family: CUDA launchers (see embedding_cpu.h for the math).
//
// Framework-free host functions that enqueue work on `stream`. T is one of
// float, double, Half, BFloat16 (kernels/common/types.h); Index is int32_t or
// int64_t. All pointers are device pointers. Each returns cudaGetLastError().
//
// Bad ids and splits: LaunchCheckBags records the first bad id's position and
// the first bad split's position in `status` (two int64, kNoneBad where all
// are good), for the caller to copy back; the other launchers never read out
// of bounds whatever the ids and splits hold (a bad id adds nothing, a bad
// bag is empty).
#ifndef TFKIT_KERNELS_EMBEDDING_EMBEDDING_GPU_H_
#define TFKIT_KERNELS_EMBEDDING_EMBEDDING_GPU_H_

#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/common/types.h"
#include "kernels/embedding/embedding_cpu.h"

namespace tfkit {
namespace kernels {
namespace embedding {

constexpr int64_t kNoneBad = 0x7f7f7f7f7f7f7f7f;  // every byte 0x7f

// status[0]: the first bad id's position; status[1]: the first bad split's.
template <typename Index>
cudaError_t LaunchCheckBags(cudaStream_t stream, const Index* ids, const int64_t* splits, const BagShape& shape,
                            int64_t* status);

template <typename T, typename Index>
cudaError_t LaunchEmbeddingBag(cudaStream_t stream, const Index* ids, const int64_t* splits, const T* params,
                               const T* weights, const BagShape& shape, T* y);

// dots is a workspace of shape.ids elements of BagSum<T> (used when weighted).
template <typename T, typename Index>
cudaError_t LaunchEmbeddingBagGrad(cudaStream_t stream, const T* dy, const Index* ids, const int64_t* splits,
                                   const T* params, const T* weights, const BagShape& shape, BagSum<T>* dots,
                                   T* d_values, T* d_weights);

}  // namespace embedding
}  // namespace kernels
}  // namespace tfkit

#endif  // TFKIT_KERNELS_EMBEDDING_EMBEDDING_GPU_H_
