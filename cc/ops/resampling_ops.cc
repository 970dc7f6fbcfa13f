// Op registrations for the resampling family: bilinear sampling of an image
// batch at given points, and its gradients.
#include "kernels/resampling/resampling_rules.h"
#include "tensorflow/core/framework/op.h"
#include "tensorflow/core/framework/shape_inference.h"
#include "tfkit/op_utils.h"

namespace tfkit {
namespace {

using ::tensorflow::shape_inference::InferenceContext;
using ::tensorflow::shape_inference::ShapeHandle;
using ::tfkit::kernels::Dims;
namespace resampling = ::tfkit::kernels::resampling;

// data: [batch, height, width, channels]; warp: [batch, d1, ..., dn, 2].
// Sets *samples to [batch, d1, ..., dn, channels] (resampling's shape rule).
// Where warp's rank is unknown, only data is checked and *samples is unknown.
absl::Status SampleShape(InferenceContext* c, ShapeHandle* samples) {
  const ShapeHandle warp = c->input(1);
  resampling::ResamplerShape shape;
  Dims samples_dims;
  TF_RETURN_IF_ERROR(RuleStatus(resampling::ResamplerShapeError(
      DimsOf(c, WithKnownRank(c, c->input(0), 4)), DimsOf(c, WithKnownRank(c, warp, 2)), &shape, &samples_dims)));
  *samples = c->RankKnown(warp) ? ShapeOfDims(c, samples_dims) : c->UnknownShape();
  return absl::OkStatus();
}

absl::Status ResamplerShapeFn(InferenceContext* c) {
  ShapeHandle samples;
  TF_RETURN_IF_ERROR(SampleShape(c, &samples));
  c->set_output(0, samples);
  return absl::OkStatus();
}

absl::Status ResamplerGradShapeFn(InferenceContext* c) {
  ShapeHandle samples;
  TF_RETURN_IF_ERROR(SampleShape(c, &samples));
  TF_RETURN_IF_ERROR(CheckShape(c, "grad_output", c->input(2), samples));
  c->set_output(0, c->input(0));
  c->set_output(1, c->input(1));
  return absl::OkStatus();
}

}  // namespace

REGISTER_OP("Tfkit>Resampler")
    .Input("data: T")
    .Input("warp: T")
    .Output("output: T")
    .Attr(resampling::BoundaryAttrSpec())
    .Attr(kFloatTypesAttr)
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
    .Attr(resampling::BoundaryAttrSpec())
    .Attr(kFloatTypesAttr)
    .SetShapeFn(ResamplerGradShapeFn);

}  // namespace tfkit
