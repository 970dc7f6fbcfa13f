"""Backend rules for tfkit ops: compiled C++/CUDA, pure-TF reference,
Python prototype, or auto.

Every op is a `tfkit.declare.Op`, which applies these rules once per call (so
once per trace under `tf.function`):

- "reference": the pure-TensorFlow composite.
- "compiled": the C++/CUDA op. Inside an XLA compilation (`jit_compile=True`)
  this is an error: XLA cannot run custom kernels from a loaded library.
- "prototype": the Python function (not under XLA either).
- "auto": the compiled op, else the reference, else the prototype; inside an
  XLA compilation the reference (XLA compiles and fuses it); where the
  library can't be loaded, the next one after a warning that says why.
"""

from __future__ import annotations

import warnings

import tensorflow as tf

from tfkit import _compat

BACKENDS = ("auto", "compiled", "reference", "prototype")
ENV_VAR = "TFKIT_BACKEND"

# The library errors warn_fallback has warned about.
_warned_fallback: set[str] = set()


class XLACompiledBackendError(tf.errors.InvalidArgumentError, ValueError):
    """backend="compiled" was asked for inside an XLA (`jit_compile`) compilation."""

    def __init__(self, node_def, op, message, *args):
        # The signature of tf.errors.OpError, so tf.function's error
        # rewriting keeps this type.
        super().__init__(node_def, op, message, *args)


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


def xla_error(op_name: str, choice: str) -> XLACompiledBackendError:
    """The error for an implementation XLA cannot run, saying what to do."""
    if choice == "compiled":
        return XLACompiledBackendError(
            None,
            None,
            f"{op_name}: backend='compiled' cannot run inside an XLA compilation "
            "(jit_compile=True): XLA cannot run tfkit's compiled kernels, which "
            "come from a loaded op library. Use backend='auto' (the default; it "
            "runs the pure-TensorFlow reference under XLA) or 'reference', or "
            "turn jit_compile off.",
        )
    return XLACompiledBackendError(
        None,
        None,
        f"{op_name}: its prototype (a Python function run by tf.numpy_function or "
        "tf.py_function) cannot run inside an XLA compilation (jit_compile=True): "
        "XLA cannot call back into Python. Declare a pure-TensorFlow reference "
        "for it (@op.reference), which runs under XLA with backend='auto', or "
        "turn jit_compile off.",
    )


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
