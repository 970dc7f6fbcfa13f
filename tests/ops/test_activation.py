"""The activation family ops: bias + activation and gated activations against
NumPy float64 and keras.activations, opcheck, accuracy of dbias, bad inputs."""

import math

import keras
import numpy as np
import pytest
import tensorflow as tf

import tfkit
from tests.conftest import assert_close, kernel_and_shape_function_errors, run_python, to_numpy64
from tfkit.ops import activation
from tfkit.ops.activation import ACTIVATIONS
from tfkit.testing import opcheck

DTYPES = [tf.float32, tf.float64, tf.float16, tf.bfloat16]
SHAPES = [(1,), (5,), (3, 7), (4, 1), (0, 8), (3, 0), (2, 3, 6), (3, 2050)]
_erfc = np.vectorize(math.erfc, otypes=[np.float64])


def numpy_activation(name, z):
    """keras.activations' definitions, in float64."""
    z = np.asarray(z, np.float64)
    sigmoid = 1.0 / (1.0 + np.exp(-z))
    return {
        "linear": z,
        "relu": np.maximum(z, 0.0),
        "gelu": 0.5 * z * _erfc(-z / np.sqrt(2.0)),  # 1 + erf(u) without cancellation
        # 0.5 z (1 + tanh(u)) = z sigmoid(2u): the same, without cancellation for u < 0
        "gelu_tanh": z / (1.0 + np.exp(-2.0 * np.sqrt(2.0 / np.pi) * (z + 0.044715 * z**3))),
        "silu": z * sigmoid,
        "sigmoid": sigmoid,
        "tanh": np.tanh(z),
        "mish": z * np.tanh(np.logaddexp(0.0, z)),
    }[name]


def make_inputs(shape, dtype, seed=0):
    rng = np.random.default_rng(seed)
    x = tf.cast(rng.normal(0.0, 3.0, size=shape), dtype)
    bias = tf.cast(rng.normal(0.0, 1.0, size=shape[-1:]), dtype)
    return x, bias


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.name)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_bias_activation_matches_numpy_float64(dtype, shape):
    x, bias = make_inputs(shape, dtype)
    for name in ACTIVATIONS:
        expected = numpy_activation(name, to_numpy64(x) + to_numpy64(bias))
        for backend in ("compiled", "reference"):
            got = activation.bias_activation(x, bias, activation=name, backend=backend)
            assert got.dtype == dtype and got.shape == x.shape
            assert_close(got, expected, dtype, scale=reference_scale(backend, name, dtype))


def reference_scale(backend, name, dtype):
    """TensorFlow's float64 erf and tanh are off by up to ~5e-9: the
    reference's gelus get a looser float64 tolerance (the kernels do not)."""
    return 1e3 if backend == "reference" and name.startswith("gelu") and dtype == tf.float64 else 1.0


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.name)
@pytest.mark.parametrize("shape", [(2,), (3, 8), (0, 4), (2, 3, 10), (3, 4100)], ids=str)
def test_gated_activation_matches_numpy_float64(dtype, shape):
    x, _ = make_inputs(shape, dtype)
    a, b = np.split(to_numpy64(x), 2, axis=-1)
    for name in ACTIVATIONS:
        expected = numpy_activation(name, a) * b
        for backend in ("compiled", "reference"):
            got = activation.gated_activation(x, activation=name, backend=backend)
            assert got.dtype == dtype and got.shape == expected.shape
            assert_close(got, expected, dtype, scale=reference_scale(backend, name, dtype))


def test_float64_is_exact_to_rounding():
    """The kernels compute in double for float64 (closer to the exact values
    than TensorFlow's own float64 erf, which is off by ~5e-9)."""
    z = np.linspace(-8.0, 8.0, 4001)[None]
    for name in ACTIVATIONS:
        got = activation.bias_activation(z, np.zeros(z.shape[-1]), activation=name, backend="compiled")
        np.testing.assert_allclose(got.numpy(), numpy_activation(name, z), rtol=1e-13, atol=1e-15)


