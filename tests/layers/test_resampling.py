"""The resampling family's layers: Resampler, DenseImageWarp and
SpatialTransformer."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import tfkit


def images(shape=(2, 6, 5, 3), seed=0):
    return tf.constant(np.random.default_rng(seed).normal(size=shape), tf.float32)


def test_resampler_layer_is_the_op():
    data = images()
    warp = tf.random.uniform([2, 4, 3, 2], -1.0, 6.0)
    layer = tfkit.layers.Resampler()
    assert layer.compute_output_shape([data.shape, warp.shape]) == (2, 4, 3, 3)
    np.testing.assert_array_equal(layer([data, warp]).numpy(), tfkit.ops.resampler(data, warp).numpy())


def test_dense_image_warp_layer_with_zero_flow_is_the_identity():
    image = images()
    got = tfkit.layers.DenseImageWarp()([image, tf.zeros([2, 6, 5, 2])])
    np.testing.assert_allclose(got.numpy(), image.numpy(), rtol=1e-6, atol=1e-6)


IDENTITY = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]


@pytest.mark.parametrize("backend", ["compiled", "reference"])
def test_spatial_transformer_identity_and_flips(backend):
    image = images()
    layer = tfkit.layers.SpatialTransformer(backend=backend)
    same = layer([image, tf.constant([IDENTITY] * 2)])
    np.testing.assert_allclose(same.numpy(), image.numpy(), rtol=1e-5, atol=1e-5)
    flipped = layer([image, tf.constant([[-1.0, 0, 0, 0, 1, 0], [1, 0, 0, 0, -1, 0]])])
    np.testing.assert_allclose(flipped[0].numpy(), image[0, :, ::-1].numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(flipped[1].numpy(), image[1, ::-1].numpy(), rtol=1e-5, atol=1e-5)


def test_spatial_transformer_output_size_and_zoom():
    image = images((1, 5, 5, 1))
    layer = tfkit.layers.SpatialTransformer(output_size=(3, 3))
    theta = tf.constant([[0.5, 0, 0, 0, 0.5, 0]])  # the middle half of the image
    got = layer([image, theta])
    assert got.shape == (1, 3, 3, 1) == layer.compute_output_shape([image.shape, theta.shape])
    np.testing.assert_allclose(got.numpy(), image[:, 1:4, 1:4].numpy(), rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="output_size"):
        tfkit.layers.SpatialTransformer(output_size=(0, 3))


def test_a_localisation_network_learns_a_shift():
    """A spatial transformer whose theta comes from a Dense layer learns to
    undo a one-pixel shift (the gradient reaches theta through the warp)."""
    keras.utils.set_random_seed(0)
    image_in = keras.Input([8, 8, 1])
    theta = keras.layers.Dense(6, kernel_initializer="zeros", bias_initializer=keras.initializers.Constant(IDENTITY))(
        keras.layers.Flatten()(image_in)
    )
    model = keras.Model(image_in, tfkit.layers.SpatialTransformer()([image_in, theta]))
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 8, 8, 1)).astype("float32")
    target = np.zeros_like(x)
    target[:, :, :-1] = x[:, :, 1:]
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss="mse")
    first = model.evaluate(x, target, verbose=0)
    model.fit(x, target, epochs=30, batch_size=64, verbose=0)
    assert model.evaluate(x, target, verbose=0) < 0.5 * first


@pytest.mark.parametrize(
    "layer",
    [
        tfkit.layers.Resampler(),
        tfkit.layers.DenseImageWarp(backend="reference"),
        tfkit.layers.SpatialTransformer((4, 3)),
    ],
    ids=lambda layer: type(layer).__name__,
)
def test_config_round_trip(layer):
    clone = type(layer).from_config(layer.get_config())
    assert clone.get_config() == layer.get_config()


def test_layers_take_two_inputs():
    with pytest.raises(ValueError, match=r"called on \[image, coordinates\]"):
        tfkit.layers.DenseImageWarp()(images())
