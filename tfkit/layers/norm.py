"""Keras 3 layers for the norm family: LayerNorm and RMSNorm, drop-ins for
keras.layers.LayerNormalization and keras.layers.RMSNormalization."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import keras
import tensorflow as tf

from tfkit import backend as tfkit_backend
from tfkit.ops import _checks
from tfkit.ops import norm as norm_ops


def _normalized_axes(axis: int | Sequence[int], rank: int) -> list[int]:
    axes = [axis] if isinstance(axis, int) else list(axis)
    if not axes:
        raise ValueError("axis must name at least one axis")
    resolved = sorted({a + rank if a < 0 else a for a in axes})
    if resolved[0] < 0 or resolved[-1] >= rank:
        raise ValueError(f"axis {axis} is out of range for inputs of rank {rank}")
    return resolved


def _normalized_size(x: tf.Tensor, axes: list[int]) -> int | None:
    """The number of elements each normalization spans (None when unknown)."""
    size = 1
    for a in axes:
        if x.shape[a] is None:
            return None
        size *= x.shape[a]
    return size


def _over_axes(x: tf.Tensor, axes: list[int], size: int, normalize: Callable[[tf.Tensor], tf.Tensor]) -> tf.Tensor:
    """`normalize` (over the last axis) applied over `axes` of x: moves them
    last, flattens them into one and restores the layout."""
    rank = x.shape.rank
    if axes == [rank - 1]:
        return normalize(x)
    rest = [a for a in range(rank) if a not in axes]
    perm = rest + axes
    moved = tf.transpose(x, perm) if perm != list(range(rank)) else x
    flat = tf.reshape(moved, tf.concat([tf.shape(moved)[: len(rest)], [size]], 0))
    y = tf.reshape(normalize(flat), tf.shape(moved))
    if perm != list(range(rank)):
        y = tf.transpose(y, [perm.index(a) for a in range(rank)])
    return tf.ensure_shape(y, x.shape)


def _flat(param, dtype: tf.DType, fill: float, size: int) -> tf.Tensor:
    """A parameter (or `fill` where the layer has none) as a `[size]` vector."""
    if param is None:
        return tf.fill([size], tf.constant(fill, dtype))
    return tf.reshape(tf.cast(param, dtype), [size])


class _FusedNorm:
    """What tfkit adds to Keras's normalization layers: the `backend`
    argument and a `call` that runs tfkit's fused op over the layer's axes.

    The Keras layer keeps its own arguments, defaults, validation, weights,
    dtype rules and config. One rule decides when the op runs: a
    configuration the fused op can't serve (`_fuses` is False) runs the Keras
    layer's own computation.
    """

    def __init__(self, *args, backend: str | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.backend = backend
        self.supports_jit = tfkit_backend.supports_xla(backend)

    def build(self, input_shape):
        _normalized_axes(self.axis, len(input_shape))
        super().build(input_shape)

    def call(self, inputs):
        x = self._computation_input(inputs)
        axes = _normalized_axes(self.axis, x.shape.rank)
        size = _normalized_size(x, axes)
        if not self._fuses(x, size):
            return super().call(inputs)
        y = _over_axes(x, axes, size, lambda flat: self._normalize(flat, size))
        return tf.cast(y, self._output_dtype(x))

    def _fuses(self, x: tf.Tensor, size: int | None) -> bool:
        """Whether the fused op can serve this call (x: the computation input)."""
        return size is not None and x.dtype in _checks.FLOAT_DTYPES and _checks.epsilon_supported(self.epsilon)

    def _computation_input(self, inputs) -> tf.Tensor:
        """The inputs in the dtype the Keras layer computes them in."""
        raise NotImplementedError

    def _output_dtype(self, x: tf.Tensor) -> tf.DType:
        """The dtype of the Keras layer's outputs for computation input x."""
        raise NotImplementedError

    def _normalize(self, flat: tf.Tensor, size: int) -> tf.Tensor:
        """The fused op over the last axis of `flat`, of `size` elements."""
        raise NotImplementedError

    def get_config(self):
        return {**super().get_config(), "backend": self.backend}


@keras.saving.register_keras_serializable(package="tfkit")
class LayerNorm(_FusedNorm, keras.layers.LayerNormalization):
    """`keras.layers.LayerNormalization` computed by tfkit's fused kernel.

    Takes the arguments of `keras.layers.LayerNormalization` (with its
    defaults: `axis=-1`, `epsilon=1e-3`, ...) and `backend`; it has the same
    weights (`gamma`, `beta`), config and dtype rules: float16 and bfloat16
    inputs are normalized in float32 with float32 parameters, and the output
    has the layer's compute dtype.

    The fused op runs for any axis or axes (they are moved last and
    flattened) with known sizes, and any `center` and `scale`. Keras's own
    computation runs for `rms_scaling=True`, an `epsilon` the op refuses
    (not a positive normal float32) and normalized axes of unknown size
    (possible only without `gamma` and `beta`).

    Args:
      *args, **kwargs: As for `keras.layers.LayerNormalization`.
      backend: tfkit backend ("compiled", "reference", "auto", None).
    """

    def _fuses(self, x, size):
        return not self.rms_scaling and super()._fuses(x, size)

    def _computation_input(self, inputs):
        x = tf.convert_to_tensor(inputs)
        return tf.cast(x, keras.backend.result_type(x.dtype, "float32"))

    def _output_dtype(self, x):
        return self.compute_dtype

    def _normalize(self, flat, size):
        gamma = _flat(self.gamma, flat.dtype, 1.0, size)
        beta = _flat(self.beta, flat.dtype, 0.0, size)
        return norm_ops.layer_norm(flat, gamma, beta, epsilon=self.epsilon, backend=self.backend)


@keras.saving.register_keras_serializable(package="tfkit")
class RMSNorm(_FusedNorm, keras.layers.RMSNormalization):
    """`keras.layers.RMSNormalization` computed by tfkit's fused kernel.

    Takes the arguments of `keras.layers.RMSNormalization` (`axis=-1`,
    `epsilon=1e-6`) and `backend`; it has the same weight (`scale`), config
    and dtype rules: the inputs and `scale` in the layer's compute dtype,
    accumulated in float32 (float64 for float64).

    The fused op runs for any axis or axes (moved last and flattened) and
    float inputs. Keras's own computation runs for an `epsilon` the op
    refuses (not a positive normal float32) and for inputs that are not
    float16, bfloat16, float32 or float64.

    Args:
      *args, **kwargs: As for `keras.layers.RMSNormalization`.
      backend: tfkit backend ("compiled", "reference", "auto", None).
    """

    def _computation_input(self, inputs):
        return tf.convert_to_tensor(inputs)

    def _output_dtype(self, x):
        return x.dtype

    def _normalize(self, flat, size):
        scale = _flat(self.scale, flat.dtype, 1.0, size)
        return norm_ops.rms_norm(flat, scale, epsilon=self.epsilon, backend=self.backend)
