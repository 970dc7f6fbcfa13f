"""The interaction family: DLRM's dot interaction.

`dot_interaction(features)` takes each batch item's features `[F, D]` (the
dense features' bottom-MLP output and the F - 1 embedding vectors) to the
dot products of every pair of them, `[batch, F (F - 1) / 2]` (or `F (F + 1)
/ 2` with the self-interactions). It is a `tfkit.declare.Op` running the
compiled C++/CUDA op (`Tfkit>DotInteraction`, with its gradient op
`Tfkit>DotInteractionGrad`) or the pure-TensorFlow reference (a batched
matmul and a gather of its lower triangle).
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from tfkit import _loader
from tfkit._shapes import shape_string
from tfkit.declare import Op
from tfkit.ops import _checks

__all__ = ["dot_interaction", "dot_interaction_reference", "pair_indices"]

RANK_MESSAGE = "features must have rank 3 ([batch, features, dim])"


def _prepare_dot_interaction(features, *, self_interaction: bool = False):
    """The dot products of every pair of each batch item's features.

    `output[b, p] = features[b, i] . features[b, j]` for the pairs `j < i`
    (`j <= i` with `self_interaction`), in the row-major order of the lower
    triangle that DLRM uses: `(1,0), (2,0), (2,1), (3,0), (3,1), (3,2), ...`,
    or with `self_interaction` `(0,0), (1,0), (1,1), (2,0), ...`; the pair
    `(i, j)` is at `p = i (i - 1) / 2 + j` (`i (i + 1) / 2 + j`). Half types
    accumulate in float32, float64 in float64.

    Args:
      features: A float16, bfloat16, float32 or float64 tensor `[batch,
        features, dim]`.
      self_interaction: Also the dot product of each feature with itself.

    Returns:
      A tensor `[batch, pairs]` of `features`' dtype, `pairs = F (F - 1) / 2`
      (`F (F + 1) / 2` with `self_interaction`).

    Raises:
      InvalidArgumentError: features of a rank other than 3 or not a float
        dtype.
    """
    features = _checks.float_input("features", features)
    if features.shape.rank is not None and features.shape.rank != 3:
        raise _checks.invalid_argument(f"{RANK_MESSAGE}, got shape {shape_string(features)}")
    return (features,), {"self_interaction": bool(self_interaction)}


dot_interaction = Op("tfkit.ops.dot_interaction", prepare=_prepare_dot_interaction)


def pair_indices(num_features: int, self_interaction: bool = False) -> np.ndarray:
    """The flat positions `i * F + j` in an `[F, F]` matrix of the pairs, in
    `dot_interaction`'s order."""
    rows, cols = np.tril_indices(num_features, 0 if self_interaction else -1)
    return (rows * num_features + cols).astype(np.int64)


def _dynamic_pair_indices(num_features: tf.Tensor, self_interaction: bool) -> tf.Tensor:
    """pair_indices for a number of features known only at run time."""
    rows = tf.range(num_features, dtype=tf.int64)[:, tf.newaxis]
    cols = tf.range(num_features, dtype=tf.int64)[tf.newaxis, :]
    lower = cols <= rows if self_interaction else cols < rows
    flat = rows * tf.cast(num_features, tf.int64) + cols
    return tf.boolean_mask(tf.reshape(flat, [-1]), tf.reshape(lower, [-1]))


@dot_interaction.compiled
def _dot_interaction_compiled(features, *, self_interaction):
    return _loader.load_library().tfkit_dot_interaction(features, self_interaction=self_interaction)


@dot_interaction.reference
def _dot_interaction_composite(features, *, self_interaction):
    """The lower triangle of x x^T (a batched matmul in the accumulation
    dtype), gathered in dot_interaction's order."""
    with tf.control_dependencies(_runtime_asserts(features)):
        shape = tf.shape(features)
    x = tf.cast(features, _checks.accumulator_dtype(features.dtype))
    x = tf.reshape(x, shape[:3])  # rank 3 where traced unknown
    gram = tf.matmul(x, x, transpose_b=True)
    num_features = features.shape[1] if features.shape.rank is not None else None
    if num_features is not None:
        indices = tf.constant(pair_indices(num_features, self_interaction))
    else:
        indices = _dynamic_pair_indices(shape[1], self_interaction)
    flat = tf.reshape(gram, tf.stack([shape[0], shape[1] * shape[1]]))
    return tf.cast(tf.gather(flat, indices, axis=1), features.dtype)


def _runtime_asserts(features: tf.Tensor) -> list:
    """The kernels' rank check, at run time where the rank was unknown."""
    if features.shape.rank is not None:
        return []
    return [tf.debugging.assert_rank(features, 3, message=RANK_MESSAGE)]


dot_interaction_reference = dot_interaction.reference_function()


@tf.RegisterGradient("Tfkit>DotInteraction")
def _dot_interaction_grad(op, grad):
    (features,) = op.inputs
    return _loader.load_library().tfkit_dot_interaction_grad(
        features, grad, self_interaction=op.get_attr("self_interaction")
    )
