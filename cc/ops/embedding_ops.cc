// Op registrations for the embedding family: embedding bags over flat ids
// and row splits, and the gradient for the per-id rows and the weights.
#include "kernels/embedding/embedding_rules.h"
#include "tensorflow/core/framework/op.h"
#include "tensorflow/core/framework/shape_inference.h"
#include "tfkit/op_utils.h"

namespace tfkit {
namespace {

using ::tensorflow::shape_inference::DimensionHandle;
using ::tensorflow::shape_inference::InferenceContext;
using ::tensorflow::shape_inference::ShapeHandle;
namespace embedding = ::tfkit::kernels::embedding;

// params' shape: the input's, or a resource variable's where it is known
// (the input is then the variable's handle, a scalar).
absl::Status TableShape(InferenceContext* c, bool resource, ShapeHandle* table) {
  *table = c->input(2);
  if (!resource) return absl::OkStatus();
  if (c->RankKnown(c->input(2))) {
    TF_RETURN_IF_ERROR(RuleStatus(embedding::HandleShapeError(DimsOf(c, c->input(2)))));
  }
  const auto* handle = c->input_handle_shapes_and_types(2);
  *table = handle == nullptr || handle->empty() ? c->UnknownShapeOfRank(2) : (*handle)[0].shape;
  return absl::OkStatus();
}

// ids [n], row_splits [bags + 1], params [vocab, dim], weights [n] or [0]:
// embedding::BagShapeError's rule.
absl::Status CheckInputs(InferenceContext* c, bool resource, ShapeHandle* params, DimensionHandle* bags) {
  TF_RETURN_IF_ERROR(TableShape(c, resource, params));
  *params = WithKnownRank(c, *params, 2);
  embedding::BagShape shape;
  TF_RETURN_IF_ERROR(RuleStatus(embedding::BagShapeError(
      DimsOf(c, WithKnownRank(c, c->input(0), 1)), DimsOf(c, WithKnownRank(c, c->input(1), 1)), DimsOf(c, *params),
      DimsOf(c, WithKnownRank(c, c->input(3), 1)), &shape)));
  *bags = c->MakeDim(shape.bags);
  return absl::OkStatus();
}

template <bool kResource>
absl::Status EmbeddingBagShape(InferenceContext* c) {
  ShapeHandle params;
  DimensionHandle bags;
  TF_RETURN_IF_ERROR(CheckInputs(c, kResource, &params, &bags));
  c->set_output(0, c->Matrix(bags, c->Dim(params, 1)));
  return absl::OkStatus();
}

template <bool kResource>
absl::Status EmbeddingBagGradShape(InferenceContext* c) {
  ShapeHandle params;
  DimensionHandle bags;
  TF_RETURN_IF_ERROR(CheckInputs(c, kResource, &params, &bags));
  TF_RETURN_IF_ERROR(CheckShape(c, "dy", c->input(4), c->Matrix(bags, c->Dim(params, 1))));
  c->set_output(0, c->Matrix(c->Dim(c->input(0), 0), c->Dim(params, 1)));
  c->set_output(1, c->input(3));
  return absl::OkStatus();
}

}  // namespace

REGISTER_OP("Tfkit>EmbeddingBag")
    .Input("ids: Tindices")
    .Input("row_splits: int64")
    .Input("params: T")
    .Input("weights: T")
    .Output("y: T")
    .Attr(embedding::CombinerAttrSpec())
    .Attr(kFloatTypesAttr)
    .Attr("Tindices: {int32, int64}")
    .SetShapeFn(EmbeddingBagShape<false>)
    .Doc(R"doc(
Bag b of the flat ids ids[row_splits[b] .. row_splits[b + 1]) combined into
one row: the sum of weights[i] * params[ids[i]], divided by the bag's length
("mean") or by the square root of the sum of the squared weights ("sqrtn").
weights is [n], or [0] for weights of 1. An empty bag gives zeros.
)doc");

REGISTER_OP("Tfkit>EmbeddingBagGrad")
    .Input("ids: Tindices")
    .Input("row_splits: int64")
    .Input("params: T")
    .Input("weights: T")
    .Input("dy: T")
    .Output("d_values: T")
    .Output("d_weights: T")
    .Attr(embedding::CombinerAttrSpec())
    .Attr(kFloatTypesAttr)
    .Attr("Tindices: {int32, int64}")
    .SetShapeFn(EmbeddingBagGradShape<false>)
    .Doc(R"doc(
The gradients of EmbeddingBag: d_values [n, dim] holds one params row per
flat id (the values of an IndexedSlices at ids), d_weights has the shape of
weights.
)doc");

// The same two ops on a resource variable's table, read in place (a large
// table is never copied, whatever mode sparse updates left the variable in).
REGISTER_OP("Tfkit>ResourceEmbeddingBag")
    .Input("ids: Tindices")
    .Input("row_splits: int64")
    .Input("params: resource")
    .Input("weights: T")
    .Output("y: T")
    .Attr(embedding::CombinerAttrSpec())
    .Attr(kFloatTypesAttr)
    .Attr("Tindices: {int32, int64}")
    .SetShapeFn(EmbeddingBagShape<true>);

REGISTER_OP("Tfkit>ResourceEmbeddingBagGrad")
    .Input("ids: Tindices")
    .Input("row_splits: int64")
    .Input("params: resource")
    .Input("weights: T")
    .Input("dy: T")
    .Output("d_values: T")
    .Output("d_weights: T")
    .Attr(embedding::CombinerAttrSpec())
    .Attr(kFloatTypesAttr)
    .Attr("Tindices: {int32, int64}")
    .SetShapeFn(EmbeddingBagGradShape<true>);

}  // namespace tfkit
