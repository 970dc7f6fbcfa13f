"""The rotary family: rotary_embedding against NumPy float64 and keras_hub's
RotaryEmbedding, opcheck, positions and axes, bad inputs."""

import re

import numpy as np
import pytest
import tensorflow as tf

import tfkit
from tests.conftest import assert_close, kernel_and_shape_function_errors, to_numpy64
from tests.ops.keras_hub_rope import keras_hub_rotary_embedding
from tfkit.ops import rotary
from tfkit.testing import opcheck

DTYPES = [tf.float32, tf.float64, tf.float16, tf.bfloat16]
KerasHubRotaryEmbedding = keras_hub_rotary_embedding()
needs_keras_hub = pytest.mark.skipif(KerasHubRotaryEmbedding is None, reason="keras-hub is not installed")


def numpy_rope(x, positions, max_wavelength=10000.0, scaling_factor=1.0, interleaved=False, angle_dtype=np.float32):
    """x [batch, seq, ..., dim] in float64; positions [1 or batch, seq]. The
    angles are rounded as the op (and keras_hub) round them: TensorFlow's
    pow for the frequencies, one product in angle_dtype; the rest is float64."""
    x = np.asarray(x, np.float64)
    dim = x.shape[-1]
    exponents = tf.range(0, dim, 2, dtype=angle_dtype) / tf.cast(dim, angle_dtype)
    inv_freq = (tf.pow(tf.cast(max_wavelength, angle_dtype), -exponents) / tf.cast(scaling_factor, angle_dtype)).numpy()
    angles = (np.asarray(positions, angle_dtype)[:, :, None] * inv_freq).astype(np.float64)
    angles = angles.reshape(angles.shape[:2] + (1,) * (x.ndim - 3) + angles.shape[-1:])
    cos, sin = np.cos(angles), np.sin(angles)
    if interleaved:
        a, b = x[..., 0::2], x[..., 1::2]
        return np.stack([a * cos - b * sin, b * cos + a * sin], -1).reshape(x.shape)
    a, b = np.split(x, 2, axis=-1)
    return np.concatenate([a * cos - b * sin, b * cos + a * sin], -1)


def make_x(shape, dtype, seed=0):
    return tf.cast(np.random.default_rng(seed).normal(size=shape), dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.name)
@pytest.mark.parametrize("shape", [(2, 5, 8), (2, 7, 3, 6), (1, 4, 2, 3, 10), (3, 1, 2), (0, 4, 6), (2, 0, 4)], ids=str)
@pytest.mark.parametrize("interleaved", [False, True])
def test_matches_numpy_float64(dtype, shape, interleaved):
    x = make_x(shape, dtype)
    angle_dtype = np.float64 if dtype == tf.float64 else np.float32
    positions = (np.arange(shape[1]) + 3)[None]
    want = numpy_rope(to_numpy64(x), positions, interleaved=interleaved, angle_dtype=angle_dtype)
    for backend in ("compiled", "reference"):
        got = rotary.rotary_embedding(x, start_index=3, interleaved=interleaved, backend=backend)
        assert got.dtype == dtype and got.shape == x.shape
        assert_close(got, want, dtype)


def test_long_sequences_keep_their_angles():
    """Positions up to 100000: the float32 angle is rounded once, as in
    keras_hub, and the rotation itself loses nothing more."""
    x = make_x((1, 4, 2, 64), tf.float32)
    got = rotary.rotary_embedding(x, start_index=99996, backend="compiled")
    want = numpy_rope(x.numpy(), (np.arange(4) + 99996)[None])
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-5, atol=1e-5)


def test_explicit_positions_per_batch_row():
    x = make_x((2, 5, 3, 8), tf.float64)
    positions = np.array([[0, 2, 4, 6, 8], [1, 1, 2, 3, 5]])
    for given in (positions, positions[:1].ravel()):
        got = rotary.rotary_embedding(x, positions=given, start_index=100, backend="compiled")
        want = numpy_rope(x.numpy(), np.atleast_2d(given), angle_dtype=np.float64)
        np.testing.assert_allclose(got.numpy(), want, rtol=1e-12, atol=1e-12)