KERAS = {
    "relu": keras.activations.relu,
    "gelu": keras.activations.gelu,
    "gelu_tanh": lambda z: keras.activations.gelu(z, approximate=True),
    "silu": keras.activations.silu,
    "sigmoid": keras.activations.sigmoid,
    "tanh": keras.activations.tanh,
    "mish": keras.activations.mish,
    "linear": keras.activations.linear,
}


@pytest.mark.parametrize("name", ACTIVATIONS)
def test_matches_keras_activations(name):
    """float32, to Keras's own float32 rounding (its tanh-gelu cancels for
    negative inputs: an absolute error of up to ~3e-6 there)."""
    x, bias = make_inputs((64, 96), tf.float32)
    want = KERAS[name](x + bias).numpy()
    got = activation.bias_activation(x, bias, activation=name, backend="compiled").numpy()
    np.testing.assert_allclose(got, want, rtol=2e-6, atol=1e-5)
    a, b = tf.split(x, 2, axis=-1)
    gated = activation.gated_activation(x, activation=name, backend="compiled").numpy()
    np.testing.assert_allclose(gated, (KERAS[name](a) * b).numpy(), rtol=2e-6, atol=1e-5)


OPCHECK_CASES = [
    (tf.float64, (2, 3, 6)),
    (tf.float32, (64, 130)),
    (tf.float32, (0, 8)),
    (tf.float16, (8, 96)),
    (tf.bfloat16, (8, 96)),
]
HALF_TOLERANCE = {tf.float16: 4e-2, tf.bfloat16: 2.4e-1}
CHECKS = ["static_shapes", "eager_vs_graph", "reference", "gradients", "xla", "threads"]


@pytest.mark.parametrize("name", ACTIVATIONS)
@pytest.mark.parametrize("dtype,shape", OPCHECK_CASES, ids=lambda v: getattr(v, "name", str(v)))
def test_opcheck(name, dtype, shape):
    """Static shapes, eager vs graph (unknown dims and rank), compiled vs
    reference, numeric vs analytic gradients and against the reference's,
    XLA, and eight threads at once, for both ops."""
    x, bias = make_inputs(shape, dtype)
    tolerance = HALF_TOLERANCE.get(dtype)
    for op, args in ((activation.bias_activation, [x, bias]), (activation.gated_activation, [x])):
        report = opcheck(op, args, {"activation": name}, checks=CHECKS, atol=tolerance, rtol=tolerance)
        assert all(r.status == "passed" for r in report.results.values()), report


def test_opcheck_saved_model_and_bad_inputs():
    x, bias = make_inputs((4, 8), tf.float32)
    bad_bias = [
        ([tf.ones([2, 5]), tf.ones([4])], {}),
        ([tf.constant(1.0), tf.ones([1])], {}),
        ([tf.ones([2, 4], tf.int32), tf.ones([4], tf.int32)], {}),
        ([x, bias], {"activation": "softmax"}),
    ]
    report = opcheck(activation.bias_activation, [x, bias], checks=["saved_model", "bad_inputs"], bad_inputs=bad_bias)
    assert all(r.status == "passed" for r in report.results.values()), report
    bad_gated = [([tf.ones([2, 5])], {}), ([tf.constant(1.0)], {}), ([x], {"activation": "swish"})]
    report = opcheck(activation.gated_activation, [x], checks=["saved_model", "bad_inputs"], bad_inputs=bad_gated)
    assert all(r.status == "passed" for r in report.results.values()), report


def test_unknown_activation_lists_the_valid_ones():
    with pytest.raises(tf.errors.InvalidArgumentError, match="must be one of linear, relu, gelu, gelu_tanh, silu"):
        activation.bias_activation(tf.ones([2, 3]), tf.ones([3]), activation="softmax")


