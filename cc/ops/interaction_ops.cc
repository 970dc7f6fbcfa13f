// Op registrations for the interaction family: DLRM's dot interaction (the
// pairwise dot products of each batch item's features) and its gradient.
#include "kernels/interaction/interaction_rules.h"
#include "tensorflow/core/framework/op.h"
#include "tensorflow/core/framework/shape_inference.h"
#include "tfkit/op_utils.h"

namespace tfkit {
namespace {

using ::tensorflow::shape_inference::InferenceContext;
using ::tensorflow::shape_inference::ShapeHandle;
using ::tfkit::kernels::Dims;
namespace interaction = ::tfkit::kernels::interaction;

// features [batch, features, dim] give *pairs [batch, pairs] (the family's
// shape rule, with the op's self_interaction).
absl::Status PairsShape(InferenceContext* c, ShapeHandle* pairs) {
  interaction::InteractionShape shape;
  TF_RETURN_IF_ERROR(c->GetAttr("self_interaction", &shape.self_interaction));
  Dims output;
  TF_RETURN_IF_ERROR(RuleStatus(
      interaction::InteractionShapeError(DimsOf(c, WithKnownRank(c, c->input(0), 3)), &shape, &output)));
  *pairs = ShapeOfDims(c, output);
  return absl::OkStatus();
}

absl::Status DotInteractionShapeFn(InferenceContext* c) {
  ShapeHandle pairs;
  TF_RETURN_IF_ERROR(PairsShape(c, &pairs));
  c->set_output(0, pairs);
  return absl::OkStatus();
}

absl::Status DotInteractionGradShapeFn(InferenceContext* c) {
  ShapeHandle pairs;
  TF_RETURN_IF_ERROR(PairsShape(c, &pairs));
  TF_RETURN_IF_ERROR(CheckShape(c, "grad_output", c->input(1), pairs));
  c->set_output(0, c->input(0));
  return absl::OkStatus();
}

}  // namespace

REGISTER_OP("Tfkit>DotInteraction")
    .Input("features: T")
    .Output("output: T")
    .Attr("self_interaction: bool = false")
    .Attr(kFloatTypesAttr)
    .SetShapeFn(DotInteractionShapeFn)
    .Doc(R"doc(
The dot products features[b, i] . features[b, j] of the pairs j < i (j <= i
when self_interaction) of features [batch, features, dim], in the row-major
order of the lower triangle: (1,0), (2,0), (2,1), (3,0), ...
)doc");

REGISTER_OP("Tfkit>DotInteractionGrad")
    .Input("features: T")
    .Input("grad_output: T")
    .Output("grad_features: T")
    .Attr("self_interaction: bool = false")
    .Attr(kFloatTypesAttr)
    .SetShapeFn(DotInteractionGradShapeFn);

}  // namespace tfkit
