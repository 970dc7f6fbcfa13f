// OpKernels for the norm family: validate inputs, allocate outputs, shard
// rows over the CPU thread pool or hand TF's stream to the CUDA launchers.
#include <algorithm>
#include <type_traits>

#include "kernels/common/accumulate.h"
#include "kernels/norm/norm_cpu.h"
#include "kernels/norm/norm_rules.h"
#include "tfkit/kernel_prelude.h"

#if GOOGLE_CUDA
#include "kernels/norm/norm_gpu.h"
#endif

namespace tfkit {
namespace {

namespace cpu = ::tfkit::kernels::norm;

// Raw pointers of one normalization call; null where the op has no such input.
template <typename T>
struct NormArgs {
  int64_t rows = 0;
  int64_t cols = 0;
  const T* x = nullptr;
  const T* gamma = nullptr;
  const T* beta = nullptr;
  const T* dy = nullptr;
  T* y = nullptr;  // y forward, dx backward
  T* dgamma = nullptr;
  T* dbeta = nullptr;
  Acc<T>* mean = nullptr;
  Acc<T>* rstd = nullptr;
  const Acc<T>* dmean = nullptr;
  const Acc<T>* drstd = nullptr;
  Acc<T> epsilon = 0;
};

// Views x as a [rows, cols] matrix: cols is its last dimension.
template <typename T>
NormArgs<T> RowsAndCols(const Tensor& x) {
  NormArgs<T> a;
  a.cols = x.dim_size(x.dims() - 1);
  a.rows = RowCount(x);
  return a;
}

template <typename Device, typename T, bool kCenter>
struct NormFunctor;

template <typename T, bool kCenter>
struct NormFunctor<CPUDevice, T, kCenter> {
  static void Forward(OpKernelContext* ctx, const NormArgs<T>& a) {
    ShardRows(ctx, a.rows, RowCost(a.cols), [&](int64_t begin, int64_t end) {
      cpu::NormForwardRows<kCenter>(a.x, a.gamma, a.beta, a.cols, a.epsilon,
                                    begin, end, a.y, a.mean, a.rstd);
    });
  }

  // dgamma/dbeta are summed per fixed row block (kernels/common/accumulate.h)
  // into that block's own Wide partial row, then the partials are added in
  // block order: no two threads write the same memory, and the result does
  // not depend on the number of threads.
  static void Backward(OpKernelContext* ctx, const NormArgs<T>& a) {
    using W = ::tfkit::kernels::Wide<Acc<T>>;
    const int sums = kCenter ? 2 : 1;
    Tensor workspace;
    const int64_t size = ::tfkit::kernels::ColumnSumsWorkspaceSize(a.rows, a.cols, sums);
    OP_REQUIRES_OK(ctx, ctx->allocate_temp(::tensorflow::DataTypeToEnum<W>::v(), TensorShape({size}), &workspace));
    T* const outs[] = {a.dgamma, a.dbeta};
    ::tfkit::kernels::SumColumnsInRowBlocks(
        a.rows, a.cols, sums, RowCost(a.cols), workspace.flat<W>().data(), ShardOver(ctx),
        [&](int64_t begin, int64_t end, W* partial, int64_t stride) {
          cpu::NormBackwardRows<kCenter>(a.dy, a.x, a.gamma, a.mean, a.rstd, a.dmean, a.drstd, a.cols, begin, end,
                                         a.y, partial, kCenter ? partial + stride : nullptr);
        },
        outs);
  }

  static int64_t RowCost(int64_t cols) { return RowCostOf(8, std::max<int64_t>(cols, 1)); }
};

#if GOOGLE_CUDA
namespace gpu = ::tfkit::kernels::norm;

template <typename T, bool kCenter>
struct NormFunctor<GPUDevice, T, kCenter> {
  static void Forward(OpKernelContext* ctx, const NormArgs<T>& a) {
    const cudaStream_t stream = ctx->eigen_gpu_device().stream();
    CheckCudaLaunch(ctx,
                gpu::LaunchNormForward(stream, kCenter, AsGpu(a.x),
                                       AsGpu(a.gamma), AsGpu(a.beta), a.rows,
                                       a.cols, a.epsilon, AsGpu(a.y), a.mean,
                                       a.rstd),
                "norm forward");
  }

