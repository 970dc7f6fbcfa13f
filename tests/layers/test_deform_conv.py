"""The deformable convolution family's layer: DeformableConv2D."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import tfkit
from tests.conftest import run_python
from tests.ops.test_deform_conv import numpy_deform_conv2d

DeformableConv2D = tfkit.layers.DeformableConv2D


def images(shape=(2, 9, 8, 4), seed=0):
    return tf.constant(np.random.default_rng(seed).normal(size=shape), tf.float32)


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"strides": 2, "padding": "same"},
        {"dilation_rate": (2, 1), "groups": 2, "activation": "relu"},
        {"use_mask": False, "use_bias": False, "offset_groups": 2, "kernel_size": (2, 3)},
    ],
    ids=str,
)
def test_starts_as_the_conv2d_with_its_kernel_and_bias(kwargs):
    kwargs = {"kernel_size": 3, **kwargs}
    layer = DeformableConv2D(6, bias_initializer="random_normal", **kwargs)
    x = images()
    got = layer(x)
    twin = keras.layers.Conv2D(6, **{k: v for k, v in kwargs.items() if k not in ("offset_groups", "use_mask")})
    twin.build(x.shape)
    twin.set_weights([w.numpy() for w in (layer.kernel, layer.bias) if w is not None])
    np.testing.assert_allclose(got.numpy(), twin(x).numpy(), rtol=1e-5, atol=1e-5)


def test_uses_the_offsets_and_mask_it_predicts():
    """With a nonzero offset conv, the layer is deform_conv2d of the offsets
    and 2 * sigmoid(mask logits) its offset conv predicts."""
    layer = DeformableConv2D(3, 3, padding="same", offset_groups=2)
    x = images()
    layer(x)
    rng = np.random.default_rng(1)
    layer.offset_conv.kernel.assign(rng.normal(scale=0.3, size=layer.offset_conv.kernel.shape))
    predicted = layer.offset_conv(x).numpy().astype(np.float64)
    offsets, logits = predicted[..., :36], predicted[..., 36:]
    want = (
        numpy_deform_conv2d(
            x.numpy(), offsets, layer.kernel.numpy(), 2 / (1 + np.exp(-logits)), padding="same", offset_groups=2
        )
        + layer.bias.numpy()
    )
    np.testing.assert_allclose(layer(x).numpy(), want, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_mixed_precision_policy(policy):
    layer = DeformableConv2D(4, 3, dtype=policy)
    x = images()
    with tf.GradientTape() as tape:
        y = layer(x)
        loss = tf.reduce_sum(tf.cast(y, tf.float32) ** 2)
    assert y.dtype == (tf.float16 if policy == "mixed_float16" else tf.bfloat16)
    assert all(v.dtype == "float32" for v in layer.weights)
    grads = tape.gradient(loss, layer.trainable_weights)
    assert all(g is not None and g.dtype == tf.float32 for g in grads)


def test_config_round_trip():
    layer = DeformableConv2D(
        5,
        (3, 2),
        strides=2,
        padding="same",
        dilation_rate=1,
        groups=1,
        offset_groups=1,
        use_mask=False,
        activation="gelu",
        backend="reference",
    )
    clone = DeformableConv2D.from_config(layer.get_config())
    assert clone.get_config() == layer.get_config()


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="padding must be one of valid, same"):
        DeformableConv2D(4, 3, padding="full")
    with pytest.raises(ValueError, match=r"groups \(3\) must divide filters \(4\)"):
        DeformableConv2D(4, 3, groups=3)
    with pytest.raises(ValueError, match=r"offset_groups \(3\) must divide the input channels \(4\)"):
        DeformableConv2D(4, 3, offset_groups=3)(images())


def build_model(seed=0):
    keras.utils.set_random_seed(seed)
    inputs = keras.Input([8, 8, 1])
    h = DeformableConv2D(8, 3, padding="same", activation="relu")(inputs)
    h = DeformableConv2D(8, 3, strides=2, offset_groups=2)(h)
    h = keras.layers.GlobalAveragePooling2D()(h)
    return keras.Model(inputs, keras.layers.Dense(2)(h))


def toy_images(n=128):
    """Bright blobs left or right of centre, jittered: the class is the side."""
    rng = np.random.default_rng(0)
    x = rng.normal(scale=0.1, size=(n, 8, 8, 1)).astype("float32")
    y = rng.integers(0, 2, size=n)
    for i in range(n):
        col = rng.integers(0, 3) + (5 if y[i] else 0)
        x[i, rng.integers(1, 7), col, 0] += 3
    return x, y


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    x, y = toy_images()
    model = build_model()
    model.compile(
        optimizer=keras.optimizers.Adam(1e-2), loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    )
    history = model.fit(x, y, epochs=10, batch_size=32, verbose=0)
    return model, history.history["loss"], tmp_path_factory.mktemp("models")


def test_model_trains_and_moves_its_offsets(trained):
    model, losses, _ = trained
    assert losses[-1] < 0.6 * losses[0], losses
    assert np.abs(model.layers[1].offset_conv.kernel.numpy()).max() > 0


def test_keras_file_round_trip(trained):
    model, _, tmp = trained
    x, _ = toy_images(16)
    path = tmp / "model.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    assert isinstance(loaded.layers[1], DeformableConv2D)
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))


def test_saved_model_loads_in_fresh_process(trained):
    model, _, tmp = trained
    x, _ = toy_images(16)
    export_dir = tmp / "exported"
    model.export(str(export_dir), verbose=False)
    np.save(tmp / "x.npy", x)
    np.save(tmp / "expected.npy", model.predict(x, verbose=0))
    code = f"""
import numpy as np, tensorflow as tf, tfkit
x = np.load({str(tmp / "x.npy")!r})
expected = np.load({str(tmp / "expected.npy")!r})
served = tf.saved_model.load({str(export_dir)!r})
ops = {{n.op for f in served.signatures["serving_default"].graph.as_graph_def().library.function for n in f.node_def}}
assert "Tfkit>DeformConv2D" in ops, ops
np.testing.assert_array_equal(served.serve(x).numpy(), expected)
print('fresh-process outputs identical')
"""
    result = run_python(code)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "fresh-process outputs identical" in result.stdout


def test_xla_matches_the_compiled_layer():
    layer = DeformableConv2D(4, 3, padding="same")
    x = images()
    layer(x)
    layer.offset_conv.kernel.assign(np.random.default_rng(2).normal(scale=0.2, size=layer.offset_conv.kernel.shape))
    eager = layer(x)
    compiled = tf.function(layer, jit_compile=True)(x)
    np.testing.assert_allclose(compiled.numpy(), eager.numpy(), rtol=1e-4, atol=1e-4)
