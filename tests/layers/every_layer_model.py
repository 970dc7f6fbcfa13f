"""A small Keras model holding every tfkit layer; a new family adds its layers here."""

import keras
import numpy as np

import tfkit


def build_model(seed: int = 0) -> keras.Model:
    keras.utils.set_random_seed(seed)
    inputs = keras.Input([16])
    h = keras.layers.Dense(32)(inputs)
    h = tfkit.layers.LayerNorm()(h)
    h = keras.layers.Activation("relu")(h)
    h = tfkit.layers.Dense(32, activation="gelu")(h)
    h = tfkit.layers.RMSNorm()(h)
    h = tfkit.layers.GatedDense(16)(h)
    h = keras.layers.Reshape((4, 4))(h)
    h = tfkit.layers.RotaryEmbedding()(h)
    h = tfkit.layers.MultiHeadAttention(2, 4)(h, h, use_causal_mask=True)
    image = keras.layers.Reshape((4, 4, 1))(h)
    deformable = tfkit.layers.DeformableConv2D(2, 3, padding="same")
    image = deformable(image)
    # Offsets of half a pixel: taps off the pixel grid, where bilinear
    # sampling has kinks (so XLA's and the kernels' last bits would pick
    # different one-sided slopes).
    deformable.offset_conv.bias.assign(np.concatenate([np.full(18, 0.5), np.zeros(9)]))
    flow = keras.layers.Dense(2)(image)
    h = tfkit.layers.DenseImageWarp()([image, flow])
    h = keras.layers.Flatten()(h)
    ids = keras.layers.Discretization(bin_boundaries=[-1.0, -0.5, 0.0, 0.5, 1.0])(inputs)
    bags = tfkit.layers.EmbeddingBag(6, 8, combiner="mean")(ids)
    pairs = tfkit.layers.DotInteraction()([bags, keras.layers.Dense(8)(inputs), keras.layers.Dense(8)(h)])
    h = keras.layers.Concatenate()([h, bags, pairs])
    outputs = keras.layers.Dense(3)(h)
    return keras.Model(inputs, outputs)


def toy_data(n: int = 128):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, 16)).astype("float32")
    y = (x[:, :3] @ np.array([1.0, -2.0, 0.5]) > 0).astype("int32") + (x[:, 3] > 1).astype("int32")
    return x, y
