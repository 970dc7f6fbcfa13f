// OpKernels for the embedding family: validate the shapes, the row splits
// and every id (a bad one is an InvalidArgument naming indices, its value
// and the vocabulary size), then combine the bags (sharding bags over the
// CPU thread pool, or on TF's CUDA stream).
//
// On the GPU the ids and splits are checked by a kernel that records the
// first bad position in device memory; the OpKernel copies those 16 bytes
// back and waits for the stream (one synchronisation per call) and launches
// the compute kernels only when all are good (they would skip a bad id and
// treat a bad bag as empty, never reading out of bounds).
#include <optional>
#include <string>
#include <vector>

#include "kernels/embedding/embedding_cpu.h"
#include "tensorflow/core/framework/resource_mgr.h"
#include "tensorflow/core/framework/resource_var.h"
#include "tfkit/compat.h"
#include "tfkit/kernel_prelude.h"

#if GOOGLE_CUDA
#include "kernels/embedding/embedding_gpu.h"
#endif

namespace tfkit {
namespace {

using ::tfkit::kernels::embedding::BagShape;
using ::tfkit::kernels::embedding::BagSum;
using ::tfkit::kernels::embedding::Combiner;
namespace math = ::tfkit::kernels::embedding;

absl::Status BadIdError(int64_t position, int64_t value, int64_t vocab) {
  return RuleStatus(math::BadIdError(position, value, vocab));
}

absl::Status BadSplitError(int64_t position, int64_t ids) { return RuleStatus(math::BadSplitError(position, ids)); }

absl::Status CombinerAttr(OpKernelConstruction* ctx, Combiner* combiner) {
  std::string name;
  TF_RETURN_IF_ERROR(ctx->GetAttr("combiner", &name));
  return RuleStatus(math::CombinerNamed(name, combiner));
}

absl::Status Shapes(const Tensor& ids, const Tensor& splits, const Tensor& params, const Tensor& weights,
                    BagShape* shape) {
  return RuleStatus(math::BagShapeError(DimsOf(ids.shape()), DimsOf(splits.shape()), DimsOf(params.shape()),
                                        DimsOf(weights.shape()), shape));
}

// The shape [bags, dim] of y (and dy), named `name`.
absl::Status BagsShape(const char* name, const BagShape& shape, TensorShape* y) {
  return CountedShape(absl::StrCat(name, " ([bags, dim]: the bags of row_splits, the dim of params)"),
                      {shape.bags, shape.dim}, y);
}

// d_values' shape, [ids, dim].
absl::Status DValuesShape(const BagShape& shape, TensorShape* d_values) {
  return CountedShape("d_values ([n, dim]: the n indices, the dim of params)", {shape.ids, shape.dim}, d_values);
}

template <typename Device, typename T, typename Index>
struct Functor;

template <typename T, typename Index>
struct Functor<CPUDevice, T, Index> {
  static absl::Status Check(OpKernelContext*, const Index* ids, const int64_t* splits, const BagShape& shape) {
    const int64_t bad_split = math::FirstBadSplit(splits, shape.bags, shape.ids);
    if (bad_split >= 0) return BadSplitError(bad_split, shape.ids);
    const int64_t bad_id = math::FirstBadId(ids, shape.ids, shape.vocab);
    if (bad_id >= 0) return BadIdError(bad_id, ids[bad_id], shape.vocab);
    return absl::OkStatus();
  }

  static void Forward(OpKernelContext* ctx, const Index* ids, const int64_t* splits, const T* params,
                      const T* weights, const BagShape& shape, T* y) {
    const int64_t cost = RowCostOf(2 * std::max<int64_t>(1, shape.ids / std::max<int64_t>(1, shape.bags)), shape.dim);
    ShardRows(ctx, shape.bags, cost, [&](int64_t begin, int64_t end) {
      std::vector<BagSum<T>> sum(shape.dim);
      math::EmbeddingBagRows(ids, splits, params, weights, shape, begin, end, sum.data(), y);
    });
  }

  static void Backward(OpKernelContext* ctx, const T* dy, const Index* ids, const int64_t* splits, const T* params,
                       const T* weights, const BagShape& shape, T* d_values, T* d_weights) {
    const int64_t cost = RowCostOf(4 * std::max<int64_t>(1, shape.ids / std::max<int64_t>(1, shape.bags)), shape.dim);
    ShardRows(ctx, shape.bags, cost, [&](int64_t begin, int64_t end) {
      std::vector<BagSum<T>> dots;
      math::EmbeddingBagGradRows(dy, ids, splits, params, weights, shape, begin, end, &dots, d_values, d_weights);
    });
  }
};

#if GOOGLE_CUDA
template <typename T, typename Index>
struct Functor<GPUDevice, T, Index> {
  static absl::Status Check(OpKernelContext* ctx, const Index* ids, const int64_t* splits, const BagShape& shape) {
    Tensor status;
    TF_RETURN_IF_ERROR(ctx->allocate_temp(::tensorflow::DT_INT64, TensorShape({2}), &status));
    cudaStream_t stream = ctx->eigen_gpu_device().stream();
    int64_t* device_status = status.flat<int64_t>().data();
    int64_t host_status[2];
    cudaError_t err = math::LaunchCheckBags(stream, ids, splits, shape, device_status);
    if (err == cudaSuccess) {
      err = cudaMemcpyAsync(host_status, device_status, sizeof(host_status), cudaMemcpyDeviceToHost, stream);
    }
    if (err == cudaSuccess) err = cudaStreamSynchronize(stream);
    if (err != cudaSuccess) return absl::InternalError(absl::StrCat("embedding_bag: ", cudaGetErrorString(err)));
    if (host_status[1] != math::kNoneBad) return BadSplitError(host_status[1], shape.ids);
    if (host_status[0] == math::kNoneBad) return absl::OkStatus();
    Index value = 0;
    cudaMemcpy(&value, ids + host_status[0], sizeof(Index), cudaMemcpyDeviceToHost);
    return BadIdError(host_status[0], value, shape.vocab);
  }

