// OpKernels for the ${family} family: validate, allocate, shard over the CPU
// thread pool or hand TF's stream to the CUDA launchers.
#include "kernels/common/types.h"
#include "kernels/${family}/${family}_cpu.h"
#include "tensorflow/core/framework/op_kernel.h"
#include "tensorflow/core/framework/register_types.h"
#include "tfkit/op_utils.h"

#if GOOGLE_CUDA
#include "kernels/${family}/${family}_gpu.h"
#endif

namespace tfkit {
namespace {

using ::tensorflow::OpKernel;
using ::tensorflow::OpKernelConstruction;
using ::tensorflow::OpKernelContext;
using ::tensorflow::Tensor;
namespace math = ::tfkit::kernels::${family};

using CPUDevice = Eigen::ThreadPoolDevice;
using GPUDevice = Eigen::GpuDevice;

template <typename T>
using Acc = ::tfkit::kernels::Acc<T>;

constexpr int64_t kCostPerElement = 10;

template <typename Device, typename T>
struct ${Camel}Functor;

template <typename T>
struct ${Camel}Functor<CPUDevice, T> {
  static void Forward(OpKernelContext* ctx, const T* x, int64_t n, Acc<T> limit, T* y) {
    ShardRows(ctx, n, kCostPerElement,
              [&](int64_t begin, int64_t end) { math::${Camel}Forward(x, begin, end, limit, y); });
  }
  static void Backward(OpKernelContext* ctx, const T* dy, const T* y, int64_t n, Acc<T> limit, T* dx) {
    ShardRows(ctx, n, kCostPerElement,
              [&](int64_t begin, int64_t end) { math::${Camel}Backward(dy, y, begin, end, limit, dx); });
  }
};

#if GOOGLE_CUDA
template <typename T>
struct GpuStorage {
  using type = T;
};
template <>
struct GpuStorage<Eigen::half> {
  using type = ::tfkit::kernels::Half;
};
template <>
struct GpuStorage<Eigen::bfloat16> {
  using type = ::tfkit::kernels::BFloat16;
};
template <typename T>
using G = typename GpuStorage<T>::type;

template <typename T>
struct ${Camel}Functor<GPUDevice, T> {
  static void Forward(OpKernelContext* ctx, const T* x, int64_t n, Acc<T> limit, T* y) {
    CheckCudaLaunch(ctx,
                    math::Launch${Camel}Forward(ctx->eigen_gpu_device().stream(), reinterpret_cast<const G<T>*>(x),
                                                n, limit, reinterpret_cast<G<T>*>(y)),
                    "${family} forward");
  }
  static void Backward(OpKernelContext* ctx, const T* dy, const T* y, int64_t n, Acc<T> limit, T* dx) {
    CheckCudaLaunch(ctx,
                    math::Launch${Camel}Backward(ctx->eigen_gpu_device().stream(), reinterpret_cast<const G<T>*>(dy),
                                                 reinterpret_cast<const G<T>*>(y), n, limit,
                                                 reinterpret_cast<G<T>*>(dx)),
                    "${family} backward");
  }
};
#endif  // GOOGLE_CUDA

// The attr shared by both ops, checked once at construction.
class ${Camel}Base : public OpKernel {
 public:
  explicit ${Camel}Base(OpKernelConstruction* ctx) : OpKernel(ctx) {
    OP_REQUIRES_OK(ctx, ctx->GetAttr("limit", &limit_));
    OP_REQUIRES_OK(ctx, CheckPositiveFinite("limit", limit_));
  }

 protected:
  float limit_ = 0;
};

template <typename Device, typename T>
class ${Camel}Op : public ${Camel}Base {
 public:
  using ${Camel}Base::${Camel}Base;

  void Compute(OpKernelContext* ctx) override {
    const Tensor& x = ctx->input(0);
    Tensor* y = nullptr;
    OP_REQUIRES_OK(ctx, ctx->forward_input_or_allocate_output({0}, 0, x.shape(), &y));
    ${Camel}Functor<Device, T>::Forward(ctx, x.flat<T>().data(), x.NumElements(), static_cast<Acc<T>>(limit_),
                                        y->flat<T>().data());
  }
};

template <typename Device, typename T>
class ${Camel}GradOp : public ${Camel}Base {
 public:
  using ${Camel}Base::${Camel}Base;

  void Compute(OpKernelContext* ctx) override {
    const Tensor& dy = ctx->input(0);
    const Tensor& y = ctx->input(1);
    OP_REQUIRES_OK(ctx, CheckSameShape("dy", dy, "y", y));
    Tensor* dx = nullptr;
    OP_REQUIRES_OK(ctx, ctx->forward_input_or_allocate_output({0}, 0, y.shape(), &dx));
    ${Camel}Functor<Device, T>::Backward(ctx, dy.flat<T>().data(), y.flat<T>().data(), y.NumElements(),
                                         static_cast<Acc<T>>(limit_), dx->flat<T>().data());
  }
};

#define TFKIT_REGISTER_${FAMILY}(DEVICE, DEV, T)                                                     \
  REGISTER_KERNEL_BUILDER(Name("${op}").Device(DEVICE).TypeConstraint<T>("T"), ${Camel}Op<DEV, T>); \
  REGISTER_KERNEL_BUILDER(Name("${op}Grad").Device(DEVICE).TypeConstraint<T>("T"), ${Camel}GradOp<DEV, T>);

#define TFKIT_REGISTER_${FAMILY}_CPU(T) TFKIT_REGISTER_${FAMILY}(::tensorflow::DEVICE_CPU, CPUDevice, T)
TF_CALL_half(TFKIT_REGISTER_${FAMILY}_CPU);
TF_CALL_bfloat16(TFKIT_REGISTER_${FAMILY}_CPU);
TF_CALL_float(TFKIT_REGISTER_${FAMILY}_CPU);
TF_CALL_double(TFKIT_REGISTER_${FAMILY}_CPU);
#undef TFKIT_REGISTER_${FAMILY}_CPU

#if GOOGLE_CUDA
#define TFKIT_REGISTER_${FAMILY}_GPU(T) TFKIT_REGISTER_${FAMILY}(::tensorflow::DEVICE_GPU, GPUDevice, T)
TF_CALL_half(TFKIT_REGISTER_${FAMILY}_GPU);
TF_CALL_bfloat16(TFKIT_REGISTER_${FAMILY}_GPU);
TF_CALL_float(TFKIT_REGISTER_${FAMILY}_GPU);
TF_CALL_double(TFKIT_REGISTER_${FAMILY}_GPU);
#undef TFKIT_REGISTER_${FAMILY}_GPU
#endif  // GOOGLE_CUDA

#undef TFKIT_REGISTER_${FAMILY}

}  // namespace
}  // namespace tfkit
