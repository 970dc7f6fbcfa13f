"""Backend rules for tfkit ops: compiled C++/CUDA, pure-TF reference,
Python prototype, or auto.

Every op is a `tfkit.declare.Op`, which applies these rules once per call (so
once per trace under `tf.function`):

- "reference": the pure-TensorFlow composite.
- "compiled": the C++/CUDA op. Inside an XLA compilation (`jit_compile=True`)
  this is an error, `XLACompiledBackendError`: XLA cannot run custom kernels
  from a loaded library.
- "prototype": the Python function; under XLA an `XLAPrototypeError`, as XLA
  cannot call back into Python. Both are an `XLAUnsupportedError`.
- "auto": the compiled op, else the reference, else the prototype; inside an
  XLA compilation the reference (XLA compiles and fuses it); where the
  library can't be loaded, the next one after a warning that says why.
"""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import tensorflow as tf

from tfkit import _compat

if TYPE_CHECKING:
    from tfkit.declare import Op

BACKENDS = ("auto", "compiled", "reference", "prototype")
ENV_VAR = "TFKIT_BACKEND"

# The library errors warn_fallback has warned about.
_warned_fallback: set[str] = set()


class XLAUnsupportedError(tf.errors.InvalidArgumentError, ValueError):
    """An implementation of an op that can't run inside an XLA compilation
    (`jit_compile=True`); its message names the op and the implementation,
    and says what to do. `XLACompiledBackendError` and `XLAPrototypeError`
    are its two kinds."""

    def __init__(self, node_def, op, message, *args):
        # The signature of tf.errors.OpError, so tf.function's error
        # rewriting keeps this type (and each subclass's).
        super().__init__(node_def, op, message, *args)


class XLACompiledBackendError(XLAUnsupportedError):
    """An op's compiled kernel was to run inside an XLA compilation."""


class XLAPrototypeError(XLAUnsupportedError):
    """An op's prototype (a Python function) was to run inside an XLA compilation."""


def resolve(backend: str | None) -> str:
    """Returns the backend a backend argument names (one of BACKENDS).

    None means the TFKIT_BACKEND environment variable, else "auto".

    Raises:
      ValueError: the argument or the environment variable names no backend.
    """
    source = "backend"
    if backend is None:
        backend = _environment_backend()
        if not backend:
            return "auto"
        source = ENV_VAR
    if backend in BACKENDS:
        return backend
    choice = str(backend).strip().lower()
    if choice not in BACKENDS:
        raise ValueError(f"{source} must be one of {BACKENDS}, got {backend!r}")
    return choice


# TFKIT_BACKEND, read on every call (os.environ's own dict where it can be:
# see tfkit._compat, feature "environ_data").
_environment_backend = _compat.environ_reader(ENV_VAR)


def supports_xla(backend: str | None) -> bool:
    """Whether an op (or a layer) with this backend argument can be traced
    into an XLA compilation: every backend but "compiled" can. Layers set
    Keras's `supports_jit` from it, so Keras's `jit_compile="auto"` leaves
    XLA off for a model that asks for compiled or prototype code explicitly."""
    return resolve(backend) in ("auto", "reference")


def in_xla_compilation() -> bool:
    """Whether ops built now are traced into an XLA compilation.

    True inside `tf.function(jit_compile=True)` (and anything it calls), which
    includes Keras train/test/predict steps of a model compiled with
    `jit_compile=True`; False in eager mode and in ordinary graphs, and
    always False where TensorFlow's XLA-context internal is missing (see
    tfkit._compat, feature "xla_context"): under XLA, backend="auto" then
    picks the compiled op, which XLA rejects, so use backend="reference".
    """
    if tf.executing_eagerly():
        return False
    return _compat.in_xla_context()


# Each implementation XLA can't run: its error, and why it can't.
_NOT_UNDER_XLA = {
    "compiled": (XLACompiledBackendError, "XLA cannot run kernels from a loaded op library"),
    "prototype": (
        XLAPrototypeError,
        "XLA cannot call back into Python (a prototype runs through tf.numpy_function or tf.py_function)",
    ),
}


def xla_error(op: Op, backend: str, kind: str) -> XLAUnsupportedError:
    """The error for `op`'s `kind` implementation ("compiled" or "prototype"),
    which `backend` chose, inside an XLA compilation: it names the
    implementation (a prototype by its Python function) and says what to do."""
    error, why = _NOT_UNDER_XLA[kind]
    function = _python_name(op.implementations.get(kind)) if kind == "prototype" else None
    what = f"its {'compiled kernel' if kind == 'compiled' else 'prototype'}{f' {function}' if function else ''}"
    chosen = f"asked for with backend={backend!r}" if backend == kind else f"which backend={backend!r} chose"
    if "reference" in op.implementations:
        advice = (
            "Use backend='auto' (the default; it runs the pure-TensorFlow reference under XLA) or 'reference', "
            "or turn jit_compile off."
        )
    else:
        advice = (
            "Declare a pure-TensorFlow reference (@op.reference), which backend='auto' runs under XLA, "
            "or turn jit_compile off."
        )
    message = f"{op.name}: {what}, {chosen}, cannot run inside an XLA compilation (jit_compile=True): {why}. {advice}"
    return error(None, None, message)


def _python_name(fn: Callable[..., Any] | None) -> str | None:
    """`module.qualname` of the Python function behind `fn`, where it has one."""
    function = inspect.unwrap(fn) if fn is not None else None
    qualname = getattr(function, "__qualname__", None)
    if not isinstance(qualname, str):
        return None
    module = getattr(function, "__module__", None)
    return f"{module}.{qualname}" if module else qualname


def warn_fallback(err: Exception, stacklevel: int = 2, *, instead: str = "the pure-TensorFlow reference ops") -> None:
    """Warns that `instead` runs because a library can't load, once per
    process for each library error (tfkit's own is told at import)."""
    if str(err) in _warned_fallback:
        return
    _warned_fallback.add(str(err))
    warnings.warn(
        f"tfkit: using {instead} because the compiled library is unavailable: {err}",
        RuntimeWarning,
        stacklevel=stacklevel + 1,
    )
