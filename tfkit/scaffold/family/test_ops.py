"""The ${family} family: opcheck over dtypes and shapes, NumPy float64, bad inputs."""

import numpy as np
import pytest
import tensorflow as tf

from tfkit.ops.${family} import ${family}
from tfkit.testing import opcheck

DTYPES = [tf.float64, tf.float32, tf.float16, tf.bfloat16]
SHAPES = [(5,), (3, 7), (2, 3, 4), (0, 4), (1000,)]


def inputs(shape, dtype):
    return tf.cast(np.random.default_rng(0).normal(0.0, 4.0, size=shape), dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.name)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_opcheck(dtype, shape):
    checks = ["static_shapes", "eager_vs_graph", "reference", "gradients", "xla", "threads"]
    report = opcheck(${family}, [inputs(shape, dtype)], {"limit": 2.5}, checks=checks)
    assert all(r.status == "passed" for r in report.results.values()), report


def test_matches_numpy_float64():
    x = inputs((4, 9), tf.float64)
    np.testing.assert_allclose(${family}(x, limit=2.5).numpy(), x.numpy() / (1.0 + np.abs(x.numpy()) / 2.5), rtol=1e-12)


def test_saved_model_and_bad_inputs():
    bad = [([np.ones(3, np.int32)], {}), ([np.ones(3, np.float32)], {"limit": 0.0}), ([np.ones(3)], {"limit": np.inf})]
    report = opcheck(${family}, [inputs((3, 4), tf.float32)], checks=["saved_model", "bad_inputs"], bad_inputs=bad)
    assert all(r.status == "passed" for r in report.results.values()), report