@needs_keras_hub
@pytest.mark.parametrize(
    "shape,kwargs,call",
    [
        ((2, 9, 16), {}, {}),
        ((2, 9, 4, 16), {}, {}),
        ((2, 9, 4, 16), {"max_wavelength": 500, "scaling_factor": 4.0}, {"start_index": 7}),
        ((2, 16, 9, 4), {"sequence_axis": 2, "feature_axis": 1}, {}),
        ((2, 4, 16, 9), {"sequence_axis": -1, "feature_axis": 2}, {}),
        ((2, 9, 4, 16), {}, {"positions": np.array([[5, 1, 4, 1, 5, 9, 2, 6, 5], [3, 5, 8, 9, 7, 9, 3, 2, 3]])}),
        ((2, 9, 4, 16), {}, {"positions": np.arange(9)[::-1].copy()}),
        ((2, 9, 4, 16), {}, {"start_index": tf.constant(11)}),
    ],
)
def test_matches_keras_hub(shape, kwargs, call):
    x = make_x(shape, tf.float32)
    want = KerasHubRotaryEmbedding(**kwargs)(x, **call).numpy()
    for backend in ("compiled", "reference"):
        got = rotary.rotary_embedding(x, **kwargs, **call, backend=backend).numpy()
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    layer = tfkit.layers.RotaryEmbedding(**kwargs)
    np.testing.assert_allclose(layer(x, **call).numpy(), want, rtol=1e-5, atol=1e-5)


OPCHECK_CASES = [
    (tf.float64, (2, 5, 8)),
    (tf.float64, (2, 3, 2, 6)),
    (tf.float32, (3, 16, 4, 32)),
    (tf.float32, (0, 4, 8)),
    (tf.float16, (2, 8, 2, 16)),
    (tf.bfloat16, (2, 8, 2, 16)),
]
HALF_TOLERANCE = {tf.float16: 4e-2, tf.bfloat16: 2.4e-1}


@pytest.mark.parametrize("interleaved", [False, True])
@pytest.mark.parametrize("dtype,shape", OPCHECK_CASES, ids=lambda v: getattr(v, "name", str(v)))
def test_opcheck(dtype, shape, interleaved):
    """Static shapes, eager vs graph (unknown dims), compiled vs reference,
    numeric vs analytic gradients (the inverse rotation), XLA, threads."""
    checks = ["static_shapes", "eager_vs_graph", "reference", "gradients", "xla", "threads"]
    tolerance = HALF_TOLERANCE.get(dtype)
    kwargs = {"interleaved": interleaved, "start_index": 2}
    x = make_x(shape, dtype)
    report = opcheck(rotary.rotary_embedding, [x], kwargs, checks=checks, atol=tolerance, rtol=tolerance)
    assert all(r.status == "passed" for r in report.results.values()), report


def test_opcheck_saved_model_and_bad_inputs():
    x = make_x((2, 5, 8), tf.float32)
    bad = [
        ([make_x((2, 5, 7), tf.float32)], {}),
        ([make_x((5, 8), tf.float32)], {}),
        ([x], {"positions": np.zeros([4])}),
        ([x], {"positions": np.zeros([3, 5])}),
        ([x], {"sequence_axis": 3}),
        ([x], {"feature_axis": 1}),
        ([x], {"max_wavelength": 0.0}),
        ([tf.ones([2, 5, 8], tf.int32)], {}),
    ]
    report = opcheck(rotary.rotary_embedding, [x], checks=["saved_model", "bad_inputs"], bad_inputs=bad)
    assert all(r.status == "passed" for r in report.results.values()), report


@pytest.mark.parametrize(
    "x_shape,kwargs,says",
    [
        ((2, 5, 7), {}, r"^x's feature dimension must be even \(pairs of features are rotated\), got shape \[2,5,7\]$"),
        ((2, 7, 5), {"sequence_axis": 2, "feature_axis": 1}, r"^x's feature dimension \(axis 1\) must be even"),
        (
            (2, 5, 8),
            {"positions": np.zeros([4])},
            re.escape(
                "positions must have shape [5] or [2,5] (the sequence, for all batch rows or per row), got shape [4]"
            ),
        ),
        ((2, 5, 8), {"sequence_axis": 5}, "sequence_axis 5 is out of range"),
        ((2, 5, 8), {"feature_axis": 1}, "must differ"),
        ((5, 8), {}, "x must have a known rank >= 3"),
        ((2, 5, 8), {"start_index": [1, 2]}, "start_index must be a scalar"),
    ],
)
def test_bad_inputs_name_the_argument(x_shape, kwargs, says):
    with pytest.raises(tf.errors.InvalidArgumentError, match=says):
        rotary.rotary_embedding(tf.ones(x_shape), **kwargs)


def test_the_kernel_checks_shapes_known_only_at_run_time():
    @tf.function(input_signature=[tf.TensorSpec([None, None, None]), tf.TensorSpec([None, None])])
    def rope(x, positions):
        return rotary.rotary_embedding(x, positions=positions, backend="compiled")

    with pytest.raises(tf.errors.InvalidArgumentError, match="feature dimension must be even"):
        rope(tf.ones([2, 5, 7]), tf.zeros([1, 5]))
    with pytest.raises(tf.errors.InvalidArgumentError, match="positions must have shape"):
        rope(tf.ones([2, 5, 8]), tf.zeros([3, 5]))


RAW_OPS = {"x": "tfkit_rotary_embedding", "dy": "tfkit_rotary_embedding_grad"}


