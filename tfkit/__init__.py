"""tfkit: fast fused TensorFlow custom ops, their gradients and Keras 3 layers.

Importing tfkit is cheap: TensorFlow, Keras and the compiled op library are
loaded on first use of `tfkit.ops`, `tfkit.layers`, `tfkit.saved_model` or
`tfkit.load_library()`.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_SUBMODULES = ("ops", "layers", "saved_model", "backend")
_LOADER_NAMES = ("load_library", "library_path", "build_info", "OpLibraryError")

__all__ = [*_SUBMODULES, *_LOADER_NAMES, "__version__"]


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:
        return importlib.import_module(f"{__name__}.{name}")
    if name in _LOADER_NAMES:
        return getattr(importlib.import_module(f"{__name__}._loader"), name)
    raise AttributeError(f"module 'tfkit' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
