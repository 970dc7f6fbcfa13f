// OpKernels for the resampling family: validate, then sample (sharding the
// (batch, point) rows over the CPU thread pool, or on TF's CUDA stream). The
// CPU data gradient is deterministic; the GPU one uses atomics unless TF's
// op determinism is enabled.
#include <string>

#include "kernels/common/types.h"
#include "kernels/resampling/resampling_cpu.h"
#include "tensorflow/core/framework/op_kernel.h"
#include "tensorflow/core/framework/register_types.h"
#include "tensorflow/core/framework/tensor.h"
#include "tfkit/op_utils.h"

#if GOOGLE_CUDA
#include "kernels/resampling/resampling_gpu.h"
#include "tensorflow/core/util/determinism.h"
#endif

namespace tfkit {
namespace {

using ::tensorflow::OpKernel;
using ::tensorflow::OpKernelConstruction;
using ::tensorflow::OpKernelContext;
using ::tensorflow::Tensor;
using ::tensorflow::TensorShape;
using ::tfkit::kernels::resampling::Boundary;
using ::tfkit::kernels::resampling::ResamplerShape;
namespace math = ::tfkit::kernels::resampling;

using CPUDevice = Eigen::ThreadPoolDevice;
using GPUDevice = Eigen::GpuDevice;

template <typename T>
using Acc = ::tfkit::kernels::Acc<T>;

template <typename Device, typename T>
struct Functor;

template <typename T>
struct Functor<CPUDevice, T> {
  static void Resample(OpKernelContext* ctx, const T* data, const T* warp, const ResamplerShape& shape, T* out) {
    ShardRows(ctx, shape.batch * shape.points, 12 * shape.channels + 40, [&](int64_t begin, int64_t end) {
      math::ResampleRows<T, Acc<T>>(data, warp, shape, begin, end, out);
    });
  }

  static void Grad(OpKernelContext* ctx, const T* data, const T* warp, const T* grad, const ResamplerShape& shape,
                   T* grad_data, T* grad_warp) {
    ShardRows(ctx, shape.batch * shape.points, 20 * shape.channels + 40, [&](int64_t begin, int64_t end) {
      math::WarpGradRows<T, Acc<T>>(data, warp, grad, shape, begin, end, grad_warp);
    });
    const int64_t unit_cost = shape.points * (8 * math::kChannelBlock + 40);
    ShardRows(ctx, math::DataGradUnits(shape), unit_cost, [&](int64_t begin, int64_t end) {
      math::DataGradUnitRange<T, Acc<T>>(warp, grad, shape, begin, end, grad_data);
    });
  }
};

#if GOOGLE_CUDA
template <typename T>
struct Functor<GPUDevice, T> {
  static void Resample(OpKernelContext* ctx, const T* data, const T* warp, const ResamplerShape& shape, T* out) {
    CheckCudaLaunch(ctx,
                    math::LaunchResample(ctx->eigen_gpu_device().stream(), AsGpu(data), AsGpu(warp), shape, AsGpu(out)),
                    "resampler");
  }

  static void Grad(OpKernelContext* ctx, const T* data, const T* warp, const T* grad, const ResamplerShape& shape,
                   T* grad_data, T* grad_warp) {
    Acc<T>* sums = reinterpret_cast<Acc<T>*>(grad_data);
    Tensor workspace;
    if (!std::is_same<T, Acc<T>>::value) {
      const int64_t size = shape.batch * shape.height * shape.width * shape.channels;
      OP_REQUIRES_OK(ctx, ctx->allocate_temp(::tensorflow::DataTypeToEnum<Acc<T>>::v(), TensorShape({size}),
                                             &workspace));
      sums = workspace.flat<Acc<T>>().data();
    }
    CheckCudaLaunch(ctx,
                    math::LaunchResampleGrad(ctx->eigen_gpu_device().stream(), AsGpu(data), AsGpu(warp), AsGpu(grad),
                                             shape, ::tensorflow::OpDeterminismRequired(), sums, AsGpu(grad_data),
                                             AsGpu(grad_warp)),
                    "resampler gradient");
  }
};
#endif  // GOOGLE_CUDA

absl::Status BoundaryAttr(OpKernelConstruction* ctx, Boundary* boundary) {
  std::string name;
  TF_RETURN_IF_ERROR(ctx->GetAttr("boundary", &name));
  *boundary = name == "clamp" ? Boundary::kClamp : Boundary::kZeros;
  return absl::OkStatus();
}

// Checks data [batch, height, width, channels] and warp [batch, ..., 2].
absl::Status Shapes(const Tensor& data, const Tensor& warp, Boundary boundary, ResamplerShape* shape) {
  if (data.dims() != 4) {
    return InvalidArg("data must have rank 4 ([batch, height, width, channels]), got shape ",
                      data.shape().DebugString());
  }
  if (warp.dims() < 2 || warp.dim_size(warp.dims() - 1) != 2) {
    return InvalidArg("warp must have shape [batch, ..., 2] (the x, y of each point), got shape ",
                      warp.shape().DebugString());
  }
  if (warp.dim_size(0) != data.dim_size(0)) {
    return InvalidArg("warp's batch dimension (", warp.dim_size(0), ") must equal data's (", data.dim_size(0),
                      "), got warp ", warp.shape().DebugString(), " and data ", data.shape().DebugString());
  }
  shape->batch = data.dim_size(0);
  shape->height = data.dim_size(1);
  shape->width = data.dim_size(2);
  shape->channels = data.dim_size(3);
  shape->points = shape->batch == 0 ? 0 : warp.NumElements() / 2 / shape->batch;
  shape->boundary = boundary;
  return absl::OkStatus();
}

// warp's shape with its last dimension replaced by data's channels.
TensorShape SamplesShape(const Tensor& warp, const ResamplerShape& shape) {
  TensorShape samples = warp.shape();
  samples.set_dim(samples.dims() - 1, shape.channels);
  return samples;
}

template <typename Device, typename T>
class ResamplerOp : public OpKernel {
 public:
  explicit ResamplerOp(OpKernelConstruction* ctx) : OpKernel(ctx) { OP_REQUIRES_OK(ctx, BoundaryAttr(ctx, &boundary_)); }

