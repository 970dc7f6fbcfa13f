import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf

from tfkit.tolerances import TOLERANCES as _TOLERANCE_TABLE

ROOT = Path(__file__).resolve().parents[1]


def _draws_independent_of_imports() -> None:
    """Hypothesis mixes the literals of the project's modules loaded so far
    into its draws, so a derandomized test's cases would depend on what the
    process imported before it (another test file, an example): the same
    test would see other cases in another pytest worker. An empty pool of
    such literals keeps the cases the same in every process (its test:
    tests/fuzz/test_draws.py, which fails when a new Hypothesis moves it)."""
    from hypothesis.internal.conjecture import providers

    if hasattr(providers, "_get_local_constants"):
        empty = providers.Constants()
        providers._get_local_constants = lambda: empty


_draws_independent_of_imports()

# Tolerances (rtol, atol) of an output against a float64 NumPy computation:
# the "numpy" column of tfkit's one tolerance table (tfkit/tolerances.py).
TOLERANCES = {tf.as_dtype(name): row.numpy for name, row in _TOLERANCE_TABLE.items()}


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


def project_bazel_flags() -> list[str]:
    """`make` arguments that give an `init` project's Bazel build the disk
    cache `make test` uses (TFKIT_BAZEL_DISK_CACHE): unchanged actions come
    from there."""
    cache = os.environ.get("TFKIT_BAZEL_DISK_CACHE")
    return [f"BAZEL_FLAGS=--disk_cache={cache}"] if cache else []


def missing_from_output(shown: str, printed: str) -> str | None:
    """The first line of a page's `shown` output that `printed` lacks, or
    None. Shown lines must appear in order, each as a whole printed line,
    where `...` stands for any text; a line that is only `...` stands for
    any lines."""
    lines = iter(printed.splitlines())
    for line in shown.splitlines():
        if line.strip() == "...":
            continue
        pattern = re.compile(".*?".join(map(re.escape, line.split("..."))))
        if not any(pattern.fullmatch(candidate) for candidate in lines):
            return line
    return None


# TensorFlow's decorations around an op's message: the node and function
# names, the op's signature and attrs, the registered kernels. They hold
# every argument's name, so a message is read without them.
_DECORATIONS = [
    re.compile(p, re.DOTALL)
    for p in (
        r" for '\{\{node .*",  # a shape function's error: the node and the input shapes
        r";\s*NodeDef: .*",
        r"\s*Registered (devices|kernels):.*",
        r"\s*All kernels registered for op .*",
        r"with these attrs: \[[^\]]*\]",
        r"\[\[.*?\]\]",
        r"\{\{[^{}]*\}\}",
        r"\[Op:[^\]]*\]",
        r"\s+name: \S*\s*$",
        r"^Graph execution error:",  # an error a tf.function raised when run
    )
]


def error_message(err: BaseException) -> str:
    """An error's own message: one line, without TensorFlow's decorations."""
    text = err.message if isinstance(err, tf.errors.OpError) else str(err)
    text = text.split("The op is created at:")[0]
    for pattern in _DECORATIONS:
        text = pattern.sub(" ", text)
    return " ".join(text.split())


def kernel_and_shape_function_errors(call) -> tuple[str, str]:
    """The messages of the InvalidArgumentError `call()` raises eagerly (an
    OpKernel's check) and of the ValueError it raises while building a graph
    (the op's shape function), without TensorFlow's framing."""
    with pytest.raises(tf.errors.InvalidArgumentError) as eager:
        call()
    with tf.Graph().as_default(), pytest.raises(ValueError) as graph:
        call()
    return error_message(eager.value), error_message(graph.value)


@pytest.fixture(autouse=True)
def _seed():
    tf.random.set_seed(1234)
    np.random.seed(1234)
