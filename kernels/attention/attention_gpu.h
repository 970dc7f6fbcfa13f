// Dot-product attention, tiled with an online softmax: CUDA launchers.
//
// Framework-free host functions that enqueue work on `stream`, with the
// semantics of the CPU kernels (attention_cpu.h): the same logits, masking,
// skipped tiles, dense rows and dropout bits. T is one of float, double,
// Half, BFloat16 (kernels/common/types.h); every pointer is a device
// pointer. Each returns cudaGetLastError() (or the error of a launch whose
// tiles do not fit the device's shared memory).
#ifndef TFKIT_KERNELS_ATTENTION_ATTENTION_GPU_H_
#define TFKIT_KERNELS_ATTENTION_ATTENTION_GPU_H_

#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/attention/attention_args.h"
#include "kernels/common/types.h"

namespace tfkit {
namespace kernels {
namespace attention {

// out [B, T, N, H] and lse [B, N, T].
template <typename T>
cudaError_t LaunchAttentionForward(cudaStream_t stream, const AttentionInputs<T>& in, T* out, Acc<T>* lse);

// The Acc<T> elements of device scratch LaunchAttentionBackward needs, for
// a bias of bias_size elements (0 without one).
int64_t AttentionBackwardWorkspaceSize(const AttentionShape& shape, int64_t bias_size);

// dquery, dkey, dvalue and (with a bias) dbias from g's dout, out and lse;
// g's row_delta, row_inverse and dbias_sum are taken from `workspace`.
template <typename T>
cudaError_t LaunchAttentionBackward(cudaStream_t stream, const AttentionInputs<T>& in, const AttentionGrads<T>& g,
                                    Acc<T>* workspace);

}  // namespace attention
}  // namespace kernels
}  // namespace tfkit

#endif  // TFKIT_KERNELS_ATTENTION_ATTENTION_GPU_H_
