"""Accumulation accuracy of the norm family: large offsets, long rows, many
rows, thread-count independence and the epsilon rule."""

import numpy as np
import pytest
import tensorflow as tf

import tfkit
from tests.conftest import run_python
from tfkit.ops import norm

BACKENDS = ["compiled", "reference"]


def numpy_layer_norm_and_grads(x, gamma, beta, dy, epsilon=1e-5):
    """Float64 forward and gradients of layer normalization."""
    x, gamma, beta, dy = (np.asarray(a, np.float64) for a in (x, gamma, beta, dy))
    centered = x - x.mean(-1, keepdims=True)
    rstd = 1.0 / np.sqrt((centered**2).mean(-1, keepdims=True) + epsilon)
    xhat = centered * rstd
    g = dy * gamma
    dx = rstd * (g - g.mean(-1, keepdims=True) - xhat * (g * xhat).mean(-1, keepdims=True))
    return xhat * gamma + beta, dx, (dy * xhat).sum(0), dy.sum(0)


def layer_norm_and_grads(x, gamma, beta, dy, backend):
    with tf.GradientTape() as tape:
        tape.watch([x, gamma, beta])
        y = norm.layer_norm(x, gamma, beta, backend=backend)
    return (y, *tape.gradient(y, [x, gamma, beta], output_gradients=dy))


def max_relative_error(got, want):
    return np.abs(np.asarray(got, np.float64) - want).max() / np.abs(want).max()


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("offset", [0.0, 1e2, 1e3, 1e4, 1e5, 1e6])
def test_large_offsets(backend, offset):
    rng = np.random.default_rng(0)
    x = (rng.normal(offset, 1.0, size=(64, 1024))).astype(np.float32)
    gamma, beta, dy = (rng.normal(size=s).astype(np.float32) for s in ([1024], [1024], [64, 1024]))
    y, dx, dgamma, dbeta = layer_norm_and_grads(*map(tf.constant, (x, gamma, beta, dy)), backend)
    want_y, want_dx, want_dgamma, want_dbeta = numpy_layer_norm_and_grads(x, gamma, beta, dy)
    # Up to 1e4 the target is 1e-4; above it, growing no faster than the
    # float32 rounding of the offset.
    assert np.abs(y.numpy() - want_y).max() <= 1e-4 * max(1.0, offset / 1e4)
    for got, want in ((dx, want_dx), (dgamma, want_dgamma), (dbeta, want_dbeta)):
        assert max_relative_error(got, want) <= 1e-3 * max(1.0, offset / 1e4)


@pytest.mark.parametrize("op", ["layer_norm", "rms_norm"])
@pytest.mark.parametrize("backend", BACKENDS)
def test_long_float32_rows(op, backend):
    cols = 1 << 24
    x = np.random.default_rng(1).normal(size=(1, cols)).astype(np.float32)
    x64 = x.astype(np.float64)
    if op == "layer_norm":
        y = norm.layer_norm(x, np.ones(cols, np.float32), np.zeros(cols, np.float32), backend=backend)
        centered = x64 - x64.mean()
        want = centered / np.sqrt((centered**2).mean() + 1e-5)
    else:
        y = norm.rms_norm(x, np.ones(cols, np.float32), backend=backend)
        want = x64 / np.sqrt((x64**2).mean() + 1e-6)
    assert np.abs(y.numpy() - want).max() <= 1e-5


def test_long_float32_row_gradients():
    cols = 1 << 22
    rng = np.random.default_rng(2)
    x, dy = (rng.normal(3.0, 1.0, size=(1, cols)).astype(np.float32) for _ in range(2))
    gamma = rng.normal(size=cols).astype(np.float32)
    beta = np.zeros(cols, np.float32)
    _, dx, dgamma, _ = layer_norm_and_grads(*map(tf.constant, (x, gamma, beta, dy)), "compiled")
    _, want_dx, want_dgamma, _ = numpy_layer_norm_and_grads(x, gamma, beta, dy)
    assert max_relative_error(dx, want_dx) <= 1e-5
    assert max_relative_error(dgamma, want_dgamma) <= 1e-5


def test_the_mean_gradient_survives_a_large_rstd():
    """Rows of one feature: x - mean is 0 and rstd 1 / sqrt(epsilon), so dx
    is the gradient flowing into the mean, exactly; folded into mean(dy *
    gamma) it lost its last digits to rounding against dy * gamma."""
    library = tfkit.load_library()
    rows = 64
    x = tf.random.normal([rows, 1])
    _, mean, rstd = library.tfkit_layer_norm(x, tf.ones([1]), tf.zeros([1]), epsilon=1e-5, U=tf.float32)
    dmean, drstd = tf.random.normal([rows], stddev=0.3), tf.random.normal([rows])
    dy = tf.random.normal([rows, 1], stddev=3.0)
    dx, _, _ = library.tfkit_layer_norm_grad(dy, x, tf.ones([1]), mean, rstd, dmean, drstd)
    np.testing.assert_array_equal(dx.numpy()[:, 0], dmean.numpy())


