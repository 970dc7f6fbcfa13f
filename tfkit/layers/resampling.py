"""Keras 3 layers for the resampling family: Resampler, DenseImageWarp and
SpatialTransformer."""

from __future__ import annotations

import keras
import tensorflow as tf

from tfkit import backend as tfkit_backend
from tfkit.ops import resampling as resampling_ops


class _SamplerLayer(keras.layers.Layer):
    """A layer called on `[image, coordinates]` that runs a resampler op."""

    def __init__(self, backend: str | None = None, **kwargs):
        super().__init__(**kwargs)
        self.backend = backend
        self.supports_jit = tfkit_backend.supports_xla(backend)
        self.built = True

    @staticmethod
    def _pair(inputs) -> tuple:
        if not isinstance(inputs, (list, tuple)) or len(inputs) != 2:
            raise ValueError(f"the layer is called on [image, coordinates], got {inputs!r}")
        return tuple(inputs)

    def get_config(self):
        return {**super().get_config(), "backend": self.backend}


@keras.saving.register_keras_serializable(package="tfkit")
class Resampler(_SamplerLayer):
    """Bilinear samples of an image batch at given points, `layer([data, warp])`.

    `data` is `[batch, height, width, channels]`, `warp` `[batch, ..., 2]`
    holds `(x, y)` pixel coordinates; the output is `[batch, ...,
    channels]`. Pixels outside the image contribute zero. See
    `tfkit.ops.resampler`.

    Args:
      backend: tfkit backend ("compiled", "reference", "auto", None).
    """

    def call(self, inputs):
        data, warp = self._pair(inputs)
        return resampling_ops.resampler(data, warp, backend=self.backend)

    def compute_output_shape(self, input_shape):
        data_shape, warp_shape = self._pair(input_shape)
        return (*warp_shape[:-1], data_shape[-1])


@keras.saving.register_keras_serializable(package="tfkit")
class DenseImageWarp(_SamplerLayer):
    """Warps images by per-pixel flows, `layer([image, flow])`.

    `output[b, j, i] = image[b, j - flow[b, j, i, 0], i - flow[b, j, i, 1]]`,
    bilinear, clamped to the image edge; `flow` is `[batch, height, width,
    2]`. See `tfkit.ops.dense_image_warp`.

    Args:
      backend: tfkit backend ("compiled", "reference", "auto", None).
    """

    def call(self, inputs):
        image, flow = self._pair(inputs)
        return resampling_ops.dense_image_warp(image, flow, backend=self.backend)

    def compute_output_shape(self, input_shape):
        return self._pair(input_shape)[0]


@keras.saving.register_keras_serializable(package="tfkit")
class SpatialTransformer(_SamplerLayer):
    """Samples images through per-example affine transforms, `layer([image, theta])`.

    The sampling grid of a spatial transformer network: each output pixel's
    normalized coordinates `(u, v)` in `[-1, 1]` (the image's first and last
    pixel centres) map to the input point `theta @ [u, v, 1]`, `theta` being
    `[batch, 6]` or `[batch, 2, 3]`; points outside the image sample zero.
    The identity is `theta = [1, 0, 0, 0, 1, 0]`.

    Args:
      output_size: `(height, width)` of the output, default the input's.
      backend: tfkit backend ("compiled", "reference", "auto", None).
    """

    def __init__(self, output_size: tuple[int, int] | None = None, backend: str | None = None, **kwargs):
        super().__init__(backend=backend, **kwargs)
        if output_size is not None:
            output_size = tuple(int(s) for s in output_size)
            if len(output_size) != 2 or min(output_size) < 1:
                raise ValueError(f"output_size must be (height, width) of positive ints, got {output_size}")
        self.output_size = output_size

    def call(self, inputs):
        image, theta = self._pair(inputs)
        image_shape = tf.shape(image)
        height, width = self.output_size or (image_shape[1], image_shape[2])
        theta = tf.reshape(tf.cast(theta, image.dtype), [-1, 2, 3])
        grid = _normalized_grid(height, width, image.dtype)  # [h * w, 3]
        source = tf.einsum("bij,pj->bpi", theta, grid)  # normalized (x, y)
        scale = tf.cast(tf.stack([image_shape[2], image_shape[1]]) - 1, image.dtype) / 2
        warp = tf.reshape((source + 1) * scale, [-1, height, width, 2])
        return resampling_ops.resampler(image, warp, backend=self.backend)

    def compute_output_shape(self, input_shape):
        image_shape = self._pair(input_shape)[0]
        height, width = self.output_size or image_shape[1:3]
        return (image_shape[0], height, width, image_shape[3])

    def get_config(self):
        return {**super().get_config(), "output_size": self.output_size}


def _normalized_grid(height, width, dtype) -> tf.Tensor:
    """The output pixels' (u, v, 1), u and v spanning [-1, 1], row-major."""
    v, u = tf.meshgrid(tf.linspace(-1.0, 1.0, height), tf.linspace(-1.0, 1.0, width), indexing="ij")
    coords = tf.stack([tf.reshape(u, [-1]), tf.reshape(v, [-1])], axis=-1)
    coords = tf.cast(coords, dtype)
    return tf.concat([coords, tf.ones_like(coords[:, :1])], axis=-1)
