"""Keras 3 layers for the deformable convolution family: DeformableConv2D."""

from __future__ import annotations

import keras

from tfkit import backend as tfkit_backend
from tfkit._shapes import shape_string
from tfkit.ops import deform_conv as deform_conv_ops


def _pair(name: str, value) -> tuple[int, int]:
    values = (value, value) if isinstance(value, int) else tuple(value)
    if len(values) != 2 or not all(isinstance(v, int) and v >= 1 for v in values):
        raise ValueError(f"{name} must be an int or two ints >= 1, got {value!r}")
    return values


@keras.saving.register_keras_serializable(package="tfkit")
class DeformableConv2D(keras.layers.Layer):
    """Deformable convolution v2 (DCNv2) that predicts its own offsets and mask.

    A `Conv2D` (`offset_conv`, zero-initialised) with this layer's kernel
    size, strides, padding and dilation reads the input and predicts, per
    output pixel, each tap's offsets `(dy, dx)` and, with `use_mask`, its
    modulation `2 * sigmoid(m)`; `tfkit.ops.deform_conv2d` then samples the
    input there and convolves the samples with `kernel` (`[kh, kw, channels
    / groups, filters]`, `Conv2D`'s layout), adds `bias` and applies
    `activation`. At initialisation the offsets are 0 and the mask is 1, so
    the layer is exactly a `Conv2D` with its kernel and bias. (mmcv's
    `ModulatedDeformConv2dPack` uses `sigmoid(m)`, which starts the taps at
    half amplitude.) Inputs are NHWC.

    Args:
      filters: Output channels.
      kernel_size: An int or `(kh, kw)`.
      strides, dilation_rate: An int or two, as for `keras.layers.Conv2D`.
      padding: "valid" or "same" (as `tf.nn.conv2d` pads).
      groups: Convolution groups; divides the input channels and `filters`.
      offset_groups: Groups of input channels sharing offsets and masks.
      use_mask: Whether to predict the modulation (DCNv2); False is DCNv1.
      use_bias, activation, kernel_*, bias_*: As for `keras.layers.Conv2D`.
      backend: tfkit backend ("compiled", "reference", "auto", None).
    """

    def __init__(
        self,
        filters: int,
        kernel_size,
        strides=1,
        padding: str = "valid",
        dilation_rate=1,
        groups: int = 1,
        offset_groups: int = 1,
        use_mask: bool = True,
        use_bias: bool = True,
        activation=None,
        kernel_initializer="glorot_uniform",
        bias_initializer="zeros",
        kernel_regularizer=None,
        bias_regularizer=None,
        kernel_constraint=None,
        bias_constraint=None,
        backend: str | None = None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if not isinstance(filters, int) or filters < 1:
            raise ValueError(f"filters must be a positive integer, got {filters!r}")
        self.filters = filters
        self.kernel_size = _pair("kernel_size", kernel_size)
        self.strides = _pair("strides", strides)
        self.dilation_rate = _pair("dilation_rate", dilation_rate)
        self.padding = str(padding).lower()
        if self.padding not in deform_conv_ops.PADDINGS:
            raise ValueError(f"padding must be one of {', '.join(deform_conv_ops.PADDINGS)}, got {padding!r}")
        for name, value in (("groups", groups), ("offset_groups", offset_groups)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if filters % groups:
            raise ValueError(f"groups ({groups}) must divide filters ({filters})")
        self.groups, self.offset_groups = groups, offset_groups
        self.use_mask, self.use_bias = bool(use_mask), bool(use_bias)
        self.activation = keras.activations.get(activation)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)
        self.kernel_regularizer = keras.regularizers.get(kernel_regularizer)
        self.bias_regularizer = keras.regularizers.get(bias_regularizer)
        self.kernel_constraint = keras.constraints.get(kernel_constraint)
        self.bias_constraint = keras.constraints.get(bias_constraint)
        self.backend = backend
        self.supports_jit = tfkit_backend.supports_xla(backend)
        taps = offset_groups * self.kernel_size[0] * self.kernel_size[1]
        self._offset_channels = 2 * taps
        self.offset_conv = keras.layers.Conv2D(
            self._offset_channels + (taps if self.use_mask else 0),
            self.kernel_size,
            strides=self.strides,
            padding=self.padding,
            dilation_rate=self.dilation_rate,
            kernel_initializer="zeros",
            bias_initializer="zeros",
            dtype=self.dtype_policy,
            name="offset_conv",
        )

    def build(self, input_shape):
        channels = input_shape[-1]
        if len(input_shape) != 4 or channels is None:
            raise ValueError(
                f"DeformableConv2D takes [batch, height, width, channels] with known channels, got shape "
                f"{shape_string(input_shape)}"
            )
        for name, groups in (("groups", self.groups), ("offset_groups", self.offset_groups)):
            if channels % groups:
                raise ValueError(f"{name} ({groups}) must divide the input channels ({channels})")
        self.offset_conv.build(input_shape)
        self.kernel = self.add_weight(
            name="kernel",
            shape=(*self.kernel_size, channels // self.groups, self.filters),
            initializer=self.kernel_initializer,
            regularizer=self.kernel_regularizer,
            constraint=self.kernel_constraint,
        )
        self.bias = None
        if self.use_bias:
            self.bias = self.add_weight(
                name="bias",
                shape=(self.filters,),
                initializer=self.bias_initializer,
                regularizer=self.bias_regularizer,
                constraint=self.bias_constraint,
            )

    def call(self, inputs):
        predicted = self.offset_conv(inputs)
        offsets = predicted[..., : self._offset_channels]
        mask = 2.0 * keras.ops.sigmoid(predicted[..., self._offset_channels :]) if self.use_mask else None
        outputs = deform_conv_ops.deform_conv2d(
            inputs,
            offsets,
            keras.ops.cast(self.kernel, inputs.dtype),
            mask,
            strides=list(self.strides),
            padding=self.padding,
            dilations=list(self.dilation_rate),
            groups=self.groups,
            offset_groups=self.offset_groups,
            backend=self.backend,
        )
        if self.bias is not None:
            outputs = keras.ops.add(outputs, keras.ops.cast(self.bias, outputs.dtype))
        return self.activation(outputs)

    def compute_output_shape(self, input_shape):
        return (*self.offset_conv.compute_output_shape(input_shape)[:-1], self.filters)

    def get_config(self):
        serialize = keras.saving.serialize_keras_object
        return {
            **super().get_config(),
            "filters": self.filters,
            "kernel_size": self.kernel_size,
            "strides": self.strides,
            "padding": self.padding,
            "dilation_rate": self.dilation_rate,
            "groups": self.groups,
            "offset_groups": self.offset_groups,
            "use_mask": self.use_mask,
            "use_bias": self.use_bias,
            "activation": keras.activations.serialize(self.activation),
            "kernel_initializer": serialize(self.kernel_initializer),
            "bias_initializer": serialize(self.bias_initializer),
            "kernel_regularizer": serialize(self.kernel_regularizer),
            "bias_regularizer": serialize(self.bias_regularizer),
            "kernel_constraint": serialize(self.kernel_constraint),
            "bias_constraint": serialize(self.bias_constraint),
            "backend": self.backend,
        }
