"""The resampling family: bilinear sampling of images at arbitrary points.

`resampler(data, warp)` samples `data` `[batch, height, width, channels]`
at the points `warp` `[batch, ..., 2]`, each `(x, y)` in pixels, where each
neighbour outside the image contributes zero. `dense_image_warp(image, flow)`
samples each pixel `(j, i)` at `(j - flow[..., 0], i - flow[..., 1])`,
clamped to the image. Both are `tfkit.declare.Op`s running the same compiled
C++/CUDA op (`Tfkit>Resampler`, boundary "zeros" or "clamp", with its
gradient op `Tfkit>ResamplerGrad`) or the same pure-TensorFlow reference.
"""

from __future__ import annotations

import tensorflow as tf

from tfkit import _loader
from tfkit._shapes import shape_string
from tfkit.declare import Op
from tfkit.ops import _checks

__all__ = [
    "dense_image_warp",
    "dense_image_warp_reference",
    "resampler",
    "resampler_reference",
]


def _prepare_resampler(data, warp):
    """Bilinear samples of `data` at the points `warp`.

    The semantics of TensorFlow Addons' `tfa.image.resampler`: each output
    value interpolates the four pixels around its point, and a pixel outside
    the image contributes zero (so a point outside `(-1, width) x (-1,
    height)`, or with a NaN coordinate, samples zero). Half types compute in
    float32.

    Args:
      data: A float16, bfloat16, float32 or float64 tensor `[batch, height,
        width, channels]`.
      warp: The points, `[batch, d1, ..., dn, 2]`, same dtype as `data`: the
        `(x, y)` of each point in pixels, `x` along the width.

    Returns:
      A tensor `[batch, d1, ..., dn, channels]` of `data`'s dtype.

    Raises:
      InvalidArgumentError: a bad rank or dtype, warp's last dimension not 2,
        or a batch mismatch.
    """
    data, warp = _sampler_inputs("data", data, "warp", warp)
    return (data, warp), {"boundary": "zeros"}


def _prepare_dense_image_warp(image, flow):
    """Warps `image` by the per-pixel displacements `flow`.

    The semantics of TensorFlow Addons' `tfa.image.dense_image_warp`:
    `output[b, j, i, c] = image[b, j - flow[b, j, i, 0], i - flow[b, j, i,
    1], c]`, interpolated bilinearly, with points beyond the image clamped to
    its edge (where the flow then has zero gradient). A NaN displacement
    samples zero. Half types compute in float32.

    Args:
      image: A float16, bfloat16, float32 or float64 tensor `[batch, height,
        width, channels]`.
      flow: `[batch, height, width, 2]`, same dtype as `image`: the
        displacement `(dy, dx)` of each output pixel, in pixels.

    Returns:
      A tensor with the shape and dtype of `image`.

    Raises:
      InvalidArgumentError: a bad rank or dtype, or flow's shape not
        `[batch, height, width, 2]` of image.
    """
    image, flow = _sampler_inputs("image", image, "flow", flow)
    if flow.shape.rank is not None and flow.shape.rank != 4:
        raise _checks.invalid_argument(
            f"flow must have shape [batch, height, width, 2], got shape {shape_string(flow)}"
        )
    if not flow.shape[:3].is_compatible_with(image.shape[:3]):
        raise _checks.invalid_argument(
            f"flow must have shape [batch, height, width, 2] of image {shape_string(image)}, got shape "
            f"{shape_string(flow)}"
        )
    return (image, _query_points(image, flow)), {"boundary": "clamp"}


def _sampler_inputs(data_name: str, data, warp_name: str, warp) -> tuple[tf.Tensor, tf.Tensor]:
    data = _checks.float_input(data_name, data)
    warp = _checks.float_input(warp_name, warp, dtype=data.dtype, like=data_name)
    if data.shape.rank is not None and data.shape.rank != 4:
        raise _checks.invalid_argument(
            f"{data_name} must have rank 4 ([batch, height, width, channels]), got shape {shape_string(data)}"
        )
    rank = warp.shape.rank
    if rank is not None and (rank < 2 or warp.shape[-1] not in (None, 2)):
        raise _checks.invalid_argument(
            f"{warp_name} must have shape [batch, ..., 2] (the x, y of each point), got shape {shape_string(warp)}"
        )
    if rank is not None and data.shape.rank is not None and not warp.shape[:1].is_compatible_with(data.shape[:1]):
        raise _checks.invalid_argument(
            f"{warp_name}'s batch dimension ({warp.shape[0]}) must equal {data_name}'s ({data.shape[0]}), got "
            f"{warp_name} {shape_string(warp)} and {data_name} {shape_string(data)}"
        )
    return data, warp


