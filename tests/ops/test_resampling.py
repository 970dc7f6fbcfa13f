"""The resampling family: resampler and dense_image_warp against NumPy float64
versions of TensorFlow Addons' documented semantics, borders and non-finite
points, opcheck, the deterministic data gradient, bad inputs."""

import re

import numpy as np
import pytest
import tensorflow as tf

import tfkit
from tests.conftest import assert_close, kernel_and_shape_function_errors, to_numpy64
from tfkit.ops import resampling as ops
from tfkit.testing import opcheck

DTYPES = [tf.float32, tf.float64, tf.float16, tf.bfloat16]
BACKENDS = ["compiled", "reference"]


def numpy_resampler(data, warp):
    """tfa.image.resampler in float64: a point inside (-1, width) x (-1,
    height) mixes its four neighbours with weights from cx - x, cy - y,
    neighbours outside the image being zero; any other point samples zero."""
    data, warp = np.asarray(data, np.float64), np.asarray(warp, np.float64)
    batch, height, width, _ = data.shape
    points = warp.reshape(batch, int(np.prod(warp.shape[1:-1])), 2)
    out = np.zeros(points.shape[:2] + data.shape[-1:])
    for b in range(batch):
        for p, (x, y) in enumerate(points[b]):
            if not (x > -1 and y > -1 and x < width and y < height):
                continue
            fx, fy = int(np.floor(x)), int(np.floor(y))
            cx, cy = fx + 1, fy + 1
            dx, dy = cx - x, cy - y

            def pixel(i, j, b=b):
                return data[b, j, i] if 0 <= i < width and 0 <= j < height else 0.0

            out[b, p] = (
                dx * dy * pixel(fx, fy)
                + (1 - dx) * (1 - dy) * pixel(cx, cy)
                + dx * (1 - dy) * pixel(fx, cy)
                + (1 - dx) * dy * pixel(cx, fy)
            )
    return out.reshape(warp.shape[:-1] + data.shape[-1:])


def numpy_dense_image_warp(image, flow):
    """tfa.image.dense_image_warp in float64: query (j - flow0, i - flow1),
    each axis' lower corner clamped to [0, size - 2] and its weight to [0, 1]."""
    image, flow = np.asarray(image, np.float64), np.asarray(flow, np.float64)
    batch, height, width, _ = image.shape
    rows, cols = np.meshgrid(np.arange(height), np.arange(width), indexing="ij")
    corners, alphas = [], []
    for query, size in ((rows - flow[..., 0], height), (cols - flow[..., 1], width)):
        low = np.clip(np.floor(query), 0, size - 2)
        alphas.append(np.clip(query - low, 0, 1)[..., None])
        corners.append(low.astype(int))
    (y0, x0), (ay, ax) = corners, alphas
    b = np.arange(batch)[:, None, None]
    top = ax * (image[b, y0, x0 + 1] - image[b, y0, x0]) + image[b, y0, x0]
    bottom = ax * (image[b, y0 + 1, x0 + 1] - image[b, y0 + 1, x0]) + image[b, y0 + 1, x0]
    return ay * (bottom - top) + top


def random(shape, seed=0, low=None, high=None):
    rng = np.random.default_rng(seed)
    return rng.normal(size=shape) if low is None else rng.uniform(low, high, size=shape)


def off_grid(values):
    """Moves values at least 0.05 away from integers (where bilinear
    interpolation has kinks, so numeric gradients would not hold)."""
    whole = np.floor(values)
    return whole + 0.05 + 0.9 * (values - whole)


def make_warp(batch, points_shape, height, width, seed=1, margin=1.5):
    """Points off the grid, some of them beyond every border."""
    shape = (batch, *points_shape)
    x = off_grid(random(shape, seed, -margin, width - 1 + margin))
    y = off_grid(random(shape, seed + 1, -margin, height - 1 + margin))
    return np.stack([x, y], -1)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.name)