  static void Backward(OpKernelContext* ctx, const NormArgs<T>& a) {
    using W = ::tfkit::kernels::Wide<Acc<T>>;
    Tensor workspace;
    const int64_t size = gpu::NormBackwardWorkspaceSize(a.rows, a.cols);
    OP_REQUIRES_OK(ctx, ctx->allocate_temp(::tensorflow::DataTypeToEnum<W>::v(),
                                           TensorShape({size}), &workspace));
    const cudaStream_t stream = ctx->eigen_gpu_device().stream();
    CheckCudaLaunch(ctx,
                gpu::LaunchNormBackward(
                    stream, kCenter, AsGpu(a.dy), AsGpu(a.x), AsGpu(a.gamma),
                    a.mean, a.rstd, a.dmean, a.drstd, a.rows, a.cols,
                    workspace.flat<W>().data(),
                    AsGpu(a.y), AsGpu(a.dgamma), AsGpu(a.dbeta)),
                "norm backward");
  }
};
#endif  // GOOGLE_CUDA

// Forward: LayerNorm (kCenter) has inputs x, gamma, beta and outputs y, mean,
// rstd; RMSNorm has inputs x, gamma and outputs y, rstd.
template <typename Device, typename T, bool kCenter>
class NormOp : public OpKernel {
 public:
  explicit NormOp(OpKernelConstruction* ctx) : OpKernel(ctx) {
    OP_REQUIRES_OK(ctx, CheckAccumulationType(ctx, kCenter ? "mean and rstd (attr U)" : "rstd (attr U)", "x"));
    float epsilon;
    OP_REQUIRES_OK(ctx, ctx->GetAttr("epsilon", &epsilon));
    OP_REQUIRES_OK(ctx, RuleStatus(cpu::EpsilonError(epsilon)));
    epsilon_ = static_cast<Acc<T>>(epsilon);
  }

  void Compute(OpKernelContext* ctx) override {
    const Tensor& x = ctx->input(0);
    OP_REQUIRES_OK(ctx, CheckRankAtLeast1("x", x));
    OP_REQUIRES_OK(ctx, CheckLastDimParam("gamma", ctx->input(1), x));
    if (kCenter) OP_REQUIRES_OK(ctx, CheckLastDimParam("beta", ctx->input(2), x));
    TensorShape stats_shape;
    OP_REQUIRES_OK(ctx, StatsShape("x", x.shape(), &stats_shape));
    NormArgs<T> a = RowsAndCols<T>(x);
    a.epsilon = epsilon_;
    a.x = x.flat<T>().data();
    a.gamma = ctx->input(1).flat<T>().data();
    if (kCenter) a.beta = ctx->input(2).flat<T>().data();
    Tensor* y = nullptr;
    Tensor* mean = nullptr;
    Tensor* rstd = nullptr;
    OP_REQUIRES_OK(ctx, ctx->forward_input_or_allocate_output({0}, 0, x.shape(), &y));
    if (kCenter) OP_REQUIRES_OK(ctx, ctx->allocate_output(1, stats_shape, &mean));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(kCenter ? 2 : 1, stats_shape, &rstd));
    a.y = y->flat<T>().data();
    if (kCenter) a.mean = mean->flat<Acc<T>>().data();
    a.rstd = rstd->flat<Acc<T>>().data();
    NormFunctor<Device, T, kCenter>::Forward(ctx, a);
  }

 private:
  Acc<T> epsilon_;
};

// Backward: LayerNormGrad takes dy, x, gamma, mean, rstd, dmean, drstd and
// returns dx, dgamma, dbeta; RMSNormGrad takes dy, x, gamma, rstd, drstd and
// returns dx, dgamma.
template <typename Device, typename T, bool kCenter>
class NormGradOp : public OpKernel {
 public:
  explicit NormGradOp(OpKernelConstruction* ctx) : OpKernel(ctx) {
    OP_REQUIRES_OK(ctx, CheckAccumulationType(ctx, kCenter ? "mean, rstd, dmean and drstd" : "rstd and drstd", "x"));
  }

