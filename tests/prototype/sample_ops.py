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
