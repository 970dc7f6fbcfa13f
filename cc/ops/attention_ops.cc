// Op registrations for the attention family: fused dot-product attention
// (Keras's layout and semantics) and its grad op, which recomputes the
// probabilities from the forward's per-row log-sum-exp.
#include "kernels/attention/attention_rules.h"
#include "tensorflow/core/framework/op.h"
#include "tensorflow/core/framework/shape_inference.h"
#include "tfkit/op_utils.h"

namespace tfkit {
namespace {

namespace rules = ::tfkit::kernels::attention;
using ::tensorflow::shape_inference::InferenceContext;
using ::tensorflow::shape_inference::ShapeHandle;

// The input indices of query, key, value, bias, mask, seed: from `first`.
constexpr int kQuery = 0, kKey = 1, kValue = 2, kBias = 3, kMask = 4, kSeed = 5;

kernels::Dims Rank4Dims(InferenceContext* c, int index) { return DimsOf(c, WithKnownRank(c, c->input(index), 4)); }

// The attrs' rules and the inputs' shapes (the OpKernels' checks); fills
// *shape.
absl::Status AttentionInputShapes(InferenceContext* c, int first, rules::AttentionShape* shape) {
  TF_RETURN_IF_ERROR(CheckAccumulationType(c, "lse (attr U)", "query"));
  float scale, dropout_rate;
  bool has_bias, has_mask;
  TF_RETURN_IF_ERROR(c->GetAttr("scale", &scale));
  TF_RETURN_IF_ERROR(c->GetAttr("dropout_rate", &dropout_rate));
  TF_RETURN_IF_ERROR(c->GetAttr("has_bias", &has_bias));
  TF_RETURN_IF_ERROR(c->GetAttr("has_mask", &has_mask));
  TF_RETURN_IF_ERROR(RuleStatus(rules::ScaleError(scale)));
  TF_RETURN_IF_ERROR(RuleStatus(rules::DropoutRateError(dropout_rate)));
  const ShapeHandle key = c->input(first + kKey), value = c->input(first + kValue);
  if (c->RankKnown(value) && c->RankKnown(key)) {
    TF_RETURN_IF_ERROR(CheckSameShape(c, "value", value, "key", key));
  }
  const kernels::Dims key_dims = Rank4Dims(c, first + (c->RankKnown(key) ? kKey : kValue));
  TF_RETURN_IF_ERROR(RuleStatus(
      rules::AttentionShapeError(Rank4Dims(c, first + kQuery), key_dims, key_dims, shape)));
  if (has_bias && c->RankKnown(c->input(first + kBias))) {
    TF_RETURN_IF_ERROR(RuleStatus(rules::BroadcastError("bias", DimsOf(c, c->input(first + kBias)), shape->logits())));
  }
  if (has_mask && c->RankKnown(c->input(first + kMask))) {
    TF_RETURN_IF_ERROR(RuleStatus(rules::BroadcastError("mask", DimsOf(c, c->input(first + kMask)), shape->logits())));
  }
  return CheckShape(c, "seed", c->input(first + kSeed), c->Vector(2));
}

ShapeHandle OutputShape(InferenceContext* c, const rules::AttentionShape& s) {
  return ShapeOfDims(c, {s.batch, s.target, s.heads, s.head_dim});
}

ShapeHandle LseShape(InferenceContext* c, const rules::AttentionShape& s) {
  return ShapeOfDims(c, {s.batch, s.heads, s.target});
}

absl::Status AttentionShapeFn(InferenceContext* c) {
  rules::AttentionShape shape;
  TF_RETURN_IF_ERROR(AttentionInputShapes(c, 0, &shape));
  c->set_output(0, OutputShape(c, shape));
  c->set_output(1, LseShape(c, shape));
  return absl::OkStatus();
}

// dout, output: query's shape; lse: [B, N, T]. Outputs: the gradients of
// query, key, value and bias (shape [0] without a bias).
absl::Status AttentionGradShapeFn(InferenceContext* c) {
  rules::AttentionShape shape;
  TF_RETURN_IF_ERROR(AttentionInputShapes(c, 1, &shape));
  const ShapeHandle output = OutputShape(c, shape);
  TF_RETURN_IF_ERROR(CheckShape(c, "dout", c->input(0), output));
  TF_RETURN_IF_ERROR(CheckShape(c, "output", c->input(7), output));
  TF_RETURN_IF_ERROR(CheckShape(c, "lse", c->input(8), LseShape(c, shape)));
  bool has_bias;
  TF_RETURN_IF_ERROR(c->GetAttr("has_bias", &has_bias));
  const kernels::Dims kv = {shape.batch, shape.source, shape.kv_heads, shape.head_dim};
  c->set_output(0, output);
  c->set_output(1, ShapeOfDims(c, kv));
  c->set_output(2, ShapeOfDims(c, kv));
  c->set_output(3, has_bias ? c->input(1 + kBias) : c->Vector(0));
  return absl::OkStatus();
}

}  // namespace

REGISTER_OP("Tfkit>DotProductAttention")
    .Input("query: T")
    .Input("key: T")
    .Input("value: T")
    .Input("bias: T")
    .Input("mask: bool")
    .Input("seed: int64")
    .Output("output: T")
    .Output("lse: U")
    .Attr("scale: float = 1.0")
    .Attr("default_scale: bool = false")
    .Attr("is_causal: bool = false")
    .Attr("dropout_rate: float = 0.0")
    .Attr("has_bias: bool = false")
    .Attr("has_mask: bool = false")
    .Attr(kFloatTypesAttr)
    .Attr("U: {float, double}")
    .SetShapeFn(AttentionShapeFn)
    .Doc(R"doc(
Dot-product attention, fused: softmax(query . key * scale + bias, masked)
. value over the keys, in Keras's layout: query [B, T, N, H], key and value
[B, S, K, H], N a multiple of K. scale is 1 / sqrt(H) where default_scale.
bias (has_bias) and mask (has_mask, True attends) are rank 4, broadcast to
[B, N, T, S]; is_causal masks key s for query t < s; dropout_rate drops
probabilities by a hash of seed and (b, n, t, s). lse is each row's
log-sum-exp of the logits, in U; it carries no gradient.
)doc");

REGISTER_OP("Tfkit>DotProductAttentionGrad")
    .Input("dout: T")
    .Input("query: T")
    .Input("key: T")
    .Input("value: T")
    .Input("bias: T")
    .Input("mask: bool")
    .Input("seed: int64")
    .Input("output: T")
    .Input("lse: U")
    .Output("dquery: T")
    .Output("dkey: T")
    .Output("dvalue: T")
    .Output("dbias: T")
    .Attr("scale: float = 1.0")
    .Attr("default_scale: bool = false")
    .Attr("is_causal: bool = false")
    .Attr("dropout_rate: float = 0.0")
    .Attr("has_bias: bool = false")
    .Attr("has_mask: bool = false")
    .Attr(kFloatTypesAttr)
    .Attr("U: {float, double}")
    .SetShapeFn(AttentionGradShapeFn);

}  // namespace tfkit
