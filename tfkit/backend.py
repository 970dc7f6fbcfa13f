"""Backend choice for tfkit ops: compiled C++/CUDA, pure-TF reference, or auto.

Every op family asks `compiled_library(op_name, backend)` once per call (so
once per trace under `tf.function`); this is the one place that decides which
implementation runs:

- "reference": the pure-TensorFlow composite.
- "compiled": the C++/CUDA op. Inside an XLA compilation (`jit_compile=True`)
  this is an error: XLA cannot run custom kernels from a loaded library.
- "auto": the compiled op, except inside an XLA compilation, where the
  reference runs (XLA compiles and fuses it), and where the library can't be
  loaded, where the reference runs after one warning that says why.
"""

from __future__ import annotations

import os
import warnings
from types import ModuleType

import tensorflow as tf
from tensorflow.python.framework import ops as tf_ops
from tensorflow.python.ops import control_flow_util

from tfkit import _loader

BACKENDS = ("auto", "compiled", "reference")
ENV_VAR = "TFKIT_BACKEND"

_warned_fallback = False


class XLACompiledBackendError(tf.errors.InvalidArgumentError, ValueError):
    """backend="compiled" was asked for inside an XLA (`jit_compile`) compilation."""

    def __init__(self, node_def, op, message, *args):
        # The signature of tf.errors.OpError, so tf.function's error
        # rewriting keeps this type.
        super().__init__(node_def, op, message, *args)


def resolve(backend: str | None) -> str:
    """Returns "auto", "compiled" or "reference" for a backend argument.

    None means the TFKIT_BACKEND environment variable, else "auto".

    Raises:
      ValueError: the argument or the environment variable names no backend.
    """
    source = "backend"
    if backend is None:
        backend = os.environ.get(ENV_VAR) or "auto"
        source = ENV_VAR
    choice = str(backend).strip().lower()
    if choice not in BACKENDS:
        raise ValueError(f"{source} must be one of {BACKENDS}, got {backend!r}")
    return choice


def supports_xla(backend: str | None) -> bool:
    """Whether an op (or a layer) with this backend argument can be traced
    into an XLA compilation: every backend but "compiled" can. Layers set
    Keras's `supports_jit` from it, so Keras's `jit_compile="auto"` leaves
    XLA off for a model that asks for the compiled kernels explicitly."""
    return resolve(backend) != "compiled"


def in_xla_compilation() -> bool:
    """Whether ops built now are traced into an XLA compilation.

    True inside `tf.function(jit_compile=True)` (and anything it calls), which
    includes Keras train/test/predict steps of a model compiled with
    `jit_compile=True`; False in eager mode and in ordinary graphs.
    """
    if tf.executing_eagerly():
        return False
    return control_flow_util.GraphOrParentsInXlaContext(tf_ops.get_default_graph())


def compiled_library(op_name: str, backend: str | None) -> ModuleType | None:
    """Returns the loaded op library, or None where the reference should run.

    Args:
      op_name: The op asking, e.g. "tfkit.ops.layer_norm", for error messages.
      backend: "auto", "compiled", "reference" or None (TFKIT_BACKEND).

    Raises:
      XLACompiledBackendError: "compiled" inside an XLA compilation (an
        InvalidArgumentError that is also a ValueError), at trace time.
      OpLibraryError: "compiled" and the library can't load.
    """
    choice = resolve(backend)
    if choice == "reference":
        return None
    if in_xla_compilation():
        if choice == "compiled":
            raise XLACompiledBackendError(
                None,
                None,
                f"{op_name}: backend='compiled' cannot run inside an XLA compilation "
                "(jit_compile=True): XLA cannot run tfkit's compiled kernels, which "
                "come from a loaded op library. Use backend='auto' (the default; it "
                "runs the pure-TensorFlow reference under XLA) or 'reference', or "
                "turn jit_compile off."
            )
        return None
    if choice == "compiled":
        return _loader.load_library()
    try:
        return _loader.load_library()
    except _loader.OpLibraryError as err:
        warn_fallback(err, stacklevel=3)
        return None


def warn_fallback(err: Exception, stacklevel: int = 2) -> None:
    """Warns once per process that the reference backend replaces the library."""
    global _warned_fallback
    if _warned_fallback:
        return
    _warned_fallback = True
    warnings.warn(
        f"tfkit: using the pure-TensorFlow reference ops because the compiled library is unavailable: {err}",
        RuntimeWarning,
        stacklevel=stacklevel + 1,
    )