@pytest.mark.parametrize("backend", ["compiled", "reference"])
def test_odd_gated_width_is_an_error_naming_x_in_graphs_too(backend):
    @tf.function(input_signature=[tf.TensorSpec([None, None])])
    def gated(x):
        return activation.gated_activation(x, backend=backend)

    with pytest.raises(tf.errors.InvalidArgumentError, match="the last dimension of x must be even"):
        gated(tf.ones([2, 5]))
    with pytest.raises(tf.errors.InvalidArgumentError, match="the last dimension of x must be even"):
        activation.gated_activation(tf.ones([2, 5]), backend=backend)


# Each raw op with a bad static shape: the message its OpKernel gives, which
# its shape function must give too (not TensorFlow's "Dimensions must be equal").
STATIC_SHAPE_ERRORS = [
    (
        "bias must have shape [8] (the last dimension of x [2,8]), got shape [7]",
        lambda lib: lib.tfkit_bias_activation(tf.ones([2, 8]), tf.ones([7])),
    ),
    (
        "bias must have shape [8] (the last dimension of x [2,8]), got shape [1,8]",
        lambda lib: lib.tfkit_bias_activation(tf.ones([2, 8]), tf.ones([1, 8])),
    ),
    ("x must have rank >= 1, got shape []", lambda lib: lib.tfkit_bias_activation(tf.constant(1.0), tf.ones([1]))),
    (
        "dy must have the shape of x [2,8], got shape [2,7]",
        lambda lib: lib.tfkit_bias_activation_grad(tf.ones([2, 7]), tf.ones([2, 8]), tf.ones([8])),
    ),
    (
        "bias must have shape [8] (the last dimension of x [2,8]), got shape [9]",
        lambda lib: lib.tfkit_bias_activation_grad(tf.ones([2, 8]), tf.ones([2, 8]), tf.ones([9])),
    ),
    (
        "the last dimension of x must be even (2 * units: the halves [a, b]), got shape [2,5]",
        lambda lib: lib.tfkit_gated_activation(tf.ones([2, 5])),
    ),
    ("x must have rank >= 1, got shape []", lambda lib: lib.tfkit_gated_activation(tf.constant(1.0))),
    (
        "dy must have shape [2,4] (x's with its last dimension halved), got shape [2,8]",
        lambda lib: lib.tfkit_gated_activation_grad(tf.ones([2, 8]), tf.ones([2, 8])),
    ),
    (
        "the last dimension of x must be even (2 * units: the halves [a, b]), got shape [3]",
        lambda lib: lib.tfkit_gated_activation_grad(tf.ones([1]), tf.ones([3])),
    ),
]


@pytest.mark.parametrize("says,call", STATIC_SHAPE_ERRORS, ids=[case[0] for case in STATIC_SHAPE_ERRORS])
def test_shape_functions_name_the_argument_as_the_kernels_do(says, call):
    library = tfkit.load_library()
    kernel, shape_function = kernel_and_shape_function_errors(lambda: call(library))
    assert kernel == shape_function == says


@pytest.mark.parametrize("mode", ["eager", "graph"])
def test_an_empty_x_whose_other_sizes_multiply_past_int64(mode):
    """x [0, 2**62, 4]: no elements, and rows of 2**62 * 0."""
    library = tfkit.load_library()

    def all_ops(x, bias):
        y = library.tfkit_bias_activation(x, bias)
        dx, dbias = library.tfkit_bias_activation_grad(x, x, bias)
        gated = library.tfkit_gated_activation(x)
        return y, dx, dbias, gated, library.tfkit_gated_activation_grad(gated, x)

    run = tf.function(all_ops) if mode == "graph" else all_ops
    y, dx, dbias, gated, gated_dx = run(tf.zeros([0, 2**62, 4]), tf.ones([4]))
    assert y.shape == dx.shape == gated_dx.shape == (0, 2**62, 4) and gated.shape == (0, 2**62, 2)
    np.testing.assert_array_equal(dbias.numpy(), np.zeros([4]))


