"""Keras 3 layers for the activation family: Dense (a drop-in for
keras.layers.Dense that fuses bias + activation) and GatedDense (the
SwiGLU/GeGLU feed-forward input projection)."""

from __future__ import annotations

import keras

from tfkit import _compat
from tfkit import backend as tfkit_backend
from tfkit._shapes import shape_string
from tfkit.ops import activation as activation_ops
from tfkit.ops.activation import check_activation

# keras.activations functions the fused op computes with the same numerics.
_FUSED = {
    keras.activations.relu: "relu",
    keras.activations.gelu: "gelu",
    keras.activations.silu: "silu",
    keras.activations.sigmoid: "sigmoid",
    keras.activations.tanh: "tanh",
    keras.activations.mish: "mish",
}


@keras.saving.register_keras_serializable(package="tfkit")
class Dense(keras.layers.Dense):
    """`keras.layers.Dense` whose bias + activation run as one fused op.

    The same constructor arguments, defaults, weights (names and shapes) and
    config as `keras.layers.Dense`, so weights and saved models move between
    the two. With a bias and one of the activations relu, gelu (exact),
    silu/swish, sigmoid, tanh or mish, `call` is the matmul and then
    `tfkit.ops.bias_activation`. Everything else is Keras's Dense
    computation: no bias, no or another activation, LoRA, and quantization
    (`quantize` and quantized dtype policies: int8, int4, float8, GPTQ, AWQ,
    which Keras refuses for other subclasses of its Dense).
    """

    def call(self, inputs, training=None):
        fused = _FUSED.get(self.activation)
        if fused is None or self.bias is None or not _compat.plain_dense(self):
            return super().call(inputs, training=training)
        return activation_ops.bias_activation(keras.ops.matmul(inputs, self.kernel), self.bias, activation=fused)

    def quantize(self, mode=None, type_check=True, config=None):
        _compat.quantize_dense(self, Dense, mode, type_check, config)


@keras.saving.register_keras_serializable(package="tfkit")
class GatedDense(keras.layers.Layer):
    """One projection to `2 * units`, then `activation(a) * b` on its halves.

    The input projection of a SwiGLU ("silu") or GeGLU ("gelu",
    "gelu_tanh") feed-forward block: `kernel` is `[input_dim, 2 * units]`,
    `bias` `[2 * units]`, and the output has `units` features.

    Args:
      units: Output features.
      activation: Any name `tfkit.ops.gated_activation` takes.
      use_bias, kernel_*, bias_*: As for `keras.layers.Dense`.
      backend: tfkit backend ("compiled", "reference", "auto", None).
    """

    def __init__(
        self,
        units: int,
        activation: str = "silu",
        use_bias: bool = True,
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
        if int(units) <= 0:
            raise ValueError(f"units must be a positive integer, got {units}")
        self.units = int(units)
        self.activation = check_activation(activation)
        self.use_bias = use_bias
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)
        self.kernel_regularizer = keras.regularizers.get(kernel_regularizer)
        self.bias_regularizer = keras.regularizers.get(bias_regularizer)
        self.kernel_constraint = keras.constraints.get(kernel_constraint)
        self.bias_constraint = keras.constraints.get(bias_constraint)
        self.backend = backend
        self.supports_jit = tfkit_backend.supports_xla(backend)

    def build(self, input_shape):
        input_dim = input_shape[-1]
        if input_dim is None:
            raise ValueError(f"GatedDense needs a known last input dimension, got shape {shape_string(input_shape)}")
        self.kernel = self.add_weight(
            name="kernel",
            shape=(input_dim, 2 * self.units),
            initializer=self.kernel_initializer,
            regularizer=self.kernel_regularizer,
            constraint=self.kernel_constraint,
        )
        self.bias = None
        if self.use_bias:
            self.bias = self.add_weight(
                name="bias",
                shape=(2 * self.units,),
                initializer=self.bias_initializer,
                regularizer=self.bias_regularizer,
                constraint=self.bias_constraint,
            )

    def call(self, inputs):
        x = keras.ops.matmul(inputs, self.kernel)
        if self.bias is not None:
            x = keras.ops.add(x, self.bias)
        return activation_ops.gated_activation(x, activation=self.activation, backend=self.backend)

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], self.units)

    def get_config(self):
        return {
            **super().get_config(),
            "units": self.units,
            "activation": self.activation,
            "use_bias": self.use_bias,
            "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
            "bias_initializer": keras.initializers.serialize(self.bias_initializer),
            "kernel_regularizer": keras.regularizers.serialize(self.kernel_regularizer),
            "bias_regularizer": keras.regularizers.serialize(self.bias_regularizer),
            "kernel_constraint": keras.constraints.serialize(self.kernel_constraint),
            "bias_constraint": keras.constraints.serialize(self.bias_constraint),
            "backend": self.backend,
        }
