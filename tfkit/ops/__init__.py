"""tfkit ops: documented wrappers over the compiled kernels, with references."""

from tfkit.ops.activation import (
    bias_activation,
    bias_activation_reference,
    gated_activation,
    gated_activation_reference,
)
from tfkit.ops.attention import dot_product_attention, dot_product_attention_reference
from tfkit.ops.deform_conv import deform_conv2d, deform_conv2d_reference
from tfkit.ops.embedding import embedding_bag, embedding_bag_reference
from tfkit.ops.interaction import dot_interaction, dot_interaction_reference
from tfkit.ops.norm import layer_norm, layer_norm_reference, rms_norm, rms_norm_reference
from tfkit.ops.resampling import (
    dense_image_warp,
    dense_image_warp_reference,
    resampler,
    resampler_reference,
)
from tfkit.ops.rotary import rotary_embedding, rotary_embedding_reference

__all__ = [
    "bias_activation",
    "bias_activation_reference",
    "deform_conv2d",
    "deform_conv2d_reference",
    "dense_image_warp",
    "dense_image_warp_reference",
    "dot_interaction",
    "dot_interaction_reference",
    "dot_product_attention",
    "dot_product_attention_reference",
    "embedding_bag",
    "embedding_bag_reference",
    "gated_activation",
    "gated_activation_reference",
    "layer_norm",
    "layer_norm_reference",
    "resampler",
    "resampler_reference",
    "rms_norm",
    "rms_norm_reference",
    "rotary_embedding",
    "rotary_embedding_reference",
]