@pytest.mark.parametrize(
    "data_shape,points_shape",
    [
        ((2, 5, 6, 3), (4, 7)),
        ((1, 3, 4, 1), ()),
        ((3, 2, 9, 5), (11,)),
        ((2, 4, 4, 2), (2, 3, 2)),
        ((0, 3, 3, 2), (5,)),
    ],
    ids=str,
)
def test_resampler_matches_numpy_float64(dtype, data_shape, points_shape):
    data = tf.cast(random(data_shape), dtype)
    warp = tf.cast(make_warp(data_shape[0], points_shape, *data_shape[1:3]), dtype)
    want = numpy_resampler(to_numpy64(data), to_numpy64(warp))
    for backend in BACKENDS:
        got = ops.resampler(data, warp, backend=backend)
        assert got.dtype == dtype and got.shape == want.shape
        assert_close(got, want, dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.name)
@pytest.mark.parametrize("shape", [(2, 5, 6, 3), (1, 2, 2, 4), (3, 7, 3, 1)], ids=str)
def test_dense_image_warp_matches_numpy_float64(dtype, shape):
    image = tf.cast(random(shape), dtype)
    flow = tf.cast(off_grid(random((*shape[:3], 2), 3, -3, 3)), dtype)
    want = numpy_dense_image_warp(to_numpy64(image), to_numpy64(flow))
    for backend in BACKENDS:
        got = tfkit.image.dense_image_warp(image, flow, backend=backend)
        assert got.dtype == dtype and got.shape == image.shape
        assert_close(got, want, dtype)


BORDER = [-2.0, -1.0, -0.999, -0.5, 0.0, 0.5, 3.0, 3.5, 3.999, 4.0, 4.001, 5.0, 7.25]