def test_dbias_is_accurate_over_many_rows():
    """dbias sums 2**20 rows: in fixed blocks summed in double, it matches
    float64 where a float32 running sum would drift."""
    rows, cols = 1 << 20, 4
    rng = np.random.default_rng(3)
    x = tf.constant(rng.normal(1.0, 1.0, size=(rows, cols)), tf.float32)
    bias = tf.constant(rng.normal(size=cols), tf.float32)
    dy = tf.constant(rng.uniform(0.5, 1.5, size=(rows, cols)), tf.float32)
    with tf.GradientTape() as tape:
        tape.watch(bias)
        y = activation.bias_activation(x, bias, activation="silu", backend="compiled")
    dbias = tape.gradient(y, bias, output_gradients=dy).numpy()
    z = to_numpy64(x) + to_numpy64(bias)
    s = 1.0 / (1.0 + np.exp(-z))
    want = (to_numpy64(dy) * s * (1.0 + z * (1.0 - s))).sum(0)
    np.testing.assert_allclose(dbias, want, rtol=2e-6)


def test_ops_are_exported_from_tfkit_ops():
    assert tfkit.ops.bias_activation is activation.bias_activation
    assert tfkit.ops.gated_activation is activation.gated_activation


@pytest.mark.parametrize("isa", ["baseline", "avx2"])
def test_every_cpu_build_of_the_loops_matches_numpy(isa):
    """The CPU loops are built for the baseline, AVX2 and AVX-512 and run in
    the widest the CPU has; TFKIT_CPU_ISA caps it, so each build is checked."""
    code = """
import numpy as np, tensorflow as tf
from tests.conftest import assert_close, kernel_and_shape_function_errors, run_python, to_numpy64
from tests.ops.test_activation import ACTIVATIONS, make_inputs, numpy_activation
from tfkit.ops import activation
for dtype in (tf.float32, tf.float64, tf.bfloat16):
    x, bias = make_inputs((5, 37), dtype)
    for name in ACTIVATIONS:
        got = activation.bias_activation(x, bias, activation=name, backend="compiled")
        assert_close(got, numpy_activation(name, to_numpy64(x) + to_numpy64(bias)), dtype)
        a, b = np.split(to_numpy64(x[:, :36]), 2, axis=-1)
        gated = activation.gated_activation(x[:, :36], activation=name, backend="compiled")
        assert_close(gated, numpy_activation(name, a) * b, dtype)
        grads = []
        for backend in ("compiled", "reference"):
            with tf.GradientTape() as tape:
                tape.watch([x, bias])
                y = activation.bias_activation(x, bias, activation=name, backend=backend)
                y = y * y + activation.gated_activation(x[:, :36], activation=name, backend=backend)[:, :1]
            grads.append(tape.gradient(y, [x, bias]))
        for ours, theirs in zip(*grads):  # float64: TensorFlow's own erf is the looser one
            assert_close(ours, to_numpy64(theirs), dtype, scale=1e4 if dtype == tf.float64 else 4.0)
print("ok")
"""
    result = run_python(code, env={"TFKIT_CPU_ISA": isa})
    assert result.returncode == 0 and "ok" in result.stdout, result.stderr[-3000:]


# The float format of each half type and float32: (mantissa bits, smallest
# normal exponent).
_FORMATS = {tf.float32: (23, -126), tf.float16: (10, -14), tf.bfloat16: (7, -126)}


