import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf

ROOT = Path(__file__).resolve().parents[1]

# Tolerances (rtol, atol) of an output against a float64 NumPy computation.
TOLERANCES = {
    tf.float64: (1e-10, 1e-10),
    tf.float32: (1e-4, 1e-4),
    tf.float16: (1e-2, 1e-2),
    tf.bfloat16: (2e-2, 6e-2),
}


def to_numpy64(t) -> np.ndarray:
    return tf.cast(t, tf.float64).numpy()


def assert_close(actual, expected, dtype, scale: float = 1.0):
    rtol, atol = TOLERANCES[dtype]
    np.testing.assert_allclose(
        to_numpy64(actual), np.asarray(expected, np.float64), rtol=rtol * scale, atol=atol * scale
    )


def run_python(code: str, env: dict | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    """Runs `code` in a fresh interpreter with the project importable."""
    full_env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "3", **(env or {})}
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=full_env, timeout=timeout, cwd=ROOT
    )


@pytest.fixture(autouse=True)
def _seed():
    tf.random.set_seed(1234)
    np.random.seed(1234)
