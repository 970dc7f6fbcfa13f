"""Keras 3 layers for the norm family: LayerNorm and RMSNorm."""

from __future__ import annotations

from collections.abc import Sequence

import keras
import tensorflow as tf

from tfkit import backend as tfkit_backend
from tfkit.ops import norm as norm_ops


def _normalized_axes(axis: int | Sequence[int], rank: int) -> list[int]:
    axes = [axis] if isinstance(axis, int) else list(axis)
    if not axes:
        raise ValueError("axis must name at least one axis")
    resolved = sorted({a + rank if a < 0 else a for a in axes})
    if resolved[0] < 0 or resolved[-1] >= rank:
        raise ValueError(f"axis {axis} is out of range for inputs of rank {rank}")
    return resolved


class _FusedNorm(keras.layers.Layer):
    """Shared machinery: moves the normalized axes last, flattens them, calls
    the fused op and restores the layout."""

    def __init__(
        self,
        axis: int | Sequence[int] = -1,
        epsilon: float = 1e-5,
        scale: bool = True,
        gamma_initializer="ones",
        gamma_regularizer=None,
        gamma_constraint=None,
        backend: str | None = None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.axis = axis if isinstance(axis, int) else list(axis)
        self.epsilon = float(epsilon)
        self.scale = scale
        self.gamma_initializer = keras.initializers.get(gamma_initializer)
        self.gamma_regularizer = keras.regularizers.get(gamma_regularizer)
        self.gamma_constraint = keras.constraints.get(gamma_constraint)
        self.backend = backend
        self.supports_masking = True
        self.supports_jit = tfkit_backend.supports_xla(backend)

    def _resolve_axes(self, input_shape) -> tuple[int, ...]:
        """Sets self._axes and returns the parameters' shape."""
        self._axes = _normalized_axes(self.axis, len(input_shape))
        shape = tuple(input_shape[a] for a in self._axes)
        if any(d is None for d in shape):
            raise ValueError(f"the normalized axes {self.axis} need known sizes, got {input_shape}")
        return shape

    def _add_param(self, name, shape, enabled, initializer, regularizer, constraint):
        if not enabled:
            return None
        return self.add_weight(
            name=name,
            shape=shape,
            initializer=initializer,
            regularizer=regularizer,
            constraint=constraint,
            trainable=True,
        )

    def build(self, input_shape):
        self.param_shape = self._resolve_axes(input_shape)
        self.gamma = self._add_param(
            "gamma",
            self.param_shape,
            self.scale,
            self.gamma_initializer,
            self.gamma_regularizer,
            self.gamma_constraint,
        )

    def _flat_param(self, variable, fill: float, size: int) -> tf.Tensor:
        if variable is None:
            return tf.fill([size], tf.constant(fill, self.compute_dtype))
        return tf.reshape(tf.cast(variable, self.compute_dtype), [size])

    def call(self, inputs):
        x = tf.cast(inputs, self.compute_dtype)
        rank = x.shape.rank
        if self._axes == [rank - 1]:
            return self._normalize(x, x.shape[-1])
        rest = [a for a in range(rank) if a not in self._axes]
        perm = rest + self._axes
        moved = tf.transpose(x, perm) if perm != list(range(rank)) else x
        size = 1
        for a in self._axes:
            size *= x.shape[a]
        flat = tf.reshape(moved, tf.concat([tf.shape(moved)[: len(rest)], [size]], 0))
        y = tf.reshape(self._normalize(flat, size), tf.shape(moved))
        if perm != list(range(rank)):
            y = tf.transpose(y, [perm.index(a) for a in range(rank)])
        return tf.ensure_shape(y, x.shape)

    def _normalize(self, flat: tf.Tensor, size: int) -> tf.Tensor:
        raise NotImplementedError

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(
            axis=self.axis,
            epsilon=self.epsilon,
            scale=self.scale,
            gamma_initializer=keras.initializers.serialize(self.gamma_initializer),
            gamma_regularizer=keras.regularizers.serialize(self.gamma_regularizer),
            gamma_constraint=keras.constraints.serialize(self.gamma_constraint),
            backend=self.backend,
        )
        return config


@keras.saving.register_keras_serializable(package="tfkit")
class LayerNorm(_FusedNorm):
    """Layer normalization with tfkit's fused kernel.

    A drop-in for `keras.layers.LayerNormalization`: normalizes over `axis`
    (default the last), then scales by `gamma` and shifts by `beta`. Honours
    the layer's dtype policy (mixed_float16 / mixed_bfloat16 keep float32
    variables and compute in the half type, accumulating in float32).

    Args:
      axis: Axis or axes to normalize over.
      epsilon: Added to the variance; must be > 0.
      center: Whether to add the learned offset `beta`.
      scale: Whether to multiply by the learned scale `gamma`.
      beta_initializer, gamma_initializer: Initializers of the parameters.
      beta_regularizer, gamma_regularizer: Optional regularizers.
      beta_constraint, gamma_constraint: Optional constraints.
      backend: tfkit backend ("compiled", "reference", "auto", None).
    """

    def __init__(
        self,
        axis: int | Sequence[int] = -1,
        epsilon: float = 1e-5,
        center: bool = True,
        scale: bool = True,
        beta_initializer="zeros",
        gamma_initializer="ones",
        beta_regularizer=None,
        gamma_regularizer=None,
        beta_constraint=None,
        gamma_constraint=None,
        backend: str | None = None,
        **kwargs,
    ):
        super().__init__(
            axis=axis,
            epsilon=epsilon,
            scale=scale,
            gamma_initializer=gamma_initializer,
            gamma_regularizer=gamma_regularizer,
            gamma_constraint=gamma_constraint,
            backend=backend,
            **kwargs,
        )
        self.center = center
        self.beta_initializer = keras.initializers.get(beta_initializer)
        self.beta_regularizer = keras.regularizers.get(beta_regularizer)
        self.beta_constraint = keras.constraints.get(beta_constraint)

    def build(self, input_shape):
        super().build(input_shape)
        self.beta = self._add_param(
            "beta",
            self.param_shape,
            self.center,
            self.beta_initializer,
            self.beta_regularizer,
            self.beta_constraint,
        )

    def _normalize(self, flat, size):
        gamma = self._flat_param(self.gamma, 1.0, size)
        beta = self._flat_param(self.beta, 0.0, size)
        return norm_ops.layer_norm(flat, gamma, beta, epsilon=self.epsilon, backend=self.backend)

    def get_config(self):
        config = super().get_config()
        config.update(
            center=self.center,
            beta_initializer=keras.initializers.serialize(self.beta_initializer),
            beta_regularizer=keras.regularizers.serialize(self.beta_regularizer),
            beta_constraint=keras.constraints.serialize(self.beta_constraint),
        )
        return config


@keras.saving.register_keras_serializable(package="tfkit")
class RMSNorm(_FusedNorm):
    """RMS normalization with tfkit's fused kernel.

    Divides by the root mean square over `axis` (default the last), then
    scales by `gamma`. Honours the layer's dtype policy.

    Args:
      axis: Axis or axes to normalize over.
      epsilon: Added to the mean square; must be > 0.
      scale: Whether to multiply by the learned scale `gamma`.
      gamma_initializer, gamma_regularizer, gamma_constraint: For `gamma`.
      backend: tfkit backend ("compiled", "reference", "auto", None).
    """

    def __init__(self, axis: int | Sequence[int] = -1, epsilon: float = 1e-6, scale: bool = True, **kwargs):
        super().__init__(axis=axis, epsilon=epsilon, scale=scale, **kwargs)

    def _normalize(self, flat, size):
        gamma = self._flat_param(self.gamma, 1.0, size)
        return norm_ops.rms_norm(flat, gamma, epsilon=self.epsilon, backend=self.backend)
