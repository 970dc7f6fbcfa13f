// OpKernels for the interaction family: validate, then compute the pairs'
// dot products (sharding the batch items over the CPU thread pool, or on
// TF's CUDA stream). Both gradients are deterministic.
#include "kernels/interaction/interaction_cpu.h"
#include "tfkit/kernel_prelude.h"

#if GOOGLE_CUDA
#include "kernels/interaction/interaction_gpu.h"
#endif

namespace tfkit {
namespace {

using ::tfkit::kernels::interaction::InteractionShape;
namespace math = ::tfkit::kernels::interaction;

template <typename Device, typename T>
struct Functor;

template <typename T>
struct Functor<CPUDevice, T> {
  static void Interact(OpKernelContext* ctx, const T* features, const InteractionShape& shape, T* out) {
    ShardRows(ctx, shape.batch, math::ItemCost(shape), [&](int64_t begin, int64_t end) {
      math::InteractRows<T, Acc<T>>(features, shape, begin, end, out);
    });
  }

  static void Grad(OpKernelContext* ctx, const T* features, const T* grad, const InteractionShape& shape,
                   T* grad_features) {
    ShardRows(ctx, shape.batch, math::ItemCost(shape), [&](int64_t begin, int64_t end) {
      math::InteractGradRows<T, Acc<T>>(features, grad, shape, begin, end, grad_features);
    });
  }
};

#if GOOGLE_CUDA
template <typename T>
struct Functor<GPUDevice, T> {
  static void Interact(OpKernelContext* ctx, const T* features, const InteractionShape& shape, T* out) {
    CheckCudaLaunch(ctx, math::LaunchInteract(ctx->eigen_gpu_device().stream(), AsGpu(features), shape, AsGpu(out)),
                    "dot interaction");
  }

  static void Grad(OpKernelContext* ctx, const T* features, const T* grad, const InteractionShape& shape,
                   T* grad_features) {
    CheckCudaLaunch(ctx,
                    math::LaunchInteractGrad(ctx->eigen_gpu_device().stream(), AsGpu(features), AsGpu(grad), shape,
                                             AsGpu(grad_features)),
                    "dot interaction gradient");
  }
};
#endif  // GOOGLE_CUDA

// The family's shape rule on features; *pairs is the output's shape.
absl::Status Shapes(const Tensor& features, InteractionShape* shape, TensorShape* pairs) {
  ::tfkit::kernels::Dims output;
  TF_RETURN_IF_ERROR(RuleStatus(math::InteractionShapeError(DimsOf(features.shape()), shape, &output)));
  return CountedShape("the output [batch, pairs]", output, pairs);
}

template <typename Device, typename T>
class DotInteractionOp : public OpKernel {
 public:
  explicit DotInteractionOp(OpKernelConstruction* ctx) : OpKernel(ctx) {
    OP_REQUIRES_OK(ctx, ctx->GetAttr("self_interaction", &self_interaction_));
  }

  void Compute(OpKernelContext* ctx) override {
    const Tensor& features = ctx->input(0);
    InteractionShape shape;
    shape.self_interaction = self_interaction_;
    TensorShape pairs;
    OP_REQUIRES_OK(ctx, Shapes(features, &shape, &pairs));
    Tensor* out = nullptr;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, pairs, &out));
    if (NothingToCompute(ctx)) return;
    Functor<Device, T>::Interact(ctx, features.flat<T>().data(), shape, out->flat<T>().data());
  }

 private:
  bool self_interaction_ = false;
};

template <typename Device, typename T>
class DotInteractionGradOp : public OpKernel {
 public:
  explicit DotInteractionGradOp(OpKernelConstruction* ctx) : OpKernel(ctx) {
    OP_REQUIRES_OK(ctx, ctx->GetAttr("self_interaction", &self_interaction_));
  }

  void Compute(OpKernelContext* ctx) override {
    const Tensor& features = ctx->input(0);
    const Tensor& grad = ctx->input(1);
    InteractionShape shape;
    shape.self_interaction = self_interaction_;
    TensorShape pairs;
    OP_REQUIRES_OK(ctx, Shapes(features, &shape, &pairs));
    OP_REQUIRES_OK(ctx, CheckShape("grad_output", grad, pairs));
    Tensor* grad_features = nullptr;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, features.shape(), &grad_features));
    if (NothingToCompute(ctx)) return;
    Functor<Device, T>::Grad(ctx, features.flat<T>().data(), grad.flat<T>().data(), shape,
                             grad_features->flat<T>().data());
  }

 private:
  bool self_interaction_ = false;
};

#define TFKIT_REGISTER_KERNELS(DEVICE, DEV, T)                                                                  \
  REGISTER_KERNEL_BUILDER(Name("Tfkit>DotInteraction").Device(DEVICE).TypeConstraint<T>("T"),                  \
                          DotInteractionOp<DEV, T>);                                                             \
  REGISTER_KERNEL_BUILDER(Name("Tfkit>DotInteractionGrad").Device(DEVICE).TypeConstraint<T>("T"),              \
                          DotInteractionGradOp<DEV, T>);

TFKIT_REGISTER_FLOAT_KERNELS()
#undef TFKIT_REGISTER_KERNELS

}  // namespace
}  // namespace tfkit
