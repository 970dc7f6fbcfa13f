// OpKernels for the rotary family: validate, build the angles' cosine and
// sine tables once per call, then rotate (sharding (batch, seq) rows over
// the CPU thread pool, or on TF's CUDA stream).
#include "kernels/rotary/rotary_cpu.h"
#include "tfkit/kernel_prelude.h"

#if GOOGLE_CUDA
#include "kernels/rotary/rotary_gpu.h"
#endif

namespace tfkit {
namespace {

using ::tfkit::kernels::rotary::RotaryShape;
namespace math = ::tfkit::kernels::rotary;

template <typename Device, typename T>
struct Functor;

template <typename T>
struct Functor<CPUDevice, T> {
  static void Rotate(OpKernelContext* ctx, const T* x, const Acc<T>* positions, const Acc<T>* inv_freq,
                     const RotaryShape& shape, Acc<T> sign, Acc<T>* cos_table, Acc<T>* sin_table, T* y) {
    const int64_t half = shape.dim / 2;
    ShardRows(ctx, shape.table_rows, 40 * half, [&](int64_t begin, int64_t end) {
      math::RotaryTableRows(positions, inv_freq, half, begin, end, cos_table, sin_table);
    });
    ShardRows(ctx, shape.rows, 6 * shape.heads * shape.dim, [&](int64_t begin, int64_t end) {
      math::RotaryRows(x, cos_table, sin_table, shape, sign, begin, end, y);
    });
  }
};

#if GOOGLE_CUDA
template <typename T>
struct Functor<GPUDevice, T> {
  static void Rotate(OpKernelContext* ctx, const T* x, const Acc<T>* positions, const Acc<T>* inv_freq,
                     const RotaryShape& shape, Acc<T> sign, Acc<T>* cos_table, Acc<T>* sin_table, T* y) {
    CheckCudaLaunch(ctx,
                    math::LaunchRotary(ctx->eigen_gpu_device().stream(), AsGpu(x), positions, inv_freq, shape, sign,
                                       cos_table, sin_table, AsGpu(y)),
                    "rotary_embedding");
  }
};
#endif  // GOOGLE_CUDA

// x [batch, seq, ..., dim], positions [1 or batch, seq] and inv_freq
// [dim / 2]: the family's shape rule.
absl::Status Shapes(const char* x_name, const Tensor& x, const Tensor& positions, const Tensor& inv_freq,
                    bool interleaved, RotaryShape* shape) {
  TF_RETURN_IF_ERROR(RuleStatus(math::RotaryShapeError(x_name, DimsOf(x.shape()), DimsOf(positions.shape()),
                                                       DimsOf(inv_freq.shape()), shape)));
  shape->interleaved = interleaved;
  return absl::OkStatus();
}

// RotaryEmbedding (kSign = 1) and its gradient, the inverse rotation (-1).
template <typename Device, typename T, int kSign>
class RotaryOp : public OpKernel {
 public:
  explicit RotaryOp(OpKernelConstruction* ctx) : OpKernel(ctx) {
    OP_REQUIRES_OK(ctx, CheckAccumulationType(ctx, "positions and inv_freq", kXName));
    OP_REQUIRES_OK(ctx, ctx->GetAttr("interleaved", &interleaved_));
  }

  void Compute(OpKernelContext* ctx) override {
    const Tensor& x = ctx->input(0);
    const Tensor& positions = ctx->input(1);
    const Tensor& inv_freq = ctx->input(2);
    RotaryShape shape;
    OP_REQUIRES_OK(ctx, Shapes(kXName, x, positions, inv_freq, interleaved_, &shape));
    Tensor* y = nullptr;
    OP_REQUIRES_OK(ctx, ctx->forward_input_or_allocate_output({0}, 0, x.shape(), &y));
    if (NothingToCompute(ctx)) return;
    Tensor tables;
    int64_t table_size = 0;
    OP_REQUIRES_OK(ctx, ElementCount("the angle tables", {shape.table_rows, shape.dim / 2}, &table_size));
    OP_REQUIRES_OK(ctx, ctx->allocate_temp(::tensorflow::DataTypeToEnum<Acc<T>>::v(), TensorShape({2, table_size}),
                                           &tables));
    Acc<T>* cos_table = tables.flat<Acc<T>>().data();
    Functor<Device, T>::Rotate(ctx, x.flat<T>().data(), positions.flat<Acc<T>>().data(),
                               inv_freq.flat<Acc<T>>().data(), shape, static_cast<Acc<T>>(kSign), cos_table,
                               cos_table + table_size, y->flat<T>().data());
  }

 private:
  static constexpr const char* kXName = kSign > 0 ? "x" : "dy";
  bool interleaved_ = false;
};

// For every U: a U other than Acc<T> finds the kernel, which refuses it.
#define TFKIT_REGISTER_KERNELS(DEVICE, DEV, T)                                                                    \
  REGISTER_KERNEL_BUILDER(Name("Tfkit>RotaryEmbedding").Device(DEVICE).TypeConstraint<T>("T"), RotaryOp<DEV, T, 1>); \
  REGISTER_KERNEL_BUILDER(Name("Tfkit>RotaryEmbeddingGrad").Device(DEVICE).TypeConstraint<T>("T"),                \
                          RotaryOp<DEV, T, -1>);

TFKIT_REGISTER_FLOAT_KERNELS()
#undef TFKIT_REGISTER_KERNELS

}  // namespace
}  // namespace tfkit