def exact_activation_and_derivative(name, z):
    """Each activation and its derivative in float64, with their limits at
    +-inf (z's own float64 math would give inf * 0 = NaN there)."""
    from scipy import special

    z = np.asarray(z, np.float64)
    with np.errstate(all="ignore"):
        s, s_neg = special.expit(z), special.expit(-z)
        if name == "gelu":
            density = np.where(np.abs(z) > 40, 0.0, np.exp(-0.5 * z * z) / np.sqrt(2 * np.pi))
            f, d = z * special.ndtr(z), special.ndtr(z) + z * density
        elif name == "gelu_tanh":
            zc = np.clip(z, -30, 30)  # beyond, z sigmoid(2u) is z or 0 in float64
            u = np.sqrt(2 / np.pi) * (zc + 0.044715 * zc**3)
            du = np.sqrt(2 / np.pi) * (1 + 3 * 0.044715 * zc**2)
            f = np.where(z > 30, z, zc * special.expit(2 * u))
            d = special.expit(2 * u) + 2 * zc * du * special.expit(2 * u) * special.expit(-2 * u)
        elif name == "silu":
            f, d = z * s, s + z * s * s_neg
        elif name == "sigmoid":
            f, d = s, s * s_neg
        elif name == "tanh":
            f, d = np.tanh(z), 1 / np.cosh(np.clip(z, -400, 400)) ** 2
        elif name == "mish":
            softplus = np.logaddexp(0, z)
            f = z * np.tanh(softplus)
            d = np.tanh(softplus) + np.where(np.abs(z) > 1e300, 0.0, z * s / np.cosh(np.minimum(softplus, 400)) ** 2)
        elif name == "relu":
            f, d = np.maximum(z, 0), (z > 0) * 1.0
        else:
            f, d = z, np.ones_like(z)
    if name in ("gelu", "gelu_tanh", "silu", "mish"):  # z times a gate from 0 to 1
        f = np.where(np.isinf(z), np.maximum(z, 0.0), f)
        d = np.where(np.isinf(z), (z > 0) * 1.0, d)
    return f, d


def ulp_errors(got, want, dtype):
    """|got - want| in ulp of want in dtype. Results below the smallest
    normal count as exact when both are there: TensorFlow runs CPU kernels
    with denormals flushed to zero."""
    mantissa, min_exponent = _FORMATS[dtype]
    magnitude = np.abs(want)
    exponent = np.maximum(np.floor(np.log2(np.where(magnitude > 0, magnitude, 1.0))), min_exponent)
    with np.errstate(invalid="ignore"):
        errors = np.abs(got - want) / 2.0 ** (exponent - mantissa)
    tiny = 2.0**min_exponent
    exact = (np.isinf(got) & (got == want)) | ((magnitude < tiny) & (np.abs(got) < tiny))
    return np.where(exact, 0.0, errors)


@pytest.mark.parametrize("dtype", list(_FORMATS), ids=lambda d: d.name)
@pytest.mark.parametrize("name", ACTIVATIONS)
def test_every_activation_and_derivative_is_accurate_over_the_whole_float_range(name, dtype):
    """A logarithmic sweep from the smallest subnormal to the largest finite
    value, both signs, and +-inf: within 6 ulp (float32) or 1 ulp (the half
    types, computed in float32) of float64, or the exact limit. The
    derivatives of gelu, gelu_tanh, silu and mish cross zero near z = -1,
    where their two terms of about 1 cancel: there (|z| < 2) the error may
    instead be up to 1 ulp of 1."""
    mantissa, min_exponent = _FORMATS[dtype]
    magnitudes = np.logspace(np.log10(2.0 ** (min_exponent - mantissa)), np.log10(dtype.max), 4000)
    x = tf.cast(np.concatenate([-magnitudes[::-1], [0.0], magnitudes, [np.inf, -np.inf]])[None, :], dtype)
    z = to_numpy64(x)[0]
    bias = tf.zeros(x.shape[-1:], dtype)
    got = to_numpy64(activation.bias_activation(x, bias, activation=name, backend="compiled"))[0]
    library = tfkit._loader.load_library()
    grad, _ = library.tfkit_bias_activation_grad(tf.ones_like(x), x, bias, activation=name)
    want, want_grad = exact_activation_and_derivative(name, z)
    limit = 6.0 if dtype == tf.float32 else 1.0
    forward = ulp_errors(got, want, dtype)
    worst = forward.argmax()
    assert forward[worst] <= limit, f"{name}({z[worst]}) = {got[worst]}, not {want[worst]}"
    got_grad = to_numpy64(grad)[0]
    derivative = ulp_errors(got_grad, want_grad, dtype)
    cancelling = (np.abs(z) < 2) & (np.abs(got_grad - want_grad) <= 2.0**-mantissa)
    derivative = np.where(cancelling, 0.0, derivative)
    worst = derivative.argmax()
    assert derivative[worst] <= limit, f"{name}'({z[worst]}) = {got_grad[worst]}, not {want_grad[worst]}"
