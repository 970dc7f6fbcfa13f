// tfkit's public C++ helpers for op authors (tfkit's own families use them
// too); `tfkit.build.include_dir()` returns the folder holding `tfkit/`.
//
// - Rules: a family's framework-free rule (kernels/common/rules.h) returns
//   "" or an error message; RuleStatus makes it a Status, DimsOf and
//   ShapeOfDims carry shapes to and from it.
// - Input checks: every failure is an InvalidArgument error that names the
//   argument and what was expected; each check runs on a tensor (OpKernels)
//   and on a static shape (shape functions) with the same rule and message
//   (kernels/common/rules.h). ElementCount counts the elements of sizes
//   whose product may not fit in int64; CheckAccumulationType checks an
//   op's attr U against its T.
// - NothingToCompute: every output an OpKernel allocated is empty.
// - ShardRows: runs a row-range function over the CPU device's thread pool;
//   ShardOver: the same as a callable.
// - CheckCudaLaunch (GOOGLE_CUDA builds): turns a launcher's cudaError_t
//   into an Internal error of the op; AsGpu: a tensor's data as the
//   launchers' storage type.
#ifndef TFKIT_OP_UTILS_H_
#define TFKIT_OP_UTILS_H_

#include <cmath>
#include <limits>

#include <algorithm>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "kernels/common/rules.h"
#include "kernels/common/types.h"
#include "tensorflow/core/framework/op_kernel.h"
#include "tensorflow/core/framework/shape_inference.h"
#include "tensorflow/core/framework/tensor.h"
#include "tensorflow/core/framework/tensor_shape.h"
#include "tensorflow/core/framework/types.h"
#include "tensorflow/core/util/work_sharder.h"

#if GOOGLE_CUDA
#include <cuda_runtime.h>
#endif

