"""The framework-free CPU norm kernels, compiled alone (no TensorFlow header)."""

import ctypes
import subprocess

import numpy as np
import pytest

from tests.conftest import ROOT

D = np.ctypeslib.ndpointer(np.float64, flags="C_CONTIGUOUS")


def test_kernels_include_no_tensorflow_header():
    for path in (ROOT / "kernels").rglob("*"):
        if path.suffix in (".h", ".cc", ".cuh", ".inc"):
            assert "tensorflow/" not in path.read_text(), path


@pytest.fixture(scope="module")
def shim(tmp_path_factory):
    out = tmp_path_factory.mktemp("shim") / "norm_cpu_shim.so"
    subprocess.run(
        [
            "g++",
            "-std=c++17",
            "-O2",
            "-shared",
            "-fPIC",
            f"-I{ROOT}",
            str(ROOT / "tests/kernels/norm_cpu_shim.cc"),
            "-o",
            str(out),
        ],
        check=True,
    )
    lib = ctypes.CDLL(str(out))
    lib.norm_forward.argtypes = [ctypes.c_int, D, D, D, ctypes.c_long, ctypes.c_long, ctypes.c_double, D, D, D]
    lib.norm_backward.argtypes = [
        ctypes.c_int,
        D,
        D,
        D,
        D,
        D,
        D,
        D,
        ctypes.c_long,
        ctypes.c_long,
        ctypes.c_long,
        D,
        D,
        D,
    ]
    return lib


@pytest.mark.parametrize("center", [1, 0])
@pytest.mark.parametrize("rows,cols,shards", [(7, 33, 3), (1, 1, 1), (5, 100, 5), (0, 4, 1)])
def test_forward_and_backward_against_numpy(shim, center, rows, cols, shards):
    rng = np.random.default_rng(rows + cols)
    x, dy = rng.normal(1, 2, (rows, cols)), rng.normal(size=(rows, cols))
    gamma, beta = rng.normal(size=cols), rng.normal(size=cols)
    eps = 1e-5
    y, dx = np.empty_like(x), np.empty_like(x)
    mean, rstd = np.zeros(rows), np.empty(rows)
    dgamma, dbeta = np.empty(cols), np.zeros(cols)
    shim.norm_forward(center, x, gamma, beta, rows, cols, eps, y, mean, rstd)
    dmean, drstd = rng.normal(size=rows), rng.normal(size=rows)
    shim.norm_backward(center, dy, x, gamma, mean, rstd, dmean, drstd, rows, cols, shards, dx, dgamma, dbeta)

    mu = x.mean(-1, keepdims=True) if center else np.zeros((rows, 1))
    rs = 1 / np.sqrt(((x - mu) ** 2).mean(-1, keepdims=True) + eps)
    xhat = (x - mu) * rs
    g = dy * gamma
    expected_dx = rs * (g - (g.mean(-1, keepdims=True) if center else 0) - xhat * (g * xhat).mean(-1, keepdims=True))
    # d mean / dx = 1/n and d rstd / dx = -rstd^3 (x - mean) / n
    expected_dx += (dmean[:, None] / cols if center else 0) - drstd[:, None] * rs**3 * (x - mu) / cols
    np.testing.assert_allclose(y, xhat * gamma + (beta if center else 0), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(rstd, rs[:, 0], rtol=1e-12)
    np.testing.assert_allclose(dx, expected_dx, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(dgamma, (dy * xhat).sum(0), rtol=1e-10, atol=1e-12)
    if center:
        np.testing.assert_allclose(dbeta, dy.sum(0), rtol=1e-10, atol=1e-12)
