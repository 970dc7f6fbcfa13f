"""tfkit_kernels, the framework-free kernels as a Python module: every
family's CPU functions against NumPy float64, against the TensorFlow ops
(the same kernels: the same bits), and its checks of what it is given."""

import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from tests.conftest import ROOT
from tests.ops.test_activation import ACTIVATIONS, numpy_activation
from tests.ops.test_attention import numpy_attention
from tests.ops.test_deform_conv import make_inputs, numpy_deform_conv2d
from tests.ops.test_embedding import numpy_embedding_bag
from tests.ops.test_interaction import numpy_dot_interaction, numpy_dot_interaction_grad
from tests.ops.test_norm import numpy_norm
from tests.ops.test_resampling import make_warp, numpy_dense_image_warp, numpy_resampler
from tests.ops.test_rotary import numpy_rope
from tfkit import _loader
from tfkit.ops.embedding import COMBINERS


@pytest.fixture(scope="module")
def kernels():
    built = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "build_kernels_module.py")], capture_output=True, text=True, timeout=600
    )
    assert built.returncode == 0, built.stderr[-3000:]
    spec = importlib.util.spec_from_file_location("tfkit_kernels", built.stdout.strip().splitlines()[-1])
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def library():
    return _loader.load_library()


def rng_normal(shape, dtype, seed=0, loc=0.0):
    return np.random.default_rng(seed).normal(loc, 2.0, size=shape).astype(dtype)


DTYPES = [np.float32, np.float64]


def assert_same_bits(ours, theirs):
    """The same bits, but for results made from subnormal intermediates
    (below 1000x the smallest normal): TensorFlow runs its kernels with
    subnormals flushed to zero, this module does not."""
    theirs = np.asarray(theirs)
    tiny = np.finfo(theirs.dtype).tiny * 1e3
    flushed = np.where(np.abs(ours) < tiny, np.zeros_like(ours), ours)
    np.testing.assert_array_equal(flushed, np.where(np.abs(theirs) < tiny, np.zeros_like(theirs), theirs))
TOL = {np.float32: 1e-5, np.float64: 1e-12}


@pytest.mark.parametrize("dtype", DTYPES)
def test_norms_match_numpy_and_the_ops(kernels, library, dtype):
    x, dy = rng_normal((37, 129), dtype, 1, loc=3.0), rng_normal((37, 129), dtype, 2)
    gamma, beta = rng_normal(129, dtype, 3), rng_normal(129, dtype, 4)
    dstat = rng_normal(37, dtype, 5)
    u = tf.as_dtype(dtype)
    y, mean, rstd = kernels.layer_norm(x, gamma, beta, 1e-5)
    np.testing.assert_allclose(y, numpy_norm("layer_norm", x, gamma, beta), rtol=TOL[dtype] * 10, atol=TOL[dtype] * 10)
    for ours, theirs in zip((y, mean, rstd), library.tfkit_layer_norm(x, gamma, beta, epsilon=1e-5, U=u)):
        assert_same_bits(ours, theirs)
    grads = kernels.layer_norm_grad(dy, x, gamma, mean, rstd, dstat, dstat)
    for ours, theirs in zip(grads, library.tfkit_layer_norm_grad(dy, x, gamma, mean, rstd, dstat, dstat)):
        assert_same_bits(ours, theirs)
    y, rstd = kernels.rms_norm(x, gamma, 1e-6)
    np.testing.assert_allclose(y, numpy_norm("rms_norm", x, gamma), rtol=TOL[dtype] * 10, atol=TOL[dtype] * 10)
    for ours, theirs in zip((y, rstd), library.tfkit_rms_norm(x, gamma, epsilon=1e-6, U=u)):
        assert_same_bits(ours, theirs)
    grads = kernels.rms_norm_grad(dy, x, gamma, rstd, dstat)
    for ours, theirs in zip(grads, library.tfkit_rms_norm_grad(dy, x, gamma, rstd, dstat)):
        assert_same_bits(ours, theirs)


