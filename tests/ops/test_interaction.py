"""The interaction family: dot_interaction against a NumPy float64 version of
DLRM's dot interaction, the pair order, opcheck (gradients, graphs, XLA,
SavedModel), long-dimension accuracy, determinism, bad inputs."""

import numpy as np
import pytest
import tensorflow as tf

import tfkit
from tests.conftest import assert_close, kernel_and_shape_function_errors, to_numpy64
from tfkit.ops import interaction as ops
from tfkit.testing import opcheck

DTYPES = [tf.float32, tf.float64, tf.float16, tf.bfloat16]
BACKENDS = ["compiled", "reference"]


def numpy_dot_interaction(x, self_interaction=False):
    """Every pair's dot product in float64, pair by pair, rows i = 0, 1, ...,
    then columns j = 0, ..., i - 1 (through i with the self-interactions)."""
    x = np.asarray(x, np.float64)
    pairs = [(i, j) for i in range(x.shape[1]) for j in range(i + int(self_interaction))]
    out = np.zeros((x.shape[0], len(pairs)))
    for p, (i, j) in enumerate(pairs):
        out[:, p] = np.sum(x[:, i] * x[:, j], axis=-1)
    return out


def numpy_dot_interaction_grad(x, grad, self_interaction=False):
    """d(sum(grad * out)) / dx: each pair (i, j) adds grad * x_j to dx_i and
    grad * x_i to dx_j (2 grad x_i for i == j)."""
    x = np.asarray(x, np.float64)
    dx = np.zeros_like(x)
    pairs = [(i, j) for i in range(x.shape[1]) for j in range(i + int(self_interaction))]
    for p, (i, j) in enumerate(pairs):
        g = np.asarray(grad, np.float64)[:, p : p + 1]
        dx[:, i] += g * x[:, j]
        dx[:, j] += g * x[:, i]
    return dx


def random(shape, seed=0):
    return np.random.default_rng(seed).normal(size=shape)


SHAPES = [(3, 27, 128), (2, 1, 5), (4, 2, 3), (2, 5, 1), (0, 4, 3), (3, 33, 7), (2, 3, 0), (2, 0, 4)]


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.name)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("self_interaction", [False, True], ids=["pairs", "self"])
def test_matches_numpy_float64(dtype, shape, self_interaction):
    x = tf.cast(random(shape), dtype)
    want = numpy_dot_interaction(to_numpy64(x), self_interaction)
    grad = tf.cast(random(want.shape, 1), dtype)
    want_grad = numpy_dot_interaction_grad(to_numpy64(x), to_numpy64(grad), self_interaction)
    scale = np.sqrt(max(shape[2], 1))  # a dot product sums dim rounded products
    for backend in BACKENDS:
        with tf.GradientTape() as tape:
            tape.watch(x)
            got = ops.dot_interaction(x, self_interaction=self_interaction, backend=backend)
        assert got.dtype == dtype and got.shape == want.shape
        assert_close(got, want, dtype, scale)
        assert_close(tape.gradient(got, x, grad), want_grad, dtype, scale)


@pytest.mark.parametrize("backend", BACKENDS)
def test_the_pair_order(backend):
    """Features whose Gram matrix is x_i . x_j = 10 i + j (j < i), 100 + i
    on the diagonal: each output position names the pair it holds."""
    f = 4
    gram = np.array([[max(i, j) * 10 + min(i, j) if i != j else 100.0 + i for j in range(f)] for i in range(f)])
    x = np.linalg.cholesky(gram)[None]  # x x^T = gram
    got = ops.dot_interaction(x, backend=backend).numpy()[0]
    np.testing.assert_allclose(got, [10, 20, 21, 30, 31, 32], rtol=1e-9)
    got = ops.dot_interaction(x, self_interaction=True, backend=backend).numpy()[0]
    np.testing.assert_allclose(got, [100, 10, 101, 20, 21, 102, 30, 31, 32, 103], rtol=1e-9)


