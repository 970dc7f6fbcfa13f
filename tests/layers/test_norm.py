"""Keras 3 layers of the norm family: parity, policies, training, saving."""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from tests.conftest import run_python
from tfkit.layers import LayerNorm, RMSNorm


def random_weights(layer, seed=0):
    rng = np.random.default_rng(seed)
    for variable in layer.weights:
        variable.assign(rng.normal(1.0, 0.3, size=variable.shape).astype(variable.dtype))


@pytest.mark.parametrize(
    "axis,shape", [(-1, (4, 6, 8)), ([1, 2], (4, 6, 8)), (1, (4, 6, 8)), ([0, 2], (3, 5, 7)), (-1, (5, 9))]
)
@pytest.mark.parametrize("center,scale", [(True, True), (False, True), (True, False), (False, False)])
def test_layer_norm_matches_keras(axis, shape, center, scale):
    x = np.random.default_rng(1).normal(2.0, 3.0, size=shape)
    ours = LayerNorm(axis=axis, center=center, scale=scale, epsilon=1e-3, dtype="float64")
    theirs = keras.layers.LayerNormalization(axis=axis, center=center, scale=scale, epsilon=1e-3, dtype="float64")
    ours.build(shape)
    theirs.build(shape)
    random_weights(ours)
    random_weights(theirs)
    np.testing.assert_allclose(ours(x).numpy(), keras.ops.convert_to_numpy(theirs(x)), rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("axis,shape", [(-1, (4, 6, 8)), ([1, 2], (4, 6, 8)), (0, (5, 3))])
def test_rms_norm_matches_numpy(axis, shape):
    x = np.random.default_rng(2).normal(size=shape)
    layer = RMSNorm(axis=axis, epsilon=1e-4, dtype="float64")
    layer.build(shape)
    random_weights(layer)
    axes = tuple(np.atleast_1d(axis) % len(shape))
    gamma_shape = [shape[a] if a in axes else 1 for a in range(len(shape))]
    gamma = layer.scale.numpy().reshape(gamma_shape)
    expected = x / np.sqrt((x**2).mean(axis=axes, keepdims=True) + 1e-4) * gamma
    np.testing.assert_allclose(layer(x).numpy(), expected, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
@pytest.mark.parametrize("cls", [LayerNorm, RMSNorm])
def test_mixed_precision_policy(policy, cls):
    layer = cls(dtype=policy)
    x = tf.random.normal([4, 32])
    with tf.GradientTape() as tape:
        y = layer(x)
        loss = tf.reduce_sum(tf.cast(y, tf.float32) ** 2)
    half = tf.float16 if policy == "mixed_float16" else tf.bfloat16
    assert y.dtype == half
    assert all(v.dtype == "float32" for v in layer.weights)
    grads = tape.gradient(loss, layer.trainable_weights)
    assert all(g is not None and g.dtype == tf.float32 for g in grads)
    reference = cls(dtype="float32")
    reference.build(x.shape)
    expected = reference(tf.cast(tf.cast(x, half), tf.float32))
    np.testing.assert_allclose(tf.cast(y, tf.float32).numpy(), expected.numpy(), rtol=3e-2, atol=6e-2)


def test_regularizers_constraints_and_initializers():
    layer = LayerNorm(
        gamma_initializer=keras.initializers.Constant(2.0),
        beta_initializer=keras.initializers.Constant(0.5),
        gamma_regularizer=keras.regularizers.L2(0.1),
        beta_regularizer=keras.regularizers.L1(0.2),
        gamma_constraint=keras.constraints.NonNeg(),
    )
    layer(tf.ones([2, 4]))
    np.testing.assert_allclose(layer.gamma.numpy(), 2.0)
    np.testing.assert_allclose(layer.beta.numpy(), 0.5)
    np.testing.assert_allclose(sum(float(loss) for loss in layer.losses), 0.1 * 4 * 4.0 + 0.2 * 4 * 0.5, rtol=1e-6)
    assert isinstance(layer.gamma.constraint, keras.constraints.NonNeg)


@pytest.mark.parametrize("cls,kwargs", [(LayerNorm, {"gamma_regularizer": "l2", "rms_scaling": True}), (RMSNorm, {})])
@pytest.mark.filterwarnings("ignore:You passed `rms_scaling=True`")
def test_config_round_trip(cls, kwargs):
    layer = cls(axis=[1, 2], epsilon=1e-4, backend="reference", name="n", **kwargs)
    clone = cls.from_config(json.loads(json.dumps(layer.get_config())))
    assert clone.get_config() == layer.get_config()
    assert keras.saving.get_registered_name(cls) == f"tfkit>{cls.__name__}"


KERAS_CLASS = {LayerNorm: keras.layers.LayerNormalization, RMSNorm: keras.layers.RMSNormalization}


def keras_twin(layer):
    """Keras's layer with the config of tfkit's `layer`."""
    config = {k: v for k, v in layer.get_config().items() if k != "backend"}
    return KERAS_CLASS[type(layer)].from_config(config)


@pytest.mark.parametrize("cls", [LayerNorm, RMSNorm])
def test_defaults_weights_and_config_are_keras(cls):
    layer, keras_layer = cls(name="n"), KERAS_CLASS[cls](name="n")
    assert layer.get_config() == {**keras_layer.get_config(), "backend": None}
    layer.build((2, 3, 5))
    keras_layer.build((2, 3, 5))
    assert [(w.name, w.shape) for w in layer.weights] == [(w.name, w.shape) for w in keras_layer.weights]


def graph_op_types(layer, x) -> set[str]:
    graph = tf.function(layer).get_concrete_function(tf.TensorSpec(x.shape, x.dtype)).graph
    return {op.type for op in graph.get_operations()}


FUSED = [
    (LayerNorm, {}),
    (LayerNorm, {"axis": [1, 2], "center": False}),
    (LayerNorm, {"scale": False, "epsilon": 1e-5}),
    (RMSNorm, {}),
    (RMSNorm, {"axis": [-2, -1]}),
]
FALLBACK = [
    (LayerNorm, {"rms_scaling": True}),
    (LayerNorm, {"epsilon": 0.0}),
    (LayerNorm, {"epsilon": 1e-45}),
    (RMSNorm, {"epsilon": 0.0}),
]


@pytest.mark.parametrize("cls,kwargs", FUSED + FALLBACK)
@pytest.mark.filterwarnings("ignore:You passed `rms_scaling=True`")
def test_fused_or_keras_computation_matches_keras(cls, kwargs):
    x = tf.constant(np.random.default_rng(3).normal(1.0, 2.0, size=(4, 6, 8)), tf.float32)
    layer = cls(**kwargs)
    keras_layer = keras_twin(layer)
    layer.build(x.shape)
    keras_layer.build(x.shape)
    random_weights(layer)
    keras_layer.set_weights(layer.get_weights())
    np.testing.assert_allclose(layer(x).numpy(), keras.ops.convert_to_numpy(keras_layer(x)), rtol=2e-5, atol=2e-5)
    fused_op = "Tfkit>LayerNorm" if cls is LayerNorm else "Tfkit>RMSNorm"
    assert (fused_op in graph_op_types(layer, x)) == ((cls, kwargs) in FUSED)


def test_an_unknown_normalized_size_without_parameters_runs_keras_computation():
    layer = LayerNorm(scale=False, center=False)
    spec = tf.TensorSpec([None, None], tf.float32)
    graph = tf.function(layer).get_concrete_function(spec).graph
    assert "Tfkit>LayerNorm" not in {op.type for op in graph.get_operations()}
    x = tf.random.normal([3, 7])
    np.testing.assert_allclose(layer(x).numpy(), keras_twin(layer)(x).numpy(), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("cls", [LayerNorm, RMSNorm])
def test_negative_axes_stay_relative_to_the_called_input(cls):
    layer = cls(axis=[-2, -1])
    keras_layer = keras_twin(layer)
    layer.build((2, 3, 4))
    keras_layer.build((2, 3, 4))
    x = tf.random.normal([5, 2, 3, 4])
    np.testing.assert_allclose(layer(x).numpy(), keras_layer(x).numpy(), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
@pytest.mark.parametrize("cls", [LayerNorm, RMSNorm])
def test_mixed_precision_computes_as_keras(policy, cls):
    layer = cls(dtype=policy)
    keras_layer = keras_twin(layer)
    for norm in (layer, keras_layer):
        norm.build((4, 16))
        norm.weights[0].assign(tf.fill([16], 7e4 if cls is LayerNorm else 3.0))
    x = tf.cast(tf.random.normal([4, 16]) * 3e4, layer.compute_dtype)
    y, want = layer(x), keras_layer(x)
    assert y.dtype == want.dtype
    np.testing.assert_array_equal(np.isinf(tf.cast(y, tf.float32)), np.isinf(tf.cast(want, tf.float32)))
    np.testing.assert_allclose(tf.cast(y, tf.float32).numpy(), tf.cast(want, tf.float32).numpy(), rtol=1e-2)


def test_invalid_arguments_are_refused_as_keras_refuses_them():
    with pytest.raises(TypeError, match="Expected an int or a list/tuple of ints for the argument 'axis'"):
        LayerNorm(axis={"axis": -1})
    with pytest.raises(ValueError, match="out of range"):
        RMSNorm(axis=3)(tf.ones([2, 3]))


def build_model(seed=0):
    keras.utils.set_random_seed(seed)
    inputs = keras.Input([16])
    h = keras.layers.Dense(32)(inputs)
    h = LayerNorm()(h)
    h = keras.layers.Activation("relu")(h)
    h = keras.layers.Dense(32)(h)
    h = RMSNorm()(h)
    outputs = keras.layers.Dense(3)(h)
    return keras.Model(inputs, outputs)


def toy_data(n=256):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, 16)).astype("float32")
    y = (x[:, :3] @ np.array([1.0, -2.0, 0.5]) > 0).astype("int32") + (x[:, 3] > 1).astype("int32")
    return x, y


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    x, y = toy_data()
    model = build_model()
    model.compile(
        optimizer=keras.optimizers.Adam(1e-2), loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    )
    history = model.fit(x, y, epochs=8, batch_size=32, verbose=0)
    return model, history.history["loss"], tmp_path_factory.mktemp("models")


def test_model_trains(trained):
    _, losses, _ = trained
    assert losses[-1] < 0.6 * losses[0], losses


def test_keras_file_round_trip(trained):
    model, _, tmp = trained
    x, _ = toy_data(32)
    path = tmp / "model.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    assert isinstance(loaded.layers[2], LayerNorm)
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))


def test_saved_model_loads_in_fresh_process(trained):
    model, _, tmp = trained
    x, _ = toy_data(32)
    export_dir = tmp / "exported"
    model.export(str(export_dir), verbose=False)
    np.save(tmp / "x.npy", x)
    np.save(tmp / "expected.npy", model.predict(x, verbose=0))
    graph_ops = {
        n.op
        for f in tf.saved_model.load(str(export_dir))
        .signatures["serving_default"]
        .graph.as_graph_def()
        .library.function
        for n in f.node_def
    }
    assert {"Tfkit>LayerNorm", "Tfkit>RMSNorm"} <= graph_ops
    code = f"""
import numpy as np, tensorflow as tf, tfkit
x = np.load({str(tmp / "x.npy")!r})
expected = np.load({str(tmp / "expected.npy")!r})
for load in (tf.saved_model.load, tfkit.saved_model.load):
    served = load({str(export_dir)!r})
    out = served.serve(x).numpy()
    np.testing.assert_array_equal(out, expected)
print('fresh-process outputs identical', out.shape)
"""
    result = run_python(code)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "fresh-process outputs identical (32, 3)" in result.stdout
