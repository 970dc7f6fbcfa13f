// Op registrations for the norm family: fused LayerNorm and RMSNorm over the
// last axis, each with a grad op that reuses the forward's row statistics.
#include "kernels/norm/norm_rules.h"
#include "tensorflow/core/framework/op.h"
#include "tensorflow/core/framework/shape_inference.h"
#include "tfkit/op_utils.h"

namespace tfkit {
namespace {

using ::tensorflow::shape_inference::DimensionHandle;
using ::tensorflow::shape_inference::InferenceContext;
using ::tensorflow::shape_inference::ShapeHandle;

// An input by its index and its name in messages.
struct Input {
  int index;
  const char* name;
};

// x: rank >= 1; each parameter: [last dim of x] (the OpKernels' checks).
// Sets *y to x's shape refined by the parameters and *stats to x's shape
// without its last axis.
absl::Status NormShapes(InferenceContext* c, int x_index, std::initializer_list<Input> params, ShapeHandle* y,
                        ShapeHandle* stats) {
  const ShapeHandle x = c->input(x_index);
  TF_RETURN_IF_ERROR(CheckRankAtLeast1(c, "x", x));
  DimensionHandle last = c->RankKnown(x) ? c->Dim(x, -1) : c->UnknownDim();
  for (const Input& param : params) {
    const ShapeHandle shape = c->input(param.index);
    TF_RETURN_IF_ERROR(CheckLastDimParam(c, param.name, shape, x));
    if (c->RankKnown(shape)) TF_RETURN_IF_ERROR(c->Merge(last, c->Dim(shape, 0), &last));
  }
  *y = x;
  *stats = c->UnknownShape();
  if (c->RankKnown(x)) {
    TF_RETURN_IF_ERROR(c->Subshape(x, 0, -1, stats));
    TF_RETURN_IF_ERROR(c->Concatenate(*stats, c->Vector(last), y));
  }
  return absl::OkStatus();
}

absl::Status EpsilonIsValid(InferenceContext* c) {
  float epsilon;
  TF_RETURN_IF_ERROR(c->GetAttr("epsilon", &epsilon));
  return RuleStatus(::tfkit::kernels::norm::EpsilonError(epsilon));
}

absl::Status LayerNormShape(InferenceContext* c) {
  TF_RETURN_IF_ERROR(CheckAccumulationType(c, "mean and rstd (attr U)", "x"));
  TF_RETURN_IF_ERROR(EpsilonIsValid(c));
  ShapeHandle y, stats;
  TF_RETURN_IF_ERROR(NormShapes(c, 0, {{1, "gamma"}, {2, "beta"}}, &y, &stats));
  c->set_output(0, y);
  c->set_output(1, stats);
  c->set_output(2, stats);
  return absl::OkStatus();
}

absl::Status RMSNormShape(InferenceContext* c) {
  TF_RETURN_IF_ERROR(CheckAccumulationType(c, "rstd (attr U)", "x"));
  TF_RETURN_IF_ERROR(EpsilonIsValid(c));
  ShapeHandle y, stats;
  TF_RETURN_IF_ERROR(NormShapes(c, 0, {{1, "gamma"}}, &y, &stats));
  c->set_output(0, y);
  c->set_output(1, stats);
  return absl::OkStatus();
}

// Grad ops: dy and x share a shape; the statistics and their incoming
// gradients (`stats`, of dtype U) are per row; outputs are dx and one grad
// per param.
absl::Status NormGradShape(InferenceContext* c, const char* stats_names, std::initializer_list<Input> stats,
                           int num_params) {
  TF_RETURN_IF_ERROR(CheckAccumulationType(c, stats_names, "x"));
  ShapeHandle dx, stats_shape, merged;
  TF_RETURN_IF_ERROR(NormShapes(c, 1, {{2, "gamma"}}, &dx, &stats_shape));
  TF_RETURN_IF_ERROR(CheckSameShape(c, "dy", c->input(0), "x", c->input(1)));
  for (const Input& stat : stats) TF_RETURN_IF_ERROR(CheckShape(c, stat.name, c->input(stat.index), stats_shape));
  TF_RETURN_IF_ERROR(c->Merge(c->input(0), dx, &merged));
  c->set_output(0, merged);
  ShapeHandle param_shape = c->Vector(c->UnknownDim());
  if (c->RankKnown(merged)) param_shape = c->Vector(c->Dim(merged, -1));
  for (int i = 1; i <= num_params; ++i) c->set_output(i, param_shape);
  return absl::OkStatus();
}

absl::Status LayerNormGradShape(InferenceContext* c) {
  return NormGradShape(c, "mean, rstd, dmean and drstd", {{3, "mean"}, {4, "rstd"}, {5, "dmean"}, {6, "drstd"}}, 2);
}

absl::Status RMSNormGradShape(InferenceContext* c) {
  return NormGradShape(c, "rstd and drstd", {{3, "rstd"}, {4, "drstd"}}, 1);
}

}  // namespace

REGISTER_OP("Tfkit>LayerNorm")
    .Input("x: T")
    .Input("gamma: T")
    .Input("beta: T")
    .Output("y: T")
    .Output("mean: U")
    .Output("rstd: U")
    .Attr("epsilon: float = 1e-5")
    .Attr(kFloatTypesAttr)
    .Attr("U: {float, double}")
    .SetShapeFn(LayerNormShape)
    .Doc(R"doc(
Layer normalization over the last axis of x, fused:
y = (x - mean) / sqrt(var + epsilon) * gamma + beta.
mean and rstd = 1 / sqrt(var + epsilon) are per-row statistics in U
(float32, or float64 for float64 x) that the gradient reuses.
)doc");

REGISTER_OP("Tfkit>LayerNormGrad")
    .Input("dy: T")
    .Input("x: T")
    .Input("gamma: T")
    .Input("mean: U")
    .Input("rstd: U")
    .Input("dmean: U")
    .Input("drstd: U")
    .Output("dx: T")
    .Output("dgamma: T")
    .Output("dbeta: T")
    .Attr(kFloatTypesAttr)
    .Attr("U: {float, double}")
    .SetShapeFn(LayerNormGradShape);

REGISTER_OP("Tfkit>RMSNorm")
    .Input("x: T")
    .Input("gamma: T")
    .Output("y: T")
    .Output("rstd: U")
    .Attr("epsilon: float = 1e-6")
    .Attr(kFloatTypesAttr)
    .Attr("U: {float, double}")
    .SetShapeFn(RMSNormShape)
    .Doc(R"doc(
RMS normalization over the last axis of x, fused:
y = x / sqrt(mean(x^2) + epsilon) * gamma, with the per-row
rstd = 1 / sqrt(mean(x^2) + epsilon) kept for the gradient.
)doc");

REGISTER_OP("Tfkit>RMSNormGrad")
    .Input("dy: T")
    .Input("x: T")
    .Input("gamma: T")
    .Input("rstd: U")
    .Input("drstd: U")
    .Output("dx: T")
    .Output("dgamma: T")
    .Attr(kFloatTypesAttr)
    .Attr("U: {float, double}")
    .SetShapeFn(RMSNormGradShape);

}  // namespace tfkit