  static void Forward(OpKernelContext* ctx, const Index* ids, const int64_t* splits, const T* params,
                      const T* weights, const BagShape& shape, T* y) {
    CheckCudaLaunch(ctx,
                    math::LaunchEmbeddingBag(ctx->eigen_gpu_device().stream(), ids, splits, AsGpu(params),
                                             AsGpu(weights), shape, AsGpu(y)),
                    "embedding_bag");
  }

  static void Backward(OpKernelContext* ctx, const T* dy, const Index* ids, const int64_t* splits, const T* params,
                       const T* weights, const BagShape& shape, T* d_values, T* d_weights) {
    using W = BagSum<typename GpuStorage<T>::type>;
    Tensor dots;
    const int64_t dot_count = shape.weighted ? shape.ids : 0;
    OP_REQUIRES_OK(ctx, ctx->allocate_temp(::tensorflow::DataTypeToEnum<W>::v(), TensorShape({dot_count}), &dots));
    CheckCudaLaunch(ctx,
                    math::LaunchEmbeddingBagGrad(ctx->eigen_gpu_device().stream(), AsGpu(dy), ids, splits,
                                                 AsGpu(params), AsGpu(weights), shape, dots.flat<W>().data(),
                                                 AsGpu(d_values), AsGpu(d_weights)),
                    "embedding_bag_grad");
  }
};
#endif  // GOOGLE_CUDA

// Reads and checks the four inputs every op of the family starts with.
template <typename Device, typename T, typename Index>
absl::Status ReadBags(OpKernelContext* ctx, const Tensor& params, BagShape* shape) {
  const Tensor& ids = ctx->input(0);
  const Tensor& splits = ctx->input(1);
  TF_RETURN_IF_ERROR(Shapes(ids, splits, params, ctx->input(3), shape));
  return Functor<Device, T, Index>::Check(ctx, ids.flat<Index>().data(), splits.flat<int64_t>().data(), *shape);
}

constexpr char kInitializedVariable[] = "params must be the handle of an initialized resource variable";

// params (input 2): a tensor, or a resource variable's tensor read in place
// under the variable's shared lock for as long as this lives (as
// ResourceGather reads it), so a large table is never copied.
class Table {
 public:
  absl::Status Acquire(OpKernelContext* ctx, bool resource, ::tensorflow::DataType dtype) {
    if (!resource) {
      tensor_ = &ctx->input(2);
      return absl::OkStatus();
    }
    TF_RETURN_IF_ERROR(RuleStatus(math::HandleShapeError(DimsOf(ctx->input(2).shape()))));
    TF_RETURN_IF_ERROR(LookUp(ctx));
    TF_RETURN_IF_ERROR(compat::LockShared(variable_.get(), &lock_));
    if (!variable_->is_initialized) return InvalidArg(kInitializedVariable, ", got an uninitialized one");
    tensor_ = variable_->tensor();
    if (tensor_->dtype() != dtype) {
      return InvalidArg("params must have dtype ", ::tensorflow::DataTypeString(dtype), " (the dtype of weights), got ",
                        ::tensorflow::DataTypeString(tensor_->dtype()));
    }
    return absl::OkStatus();
  }
  const Tensor& tensor() const { return *tensor_; }

 private:
  absl::Status LookUp(OpKernelContext* ctx) {
    const absl::Status found = ::tensorflow::LookupResource(ctx, ::tensorflow::HandleFromInput(ctx, 2), &variable_);
    if (found.ok()) return found;
    return InvalidArg(kInitializedVariable, ": ", found.message());
  }

  ::tensorflow::core::RefCountPtr<::tensorflow::Var> variable_;
  std::optional<::tensorflow::tf_shared_lock> lock_;
  const Tensor* tensor_ = nullptr;
};

// What the forward and gradient kernels share: the combiner attr, and the
// table and checked bags of a call.
template <typename Device, typename T, typename Index, bool kResource>
class EmbeddingBagKernel : public OpKernel {
 public:
  explicit EmbeddingBagKernel(OpKernelConstruction* ctx) : OpKernel(ctx) {
    OP_REQUIRES_OK(ctx, CombinerAttr(ctx, &combiner_));
  }

