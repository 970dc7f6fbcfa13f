"""Prototype ops: eager, graphs, Keras, tf.data, gradients, errors, backends."""

import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf

import tfkit
from tests.conftest import run_python
from tests.layers.test_keras_integration import pretend_a_gpu_is_visible
from tests.prototype import sample_ops
from tfkit.prototype import PrototypeError, PrototypeGradientError, PrototypeOutputError

X = tf.constant(np.random.default_rng(0).normal(size=(4, 6)).astype(np.float32)) * 3.0


def softclip_numpy(x, limit):
    return limit * np.tanh(np.asarray(x, np.float64) / limit)


@pytest.mark.parametrize("op", [sample_ops.softclip, sample_ops.softclip_tf], ids=["numpy", "tensorflow"])
def test_eager_and_traced_with_unknown_dims(op):
    np.testing.assert_allclose(op(X, limit=2.0).numpy(), softclip_numpy(X, 2.0), rtol=1e-6)
    traced = tf.function(lambda x: op(x, limit=2.0), input_signature=[tf.TensorSpec([None, None])])
    assert traced.get_concrete_function().structured_outputs.shape.as_list() == [None, None]
    np.testing.assert_allclose(traced(X).numpy(), softclip_numpy(X, 2.0), rtol=1e-6)


def test_attributes_are_keyword_only_and_checked():
    assert not np.allclose(sample_ops.softclip(X, limit=1.0).numpy(), sample_ops.softclip(X).numpy())
    with pytest.raises(TypeError, match="unknown attributes"):
        sample_ops.softclip(X, limt=2.0)


def test_several_inputs_and_outputs_with_a_shape_rule():
    a, b = X, X * 2.0
    total, rowsum = sample_ops.add_and_rowsum(a, b)
    np.testing.assert_allclose(total.numpy(), (a + b).numpy())
    np.testing.assert_allclose(rowsum.numpy(), tf.reduce_sum(a + b, -1).numpy(), rtol=1e-5)
    traced = tf.function(sample_ops.add_and_rowsum, input_signature=[tf.TensorSpec([None, 6])] * 2)
    shapes = [t.shape.as_list() for t in traced.get_concrete_function().structured_outputs]
    assert shapes == [[None, 6], [None]]


@pytest.mark.parametrize("graph", [False, True], ids=["eager", "graph"])
@pytest.mark.parametrize("op,returned", [("truncates", "shape [4,1]"), ("casts", "dtype float64")])
def test_outputs_that_break_the_rule_raise_invalid_argument(graph, op, returned):
    fn = getattr(sample_ops, op)
    run = tf.function(fn) if graph else fn
    with pytest.raises(tf.errors.InvalidArgumentError) as err:
        run(X)
    message = str(err.value)
    assert f"{op}: output 0 must have shape [4,6] and dtype float32" in message and returned in message
    if not graph:
        assert isinstance(err.value, PrototypeOutputError)


@pytest.mark.parametrize("graph", [False, True], ids=["eager", "graph"])
def test_exceptions_name_the_op_the_original_and_the_users_line(graph):
    run = tf.function(sample_ops.lookup) if graph else sample_ops.lookup
    with pytest.raises((PrototypeError, tf.errors.UnknownError)) as err:
        run(X)
    message = str(err.value)
    assert "prototype op 'lookup' raised KeyError: 'missing'" in message
    assert "sample_ops.py" in message and 'return table["missing"]' in message


def test_gradient_from_grad_matches_numeric_in_float64():
    x64 = tf.cast(X, tf.float64)
    theoretical, numerical = tf.test.compute_gradient(lambda x: sample_ops.softclip(x, limit=2.0), [x64])
    np.testing.assert_allclose(theoretical[0], numerical[0], rtol=1e-6, atol=1e-6)


