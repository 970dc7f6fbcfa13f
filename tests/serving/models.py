"""Small SavedModels for the server tests, written in TensorFlow Serving's
layout (`base/<version>/`)."""

from __future__ import annotations

from pathlib import Path

import tensorflow as tf
from tensorflow.python.data.experimental.ops import testing as data_testing

import tfkit

SLEEP_MICROS = 1_000_000


class ServingTestModel(tf.Module):
    """Signatures covering what the server must handle: one input and one
    output, several named inputs and outputs (one a Tfkit> op), strings, a
    model that rejects bad values, a model call that fails, a scalar input,
    a fixed first dimension, and a slow call."""

    def __init__(self, offset: float):
        super().__init__()
        self.offset = tf.Variable(offset)
        self.gamma = tf.Variable(tf.ones([4]))
        self.beta = tf.Variable(tf.zeros([4]))

    @tf.function(input_signature=[tf.TensorSpec([None, 3], tf.float32, name="x")])
    def double(self, x):
        return {"y": 2.0 * x + self.offset}

    @tf.function(input_signature=[tf.TensorSpec([None, 4], tf.float32), tf.TensorSpec([None], tf.int32)])
    def multi(self, a, b):
        normed = tfkit.ops.layer_norm(a, self.gamma, self.beta, backend="compiled")
        return {"sum": tf.reduce_sum(a, axis=1) + tf.cast(b, tf.float32), "normed": normed}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
    def text(self, s):
        return {"length": tf.strings.length(s), "upper_bytes": tf.strings.upper(s)}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.float32)])
    def checked(self, x):
        with tf.control_dependencies([tf.debugging.assert_non_negative(x, message="x must be >= 0")]):
            return {"root": tf.sqrt(x)}

    @tf.function(input_signature=[tf.TensorSpec([2], tf.float32)])
    def pair(self, x):
        return {"swapped": tf.reverse(x, [0])}

    @tf.function(input_signature=[tf.TensorSpec([], tf.string)])
    def read(self, path):
        return {"contents_bytes": tf.io.read_file(path)}  # NotFoundError for a missing file

    @tf.function(input_signature=[tf.TensorSpec([None], tf.float32), tf.TensorSpec([], tf.float32)])
    def scale(self, x, factor):
        return {"scaled": x * factor}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.float32)])
    def slow(self, x):
        waited = tf.data.Dataset.from_tensors(x).apply(data_testing.sleep(SLEEP_MICROS))
        return {"same": waited.get_single_element()}


SIGNATURES = {"serving_default", "multi", "text", "checked", "slow", "scale", "read", "pair"}


def export_version(base: Path, version: int, offset: float) -> Path:
    """Writes version `version` of the test model, whose `y` is 2x + offset."""
    model = ServingTestModel(offset)
    path = Path(base) / str(version)
    tf.saved_model.save(
        model,
        str(path),
        signatures={
            "serving_default": model.double,
            "multi": model.multi,
            "text": model.text,
            "checked": model.checked,
            "slow": model.slow,
            "scale": model.scale,
            "read": model.read,
            "pair": model.pair,
        },
    )
    return path


class CallbackModel(tf.Module):
    """A model holding a Python callback (tf.py_function), which no server can run."""

    @tf.function(input_signature=[tf.TensorSpec([None], tf.float32)])
    def serve(self, x):
        return {"y": tf.py_function(lambda v: v * 2, [x], tf.float32)}


def export_callback_version(base: Path, version: int) -> Path:
    model = CallbackModel()
    path = Path(base) / str(version)
    tf.saved_model.save(model, str(path), signatures={"serving_default": model.serve})
    return path
