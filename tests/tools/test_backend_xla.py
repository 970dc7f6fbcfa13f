"""The backend choice under XLA: "auto" runs the reference inside a
`jit_compile` trace, "compiled" is refused there, and gradients follow."""

import numpy as np
import pytest
import tensorflow as tf

import tfkit
from tfkit import backend

X = tf.random.stateless_normal([6, 32], seed=[1, 2]) * 3.0 + 2.0
GAMMA = tf.random.stateless_normal([32], seed=[3, 4])
BETA = tf.random.stateless_normal([32], seed=[5, 6])

OPS = {
    "tfkit.ops.layer_norm": lambda x, backend=None: tfkit.ops.layer_norm(x, GAMMA, BETA, backend=backend),
    "tfkit.ops.rms_norm": lambda x, backend=None: tfkit.ops.rms_norm(x, GAMMA, backend=backend),
}


def op_types(function, *args):
    graph = function.get_concrete_function(*args).graph
    return {op.type for op in graph.get_operations()}


@pytest.mark.parametrize("name", OPS)
def test_auto_runs_the_reference_under_xla_and_the_kernel_outside(name):
    op = OPS[name]
    xla = tf.function(op, jit_compile=True)
    plain = tf.function(op)
    assert not any(t.startswith("Tfkit>") for t in op_types(xla, X))
    assert any(t.startswith("Tfkit>") for t in op_types(plain, X))
    np.testing.assert_allclose(xla(X).numpy(), op(X, "compiled").numpy(), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", OPS)
def test_nested_function_inside_xla_runs_the_reference(name):
    inner = tf.function(OPS[name])
    outer = tf.function(lambda x: inner(x) * 2.0, jit_compile=True)
    np.testing.assert_allclose(outer(X).numpy(), 2.0 * OPS[name](X, "reference").numpy(), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", OPS)
def test_compiled_backend_under_xla_is_refused_at_trace_time(name):
    f = tf.function(lambda x: OPS[name](x, "compiled"), jit_compile=True)
    with pytest.raises(backend.XLACompiledBackendError) as err:
        f.get_concrete_function(X)
    assert isinstance(err.value, backend.XLAUnsupportedError)
    assert isinstance(err.value, tf.errors.InvalidArgumentError) and isinstance(err.value, ValueError)
    expected = (
        f"{name}: its compiled kernel, asked for with backend='compiled', cannot run inside an XLA compilation "
        "(jit_compile=True): XLA cannot run kernels from a loaded op library. Use backend='auto' (the default; it "
        "runs the pure-TensorFlow reference under XLA) or 'reference', or turn jit_compile off."
    )
    assert str(err.value).rstrip().endswith(expected)


def test_auto_under_xla_without_a_reference_names_the_compiled_kernel_it_chose():
    compiled_only = tfkit.Op("compiled_only")
    compiled_only.compiled(lambda x: x)
    f = tf.function(lambda x: compiled_only(x), jit_compile=True)
    with pytest.raises(backend.XLACompiledBackendError) as err:
        f.get_concrete_function(X)
    expected = (
        "compiled_only: its compiled kernel, which backend='auto' chose, cannot run inside an XLA compilation "
        "(jit_compile=True): XLA cannot run kernels from a loaded op library. Declare a pure-TensorFlow reference "
        "(@op.reference), which backend='auto' runs under XLA, or turn jit_compile off."
    )
    assert str(err.value).rstrip().endswith(expected)


def first_and_second_order_gradients(op, x):
    with tf.GradientTape() as outer:
        outer.watch(x)
        with tf.GradientTape() as inner:
            inner.watch(x)
            loss = tf.reduce_sum(op(x) ** 3)
        first = inner.gradient(loss, x)
        second_loss = tf.reduce_sum(first**2)
    return first, outer.gradient(second_loss, x)


@pytest.mark.parametrize("name", OPS)
def test_gradients_and_second_order_gradients_under_xla(name):
    op = OPS[name]
    xla_first, xla_second = tf.function(lambda x: first_and_second_order_gradients(op, x), jit_compile=True)(X)
    with tf.GradientTape() as tape:
        tape.watch(X)
        compiled_loss = tf.reduce_sum(op(X, "compiled") ** 3)
    np.testing.assert_allclose(xla_first.numpy(), tape.gradient(compiled_loss, X).numpy(), rtol=1e-4, atol=1e-4)
    _, reference_second = first_and_second_order_gradients(lambda x: op(x, "reference"), X)
    np.testing.assert_allclose(xla_second.numpy(), reference_second.numpy(), rtol=1e-3, atol=1e-3)
    assert np.abs(xla_second.numpy()).max() > 0


def test_in_xla_compilation_is_false_eagerly_and_in_plain_graphs():
    assert not backend.in_xla_compilation()
    seen = []
    tf.function(lambda: seen.append(backend.in_xla_compilation()) or tf.constant(0))()
    tf.function(lambda: seen.append(backend.in_xla_compilation()) or tf.constant(0), jit_compile=True)()
    assert seen == [False, True]
