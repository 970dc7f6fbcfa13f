// Op registrations for the activation family: fused bias + activation and
// gated activations (SwiGLU, GeGLU), each with one grad op.
#include "kernels/activation/activation_rules.h"
#include "tensorflow/core/framework/op.h"
#include "tensorflow/core/framework/shape_inference.h"
#include "tfkit/op_utils.h"

namespace tfkit {
namespace {

using ::tensorflow::shape_inference::DimensionHandle;
using ::tensorflow::shape_inference::InferenceContext;
using ::tensorflow::shape_inference::ShapeHandle;
using ::tfkit::kernels::Dims;
namespace activation = ::tfkit::kernels::activation;

// x: rank >= 1; bias: [last dim of x] (the OpKernels' checks). Sets *y to
// x's shape refined by bias's.
absl::Status BiasShape(InferenceContext* c, int x_index, int bias_index, ShapeHandle* y) {
  const ShapeHandle x = c->input(x_index);
  const ShapeHandle bias = c->input(bias_index);
  TF_RETURN_IF_ERROR(CheckRankAtLeast1(c, "x", x));
  TF_RETURN_IF_ERROR(CheckLastDimParam(c, "bias", bias, x));
  *y = x;
  if (!c->RankKnown(x) || !c->RankKnown(bias)) return absl::OkStatus();
  DimensionHandle last = c->Dim(x, -1);
  TF_RETURN_IF_ERROR(c->Merge(last, c->Dim(bias, 0), &last));
  ShapeHandle leading;
  TF_RETURN_IF_ERROR(c->Subshape(x, 0, -1, &leading));
  return c->Concatenate(leading, c->Vector(last), y);
}

// x: rank >= 1 with an even last dimension 2h; *y: x's shape with h last.
absl::Status GatedShape(InferenceContext* c, ShapeHandle x, ShapeHandle* y) {
  *y = c->UnknownShape();
  if (!c->RankKnown(x)) return absl::OkStatus();
  Dims y_dims;
  TF_RETURN_IF_ERROR(RuleStatus(activation::GatedShapeError(DimsOf(c, x), &y_dims)));
  *y = ShapeOfDims(c, y_dims);
  return absl::OkStatus();
}

}  // namespace

REGISTER_OP("Tfkit>BiasActivation")
    .Input("x: T")
    .Input("bias: T")
    .Output("y: T")
    .Attr(activation::ActivationAttrSpec("gelu"))
    .Attr(kFloatTypesAttr)
    .SetShapeFn([](InferenceContext* c) {
      ShapeHandle y;
      TF_RETURN_IF_ERROR(BiasShape(c, 0, 1, &y));
      c->set_output(0, y);
      return absl::OkStatus();
    })
    .Doc(R"doc(
y = activation(x + bias), bias along the last axis of x.
)doc");

REGISTER_OP("Tfkit>BiasActivationGrad")
    .Input("dy: T")
    .Input("x: T")
    .Input("bias: T")
    .Output("dx: T")
    .Output("dbias: T")
    .Attr(activation::ActivationAttrSpec("gelu"))
    .Attr(kFloatTypesAttr)
    .SetShapeFn([](InferenceContext* c) {
      ShapeHandle x;
      TF_RETURN_IF_ERROR(BiasShape(c, 1, 2, &x));
      TF_RETURN_IF_ERROR(CheckSameShape(c, "dy", c->input(0), "x", c->input(1)));
      TF_RETURN_IF_ERROR(c->Merge(x, c->input(0), &x));
      c->set_output(0, x);
      c->set_output(1, c->input(2));
      return absl::OkStatus();
    });

REGISTER_OP("Tfkit>GatedActivation")
    .Input("x: T")
    .Output("y: T")
    .Attr(activation::ActivationAttrSpec("silu"))
    .Attr(kFloatTypesAttr)
    .SetShapeFn([](InferenceContext* c) {
      ShapeHandle y;
      TF_RETURN_IF_ERROR(GatedShape(c, c->input(0), &y));
      c->set_output(0, y);
      return absl::OkStatus();
    })
    .Doc(R"doc(
y = activation(a) * b, where x = [a, b] is split in halves along its last axis.
)doc");

REGISTER_OP("Tfkit>GatedActivationGrad")
    .Input("dy: T")
    .Input("x: T")
    .Output("dx: T")
    .Attr(activation::ActivationAttrSpec("silu"))
    .Attr(kFloatTypesAttr)
    .SetShapeFn([](InferenceContext* c) {
      ShapeHandle y;
      TF_RETURN_IF_ERROR(GatedShape(c, c->input(1), &y));
      if (c->RankKnown(c->input(0)) && c->RankKnown(c->input(1))) {
        TF_RETURN_IF_ERROR(
            RuleStatus(activation::GatedGradShapeError(DimsOf(c, c->input(0)), DimsOf(c, c->input(1)))));
      }
      c->set_output(0, c->input(1));
      return absl::OkStatus();
    });

}  // namespace tfkit