@pytest.mark.slow
def test_dbeta_exact_for_many_rows():
    """2**25 rows of one column: a float32 running sum would stop at 2**24."""
    library = tfkit.load_library()
    rows = 1 << 25
    x = tf.random.normal([rows, 1])
    y, mean, rstd = library.tfkit_layer_norm(x, tf.ones([1]), tf.zeros([1]), epsilon=1e-5, U=tf.float32)
    zeros = tf.zeros([rows])
    _, dgamma, dbeta = library.tfkit_layer_norm_grad(tf.ones([rows, 1]), x, tf.ones([1]), mean, rstd, zeros, zeros)
    assert dbeta.numpy()[0] == float(rows)
    assert dgamma.numpy()[0] == 0.0


@pytest.mark.slow
def test_float16_row_longer_than_float32_lanes_can_count():
    """402,653,184 float16 ones: 16 float32 lanes would stop counting at 2**24
    each and give 1.2246 instead of 1."""
    cols = 402_653_184
    y = norm.rms_norm(tf.ones([1, cols], tf.float16), tf.ones([cols], tf.float16), backend="compiled")
    assert tf.reduce_min(y).numpy() == 1.0 and tf.reduce_max(y).numpy() == 1.0


THREADS_SCRIPT = """
import hashlib, sys, numpy as np, tensorflow as tf
tf.config.threading.set_intra_op_parallelism_threads({threads})
import tfkit
digest = hashlib.sha256()
for shape in [(3000, 300), (100000, 8), (5, 5000)]:
    rng = np.random.default_rng(sum(shape))
    x, dy = (tf.constant(rng.normal(2.0, 3.0, size=shape).astype(np.float32)) for _ in range(2))
    gamma, beta = (tf.constant(rng.normal(size=shape[-1]).astype(np.float32)) for _ in range(2))
    for op in (lambda: tfkit.ops.layer_norm(x, gamma, beta), lambda: tfkit.ops.rms_norm(x, gamma)):
        with tf.GradientTape() as tape:
            tape.watch([x, gamma, beta])
            y = op()
        grads = tape.gradient(y, [x, gamma, beta], output_gradients=dy)
        for t in [y, *grads]:
            if t is not None:
                digest.update(t.numpy().tobytes())
print('digest', digest.hexdigest())
"""


def test_results_do_not_depend_on_thread_count():
    digests = set()
    for threads in (1, 2, 4):
        result = run_python(THREADS_SCRIPT.format(threads=threads))
        assert result.returncode == 0, result.stderr[-3000:]
        digests.add(result.stdout.split("digest")[-1].strip())
    assert len(digests) == 1, digests


EPSILON_RULE = r"epsilon must be > 0, finite and a normal float32 \(>= 1.17549e-38\), got"
BAD_EPSILONS = {0.0: "0", -1e-3: "-0.001", 1e-40: "9.99995e-41", float("inf"): "inf", 1e39: "inf", float("nan"): "nan"}


@pytest.mark.parametrize("op", ["layer_norm", "rms_norm"])
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("graph", [False, True], ids=["eager", "graph"])
@pytest.mark.parametrize("epsilon", list(BAD_EPSILONS), ids=str)
def test_one_epsilon_rule(op, backend, graph, epsilon):
    def call(x):
        if op == "layer_norm":
            return norm.layer_norm(x, tf.ones([4]), tf.zeros([4]), epsilon=epsilon, backend=backend)
        return norm.rms_norm(x, tf.ones([4]), epsilon=epsilon, backend=backend)

    run = tf.function(call) if graph else call
    with pytest.raises(tf.errors.InvalidArgumentError, match=f"{EPSILON_RULE} {BAD_EPSILONS[epsilon]}$"):
        run(tf.ones([2, 4]))


@pytest.mark.parametrize("graph", [False, True], ids=["eager", "graph"])
def test_raw_ops_apply_the_same_epsilon_rule(graph):
    library = tfkit.load_library()

    def call(x):
        return library.tfkit_layer_norm(x, tf.ones([4]), tf.zeros([4]), epsilon=1e-40, U=tf.float32)[0]

    # Graph construction reports a shape function's error as a ValueError;
    # TensorFlow flushes the denormal attr to 0 before the eager kernel sees it.
    run = tf.function(call) if graph else call
    with pytest.raises((tf.errors.InvalidArgumentError, ValueError), match=EPSILON_RULE):
        run(tf.ones([2, 4]))


@pytest.mark.parametrize("backend", BACKENDS)
def test_smallest_normal_epsilon_is_accepted(backend):
    tiny = float(np.finfo(np.float32).tiny)
    y = norm.rms_norm(tf.constant([[3.0, 4.0]]), tf.ones([2]), epsilon=tiny, backend=backend)
    np.testing.assert_allclose(y.numpy(), [[3.0 / np.sqrt(12.5), 4.0 / np.sqrt(12.5)]], rtol=1e-6)
