"""Prototype ops the tests use; a module, so fresh processes can import them."""

import numpy as np
import tensorflow as tf

import tfkit


def _softclip_grad(dy, x, y, *, limit):
    return dy * (1.0 - (y / limit) ** 2)


@tfkit.prototype.op(grad=_softclip_grad)
def softclip(x, *, limit=3.0):
    return limit * np.tanh(x / limit)


@tfkit.prototype.op(body="tensorflow")
def softclip_tf(x, *, limit=3.0):
    return limit * tf.tanh(x / limit)


@tfkit.prototype.op
def double_no_grad(x):
    return x * 2


@tfkit.prototype.op(outputs=lambda a, b: [a, tf.TensorSpec(a.shape[:-1], a.dtype)])
def add_and_rowsum(a, b):
    total = a + b
    return total, total.sum(-1)


@tfkit.prototype.op
def cube(x):
    return x**3


@cube.reference
def _cube_reference(x):
    return x**3


@tfkit.prototype.op
def truncates(x):
    return x[..., :1]


@tfkit.prototype.op
def casts(x):
    return x.astype(np.float64)


@tfkit.prototype.op
def lookup(x):
    table = {}
    return table["missing"]


def _checked_scale_grad(dy, x, y, *, factor):
    return dy * factor


@tfkit.prototype.op(grad=_checked_scale_grad)
def checked_scale(x, *, factor=2.0):
    if x.ndim < 1:
        raise ValueError("x must have rank >= 1")
    return (x * factor).astype(x.dtype)


@tfkit.prototype.op(grad=lambda dy, x, y: dy * 3.0)
def wrong_grad(x):
    return x * 2.0


# Ops wrong in exactly one way, for opcheck's tests ----------------------------

# A gradient that raises KeyError (a LookupError, which is not "no gradient").
doubles_with_keyerror_grad = tfkit.Op("doubles_with_keyerror_grad")


@doubles_with_keyerror_grad.reference
def _doubles_with_keyerror_grad(x):
    @tf.custom_gradient
    def forward(x):
        def grad(dy):
            scales = {"x": 2.0}
            return dy * scales["input"]

        return 2.0 * x, grad

    return forward(x)


# A gradient that raises IndexError.
doubles_with_indexerror_grad = tfkit.Op("doubles_with_indexerror_grad")


@doubles_with_indexerror_grad.reference
def _doubles_with_indexerror_grad(x):
    @tf.custom_gradient
    def forward(x):
        def grad(dy):
            scales = [2.0]
            return dy * scales[1]

        return 2.0 * x, grad

    return forward(x)


def _prepare_xla_unaware(x):
    """A wrapper that fails under XLA with its own error (it says "XLA" but is
    not a tfkit.backend.XLAUnsupportedError)."""
    if tfkit.backend.in_xla_compilation():
        raise RuntimeError("XLA compilation hit an unsupported path in this wrapper")
    return (x,), {}


# No reference, and under jit_compile some other error than a clean refusal.
xla_unaware = tfkit.Op("xla_unaware", prepare=_prepare_xla_unaware)
xla_unaware.prototype(double_no_grad.implementations["prototype"])


def _repeat_last_rule(x):
    last = x.shape[-1]
    return tf.TensorSpec([*x.shape[:-1], None if last is None else 2 * last], x.dtype)


# Output rules that crash on unknown-rank inputs: TensorFlow's own ValueError
# (which mentions the rank), and a TypeError from a None rank.
@tfkit.prototype.op(outputs=_repeat_last_rule)
def repeat_last(x):
    return np.concatenate([x, x], axis=-1)


@tfkit.prototype.op(outputs=lambda x: tf.TensorSpec(x.shape[: x.shape.rank - 1], x.dtype))
def rowsum_crashes(x):
    return x.sum(-1)


def _rowsum_rule(x):
    if x.shape.rank is None:
        raise ValueError("rowsum needs x with a known rank")
    return tf.TensorSpec(x.shape[:-1], x.dtype)


# Refuses unknown rank cleanly.
@tfkit.prototype.op(outputs=_rowsum_rule)
def rowsum(x):
    return x.sum(-1)


def _float32_only(x):
    if x.dtype == np.float64:
        raise TypeError(f"x must be float32, got {x.dtype}")
    return x


# Refuses float64 (a dtype error); its gradient is right.
@tfkit.prototype.op(grad=lambda dy, x, y: dy * np.cos(x))
def float32_sin(x):
    return np.sin(_float32_only(x))


# Refuses float64 (a dtype error); its gradient is 1% off.
@tfkit.prototype.op(grad=lambda dy, x, y: dy * 2.02)
def float32_double_grad_1pct_off(x):
    return _float32_only(x) * 2.0


def _broken_in_float64(x):
    if x.dtype == np.float64:
        raise RuntimeError("the float64 kernel table is empty")
    return x * 2.0


# float64 raises something other than a dtype refusal; the gradient is 1% off.
@tfkit.prototype.op(grad=lambda dy, x, y: dy * 2.02)
def broken_in_float64(x):
    return _broken_in_float64(x)


# Right in float32, its gradient 1% off in float64 only.
@tfkit.prototype.op(grad=lambda dy, x, y: dy * (2.02 if x.dtype == np.float64 else 2.0))
def grad_wrong_in_float64(x):
    return x * 2.0
