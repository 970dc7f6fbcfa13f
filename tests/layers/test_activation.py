"""tfkit.layers.Dense against keras.layers.Dense, and GatedDense."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import tfkit
from tests.conftest import run_python

FUSED = ["relu", "gelu", "silu", "swish", "sigmoid", "tanh", "mish"]
NOT_FUSED = [None, "linear", "softmax", "elu", "leaky_relu"]


def twin_dense(activation, use_bias=True):
    """A Keras Dense and a tfkit Dense with the same weights."""
    theirs = keras.layers.Dense(24, activation=activation, use_bias=use_bias)
    ours = tfkit.layers.Dense(24, activation=activation, use_bias=use_bias)
    theirs.build((None, 16))
    ours.build((None, 16))
    weights = [np.random.default_rng(i).normal(size=w.shape).astype("float32") for i, w in enumerate(theirs.weights)]
    theirs.set_weights(weights)
    ours.set_weights(weights)
    return theirs, ours


@pytest.mark.parametrize("activation", FUSED + NOT_FUSED)
@pytest.mark.parametrize("use_bias", [True, False])
def test_dense_matches_keras_dense(activation, use_bias):
    theirs, ours = twin_dense(activation, use_bias)
    x = tf.random.normal([8, 16])
    np.testing.assert_allclose(ours(x).numpy(), theirs(x).numpy(), rtol=1e-5, atol=1e-5)
    assert [w.path.split("/")[-1] for w in ours.weights] == [w.path.split("/")[-1] for w in theirs.weights]
    assert ours.get_config() == {**theirs.get_config(), "name": ours.name}


@pytest.mark.parametrize("activation,fused", [("gelu", True), ("softmax", False)])
def test_dense_runs_the_fused_op_only_where_it_can(activation, fused):
    layer = twin_dense(activation)[1]
    graph = tf.function(layer).get_concrete_function(tf.TensorSpec([4, 16])).graph
    assert ("Tfkit>BiasActivation" in {op.type for op in graph.get_operations()}) == fused


def test_weights_load_either_way(tmp_path):
    theirs, ours = twin_dense("silu")
    path = str(tmp_path / "dense.weights.h5")
    keras.Sequential([keras.Input([16]), theirs]).save_weights(path)
    model = keras.Sequential([keras.Input([16]), tfkit.layers.Dense(24, activation="silu")])
    model.load_weights(path)
    x = tf.random.normal([4, 16])
    np.testing.assert_allclose(model(x).numpy(), theirs(x).numpy(), rtol=1e-5, atol=1e-5)


def test_defaults_and_config_are_keras():
    assert tfkit.layers.Dense(4, name="d").get_config() == keras.layers.Dense(4, name="d").get_config()


QUANTIZATIONS = [
    ("int8", None),
    ("int4", None),
    ("int4", keras.quantizers.Int4QuantizationConfig(block_size=8)),
    ("float8", None),
]


@pytest.mark.parametrize("mode,config", QUANTIZATIONS)
@pytest.mark.parametrize("activation", ["gelu", None])
def test_a_quantized_dense_computes_saves_and_loads_as_keras(mode, config, activation, tmp_path):
    theirs, ours = twin_dense(activation)
    for layer in (theirs, ours):
        layer.quantize(mode, config=config)
    assert ours.dtype_policy.name == theirs.dtype_policy.name
    assert [w.path.split("/")[-1] for w in ours.weights] == [w.path.split("/")[-1] for w in theirs.weights]
    x = tf.random.normal([8, 16])
    np.testing.assert_array_equal(ours(x).numpy(), theirs(x).numpy())
    model = keras.Sequential([keras.Input([16]), ours])
    model.save(tmp_path / "quantized.keras")
    loaded = keras.models.load_model(tmp_path / "quantized.keras")
    assert type(loaded.layers[0]) is tfkit.layers.Dense
    np.testing.assert_array_equal(loaded(x).numpy(), theirs(x).numpy())


def test_model_quantize_quantizes_tfkit_dense_but_not_its_subclasses():
    class MyDense(tfkit.layers.Dense):
        pass

    model = keras.Sequential([keras.Input([16]), tfkit.layers.Dense(8), MyDense(4)])
    with pytest.warns(UserWarning, match="MyDense does not have a `quantize` method"):
        model.quantize("int8")
    assert [layer.dtype_policy.name for layer in model.layers] == ["int8_from_float32", "float32"]
    model.layers[1].quantize("int8", type_check=False)
    assert model.layers[1].dtype_policy.name == "int8_from_float32"


@pytest.mark.parametrize("activation", ["silu", "gelu", "gelu_tanh"])
def test_gated_dense_is_a_projection_then_a_gated_activation(activation):
    layer = tfkit.layers.GatedDense(6, activation=activation)
    x = tf.random.normal([3, 5, 4])
    y = layer(x)
    assert y.shape == (3, 5, 6)
    assert layer.kernel.shape == (4, 12) and layer.bias.shape == (12,)
    projected = tf.matmul(x, layer.kernel) + layer.bias
    a, b = tf.split(projected, 2, axis=-1)
    want = keras.activations.gelu(a, approximate=activation == "gelu_tanh") if activation != "silu" else tf.nn.silu(a)
    np.testing.assert_allclose(y.numpy(), (want * b).numpy(), rtol=1e-5, atol=1e-5)
    clone = tfkit.layers.GatedDense.from_config(layer.get_config())
    assert clone.get_config() == layer.get_config()


def test_gated_dense_refuses_bad_arguments():
    with pytest.raises(tf.errors.InvalidArgumentError, match="must be one of"):
        tfkit.layers.GatedDense(4, activation="softmax")
    with pytest.raises(ValueError, match="units must be a positive integer"):
        tfkit.layers.GatedDense(0)


def test_a_model_trains_saves_and_reloads(tmp_path):
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [keras.Input([8]), tfkit.layers.Dense(16, activation="gelu"), tfkit.layers.GatedDense(8), keras.layers.Dense(1)]
    )
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss="mse")
    x = np.random.default_rng(0).normal(size=(256, 8)).astype("float32")
    y = x[:, :1] * 2.0 - x[:, 1:2]
    history = model.fit(x, y, epochs=8, batch_size=32, verbose=0)
    assert history.history["loss"][-1] < 0.5 * history.history["loss"][0]
    path = str(tmp_path / "model.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    assert isinstance(loaded.layers[0], tfkit.layers.Dense) and isinstance(loaded.layers[1], tfkit.layers.GatedDense)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0), rtol=1e-5, atol=1e-5)


def test_exported_model_serves_from_a_fresh_process(tmp_path):
    """Dense (fused gelu), GatedDense and RotaryEmbedding in a SavedModel that
    a new process serves with nothing but `import tfkit`."""
    keras.utils.set_random_seed(1)
    model = keras.Sequential(
        [
            keras.Input([6, 8]),
            tfkit.layers.Dense(16, activation="gelu"),
            tfkit.layers.RotaryEmbedding(),
            tfkit.layers.GatedDense(8),
            keras.layers.Dense(2),
        ]
    )
    x = np.random.default_rng(2).normal(size=(3, 6, 8)).astype("float32")
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "expected.npy", model.predict(x, verbose=0))
    model.export(str(tmp_path / "exported"), verbose=False)
    code = f"""
import numpy as np, tensorflow as tf
import tfkit
from tests.conftest import run_python
served = tf.saved_model.load({str(tmp_path / "exported")!r})
got = served.serve(np.load({str(tmp_path / "x.npy")!r})).numpy()
ops = {{n.op for f in served.serve.get_concrete_function(tf.TensorSpec([None, 6, 8])).graph.as_graph_def().library.function
        for n in f.node_def}}
np.testing.assert_allclose(got, np.load({str(tmp_path / "expected.npy")!r}), rtol=1e-5, atol=1e-5)
print(sorted(o for o in ops if o.startswith("Tfkit>")))
"""
    result = run_python(code)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Tfkit>BiasActivation" in result.stdout and "Tfkit>RotaryEmbedding" in result.stdout
    assert "Tfkit>GatedActivation" in result.stdout
