"""Keras 3 layer for the rotary family: RotaryEmbedding."""

from __future__ import annotations

import keras

from tfkit import backend as tfkit_backend
from tfkit.ops import rotary as rotary_ops


@keras.saving.register_keras_serializable(package="tfkit")
class RotaryEmbedding(keras.layers.Layer):
    """Rotary position embedding: a drop-in for `keras_hub.layers.RotaryEmbedding`.

    The same arguments (linear scaling) and results, called as
    `layer(x, start_index=0, positions=None)`; `interleaved=True` rotates
    adjacent feature pairs (GPT-J, RoFormer) instead of the two halves. The
    angles are computed in float32 (float64 for float64 inputs) whatever
    the compute dtype. See `tfkit.ops.rotary_embedding`.

    Args:
      max_wavelength: The longest wavelength of the rotation angles.
      scaling_factor: Positions are divided by it.
      sequence_axis, feature_axis: The axes of the inputs (batch is axis 0).
      interleaved: Rotate pairs (2j, 2j + 1) instead of (j, j + dim/2).
      backend: tfkit backend ("compiled", "reference", "auto", None).
    """

    def __init__(
        self,
        max_wavelength: float = 10000,
        scaling_factor: float = 1.0,
        sequence_axis: int = 1,
        feature_axis: int = -1,
        interleaved: bool = False,
        backend: str | None = None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.max_wavelength = max_wavelength
        self.scaling_factor = scaling_factor
        self.sequence_axis = sequence_axis
        self.feature_axis = feature_axis
        self.interleaved = interleaved
        self.backend = backend
        self.supports_jit = tfkit_backend.supports_xla(backend)
        self.built = True

    def call(self, inputs, start_index=0, positions=None):
        return rotary_ops.rotary_embedding(
            inputs,
            start_index=start_index,
            positions=positions,
            max_wavelength=self.max_wavelength,
            scaling_factor=self.scaling_factor,
            sequence_axis=self.sequence_axis,
            feature_axis=self.feature_axis,
            interleaved=self.interleaved,
            backend=self.backend,
        )

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {
            **super().get_config(),
            "max_wavelength": self.max_wavelength,
            "scaling_factor": self.scaling_factor,
            "sequence_axis": self.sequence_axis,
            "feature_axis": self.feature_axis,
            "interleaved": self.interleaved,
            "backend": self.backend,
        }
