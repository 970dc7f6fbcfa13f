"""Keras 3 layers for the interaction family: DotInteraction (DLRM)."""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from tfkit import backend as tfkit_backend
from tfkit.ops import interaction as interaction_ops


@keras.saving.register_keras_serializable(package="tfkit")
class DotInteraction(keras.layers.Layer):
    """DLRM's dot interaction of a list of feature tensors, `layer([x0, ..., xF-1])`.

    The arguments and output of
    `tensorflow_recommenders.layers.feature_interaction.DotInteraction`: the
    F inputs `[batch, dim]` (one dim for all) are stacked to `[batch, F,
    dim]` and every pair's dot product is taken (`tfkit.ops.dot_interaction`).
    The output is `[batch, F (F - 1) / 2]` (`F (F + 1) / 2` with
    `self_interaction`), the pairs in the row-major order of the lower
    triangle, `(1,0), (2,0), (2,1), ...`; with `skip_gather` it is `[batch, F
    * F]`: the whole `[F, F]` interaction matrix, row-major, its upper
    triangle (and, without `self_interaction`, its diagonal) zero.

    Args:
      self_interaction: Also each feature's dot product with itself.
      skip_gather: Return the `[batch, F * F]` matrix with zeros instead of
        the gathered pairs.
      backend: tfkit backend ("compiled", "reference", "auto", None).
    """

    def __init__(self, self_interaction: bool = False, skip_gather: bool = False, backend: str | None = None, **kwargs):
        super().__init__(**kwargs)
        self.self_interaction = bool(self_interaction)
        self.skip_gather = bool(skip_gather)
        self.backend = backend
        self.supports_jit = tfkit_backend.supports_xla(backend)
        self.built = True

    def call(self, inputs):
        _check_shapes([x.shape for x in _feature_list(inputs)])
        features = tf.stack([tf.cast(x, self.compute_dtype) for x in inputs], axis=1)
        pairs = interaction_ops.dot_interaction(
            features, self_interaction=self.self_interaction, backend=self.backend
        )
        if not self.skip_gather:
            return pairs
        # Each position of the [F, F] matrix takes its pair, or the zero in front.
        padded = tf.concat([tf.zeros_like(pairs[:, :1]), pairs], axis=1)
        return tf.gather(padded, self._matrix_positions(len(inputs)), axis=1)

    def _matrix_positions(self, num_features: int) -> np.ndarray:
        pairs = interaction_ops.pair_indices(num_features, self.self_interaction)
        positions = np.zeros(num_features * num_features, np.int64)
        positions[pairs] = np.arange(1, len(pairs) + 1)
        return positions

    def compute_output_shape(self, input_shape):
        shapes = [tuple(s) for s in _feature_list(input_shape)]
        _check_shapes(shapes)
        count = len(shapes)
        if self.skip_gather:
            width = count * count
        else:
            width = count * (count + 1) // 2 if self.self_interaction else count * (count - 1) // 2
        return (shapes[0][0], width)

    def get_config(self):
        return {
            **super().get_config(),
            "self_interaction": self.self_interaction,
            "skip_gather": self.skip_gather,
            "backend": self.backend,
        }


def _feature_list(inputs) -> list:
    if not isinstance(inputs, (list, tuple)) or not inputs:
        raise ValueError(f"DotInteraction is called on a list of feature tensors [batch, dim], got {inputs!r}")
    return list(inputs)


def _check_shapes(shapes: list) -> None:
    """Every input [batch, dim], all of input 0's shape (where known)."""
    for k, shape in enumerate(shapes):
        if shape is None or len(shape) != 2:
            raise ValueError(f"DotInteraction's inputs must be [batch, dim]: input {k} has shape {shape}")
        if not _compatible(shape, shapes[0]):
            raise ValueError(
                "Input tensors` dimensions must be equal: DotInteraction's inputs must all have the shape "
                f"[batch, dim] of input 0, {tuple(shapes[0])}; input {k} has shape {tuple(shape)}"
            )


def _compatible(a, b) -> bool:
    return all(x is None or y is None or x == y for x, y in zip(tuple(a), tuple(b), strict=True))