def test_pair_indices_are_the_row_major_lower_triangle():
    np.testing.assert_array_equal(ops.pair_indices(3), [3, 6, 7])
    np.testing.assert_array_equal(ops.pair_indices(3, self_interaction=True), [0, 3, 4, 6, 7, 8])


OPCHECK_CASES = [
    (tf.float64, (3, 6, 5), False),
    (tf.float64, (2, 4, 7), True),
    (tf.float32, (3, 27, 16), False),
    (tf.float16, (2, 5, 4), False),
    (tf.bfloat16, (2, 5, 4), True),
]
HALF_TOLERANCE = {tf.float16: 2e-2, tf.bfloat16: 1.5e-1}


@pytest.mark.parametrize("dtype,shape,self_interaction", OPCHECK_CASES, ids=str)
def test_opcheck(dtype, shape, self_interaction):
    """Static shapes, eager vs graph (unknown dims), compiled vs reference,
    numeric vs analytic gradients, XLA, threads."""
    checks = ["static_shapes", "eager_vs_graph", "reference", "gradients", "xla", "threads"]
    x = tf.cast(random(shape), dtype)
    tolerance = HALF_TOLERANCE.get(dtype)
    report = opcheck(
        ops.dot_interaction,
        [x],
        {"self_interaction": self_interaction},
        checks=checks,
        atol=tolerance,
        rtol=tolerance,
    )
    assert all(r.status == "passed" for r in report.results.values()), report


def test_opcheck_saved_model_and_bad_inputs():
    x = random((2, 4, 3))
    bad = [([x[0]], {}), ([x[None]], {}), ([x.astype(np.int32)], {}), ([np.float32(1.0)], {})]
    report = opcheck(ops.dot_interaction, [x], checks=["saved_model", "bad_inputs"], bad_inputs=bad)
    assert all(r.status == "passed" for r in report.results.values()), report


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("mode", ["eager", "graph"])
def test_bad_inputs_name_the_argument(backend, mode):
    def call(x):
        return ops.dot_interaction(x, backend=backend)

    run = tf.function(call) if mode == "graph" else call
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"features must have rank 3 \(\[batch, features, dim\]\)"):
        run(tf.ones([2, 3]))
    with pytest.raises(tf.errors.InvalidArgumentError, match="features must have a float dtype"):
        run(tf.ones([2, 3, 4], tf.int32))


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_rank_known_only_at_run_time_is_checked(backend):
    @tf.function(input_signature=[tf.TensorSpec(None)])
    def interact(x):
        return ops.dot_interaction(x, backend=backend)

    np.testing.assert_allclose(interact(tf.ones([2, 3, 4])).numpy(), np.full([2, 3], 4.0))
    with pytest.raises(tf.errors.InvalidArgumentError, match="features must have rank 3"):
        interact(tf.ones([2, 3]))


@pytest.mark.parametrize("backend", BACKENDS)
def test_unknown_dims_in_a_graph_and_under_xla(backend):
    x = tf.constant(random((3, 5, 4)), tf.float32)
    want = ops.dot_interaction(x, backend="reference").numpy()
    graph = tf.function(lambda t: ops.dot_interaction(t, backend=backend), input_signature=[tf.TensorSpec([None] * 3)])
    np.testing.assert_allclose(graph(x).numpy(), want, rtol=1e-5)
    xla = tf.function(lambda t: ops.dot_interaction(t, self_interaction=True), jit_compile=True)
    np.testing.assert_allclose(
        xla(x).numpy(), ops.dot_interaction(x, self_interaction=True, backend=backend).numpy(), rtol=1e-5
    )


