// OpKernels for the deformable convolution family: validate, then run the
// im2col-and-matmul kernels over the CPU thread pool or on TF's CUDA
// stream. The CPU x gradient is deterministic; the GPU one uses atomics
// unless TF's op determinism is enabled.
#include <string>
#include <vector>

#include "kernels/deform_conv/deform_conv_cpu.h"
#include "tfkit/kernel_prelude.h"

#if GOOGLE_CUDA
#include "kernels/deform_conv/deform_conv_gpu.h"
#include "tensorflow/core/util/determinism.h"
#endif

namespace tfkit {
namespace {

using ::tfkit::kernels::deform_conv::DeformConvAttrs;
using ::tfkit::kernels::deform_conv::DeformConvShape;
namespace math = ::tfkit::kernels::deform_conv;

// The inputs of both ops, in their order.
template <typename T>
struct Inputs {
  const T* x;
  const T* offsets;
  const T* mask;
  const T* kernel;
};

template <typename T>
Inputs<T> InputsOf(OpKernelContext* ctx) {
  return {ctx->input(0).flat<T>().data(), ctx->input(1).flat<T>().data(), ctx->input(2).flat<T>().data(),
          ctx->input(3).flat<T>().data()};
}

// The gradients' outputs, in the grad op's order.
template <typename T>
struct Grads {
  T* x;
  T* offsets;
  T* mask;
  T* kernel;
};

// A temporary of `size` elements of E.
template <typename E>
absl::Status Workspace(OpKernelContext* ctx, int64_t size, Tensor* workspace) {
  return ctx->allocate_temp(::tensorflow::DataTypeToEnum<E>::v(), TensorShape({size}), workspace);
}

template <typename Device, typename T>
struct Functor;

template <typename T>
struct Functor<CPUDevice, T> {
  static void Forward(OpKernelContext* ctx, const Inputs<T>& in, const DeformConvShape& shape, T* out) {
    math::DeformConv<T, Acc<T>>(in.x, in.offsets, in.mask, in.kernel, shape, ShardOver(ctx), out);
  }

  static void Backward(OpKernelContext* ctx, const Inputs<T>& in, const T* grad, const DeformConvShape& shape,
                       const Grads<T>& out) {
    using W = ::tfkit::kernels::Wide<Acc<T>>;
    const math::GradWorkspace sizes = math::DeformConvGradWorkspace<Acc<T>>(shape);
    Tensor wave, sums;
    OP_REQUIRES_OK(ctx, Workspace<Acc<T>>(ctx, sizes.wave, &wave));
    OP_REQUIRES_OK(ctx, Workspace<W>(ctx, sizes.sums, &sums));
    math::DeformConvGrad<T, Acc<T>>(in.x, in.offsets, in.mask, in.kernel, grad, shape, ShardOver(ctx),
                                    wave.flat<Acc<T>>().data(), sums.flat<W>().data(), out.x, out.offsets, out.mask,
                                    out.kernel);
  }
};

#if GOOGLE_CUDA

template <typename T>
struct Functor<GPUDevice, T> {
  static void Forward(OpKernelContext* ctx, const Inputs<T>& in, const DeformConvShape& shape, T* out) {
    Tensor workspace;
    OP_REQUIRES_OK(ctx, Workspace<Acc<T>>(ctx, math::DeformConvWorkspaceSize(shape), &workspace));
    CheckCudaLaunch(ctx,
                    math::LaunchDeformConv(ctx->eigen_gpu_device().stream(), AsGpu(in.x), AsGpu(in.offsets),
                                           AsGpu(in.mask), AsGpu(in.kernel), shape,
                                           workspace.flat<Acc<T>>().data(), AsGpu(out)),
                    "deform_conv2d");
  }