# Each raw op with bad static shapes: the message its OpKernel gives, which
# its shape function must give too, naming the op's own first input.
STATIC_SHAPE_ERRORS = [
    (
        "{x}'s feature dimension must be even (pairs of features are rotated), got shape [1,2,1,5]",
        [1, 2, 1, 5],
        [1, 2],
        [2],
    ),
    ("{x} must have rank >= 3 ([batch, sequence, ..., features]), got shape [2,4]", [2, 4], [1, 2], [2]),
    (
        "positions must have shape [1,2] or [3,2] (the sequence, for all batch rows or per row), got shape [2,2]",
        [3, 2, 4],
        [2, 2],
        [2],
    ),
    ("inv_freq must have shape [2] (half the feature dimension), got shape [3]", [1, 2, 4], [1, 2], [3]),
]


@pytest.mark.parametrize("x_name", RAW_OPS)
@pytest.mark.parametrize("says,x,positions,inv_freq", STATIC_SHAPE_ERRORS, ids=[c[0] for c in STATIC_SHAPE_ERRORS])
def test_shape_functions_name_the_argument_as_the_kernels_do(x_name, says, x, positions, inv_freq):
    op = getattr(tfkit.load_library(), RAW_OPS[x_name])
    kernel, shape_function = kernel_and_shape_function_errors(
        lambda: op(tf.ones(x), tf.zeros(positions), tf.ones(inv_freq))
    )
    assert kernel == shape_function == says.format(x=x_name)


TF_DTYPE_NAMES = {tf.float16: "half", tf.bfloat16: "bfloat16", tf.float32: "float", tf.float64: "double"}


@pytest.mark.parametrize("x_name", RAW_OPS)
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.name)
def test_positions_of_another_dtype_than_the_accumulators_are_refused(x_name, dtype):
    """float64 positions with a float32 x (and the like): an
    InvalidArgumentError eagerly (not "Could not find device"), the same
    message from the shape function in a graph."""
    op = getattr(tfkit.load_library(), RAW_OPS[x_name])
    wrong = tf.float32 if dtype == tf.float64 else tf.float64
    call = lambda: op(tf.ones([1, 2, 1, 4], dtype), tf.zeros([1, 2], wrong), tf.ones([2], wrong))  # noqa: E731
    kernel, shape_function = kernel_and_shape_function_errors(call)
    expected, got = ("double", "float") if dtype == tf.float64 else ("float", "double")
    dtype_name = TF_DTYPE_NAMES[dtype]
    assert (
        kernel
        == shape_function
        == (
            f"positions and inv_freq must have dtype {expected} for {x_name} of dtype {dtype_name} (double for double "
            f"{x_name}, float for the other types), got {got}"
        )
    )
    with pytest.raises(ValueError, match=re.escape(kernel)):
        tf.function(call)()


@pytest.mark.parametrize("x_name", RAW_OPS)
@pytest.mark.parametrize("mode", ["eager", "graph"])
def test_empty_inputs_whose_other_sizes_multiply_past_int64(x_name, mode):
    """x [2**31, 2**31, 0, 2]: positions must be [1, 2**31] or [2**31, 2**31];
    x [0, 2**62, 2**62, 2] with positions [0, 2**62]: an empty result (in a
    graph of unknown shapes: the kernel's checks)."""
    op = getattr(tfkit.load_library(), RAW_OPS[x_name])
    run = tf.function(op, input_signature=[tf.TensorSpec(None)] * 3) if mode == "graph" else op
    with pytest.raises(tf.errors.InvalidArgumentError, match=re.escape("positions must have shape [1,2147483648]")):
        run(tf.zeros([2**31, 2**31, 0, 2]), tf.zeros([1, 1]), tf.ones([1]))
    y = run(tf.zeros([0, 2**62, 2**62, 2]), tf.zeros([0, 2**62]), tf.ones([1]))
    assert y.shape == (0, 2**62, 2**62, 2)


def test_start_index_tensor_does_not_retrace():
    layer = tfkit.layers.RotaryEmbedding()
    step = tf.function(lambda x, i: layer(x, start_index=i))
    x = make_x((1, 1, 2, 8), tf.float32)
    for i in range(3):
        got = step(x, tf.constant(i))
        np.testing.assert_allclose(got.numpy(), numpy_rope(x.numpy(), np.array([[i]])), rtol=1e-6, atol=1e-6)
    assert step.experimental_get_tracing_count() == 1


def test_layer_config_round_trip():
    layer = tfkit.layers.RotaryEmbedding(max_wavelength=500, scaling_factor=2.0, sequence_axis=2, interleaved=True)
    clone = tfkit.layers.RotaryEmbedding.from_config(layer.get_config())
    assert clone.get_config() == layer.get_config()
