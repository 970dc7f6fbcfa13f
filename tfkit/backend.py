"""Backend choice for tfkit ops: compiled C++/CUDA, pure-TF reference, or auto."""

from __future__ import annotations

import os
import warnings
from types import ModuleType

from tfkit import _loader

BACKENDS = ("auto", "compiled", "reference")
ENV_VAR = "TFKIT_BACKEND"

_warned_fallback = False


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


def compiled_library(backend: str | None) -> ModuleType | None:
    """Returns the loaded op library, or None where the reference should run.

    "compiled" raises if the library can't load; "auto" falls back to the
    reference with a one-time warning that says why.
    """
    global _warned_fallback
    choice = resolve(backend)
    if choice == "reference":
        return None
    if choice == "compiled":
        return _loader.load_library()
    try:
        return _loader.load_library()
    except _loader.OpLibraryError as err:
        if not _warned_fallback:
            _warned_fallback = True
            warnings.warn(
                f"tfkit: using the pure-TensorFlow reference ops because the compiled library is unavailable: {err}",
                RuntimeWarning,
                stacklevel=3,
            )
        return None