  static void Backward(OpKernelContext* ctx, const Inputs<T>& in, const T* grad, const DeformConvShape& shape,
                       const Grads<T>& out) {
    Tensor workspace;
    OP_REQUIRES_OK(ctx, Workspace<Acc<T>>(ctx, math::DeformConvGradWorkspaceSize(shape), &workspace));
    CheckCudaLaunch(ctx,
                    math::LaunchDeformConvGrad(ctx->eigen_gpu_device().stream(), AsGpu(in.x), AsGpu(in.offsets),
                                               AsGpu(in.mask), AsGpu(in.kernel), AsGpu(grad), shape,
                                               ::tensorflow::OpDeterminismRequired(),
                                               workspace.flat<Acc<T>>().data(), AsGpu(out.x), AsGpu(out.offsets),
                                               AsGpu(out.mask), AsGpu(out.kernel)),
                    "deform_conv2d gradient");
  }
};
#endif  // GOOGLE_CUDA

absl::Status AttrsOf(OpKernelConstruction* ctx, DeformConvAttrs* attrs) {
  std::string padding;
  attrs->strides.clear();  // GetAttr appends to a list
  attrs->dilations.clear();
  TF_RETURN_IF_ERROR(ctx->GetAttr("strides", &attrs->strides));
  TF_RETURN_IF_ERROR(ctx->GetAttr("dilations", &attrs->dilations));
  TF_RETURN_IF_ERROR(ctx->GetAttr("groups", &attrs->groups));
  TF_RETURN_IF_ERROR(ctx->GetAttr("offset_groups", &attrs->offset_groups));
  TF_RETURN_IF_ERROR(ctx->GetAttr("padding", &padding));
  TF_RETURN_IF_ERROR(RuleStatus(math::PaddingNamed(padding, &attrs->padding)));
  return RuleStatus(math::AttrsError(*attrs));
}

// The family's shape rule over the first four inputs; *output is the
// result's shape.
absl::Status Shapes(OpKernelContext* ctx, const DeformConvAttrs& attrs, DeformConvShape* shape, TensorShape* output) {
  ::tfkit::kernels::Dims output_dims;
  TF_RETURN_IF_ERROR(RuleStatus(math::DeformConvShapeError(DimsOf(ctx->input(0).shape()), DimsOf(ctx->input(1).shape()),
                                                           DimsOf(ctx->input(2).shape()), DimsOf(ctx->input(3).shape()),
                                                           attrs, shape, &output_dims)));
  return CountedShape("output ([batch, out_height, out_width, filters])", output_dims, output);
}

template <typename Device, typename T>
class DeformConvOp : public OpKernel {
 public:
  explicit DeformConvOp(OpKernelConstruction* ctx) : OpKernel(ctx) { OP_REQUIRES_OK(ctx, AttrsOf(ctx, &attrs_)); }

  void Compute(OpKernelContext* ctx) override {
    DeformConvShape shape;
    TensorShape output_shape;
    OP_REQUIRES_OK(ctx, Shapes(ctx, attrs_, &shape, &output_shape));
    Tensor* out = nullptr;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, output_shape, &out));
    if (NothingToCompute(ctx)) return;
    Functor<Device, T>::Forward(ctx, InputsOf<T>(ctx), shape, out->flat<T>().data());
  }

 private:
  DeformConvAttrs attrs_;
};

template <typename Device, typename T>
class DeformConvGradOp : public OpKernel {
 public:
  explicit DeformConvGradOp(OpKernelConstruction* ctx) : OpKernel(ctx) { OP_REQUIRES_OK(ctx, AttrsOf(ctx, &attrs_)); }

  void Compute(OpKernelContext* ctx) override {
    DeformConvShape shape;
    TensorShape output_shape;
    OP_REQUIRES_OK(ctx, Shapes(ctx, attrs_, &shape, &output_shape));
    OP_REQUIRES_OK(ctx, CheckShape("grad_output", ctx->input(4), output_shape));
    Tensor* outs[4] = {};
    for (int i = 0; i < 4; ++i) OP_REQUIRES_OK(ctx, ctx->allocate_output(i, ctx->input(i).shape(), &outs[i]));
    const Grads<T> grads{outs[0]->flat<T>().data(), outs[1]->flat<T>().data(), outs[2]->flat<T>().data(),
                         outs[3]->flat<T>().data()};
    if (NothingToCompute(ctx)) return;
    Functor<Device, T>::Backward(ctx, InputsOf<T>(ctx), ctx->input(4).flat<T>().data(), shape, grads);
  }

 private:
  DeformConvAttrs attrs_;
};

#define TFKIT_REGISTER_KERNELS(DEVICE, DEV, T)                                                       \
  REGISTER_KERNEL_BUILDER(Name("Tfkit>DeformConv2D").Device(DEVICE).TypeConstraint<T>("T"),           \
                          DeformConvOp<DEV, T>);                                                      \
  REGISTER_KERNEL_BUILDER(Name("Tfkit>DeformConv2DGrad").Device(DEVICE).TypeConstraint<T>("T"),       \
                          DeformConvGradOp<DEV, T>);

TFKIT_REGISTER_FLOAT_KERNELS()
#undef TFKIT_REGISTER_KERNELS

}  // namespace
}  // namespace tfkit
