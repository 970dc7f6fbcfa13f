// OpKernels for the activation family: validate, allocate (reusing the
// input's buffer where TensorFlow allows), shard rows over the CPU thread
// pool or hand TF's stream to the CUDA launchers.
#include <algorithm>
#include <string>

#include "kernels/activation/activation_cpu.h"
#include "kernels/common/accumulate.h"
#include "tfkit/kernel_prelude.h"

#if GOOGLE_CUDA
#include "kernels/activation/activation_gpu.h"
#endif

namespace tfkit {
namespace {

using ::tfkit::kernels::activation::Activation;
using ::tfkit::kernels::activation::WithActivation;
namespace math = ::tfkit::kernels::activation;

// A row of `cols` elements costs about this many operations per element
// (the transcendental functions dominate).
int64_t RowCost(int64_t cols) { return RowCostOf(40, std::max<int64_t>(cols, 1)); }

// Rows and columns of x viewed as a matrix over its last axis.
struct Matrix {
  int64_t rows = 0;
  int64_t cols = 0;
};

Matrix AsMatrix(const Tensor& x) {
  const int64_t cols = x.dim_size(x.dims() - 1);
  return {RowCount(x), cols};
}

template <typename Device, typename T>
struct Functor;

template <typename T>
struct Functor<CPUDevice, T> {
  static void BiasActivation(OpKernelContext* ctx, Activation act, const T* x, const T* bias, Matrix m, T* y) {
    WithActivation(act, [&](auto a) {
      ShardRows(ctx, m.rows, RowCost(m.cols), [&](int64_t begin, int64_t end) {
        math::BiasActivationRows<decltype(a)::value>(x, bias, m.cols, begin, end, y);
      });
    });
  }

  // dbias: kernels/common/accumulate.h's column sums in fixed row blocks,
  // the same for any number of threads.
  static void BiasActivationGrad(OpKernelContext* ctx, Activation act, const T* dy, const T* x, const T* bias,
                                 Matrix m, T* dx, T* dbias) {
    using W = ::tfkit::kernels::Wide<Acc<T>>;
    Tensor workspace;
    const int64_t size = ::tfkit::kernels::ColumnSumsWorkspaceSize(m.rows, m.cols, 1);
    OP_REQUIRES_OK(ctx, ctx->allocate_temp(::tensorflow::DataTypeToEnum<W>::v(), TensorShape({size}), &workspace));
    T* const outs[] = {dbias};
    WithActivation(act, [&](auto a) {
      ::tfkit::kernels::SumColumnsInRowBlocks(
          m.rows, m.cols, 1, RowCost(m.cols), workspace.flat<W>().data(), ShardOver(ctx),
          [&](int64_t begin, int64_t end, W* partial, int64_t) {
            math::BiasActivationGradRows<decltype(a)::value>(dy, x, bias, m.cols, begin, end, dx, partial);
          },
          outs);
    });
  }

  static void Gated(OpKernelContext* ctx, Activation act, const T* x, Matrix half, T* y) {
    WithActivation(act, [&](auto a) {
      ShardRows(ctx, half.rows, RowCost(half.cols), [&](int64_t begin, int64_t end) {
        math::GatedActivationRows<decltype(a)::value>(x, half.cols, begin, end, y);
      });
    });
  }

  static void GatedGrad(OpKernelContext* ctx, Activation act, const T* dy, const T* x, Matrix half, T* dx) {
    WithActivation(act, [&](auto a) {
      ShardRows(ctx, half.rows, RowCostOf(2, RowCost(half.cols)), [&](int64_t begin, int64_t end) {
        math::GatedActivationGradRows<decltype(a)::value>(dy, x, half.cols, begin, end, dx);
      });
    });
  }
};

#if GOOGLE_CUDA
template <typename T>
struct Functor<GPUDevice, T> {
  static void BiasActivation(OpKernelContext* ctx, Activation act, const T* x, const T* bias, Matrix m, T* y) {
    CheckCudaLaunch(ctx,
                    math::LaunchBiasActivation(ctx->eigen_gpu_device().stream(), act, AsGpu(x), AsGpu(bias), m.rows,
                                               m.cols, AsGpu(y)),
                    "bias_activation");
  }

  static void BiasActivationGrad(OpKernelContext* ctx, Activation act, const T* dy, const T* x, const T* bias,
                                 Matrix m, T* dx, T* dbias) {
    using W = ::tfkit::kernels::Wide<Acc<T>>;
    Tensor workspace;
    const int64_t size = math::BiasActivationGradWorkspaceSize(m.rows, m.cols);
    OP_REQUIRES_OK(ctx, ctx->allocate_temp(::tensorflow::DataTypeToEnum<W>::v(), TensorShape({size}), &workspace));
    CheckCudaLaunch(ctx,
                    math::LaunchBiasActivationGrad(ctx->eigen_gpu_device().stream(), act, AsGpu(dy), AsGpu(x),
                                                   AsGpu(bias), m.rows, m.cols, workspace.flat<W>().data(), AsGpu(dx),
                                                   AsGpu(dbias)),
                    "bias_activation grad");
  }

  static void Gated(OpKernelContext* ctx, Activation act, const T* x, Matrix half, T* y) {
    CheckCudaLaunch(ctx,
                    math::LaunchGatedActivation(ctx->eigen_gpu_device().stream(), act, AsGpu(x), half.rows,
                                                half.cols, AsGpu(y)),
                    "gated_activation");
  }

