// The kernels' Python module: one Bind function per family (a new family
// adds its file and one line in module.cc).
#ifndef TFKIT_KERNELS_PYTHON_BINDINGS_H_
#define TFKIT_KERNELS_PYTHON_BINDINGS_H_

#include <pybind11/pybind11.h>

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "kernels/activation/activation_rules.h"
#include "kernels/attention/attention_args.h"
#include "kernels/attention/attention_rules.h"
#include "kernels/deform_conv/deform_conv_rules.h"
#include "kernels/embedding/embedding_rules.h"
#include "kernels/interaction/interaction_rules.h"
#include "kernels/norm/norm_rules.h"
#include "kernels/resampling/resampling_rules.h"
#include "kernels/rotary/rotary_rules.h"

namespace tfkit {
namespace kernels {
namespace python {

void BindNorm(pybind11::module_& m);
void BindActivation(pybind11::module_& m);
void BindRotary(pybind11::module_& m);
void BindResampling(pybind11::module_& m);
void BindEmbedding(pybind11::module_& m);
void BindAttention(pybind11::module_& m);
void BindDeformConv(pybind11::module_& m);
void BindInteraction(pybind11::module_& m);

// The CUDA launchers, in the submodule `cuda` (built where nvcc is found).
void BindNormCuda(pybind11::module_& cuda);
void BindActivationCuda(pybind11::module_& cuda);
void BindRotaryCuda(pybind11::module_& cuda);
void BindResamplingCuda(pybind11::module_& cuda);
void BindEmbeddingCuda(pybind11::module_& cuda);
void BindAttentionCuda(pybind11::module_& cuda);
void BindDeformConvCuda(pybind11::module_& cuda);
void BindInteractionCuda(pybind11::module_& cuda);

// A family rule's verdict (kernels/common/rules.h): ValueError with its message.
inline void RaiseIfBroken(const std::string& error) {
  if (!error.empty()) throw pybind11::value_error(error);
}

// An attr's allowed names (kernels/common/rules.h) as a Python tuple.
template <size_t N>
pybind11::tuple NameTuple(Names<N> names) {
  pybind11::list list;
  for (const char* name : names) list.append(name);
  return pybind11::tuple(list);
}

// epsilon as the ops' float32 attr holds it; ValueError where the norm
// family's rule refuses it.
inline float CheckedEpsilon(double epsilon) {
  const float rounded = static_cast<float>(epsilon);
  RaiseIfBroken(norm::EpsilonError(rounded));
  return rounded;
}

// The activation named `name`; ValueError listing the names otherwise.
inline activation::Activation ActivationNamed(const std::string& name) {
  activation::Activation act;
  RaiseIfBroken(activation::ActivationNamed(name, &act));
  return act;
}

// The gated ops' output shape for x's; ValueError for an odd last dimension.
inline std::vector<int64_t> GatedShapeOf(const std::vector<int64_t>& x) {
  std::vector<int64_t> y;
  RaiseIfBroken(activation::GatedShapeError(x, &y));
  return y;
}

// The resampler's shape from data's and warp's, with the boundary named
// "zeros" or "clamp"; ValueError naming what is wrong otherwise.
inline resampling::ResamplerShape ResamplerShapeOf(const std::vector<int64_t>& data, const std::vector<int64_t>& warp,
                                                   const std::string& boundary) {
  resampling::ResamplerShape shape;
  std::vector<int64_t> samples;
  RaiseIfBroken(resampling::BoundaryNamed(boundary, &shape.boundary));
  RaiseIfBroken(resampling::ResamplerShapeError(data, warp, &shape, &samples));
  return shape;
}

// The samples' shape: warp's with its last dimension replaced by data's channels.
inline std::vector<int64_t> SamplesOf(const std::vector<int64_t>& data, const std::vector<int64_t>& warp) {
  resampling::ResamplerShape shape;
  std::vector<int64_t> samples;
  RaiseIfBroken(resampling::ResamplerShapeError(data, warp, &shape, &samples));
  return samples;
}

// The rotary shape of x's, positions' and inv_freq's shapes; ValueError
// naming what is wrong otherwise.
inline rotary::RotaryShape RotaryShapeOf(const char* x_name, const std::vector<int64_t>& x,
                                         const std::vector<int64_t>& positions,
                                         const std::vector<int64_t>& inv_freq) {
  rotary::RotaryShape shape;
  RaiseIfBroken(rotary::RotaryShapeError(x_name, x, positions, inv_freq, &shape));
  return shape;
}

// The interaction shape of features' shape; ValueError naming what is wrong.
inline interaction::InteractionShape InteractionShapeOf(const std::vector<int64_t>& features, bool self_interaction) {
  interaction::InteractionShape shape;
  shape.self_interaction = self_interaction;
  std::vector<int64_t> output;
  RaiseIfBroken(interaction::InteractionShapeError(features, &shape, &output));
  return shape;
}

// The combiner named `name`; ValueError listing the names otherwise.
inline embedding::Combiner CombinerNamed(const std::string& name) {
  embedding::Combiner combiner;
  RaiseIfBroken(embedding::CombinerNamed(name, &combiner));
  return combiner;
}

// The attention shape of query's, key's and value's shapes and, where given
// (non-empty), the bias's and mask's; ValueError naming what is wrong.
inline attention::AttentionShape AttentionShapeOf(const std::vector<int64_t>& query, const std::vector<int64_t>& key,
                                                  const std::vector<int64_t>& value, const std::vector<int64_t>* bias,
                                                  const std::vector<int64_t>* mask) {
  attention::AttentionShape shape;
  RaiseIfBroken(attention::AttentionShapeError(query, key, value, &shape));
  if (bias != nullptr) {
    RaiseIfBroken(attention::BroadcastError("bias", *bias, shape.logits()));
    attention::SetBroadcast(*bias, shape.bias);
  }
  if (mask != nullptr) {
    RaiseIfBroken(attention::BroadcastError("mask", *mask, shape.logits()));
    attention::SetBroadcast(*mask, shape.mask);
  }
  return shape;
}

// One attention call's inputs from its checked shape, its arrays (bias and
// mask null where absent) and its attrs as the ops hold them: scale (None:
// Keras's default) and dropout_rate rounded to float32 and checked.
template <typename T>
attention::AttentionInputs<T> AttentionInputsOf(const attention::AttentionShape& shape, const T* query, const T* key,
                                                const T* value, const T* bias, const bool* mask,
                                                const pybind11::object& scale, bool is_causal, double dropout_rate,
                                                std::pair<int64_t, int64_t> seed) {
  const float rounded_scale = scale.is_none() ? 0.0f : static_cast<float>(scale.cast<double>());
  RaiseIfBroken(attention::ScaleError(rounded_scale));
  const float rounded_rate = static_cast<float>(dropout_rate);
  RaiseIfBroken(attention::DropoutRateError(rounded_rate));
  attention::AttentionInputs<T> in;
  in.shape = shape;
  in.query = query;
  in.key = key;
  in.value = value;
  in.bias = bias;
  in.mask = mask;
  in.causal = is_causal;
  in.scale = attention::ScaleOf(scale.is_none(), rounded_scale, shape.head_dim);
  in.dropout_rate = rounded_rate;
  in.seed[0] = seed.first;
  in.seed[1] = seed.second;
  return in;
}

// The deformable convolution's shape from its inputs' shapes and attrs
// (padding "valid" or "same"); *output is the result's shape. ValueError
// naming what is wrong otherwise.
inline deform_conv::DeformConvShape DeformConvShapeOf(const std::vector<int64_t>& x,
                                                      const std::vector<int64_t>& offsets,
                                                      const std::vector<int64_t>& mask,
                                                      const std::vector<int64_t>& kernel,
                                                      const std::vector<int64_t>& strides, const std::string& padding,
                                                      const std::vector<int64_t>& dilations, int64_t groups,
                                                      int64_t offset_groups, std::vector<int64_t>* output) {
  deform_conv::DeformConvAttrs attrs;
  attrs.strides = strides;
  attrs.dilations = dilations;
  attrs.groups = groups;
  attrs.offset_groups = offset_groups;
  RaiseIfBroken(deform_conv::PaddingNamed(padding, &attrs.padding));
  deform_conv::DeformConvShape shape;
  RaiseIfBroken(deform_conv::DeformConvShapeError(x, offsets, mask, kernel, attrs, &shape, output));
  return shape;
}

// A parallel_for (kernels/common/accumulate.h) that runs everything on the
// calling thread: the fixed row blocks give the op library's results.
inline auto Serially() {
  return [](int64_t n, int64_t, auto&& fn) { fn(0, n); };
}

}  // namespace python
}  // namespace kernels
}  // namespace tfkit

#endif  // TFKIT_KERNELS_PYTHON_BINDINGS_H_
