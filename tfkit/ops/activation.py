"""The activation family: fused bias + activation and gated activations.

`bias_activation(x, bias, activation)` computes `act(x + bias)` in one pass;
`gated_activation(x, activation)` splits `x`'s last axis into halves `[a, b]`
and computes `act(a) * b` (SwiGLU with "silu", GeGLU with "gelu" or
"gelu_tanh"). Each is a `tfkit.declare.Op` with a compiled C++/CUDA
implementation (one grad op each, which reads `x` and `dy` once) and a
pure-TensorFlow reference with the numerics of `keras.activations`.
"""

from __future__ import annotations

import tensorflow as tf

from tfkit import _loader
from tfkit._shapes import shape_string
from tfkit.declare import Op
from tfkit.ops import _checks

__all__ = [
    "ACTIVATIONS",
    "bias_activation",
    "bias_activation_reference",
    "gated_activation",
    "gated_activation_reference",
]

# Beyond |z| = 800 gelu, gelu_tanh, silu and mish equal their asymptotes,
# z and 0, in float64 too. Their composites are evaluated at z clipped
# there, so that +-inf gives the limits and gradients 1 and 0 (not the
# inf * 0 = NaN of the composite), as the kernels do.
_SATURATION = 800.0


def _saturating(function):
    def apply(z):
        bound = tf.constant(_SATURATION, z.dtype)
        above, below = z > bound, z < -bound
        # where, not clip_by_value: a NaN's gradient stays NaN.
        inner = function(tf.where(above, bound, tf.where(below, -bound, z)))
        return tf.where(above, z, tf.where(below, tf.zeros_like(z), inner))

    return apply


# keras.activations' math for each fused activation, on a float32/float64 z.
# The names are the ops' `activation` attr (kernels/activation/
# activation_rules.h, in its order); tests hold this table to the op
# definitions.
_FUNCTIONS = {
    "linear": lambda z: z,
    "relu": tf.nn.relu,
    "gelu": _saturating(lambda z: tf.nn.gelu(z, approximate=False)),
    "gelu_tanh": _saturating(lambda z: tf.nn.gelu(z, approximate=True)),
    "silu": _saturating(tf.nn.silu),
    "sigmoid": tf.sigmoid,
    "tanh": tf.tanh,
    "mish": _saturating(lambda z: z * tf.tanh(tf.nn.softplus(z))),
}
ACTIVATIONS = tuple(_FUNCTIONS)


def check_activation(activation) -> str:
    if activation not in ACTIVATIONS:
        raise _checks.invalid_argument(f"activation must be one of {', '.join(ACTIVATIONS)}, got {activation!r}")
    return activation


def _prepare_bias_activation(x, bias, activation: str = "gelu"):
    """`activation(x + bias)`, with `bias` along the last axis of `x`, fused.

    Args:
      x: A float16, bfloat16, float32 or float64 tensor of rank >= 1.
      bias: Shape `[x.shape[-1]]`, same dtype as `x`.
      activation: One of "linear", "relu", "gelu" (exact, erf), "gelu_tanh"
        (the tanh approximation), "silu" (swish), "sigmoid", "tanh", "mish",
        with the numerics of `keras.activations` of that name (gelu_tanh:
        `keras.activations.gelu(approximate=True)`).

    Returns:
      A tensor with the shape and dtype of `x`.

    Raises:
      InvalidArgumentError: a bad rank, shape or dtype, or an unknown activation.
    """
    activation = check_activation(activation)
    x = _checks.float_input("x", x)
    _checks.check_rank_at_least_1("x", x)
    bias = _checks.float_input("bias", bias, dtype=x.dtype)
    _checks.check_last_dim_param("bias", bias, x)
    return (x, bias), {"activation": activation}


def _prepare_gated_activation(x, activation: str = "silu"):
    """`activation(a) * b` where `x = [a, b]` is split in halves on its last axis.

    SwiGLU with "silu", GeGLU with "gelu" or "gelu_tanh".

    Args:
      x: A float16, bfloat16, float32 or float64 tensor of rank >= 1 whose
        last dimension `2 * h` is even.
      activation: One of the names `bias_activation` takes.

    Returns:
      A tensor of `x`'s shape with last dimension `h`, and `x`'s dtype.

    Raises:
      InvalidArgumentError: a bad rank or dtype, an odd last dimension, or an
        unknown activation.
    """
    activation = check_activation(activation)
    x = _checks.float_input("x", x)
    _checks.check_rank_at_least_1("x", x)
    last = x.shape[-1]
    if last is not None and last % 2:
        raise _checks.invalid_argument(
            f"the last dimension of x must be even (2 * units: the halves [a, b]), got shape {shape_string(x)}"
        )
    return (x,), {"activation": activation}


bias_activation = Op("tfkit.ops.bias_activation", prepare=_prepare_bias_activation)
gated_activation = Op("tfkit.ops.gated_activation", prepare=_prepare_gated_activation)


@bias_activation.compiled
def _bias_activation_compiled(x, bias, *, activation):
    return _loader.load_library().tfkit_bias_activation(x, bias, activation=activation)


@gated_activation.compiled
def _gated_activation_compiled(x, *, activation):
    return _loader.load_library().tfkit_gated_activation(x, activation=activation)


def _apply(activation: str, z: tf.Tensor) -> tf.Tensor:
    return _FUNCTIONS[activation](z)


@bias_activation.reference
def _bias_activation_composite(x, bias, *, activation):
    with tf.control_dependencies(_checks.runtime_last_dim_asserts(x, {"bias": bias})):
        acc = _checks.accumulator_dtype(x.dtype)
        return tf.cast(_apply(activation, tf.cast(x, acc) + tf.cast(bias, acc)), x.dtype)


@gated_activation.reference
def _gated_activation_composite(x, *, activation):
    even = tf.debugging.assert_equal(
        tf.shape(x)[-1] % 2, 0, message="the last dimension of x must be even (2 * units: the halves [a, b])"
    )
    with tf.control_dependencies([even]):
        acc = _checks.accumulator_dtype(x.dtype)
        a, b = tf.split(tf.cast(x, acc), 2, axis=-1)
        return tf.cast(_apply(activation, a) * b, x.dtype)


bias_activation_reference = bias_activation.reference_function()
gated_activation_reference = gated_activation.reference_function()


@tf.RegisterGradient("Tfkit>BiasActivation")
def _bias_activation_grad(op, dy):
    x, bias = op.inputs
    return _loader.load_library().tfkit_bias_activation_grad(dy, x, bias, activation=op.get_attr("activation"))


@tf.RegisterGradient("Tfkit>GatedActivation")
def _gated_activation_grad(op, dy):
    return _loader.load_library().tfkit_gated_activation_grad(dy, op.inputs[0], activation=op.get_attr("activation"))