 protected:
  absl::Status Bags(OpKernelContext* ctx, Table* table, BagShape* shape) const {
    TF_RETURN_IF_ERROR(table->Acquire(ctx, kResource, ::tensorflow::DataTypeToEnum<T>::v()));
    shape->combiner = combiner_;
    return ReadBags<Device, T, Index>(ctx, table->tensor(), shape);
  }

 private:
  Combiner combiner_ = Combiner::kSum;
};

template <typename Device, typename T, typename Index, bool kResource>
class EmbeddingBagOp : public EmbeddingBagKernel<Device, T, Index, kResource> {
 public:
  using EmbeddingBagKernel<Device, T, Index, kResource>::EmbeddingBagKernel;

  void Compute(OpKernelContext* ctx) override {
    Table table;
    BagShape shape;
    OP_REQUIRES_OK(ctx, this->Bags(ctx, &table, &shape));
    TensorShape y_shape;
    OP_REQUIRES_OK(ctx, BagsShape("y", shape, &y_shape));
    Tensor* y = nullptr;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, y_shape, &y));
    if (NothingToCompute(ctx)) return;
    Functor<Device, T, Index>::Forward(ctx, ctx->input(0).flat<Index>().data(),
                                       ctx->input(1).flat<int64_t>().data(), table.tensor().flat<T>().data(),
                                       ctx->input(3).flat<T>().data(), shape, y->flat<T>().data());
  }
};

template <typename Device, typename T, typename Index, bool kResource>
class EmbeddingBagGradOp : public EmbeddingBagKernel<Device, T, Index, kResource> {
 public:
  using EmbeddingBagKernel<Device, T, Index, kResource>::EmbeddingBagKernel;

  void Compute(OpKernelContext* ctx) override {
    Table table;
    BagShape shape;
    OP_REQUIRES_OK(ctx, this->Bags(ctx, &table, &shape));
    const Tensor& dy = ctx->input(4);
    TensorShape dy_shape, d_values_shape;
    OP_REQUIRES_OK(ctx, BagsShape("dy", shape, &dy_shape));
    OP_REQUIRES_OK(ctx, CheckShape("dy", dy, dy_shape));
    OP_REQUIRES_OK(ctx, DValuesShape(shape, &d_values_shape));
    Tensor* d_values = nullptr;
    Tensor* d_weights = nullptr;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, d_values_shape, &d_values));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(1, ctx->input(3).shape(), &d_weights));
    if (shape.ids == 0) return;
    Functor<Device, T, Index>::Backward(ctx, dy.flat<T>().data(), ctx->input(0).flat<Index>().data(),
                                        ctx->input(1).flat<int64_t>().data(), table.tensor().flat<T>().data(),
                                        ctx->input(3).flat<T>().data(), shape, d_values->flat<T>().data(),
                                        d_weights->flat<T>().data());
  }
};

}  // namespace

TFKIT_COMPAT_FEATURE(var_mu, compat::kVarMu);

namespace {

#define TFKIT_REGISTER_EMBEDDING_OPS(PREFIX, DEVICE, DEV, T, Index, RESOURCE)                                      \
  REGISTER_KERNEL_BUILDER(                                                                                         \
      Name("Tfkit>" PREFIX "EmbeddingBag").Device(DEVICE).TypeConstraint<T>("T").TypeConstraint<Index>("Tindices"), \
      EmbeddingBagOp<DEV, T, Index, RESOURCE>);                                                                    \
  REGISTER_KERNEL_BUILDER(Name("Tfkit>" PREFIX "EmbeddingBagGrad")                                                 \
                              .Device(DEVICE)                                                                      \
                              .TypeConstraint<T>("T")                                                              \
                              .TypeConstraint<Index>("Tindices"),                                                  \
                          EmbeddingBagGradOp<DEV, T, Index, RESOURCE>);

#define TFKIT_REGISTER_EMBEDDING(DEVICE, DEV, T, Index)                \
  TFKIT_REGISTER_EMBEDDING_OPS("", DEVICE, DEV, T, Index, false)      \
  TFKIT_REGISTER_EMBEDDING_OPS("Resource", DEVICE, DEV, T, Index, true)

#define TFKIT_REGISTER_KERNELS(DEVICE, DEV, T)        \
  TFKIT_REGISTER_EMBEDDING(DEVICE, DEV, T, int32_t) \
  TFKIT_REGISTER_EMBEDDING(DEVICE, DEV, T, int64_t)
// On the GPU ids and row_splits are read on the device; the check's 16
// bytes come back through the stream (see the top of this file).
TFKIT_REGISTER_FLOAT_KERNELS()
#undef TFKIT_REGISTER_KERNELS

#undef TFKIT_REGISTER_EMBEDDING
#undef TFKIT_REGISTER_EMBEDDING_OPS

}  // namespace
}  // namespace tfkit
