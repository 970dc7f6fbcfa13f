// Op registrations for the deformable convolution family (DCNv2, NHWC) and
// its gradient.
#include <string>
#include <vector>

#include "kernels/deform_conv/deform_conv_rules.h"
#include "tensorflow/core/framework/op.h"
#include "tensorflow/core/framework/shape_inference.h"
#include "tfkit/op_utils.h"

namespace tfkit {
namespace {

using ::tensorflow::shape_inference::InferenceContext;
using ::tensorflow::shape_inference::ShapeHandle;
using ::tfkit::kernels::Dims;
namespace deform_conv = ::tfkit::kernels::deform_conv;

absl::Status AttrsOf(InferenceContext* c, deform_conv::DeformConvAttrs* attrs) {
  std::string padding;
  attrs->strides.clear();  // GetAttr appends to a list
  attrs->dilations.clear();
  TF_RETURN_IF_ERROR(c->GetAttr("strides", &attrs->strides));
  TF_RETURN_IF_ERROR(c->GetAttr("dilations", &attrs->dilations));
  TF_RETURN_IF_ERROR(c->GetAttr("groups", &attrs->groups));
  TF_RETURN_IF_ERROR(c->GetAttr("offset_groups", &attrs->offset_groups));
  TF_RETURN_IF_ERROR(c->GetAttr("padding", &padding));
  return RuleStatus(deform_conv::PaddingNamed(padding, &attrs->padding));
}

// x, offsets, mask, kernel: the family's shape rule; *output its result.
absl::Status OutputShape(InferenceContext* c, ShapeHandle* output) {
  deform_conv::DeformConvAttrs attrs;
  TF_RETURN_IF_ERROR(AttrsOf(c, &attrs));
  Dims inputs[4];
  for (int i = 0; i < 4; ++i) inputs[i] = DimsOf(c, WithKnownRank(c, c->input(i), 4));
  deform_conv::DeformConvShape shape;
  Dims output_dims;
  TF_RETURN_IF_ERROR(RuleStatus(
      deform_conv::DeformConvShapeError(inputs[0], inputs[1], inputs[2], inputs[3], attrs, &shape, &output_dims)));
  *output = ShapeOfDims(c, output_dims);
  return absl::OkStatus();
}

absl::Status DeformConvShapeFn(InferenceContext* c) {
  ShapeHandle output;
  TF_RETURN_IF_ERROR(OutputShape(c, &output));
  c->set_output(0, output);
  return absl::OkStatus();
}

absl::Status DeformConvGradShapeFn(InferenceContext* c) {
  ShapeHandle output;
  TF_RETURN_IF_ERROR(OutputShape(c, &output));
  TF_RETURN_IF_ERROR(CheckShape(c, "grad_output", c->input(4), output));
  for (int i = 0; i < 4; ++i) c->set_output(i, c->input(i));
  return absl::OkStatus();
}

}  // namespace

#define TFKIT_DEFORM_CONV_ATTRS                        \
  Attr("strides: list(int) = [1, 1]")                  \
      .Attr("dilations: list(int) = [1, 1]")           \
      .Attr(deform_conv::PaddingAttrSpec())            \
      .Attr("groups: int = 1")                         \
      .Attr("offset_groups: int = 1")                  \
      .Attr(kFloatTypesAttr)

REGISTER_OP("Tfkit>DeformConv2D")
    .Input("x: T")
    .Input("offsets: T")
    .Input("mask: T")
    .Input("kernel: T")
    .Output("output: T")
    .TFKIT_DEFORM_CONV_ATTRS
    .SetShapeFn(DeformConvShapeFn)
    .Doc(R"doc(
Deformable convolution v2 (NHWC): x [batch, height, width, channels] sampled
bilinearly at each kernel tap moved by offsets (dy, dx), times mask, and
convolved with kernel [kh, kw, channels / groups, filters].
)doc");

REGISTER_OP("Tfkit>DeformConv2DGrad")
    .Input("x: T")
    .Input("offsets: T")
    .Input("mask: T")
    .Input("kernel: T")
    .Input("grad_output: T")
    .Output("grad_x: T")
    .Output("grad_offsets: T")
    .Output("grad_mask: T")
    .Output("grad_kernel: T")
    .TFKIT_DEFORM_CONV_ATTRS
    .SetShapeFn(DeformConvGradShapeFn);

#undef TFKIT_DEFORM_CONV_ATTRS

}  // namespace tfkit