@pytest.mark.parametrize("backend", BACKENDS)
def test_points_on_and_beyond_the_borders(backend):
    """Every pair of coordinates on, just inside and beyond each border of a
    5 x 4 (height x width) image, for both ops."""
    data = random((1, 5, 4, 2))
    xs, ys = np.meshgrid(BORDER, BORDER)
    warp = np.stack([xs, ys], -1)[None]
    got = ops.resampler(data, warp, backend=backend)
    np.testing.assert_allclose(got.numpy(), numpy_resampler(data, warp), rtol=1e-12, atol=1e-12)
    image = random((1, len(BORDER), len(BORDER), 2))
    rows, cols = np.meshgrid(np.arange(len(BORDER)), np.arange(len(BORDER)), indexing="ij")
    flow = np.stack([rows - ys, cols - xs], -1)[None]  # samples exactly (ys, xs)
    got = tfkit.image.dense_image_warp(image, flow, backend=backend)
    np.testing.assert_allclose(got.numpy(), numpy_dense_image_warp(image, flow), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", [tf.float32, tf.float16], ids=lambda d: d.name)
def test_non_finite_and_huge_points_sample_zero_and_have_zero_gradient(backend, dtype):
    data = tf.cast(random((1, 3, 3, 2)), dtype)
    bad = [np.nan, np.inf, -np.inf, 3e38, -3e38, 1e20]
    warp = tf.cast(np.array([[[x, 1.5] for x in bad] + [[1.5, y] for y in bad]]), dtype)
    with tf.GradientTape() as tape:
        tape.watch([data, warp])
        out = ops.resampler(data, warp, backend=backend)
    np.testing.assert_array_equal(to_numpy64(out), 0)
    grad_data, grad_warp = tape.gradient(out, [data, warp])
    np.testing.assert_array_equal(to_numpy64(grad_data), 0)
    np.testing.assert_array_equal(to_numpy64(grad_warp), 0)


def test_clamped_coordinates_have_zero_gradient_whatever_the_data():
    """A 1 x 2 image holding NaN and infinity, clamped: the sample does not
    move with a clamped coordinate, so its gradient is 0 (not NaN times 0);
    along the free axis the NaN slope comes through."""
    library = tfkit.load_library()
    data = tf.constant([[[[np.nan], [np.inf]]]])
    warp = tf.constant([[[-0.5, -1.4], [0.5, 2.0], [3.0, 0.0]]])
    _, grad_warp = library.tfkit_resampler_grad(data, warp, tf.ones([1, 3, 1]), boundary="clamp")
    grad_warp = grad_warp.numpy()[0]
    np.testing.assert_array_equal(grad_warp[:, 1], 0.0)  # y clamped to the one row everywhere
    np.testing.assert_array_equal(grad_warp[[0, 2], 0], 0.0)  # x clamped to a column
    assert np.isnan(grad_warp[1, 0])


@pytest.mark.parametrize("backend", BACKENDS)
def test_dense_image_warp_clamps_infinite_flow_and_zeros_nan_flow(backend):
    image = random((1, 3, 4, 2))
    flow = np.zeros((1, 3, 4, 2))
    flow[0, 0, 0] = [np.inf, -np.inf]  # samples row -inf, column +inf: the top-right corner
    flow[0, 1, 1] = [np.nan, 0.0]
    got = tfkit.image.dense_image_warp(image, flow, backend=backend).numpy()
    np.testing.assert_array_equal(got[0, 0, 0], image[0, 0, 3])
    np.testing.assert_array_equal(got[0, 1, 1], 0.0)
    np.testing.assert_allclose(got[0, 2], image[0, 2], rtol=1e-12)


OPCHECK_CASES = [
    (tf.float64, (2, 5, 6, 3), (4, 3)),
    (tf.float32, (2, 7, 5, 4), (6,)),
    (tf.float16, (2, 4, 4, 3), (5,)),
    (tf.bfloat16, (2, 4, 4, 3), (5,)),
]
HALF_TOLERANCE = {tf.float16: 2e-2, tf.bfloat16: 1.5e-1}


@pytest.mark.parametrize("dtype,data_shape,points_shape", OPCHECK_CASES, ids=lambda v: getattr(v, "name", str(v)))
def test_opcheck_resampler(dtype, data_shape, points_shape):
    """Static shapes, eager vs graph (unknown dims), compiled vs reference,
    numeric vs analytic gradients (data and warp), XLA, threads."""
    checks = ["static_shapes", "eager_vs_graph", "reference", "gradients", "xla", "threads"]
    data = tf.cast(random(data_shape), dtype)
    warp = tf.cast(make_warp(data_shape[0], points_shape, *data_shape[1:3]), dtype)
    tolerance = HALF_TOLERANCE.get(dtype)
    report = opcheck(ops.resampler, [data, warp], checks=checks, atol=tolerance, rtol=tolerance)
    assert all(r.status == "passed" for r in report.results.values()), report


@pytest.mark.parametrize("dtype", [tf.float64, tf.float32], ids=lambda d: d.name)
def test_opcheck_dense_image_warp(dtype):
    checks = ["static_shapes", "eager_vs_graph", "reference", "gradients", "xla", "threads"]
    image = tf.cast(random((2, 5, 6, 3)), dtype)
    flow = tf.cast(off_grid(random((2, 5, 6, 2), 4, -2, 2)), dtype)
    report = opcheck(tfkit.image.dense_image_warp, [image, flow], checks=checks)
    assert all(r.status == "passed" for r in report.results.values()), report


def test_opcheck_saved_model_and_bad_inputs():
    data, warp = random((2, 4, 5, 3)), make_warp(2, (6,), 4, 5)
    bad = [
        ([data, np.zeros((2, 6, 3))], {}),
        ([data, np.zeros((3, 6, 2))], {}),
        ([data[0], warp[0]], {}),
        ([data, np.zeros((2,))], {}),
        ([data.astype(np.int32), warp.astype(np.int32)], {}),
    ]
    report = opcheck(ops.resampler, [data, warp], checks=["saved_model", "bad_inputs"], bad_inputs=bad)
    assert all(r.status == "passed" for r in report.results.values()), report
    flow = random((2, 4, 5, 2))
    bad = [([data, flow[:, :3]], {}), ([data, flow[..., :1]], {}), ([data[0], flow[0]], {})]
    report = opcheck(tfkit.image.dense_image_warp, [data, flow], checks=["saved_model", "bad_inputs"], bad_inputs=bad)
    assert all(r.status == "passed" for r in report.results.values()), report


@pytest.mark.parametrize(
    "data_shape,warp_shape,says",
    [
        ((2, 4, 4, 1), (2, 3, 3), r"warp must have shape \[batch, ..., 2\]"),
        ((2, 4, 4, 1), (3, 5, 2), r"warp's batch dimension \(3\) must equal data's \(2\)"),
        ((4, 4, 1), (4, 2), "data must have rank 4"),
        ((2, 4, 4, 1), (2,), r"warp must have shape \[batch, ..., 2\]"),
    ],
)
def test_bad_inputs_name_the_argument(data_shape, warp_shape, says):
    for backend in BACKENDS:
        with pytest.raises(tf.errors.InvalidArgumentError, match=says):
            ops.resampler(tf.ones(data_shape), tf.ones(warp_shape), backend=backend)


def test_bad_dtypes_name_the_argument():
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"warp must have dtype float32 .the dtype of data"):
        ops.resampler(tf.ones([1, 2, 2, 1]), tf.ones([1, 2], tf.float64))
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"flow must have dtype float32 .the dtype of image"):
        tfkit.image.dense_image_warp(tf.ones([1, 2, 2, 1]), tf.ones([1, 2, 2, 2], tf.float64))
    with pytest.raises(tf.errors.InvalidArgumentError, match="flow must have shape"):
        tfkit.image.dense_image_warp(tf.ones([1, 2, 2, 1]), tf.ones([1, 3, 2, 2]))