def _query_points(image: tf.Tensor, flow: tf.Tensor) -> tf.Tensor:
    """The (x, y) each output pixel samples: its own position minus the flow."""
    shape = tf.shape(image)
    rows = tf.cast(tf.range(shape[1]), flow.dtype)[:, tf.newaxis]
    cols = tf.cast(tf.range(shape[2]), flow.dtype)[tf.newaxis, :]
    return tf.stack([cols - flow[..., 1], rows - flow[..., 0]], axis=-1)


resampler = Op("tfkit.ops.resampler", prepare=_prepare_resampler)
dense_image_warp = Op("tfkit.image.dense_image_warp", prepare=_prepare_dense_image_warp)


@resampler.compiled
@dense_image_warp.compiled
def _sample_compiled(data, warp, *, boundary):
    return _loader.load_library().tfkit_resampler(data, warp, boundary=boundary)


@resampler.reference
@dense_image_warp.reference
def _sample_composite(data, warp, *, boundary):
    """Bilinear sampling with tf.gather_nd, in the accumulation dtype."""
    acc = _checks.accumulator_dtype(data.dtype)
    with tf.control_dependencies(_runtime_asserts(data, warp)):
        shape = tf.shape(data)
    height, width = shape[1], shape[2]
    warp_shape = tf.shape(warp)
    points = tf.cast(tf.reshape(warp, [shape[0], tf.reduce_prod(warp_shape[1:-1]), 2]), acc)
    x0, ax, x_ok = _axis(points[..., 0], width, boundary)
    y0, ay, y_ok = _axis(points[..., 1], height, boundary)
    image = tf.reshape(tf.cast(data, acc), [shape[0], height, width, shape[3]])  # rank 4 where traced unknown

    def sample():
        total = 0
        for dx, dy in ((0, 0), (1, 0), (0, 1), (1, 1)):
            xi, yi = x0 + dx, y0 + dy
            inside = x_ok & y_ok & (xi >= 0) & (xi < width) & (yi >= 0) & (yi < height)
            where = tf.stack([tf.where(inside, yi, 0), tf.where(inside, xi, 0)], axis=-1)
            weight = (ax if dx else 1 - ax) * (ay if dy else 1 - ay)
            # Zero before the product: a NaN in the pixel gathered for an
            # outside neighbour reaches neither the result nor the warp's gradient.
            value = tf.gather_nd(image, where, batch_dims=1)
            total += weight[..., tf.newaxis] * tf.where(inside[..., tf.newaxis], value, tf.zeros_like(value))
        return total

    # An image with no elements samples zeros (gather_nd refuses to read it).
    empty = tf.zeros(tf.stack([shape[0], tf.shape(points)[1], shape[3]]), acc)
    total = tf.cond(tf.size(image) > 0, sample, lambda: empty)
    out_shape = tf.concat([warp_shape[:-1], shape[3:]], axis=0)
    return tf.cast(tf.reshape(total, out_shape), data.dtype)


def _axis(coord: tf.Tensor, size: tf.Tensor, boundary: str):
    """A coordinate's lower neighbour, the upper one's weight, and whether
    the point samples anything along this axis (the math of
    kernels/resampling/resampling_cpu.h)."""
    size_f = tf.cast(size, coord.dtype)
    if boundary == "zeros":
        ok = (coord > -1) & (coord < size_f)
        safe = tf.where(ok, coord, tf.zeros_like(coord))
        low = tf.floor(safe)
        return tf.cast(low, tf.int32), safe - low, ok
    ok = tf.math.logical_not(tf.math.is_nan(coord)) & (size > 0)
    top = size_f - 1
    clamped = tf.clip_by_value(tf.where(ok, coord, tf.zeros_like(coord)), 0.0, tf.maximum(top, 0.0))
    low = tf.floor(clamped) - tf.cast(tf.equal(clamped, top), coord.dtype)
    interpolates = size > 1
    low = tf.where(interpolates, low, tf.zeros_like(low))
    alpha = tf.where(interpolates, clamped - low, tf.zeros_like(low))
    return tf.cast(low, tf.int32), alpha, ok


def _runtime_asserts(data: tf.Tensor, warp: tf.Tensor) -> list:
    """The kernels' shape checks, at run time where shapes were unknown."""
    if data.shape.is_fully_defined() and warp.shape.is_fully_defined():
        return []
    return [
        tf.debugging.assert_rank(data, 4, message="data must have rank 4 ([batch, height, width, channels])"),
        tf.debugging.assert_equal(
            tf.shape(warp)[-1], 2, message="warp must have shape [batch, ..., 2] (the x, y of each point)"
        ),
        tf.debugging.assert_equal(
            tf.shape(warp)[0], tf.shape(data)[0], message="warp's batch dimension must equal data's"
        ),
    ]


resampler_reference = resampler.reference_function()
dense_image_warp_reference = dense_image_warp.reference_function()


@tf.RegisterGradient("Tfkit>Resampler")
def _resampler_grad(op, grad):
    data, warp = op.inputs
    return _loader.load_library().tfkit_resampler_grad(data, warp, grad, boundary=op.get_attr("boundary"))
