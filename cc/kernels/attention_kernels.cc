// OpKernels for the attention family: validate inputs, allocate outputs,
// shard work items over the CPU thread pool or hand TF's stream to the CUDA
// launchers.
#include <algorithm>

#include "kernels/attention/attention_cpu.h"
#include "kernels/attention/attention_rules.h"
#include "tfkit/kernel_prelude.h"

#if GOOGLE_CUDA
#include "kernels/attention/attention_gpu.h"
#endif

namespace tfkit {
namespace {

namespace attention = ::tfkit::kernels::attention;
using attention::AttentionGrads;
using attention::AttentionInputs;

// The attrs every op of the family has.
struct AttentionAttrs {
  float scale = 1.0f;
  float dropout_rate = 0.0f;
  bool default_scale = false;
  bool causal = false;
  bool has_bias = false;
  bool has_mask = false;

  absl::Status Read(OpKernelConstruction* ctx) {
    TF_RETURN_IF_ERROR(CheckAccumulationType(ctx, "lse (attr U)", "query"));
    TF_RETURN_IF_ERROR(ctx->GetAttr("scale", &scale));
    TF_RETURN_IF_ERROR(ctx->GetAttr("default_scale", &default_scale));
    TF_RETURN_IF_ERROR(ctx->GetAttr("dropout_rate", &dropout_rate));
    TF_RETURN_IF_ERROR(ctx->GetAttr("is_causal", &causal));
    TF_RETURN_IF_ERROR(ctx->GetAttr("has_bias", &has_bias));
    TF_RETURN_IF_ERROR(ctx->GetAttr("has_mask", &has_mask));
    TF_RETURN_IF_ERROR(RuleStatus(attention::ScaleError(scale)));
    return RuleStatus(attention::DropoutRateError(dropout_rate));
  }
};

// Checks query, key, value, bias, mask and seed (inputs first..first + 5)
// and points *in at them.
template <typename T>
absl::Status ReadInputs(OpKernelContext* ctx, int first, const AttentionAttrs& attrs, AttentionInputs<T>* in) {
  const Tensor& query = ctx->input(first);
  const Tensor& key = ctx->input(first + 1);
  const Tensor& value = ctx->input(first + 2);
  const Tensor& bias = ctx->input(first + 3);
  const Tensor& mask = ctx->input(first + 4);
  const Tensor& seed = ctx->input(first + 5);
  TF_RETURN_IF_ERROR(
      RuleStatus(attention::AttentionShapeError(DimsOf(query.shape()), DimsOf(key.shape()), DimsOf(value.shape()),
                                                &in->shape)));
  TF_RETURN_IF_ERROR(
      RuleStatus(attention::AttentionCountsError(DimsOf(query.shape()), DimsOf(key.shape()), in->shape)));
  if (attrs.has_bias) {
    TF_RETURN_IF_ERROR(RuleStatus(attention::BroadcastError("bias", DimsOf(bias.shape()), in->shape.logits())));
    attention::SetBroadcast(DimsOf(bias.shape()), in->shape.bias);
    in->bias = bias.flat<T>().data();
  }
  if (attrs.has_mask) {
    TF_RETURN_IF_ERROR(RuleStatus(attention::BroadcastError("mask", DimsOf(mask.shape()), in->shape.logits())));
    attention::SetBroadcast(DimsOf(mask.shape()), in->shape.mask);
    in->mask = mask.flat<bool>().data();
  }
  TF_RETURN_IF_ERROR(CheckShape("seed", seed, TensorShape({2})));
  in->seed[0] = seed.flat<int64_t>()(0);
  in->seed[1] = seed.flat<int64_t>()(1);
  in->query = query.flat<T>().data();
  in->key = key.flat<T>().data();
  in->value = value.flat<T>().data();
  in->causal = attrs.causal;
  in->scale = attention::ScaleOf(attrs.default_scale, attrs.scale, in->shape.head_dim);
  in->dropout_rate = attrs.dropout_rate;
  return absl::OkStatus();
}

TensorShape LseShape(const attention::AttentionShape& s) { return TensorShape({s.batch, s.heads, s.target}); }

template <typename Device, typename T>
struct AttentionFunctor;

template <typename T>
struct AttentionFunctor<CPUDevice, T> {
  using U = Acc<T>;

