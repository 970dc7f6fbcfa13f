// Op registrations for the rotary family: rotary position embedding and its
// gradient, the inverse rotation.
#include "kernels/rotary/rotary_rules.h"
#include "tensorflow/core/framework/op.h"
#include "tensorflow/core/framework/shape_inference.h"
#include "tfkit/op_utils.h"

namespace tfkit {
namespace {

using ::tensorflow::shape_inference::InferenceContext;
using ::tensorflow::shape_inference::ShapeHandle;
namespace rotary = ::tfkit::kernels::rotary;

// x (named `x_name`): [batch, seq, ..., dim] with an even dim; positions:
// [1 or batch, seq]; inv_freq: [dim / 2], positions and inv_freq of T's
// accumulation type (the family's rules). The output has x's shape.
absl::Status RotaryShape(InferenceContext* c, const char* x_name) {
  TF_RETURN_IF_ERROR(CheckAccumulationType(c, "positions and inv_freq", x_name));
  const ShapeHandle x = c->input(0);
  rotary::RotaryShape shape;
  TF_RETURN_IF_ERROR(RuleStatus(rotary::RotaryShapeError(
      x_name, DimsOf(c, WithKnownRank(c, x, 3)), DimsOf(c, WithKnownRank(c, c->input(1), 2)),
      DimsOf(c, WithKnownRank(c, c->input(2), 1)), &shape)));
  c->set_output(0, x);
  return absl::OkStatus();
}

}  // namespace

REGISTER_OP("Tfkit>RotaryEmbedding")
    .Input("x: T")
    .Input("positions: U")
    .Input("inv_freq: U")
    .Output("y: T")
    .Attr("interleaved: bool = false")
    .Attr(kFloatTypesAttr)
    .Attr("U: {float, double}")
    .SetShapeFn([](InferenceContext* c) { return RotaryShape(c, "x"); })
    .Doc(R"doc(
Rotates each pair of features of x by positions[s] * inv_freq[j]: the pairs
(j, j + dim/2), or (2j, 2j + 1) when interleaved. x is [batch, seq, ..., dim],
positions [1 or batch, seq].
)doc");

REGISTER_OP("Tfkit>RotaryEmbeddingGrad")
    .Input("dy: T")
    .Input("positions: U")
    .Input("inv_freq: U")
    .Output("dx: T")
    .Attr("interleaved: bool = false")
    .Attr(kFloatTypesAttr)
    .Attr("U: {float, double}")
    .SetShapeFn([](InferenceContext* c) { return RotaryShape(c, "dy"); });

}  // namespace tfkit
