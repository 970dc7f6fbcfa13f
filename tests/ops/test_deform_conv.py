"""The deformable convolution family: deform_conv2d against a NumPy float64
version of torchvision's documented formula (NHWC), tf.nn.conv2d with zero
offsets, taps on and beyond the borders, opcheck, the deterministic x
gradient, bad inputs."""

import re

import numpy as np
import pytest
import tensorflow as tf

import tfkit
from tests.conftest import assert_close, kernel_and_shape_function_errors, to_numpy64
from tests.ops.test_resampling import off_grid
from tfkit.ops import deform_conv as ops
from tfkit.testing import opcheck

DTYPES = [tf.float32, tf.float64, tf.float16, tf.bfloat16]
BACKENDS = ["compiled", "reference"]


def numpy_bilinear(image, y, x):
    """torchvision's bilinear_interpolate: zero outside (-1, H) x (-1, W),
    each of the four neighbours outside the image contributing zero."""
    height, width = image.shape[:2]
    if y <= -1 or y >= height or x <= -1 or x >= width:
        return np.zeros(image.shape[2:])
    y0, x0 = int(np.floor(y)), int(np.floor(x))
    ly, lx = y - y0, x - x0
    total = np.zeros(image.shape[2:])
    for yy, xx, weight in (
        (y0, x0, (1 - ly) * (1 - lx)),
        (y0, x0 + 1, (1 - ly) * lx),
        (y0 + 1, x0, ly * (1 - lx)),
        (y0 + 1, x0 + 1, ly * lx),
    ):
        if 0 <= yy < height and 0 <= xx < width:
            total = total + weight * image[yy, xx]
    return total