@pytest.mark.parametrize("name", ACTIVATIONS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_activations_match_numpy_and_the_ops(kernels, library, name, dtype):
    assert kernels.ACTIVATIONS == ACTIVATIONS
    assert kernels.COMBINERS == COMBINERS and kernels.BOUNDARIES == ("zeros", "clamp")
    x, bias, dy = rng_normal((70, 66), dtype, 1), rng_normal(66, dtype, 2), rng_normal((70, 66), dtype, 3)
    y = kernels.bias_activation(x, bias, name)
    want = numpy_activation(name, x.astype(np.float64) + bias)
    np.testing.assert_allclose(y, want, rtol=TOL[dtype] * 10, atol=TOL[dtype] * 10)
    assert_same_bits(y, library.tfkit_bias_activation(x, bias, activation=name))
    for ours, theirs in zip(kernels.bias_activation_grad(dy, x, bias, name),
                            library.tfkit_bias_activation_grad(dy, x, bias, activation=name)):  # fmt: skip
        assert_same_bits(ours, theirs)
    gated = kernels.gated_activation(x, name)
    a, b = np.split(x.astype(np.float64), 2, axis=-1)
    np.testing.assert_allclose(gated, numpy_activation(name, a) * b, rtol=TOL[dtype] * 10, atol=TOL[dtype] * 10)
    assert_same_bits(gated, library.tfkit_gated_activation(x, activation=name))
    dgated = kernels.gated_activation_grad(dy[:, :33].copy(), x, name)
    assert_same_bits(dgated, library.tfkit_gated_activation_grad(dy[:, :33], x, activation=name))


@pytest.mark.parametrize("interleaved", [False, True])
@pytest.mark.parametrize("dtype", DTYPES)
def test_rotary_matches_numpy_and_the_op(kernels, library, dtype, interleaved):
    x = rng_normal((2, 9, 3, 16), dtype)
    positions = (np.arange(9, dtype=dtype) + 4)[None]
    exponents = tf.range(0, 16, 2, dtype=dtype) / 16
    inv_freq = tf.pow(tf.constant(10000, dtype), -exponents).numpy()
    y = kernels.rotary_embedding(x, positions, inv_freq, interleaved)
    want = numpy_rope(x, positions, interleaved=interleaved, angle_dtype=dtype)
    np.testing.assert_allclose(y, want, rtol=TOL[dtype] * 10, atol=TOL[dtype] * 10)
    assert_same_bits(y, library.tfkit_rotary_embedding(x, positions, inv_freq, interleaved=interleaved))
    back = kernels.rotary_embedding_grad(y, positions, inv_freq, interleaved)
    np.testing.assert_allclose(back, x, rtol=TOL[dtype] * 10, atol=TOL[dtype] * 10)


@pytest.mark.parametrize("dtype", DTYPES)
def test_attention_matches_numpy_and_the_op(kernels, library, dtype):
    """Forward and gradients: the op's bits, whose kernels these are."""
    shapes = [(2, 40, 4, 8), (2, 70, 2, 8), (2, 70, 2, 8)]
    q, k, v = (rng_normal(shape, dtype, seed) for seed, shape in enumerate(shapes))
    bias = rng_normal((1, 4, 40, 1), dtype, 3)
    mask = np.random.default_rng(4).uniform(size=(2, 1, 1, 70)) < 0.6
    attrs = {"is_causal": True, "dropout_rate": 0.2, "seed": (5, 6)}
    raw = {"default_scale": True, "is_causal": True, "dropout_rate": 0.2, "has_bias": True, "has_mask": True}
    out, lse = kernels.dot_product_attention(q, k, v, bias, mask, None, **attrs)
    op_out, op_lse = library.tfkit_dot_product_attention(q, k, v, bias, mask, np.array([5, 6]), U=dtype, **raw)
    assert_same_bits(out, op_out)
    assert_same_bits(lse, op_lse)
    plain, _ = kernels.dot_product_attention(q, k, v, bias, mask, None, is_causal=True)
    want = numpy_attention(q, k, v, bias, mask, None, True)
    np.testing.assert_allclose(plain, want, rtol=TOL[dtype] * 10, atol=TOL[dtype] * 10)
    dout = rng_normal(out.shape, dtype, 7)
    grads = kernels.dot_product_attention_grad(dout, q, k, v, out, lse, bias, mask, None, **attrs)
    seed = np.array([5, 6])
    op_grads = library.tfkit_dot_product_attention_grad(dout, q, k, v, bias, mask, seed, op_out, op_lse, **raw)
    for ours, theirs in zip(grads, op_grads, strict=True):
        assert_same_bits(ours, theirs)


@pytest.mark.parametrize("dtype", DTYPES)
def test_resampler_matches_numpy_and_the_op(kernels, library, dtype):
    data = rng_normal((2, 5, 6, 3), dtype)
    warp = make_warp(2, (4, 7), 5, 6).astype(dtype)
    out = kernels.resampler(data, warp)
    np.testing.assert_allclose(out, numpy_resampler(data, warp), rtol=TOL[dtype], atol=TOL[dtype])
    assert_same_bits(out, library.tfkit_resampler(data, warp))
    grad = rng_normal(out.shape, dtype, seed=1)
    for ours, theirs in zip(kernels.resampler_grad(data, warp, grad), library.tfkit_resampler_grad(data, warp, grad)):
        assert_same_bits(ours, theirs)
    rows, cols = np.meshgrid(np.arange(5), np.arange(6), indexing="ij")
    flow = rng_normal((2, 5, 6, 2), dtype, seed=2)
    query = np.stack([cols - flow[..., 1], rows - flow[..., 0]], -1).astype(dtype)
    warped = kernels.resampler(data, query, "clamp")
    np.testing.assert_allclose(warped, numpy_dense_image_warp(data, flow), rtol=TOL[dtype] * 10, atol=TOL[dtype] * 10)


@pytest.mark.parametrize("dtype", DTYPES)
def test_deform_conv2d_matches_numpy_and_the_op(kernels, library, dtype):
    attrs = {"strides": [1, 2], "padding": "same", "dilations": [2, 1], "groups": 2, "offset_groups": 2}
    x, offsets, kernel, mask = (t.astype(dtype) for t in make_inputs((2, 6, 5, 4), (3, 2, 2, 4), (1, 2), "same",
                                                                    (2, 1), 2))
    out = kernels.deform_conv2d(x, offsets, mask, kernel, **attrs)
    want = numpy_deform_conv2d(x, offsets, kernel, mask, **attrs)
    np.testing.assert_allclose(out, want, rtol=TOL[dtype] * 10, atol=TOL[dtype] * 10)
    assert_same_bits(out, library.tfkit_deform_conv2d(x, offsets, mask, kernel, **attrs))
    grad = rng_normal(out.shape, dtype, seed=1)
    ours = kernels.deform_conv2d_grad(x, offsets, mask, kernel, grad, **attrs)
    for mine, theirs in zip(ours, library.tfkit_deform_conv2d_grad(x, offsets, mask, kernel, grad, **attrs)):
        assert_same_bits(mine, theirs)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("self_interaction", [False, True])
def test_dot_interaction_matches_numpy_and_the_op(kernels, library, dtype, self_interaction):
    x = rng_normal((3, 27, 40), dtype)
    out = kernels.dot_interaction(x, self_interaction)
    want = numpy_dot_interaction(x, self_interaction)
    np.testing.assert_allclose(out, want, rtol=TOL[dtype], atol=TOL[dtype] * 10)
    assert_same_bits(out, library.tfkit_dot_interaction(x, self_interaction=self_interaction))
    grad = rng_normal(out.shape, dtype, seed=1)
    dx = kernels.dot_interaction_grad(x, grad, self_interaction)
    want = numpy_dot_interaction_grad(x, grad, self_interaction)
    np.testing.assert_allclose(dx, want, rtol=TOL[dtype], atol=TOL[dtype] * 10)
    assert_same_bits(dx, library.tfkit_dot_interaction_grad(x, grad, self_interaction=self_interaction))


@pytest.mark.parametrize("combiner", ["sum", "mean", "sqrtn"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_embedding_bag_matches_numpy_and_the_op(kernels, library, dtype, combiner):
    params, dy = rng_normal((11, 6), dtype, 1), rng_normal((4, 6), dtype, 2)
    ids = np.array([1, 2, 2, 10, 0, 3, 5], np.int64)
    splits = np.array([0, 3, 3, 4, 7], np.int64)
    weights = rng_normal(7, dtype, 3)
    bags = [ids[a:b] for a, b in zip(splits[:-1], splits[1:])]
    y = kernels.embedding_bag(ids, splits, params, weights, combiner)
    want = numpy_embedding_bag(bags, params, [weights[a:b] for a, b in zip(splits[:-1], splits[1:])], combiner)
    np.testing.assert_allclose(y, want, rtol=TOL[dtype] * 10, atol=TOL[dtype] * 10)
    assert_same_bits(y, library.tfkit_embedding_bag(ids, splits, params, weights, combiner=combiner))
    grads = kernels.embedding_bag_grad(ids, splits, params, weights, dy, combiner)
    want_grads = library.tfkit_embedding_bag_grad(ids, splits, params, weights, dy, combiner=combiner)
    for ours, theirs in zip(grads, want_grads, strict=True):
        assert_same_bits(ours, theirs)
    unweighted = kernels.embedding_bag(ids, splits, params, None, combiner)
    assert_same_bits(unweighted, library.tfkit_embedding_bag(ids, splits, params, params[:0, 0], combiner=combiner))
    assert kernels.embedding_bag_grad(ids, splits, params, None, dy, combiner)[1] is None


TABLE = np.ones((4, 2))
ATTENTION = (np.ones((2, 3, 4, 8)), np.ones((2, 5, 2, 8)), np.ones((2, 5, 2, 8)))
DEFORM = (np.ones((1, 5, 5, 2)), np.zeros((1, 3, 3, 18)), np.ones((1, 3, 3, 9)), np.ones((3, 3, 2, 2)))


@pytest.mark.parametrize(
    "call,error,says",
    [
        (lambda k: k.layer_norm([[1.0, 2.0]], np.ones(2), np.ones(2)), TypeError, "x must be a NumPy array"),
        (lambda k: k.layer_norm(np.ones((2, 2), np.int32), np.ones(2), np.ones(2)), TypeError, "float32 or float64"),
        (lambda k: k.layer_norm(np.ones((4, 4))[:, ::2], np.ones(2), np.ones(2)), ValueError, "C-contiguous"),
        (
            lambda k: k.layer_norm(np.ones((2, 3)), np.ones(4), np.ones(3)),
            ValueError,
            r"gamma must have shape \[3\], got shape \[4\]$",
        ),
        (lambda k: k.layer_norm(np.ones((2, 3)), np.ones(3, np.float32), np.ones(3)), TypeError, "gamma must have dtype"),
        (lambda k: k.layer_norm(np.ones((2, 3)), np.ones(3), np.ones(3), 0.0), ValueError, "epsilon must be > 0"),
        (lambda k: k.layer_norm(np.float64(1.0), np.ones(1), np.ones(1)), TypeError, "x must be a NumPy array"),
        (lambda k: k.bias_activation(np.ones((2, 3)), np.ones(3), "softmax"), ValueError, "must be one of linear"),
        (lambda k: k.gated_activation(np.ones((2, 3))), ValueError, "must be even"),
        (
            lambda k: k.gated_activation_grad(np.ones((2, 3)), np.ones((2, 4))),
            ValueError,
            r"dy must have shape \[2,2\], got shape \[2,3\]$",
        ),
        (lambda k: k.rotary_embedding(np.ones((2, 3, 4)), np.ones((1, 2)), np.ones(2)), ValueError, "positions must"),
        (lambda k: k.rotary_embedding(np.ones((2, 3, 4)), np.ones((1, 3)), np.ones(3)), ValueError, "inv_freq must"),
        (lambda k: k.rotary_embedding(np.ones((3, 4)), np.ones((1, 3)), np.ones(2)), ValueError, "rank >= 3"),
        (lambda k: k.resampler(np.ones((1, 2, 2, 1)), np.ones((1, 3))), ValueError, r"warp must have shape"),
        (lambda k: k.resampler(np.ones((1, 2, 2, 1)), np.ones((2, 2))), ValueError, r"warp's batch dimension"),
        (lambda k: k.resampler(np.ones((1, 2, 2, 1)), np.ones((1, 2)), "wrap"), ValueError, "boundary must be"),
        (lambda k: k.resampler_grad(np.ones((1, 2, 2, 1)), np.ones((1, 2)), np.ones((1, 2))), ValueError, "grad must"),
        (lambda k: k.deform_conv2d(*DEFORM[:3], np.ones((3, 3, 1, 2))), ValueError, "kernel must have shape"),
        (lambda k: k.deform_conv2d(*DEFORM, padding="full"), ValueError, "padding must be one of valid, same"),
        (lambda k: k.deform_conv2d(*DEFORM, strides=[0, 1]), ValueError, "strides must be two integers >= 1"),
        (lambda k: k.deform_conv2d_grad(*DEFORM, np.ones((1, 3, 3, 3))), ValueError, "grad must have shape"),
        (lambda k: k.dot_interaction(np.ones((2, 3))), ValueError, r"features must have rank 3"),
        (lambda k: k.dot_interaction(np.ones((2, 3, 4), np.int32)), TypeError, "features must have dtype"),
        (
            lambda k: k.dot_interaction_grad(np.ones((2, 3, 4)), np.ones((2, 6))),
            ValueError,
            r"grad must have shape \[2,3\]",
        ),
        (lambda k: k.embedding_bag(np.array([0, 4]), np.array([0, 2]), TABLE), ValueError, r"\[0, 4\) .*, got 4"),
        (lambda k: k.embedding_bag(np.array([-1]), np.array([0, 1]), TABLE), ValueError, "got -1"),
        (lambda k: k.embedding_bag(np.array([0]), np.array([0, 2]), TABLE), ValueError, "row_splits"),
        (lambda k: k.embedding_bag(np.array([0]), np.array([0, 1]), TABLE, np.ones(2)), ValueError, "weights"),
        (lambda k: k.embedding_bag(np.array([0]), np.array([0, 1]), TABLE, None, "max"), ValueError, "combiner"),
        (lambda k: k.dot_product_attention(ATTENTION[0], *[np.ones((2, 5, 3, 8))] * 2), ValueError, "divides the"),
        (lambda k: k.dot_product_attention(np.ones((3, 4, 8)), *ATTENTION[1:]), ValueError, "query must have rank 4"),
        (lambda k: k.dot_product_attention(*ATTENTION, mask=np.ones(5, np.float64)), TypeError, "mask must have dtype"),
        (lambda k: k.dot_product_attention(*ATTENTION, bias=np.ones((1, 1, 1, 4))), ValueError, "bias must be broad"),
        (lambda k: k.dot_product_attention(*ATTENTION, dropout_rate=1.0), ValueError, "dropout_rate must be in"),
    ],
)
def test_bad_arguments_raise_python_errors_naming_them(kernels, call, error, says):
    with pytest.raises(error, match=says):
        call(kernels)


class FakeGpuArray:
    """Claims to be a GPU array, but points to host memory (or has a bad dtype)."""

    def __init__(self, array, typestr=None):
        self.array = array
        self.__cuda_array_interface__ = {
            "shape": array.shape,
            "typestr": typestr or array.dtype.str,
            "data": (array.ctypes.data, False),
            "version": 3,
            "strides": None,
        }


@pytest.mark.skipif(shutil.which("nvcc") is None and not Path("/usr/local/cuda/bin/nvcc").exists(), reason="no nvcc")
def test_cuda_launchers_never_get_a_bad_pointer(kernels):
    assert kernels.has_cuda
    x = np.ones((2, 4), np.float32)
    with pytest.raises(TypeError, match="x must be a GPU array"):
        kernels.cuda.layer_norm(x, x[0], x[0], x, x[:, 0], x[:, 0])
    with pytest.raises(ValueError, match="x does not point to GPU memory"):
        kernels.cuda.bias_activation(FakeGpuArray(x), FakeGpuArray(x[0]), FakeGpuArray(x))
    with pytest.raises(TypeError, match="x must have a float16, bfloat16, float32 or float64 dtype"):
        kernels.cuda.gated_activation(FakeGpuArray(x, "<i4"), FakeGpuArray(x))
    with pytest.raises(ValueError, match="activation must be one of"):
        kernels.cuda.bias_activation(FakeGpuArray(x), FakeGpuArray(x[0]), FakeGpuArray(x), "softmax")
    with pytest.raises(ValueError, match="features does not point to GPU memory"):
        kernels.cuda.dot_interaction(FakeGpuArray(np.ones((2, 4, 3), np.float32)), FakeGpuArray(x))