  static void GatedGrad(OpKernelContext* ctx, Activation act, const T* dy, const T* x, Matrix half, T* dx) {
    CheckCudaLaunch(ctx,
                    math::LaunchGatedActivationGrad(ctx->eigen_gpu_device().stream(), act, AsGpu(dy), AsGpu(x),
                                                    half.rows, half.cols, AsGpu(dx)),
                    "gated_activation grad");
  }
};
#endif  // GOOGLE_CUDA

// The `activation` attr, read once at construction.
class ActivationOpBase : public OpKernel {
 public:
  explicit ActivationOpBase(OpKernelConstruction* ctx) : OpKernel(ctx) {
    std::string name;
    OP_REQUIRES_OK(ctx, ctx->GetAttr("activation", &name));
    OP_REQUIRES_OK(ctx, RuleStatus(math::ActivationNamed(name, &act_)));
  }

 protected:
  Activation act_ = Activation::kLinear;
};

template <typename Device, typename T>
class BiasActivationOp : public ActivationOpBase {
 public:
  using ActivationOpBase::ActivationOpBase;

  void Compute(OpKernelContext* ctx) override {
    const Tensor& x = ctx->input(0);
    const Tensor& bias = ctx->input(1);
    OP_REQUIRES_OK(ctx, CheckRankAtLeast1("x", x));
    OP_REQUIRES_OK(ctx, CheckLastDimParam("bias", bias, x));
    Tensor* y = nullptr;
    OP_REQUIRES_OK(ctx, ctx->forward_input_or_allocate_output({0}, 0, x.shape(), &y));
    Functor<Device, T>::BiasActivation(ctx, act_, x.flat<T>().data(), bias.flat<T>().data(), AsMatrix(x),
                                       y->flat<T>().data());
  }
};

template <typename Device, typename T>
class BiasActivationGradOp : public ActivationOpBase {
 public:
  using ActivationOpBase::ActivationOpBase;

  void Compute(OpKernelContext* ctx) override {
    const Tensor& dy = ctx->input(0);
    const Tensor& x = ctx->input(1);
    const Tensor& bias = ctx->input(2);
    OP_REQUIRES_OK(ctx, CheckRankAtLeast1("x", x));
    OP_REQUIRES_OK(ctx, CheckSameShape("dy", dy, "x", x));
    OP_REQUIRES_OK(ctx, CheckLastDimParam("bias", bias, x));
    Tensor* dx = nullptr;
    Tensor* dbias = nullptr;
    OP_REQUIRES_OK(ctx, ctx->forward_input_or_allocate_output({0}, 0, x.shape(), &dx));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(1, bias.shape(), &dbias));
    Functor<Device, T>::BiasActivationGrad(ctx, act_, dy.flat<T>().data(), x.flat<T>().data(), bias.flat<T>().data(),
                                           AsMatrix(x), dx->flat<T>().data(), dbias->flat<T>().data());
  }
};

// x [..., 2h] gives y [..., h] (the family's gated shape rule).
absl::Status GatedShapes(const Tensor& x, TensorShape* y, Matrix* half) {
  ::tfkit::kernels::Dims y_dims;
  TF_RETURN_IF_ERROR(RuleStatus(math::GatedShapeError(DimsOf(x.shape()), &y_dims)));
  TF_RETURN_IF_ERROR(TensorShape::BuildTensorShape(y_dims, y));
  *half = {RowCount(x), y_dims.back()};
  return absl::OkStatus();
}

template <typename Device, typename T>
class GatedActivationOp : public ActivationOpBase {
 public:
  using ActivationOpBase::ActivationOpBase;

  void Compute(OpKernelContext* ctx) override {
    const Tensor& x = ctx->input(0);
    TensorShape y_shape;
    Matrix half;
    OP_REQUIRES_OK(ctx, GatedShapes(x, &y_shape, &half));
    Tensor* y = nullptr;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, y_shape, &y));
    Functor<Device, T>::Gated(ctx, act_, x.flat<T>().data(), half, y->flat<T>().data());
  }
};

template <typename Device, typename T>
class GatedActivationGradOp : public ActivationOpBase {
 public:
  using ActivationOpBase::ActivationOpBase;

  void Compute(OpKernelContext* ctx) override {
    const Tensor& dy = ctx->input(0);
    const Tensor& x = ctx->input(1);
    TensorShape y_shape;
    Matrix half;
    OP_REQUIRES_OK(ctx, GatedShapes(x, &y_shape, &half));
    OP_REQUIRES_OK(ctx, RuleStatus(math::GatedGradShapeError(DimsOf(dy.shape()), DimsOf(x.shape()))));
    Tensor* dx = nullptr;
    OP_REQUIRES_OK(ctx, ctx->forward_input_or_allocate_output({1}, 0, x.shape(), &dx));
    Functor<Device, T>::GatedGrad(ctx, act_, dy.flat<T>().data(), x.flat<T>().data(), half, dx->flat<T>().data());
  }
};

#define TFKIT_REGISTER_KERNELS(DEVICE, DEV, T)                                                               \
  REGISTER_KERNEL_BUILDER(Name("Tfkit>BiasActivation").Device(DEVICE).TypeConstraint<T>("T"),                  \
                          BiasActivationOp<DEV, T>);                                                           \
  REGISTER_KERNEL_BUILDER(Name("Tfkit>BiasActivationGrad").Device(DEVICE).TypeConstraint<T>("T"),              \
                          BiasActivationGradOp<DEV, T>);                                                       \
  REGISTER_KERNEL_BUILDER(Name("Tfkit>GatedActivation").Device(DEVICE).TypeConstraint<T>("T"),                 \
                          GatedActivationOp<DEV, T>);                                                          \
  REGISTER_KERNEL_BUILDER(Name("Tfkit>GatedActivationGrad").Device(DEVICE).TypeConstraint<T>("T"),             \
                          GatedActivationGradOp<DEV, T>);

TFKIT_REGISTER_FLOAT_KERNELS()
#undef TFKIT_REGISTER_KERNELS

}  // namespace
}  // namespace tfkit
