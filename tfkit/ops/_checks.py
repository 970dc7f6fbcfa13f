"""Argument checks shared by tfkit op wrappers.

Static checks raise tf.errors.InvalidArgumentError naming the argument, the
same error (and message, shapes printed by `shape_string`) the compiled
kernels raise at run time, so both backends and both eager and graph mode
fail the same way. Where a dimension is unknown at trace
time the reference path adds run-time assertions instead.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from tfkit._shapes import shape_string

FLOAT_DTYPES = (tf.float16, tf.bfloat16, tf.float32, tf.float64)


def invalid_argument(message: str) -> tf.errors.InvalidArgumentError:
    return tf.errors.InvalidArgumentError(None, None, message)


def accumulator_dtype(dtype: tf.DType) -> tf.DType:
    """float64 for float64 inputs, float32 for every other float type."""
    return tf.float64 if dtype == tf.float64 else tf.float32


SMALLEST_NORMAL_FLOAT32 = float(np.finfo(np.float32).tiny)


def check_epsilon(epsilon: float) -> float:
    """Returns epsilon rounded to float32, the precision of the ops' attr.

    The rule, the same in the compiled kernels and their shape functions:
    after rounding to float32, epsilon is finite and at least the smallest
    normal float32 (a denormal may be flushed to zero by the kernels). The
    reference path uses the same rounded value, so both backends agree to
    the last bit in float64.
    """
    rounded = _as_float32(epsilon)
    if not _is_normal_positive(rounded):
        raise invalid_argument(
            f"epsilon must be > 0, finite and a normal float32 (>= {SMALLEST_NORMAL_FLOAT32:.6g}), got {rounded:.6g}"
        )
    return float(rounded)


def epsilon_supported(epsilon: float) -> bool:
    """Whether `check_epsilon` accepts epsilon."""
    return _is_normal_positive(_as_float32(epsilon))


def _is_normal_positive(rounded: np.float32) -> bool:
    return bool(np.isfinite(rounded) and rounded >= SMALLEST_NORMAL_FLOAT32)


def _as_float32(value: float) -> np.float32:
    """value as the ops' float attrs hold it (too large rounds to inf)."""
    with np.errstate(over="ignore"):
        return np.float32(value)


def check_positive_finite(name: str, value: float) -> float:
    """Returns value as a float32-rounded float if it is finite and > 0.

    The same rule and message as `CheckPositiveFinite` in tfkit/op_utils.h.
    """
    rounded = _as_float32(value)
    if not (np.isfinite(rounded) and rounded > 0):
        raise invalid_argument(f"{name} must be a finite float > 0, got {rounded:.6g}")
    return float(rounded)


def check_finite(name: str, value: float) -> float:
    """Returns value as a float32-rounded float if it is finite.

    The same rule and message as `CheckFinite` in tfkit/op_utils.h.
    """
    rounded = _as_float32(value)
    if not np.isfinite(rounded):
        raise invalid_argument(f"{name} must be a finite float, got {rounded:.6g}")
    return float(rounded)


def check_same_shape(name: str, value: tf.Tensor, other_name: str, other: tf.Tensor) -> None:
    """`value` must have `other`'s shape (checked where the shapes are known);
    the message of `CheckSameShape` in tfkit/op_utils.h."""
    if not value.shape.is_compatible_with(other.shape):
        raise invalid_argument(
            f"{name} must have the shape of {other_name} {shape_string(other)}, got shape {shape_string(value)}"
        )


def float_input(name: str, value, dtype: tf.DType | None = None, like: str = "x") -> tf.Tensor:
    """Converts `value` to a tensor of a supported float dtype (`dtype`, the dtype of `like`, if set)."""
    tensor = tf.convert_to_tensor(value, dtype_hint=dtype)
    if dtype is None and tensor.dtype not in FLOAT_DTYPES:
        names = ", ".join(d.name for d in FLOAT_DTYPES)
        raise invalid_argument(f"{name} must have a float dtype ({names}), got {tensor.dtype.name}")
    if dtype is not None and tensor.dtype != dtype:
        raise invalid_argument(f"{name} must have dtype {dtype.name} (the dtype of {like}), got {tensor.dtype.name}")
    return tensor


def check_rank_at_least_1(name: str, x: tf.Tensor) -> None:
    if x.shape.rank == 0:
        raise invalid_argument(f"{name} must have rank >= 1, got shape {shape_string(x)}")


def check_last_dim_param(name: str, param: tf.Tensor, x: tf.Tensor) -> None:
    """`param` must have shape [last dimension of x] (checked where known);
    the rule and message of `CheckLastDimParam` in tfkit/op_utils.h."""
    last = x.shape[-1] if x.shape.rank else None
    shape = param.shape
    if shape.rank is None:
        return
    size = shape[0] if shape.rank == 1 else None
    if shape.rank != 1 or (last is not None and size is not None and size != last):
        raise invalid_argument(
            f"{name} must have shape {shape_string([last])} (the last dimension of x {shape_string(x)}), "
            f"got shape {shape_string(shape)}"
        )


def runtime_last_dim_asserts(x: tf.Tensor, params: dict[str, tf.Tensor]) -> list:
    """Run-time checks for the reference path where shapes are not static."""
    if x.shape.is_fully_defined() and all(p.shape.is_fully_defined() for p in params.values()):
        return []
    asserts = [tf.debugging.assert_rank_at_least(x, 1, message="x must have rank >= 1")]
    for name, param in params.items():
        asserts.append(
            tf.debugging.assert_equal(
                tf.shape(param),
                tf.shape(x)[-1:],
                message=f"{name} must have shape [last dimension of x]",
            )
        )
    return asserts
