// The opening every OpKernel file shares: TensorFlow's kernel headers,
// tfkit's checks (op_utils.h), the names OpKernels use, the two devices,
// Acc<T> (kernels/common/types.h), and one registration over TensorFlow's
// float-type list, the types every tfkit op's `T` attr allows:
//
//   #define TFKIT_REGISTER_KERNELS(DEVICE, DEV, T)
//     REGISTER_KERNEL_BUILDER(Name("Tfkit>Op").Device(DEVICE).TypeConstraint<T>("T"), Op<DEV, T>);
//   TFKIT_REGISTER_FLOAT_KERNELS()
//
// registers each kernel for half, bfloat16, float and double on the CPU and,
// in CUDA builds, on the GPU. Ops declare that type list with kFloatTypesAttr.
#ifndef TFKIT_KERNEL_PRELUDE_H_
#define TFKIT_KERNEL_PRELUDE_H_

#include "kernels/common/types.h"
#include "tensorflow/core/framework/op_kernel.h"
#include "tensorflow/core/framework/register_types.h"
#include "tensorflow/core/framework/tensor.h"
#include "tfkit/op_utils.h"

namespace tfkit {

using ::tensorflow::OpKernel;
using ::tensorflow::OpKernelConstruction;
using ::tensorflow::OpKernelContext;
using ::tensorflow::Tensor;
using ::tensorflow::TensorShape;

using CPUDevice = Eigen::ThreadPoolDevice;
using GPUDevice = Eigen::GpuDevice;

template <typename T>
using Acc = ::tfkit::kernels::Acc<T>;

// The kernels compute in Acc<T>, the type CheckAccumulationType (op_utils.h)
// requires of an op's attr U.
template <typename T>
constexpr bool kAccIsAccumulationType =
    AccumulationType(::tensorflow::DataTypeToEnum<T>::value) == ::tensorflow::DataTypeToEnum<Acc<T>>::value;
static_assert(kAccIsAccumulationType<Eigen::half> && kAccIsAccumulationType<Eigen::bfloat16> &&
                  kAccIsAccumulationType<float> && kAccIsAccumulationType<double>,
              "Acc<T> and AccumulationType agree");

}  // namespace tfkit

#define TFKIT_REGISTER_KERNELS_ON_CPU_(T) TFKIT_REGISTER_KERNELS(::tensorflow::DEVICE_CPU, ::tfkit::CPUDevice, T)
#define TFKIT_REGISTER_KERNELS_ON_GPU_(T) TFKIT_REGISTER_KERNELS(::tensorflow::DEVICE_GPU, ::tfkit::GPUDevice, T)

#if GOOGLE_CUDA
#define TFKIT_REGISTER_FLOAT_KERNELS()                  \
  TF_CALL_FLOAT_TYPES(TFKIT_REGISTER_KERNELS_ON_CPU_) \
  TF_CALL_FLOAT_TYPES(TFKIT_REGISTER_KERNELS_ON_GPU_)
#else
#define TFKIT_REGISTER_FLOAT_KERNELS() TF_CALL_FLOAT_TYPES(TFKIT_REGISTER_KERNELS_ON_CPU_)
#endif

#endif  // TFKIT_KERNEL_PRELUDE_H_