def test_grad_op_checks_its_output_gradient():
    library = tfkit.load_library()
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"grad_output must have shape \[2,3\], got shape \[2,6\]"):
        library.tfkit_dot_interaction_grad(tf.ones([2, 3, 4]), tf.ones([2, 6]))
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"grad_output must have shape \[2,6\]"):
        library.tfkit_dot_interaction_grad(tf.ones([2, 3, 4]), tf.ones([2, 3]), self_interaction=True)


# Each raw op with bad static shapes: the message its OpKernel gives, which
# its shape function must give too.
STATIC_SHAPE_ERRORS = [
    ("features must have rank 3 ([batch, features, dim]), got shape [3,4]", [3, 4], None),
    ("features must have rank 3 ([batch, features, dim]), got shape [1,2,3,4]", [1, 2, 3, 4], None),
    ("grad_output must have shape [2,3], got shape [2,4]", [2, 3, 5], [2, 4]),
    ("grad_output must have shape [2,3], got shape [3]", [2, 3, 5], [3]),
]


@pytest.mark.parametrize("says,features,grad", STATIC_SHAPE_ERRORS, ids=[case[0] for case in STATIC_SHAPE_ERRORS])
def test_shape_functions_name_the_argument_as_the_kernels_do(says, features, grad):
    library = tfkit.load_library()
    calls = [lambda: library.tfkit_dot_interaction_grad(tf.ones(features), tf.ones(grad or [1]))]
    if grad is None:
        calls.append(lambda: library.tfkit_dot_interaction(tf.ones(features)))
    for call in calls:
        kernel, shape_function = kernel_and_shape_function_errors(call)
        assert kernel == shape_function == says


@pytest.mark.parametrize("mode", ["eager", "graph"])
def test_empty_inputs_with_huge_sizes(mode):
    """No elements, sizes whose products pass int64: [0, 2**31, 2**40] has
    2**61 - 2**30 pairs per item; [0, 2**33, 0] has more pairs than int64
    holds, which the rule refuses naming them."""
    library = tfkit.load_library()

    def both(x, grad):
        return library.tfkit_dot_interaction(x), library.tfkit_dot_interaction_grad(x, grad)

    run = tf.function(both, input_signature=[tf.TensorSpec(None)] * 2) if mode == "graph" else both
    pairs = 2**31 * (2**31 - 1) // 2
    out, grad = run(tf.zeros([0, 2**31, 2**40]), tf.zeros([0, pairs]))
    assert out.shape == (0, pairs) and grad.shape == (0, 2**31, 2**40)
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"the pairs of features \(F \(F - 1\) / 2 for F = "):
        run(tf.zeros([0, 2**33, 0]), tf.zeros([0]))


def test_long_dimension_is_accurate():
    """D = 100000 float32: each dot product is the float64 one to float32's
    rounding, though a running float32 sum would be off by far more."""
    x = random((2, 3, 100000), 5).astype(np.float32) + 1.0
    want = numpy_dot_interaction(x, True)
    got = ops.dot_interaction(x, self_interaction=True, backend="compiled").numpy()
    np.testing.assert_allclose(got, want, rtol=2e-7)


def test_deterministic_and_the_same_for_any_batch_split():
    """The same bits run after run, and for each item alone (how the
    threads split the batch does not matter)."""
    x = tf.constant(random((64, 27, 300), 3), tf.float32)
    grad = tf.constant(random((64, 351), 4), tf.float32)
    library = tfkit.load_library()
    runs = [library.tfkit_dot_interaction(x).numpy() for _ in range(3)]
    grads = [library.tfkit_dot_interaction_grad(x, grad).numpy() for _ in range(3)]
    for run, again in zip(runs[1:] + grads[1:], [runs[0]] * 2 + [grads[0]] * 2, strict=True):
        np.testing.assert_array_equal(run, again)
    np.testing.assert_array_equal(library.tfkit_dot_interaction(x[5:6]).numpy(), runs[0][5:6])
    np.testing.assert_array_equal(library.tfkit_dot_interaction_grad(x[7:8], grad[7:8]).numpy(), grads[0][7:8])