def output_size(size, kernel, stride, dilation, padding):
    """tf.nn.conv2d's output size and padding before, along one axis."""
    extent = (kernel - 1) * dilation + 1
    if padding == "valid":
        return (max(size - extent, -1) // stride + 1 if size >= extent else 0), 0
    out = -(-size // stride)
    return out, max((out - 1) * stride + extent - size, 0) // 2


def numpy_deform_conv2d(
    x, offsets, kernel, mask=None, strides=(1, 1), padding="valid", dilations=(1, 1), groups=1, offset_groups=1
):
    """torchvision.ops.deform_conv2d's formula in float64, channels last."""
    x, offsets, kernel = (np.asarray(t, np.float64) for t in (x, offsets, kernel))
    batch, height, width, channels = x.shape
    kh, kw, _, filters = kernel.shape
    out_h, top = output_size(height, kh, strides[0], dilations[0], padding)
    out_w, left = output_size(width, kw, strides[1], dilations[1], padding)
    mask = np.ones((batch, out_h, out_w, offset_groups * kh * kw)) if mask is None else np.asarray(mask, np.float64)
    per_offset_group, per_group, group_filters = channels // offset_groups, channels // groups, filters // groups
    out = np.zeros((batch, out_h, out_w, filters))
    for b in range(batch):
        for oy in range(out_h):
            for ox in range(out_w):
                for i in range(kh):
                    for j in range(kw):
                        for og in range(offset_groups):
                            k = og * kh * kw + i * kw + j
                            dy, dx = offsets[b, oy, ox, 2 * k], offsets[b, oy, ox, 2 * k + 1]
                            y = oy * strides[0] - top + i * dilations[0] + dy
                            xx = ox * strides[1] - left + j * dilations[1] + dx
                            channels_of_og = slice(og * per_offset_group, (og + 1) * per_offset_group)
                            sample = numpy_bilinear(x[b, :, :, channels_of_og], y, xx) * mask[b, oy, ox, k]
                            for c_local, value in enumerate(sample):
                                c = og * per_offset_group + c_local
                                g = c // per_group
                                fs = slice(g * group_filters, (g + 1) * group_filters)
                                out[b, oy, ox, fs] += value * kernel[i, j, c - g * per_group, fs]
    return out


def make_inputs(
    x_shape,
    kernel_shape,
    strides=(1, 1),
    padding="valid",
    dilations=(1, 1),
    offset_groups=1,
    seed=0,
    scale=1.5,
    grid=True,
):
    """x, kernel, off-grid offsets (up to `scale` pixels: some taps beyond
    the borders) and a mask in (0, 2)."""
    rng = np.random.default_rng(seed)
    batch, height, width, _ = x_shape
    kh, kw = kernel_shape[:2]
    out_h = output_size(height, kh, strides[0], dilations[0], padding)[0]
    out_w = output_size(width, kw, strides[1], dilations[1], padding)[0]
    taps = offset_groups * kh * kw
    offsets = rng.uniform(-scale, scale, size=(batch, out_h, out_w, 2 * taps))
    if grid:
        offsets = off_grid(offsets)
    mask = rng.uniform(0.1, 1.9, size=(batch, out_h, out_w, taps))
    return rng.normal(size=x_shape), offsets, rng.normal(size=kernel_shape), mask


CASES = [
    # x, kernel, attrs
    ((2, 6, 5, 3), (3, 3, 3, 4), {}),
    ((1, 7, 6, 4), (3, 2, 2, 6), {"strides": (2, 1), "padding": "same", "dilations": (1, 2), "groups": 2}),
    ((2, 5, 5, 6), (2, 2, 6, 3), {"offset_groups": 3, "padding": "same", "strides": 2}),
    ((1, 4, 6, 4), (1, 3, 2, 4), {"groups": 2, "offset_groups": 2, "dilations": 2}),
    ((1, 3, 3, 1), (3, 3, 1, 1), {}),
    ((0, 4, 4, 2), (3, 3, 2, 2), {"padding": "same"}),
]


def attrs_of(attrs):
    pair = lambda v: (v, v) if isinstance(v, int) else tuple(v)  # noqa: E731
    return {
        "strides": pair(attrs.get("strides", 1)),
        "padding": attrs.get("padding", "valid"),
        "dilations": pair(attrs.get("dilations", 1)),
        "groups": attrs.get("groups", 1),
        "offset_groups": attrs.get("offset_groups", 1),
    }


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.name)
@pytest.mark.parametrize("x_shape,kernel_shape,attrs", CASES, ids=str)
def test_matches_torchvision_formula_in_float64(dtype, x_shape, kernel_shape, attrs):
    full = attrs_of(attrs)
    x, offsets, kernel, mask = (
        tf.cast(t, dtype)
        for t in make_inputs(
            x_shape, kernel_shape, full["strides"], full["padding"], full["dilations"], full["offset_groups"]
        )
    )
    want = numpy_deform_conv2d(*(to_numpy64(t) for t in (x, offsets, kernel, mask)), **full)
    for backend in BACKENDS:
        got = ops.deform_conv2d(x, offsets, kernel, mask, **attrs, backend=backend)
        assert got.dtype == dtype and got.shape == want.shape
        assert_close(got, want, dtype, scale=4.0)


@pytest.mark.parametrize("backend", BACKENDS)
def test_taps_exactly_on_and_beyond_the_borders(backend):
    """Whole-pixel offsets put taps exactly on the last row and column, on
    -1 and on the size (where torchvision samples zero), and far outside."""
    x, _, kernel, _ = make_inputs((1, 4, 5, 2), (3, 3, 2, 3))
    out_h, out_w = 2, 3
    rng = np.random.default_rng(3)
    offsets = rng.choice([-4.0, -3.0, -2.0, -1.0, 0.0, 1.0, 2.0, 3.0, 4.0, 1e6], size=(1, out_h, out_w, 18))
    mask = rng.uniform(0.5, 1.5, size=(1, out_h, out_w, 9))
    want = numpy_deform_conv2d(x, offsets, kernel, mask)
    got = ops.deform_conv2d(x, offsets, kernel, mask, backend=backend)
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(
    "attrs",
    [
        {},
        {"padding": "same"},
        {"strides": 2, "padding": "same"},
        {"strides": (2, 3)},
        {"dilations": (2, 1)},
        {"dilations": 2, "padding": "same"},
    ],
    ids=str,
)
def test_zero_offsets_and_unit_mask_are_conv2d(backend, attrs):
    x = tf.constant(np.random.default_rng(0).normal(size=(2, 9, 8, 3)), tf.float32)
    kernel = tf.constant(np.random.default_rng(1).normal(size=(3, 2, 3, 5)), tf.float32)
    full = attrs_of(attrs)
    want = tf.nn.conv2d(x, kernel, full["strides"], full["padding"].upper(), dilations=full["dilations"])
    offsets = tf.zeros([*want.shape[:3], 2 * 6])
    got = ops.deform_conv2d(x, offsets, kernel, **attrs, backend=backend)
    assert_close(got, to_numpy64(want), tf.float32)
    with_mask = ops.deform_conv2d(x, offsets, kernel, tf.ones([*want.shape[:3], 6]), **attrs, backend=backend)
    np.testing.assert_array_equal(with_mask.numpy(), got.numpy())


OPCHECK_CASES = [
    (tf.float64, (2, 5, 4, 4), (3, 3, 2, 4), {"groups": 2, "offset_groups": 2, "padding": "same"}),
    (tf.float32, (1, 6, 5, 3), (2, 3, 3, 2), {"strides": 2, "dilations": (1, 2)}),
    (tf.float16, (1, 4, 4, 2), (3, 3, 2, 2), {"padding": "same"}),
    (tf.bfloat16, (1, 4, 4, 2), (2, 2, 2, 3), {}),
]
HALF_TOLERANCE = {tf.float16: 3e-2, tf.bfloat16: 2e-1}


@pytest.mark.parametrize("dtype,x_shape,kernel_shape,attrs", OPCHECK_CASES, ids=lambda v: getattr(v, "name", str(v)))
def test_opcheck(dtype, x_shape, kernel_shape, attrs):
    """Static shapes, eager vs graph (unknown dims), compiled vs reference,
    numeric vs analytic gradients (x, offsets, kernel, mask), XLA, threads."""
    full = attrs_of(attrs)
    args = make_inputs(
        x_shape, kernel_shape, full["strides"], full["padding"], full["dilations"], full["offset_groups"], scale=1.0
    )
    args = [tf.cast(t, dtype) for t in args]
    checks = ["static_shapes", "eager_vs_graph", "reference", "gradients", "xla", "threads"]
    tolerance = HALF_TOLERANCE.get(dtype)
    report = opcheck(ops.deform_conv2d, args, attrs, checks=checks, atol=tolerance, rtol=tolerance)
    assert all(r.status == "passed" for r in report.results.values()), report


def test_opcheck_saved_model_and_bad_inputs():
    x, offsets, kernel, mask = make_inputs((2, 5, 5, 2), (3, 3, 2, 3))
    bad = [
        ([x, offsets[..., :-1], kernel, mask], {}),
        ([x, offsets, kernel, mask[..., :-1]], {}),
        ([x[0], offsets, kernel, mask], {}),
        ([x, offsets, kernel[..., :1, :], mask], {}),
        ([x, offsets, kernel, mask], {"groups": 2}),
        ([x, offsets, kernel, mask], {"strides": 0}),
        ([x.astype(np.int32), offsets, kernel, mask], {}),
    ]
    report = opcheck(
        ops.deform_conv2d, [x, offsets, kernel, mask], checks=["saved_model", "bad_inputs"], bad_inputs=bad
    )
    assert all(r.status == "passed" for r in report.results.values()), report


BAD_INPUTS = [
    ({"x": (4, 4, 2)}, {}, "x must have rank 4"),
    ({"kernel": (3, 3, 2)}, {}, "kernel must have rank 4"),
    ({"kernel": (3, 3, 1, 4)}, {}, r"kernel must have shape \[kernel_height, kernel_width, channels / groups"),
    ({}, {"groups": 3}, r"groups \(3\) must divide x's channels \(2\)"),
    ({"kernel": (3, 3, 1, 3)}, {"groups": 2}, r"groups \(2\) must divide kernel's filters \(3\)"),
    ({}, {"offset_groups": 3}, r"offset_groups \(3\) must divide x's channels \(2\)"),
    ({"offsets": (1, 2, 2, 18)}, {}, r"offsets must have shape \[1,3,3,18\]"),
    ({"mask": (1, 3, 3, 8)}, {}, r"mask must have shape \[1,3,3,9\]"),
    ({}, {"strides": 0}, "strides must be two integers >= 1"),
    ({}, {"dilations": (1, 2, 3)}, "dilations must be two integers >= 1"),
    ({}, {"padding": "full"}, "padding must be one of valid, same"),
    ({}, {"groups": 0}, "groups must be >= 1"),
]


@pytest.mark.parametrize("shapes,attrs,says", BAD_INPUTS, ids=[case[2] for case in BAD_INPUTS])
def test_bad_inputs_name_the_argument(shapes, attrs, says):
    sizes = {"x": (1, 5, 5, 2), "offsets": (1, 3, 3, 18), "kernel": (3, 3, 2, 4), "mask": (1, 3, 3, 9), **shapes}
    for backend in BACKENDS:
        with pytest.raises(tf.errors.InvalidArgumentError, match=says):
            ops.deform_conv2d(
                tf.ones(sizes["x"]),
                tf.ones(sizes["offsets"]),
                tf.ones(sizes["kernel"]),
                tf.ones(sizes["mask"]),
                **attrs,
                backend=backend,
            )


def test_bad_dtypes_name_the_argument():
    for name, position in (("offsets", 1), ("kernel", 2), ("mask", 3)):
        args = [tf.ones([1, 5, 5, 2]), tf.ones([1, 3, 3, 18]), tf.ones([3, 3, 2, 4]), tf.ones([1, 3, 3, 9])]
        args[position] = tf.cast(args[position], tf.float64)
        with pytest.raises(tf.errors.InvalidArgumentError, match=f"{name} must have dtype float32 .the dtype of x"):
            ops.deform_conv2d(*args)


@pytest.mark.parametrize("backend", BACKENDS)
def test_shapes_known_only_at_run_time_are_checked(backend):
    @tf.function(input_signature=[tf.TensorSpec(None)] * 4)
    def conv(x, offsets, kernel, mask):
        return ops.deform_conv2d(x, offsets, kernel, mask, backend=backend)

    good = [tf.ones([1, 5, 5, 2]), tf.ones([1, 3, 3, 18]), tf.ones([3, 3, 2, 4]), tf.ones([1, 3, 3, 9])]
    assert conv(*good).shape == (1, 3, 3, 4)
    with pytest.raises(tf.errors.InvalidArgumentError, match="offsets must have shape"):
        conv(good[0], tf.ones([1, 3, 3, 16]), good[2], good[3])
    with pytest.raises(tf.errors.InvalidArgumentError, match="mask must have shape"):
        conv(good[0], good[1], good[2], tf.ones([1, 3, 2, 9]))


def test_grad_op_checks_its_output_gradient():
    library = tfkit.load_library()
    args = [tf.ones([1, 5, 5, 2]), tf.ones([1, 3, 3, 18]), tf.ones([1, 3, 3, 9]), tf.ones([3, 3, 2, 4])]
    with pytest.raises(tf.errors.InvalidArgumentError, match=re.escape("grad_output must have shape [1,3,3,4]")):
        library.tfkit_deform_conv2d_grad(*args, tf.ones([1, 3, 3, 3]))


STATIC_SHAPE_ERRORS = [
    ("x must have rank 4 ([batch, height, width, channels]), got shape [5,5,2]", {"x": [5, 5, 2]}),
    (
        "offsets must have shape [1,3,3,18] ([batch, out_height, out_width, offset_groups * kernel_height * "
        "kernel_width * 2]), got shape [1,3,3,17]",
        {"offsets": [1, 3, 3, 17]},
    ),
    (
        "mask must have shape [1,3,3,9] ([batch, out_height, out_width, offset_groups * kernel_height * "
        "kernel_width]), got shape [1,3,4,9]",
        {"mask": [1, 3, 4, 9]},
    ),
    (
        "kernel must have shape [kernel_height, kernel_width, channels / groups, filters] with channels / groups = 2 "
        "(x [1,5,5,2], groups 1), got shape [3,3,3,4]",
        {"kernel": [3, 3, 3, 4]},
    ),
]


@pytest.mark.parametrize("says,shapes", STATIC_SHAPE_ERRORS, ids=[case[0][:40] for case in STATIC_SHAPE_ERRORS])
def test_shape_functions_name_the_argument_as_the_kernels_do(says, shapes):
    library = tfkit.load_library()
    sizes = {"x": [1, 5, 5, 2], "offsets": [1, 3, 3, 18], "mask": [1, 3, 3, 9], "kernel": [3, 3, 2, 4], **shapes}
    inputs = lambda: [tf.ones(sizes[name]) for name in ("x", "offsets", "mask", "kernel")]  # noqa: E731
    calls = [
        lambda: library.tfkit_deform_conv2d(*inputs()),
        lambda: library.tfkit_deform_conv2d_grad(*inputs(), tf.ones([1, 3, 3, 4])),
    ]
    for call in calls:
        kernel, shape_function = kernel_and_shape_function_errors(call)
        assert kernel == shape_function == says
    with pytest.raises(tf.errors.InvalidArgumentError, match=re.escape(says.split(" (")[0].split(", got")[0])):
        ops.deform_conv2d(*(tf.ones(sizes[name]) for name in ("x", "offsets", "kernel", "mask")), backend="reference")


def test_no_mask_is_a_mask_of_ones():
    x, offsets, kernel, mask = make_inputs((2, 5, 4, 2), (3, 3, 2, 3))
    for backend in BACKENDS:
        without = ops.deform_conv2d(x, offsets, kernel, backend=backend)
        ones = ops.deform_conv2d(x, offsets, kernel, np.ones_like(mask), backend=backend)
        np.testing.assert_array_equal(without.numpy(), ones.numpy())


@pytest.mark.parametrize("mode", ["eager", "graph"])
def test_empty_inputs(mode):
    library = tfkit.load_library()

    def both(x, offsets, mask, kernel, grad):
        return library.tfkit_deform_conv2d(x, offsets, mask, kernel), *library.tfkit_deform_conv2d_grad(
            x, offsets, mask, kernel, grad
        )

    run = tf.function(both, input_signature=[tf.TensorSpec(None)] * 5) if mode == "graph" else both
    out, gx, grad_offsets, grad_mask, gk = run(
        tf.ones([0, 5, 5, 2]),
        tf.ones([0, 3, 3, 18]),
        tf.ones([0, 3, 3, 9]),
        tf.ones([3, 3, 2, 4]),
        tf.ones([0, 3, 3, 4]),
    )
    assert out.shape == (0, 3, 3, 4) and gx.shape == (0, 5, 5, 2)
    assert grad_offsets.shape == (0, 3, 3, 18) and grad_mask.shape == (0, 3, 3, 9)
    np.testing.assert_array_equal(gk.numpy(), np.zeros([3, 3, 2, 4]))
    # No channels: the output is zeros, x too small for the kernel: no output.
    out, *_ = run(
        tf.ones([1, 5, 5, 0]),
        tf.ones([1, 3, 3, 18]),
        tf.ones([1, 3, 3, 9]),
        tf.ones([3, 3, 0, 4]),
        tf.ones([1, 3, 3, 4]),
    )
    np.testing.assert_array_equal(out.numpy(), np.zeros([1, 3, 3, 4]))
    out, gx, *_ = run(
        tf.ones([1, 2, 2, 1]),
        tf.ones([1, 0, 0, 18]),
        tf.ones([1, 0, 0, 9]),
        tf.ones([3, 3, 1, 1]),
        tf.ones([1, 0, 0, 1]),
    )
    assert out.shape == (1, 0, 0, 1)
    np.testing.assert_array_equal(gx.numpy(), np.zeros([1, 2, 2, 1]))


@pytest.mark.parametrize("mode", ["eager", "graph"])
def test_empty_inputs_with_huge_sizes(mode):
    """No element anywhere, 2**40 channels and rows of 2**62: nothing is
    sized by the sizes that are not 0."""
    library = tfkit.load_library()

    def both(x, offsets, mask, kernel, grad):
        attrs = {"padding": "same"}
        return library.tfkit_deform_conv2d(x, offsets, mask, kernel, **attrs), *library.tfkit_deform_conv2d_grad(
            x, offsets, mask, kernel, grad, **attrs
        )

    run = tf.function(both, input_signature=[tf.TensorSpec(None, tf.float64)] * 5) if mode == "graph" else both
    rows, channels = 2**62, 2**40
    shapes = [[0, 1, rows, channels], [0, 1, rows, 6], [0, 1, rows, 3], [3, 1, channels, 0], [0, 1, rows, 0]]
    out, *grads = run(*(tf.zeros(shape, tf.float64) for shape in shapes))
    assert out.shape == (0, 1, rows, 0)
    assert [g.shape.as_list() for g in grads] == shapes[:4]


def test_gradients_are_accurate_and_deterministic():
    """Long columns (9 taps x 256 channels) and a 4096-pixel scatter: the
    float32 gradients against float64, equal run after run."""
    x, offsets, kernel, mask = make_inputs((2, 34, 34, 256), (3, 3, 256, 8), seed=5)
    grad = np.random.default_rng(6).normal(size=(2, 32, 32, 8))
    library = tfkit.load_library()
    as32 = [tf.constant(t, tf.float32) for t in (x, offsets, mask, kernel, grad)]
    runs = [[g.numpy() for g in library.tfkit_deform_conv2d_grad(*as32)] for _ in range(2)]
    for ours, again in zip(*runs, strict=True):
        np.testing.assert_array_equal(ours, again)
    want = library.tfkit_deform_conv2d_grad(*(tf.cast(t, tf.float64) for t in as32))
    for ours, exact in zip(runs[0], want, strict=True):
        exact = exact.numpy()
        np.testing.assert_allclose(ours, exact, atol=2e-5 * np.abs(exact).max(), rtol=1e-4)
