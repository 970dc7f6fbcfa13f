// Op registrations for the resampling family: bilinear sampling of an image
// batch at given points, and its gradients.
#include "tensorflow/core/framework/op.h"
#include "tensorflow/core/framework/shape_inference.h"
#include "tfkit/op_utils.h"

namespace tfkit {
namespace {

using ::tensorflow::shape_inference::DimensionHandle;
using ::tensorflow::shape_inference::InferenceContext;
using ::tensorflow::shape_inference::ShapeHandle;

// data: [batch, height, width, channels]; warp: [batch, d1, ..., dn, 2].
// Sets *samples to [batch, d1, ..., dn, channels].
absl::Status SampleShape(InferenceContext* c, ShapeHandle* samples) {
  ShapeHandle data, warp, points;
  TF_RETURN_IF_ERROR(c->WithRank(c->input(0), 4, &data));
  TF_RETURN_IF_ERROR(c->WithRankAtLeast(c->input(1), 2, &warp));
  if (!c->RankKnown(warp)) {
    *samples = c->UnknownShape();
    return absl::OkStatus();
  }
  DimensionHandle pair, batch;
  if (!c->Merge(c->Dim(warp, -1), c->MakeDim(2), &pair).ok()) {
    return InvalidArg("warp's last dimension must be 2 (the x, y of each point), got ", c->Value(c->Dim(warp, -1)));
  }
  if (!c->Merge(c->Dim(warp, 0), c->Dim(data, 0), &batch).ok()) {
    return InvalidArg("warp's batch dimension (", c->Value(c->Dim(warp, 0)), ") must equal data's (",
                      c->Value(c->Dim(data, 0)), ")");
  }
  TF_RETURN_IF_ERROR(c->Subshape(warp, 0, -1, &points));
  TF_RETURN_IF_ERROR(c->ReplaceDim(points, 0, batch, &points));
  return c->Concatenate(points, c->Vector(c->Dim(data, 3)), samples);
}

absl::Status ResamplerShapeFn(InferenceContext* c) {
  ShapeHandle samples;
  TF_RETURN_IF_ERROR(SampleShape(c, &samples));
  c->set_output(0, samples);
  return absl::OkStatus();
}

absl::Status ResamplerGradShapeFn(InferenceContext* c) {
  ShapeHandle samples, grad;
  TF_RETURN_IF_ERROR(SampleShape(c, &samples));
  TF_RETURN_IF_ERROR(c->Merge(c->input(2), samples, &grad));
  c->set_output(0, c->input(0));
  c->set_output(1, c->input(1));
  return absl::OkStatus();
}

}  // namespace

REGISTER_OP("Tfkit>Resampler")
    .Input("data: T")
    .Input("warp: T")
    .Output("output: T")
    .Attr("boundary: {'zeros', 'clamp'} = 'zeros'")
    .Attr("T: {half, bfloat16, float, double}")
    .SetShapeFn(ResamplerShapeFn)
    .Doc(R"doc(
Bilinear samples of data [batch, height, width, channels] at the points
warp [batch, ..., 2], each (x, y) in pixels. boundary "zeros": neighbours
outside the image contribute zero; "clamp": points are clamped to the image.
)doc");

REGISTER_OP("Tfkit>ResamplerGrad")
    .Input("data: T")
    .Input("warp: T")
    .Input("grad_output: T")
    .Output("grad_data: T")
    .Output("grad_warp: T")
    .Attr("boundary: {'zeros', 'clamp'} = 'zeros'")
    .Attr("T: {half, bfloat16, float, double}")
    .SetShapeFn(ResamplerGradShapeFn);

}  // namespace tfkit