def test_tensorflow_body_is_differentiable_without_grad():
    with tf.GradientTape() as tape:
        tape.watch(X)
        y = sample_ops.softclip_tf(X, limit=2.0)
    expected = 1.0 - np.tanh(X.numpy() / 2.0) ** 2
    np.testing.assert_allclose(tape.gradient(y, X).numpy(), expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("graph", [False, True], ids=["eager", "graph"])
def test_no_gradient_is_an_error_naming_the_op(graph):
    def grad(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = sample_ops.double_no_grad(x)
        return tape.gradient(y, x)

    with pytest.raises(PrototypeGradientError, match="double_no_grad has no gradient"):
        (tf.function(grad) if graph else grad)(X)


def test_second_order_gradient_through_numpy_grad_is_an_error():
    with pytest.raises(PrototypeGradientError, match="softclip: second-order gradients"):
        with tf.GradientTape() as outer:
            outer.watch(X)
            with tf.GradientTape() as inner:
                inner.watch(X)
                y = sample_ops.softclip(X)
            dx = inner.gradient(y, X)
        outer.gradient(dx, X)


def test_under_xla_a_prototype_is_a_clear_error_at_trace_time():
    f = tf.function(lambda x: sample_ops.softclip(x), jit_compile=True)
    with pytest.raises(tfkit.backend.XLAPrototypeError) as err:
        f.get_concrete_function(tf.TensorSpec([2, 3]))
    assert isinstance(err.value, tfkit.backend.XLAUnsupportedError)
    assert not isinstance(err.value, tfkit.backend.XLACompiledBackendError)
    expected = (
        "softclip: its prototype tests.prototype.sample_ops.softclip, which backend='auto' chose, cannot run inside "
        "an XLA compilation (jit_compile=True): XLA cannot call back into Python (a prototype runs through "
        "tf.numpy_function or tf.py_function). Declare a pure-TensorFlow reference (@op.reference), which "
        "backend='auto' runs under XLA, or turn jit_compile off."
    )
    assert str(err.value).rstrip().endswith(expected)


def test_under_xla_an_explicit_prototype_of_an_op_with_a_reference_says_to_use_it():
    f = tf.function(lambda x: sample_ops.cube(x, backend="prototype"), jit_compile=True)
    with pytest.raises(tfkit.backend.XLAPrototypeError) as err:
        f.get_concrete_function(tf.TensorSpec([2, 3]))
    assert "cube: its prototype tests.prototype.sample_ops.cube, asked for with backend='prototype', cannot run" in (
        str(err.value)
    )
    expected = (
        "Use backend='auto' (the default; it runs the pure-TensorFlow reference under XLA) or 'reference', or turn "
        "jit_compile off."
    )
    assert str(err.value).rstrip().endswith(expected)


def test_an_op_with_a_reference_runs_it_by_default_and_under_xla():
    assert sample_ops.cube.choose() == "reference"
    assert sample_ops.cube.choose("prototype") == "prototype"
    xla = tf.function(lambda x: sample_ops.cube(x), jit_compile=True)
    np.testing.assert_allclose(xla(X).numpy(), X.numpy() ** 3, rtol=1e-5)
    np.testing.assert_allclose(sample_ops.cube(X, backend="prototype").numpy(), X.numpy() ** 3, rtol=1e-6)


def with_compiled_from(library, name: str):
    """A prototype op `name` (x * 2) with a compiled implementation whose
    library is `library`."""
    op = tfkit.prototype.op(name=name)(lambda x: x * 2)
    op.compiled(library=library)(lambda x: x * 3)
    return op


def test_auto_falls_back_from_an_unloadable_library_of_ones_own_and_says_to_what():
    def unloadable():
        raise tfkit.OpLibraryError("twice_ops.so was not found")

    twice = with_compiled_from(unloadable, "twice")
    with pytest.warns(RuntimeWarning) as caught:
        np.testing.assert_array_equal(twice(tf.ones([2])).numpy(), [2.0, 2.0])
    assert [str(w.message) for w in caught] == [
        "tfkit: using twice's prototype because the compiled library is unavailable: twice_ops.so was not found"
    ]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # once per library error
        assert twice.choose() == "prototype"
    with pytest.raises(tfkit.OpLibraryError, match="twice_ops.so was not found"):
        twice.choose("compiled")
    assert with_compiled_from(lambda: None, "thrice").choose() == "compiled"


def test_auto_with_only_an_unloadable_compiled_op_says_why_nothing_can_run():
    def unloadable():
        raise tfkit.OpLibraryError("only_ops.so was not found")

    only = tfkit.Op("only_compiled")
    only.compiled(library=unloadable)(lambda x: x)
    with pytest.raises(ValueError, match=r"only_compiled has no implementation that can run: its compiled library "
                       r"is unavailable \(only_ops.so was not found\); declare a reference or a prototype"):
        only(tf.ones([2]))


def test_backend_choice_for_a_prototype_only_op(monkeypatch):
    with pytest.raises(ValueError, match="softclip has no compiled implementation; it has: prototype"):
        sample_ops.softclip(X, backend="compiled")
    monkeypatch.setenv(tfkit.backend.ENV_VAR, "compiled")  # a preference the op lacks: auto
    np.testing.assert_allclose(sample_ops.softclip(X).numpy(), softclip_numpy(X, 3.0), rtol=1e-6)


class SoftClip(keras.layers.Layer):
    def call(self, x):
        return sample_ops.softclip(x, limit=2.0)


def build_model():
    keras.utils.set_random_seed(0)
    return keras.Sequential([keras.Input([6]), keras.layers.Dense(8), SoftClip(), keras.layers.Dense(1)])


def test_keras_fit_and_predict_and_auto_stays_off_xla_on_a_gpu_machine(monkeypatch):
    pretend_a_gpu_is_visible(monkeypatch)
    model = build_model()
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss="mse")  # jit_compile="auto"
    assert model.jit_compile is False
    x = np.random.default_rng(1).normal(size=(64, 6)).astype(np.float32)
    y = np.tanh(x[:, :1])
    losses = model.fit(x, y, epochs=5, batch_size=16, verbose=0).history["loss"]
    assert losses[-1] < losses[0]
    assert model.predict(x, verbose=0).shape == (64, 1)


def test_tf_data_map():
    dataset = tf.data.Dataset.from_tensor_slices(X).map(lambda row: sample_ops.softclip(row, limit=2.0)).batch(4)
    np.testing.assert_allclose(next(iter(dataset)).numpy(), softclip_numpy(X, 2.0), rtol=1e-6)


def test_mirrored_strategy_step():
    script = """
import numpy as np, tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import keras
from tests.prototype.test_prototype import build_model
x = np.random.default_rng(1).normal(size=(32, 6)).astype(np.float32)
y = np.tanh(x[:, :1])
single = build_model()
initial = single.get_weights()
single.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
single.fit(x, y, batch_size=32, epochs=1, verbose=0, shuffle=False)
with tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"]).scope():
    mirrored = build_model()
    mirrored.set_weights(initial)
    mirrored.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
mirrored.fit(x, y, batch_size=32, epochs=1, verbose=0, shuffle=False)
print("diff", max(np.abs(a - b).max() for a, b in zip(single.get_weights(), mirrored.get_weights())))
"""
    result = run_python(script)
    assert result.returncode == 0, result.stderr[-3000:]
    assert float(result.stdout.split("diff")[-1]) <= 1e-5