@pytest.mark.parametrize("backend", BACKENDS)
def test_shapes_known_only_at_run_time_are_checked(backend):
    @tf.function(input_signature=[tf.TensorSpec(None), tf.TensorSpec(None)])
    def sample(data, warp):
        return ops.resampler(data, warp, backend=backend)

    with pytest.raises(tf.errors.InvalidArgumentError, match="warp"):
        sample(tf.ones([2, 4, 4, 1]), tf.ones([2, 3, 3]))
    with pytest.raises(tf.errors.InvalidArgumentError, match="batch dimension"):
        sample(tf.ones([2, 4, 4, 1]), tf.ones([3, 3, 2]))
    with pytest.raises(tf.errors.InvalidArgumentError, match="data must have rank 4"):
        sample(tf.ones([4, 4, 1]), tf.ones([4, 3, 2]))


def test_grad_op_checks_its_output_gradient():
    library = tfkit.load_library()
    with pytest.raises(tf.errors.InvalidArgumentError, match="grad_output must have shape"):
        library.tfkit_resampler_grad(tf.ones([1, 3, 3, 2]), tf.ones([1, 4, 2]), tf.ones([1, 4, 3]))


# Each raw op with bad static shapes: the message its OpKernel gives, which
# its shape function must give too (not TensorFlow's "Dimensions must be equal").
STATIC_SHAPE_ERRORS = [
    ("data must have rank 4 ([batch, height, width, channels]), got shape [3,3,2]", [3, 3, 2], [1, 4, 2], None),
    ("warp must have shape [batch, ..., 2] (the x, y of each point), got shape [1,4,3]", [1, 3, 3, 2], [1, 4, 3], None),
    ("warp must have shape [batch, ..., 2] (the x, y of each point), got shape [2]", [1, 3, 3, 2], [2], None),
    (
        "warp's batch dimension (2) must equal data's (1), got warp [2,4,2] and data [1,3,3,2]",
        [1, 3, 3, 2],
        [2, 4, 2],
        None,
    ),
    ("grad_output must have shape [1,4,2], got shape [1,4,3]", [1, 3, 3, 2], [1, 4, 2], [1, 4, 3]),
    ("grad_output must have shape [1,4,2], got shape [4,2]", [1, 3, 3, 2], [1, 4, 2], [4, 2]),
]