  static void Zero(OpKernelContext*, T* data, int64_t count) { std::fill_n(data, count, T(0)); }

  static void Forward(OpKernelContext* ctx, const AttentionInputs<T>& in, T* out, U* lse) {
    ShardRows(ctx, attention::ForwardItems(in.shape), attention::ForwardItemCost(in.shape),
              [&](int64_t begin, int64_t end) { attention::AttentionForward<T, U>(in, begin, end, out, lse); });
  }

  static void Backward(OpKernelContext* ctx, const AttentionInputs<T>& in, AttentionGrads<T>& g) {
    Tensor workspace;
    const int64_t size = attention::BackwardWorkspaceSize(in.shape, in.bias != nullptr);
    OP_REQUIRES_OK(ctx, ctx->allocate_temp(::tensorflow::DataTypeToEnum<U>::v(), TensorShape({size}), &workspace));
    attention::AttentionBackward<T, U>(in, g, workspace.flat<U>().data(), ShardOver(ctx));
  }
};

#if GOOGLE_CUDA
template <typename T>
struct AttentionFunctor<GPUDevice, T> {
  using U = Acc<T>;
  using G = typename GpuStorage<T>::type;

  // Zero bits are 0 in every float type.
  static void Zero(OpKernelContext* ctx, T* data, int64_t count) {
    CheckCudaLaunch(ctx, cudaMemsetAsync(data, 0, count * sizeof(T), ctx->eigen_gpu_device().stream()),
                    "attention zeros");
  }

  static AttentionInputs<G> OnGpu(const AttentionInputs<T>& in) {
    AttentionInputs<G> g;
    g.shape = in.shape;
    g.query = AsGpu(in.query);
    g.key = AsGpu(in.key);
    g.value = AsGpu(in.value);
    g.bias = in.bias == nullptr ? nullptr : AsGpu(in.bias);
    g.mask = in.mask;
    g.causal = in.causal;
    g.scale = in.scale;
    g.dropout_rate = in.dropout_rate;
    g.seed[0] = in.seed[0];
    g.seed[1] = in.seed[1];
    return g;
  }

  static void Forward(OpKernelContext* ctx, const AttentionInputs<T>& in, T* out, U* lse) {
    const cudaStream_t stream = ctx->eigen_gpu_device().stream();
    CheckCudaLaunch(ctx, attention::LaunchAttentionForward(stream, OnGpu(in), AsGpu(out), lse), "attention forward");
  }

  static void Backward(OpKernelContext* ctx, const AttentionInputs<T>& in, AttentionGrads<T>& g) {
    const attention::AttentionShape& s = in.shape;
    const int64_t bias_size = in.bias == nullptr ? 0 : s.bias[0] * s.bias[1] * s.bias[2] * s.bias[3];
    Tensor workspace;
    const int64_t size = attention::AttentionBackwardWorkspaceSize(s, bias_size);
    OP_REQUIRES_OK(ctx, ctx->allocate_temp(::tensorflow::DataTypeToEnum<U>::v(), TensorShape({size}), &workspace));
    AttentionGrads<G> d;
    d.dout = AsGpu(g.dout);
    d.out = AsGpu(g.out);
    d.lse = g.lse;
    d.dquery = AsGpu(g.dquery);
    d.dkey = AsGpu(g.dkey);
    d.dvalue = AsGpu(g.dvalue);
    d.dbias = AsGpu(g.dbias);
    const cudaStream_t stream = ctx->eigen_gpu_device().stream();
    CheckCudaLaunch(ctx, attention::LaunchAttentionBackward(stream, OnGpu(in), d, workspace.flat<U>().data()),
                    "attention backward");
  }
};
#endif  // GOOGLE_CUDA

// query, key, value, bias, mask, seed -> output [B, T, N, H], lse [B, N, T].
template <typename Device, typename T>
class AttentionOp : public OpKernel {
 public:
  explicit AttentionOp(OpKernelConstruction* ctx) : OpKernel(ctx) { OP_REQUIRES_OK(ctx, attrs_.Read(ctx)); }

