"""The deformable convolution family: DCNv2 (`deform_conv2d`), in NHWC.

`deform_conv2d(x, offsets, kernel, mask)` is torchvision's
`deform_conv2d` with the channels last and Keras `Conv2D`'s kernel layout:
every kernel tap of every output pixel samples `x` bilinearly at its grid
position moved by a learned offset, scaled by a learned mask, and the
samples are convolved with `kernel`. One `tfkit.declare.Op` runs the
compiled C++/CUDA op (`Tfkit>DeformConv2D`, with its gradient op
`Tfkit>DeformConv2DGrad`) or a pure-TensorFlow reference built on the
resampling family's bilinear sampling.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import tensorflow as tf

from tfkit import _loader
from tfkit._shapes import shape_string
from tfkit.declare import Op
from tfkit.ops import _checks, resampling

__all__ = ["deform_conv2d", "deform_conv2d_reference"]

PADDINGS = ("valid", "same")


def _prepare_deform_conv2d(
    x,
    offsets,
    kernel,
    mask=None,
    *,
    strides: int | Sequence[int] = 1,
    padding: str = "valid",
    dilations: int | Sequence[int] = 1,
    groups: int = 1,
    offset_groups: int = 1,
):
    """Deformable convolution v2 (modulated), NHWC.

    The semantics of `torchvision.ops.deform_conv2d` with the channels last:

        out[b, oy, ox, f] = sum over taps (i, j) and the channels c of
            filter f's group of kernel[i, j, c - g * C / groups, f]
            * mask[b, oy, ox, m] * bilinear(x[b, :, :, c], py, px)

    where tap `(i, j)` of offset group `g = c // (C / offset_groups)` samples
    at `py = oy * strides[0] - pad_top + i * dilations[0] + dy` and `px = ox
    * strides[1] - pad_left + j * dilations[1] + dx`, with `(dy, dx) =
    offsets[b, oy, ox, 2 * k]`, `offsets[b, oy, ox, 2 * k + 1]` and `m = k =
    g * kh * kw + i * kw + j` (torchvision's channel order, moved last). The
    bilinear sample weighs the four pixels around `(py, px)`; each of them
    outside the image contributes zero, so a tap outside `(-1, H) x (-1, W)`
    samples zero. `padding="valid"` pads nothing; `"same"` pads as
    `tf.nn.conv2d` does (`ceil(H / stride)` outputs, the padding split evenly
    with the odd pixel after). With zero offsets and a mask of ones the
    result equals `tf.nn.conv2d(x, kernel, strides, padding, dilations)`.
    Half types compute in float32. The `x` gradient is a scatter-add,
    deterministic on the CPU and, with TensorFlow's op determinism, on the
    GPU.

    Args:
      x: A float16, bfloat16, float32 or float64 tensor `[batch, height,
        width, channels]`.
      offsets: `[batch, out_height, out_width, offset_groups * kh * kw *
        2]`, same dtype: each tap's `(dy, dx)` in pixels.
      kernel: `[kh, kw, channels / groups, filters]` (Keras `Conv2D`'s
        layout), same dtype.
      mask: Optional `[batch, out_height, out_width, offset_groups * kh *
        kw]`, same dtype: each tap's modulation (None: ones, DCNv1).
      strides: An int or two (rows, columns), each >= 1.
      padding: "valid" or "same" (either case).
      dilations: An int or two (rows, columns), each >= 1.
      groups: Convolution groups; divides the channels and the filters.
      offset_groups: Groups of channels sharing offsets and mask; divides
        the channels.

    Returns:
      A tensor `[batch, out_height, out_width, filters]` of `x`'s dtype.

    Raises:
      InvalidArgumentError: a bad rank, dtype, shape or attribute, naming
        the argument.
    """
    x = _checks.float_input("x", x)
    offsets = _checks.float_input("offsets", offsets, dtype=x.dtype, like="x")
    kernel = _checks.float_input("kernel", kernel, dtype=x.dtype, like="x")
    attrs = {
        "strides": _pair("strides", strides),
        "padding": _padding(padding),
        "dilations": _pair("dilations", dilations),
        "groups": _at_least_1("groups", groups),
        "offset_groups": _at_least_1("offset_groups", offset_groups),
    }
    _check_shapes(x, offsets, kernel, attrs)
    mask = (
        _ones_mask(offsets, kernel, attrs)
        if mask is None
        else _checks.float_input("mask", mask, dtype=x.dtype, like="x")
    )
    _check_sample_shape("mask", mask, x, offsets, kernel, attrs, 1)
    return (x, offsets, mask, kernel), attrs


def _pair(name: str, value) -> list[int]:
    values = [value, value] if isinstance(value, int) else list(value)
    if len(values) != 2 or not all(isinstance(v, int) and v >= 1 for v in values):
        raise _checks.invalid_argument(f"{name} must be two integers >= 1 (rows, columns), got {value!r}")
    return [int(v) for v in values]


def _at_least_1(name: str, value) -> int:
    if not isinstance(value, int) or value < 1:
        raise _checks.invalid_argument(f"{name} must be >= 1, got {value!r}")
    return int(value)


def _padding(padding) -> str:
    name = padding.lower() if isinstance(padding, str) else padding
    if name not in PADDINGS:
        raise _checks.invalid_argument(f"padding must be one of {', '.join(PADDINGS)}, got '{padding}'")
    return name


def _check_shapes(x: tf.Tensor, offsets: tf.Tensor, kernel: tf.Tensor, attrs: dict) -> None:
    """The static part of the kernels' shape rule, with their messages."""
    if x.shape.rank is not None and x.shape.rank != 4:
        raise _checks.invalid_argument(
            f"x must have rank 4 ([batch, height, width, channels]), got shape {shape_string(x)}"
        )
    if kernel.shape.rank is not None and kernel.shape.rank != 4:
        raise _checks.invalid_argument(
            "kernel must have rank 4 ([kernel_height, kernel_width, channels / groups, filters]), got shape "
            f"{shape_string(kernel)}"
        )
    if x.shape.rank is None or kernel.shape.rank is None:
        return
    groups, offset_groups = attrs["groups"], attrs["offset_groups"]
    channels, filters = x.shape[3], kernel.shape[3]
    if any(size is not None and size < 1 for size in kernel.shape[:2]):
        raise _checks.invalid_argument(f"kernel's spatial sizes must be >= 1, got shape {shape_string(kernel)}")
    if channels is not None and channels % groups:
        raise _checks.invalid_argument(f"groups ({groups}) must divide x's channels ({channels})")
    if filters is not None and filters % groups:
        raise _checks.invalid_argument(
            f"groups ({groups}) must divide kernel's filters ({filters}), got kernel {shape_string(kernel)}"
        )
    if channels is not None and kernel.shape[2] not in (None, channels // groups):
        raise _checks.invalid_argument(
            "kernel must have shape [kernel_height, kernel_width, channels / groups, filters] with channels / "
            f"groups = {channels // groups} (x {shape_string(x)}, groups {groups}), got shape {shape_string(kernel)}"
        )
    if channels is not None and channels % offset_groups:
        raise _checks.invalid_argument(f"offset_groups ({offset_groups}) must divide x's channels ({channels})")
    _check_sample_shape("offsets", offsets, x, offsets, kernel, attrs, 2)


def _output_size(size, kernel_size, stride: int, dilation: int, padding: str):
    """One axis's output size and the padding before it (tf.nn.conv2d's rule);
    Python ints or int32 tensors."""
    extent = (kernel_size - 1) * dilation + 1
    if padding == "valid":
        if isinstance(size, int) and isinstance(extent, int):
            return ((size - extent) // stride + 1 if size >= extent else 0), 0
        out = tf.maximum((size - extent) // stride + 1, 0)
        return tf.where(size >= extent, out, 0), 0
    out = -(-size // stride)
    needed = (out - 1) * stride + extent
    if isinstance(needed, int) and isinstance(size, int):
        return out, max(needed - size, 0) // 2 if out > 0 else 0
    return out, tf.where(out > 0, tf.maximum(needed - size, 0) // 2, 0)


def _expected_sample_shape(x, offsets, kernel, attrs: dict, per_tap: int) -> list:
    kh, kw = kernel.shape[0], kernel.shape[1]
    sizes = []
    for axis, size in ((0, x.shape[1]), (1, x.shape[2])):
        k = kernel.shape[axis]
        known = size is not None and k is not None
        sizes.append(
            _output_size(size, k, attrs["strides"][axis], attrs["dilations"][axis], attrs["padding"])[0]
            if known
            else None
        )
    batch = x.shape[0] if x.shape[0] is not None else offsets.shape[0] if offsets.shape.rank == 4 else None
    depth = attrs["offset_groups"] * kh * kw * per_tap if kh is not None and kw is not None else None
    return [batch, sizes[0], sizes[1], depth]


def _check_sample_shape(name: str, value, x, offsets, kernel, attrs: dict, per_tap: int) -> None:
    if x.shape.rank != 4 or kernel.shape.rank != 4:
        return
    expected = tf.TensorShape(_expected_sample_shape(x, offsets, kernel, attrs, per_tap))
    if not value.shape.is_compatible_with(expected):
        why = "offset_groups * kernel_height * kernel_width" + (" * 2" if per_tap == 2 else "")
        raise _checks.invalid_argument(
            f"{name} must have shape {shape_string(expected)} ([batch, out_height, out_width, {why}]), got shape "
            f"{shape_string(value)}"
        )


def _ones_mask(offsets: tf.Tensor, kernel: tf.Tensor, attrs: dict) -> tf.Tensor:
    kernel_shape = tf.shape(kernel)
    taps = attrs["offset_groups"] * kernel_shape[0] * kernel_shape[1]
    return tf.ones(tf.concat([tf.shape(offsets)[:3], [taps]], axis=0), offsets.dtype)


deform_conv2d = Op("tfkit.ops.deform_conv2d", prepare=_prepare_deform_conv2d)


@deform_conv2d.compiled
def _deform_conv2d_compiled(x, offsets, mask, kernel, **attrs):
    return _loader.load_library().tfkit_deform_conv2d(x, offsets, mask, kernel, **attrs)


@deform_conv2d.reference
def _deform_conv2d_reference(x, offsets, mask, kernel, **attrs):
    acc = _checks.accumulator_dtype(x.dtype)
    with tf.control_dependencies(_runtime_asserts(x, offsets, mask, kernel, attrs)):
        x = tf.identity(x)
    out = deform_conv_composite(
        *(tf.cast(t, acc) for t in (x, offsets, mask, kernel)), sample=_zeros_boundary_sample, **attrs
    )
    return tf.cast(out, x.dtype)


def _runtime_asserts(x, offsets, mask, kernel, attrs: dict) -> list:
    """The kernels' checks of the offsets' and the mask's shapes, at run time
    where shapes were unknown when traced."""
    if all(t.shape.is_fully_defined() for t in (x, offsets, mask, kernel)):
        return []
    shape, kernel_shape = tf.shape(x), tf.shape(kernel)
    out_h = _output_size(shape[1], kernel_shape[0], attrs["strides"][0], attrs["dilations"][0], attrs["padding"])[0]
    out_w = _output_size(shape[2], kernel_shape[1], attrs["strides"][1], attrs["dilations"][1], attrs["padding"])[0]
    taps = attrs["offset_groups"] * kernel_shape[0] * kernel_shape[1]
    asserts = [
        tf.debugging.assert_rank(x, 4, message="x must have rank 4 ([batch, height, width, channels])"),
        tf.debugging.assert_rank(kernel, 4, message="kernel must have rank 4"),
    ]
    for name, value, per_tap in (("offsets", offsets, 2), ("mask", mask, 1)):
        expected = tf.stack([shape[0], out_h, out_w, taps * per_tap])
        asserts.append(
            tf.debugging.assert_equal(
                tf.shape(value),
                expected,
                message=f"{name} must have shape [batch, out_height, out_width, "
                f"offset_groups * kernel_height * kernel_width{' * 2' if per_tap == 2 else ''}]",
            )
        )
    return asserts


def _zeros_boundary_sample(data: tf.Tensor, warp: tf.Tensor) -> tf.Tensor:
    """The resampling family's reference sampling (boundary "zeros")."""
    return resampling.resampler(data, warp, backend="reference")


def deform_conv_composite(
    x: tf.Tensor,
    offsets: tf.Tensor,
    mask: tf.Tensor,
    kernel: tf.Tensor,
    *,
    strides: list[int],
    padding: str,
    dilations: list[int],
    groups: int,
    offset_groups: int,
    sample: Callable[[tf.Tensor, tf.Tensor], tf.Tensor],
) -> tf.Tensor:
    """deform_conv2d as bilinear gathers and one einsum: `sample(data, warp)`
    samples `data` `[n, h, w, c]` at `warp` `[n, points, 2]` ((x, y) points,
    a resampler); the arguments are those `deform_conv2d` prepared."""
    shape, kernel_shape = tf.shape(x), tf.shape(kernel)
    batch, height, width, channels = shape[0], shape[1], shape[2], shape[3]
    kh, kw, filters = _static_or(kernel, 0, kernel_shape), _static_or(kernel, 1, kernel_shape), kernel_shape[3]
    out_h, pad_top = _output_size(_static_or(x, 1, shape), kh, strides[0], dilations[0], padding)
    out_w, pad_left = _output_size(_static_or(x, 2, shape), kw, strides[1], dilations[1], padding)
    taps = kh * kw
    rows = tf.cast(tf.range(out_h) * strides[0] - pad_top, x.dtype)
    cols = tf.cast(tf.range(out_w) * strides[1] - pad_left, x.dtype)
    tap_rows = tf.cast(tf.range(taps) // kw * dilations[0], x.dtype)
    tap_cols = tf.cast(tf.range(taps) % kw * dilations[1], x.dtype)
    grid_y = rows[:, None, None] + tap_rows[None, None, :] + 0 * cols[None, :, None]
    grid_x = cols[None, :, None] + tap_cols[None, None, :] + 0 * rows[:, None, None]
    offsets = tf.reshape(offsets, [batch, out_h, out_w, offset_groups, taps, 2])
    points = tf.stack([grid_x[:, :, None] + offsets[..., 1], grid_y[:, :, None] + offsets[..., 0]], axis=-1)
    per_group = channels // offset_groups
    images = tf.reshape(
        tf.transpose(tf.reshape(x, [batch, height, width, offset_groups, per_group]), [0, 3, 1, 2, 4]),
        [batch * offset_groups, height, width, per_group],
    )
    warp = tf.reshape(tf.transpose(points, [0, 3, 1, 2, 4, 5]), [batch * offset_groups, -1, 2])
    samples = tf.reshape(sample(images, warp), [batch, offset_groups, out_h, out_w, taps, per_group])
    modulation = tf.transpose(tf.reshape(mask, [batch, out_h, out_w, offset_groups, taps]), [0, 3, 1, 2, 4])
    samples = tf.transpose(samples * modulation[..., None], [0, 2, 3, 4, 1, 5])
    columns = tf.reshape(samples, [batch, out_h, out_w, taps, groups, channels // groups])
    weights = tf.reshape(kernel, [taps, channels // groups, groups, filters // groups])
    out = tf.einsum("bhwtgc,tcgf->bhwgf", columns, weights)
    return tf.reshape(out, [batch, out_h, out_w, filters])


def _static_or(t: tf.Tensor, axis: int, dynamic: tf.Tensor):
    """t's size along axis: a Python int where known, else from its tf.shape."""
    size = t.shape[axis] if t.shape.rank is not None else None
    return size if size is not None else dynamic[axis]


deform_conv2d_reference = deform_conv2d.reference_function()


@tf.RegisterGradient("Tfkit>DeformConv2D")
def _deform_conv2d_grad(op, grad):
    attrs = {name: op.get_attr(name) for name in ("strides", "padding", "dilations", "groups", "offset_groups")}
    if isinstance(attrs["padding"], bytes):
        attrs["padding"] = attrs["padding"].decode()
    return _loader.load_library().tfkit_deform_conv2d_grad(*op.inputs, grad, **attrs)