@pytest.mark.parametrize("says,data,warp,grad", STATIC_SHAPE_ERRORS, ids=[case[0] for case in STATIC_SHAPE_ERRORS])
def test_shape_functions_name_the_argument_as_the_kernels_do(says, data, warp, grad):
    library = tfkit.load_library()
    calls = [lambda: library.tfkit_resampler_grad(tf.ones(data), tf.ones(warp), tf.ones(grad or [1]))]
    if grad is None:
        calls.append(lambda: library.tfkit_resampler(tf.ones(data), tf.ones(warp)))
    for call in calls:
        kernel, shape_function = kernel_and_shape_function_errors(call)
        assert kernel == shape_function == says


@pytest.mark.parametrize("mode", ["eager", "graph"])
def test_empty_inputs_whose_other_sizes_multiply_past_int64(mode):
    """No elements and sizes whose product passes int64: warp [0, 2**62,
    2**62, 2] samples nothing, data [1, 2**62, 0, 1] (no pixels) samples
    zeros, and samples [1, 4, 2**62] of data [1, 0, 0, 2**62] cannot be
    counted (in a graph of unknown shapes: the kernel's checks)."""
    library = tfkit.load_library()

    def both(data, warp, grad):
        return library.tfkit_resampler(data, warp), *library.tfkit_resampler_grad(data, warp, grad)

    run = tf.function(both, input_signature=[tf.TensorSpec(None)] * 3) if mode == "graph" else both
    warp = tf.zeros([0, 2**62, 2**62, 2])
    samples, grad_data, grad_warp = run(tf.zeros([0, 3, 3, 1]), warp, tf.zeros([0, 2**62, 2**62, 1]))
    assert samples.shape == (0, 2**62, 2**62, 1) and grad_data.shape == (0, 3, 3, 1) and grad_warp.shape == warp.shape
    samples, grad_data, grad_warp = run(tf.zeros([1, 2**62, 0, 1]), tf.ones([1, 4, 2]), tf.ones([1, 4, 1]))
    np.testing.assert_array_equal(samples.numpy(), np.zeros([1, 4, 1]))
    np.testing.assert_array_equal(grad_warp.numpy(), np.zeros([1, 4, 2]))
    assert grad_data.shape == (1, 2**62, 0, 1)
    says = "output ([batch, ..., channels]: the points of warp, the channels of data) must have at most"
    with pytest.raises(tf.errors.InvalidArgumentError, match=re.escape(says)):
        run(tf.zeros([1, 0, 0, 2**62]), tf.ones([1, 4, 2]), tf.ones([1]))


def test_data_gradient_is_accurate_and_deterministic():
    """100000 points around one pixel, at coordinates whose weights are exact
    in float32: the float32 data gradient, a sum of 100000 terms per pixel,
    is summed in float64 in point order, so it is the float64 gradient
    rounded once, run after run, for any thread count (opcheck's "threads"
    check runs the op concurrently too)."""
    rng = np.random.default_rng(7)
    data = tf.constant(rng.normal(size=(2, 4, 4, 40)), tf.float32)
    warp = tf.constant(1.5 + rng.integers(-32, 32, size=(2, 100000, 2)) / 64, tf.float32)
    grad = tf.constant(rng.normal(size=(2, 100000, 40)), tf.float32)
    library = tfkit.load_library()
    runs = [library.tfkit_resampler_grad(data, warp, grad).grad_data.numpy() for _ in range(3)]
    for run in runs[1:]:
        np.testing.assert_array_equal(run, runs[0])
    as64 = [tf.cast(t, tf.float64) for t in (data, warp, grad)]
    want = library.tfkit_resampler_grad(*as64).grad_data.numpy()
    np.testing.assert_array_max_ulp(runs[0], want.astype(np.float32), maxulp=1)