  void Compute(OpKernelContext* ctx) override {
    AttentionInputs<T> in;
    OP_REQUIRES_OK(ctx, ReadInputs(ctx, 0, attrs_, &in));
    Tensor* out = nullptr;
    Tensor* lse = nullptr;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, ctx->input(0).shape(), &out));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(1, LseShape(in.shape), &lse));
    if (NothingToCompute(ctx)) return;
    AttentionFunctor<Device, T>::Forward(ctx, in, out->flat<T>().data(), lse->flat<Acc<T>>().data());
  }

 private:
  AttentionAttrs attrs_;
};

// dout, query, key, value, bias, mask, seed, output, lse -> dquery, dkey,
// dvalue, dbias (shape [0] without a bias).
template <typename Device, typename T>
class AttentionGradOp : public OpKernel {
 public:
  explicit AttentionGradOp(OpKernelConstruction* ctx) : OpKernel(ctx) { OP_REQUIRES_OK(ctx, attrs_.Read(ctx)); }

  void Compute(OpKernelContext* ctx) override {
    AttentionInputs<T> in;
    OP_REQUIRES_OK(ctx, ReadInputs(ctx, 1, attrs_, &in));
    const Tensor& query = ctx->input(1);
    OP_REQUIRES_OK(ctx, CheckShape("dout", ctx->input(0), query.shape()));
    OP_REQUIRES_OK(ctx, CheckShape("output", ctx->input(7), query.shape()));
    OP_REQUIRES_OK(ctx, CheckShape("lse", ctx->input(8), LseShape(in.shape)));
    Tensor *dquery = nullptr, *dkey = nullptr, *dvalue = nullptr, *dbias = nullptr;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, query.shape(), &dquery));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(1, ctx->input(2).shape(), &dkey));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(2, ctx->input(3).shape(), &dvalue));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(3, attrs_.has_bias ? ctx->input(4).shape() : TensorShape({0}), &dbias));
    AttentionGrads<T> g;
    g.dout = ctx->input(0).flat<T>().data();
    g.out = ctx->input(7).flat<T>().data();
    g.lse = ctx->input(8).flat<Acc<T>>().data();
    g.dquery = dquery->flat<T>().data();
    g.dkey = dkey->flat<T>().data();
    g.dvalue = dvalue->flat<T>().data();
    g.dbias = dbias->flat<T>().data();
    if (query.NumElements() == 0 || ctx->input(2).NumElements() == 0) {
      // No query, no key or no feature: there is no product q . k, and
      // dout . value is 0, so every gradient is 0.
      for (Tensor* t : {dquery, dkey, dvalue, dbias}) AttentionFunctor<Device, T>::Zero(ctx, t->flat<T>().data(), t->NumElements());
      return;
    }
    AttentionFunctor<Device, T>::Backward(ctx, in, g);
  }

 private:
  AttentionAttrs attrs_;
};

#define TFKIT_REGISTER_KERNELS(DEVICE, DEV, T)                                                                 \
  REGISTER_KERNEL_BUILDER(Name("Tfkit>DotProductAttention").Device(DEVICE).TypeConstraint<T>("T")             \
                              TFKIT_ATTENTION_HOST_MEMORY,                                                     \
                          AttentionOp<DEV, T>);                                                                \
  REGISTER_KERNEL_BUILDER(Name("Tfkit>DotProductAttentionGrad").Device(DEVICE).TypeConstraint<T>("T")         \
                              TFKIT_ATTENTION_HOST_MEMORY,                                                     \
                          AttentionGradOp<DEV, T>);

// The seed is read on the host on every device.
#define TFKIT_ATTENTION_HOST_MEMORY .HostMemory("seed")

TFKIT_REGISTER_FLOAT_KERNELS()
#undef TFKIT_REGISTER_KERNELS
#undef TFKIT_ATTENTION_HOST_MEMORY

}  // namespace
}  // namespace tfkit
