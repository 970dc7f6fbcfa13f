// Op registrations for the ${family} family: ${op} and its grad op.
#include "tensorflow/core/framework/op.h"
#include "tensorflow/core/framework/shape_inference.h"
#include "tfkit/op_utils.h"

namespace tfkit {
namespace {

using ::tensorflow::shape_inference::InferenceContext;

absl::Status LimitIsValid(InferenceContext* c) {
  float limit;
  TF_RETURN_IF_ERROR(c->GetAttr("limit", &limit));
  return CheckPositiveFinite("limit", limit);
}

}  // namespace

REGISTER_OP("${op}")
    .Input("x: T")
    .Output("y: T")
    .Attr("limit: float = 3.0")
    .Attr("T: {half, bfloat16, float, double}")
    .SetShapeFn([](InferenceContext* c) {
      TF_RETURN_IF_ERROR(LimitIsValid(c));
      c->set_output(0, c->input(0));
      return absl::OkStatus();
    })
    .Doc(R"doc(
y = x / (1 + |x| / limit), element-wise: a smooth clip to (-limit, limit).
)doc");

REGISTER_OP("${op}Grad")
    .Input("dy: T")
    .Input("y: T")
    .Output("dx: T")
    .Attr("limit: float = 3.0")
    .Attr("T: {half, bfloat16, float, double}")
    .SetShapeFn([](InferenceContext* c) {
      TF_RETURN_IF_ERROR(LimitIsValid(c));
      ::tensorflow::shape_inference::ShapeHandle merged;
      TF_RETURN_IF_ERROR(c->Merge(c->input(0), c->input(1), &merged));
      c->set_output(0, merged);
      return absl::OkStatus();
    });

}  // namespace tfkit
