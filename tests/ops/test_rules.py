"""Rules written once: the Python tables and checks agree with the op
definitions and kernels (kernels/<family>/<family>_rules.h) they mirror."""

import inspect
import re

import numpy as np
import pytest
import tensorflow as tf
from tensorflow.python.framework import op_def_registry

import tfkit
from tests.conftest import ROOT
from tfkit.ops import _checks
from tfkit.ops.activation import ACTIVATIONS
from tfkit.ops.embedding import COMBINERS


def allowed(op_name: str, attr: str) -> tuple[str, ...]:
    tfkit.load_library()
    op = op_def_registry.get(op_name)
    (found,) = [a for a in op.attr if a.name == attr]
    return tuple(value.decode() for value in found.allowed_values.list.s)


@pytest.mark.parametrize("op", ["BiasActivation", "BiasActivationGrad", "GatedActivation", "GatedActivationGrad"])
def test_activation_names_are_the_ops(op):
    assert allowed(f"Tfkit>{op}", "activation") == ACTIVATIONS


@pytest.mark.parametrize("op", ["EmbeddingBag", "ResourceEmbeddingBag", "EmbeddingBagGrad"])
def test_combiner_names_are_the_ops(op):
    assert allowed(f"Tfkit>{op}", "combiner") == COMBINERS


def test_every_float_op_takes_the_four_float_types():
    tfkit.load_library()
    sources = "".join(path.read_text() for path in (ROOT / "cc" / "ops").glob("*.cc"))
    names = re.findall(r'REGISTER_OP\("(Tfkit>\w+)"\)', sources)
    assert len(names) >= 16
    for op in map(op_def_registry.get, names):
        for attr in op.attr:
            if attr.name == "T":
                types = {tf.as_dtype(t) for t in attr.allowed_values.list.type}
                assert types == {tf.float16, tf.bfloat16, tf.float32, tf.float64}, op.name


SMALLEST_NORMAL = float(np.finfo(np.float32).tiny)


@pytest.mark.parametrize(
    "epsilon", [SMALLEST_NORMAL, SMALLEST_NORMAL / 2, 0.0, -1e-5, 1e-5, float("inf"), float("nan"), 1e39, 3e38]
)
def test_the_epsilon_rule_is_the_same_in_python_and_in_the_op(epsilon):
    library = tfkit.load_library()
    x = tf.ones([2, 3])
    try:
        _checks.check_epsilon(epsilon)
        python_refuses = None
    except tf.errors.InvalidArgumentError as err:
        python_refuses = str(err)
    try:
        library.tfkit_rms_norm(x, tf.ones([3]), epsilon=epsilon, U=tf.float32)
        op_refuses = None
    except tf.errors.InvalidArgumentError as err:
        op_refuses = err.message
    assert (python_refuses is None) == (op_refuses is None), (python_refuses, op_refuses)
    if op_refuses:
        assert "epsilon must be > 0, finite and a normal float32" in op_refuses
        assert "epsilon must be > 0, finite and a normal float32" in python_refuses


OPS = [
    "bias_activation",
    "gated_activation",
    "embedding_bag",
    "layer_norm",
    "rms_norm",
    "resampler",
    "rotary_embedding",
]


@pytest.mark.parametrize("name", [*OPS, "dense_image_warp"])
def test_every_op_documents_its_backend_once_from_its_declaration(name):
    op = getattr(tfkit.ops, name)
    assert isinstance(op, tfkit.Op)
    assert op.__doc__.count("  backend: ") == 1, op.__doc__
    assert op.__doc__.index("  backend: ") < op.__doc__.index("Returns:")
    assert "backend" not in inspect.signature(op._prepare).parameters
    assert list(inspect.signature(op).parameters)[-1] == "backend"


@pytest.mark.parametrize("name", OPS)
def test_every_reference_function_is_the_ops_reference(name, monkeypatch):
    op, reference = getattr(tfkit.ops, name), getattr(tfkit.ops, f"{name}_reference")
    assert reference.__name__ == f"{name}_reference"
    assert inspect.signature(reference) == inspect.signature(op._prepare)
    calls = []
    monkeypatch.setitem(op.implementations, "reference", lambda *a, **k: calls.append(k) or "ran")
    monkeypatch.setenv("TFKIT_BACKEND", "compiled")
    args = {
        "bias_activation": ([[1.0]], [0.0]),
        "gated_activation": ([[1.0, 2.0]],),
        "embedding_bag": ([[0]], [[1.0]]),
        "layer_norm": ([[1.0]], [1.0], [0.0]),
        "rms_norm": ([[1.0]], [1.0]),
        "resampler": (tf.ones([1, 2, 2, 1]), tf.ones([1, 1, 2])),
        "rotary_embedding": (tf.ones([1, 2, 1, 4]),),
    }[name]
    assert reference(*args) == "ran" and len(calls) == 1
