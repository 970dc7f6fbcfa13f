"""tfkit Keras 3 layers (registered serializable under the "tfkit" package)."""

from tfkit.layers.activation import Dense, GatedDense
from tfkit.layers.attention import MultiHeadAttention
from tfkit.layers.deform_conv import DeformableConv2D
from tfkit.layers.embedding import EmbeddingBag
from tfkit.layers.interaction import DotInteraction
from tfkit.layers.norm import LayerNorm, RMSNorm
from tfkit.layers.resampling import DenseImageWarp, Resampler, SpatialTransformer
from tfkit.layers.rotary import RotaryEmbedding

__all__ = [
    "DeformableConv2D",
    "Dense",
    "DenseImageWarp",
    "DotInteraction",
    "EmbeddingBag",
    "GatedDense",
    "LayerNorm",
    "MultiHeadAttention",
    "RMSNorm",
    "Resampler",
    "RotaryEmbedding",
    "SpatialTransformer",
]
