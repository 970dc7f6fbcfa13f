"""Rules written once: the Python tables and checks agree with the op
definitions and kernels (kernels/<family>/<family>_rules.h) they mirror."""

import dataclasses
import functools
import inspect
import re
from collections.abc import Callable

import numpy as np
import pytest
import tensorflow as tf
from tensorflow.python.framework import op_def_registry

import tfkit
from tests.conftest import ROOT, error_message
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


# Shapes print one way in every message (tfkit/_shapes.py, DimsString in
# kernels/common/rules.h): "[2,3]", "?" for a dimension a graph doesn't
# know. Per family, a bad shape as a user meets it: the public op eagerly,
# traced with known dims, and run with unknown dims (the kernel's check
# then); and traced with the first dimension of one input unknown, where
# the Python wrapper and the raw op's shape function both print "?". Each
# message is a template whose {} is that first dimension.
@dataclasses.dataclass
class BadShape:
    says: str
    op: Callable
    args: Callable[[], list]
    raw: Callable
    raw_args: Callable[[], list]
    unknown: int  # the input whose first dimension is unknown in the last trace
    raw_unknown: int | None = None  # the same input of the raw op, where its index differs
    # What a check at trace time says with every dimension unknown, where
    # one (not the kernel's at run time) refuses the input then.
    every_dim_unknown_says: str | None = None


BAD_SHAPES = {
    "norm": BadShape(
        "gamma must have shape [3] (the last dimension of x [{},3]), got shape [4]",
        tfkit.ops.layer_norm,
        lambda: [tf.ones([2, 3]), tf.ones([4]), tf.ones([3])],
        lambda lib, x, gamma, beta: lib.tfkit_layer_norm(x, gamma, beta, U=tf.float32),
        lambda: [tf.ones([2, 3]), tf.ones([4]), tf.ones([3])],
        0,
    ),
    "activation": BadShape(
        "the last dimension of x must be even (2 * units: the halves [a, b]), got shape [{},3]",
        tfkit.ops.gated_activation,
        lambda: [tf.ones([2, 3])],
        lambda lib, x: lib.tfkit_gated_activation(x),
        lambda: [tf.ones([2, 3])],
        0,
    ),
    "embedding": BadShape(
        "params must have shape [vocabulary, dim], got shape [{},3,2]",
        tfkit.ops.embedding_bag,
        lambda: [tf.zeros([2, 2], tf.int32), tf.ones([2, 3, 2])],
        lambda lib, *args: lib.tfkit_embedding_bag(*args),
        lambda: [tf.zeros([4], tf.int32), tf.constant([0, 2, 4], tf.int64), tf.ones([2, 3, 2]), tf.ones([0])],
        1,
        raw_unknown=2,
        every_dim_unknown_says="params must have shape [vocabulary, dim], got shape [?,?,?]",  # a rank check
    ),
    "resampling": BadShape(
        "warp must have shape [batch, ..., 2] (the x, y of each point), got shape [{},5,3]",
        tfkit.ops.resampler,
        lambda: [tf.ones([1, 4, 4, 2]), tf.ones([1, 5, 3])],
        lambda lib, data, warp: lib.tfkit_resampler(data, warp),
        lambda: [tf.ones([1, 4, 4, 2]), tf.ones([1, 5, 3])],
        1,
    ),
    "rotary": BadShape(
        "x's feature dimension must be even (pairs of features are rotated), got shape [{},3,5]",
        tfkit.ops.rotary_embedding,
        lambda: [tf.ones([2, 3, 5])],
        lambda lib, x, positions, inv_freq: lib.tfkit_rotary_embedding(x, positions, inv_freq),
        lambda: [tf.ones([2, 3, 5]), tf.zeros([1, 3]), tf.ones([2])],
        0,
    ),
}


def raised(call, *args, specs=None) -> str:
    """The message of the InvalidArgumentError or ValueError that `call`
    raises: eagerly on `args`, else traced with `specs` (a Python check or a
    shape function) and, if that passes, run on `args` (a kernel's check)."""
    with pytest.raises((tf.errors.InvalidArgumentError, ValueError)) as err:
        if specs is None:
            call(*args)
        else:
            tf.function(call, input_signature=specs, autograph=False).get_concrete_function()(*args)
    return error_message(err.value)


def specs(args, unknown=None, every_dim_unknown=False) -> list[tf.TensorSpec]:
    def spec(index, t):
        shape = t.shape.as_list()
        if every_dim_unknown:
            shape = [None] * len(shape)
        elif index == unknown:
            shape[0] = None
        return tf.TensorSpec(shape, t.dtype)

    return [spec(i, t) for i, t in enumerate(args)]


@pytest.mark.parametrize("family", BAD_SHAPES)
def test_a_bad_shape_reads_the_same_eagerly_and_in_graphs(family):
    case = BAD_SHAPES[family]
    args = case.args()
    first = str(args[case.unknown].shape[0])
    eager = raised(case.op, *args)
    known = raised(case.op, *args, specs=specs(args))
    unknown = raised(case.op, *args, specs=specs(args, every_dim_unknown=True))
    assert eager == known == case.says.format(first)
    assert unknown == (case.every_dim_unknown_says or eager)
    assert raised(case.op, *args, specs=specs(args, case.unknown)) == case.says.format("?")


@pytest.mark.parametrize("family", BAD_SHAPES)
def test_a_raw_ops_kernel_and_shape_function_print_shapes_as_the_wrappers_do(family):
    case, library = BAD_SHAPES[family], tfkit.load_library()
    args, unknown = case.raw_args(), case.unknown if case.raw_unknown is None else case.raw_unknown
    first = str(args[unknown].shape[0])
    op = functools.partial(case.raw, library)
    assert raised(op, *args) == raised(op, *args, specs=specs(args)) == case.says.format(first)
    assert raised(op, *args, specs=specs(args, unknown)) == case.says.format("?")


def test_the_attention_fill_and_dropout_hash_are_the_kernels():
    """tfkit/ops/attention.py mirrors kernels/attention/attention_rules.h:
    the masked logits' fill and the hash's constants, and the dropout rate's rule."""
    from tfkit.ops import attention

    header = (ROOT / "kernels" / "attention" / "attention_rules.h").read_text()
    assert "kMaskFill = -0.7 * 3.38953e38;" in header and attention.MASK_FILL == -0.7 * 3.38953e38
    constants = re.findall(r"0x[0-9A-F]{8}u", header)
    assert constants == [f"0x{c:08X}u" for c in (attention._GOLDEN, attention._MURMUR_1, attention._MURMUR_2)]
    library = tfkit.load_library()
    q, kv = tf.ones([1, 2, 1, 4]), tf.ones([1, 3, 1, 4])
    empty = {"bias": tf.zeros([0]), "mask": tf.zeros([0], tf.bool), "seed": tf.zeros([2], tf.int64)}
    for rate in (0.0, 0.5, 0.999, 1.0, -0.1, 1e-46, float("nan")):
        said = []
        for check in (
            lambda rate=rate: attention.check_dropout_rate(rate),
            lambda rate=rate: library.tfkit_dot_product_attention(q, kv, kv, **empty, dropout_rate=rate, U=tf.float32),
        ):
            try:
                check()
                said.append(None)
            except tf.errors.InvalidArgumentError as err:
                said.append(re.search(r"dropout_rate must be in \[0, 1\), got \S+", err.message).group(0))
        assert said[0] == said[1], (rate, said)