namespace tfkit {

// The `T` attr of an op over the float types (the kernels' registration,
// kernel_prelude.h's TFKIT_REGISTER_FLOAT_KERNELS, covers the same list).
inline constexpr char kFloatTypesAttr[] = "T: {half, bfloat16, float, double}";

template <typename... Args>
absl::Status InvalidArg(const Args&... args) {
  return absl::InvalidArgumentError(absl::StrCat(args...));
}

// A rule's verdict as a Status: "" is OK, anything else an InvalidArgument.
inline absl::Status RuleStatus(const std::string& error) {
  return error.empty() ? absl::OkStatus() : absl::InvalidArgumentError(error);
}

inline std::vector<int64_t> DimsOf(const tensorflow::TensorShape& shape) {
  const auto sizes = shape.dim_sizes();
  return std::vector<int64_t>(sizes.begin(), sizes.end());
}

// The sizes of a shape of known rank, -1 (kUnknownDim) where unknown.
inline std::vector<int64_t> DimsOf(tensorflow::shape_inference::InferenceContext* c,
                                   tensorflow::shape_inference::ShapeHandle shape) {
  std::vector<int64_t> dims(c->Rank(shape));
  for (size_t i = 0; i < dims.size(); ++i) dims[i] = c->Value(c->Dim(shape, i));
  return dims;
}

inline tensorflow::shape_inference::ShapeHandle ShapeOfDims(tensorflow::shape_inference::InferenceContext* c,
                                                            const std::vector<int64_t>& dims) {
  std::vector<tensorflow::shape_inference::DimensionHandle> handles;
  for (int64_t dim : dims) handles.push_back(c->MakeDim(dim));
  return c->MakeShape(handles);
}

inline absl::Status CheckRankAtLeast1(const char* name, const tensorflow::Tensor& t) {
  return RuleStatus(kernels::RankAtLeastError(name, DimsOf(t.shape()), 1));
}

inline absl::Status CheckShape(const char* name, const tensorflow::Tensor& t,
                               const tensorflow::TensorShape& expected) {
  return RuleStatus(kernels::ShapeError(name, DimsOf(t.shape()), DimsOf(expected)));
}

inline absl::Status CheckSameShape(const char* name, const tensorflow::Tensor& t, const char* other_name,
                                   const tensorflow::Tensor& other) {
  return RuleStatus(kernels::SameShapeError(name, DimsOf(t.shape()), other_name, DimsOf(other.shape())));
}

// A per-feature parameter: shape [last dimension of x].
inline absl::Status CheckLastDimParam(const char* name, const tensorflow::Tensor& param, const tensorflow::Tensor& x) {
  return RuleStatus(kernels::LastDimParamError(name, DimsOf(param.shape()), DimsOf(x.shape())));
}

// The same checks in shape functions, on static shapes: an unknown size
// agrees with any, and a shape of unknown rank is not checked.
inline absl::Status CheckRankAtLeast1(tensorflow::shape_inference::InferenceContext* c, const char* name,
                                      tensorflow::shape_inference::ShapeHandle t) {
  if (!c->RankKnown(t)) return absl::OkStatus();
  return RuleStatus(kernels::RankAtLeastError(name, DimsOf(c, t), 1));
}

inline absl::Status CheckShape(tensorflow::shape_inference::InferenceContext* c, const char* name,
                               tensorflow::shape_inference::ShapeHandle t,
                               tensorflow::shape_inference::ShapeHandle expected) {
  if (!c->RankKnown(t) || !c->RankKnown(expected)) return absl::OkStatus();
  return RuleStatus(kernels::ShapeError(name, DimsOf(c, t), DimsOf(c, expected)));
}

inline absl::Status CheckSameShape(tensorflow::shape_inference::InferenceContext* c, const char* name,
                                   tensorflow::shape_inference::ShapeHandle t, const char* other_name,
                                   tensorflow::shape_inference::ShapeHandle other) {
  if (!c->RankKnown(t) || !c->RankKnown(other)) return absl::OkStatus();
  return RuleStatus(kernels::SameShapeError(name, DimsOf(c, t), other_name, DimsOf(c, other)));
}

inline absl::Status CheckLastDimParam(tensorflow::shape_inference::InferenceContext* c, const char* name,
                                      tensorflow::shape_inference::ShapeHandle param,
                                      tensorflow::shape_inference::ShapeHandle x) {
  if (!c->RankKnown(param)) return absl::OkStatus();
  const kernels::Dims x_dims = c->RankKnown(x) ? DimsOf(c, x) : kernels::Dims{kernels::kUnknownDim};
  return RuleStatus(kernels::LastDimParamError(name, DimsOf(c, param), x_dims));
}

// `shape`, or `rank` unknown sizes where its rank is unknown: what a rule
// that reads the sizes of a shape of that rank is given.
inline tensorflow::shape_inference::ShapeHandle WithKnownRank(tensorflow::shape_inference::InferenceContext* c,
                                                              tensorflow::shape_inference::ShapeHandle shape,
                                                              int rank) {
  return c->RankKnown(shape) ? shape : c->UnknownShapeOfRank(rank);
}

// The number of elements of `dims` (a shape, or a part of one, which
// `what` names): an InvalidArgument where it does not fit in int64, as the
// sizes of a tensor with no elements may not. Every product of sizes an
// OpKernel forms is counted here.
inline absl::Status ElementCount(const std::string& what, const kernels::Dims& dims, int64_t* count) {
  return RuleStatus(kernels::CountError(what, dims, count));
}

// The TensorShape of `dims`, once ElementCount has counted them.
inline absl::Status CountedShape(const std::string& what, const kernels::Dims& dims, tensorflow::TensorShape* shape) {
  int64_t count = 0;
  TF_RETURN_IF_ERROR(ElementCount(what, dims, &count));
  return tensorflow::TensorShape::BuildTensorShape(dims, shape);
}

// The rows of x viewed as a matrix over its last axis (rank >= 1): 0 when
// x has no elements, whatever its other sizes.
inline int64_t RowCount(const tensorflow::Tensor& x) {
  return x.NumElements() == 0 ? 0 : x.NumElements() / x.dim_size(x.dims() - 1);
}

// Whether every output the kernel allocated has no element: then there is
// nothing to compute, and nothing may be sized by the inputs' other sizes
// (with one size 0, the rest may be far too large to allocate or loop over).
inline bool NothingToCompute(tensorflow::OpKernelContext* ctx) {
  for (int i = 0; i < ctx->num_outputs(); ++i) {
    const tensorflow::Tensor* out = ctx->mutable_output(i);
    if (out != nullptr && out->NumElements() > 0) return false;
  }
  return true;
}

// The shape of x's per-row statistics, x's without its last axis (rank >= 1).
inline absl::Status StatsShape(const char* x_name, const tensorflow::TensorShape& x, tensorflow::TensorShape* stats) {
  kernels::Dims dims = DimsOf(x);
  dims.pop_back();
  return CountedShape(absl::StrCat(x_name, "'s rows (its shape without the last dimension)"), dims, stats);
}

// The accumulation type of T, the one an op's attr U must be: double for
// double, float for the other float types (Acc<T>, kernels/common/types.h).
constexpr tensorflow::DataType AccumulationType(tensorflow::DataType t) {
  return t == tensorflow::DT_DOUBLE ? tensorflow::DT_DOUBLE : tensorflow::DT_FLOAT;
}

// Attr U must be attr T's accumulation type; `name` names what has type U,
// `x_name` the first input of type T. `context` is an InferenceContext
// (shape functions) or an OpKernelConstruction (kernels registered for
// every U, so that a mismatched pair finds a kernel that refuses it).
template <typename Context>
absl::Status CheckAccumulationType(Context* context, const char* name, const char* x_name) {
  tensorflow::DataType t, u;
  TF_RETURN_IF_ERROR(context->GetAttr("T", &t));
  TF_RETURN_IF_ERROR(context->GetAttr("U", &u));
  const tensorflow::DataType expected = AccumulationType(t);
  if (u == expected) return absl::OkStatus();
  return InvalidArg(name, " must have dtype ", tensorflow::DataTypeString(expected), " for ", x_name, " of dtype ",
                    tensorflow::DataTypeString(t), " (double for double ", x_name, ", float for the other types), got ",
                    tensorflow::DataTypeString(u));
}

// An attr that must be a finite float > 0 (a scale, a limit, a width).
inline absl::Status CheckPositiveFinite(const char* name, float value) {
  if (std::isfinite(value) && value > 0.0f) return absl::OkStatus();
  return InvalidArg(name, " must be a finite float > 0, got ", value);
}

// An attr that must be a finite float (a slope, an offset).
inline absl::Status CheckFinite(const char* name, float value) {
  if (std::isfinite(value)) return absl::OkStatus();
  return InvalidArg(name, " must be a finite float, got ", value);
}

// a * b for a shard-size estimate, saturated (kernels/common/types.h's rule).
inline int64_t RowCostOf(int64_t a, int64_t b) { return kernels::RowCostOf(a, b); }

// Calls fn(begin, end) over [0, rows) split across the CPU device's threads;
// cost_per_row is a rough count of operations per row (for the shard size).
inline void ShardRows(tensorflow::OpKernelContext* ctx, int64_t rows,
                      int64_t cost_per_row,
                      const std::function<void(int64_t, int64_t)>& fn) {
  auto* workers = ctx->device()->tensorflow_cpu_worker_threads()->workers;
  tensorflow::Shard(workers->NumThreads(), workers, rows,
                    std::max<int64_t>(cost_per_row, 1), fn);
}

// ShardRows as a callable parallel_for(n, cost_per_item, fn(begin, end)),
// for framework-free helpers that take one (kernels/common/accumulate.h).
inline auto ShardOver(tensorflow::OpKernelContext* ctx) {
  return [ctx](int64_t n, int64_t cost_per_item, const std::function<void(int64_t, int64_t)>& fn) {
    ShardRows(ctx, n, cost_per_item, fn);
  };
}

#if GOOGLE_CUDA
// Fails the op with an Internal error naming `what` when a launch failed.
inline void CheckCudaLaunch(tensorflow::OpKernelContext* ctx, cudaError_t err,
                            const char* what) {
  OP_REQUIRES(ctx, err == cudaSuccess,
              absl::InternalError(absl::StrCat(what, " CUDA launch failed: ",
                                               cudaGetErrorString(err))));
}

// The framework-free launchers take kernels/common/types.h's 16-bit storage
// types; AsGpu(p) views a tensor's Eigen::half / Eigen::bfloat16 data as
// those (bit-compatible), other types as they are.
namespace kernels {
struct Half;
struct BFloat16;
}  // namespace kernels

template <typename T>
struct GpuStorage {
  using type = T;
};
template <>
struct GpuStorage<Eigen::half> {
  using type = kernels::Half;
};
template <>
struct GpuStorage<Eigen::bfloat16> {
  using type = kernels::BFloat16;
};

template <typename T>
const typename GpuStorage<T>::type* AsGpu(const T* p) {
  return reinterpret_cast<const typename GpuStorage<T>::type*>(p);
}
template <typename T>
typename GpuStorage<T>::type* AsGpu(T* p) {
  return reinterpret_cast<typename GpuStorage<T>::type*>(p);
}
#endif  // GOOGLE_CUDA

}  // namespace tfkit

#endif  // TFKIT_OP_UTILS_H_
