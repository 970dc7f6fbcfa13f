"""The rotary family: rotary position embedding (RoPE).

`rotary_embedding` rotates each pair of features of `x` at sequence position
`p` by the angle `p * inv_freq[j]`, `inv_freq[j] = max_wavelength ** (-2j /
dim) / scaling_factor`: the pairs `(j, j + dim/2)` (the two halves, as
`keras_hub.layers.RotaryEmbedding` does) or, with `interleaved=True`,
`(2j, 2j + 1)` (GPT-J, the original RoFormer). It is a `tfkit.declare.Op`
with a compiled C++/CUDA implementation (`Tfkit>RotaryEmbedding`, whose
gradient `Tfkit>RotaryEmbeddingGrad` is the inverse rotation) and a
pure-TensorFlow reference.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from tfkit import _loader
from tfkit._shapes import shape_string
from tfkit.declare import Op
from tfkit.ops import _checks

__all__ = ["rotary_embedding", "rotary_embedding_reference"]


def _prepare_rotary_embedding(
    x,
    *,
    start_index=0,
    positions=None,
    max_wavelength: float = 10000,
    scaling_factor: float = 1.0,
    sequence_axis: int = 1,
    feature_axis: int = -1,
    interleaved: bool = False,
):
    """Rotary position embedding of `x` along `sequence_axis`.

    A drop-in for `keras_hub.layers.RotaryEmbedding` (linear scaling): the
    same arguments and results. The angles are computed in float32 (float64
    for float64 inputs) whatever the input dtype.

    Args:
      x: A float16, bfloat16, float32 or float64 tensor of known rank >= 3
        with a batch axis 0, a sequence axis and an even feature axis, e.g.
        `[batch, seq, features]` or `[batch, seq, heads, features]`.
      start_index: The position of the first element along the sequence (a
        Python int or a scalar tensor), for cached decoding.
      positions: Explicit positions, `[seq]` or `[batch, seq]`; then
        `start_index` is not used.
      max_wavelength: The longest wavelength; a finite float > 0.
      scaling_factor: Positions are divided by it; a finite float > 0.
      sequence_axis, feature_axis: The axes of `x` (negative counts from the
        end); distinct.
      interleaved: Rotate adjacent pairs `(2j, 2j + 1)` instead of the two
        halves `(j, j + dim/2)`.

    Returns:
      A tensor with the shape and dtype of `x`.

    Raises:
      InvalidArgumentError: a bad rank, dtype, odd feature size, positions
        of the wrong shape, axes out of range, or a bad attribute.
    """
    x = _checks.float_input("x", x)
    seq_axis, feat_axis = _axes(x, sequence_axis, feature_axis)
    dim = x.shape[feat_axis]
    if dim is not None and dim % 2:
        axis = "" if feat_axis == x.shape.rank - 1 else f" (axis {feature_axis})"  # the kernel's are always last
        raise _checks.invalid_argument(
            f"x's feature dimension{axis} must be even (pairs of features are rotated), got shape {shape_string(x)}"
        )
    max_wavelength = _checks.check_positive_finite("max_wavelength", max_wavelength)
    scaling_factor = _checks.check_positive_finite("scaling_factor", scaling_factor)
    acc = _checks.accumulator_dtype(x.dtype)
    seq_len = tf.shape(x)[seq_axis]
    if positions is None:
        start = tf.convert_to_tensor(start_index)
        if start.shape.rank != 0:
            raise _checks.invalid_argument(f"start_index must be a scalar, got shape {shape_string(start)}")
        positions = (tf.range(seq_len, dtype=acc) + tf.cast(start, acc))[tf.newaxis]
    else:
        positions = _positions(positions, acc, x.shape[seq_axis], x.shape[0])
    features = tf.shape(x)[feat_axis]
    exponents = tf.range(0, features, 2, dtype=acc) / tf.cast(features, acc)
    inv_freq = tf.pow(tf.cast(max_wavelength, acc), -exponents) / tf.cast(scaling_factor, acc)
    attrs = {"sequence_axis": seq_axis, "feature_axis": feat_axis, "interleaved": bool(interleaved)}
    return (x, positions, inv_freq), attrs


def _axes(x: tf.Tensor, sequence_axis: int, feature_axis: int) -> tuple[int, int]:
    rank = x.shape.rank
    if rank is None or rank < 3:
        raise _checks.invalid_argument(
            f"x must have a known rank >= 3 ([batch, sequence, ..., features]), got shape {shape_string(x)}"
        )
    resolved = []
    for name, axis in (("sequence_axis", sequence_axis), ("feature_axis", feature_axis)):
        if not -rank <= int(axis) < rank:
            raise _checks.invalid_argument(f"{name} {axis} is out of range for x of rank {rank}")
        resolved.append(int(axis) % rank)
    if resolved[0] == resolved[1]:
        raise _checks.invalid_argument(f"sequence_axis and feature_axis must differ, both are axis {resolved[0]}")
    if 0 in resolved:
        raise _checks.invalid_argument("axis 0 of x is the batch axis: sequence_axis and feature_axis must not be 0")
    return resolved[0], resolved[1]


def _positions(positions, acc: tf.DType, seq_len, batch) -> tf.Tensor:
    """Explicit positions as [1 or batch, seq] in the angle dtype."""
    positions = tf.convert_to_tensor(positions)
    if not (positions.dtype.is_integer or positions.dtype.is_floating):
        raise _checks.invalid_argument(f"positions must be a number tensor, got {positions.dtype.name}")
    given = shape_string(positions)
    positions = tf.cast(positions, acc)
    if positions.shape.rank == 1:
        positions = positions[tf.newaxis]
    if positions.shape.rank != 2:
        raise _checks.invalid_argument(f"positions must have shape [seq] or [batch, seq], got shape {given}")
    rows, length = positions.shape
    if (seq_len is not None and length is not None and length != seq_len) or (
        batch is not None and rows is not None and rows not in (1, batch)
    ):
        raise _checks.invalid_argument(
            f"positions must have shape {shape_string([seq_len])} or {shape_string([batch, seq_len])} (the "
            f"sequence, for all batch rows or per row), got shape {given}"
        )
    return positions


rotary_embedding = Op("tfkit.ops.rotary_embedding", prepare=_prepare_rotary_embedding)


def _layout(rank: int, sequence_axis: int, feature_axis: int) -> np.ndarray | None:
    """The permutation that puts the sequence at axis 1 and the features
    last (None when they are there already)."""
    perm = [axis for axis in range(rank) if axis not in (sequence_axis, feature_axis)]
    perm.insert(1, sequence_axis)
    perm.append(feature_axis)
    return None if perm == list(range(rank)) else np.array(perm)


def _in_layout(fn, x, sequence_axis, feature_axis):
    """fn applied to x with its sequence at axis 1 and features last."""
    perm = _layout(x.shape.rank, sequence_axis, feature_axis)
    if perm is None:
        return fn(x)
    return tf.transpose(fn(tf.transpose(x, perm)), np.argsort(perm))


@rotary_embedding.compiled
def _rotary_embedding_compiled(x, positions, inv_freq, *, sequence_axis, feature_axis, interleaved):
    library = _loader.load_library()
    return _in_layout(
        lambda t: library.tfkit_rotary_embedding(t, positions, inv_freq, interleaved=interleaved),
        x,
        sequence_axis,
        feature_axis,
    )


@rotary_embedding.reference
def _rotary_embedding_composite(x, positions, inv_freq, *, sequence_axis, feature_axis, interleaved):
    return _in_layout(lambda t: _rotate_reference(t, positions, inv_freq, interleaved), x, sequence_axis, feature_axis)


def _rotate_reference(x, positions, inv_freq, interleaved):
    """The rotation of x [batch, seq, ..., dim] in the angles' dtype."""
    acc = inv_freq.dtype
    angles = positions[:, :, tf.newaxis] * inv_freq  # [1 or batch, seq, dim / 2]
    angles = tf.reshape(angles, tf.concat([tf.shape(angles)[:2], tf.ones([x.shape.rank - 3], tf.int32), [-1]], 0))
    cos, sin = tf.cos(angles), tf.sin(angles)
    xf = tf.cast(x, acc)
    if interleaved:
        pairs = tf.reshape(xf, tf.concat([tf.shape(xf)[:-1], [-1, 2]], 0))
        a, b = pairs[..., 0], pairs[..., 1]
        y = tf.reshape(tf.stack([a * cos - b * sin, b * cos + a * sin], -1), tf.shape(xf))
    else:
        a, b = tf.split(xf, 2, axis=-1)
        y = tf.concat([a * cos - b * sin, b * cos + a * sin], -1)
    return tf.cast(y, x.dtype)


rotary_embedding_reference = rotary_embedding.reference_function()


@tf.RegisterGradient("Tfkit>RotaryEmbedding")
def _rotary_embedding_grad(op, dy):
    _, positions, inv_freq = op.inputs
    dx = _loader.load_library().tfkit_rotary_embedding_grad(
        dy, positions, inv_freq, interleaved=op.get_attr("interleaved")
    )
    return dx, None, None
