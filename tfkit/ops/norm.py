"""The norm family: fused LayerNorm and RMSNorm over the last axis.

Each op is a `tfkit.declare.Op` with a compiled C++/CUDA implementation
(`Tfkit>LayerNorm`, `Tfkit>RMSNorm`, with grad ops that reuse the forward's
row statistics) and a pure-TensorFlow reference that defines the expected
numerics.
"""

from __future__ import annotations

import tensorflow as tf

from tfkit import _loader
from tfkit.declare import Op
from tfkit.ops import _checks

__all__ = ["layer_norm", "layer_norm_reference", "rms_norm", "rms_norm_reference"]


def _prepare_layer_norm(x, gamma, beta, epsilon: float = 1e-5):
    """Layer normalization over the last axis of `x`.

    Computes `(x - mean) / sqrt(var + epsilon) * gamma + beta`, where `mean`
    and `var` are taken over the last axis. Half types accumulate in float32.

    Args:
      x: A float16, bfloat16, float32 or float64 tensor of rank >= 1.
      gamma: Scale, shape `[x.shape[-1]]`, same dtype as `x`.
      beta: Offset, shape `[x.shape[-1]]`, same dtype as `x`.
      epsilon: Added to the variance; a finite float32 >= 2**-126 (the
        smallest normal float32).

    Returns:
      A tensor with the shape and dtype of `x`.

    Raises:
      InvalidArgumentError: bad rank, shape, dtype or epsilon.
    """
    x, (gamma, beta), epsilon = _norm_inputs(x, {"gamma": gamma, "beta": beta}, epsilon)
    return (x, gamma, beta), {"epsilon": epsilon}


def _prepare_rms_norm(x, gamma, epsilon: float = 1e-6):
    """RMS normalization over the last axis of `x`.

    Computes `x / sqrt(mean(x**2) + epsilon) * gamma` over the last axis.
    Half types accumulate in float32.

    Args:
      x: A float16, bfloat16, float32 or float64 tensor of rank >= 1.
      gamma: Scale, shape `[x.shape[-1]]`, same dtype as `x`.
      epsilon: Added to the mean square; a finite float32 >= 2**-126 (the
        smallest normal float32).

    Returns:
      A tensor with the shape and dtype of `x`.

    Raises:
      InvalidArgumentError: bad rank, shape, dtype or epsilon.
    """
    x, (gamma,), epsilon = _norm_inputs(x, {"gamma": gamma}, epsilon)
    return (x, gamma), {"epsilon": epsilon}


layer_norm = Op("tfkit.ops.layer_norm", prepare=_prepare_layer_norm)
rms_norm = Op("tfkit.ops.rms_norm", prepare=_prepare_rms_norm)


@layer_norm.compiled
def _layer_norm_compiled(x, gamma, beta, *, epsilon):
    library = _loader.load_library()
    y, _, _ = library.tfkit_layer_norm(x, gamma, beta, epsilon=epsilon, U=_checks.accumulator_dtype(x.dtype))
    return y


@rms_norm.compiled
def _rms_norm_compiled(x, gamma, *, epsilon):
    library = _loader.load_library()
    y, _ = library.tfkit_rms_norm(x, gamma, epsilon=epsilon, U=_checks.accumulator_dtype(x.dtype))
    return y


layer_norm_reference = layer_norm.reference_function()
rms_norm_reference = rms_norm.reference_function()


@layer_norm.reference
def _layer_norm_composite(x, gamma, beta, *, epsilon):
    with tf.control_dependencies(_checks.runtime_last_dim_asserts(x, {"gamma": gamma, "beta": beta})):
        acc = _checks.accumulator_dtype(x.dtype)
        xf = tf.cast(x, acc)
        # Summing relative to each row's first element cancels a large common
        # offset exactly; the centered values do not depend on the shift, so
        # it takes no gradient.
        shifted = xf - tf.stop_gradient(xf[..., :1])
        centered = shifted - tf.reduce_mean(shifted, axis=-1, keepdims=True)
        var = tf.reduce_mean(tf.square(centered), axis=-1, keepdims=True)
        y = centered * tf.math.rsqrt(var + epsilon) * tf.cast(gamma, acc) + tf.cast(beta, acc)
        return tf.cast(y, x.dtype)


@rms_norm.reference
def _rms_norm_composite(x, gamma, *, epsilon):
    with tf.control_dependencies(_checks.runtime_last_dim_asserts(x, {"gamma": gamma})):
        acc = _checks.accumulator_dtype(x.dtype)
        xf = tf.cast(x, acc)
        mean_square = tf.reduce_mean(tf.square(xf), axis=-1, keepdims=True)
        y = xf * tf.math.rsqrt(mean_square + epsilon) * tf.cast(gamma, acc)
        return tf.cast(y, x.dtype)


def _norm_inputs(x, params: dict, epsilon: float):
    """Converts and statically checks x, its per-feature params and epsilon."""
    epsilon = _checks.check_epsilon(epsilon)
    x = _checks.float_input("x", x)
    _checks.check_rank_at_least_1("x", x)
    tensors = []
    for name, value in params.items():
        param = _checks.float_input(name, value, dtype=x.dtype)
        _checks.check_last_dim_param(name, param, x)
        tensors.append(param)
    return x, tuple(tensors), epsilon


def _zeros_if_none(grad, like):
    return tf.zeros_like(like) if grad is None else grad


# The grad ops also take the gradients flowing into the row statistics
# outputs (zeros when only y is used) and fold them into dx on the fly.
@tf.RegisterGradient("Tfkit>LayerNorm")
def _layer_norm_grad(op, dy, dmean, drstd):
    x, gamma, _ = op.inputs
    _, mean, rstd = op.outputs
    return _loader.load_library().tfkit_layer_norm_grad(
        _zeros_if_none(dy, x),
        x,
        gamma,
        mean,
        rstd,
        _zeros_if_none(dmean, mean),
        _zeros_if_none(drstd, rstd),
    )


@tf.RegisterGradient("Tfkit>RMSNorm")
def _rms_norm_grad(op, dy, drstd):
    x, gamma = op.inputs
    _, rstd = op.outputs
    return _loader.load_library().tfkit_rms_norm_grad(
        _zeros_if_none(dy, x), x, gamma, rstd, _zeros_if_none(drstd, rstd)
    )
