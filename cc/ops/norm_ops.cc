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

// x: rank >= 1; each parameter input: [last dim of x]. Sets *y to x's shape
// refined by the parameters and *stats to x's shape without its last axis.
absl::Status NormShapes(InferenceContext* c, int x_index,
                        std::initializer_list<int> param_indices,
                        ShapeHandle* y, ShapeHandle* stats) {
  ShapeHandle x;
  TF_RETURN_IF_ERROR(c->WithRankAtLeast(c->input(x_index), 1, &x));
  DimensionHandle last = c->UnknownDim();
  if (c->RankKnown(x)) last = c->Dim(x, -1);
  for (int index : param_indices) {
    ShapeHandle param;
    TF_RETURN_IF_ERROR(c->WithRank(c->input(index), 1, &param));
    TF_RETURN_IF_ERROR(c->Merge(last, c->Dim(param, 0), &last));
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
  TF_RETURN_IF_ERROR(EpsilonIsValid(c));
  ShapeHandle y, stats;
  TF_RETURN_IF_ERROR(NormShapes(c, 0, {1, 2}, &y, &stats));
  c->set_output(0, y);
  c->set_output(1, stats);
  c->set_output(2, stats);
  return absl::OkStatus();
}

absl::Status RMSNormShape(InferenceContext* c) {
  TF_RETURN_IF_ERROR(EpsilonIsValid(c));
  ShapeHandle y, stats;
  TF_RETURN_IF_ERROR(NormShapes(c, 0, {1}, &y, &stats));
  c->set_output(0, y);
  c->set_output(1, stats);
  return absl::OkStatus();
}

// Grad ops: dy and x share a shape; the statistics and their incoming
// gradients are per row; outputs are dx and one grad per param.
absl::Status NormGradShape(InferenceContext* c, int num_params) {
  ShapeHandle dx, stats, merged;
  TF_RETURN_IF_ERROR(NormShapes(c, 1, {2}, &dx, &stats));
  TF_RETURN_IF_ERROR(c->Merge(c->input(0), dx, &merged));
  c->set_output(0, merged);
  ShapeHandle param_shape = c->Vector(c->UnknownDim());
  if (c->RankKnown(merged)) param_shape = c->Vector(c->Dim(merged, -1));
  for (int i = 1; i <= num_params; ++i) c->set_output(i, param_shape);
  return absl::OkStatus();
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
    .SetShapeFn([](InferenceContext* c) { return NormGradShape(c, 2); });

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
    .SetShapeFn([](InferenceContext* c) { return NormGradShape(c, 1); });

}  // namespace tfkit