  void Compute(OpKernelContext* ctx) override {
    const Tensor& data = ctx->input(0);
    const Tensor& warp = ctx->input(1);
    ResamplerShape shape;
    OP_REQUIRES_OK(ctx, Shapes(data, warp, boundary_, &shape));
    Tensor* out = nullptr;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, SamplesShape(warp, shape), &out));
    if (out->NumElements() == 0) return;
    Functor<Device, T>::Resample(ctx, data.flat<T>().data(), warp.flat<T>().data(), shape, out->flat<T>().data());
  }

 private:
  Boundary boundary_ = Boundary::kZeros;
};

template <typename Device, typename T>
class ResamplerGradOp : public OpKernel {
 public:
  explicit ResamplerGradOp(OpKernelConstruction* ctx) : OpKernel(ctx) {
    OP_REQUIRES_OK(ctx, BoundaryAttr(ctx, &boundary_));
  }

  void Compute(OpKernelContext* ctx) override {
    const Tensor& data = ctx->input(0);
    const Tensor& warp = ctx->input(1);
    const Tensor& grad = ctx->input(2);
    ResamplerShape shape;
    OP_REQUIRES_OK(ctx, Shapes(data, warp, boundary_, &shape));
    OP_REQUIRES_OK(ctx, CheckShape("grad_output", grad, SamplesShape(warp, shape)));
    Tensor* grad_data = nullptr;
    Tensor* grad_warp = nullptr;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, data.shape(), &grad_data));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(1, warp.shape(), &grad_warp));
    if (data.NumElements() == 0 && warp.NumElements() == 0) return;
    Functor<Device, T>::Grad(ctx, data.flat<T>().data(), warp.flat<T>().data(), grad.flat<T>().data(), shape,
                             grad_data->flat<T>().data(), grad_warp->flat<T>().data());
  }

 private:
  Boundary boundary_ = Boundary::kZeros;
};

#define TFKIT_REGISTER_RESAMPLER(DEVICE, DEV, T)                                                         \
  REGISTER_KERNEL_BUILDER(Name("Tfkit>Resampler").Device(DEVICE).TypeConstraint<T>("T"),                \
                          ResamplerOp<DEV, T>);                                                         \
  REGISTER_KERNEL_BUILDER(Name("Tfkit>ResamplerGrad").Device(DEVICE).TypeConstraint<T>("T"),            \
                          ResamplerGradOp<DEV, T>);

#define TFKIT_REGISTER_RESAMPLER_CPU(T) TFKIT_REGISTER_RESAMPLER(::tensorflow::DEVICE_CPU, CPUDevice, T)
TF_CALL_half(TFKIT_REGISTER_RESAMPLER_CPU);
TF_CALL_bfloat16(TFKIT_REGISTER_RESAMPLER_CPU);
TF_CALL_float(TFKIT_REGISTER_RESAMPLER_CPU);
TF_CALL_double(TFKIT_REGISTER_RESAMPLER_CPU);
#undef TFKIT_REGISTER_RESAMPLER_CPU

#if GOOGLE_CUDA
#define TFKIT_REGISTER_RESAMPLER_GPU(T) TFKIT_REGISTER_RESAMPLER(::tensorflow::DEVICE_GPU, GPUDevice, T)
TF_CALL_half(TFKIT_REGISTER_RESAMPLER_GPU);
TF_CALL_bfloat16(TFKIT_REGISTER_RESAMPLER_GPU);
TF_CALL_float(TFKIT_REGISTER_RESAMPLER_GPU);
TF_CALL_double(TFKIT_REGISTER_RESAMPLER_GPU);
#undef TFKIT_REGISTER_RESAMPLER_GPU
#endif  // GOOGLE_CUDA

#undef TFKIT_REGISTER_RESAMPLER

}  // namespace
}  // namespace tfkit
