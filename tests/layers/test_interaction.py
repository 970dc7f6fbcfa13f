"""The interaction family's layer: DotInteraction against a plain-TensorFlow
statement of tensorflow_recommenders' DotInteraction, in a model that
trains, saved and loaded."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import tfkit
from tests.conftest import run_python
from tfkit.layers import DotInteraction


def tfrs_dot_interaction(inputs, self_interaction=False, skip_gather=False):
    """TFRS's semantics: the [F, F] matrix of the stacked inputs' dot
    products; its strictly lower triangle (with the diagonal when
    self_interaction) gathered row-major, or, skip_gather, the whole matrix
    with the other entries zeroed, flattened."""
    stacked = tf.stack(inputs, axis=1)
    matrix = tf.matmul(stacked, stacked, transpose_b=True)
    count = len(inputs)
    keep = np.tril(np.ones([count, count], bool), 0 if self_interaction else -1)
    if skip_gather:
        return tf.reshape(tf.where(keep, matrix, tf.zeros_like(matrix)), [-1, count * count])
    return tf.reshape(tf.boolean_mask(matrix, np.broadcast_to(keep, matrix.shape)), [-1, int(keep.sum())])


def features(count=5, batch=4, dim=8, seed=0):
    rng = np.random.default_rng(seed)
    return [tf.constant(rng.normal(size=(batch, dim)), tf.float32) for _ in range(count)]


@pytest.mark.parametrize("self_interaction", [False, True])
@pytest.mark.parametrize("skip_gather", [False, True])
@pytest.mark.parametrize("backend", ["compiled", "reference"])
def test_matches_tfrs_semantics(self_interaction, skip_gather, backend):
    inputs = features()
    layer = DotInteraction(self_interaction=self_interaction, skip_gather=skip_gather, backend=backend)
    got = layer(inputs)
    want = tfrs_dot_interaction(inputs, self_interaction, skip_gather)
    assert got.shape == want.shape == layer.compute_output_shape([x.shape for x in inputs])
    np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-5, atol=1e-5)


def test_output_widths():
    shapes = [(None, 8)] * 27
    assert DotInteraction().compute_output_shape(shapes) == (None, 351)
    assert DotInteraction(self_interaction=True).compute_output_shape(shapes) == (None, 378)
    assert DotInteraction(skip_gather=True).compute_output_shape(shapes) == (None, 729)
    assert DotInteraction()(features(1)).shape == (4, 0)


def test_inputs_of_different_dims_or_not_a_list_are_refused():
    with pytest.raises(ValueError, match=r"dimensions must be equal.*input 2 has shape \(4, 3\)"):
        DotInteraction()([tf.ones([4, 8]), tf.ones([4, 8]), tf.ones([4, 3])])
    with pytest.raises(ValueError, match=r"must be \[batch, dim\]: input 0 has shape"):
        DotInteraction()([tf.ones([4, 8, 2])])
    with pytest.raises(ValueError, match="a list of feature tensors"):
        DotInteraction()(tf.ones([4, 8]))


def test_mixed_precision_computes_in_float16():
    layer = DotInteraction(dtype="mixed_float16")
    out = layer(features(3))
    assert out.dtype == tf.float16
    np.testing.assert_allclose(out.numpy(), tfrs_dot_interaction(features(3)).numpy(), rtol=1e-2, atol=5e-2)


def dlrm_model(skip_gather=False) -> keras.Model:
    dense = keras.Input([4])
    ids = keras.Input([3], dtype="int32")
    bottom = keras.layers.Dense(8)(dense)
    embedded = [keras.layers.Embedding(20, 8)(ids[:, k]) for k in range(3)]
    pairs = DotInteraction(skip_gather=skip_gather)([bottom, *embedded])
    top = keras.layers.Dense(16, activation="relu")(keras.layers.Concatenate()([bottom, pairs]))
    return keras.Model([dense, ids], keras.layers.Dense(1)(top))


def dlrm_data(n=256, seed=0):
    rng = np.random.default_rng(seed)
    dense = rng.normal(size=(n, 4)).astype("float32")
    ids = rng.integers(0, 20, size=(n, 3)).astype("int32")
    y = (dense[:, :1] * (ids[:, :1] % 3) - dense[:, 1:2]).astype("float32")
    return [dense, ids], y


@pytest.mark.parametrize("skip_gather", [False, True])
def test_a_dlrm_model_trains(skip_gather):
    keras.utils.set_random_seed(0)
    model = dlrm_model(skip_gather)
    x, y = dlrm_data()
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss="mse")
    first = model.evaluate(x, y, verbose=0)
    model.fit(x, y, epochs=20, batch_size=64, verbose=0)
    assert model.evaluate(x, y, verbose=0) < 0.5 * first


@pytest.mark.parametrize(
    "layer",
    [DotInteraction(), DotInteraction(self_interaction=True, skip_gather=True, backend="reference", name="x")],
    ids=["default", "all"],
)
def test_config_round_trip(layer):
    clone = DotInteraction.from_config(layer.get_config())
    assert clone.get_config() == layer.get_config()
    assert keras.saving.get_registered_name(DotInteraction) == "tfkit>DotInteraction"


def test_keras_file_and_saved_model_in_a_fresh_process(tmp_path):
    keras.utils.set_random_seed(0)
    model = dlrm_model()
    x, y = dlrm_data(64)
    model.compile(optimizer="adam", loss="mse")
    model.fit(x, y, epochs=1, verbose=0)
    expected = model.predict(x, verbose=0)
    model.save(tmp_path / "model.keras")
    model.export(str(tmp_path / "exported"), verbose=False)
    np.save(tmp_path / "dense.npy", x[0])
    np.save(tmp_path / "ids.npy", x[1])
    np.save(tmp_path / "expected.npy", expected)
    code = f"""
import keras, numpy as np, tensorflow as tf, tfkit
dense, ids = np.load({str(tmp_path / "dense.npy")!r}), np.load({str(tmp_path / "ids.npy")!r})
expected = np.load({str(tmp_path / "expected.npy")!r})
loaded = keras.models.load_model({str(tmp_path / "model.keras")!r})
assert any(isinstance(layer, tfkit.layers.DotInteraction) for layer in loaded.layers)
np.testing.assert_allclose(loaded.predict([dense, ids], verbose=0), expected, rtol=1e-6, atol=1e-6)
served = tf.saved_model.load({str(tmp_path / "exported")!r})
np.testing.assert_allclose(served.serve([dense, ids]).numpy(), expected, rtol=1e-6, atol=1e-6)
print("fresh-process outputs identical")
"""
    result = run_python(code)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "fresh-process outputs identical" in result.stdout


def test_the_layer_is_exported():
    assert tfkit.layers.DotInteraction is DotInteraction
