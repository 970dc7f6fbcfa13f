"""The ${family} family: y = x / (1 + |x| / limit), element-wise.

`${family}` is a `tfkit.Op` with a compiled C++/CUDA implementation
(`${op}`, with `${op}Grad` for its gradient) and a pure-TensorFlow
reference that defines the expected numerics.
"""

from __future__ import annotations

import tensorflow as tf

from tfkit import _loader
from tfkit.declare import Op
from tfkit.ops import _checks

__all__ = ["${family}", "${family}_reference"]


def _prepare(x, limit: float = 3.0):
    """A smooth clip of `x` to (-limit, limit): `x / (1 + |x| / limit)`.

    Args:
      x: A float16, bfloat16, float32 or float64 tensor of any shape.
      limit: The bound; a finite float > 0.
      backend: "compiled", "reference", "auto", or None for the
        TFKIT_BACKEND environment variable (default "auto").

    Returns:
      A tensor with the shape and dtype of `x`.

    Raises:
      InvalidArgumentError: a non-float `x` or a bad `limit`.
    """
    x = _checks.float_input("x", x)
    return (x,), {"limit": _checks.check_positive_finite("limit", limit)}


${family} = Op("tfkit.ops.${family}", prepare=_prepare)


@${family}.compiled
def _${family}_compiled(x, *, limit):
    return _loader.load_library().tfkit_${snake_op}(x, limit=limit)


@${family}.reference
def _${family}_composite(x, *, limit):
    acc = _checks.accumulator_dtype(x.dtype)
    xf = tf.cast(x, acc)
    return tf.cast(xf / (1.0 + tf.abs(xf) / limit), x.dtype)


def ${family}_reference(x, limit: float = 3.0) -> tf.Tensor:
    """Pure-TensorFlow ${family}: the numerics the kernels match."""
    (x,), attrs = _prepare(x, limit)
    return _${family}_composite(x, **attrs)


@tf.RegisterGradient("${op}")
def _${family}_grad(op, dy):
    return _loader.load_library().tfkit_${snake_op}_grad(dy, op.outputs[0], limit=op.get_attr("limit"))
