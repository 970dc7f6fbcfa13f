"""Finds, checks and loads tfkit's compiled op library, once per process.

The library carries a build stamp (the TensorFlow version it was compiled
against and whether CUDA kernels are linked in). The stamp is read from the
file's bytes, so a library built for another TensorFlow is refused with a
clear message before the dynamic loader can fail on missing symbols.
"""

from __future__ import annotations

import functools
import os
import re
import threading
from pathlib import Path
from types import ModuleType

LIBRARY_NAME = "_tfkit_ops.so"
_STAMP = re.compile(rb"TFKIT_BUILD_STAMP ([^\x00]*)")
# The C++ feature tests' results (tfkit/include/tfkit/compat.h).
_COMPAT = re.compile(rb"TFKIT_COMPAT (\w+)=([01]);")

_lock = threading.Lock()
_module: ModuleType | None = None
_error: OpLibraryError | None = None


class OpLibraryError(RuntimeError):
    """The compiled op library is missing, stale or failed to load."""


def _project_of(path: Path) -> Path | None:
    """The tfkit checkout or `tfkit init` project whose `make build` makes
    the library at `path` (`<root>/<package>/<library>.so`), if it is one."""
    root = path.resolve().parent.parent
    return root if (root / "Makefile").is_file() and (root / "cc" / "BUILD").is_file() else None


def rebuild_advice(path: Path) -> str:
    """How to rebuild the library at `path` for this TensorFlow, for the way
    it came: tfkit's own from a checkout or a wheel, a project's, or another."""
    import tensorflow as tf

    if Path(path) == library_path():
        checkout = _project_of(Path(__file__))
        if checkout is None:
            return (
                f"This tfkit was installed from a wheel: install the tfkit wheel built for TensorFlow "
                f"{tf.version.VERSION} (`pip wheel .` in a tfkit checkout builds one)."
            )
        advice = f"Rebuild it with `make build` in {checkout}."
        if os.environ.get("TFKIT_LIBRARY"):
            advice += " TFKIT_LIBRARY names this library: unset it to use the one `make build` writes."
        return advice
    project = _project_of(Path(path))
    if project is not None:
        return f"Rebuild it with `make build` in {project}."
    return f"Rebuild it against TensorFlow {tf.version.VERSION} as it was built (tfkit.build, or Bazel)."


def library_path() -> Path:
    """Returns where the op library is looked for.

    `TFKIT_LIBRARY` overrides the default, `tfkit/_tfkit_ops.so` (where
    `make build` puts the Bazel output).
    """
    override = os.environ.get("TFKIT_LIBRARY")
    return Path(override) if override else Path(__file__).with_name(LIBRARY_NAME)


def build_info(path: Path | None = None) -> dict[str, str]:
    """Returns the build stamp of the op library as a dict.

    Keys: tf_version, cuda ("1" or "0"), cuda_version, cuda_archs.

    Raises:
      OpLibraryError: the library is missing or carries no stamp.
    """
    path = path or library_path()
    if not path.is_file():
        raise OpLibraryError(
            f"the op library was not found at {path}. {rebuild_advice(path)} Or set TFKIT_LIBRARY "
            "to the library's path. The reference backend needs no library: TFKIT_BACKEND=reference."
        )
    stamp, _ = _records(path)
    if stamp is None:
        raise OpLibraryError(f"{path} has no tfkit build stamp. {rebuild_advice(path)}")
    fields = stamp.decode("ascii", "replace").strip(";").split(";")
    return dict(field.split("=", 1) for field in fields if "=" in field)


def compat_features(path: Path) -> dict[str, bool]:
    """The C++ feature tests' results the library at `path` records
    (TFKIT_COMPAT_FEATURE in tfkit/compat.h): name -> on."""
    return dict(_records(path)[1])


def _records(path: Path) -> tuple[bytes | None, tuple[tuple[str, bool], ...]]:
    """The build stamp and the feature records of a library file, read once
    per version of the file (the stamp check and tfkit._compat both ask)."""
    status = path.stat()
    return _read_records(path, status.st_mtime_ns, status.st_size)


@functools.lru_cache(maxsize=8)
def _read_records(path: Path, mtime_ns: int, size: int) -> tuple[bytes | None, tuple[tuple[str, bool], ...]]:
    data = path.read_bytes()
    stamp = _STAMP.search(data)
    features = tuple((name.decode(), on == b"1") for name, on in _COMPAT.findall(data))
    return (stamp.group(1) if stamp else None), features


def _check_tf_version(path: Path, stamp: dict[str, str]) -> None:
    import tensorflow as tf

    built_for = stamp.get("tf_version", "unknown")
    if built_for != tf.version.VERSION:
        raise OpLibraryError(
            f"{path} was built for TensorFlow {built_for}, but this process runs "
            f"TensorFlow {tf.version.VERSION}. {rebuild_advice(path)}"
        )


def load_library() -> ModuleType:
    """Loads the op library with tf.load_op_library (once) and returns it.

    Raises:
      OpLibraryError: the library is missing, was built for another
        TensorFlow version, or the dynamic loader refused it.
    """
    global _module, _error
    with _lock:
        if _module is None and _error is None:
            try:
                _module = _load(library_path())
            except OpLibraryError as err:
                _error = err
        if _error is not None:
            raise _error
        return _module


_by_path: dict[Path, ModuleType] = {}


def load_path(path: Path) -> ModuleType:
    """Loads any stamped op library (e.g. one `tfkit.build` made), once.

    Raises:
      OpLibraryError: missing, built for another TensorFlow, or refused.
    """
    path = Path(path).resolve()
    with _lock:
        if path not in _by_path:
            _by_path[path] = _load(path)
        return _by_path[path]


def _load(path: Path) -> ModuleType:
    import tensorflow as tf

    _check_tf_version(path, build_info(path))
    try:
        return tf.load_op_library(str(path))
    except Exception as err:  # whatever the dynamic loader or TF raises
        raise OpLibraryError(f"TensorFlow could not load {path}: {err}. {rebuild_advice(path)}") from err
