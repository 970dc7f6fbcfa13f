"""A fuzz case as a script that makes the same call (printed with a failure)."""

from __future__ import annotations

import math

import numpy as np
import tensorflow as tf

from tests.fuzz.cases import TRACED, Case, signature
from tfkit import build

_HEADER = [
    "import numpy as np",
    "import tensorflow as tf",
    "from tfkit import _loader",
    "",
    "lib = _loader.load_library()",
]


def _value(value) -> str:
    if isinstance(value, float) and not math.isfinite(value):
        return f"float({str(value)!r})"
    if isinstance(value, tf.DType):
        return f"tf.{value.name}"
    return repr(value)


def _literal(tensor: tf.Tensor) -> str:
    dtype = f"tf.{tensor.dtype.name}"
    if not tensor.shape.num_elements():
        return f"tf.zeros({list(tensor.shape)}, {dtype})"
    array = tensor.numpy() if not tensor.dtype.is_floating else tf.cast(tensor, tf.float64).numpy()
    text = np.array2string(array, separator=", ", threshold=10**7, floatmode="unique", max_line_width=10**7)
    text = text.replace("nan", "np.nan").replace("inf", "np.inf")
    return f"tf.cast(np.array({text}), {dtype})"


def _handle(case: Case, name: str, table: tf.Tensor) -> list[str]:
    kind, value = case.handle, f"{name}_variable"
    if kind in ("uninitialised", "nameless"):
        shared = "" if kind == "nameless" else "never_assigned"
        dtype, shape = f"tf.{case.dtypes[name].name}", list(case.shapes[name])
        return [f"{name} = tf.raw_ops.VarHandleOp(dtype={dtype}, shape={shape}, shared_name={shared!r})"]
    if kind == "mutex":
        return [f"{name} = tf.raw_ops.MutexV2()"]
    lines = [f"{value} = tf.Variable({_literal(table)})"]
    handle = {
        "empty": f"tf.gather(tf.reshape({value}.handle, [1]), tf.zeros([0], tf.int32))",
        "two": f"tf.stack([{value}.handle, {value}.handle])",
    }.get(kind, f"{value}.handle")
    return [*lines, f"{name} = {handle}"]


def script(case: Case, inputs) -> str:
    """Python that repeats the case's call of the raw op (values included)."""
    lines = list(_HEADER)
    names = [arg.name for arg in case.spec.inputs]
    kwargs = "".join(f", {k}={_value(v)}" for k, v in case.kwargs().items())
    call = f"lib.{build.python_op_name(case.spec.op)}({{}}{kwargs})"
    if case.mode == TRACED:  # no tensor can have the sizes: traced only
        specs = ", ".join(f"tf.TensorSpec({list(s.shape)}, tf.{s.dtype.name})" for s in signature(case))
        lines.append(f"signature = [{specs}]")
        lines.append(f"f = tf.function(lambda *a: {call.format('*a')}, input_signature=signature, autograph=False)")
        lines.append("print(f.get_concrete_function().structured_outputs)")
        return "\n".join(lines)
    for arg in case.spec.inputs:
        if arg.role == "handle":
            lines += _handle(case, arg.name, inputs.tables[arg.name])
        else:
            lines.append(f"{arg.name} = {_literal(inputs.tensors[arg.name])}")
    if case.mode == "eager":
        lines.append(f"print({call.format(', '.join(names))})")
        return "\n".join(lines)
    unknown = case.mode == "graph_unknown"
    specs = []
    for name in names:
        tensor = inputs.tensors[name]
        shape = [None] * tensor.shape.rank if unknown else list(tensor.shape)
        specs.append(f"tf.TensorSpec({shape}, tf.{tensor.dtype.name})")
    lines.append(f"signature = [{', '.join(specs)}]")
    lines.append(f"f = tf.function(lambda *a: {call.format('*a')}, input_signature=signature, autograph=False)")
    lines.append(f"print(f({', '.join(names)}))")
    return "\n".join(lines)