  void Compute(OpKernelContext* ctx) override {
    const Tensor& dy = ctx->input(0);
    const Tensor& x = ctx->input(1);
    const Tensor& gamma = ctx->input(2);
    OP_REQUIRES_OK(ctx, CheckRankAtLeast1("x", x));
    OP_REQUIRES_OK(ctx, CheckSameShape("dy", dy, "x", x));
    OP_REQUIRES_OK(ctx, CheckLastDimParam("gamma", gamma, x));
    TensorShape stats_shape;
    OP_REQUIRES_OK(ctx, StatsShape("x", x.shape(), &stats_shape));
    NormArgs<T> a = RowsAndCols<T>(x);
    a.dy = dy.flat<T>().data();
    a.x = x.flat<T>().data();
    a.gamma = gamma.flat<T>().data();
    // LayerNormGrad: mean, rstd, dmean, drstd at 3..6; RMSNormGrad: rstd,
    // drstd at 3..4.
    const int rstd_index = kCenter ? 4 : 3;
    const int drstd_index = kCenter ? 6 : 4;
    OP_REQUIRES_OK(ctx, RowStat(ctx, "rstd", rstd_index, stats_shape, &a.rstd));
    OP_REQUIRES_OK(ctx, RowStat(ctx, "drstd", drstd_index, stats_shape, &a.drstd));
    if (kCenter) {
      OP_REQUIRES_OK(ctx, RowStat(ctx, "mean", 3, stats_shape, &a.mean));
      OP_REQUIRES_OK(ctx, RowStat(ctx, "dmean", 5, stats_shape, &a.dmean));
    }
    Tensor* dx = nullptr;
    Tensor* dgamma = nullptr;
    Tensor* dbeta = nullptr;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, x.shape(), &dx));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(1, gamma.shape(), &dgamma));
    if (kCenter) OP_REQUIRES_OK(ctx, ctx->allocate_output(2, gamma.shape(), &dbeta));
    a.y = dx->flat<T>().data();
    a.dgamma = dgamma->flat<T>().data();
    if (kCenter) a.dbeta = dbeta->flat<T>().data();
    NormFunctor<Device, T, kCenter>::Backward(ctx, a);
  }

 private:
  // Points *data at per-row input `index` after checking its shape.
  template <typename U>
  static absl::Status RowStat(OpKernelContext* ctx, const char* name, int index,
                              const TensorShape& shape, U** data) {
    const Tensor& t = ctx->input(index);
    TF_RETURN_IF_ERROR(CheckShape(name, t, shape));
    *data = const_cast<U*>(t.flat<std::remove_const_t<U>>().data());
    return absl::OkStatus();
  }
};

// For every U: a U other than Acc<T> finds the kernel, which refuses it.
#define TFKIT_REGISTER_NORM_KERNEL(OP, DEVICE, T, ...) \
  REGISTER_KERNEL_BUILDER(Name(OP).Device(DEVICE).TypeConstraint<T>("T"), __VA_ARGS__)

#define TFKIT_REGISTER_KERNELS(DEVICE, DEV, T)                                   \
  TFKIT_REGISTER_NORM_KERNEL("Tfkit>LayerNorm", DEVICE, T,                    \
                             NormOp<DEV, T, true>);                         \
  TFKIT_REGISTER_NORM_KERNEL("Tfkit>LayerNormGrad", DEVICE, T,                \
                             NormGradOp<DEV, T, true>);                     \
  TFKIT_REGISTER_NORM_KERNEL("Tfkit>RMSNorm", DEVICE, T,                      \
                             NormOp<DEV, T, false>);                        \
  TFKIT_REGISTER_NORM_KERNEL("Tfkit>RMSNormGrad", DEVICE, T,                  \
                             NormGradOp<DEV, T, false>);

TFKIT_REGISTER_FLOAT_KERNELS()
#undef TFKIT_REGISTER_KERNELS

#undef TFKIT_REGISTER_NORM_KERNEL

}  // namespace
}  // namespace tfkit
