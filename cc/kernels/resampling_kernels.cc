// OpKernels for the resampling family: validate, then sample (sharding the
// (batch, point) rows over the CPU thread pool, or on TF's CUDA stream). The
// CPU data gradient is deterministic; the GPU one uses atomics unless TF's
// op determinism is enabled.
#include <string>

#include "kernels/resampling/resampling_cpu.h"
#include "tfkit/kernel_prelude.h"

#if GOOGLE_CUDA
#include "kernels/resampling/resampling_gpu.h"
#include "tensorflow/core/util/determinism.h"
#endif

namespace tfkit {
namespace {

using ::tfkit::kernels::resampling::Boundary;
using ::tfkit::kernels::resampling::ResamplerShape;
namespace math = ::tfkit::kernels::resampling;

template <typename Device, typename T>
struct Functor;

template <typename T>
struct Functor<CPUDevice, T> {
  static void Resample(OpKernelContext* ctx, const T* data, const T* warp, const ResamplerShape& shape, T* out) {
    ShardRows(ctx, shape.rows, 12 * shape.channels + 40, [&](int64_t begin, int64_t end) {
      math::ResampleRows<T, Acc<T>>(data, warp, shape, begin, end, out);
    });
  }

  static void Grad(OpKernelContext* ctx, const T* data, const T* warp, const T* grad, const ResamplerShape& shape,
                   T* grad_data, T* grad_warp) {
    ShardRows(ctx, shape.rows, 20 * shape.channels + 40, [&](int64_t begin, int64_t end) {
      math::WarpGradRows<T, Acc<T>>(data, warp, grad, shape, begin, end, grad_warp);
    });
    const int64_t unit_cost = RowCostOf(shape.points, 8 * math::kChannelBlock + 40);
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
      int64_t size = 0;
      OP_REQUIRES_OK(ctx, ElementCount("data", {shape.batch, shape.height, shape.width, shape.channels}, &size));
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
  return RuleStatus(math::BoundaryNamed(name, boundary));
}

// data [batch, height, width, channels] and warp [batch, ..., 2]: the
// family's shape rule; *samples is the output's shape.
absl::Status Shapes(const Tensor& data, const Tensor& warp, Boundary boundary, ResamplerShape* shape,
                    TensorShape* samples) {
  ::tfkit::kernels::Dims samples_dims;
  TF_RETURN_IF_ERROR(
      RuleStatus(math::ResamplerShapeError(DimsOf(data.shape()), DimsOf(warp.shape()), shape, &samples_dims)));
  shape->boundary = boundary;
  return CountedShape("output ([batch, ..., channels]: the points of warp, the channels of data)", samples_dims,
                      samples);
}

template <typename Device, typename T>
class ResamplerOp : public OpKernel {
 public:
  explicit ResamplerOp(OpKernelConstruction* ctx) : OpKernel(ctx) { OP_REQUIRES_OK(ctx, BoundaryAttr(ctx, &boundary_)); }

  void Compute(OpKernelContext* ctx) override {
    const Tensor& data = ctx->input(0);
    const Tensor& warp = ctx->input(1);
    ResamplerShape shape;
    TensorShape samples;
    OP_REQUIRES_OK(ctx, Shapes(data, warp, boundary_, &shape, &samples));
    Tensor* out = nullptr;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, samples, &out));
    if (NothingToCompute(ctx)) return;
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
    TensorShape samples;
    OP_REQUIRES_OK(ctx, Shapes(data, warp, boundary_, &shape, &samples));
    OP_REQUIRES_OK(ctx, CheckShape("grad_output", grad, samples));
    Tensor* grad_data = nullptr;
    Tensor* grad_warp = nullptr;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, data.shape(), &grad_data));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(1, warp.shape(), &grad_warp));
    if (NothingToCompute(ctx)) return;
    Functor<Device, T>::Grad(ctx, data.flat<T>().data(), warp.flat<T>().data(), grad.flat<T>().data(), shape,
                             grad_data->flat<T>().data(), grad_warp->flat<T>().data());
  }

 private:
  Boundary boundary_ = Boundary::kZeros;
};

#define TFKIT_REGISTER_KERNELS(DEVICE, DEV, T)                                                         \
  REGISTER_KERNEL_BUILDER(Name("Tfkit>Resampler").Device(DEVICE).TypeConstraint<T>("T"),                \
                          ResamplerOp<DEV, T>);                                                         \
  REGISTER_KERNEL_BUILDER(Name("Tfkit>ResamplerGrad").Device(DEVICE).TypeConstraint<T>("T"),            \
                          ResamplerGradOp<DEV, T>);

TFKIT_REGISTER_FLOAT_KERNELS()
#undef TFKIT_REGISTER_KERNELS

}  // namespace
}  // namespace tfkit
