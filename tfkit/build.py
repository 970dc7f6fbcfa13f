"""Compile and load a TensorFlow op library in one call, without Bazel.

    module = tfkit.build.load_inline("scale", cpp_source)     # C++ source text
    module = tfkit.build.load("my_ops", ["ops.cc", "kernels.cc"], cuda_sources=["kernels.cu.cc"])
    y = module.my_scale(x, factor=2.0)

The system C++ compiler (`CXX`, else `c++`) gets TensorFlow's own flags from
`tf.sysconfig`; CUDA sources go through nvcc (found like the Bazel rules find
it) with the Bazel macro's flags and architectures. The library carries the
same build stamp as a Bazel build, so tfkit's loader refuses it under another
TensorFlow.

Builds are cached under `TFKIT_CACHE_DIR` (default `~/.cache/tfkit`), keyed
by the sources, the local headers they include, the flags, the compiler's
version and TensorFlow's version: an unchanged second call, in any process,
runs no compiler. A file lock lets one process build while others wait for
its result, and the library appears under its final name only when complete.
"""

from __future__ import annotations

import concurrent.futures
import fcntl
import functools
import hashlib
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

import tensorflow as tf

from tfkit import _compat, _loader
from tfkit._cuda import CUDA_ARCHS, find_cuda, link_flags, nvcc_flags

__all__ = [
    "CUDA_ARCHS",
    "SANITIZE_FLAGS",
    "BuildError",
    "bazel_dir",
    "cache_dir",
    "compile_layout",
    "compile_library",
    "find_cuda",
    "include_dir",
    "load",
    "load_inline",
    "sanitizer_env",
]

_CXX_FLAGS = ("-O2", "-fPIC", "-Wno-sign-compare", "-Wno-unused-function")
_INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"', re.MULTILINE)
_ERROR_LINE = re.compile(r"^[^\s:][^:]*:\d+(:\d+)?: (fatal )?error", re.MULTILINE)


class BuildError(RuntimeError):
    """A compile or link failed; the message shows the first errors and names the log."""


def include_dir() -> str:
    """The folder to add to the include path for `#include "tfkit/op_utils.h"`."""
    return str(Path(__file__).with_name("include"))


def bazel_dir() -> str:
    """The folder holding tfkit's Bazel macro (`cc/op_library.bzl`) and its
    configure rules (`third_party/tf`, `third_party/cuda`, the local
    `rules_cc`/`rules_java`): in an installed tfkit, `tfkit/bazel`; in a
    checkout, the checkout itself."""
    installed = Path(__file__).with_name("bazel")
    return str(installed if installed.is_dir() else Path(__file__).resolve().parents[1])


def cache_dir() -> Path:
    """Where builds are cached: TFKIT_CACHE_DIR, else ~/.cache/tfkit."""
    return Path(os.environ.get("TFKIT_CACHE_DIR") or Path.home() / ".cache" / "tfkit")


def load_inline(name: str, cpp_source: str, *, cuda_source: str | None = None, **options) -> ModuleType:
    """Like `load`, from source text: `cpp_source` (and `cuda_source`, nvcc)."""
    sources_dir = cache_dir() / "inline" / _digest([name, cpp_source, cuda_source or ""])[:16]
    sources_dir.mkdir(parents=True, exist_ok=True)
    cpp = _write_if_changed(sources_dir / f"{name}.cc", cpp_source)
    cuda = [_write_if_changed(sources_dir / f"{name}.cu.cc", cuda_source)] if cuda_source else []
    return load(name, [cpp], cuda_sources=cuda, **options)


def load(
    name: str,
    sources: Sequence[str | os.PathLike],
    *,
    cuda_sources: Sequence[str | os.PathLike] = (),
    include_dirs: Sequence[str | os.PathLike] = (),
    defines: Sequence[str] = (),
    extra_cflags: Sequence[str] = (),
    build_dir: str | os.PathLike | None = None,
    verbose: bool = False,
    sanitize: bool = False,
) -> ModuleType:
    """Compiles (or finds in the cache), links and loads an op library.

    Args:
      name, sources, cuda_sources, include_dirs, defines, extra_cflags,
      build_dir, verbose, sanitize: as for `compile_library`.

    Returns:
      The module `tf.load_op_library` returns.

    Raises:
      BuildError: a compile or the link failed.
      OpLibraryError: the built library could not be loaded, or it is
        sanitized and this process was not started under `sanitizer_env()`.
    """
    library = compile_library(
        name,
        sources,
        cuda_sources=cuda_sources,
        include_dirs=include_dirs,
        defines=defines,
        extra_cflags=extra_cflags,
        build_dir=build_dir,
        verbose=verbose,
        sanitize=sanitize,
    )
    if sanitize and not _asan_runtime_loaded():
        # Loading it here would make the ASan runtime abort the process.
        raise _loader.OpLibraryError(
            f"{library} was built with sanitize=True; it loads only into a process started with the sanitizer "
            "runtimes preloaded: run under the environment `python -m tfkit sanitizer-env` prints "
            "(tfkit.build.sanitizer_env())."
        )
    module = _loader.load_path(library)
    _check_ops_registered(module, library, sources)
    return module


_REGISTER_OP = re.compile(r'REGISTER_OP\(\s*"([^"]+)"\s*\)')


def _check_ops_registered(module: ModuleType, library: Path, sources) -> None:
    """TensorFlow can't replace an op in a running process: a rebuilt library
    whose ops an earlier one registered loads without them. Say so."""
    declared = {name for source in sources for name in _REGISTER_OP.findall(Path(source).read_text(errors="replace"))}
    stale = sorted(name for name in declared if not hasattr(module, python_op_name(name)))
    if stale:
        raise _loader.OpLibraryError(
            f"{library} registers {stale}, but this process already has ops of those names from another library "
            "(TensorFlow cannot replace an op in a running process). Restart Python to load the new build, or "
            "give the ops new names."
        )


def python_op_name(op_name: str) -> str:
    """The name TensorFlow gives an op's Python function: `Tfkit>LayerNorm`
    becomes `tfkit_layer_norm` ('>' to '_', and a '_' where a capital
    follows a lowercase letter or starts a lowercase run). TensorFlow's own
    wrapper generator is asked; where it can't be (tfkit._compat, feature
    "op_names"), tfkit's copy of that rule answers."""
    return _compat.python_op_name(op_name)


def _asan_runtime_loaded() -> bool:
    try:
        return "libasan" in Path("/proc/self/maps").read_text()
    except OSError:
        return "libasan" in os.environ.get("LD_PRELOAD", "")


def compile_library(
    name: str,
    sources: Sequence[str | os.PathLike],
    *,
    cuda_sources: Sequence[str | os.PathLike] = (),
    include_dirs: Sequence[str | os.PathLike] = (),
    defines: Sequence[str] = (),
    extra_cflags: Sequence[str] = (),
    build_dir: str | os.PathLike | None = None,
    verbose: bool = False,
    sanitize: bool = False,
) -> Path:
    """Compiles and links an op library (or finds it in the cache); returns its path.

    Args:
      name: The library's name (a valid file name); `<name>.so` is built.
      sources: C++ sources: op registrations and kernels.
      cuda_sources: CUDA sources, compiled with nvcc when a toolkit is found
        (then the C++ sources also get GOOGLE_CUDA=1); ignored without one.
      include_dirs: Extra include directories (tfkit's and each source's
        folder are always on the path).
      defines: Preprocessor definitions, "NAME" or "NAME=VALUE".
      extra_cflags: Further flags for the C++ compiler.
      build_dir: Where to build (default: a folder per build key in the cache).
      verbose: Print the commands and the compiler's output.
      sanitize: Build with AddressSanitizer and UndefinedBehaviorSanitizer
        (C++ sources only; any report stops the process). Load and test it
        in a process started under `sanitizer_env()`.

    Raises:
      BuildError: a compile or the link failed.
    """
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.-]*", name):
        raise ValueError(f"name must be a file name of letters, digits, '_', '.', '-', got {name!r}")
    if sanitize:
        cuda_sources = ()
        extra_cflags = [*SANITIZE_FLAGS, *extra_cflags]
    extra_ldflags = ["-fsanitize=address,undefined"] if sanitize else []
    plan = _Plan(name, sources, cuda_sources, include_dirs, defines, extra_cflags, extra_ldflags, verbose)
    folder = Path(build_dir) if build_dir is not None else cache_dir() / f"{name}-{plan.key[:16]}"
    folder.mkdir(parents=True, exist_ok=True)
    library = folder / f"{name}.so"
    with open(folder / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another process building this waits here
        if not _is_current(library, plan.key):
            plan.build(folder, library)
    return library


def compile_layout(root: str | os.PathLike, name: str, **options) -> Path:
    """Compiles every op family of a tree in tfkit's layout (tfkit itself, or
    a project `python -m tfkit init` made) into one library: the sources
    `cc/ops/*_ops.cc`, `cc/kernels/*_kernels.cc` and `kernels/*/*.cu.cc`,
    with `root` on the include path. Options as for `compile_library`."""
    root = Path(root).resolve()
    sources = sorted(root.glob("cc/ops/*_ops.cc")) + sorted(root.glob("cc/kernels/*_kernels.cc"))
    cuda_sources = sorted(root.glob("kernels/*/*.cu.cc"))
    if not sources:
        raise BuildError(f"tfkit.build: no cc/ops/*_ops.cc or cc/kernels/*_kernels.cc under {root}")
    return compile_library(name, sources, cuda_sources=cuda_sources, include_dirs=[root], **options)


# GCC 12's `null`, `nonnull-attribute` and `returns-nonnull-attribute`
# checks break compiling absl's headers (constant expressions stop being
# constant); every other UBSan check is on, and stops at its first report.
SANITIZE_FLAGS = (
    "-fsanitize=address,undefined",
    "-fno-sanitize=null,nonnull-attribute,returns-nonnull-attribute",
    "-fno-sanitize-recover=all",
    "-fno-omit-frame-pointer",
    "-g",
)


def sanitizer_env() -> dict[str, str]:
    """The environment a process needs to load sanitized op libraries.

    LD_PRELOAD puts the ASan runtime first and libstdc++ right after it
    (without that, ASan aborts at the first C++ exception TensorFlow throws);
    leak checking is off (Python and TensorFlow keep memory to the end); any
    report ends the process with a non-zero exit.
    """
    cxx = os.environ.get("CXX") or "c++"

    def runtime(library: str) -> str:
        return subprocess.run([cxx, f"-print-file-name={library}"], capture_output=True, text=True).stdout.strip()

    return {
        "LD_PRELOAD": f"{runtime('libasan.so')}:{runtime('libstdc++.so.6')}",
        "ASAN_OPTIONS": "detect_leaks=0:abort_on_error=1:halt_on_error=1",
        "UBSAN_OPTIONS": "halt_on_error=1:print_stacktrace=1",
    }


def _is_current(library: Path, key: str) -> bool:
    marker = library.with_suffix(".key")
    return library.is_file() and marker.is_file() and marker.read_text() == key


class _Plan:
    """The commands of one build and its cache key."""

    def __init__(self, name, sources, cuda_sources, include_dirs, defines, extra_cflags, extra_ldflags, verbose):
        self.name = name
        self.sources = [Path(s).resolve() for s in sources]
        self.cuda = find_cuda() if cuda_sources else None
        self.cuda_sources = [Path(s).resolve() for s in cuda_sources] if self.cuda else []
        self.verbose = verbose
        missing = [str(s) for s in [*self.sources, *self.cuda_sources] if not s.is_file()]
        if missing:
            raise FileNotFoundError(f"tfkit.build.load({name!r}): no such source {missing}")
        folders = {str(s.parent) for s in [*self.sources, *self.cuda_sources]}
        # include_dir(): tfkit/*.h; bazel_dir(): the kernels/common/*.h that
        # tfkit/kernel_prelude.h includes.
        self.include_dirs = [include_dir(), bazel_dir(), *map(str, include_dirs), *sorted(folders)]
        self.user_defines = list(defines)
        gpu = ["GOOGLE_CUDA=1", "EIGEN_USE_GPU"] if self.cuda_sources else []  # as the Bazel macro
        self.defines = [*defines, *gpu]
        self.cxx = os.environ.get("CXX") or "c++"
        includes = [f"-I{d}" for d in self.include_dirs]
        self.tf_cflags = list(tf.sysconfig.get_compile_flags())
        self.cflags = [*self.tf_cflags, *_CXX_FLAGS, *includes]
        self.cflags += [f"-D{d}" for d in self.defines] + list(extra_cflags)
        self.ldflags = [*tf.sysconfig.get_link_flags(), *extra_ldflags]
        if self.cuda_sources:
            self.cflags.append(f"-I{self.cuda / 'include'}")
            self.ldflags += link_flags(self.cuda)
        self.key = _digest(
            [
                tf.version.VERSION,
                _compiler_version(self.cxx),
                _compiler_version(str(self.cuda / "bin" / "nvcc")) if self.cuda_sources else "",
                *self.cflags,
                *self.ldflags,
                *self.nvcc_flags(),
                *(_content(p) for p in self.local_files()),
            ]
        )

    def nvcc_flags(self) -> list[str]:
        if not self.cuda_sources:
            return []
        std = next((f for f in self.tf_cflags if f.startswith("-std=")), "-std=c++17")
        defines = [f for f in self.tf_cflags if f.startswith("-D")]
        flags = ["-DGOOGLE_CUDA=1", *nvcc_flags(std), *defines, *[f"-D{d}" for d in self.user_defines]]
        return flags + [f"-I{d}" for d in self.include_dirs]

    def local_files(self) -> list[Path]:
        """The sources and every local header they include, transitively."""
        seen: dict[Path, None] = {}
        pending = [*self.sources, *self.cuda_sources]
        while pending:
            path = pending.pop()
            if path in seen:
                continue
            seen[path] = None
            for included in _INCLUDE.findall(path.read_text(errors="replace")):
                for folder in [path.parent, *map(Path, self.include_dirs)]:
                    candidate = (folder / included).resolve()
                    if candidate.is_file():
                        pending.append(candidate)
                        break
        return sorted(seen)

    def stamp_source(self) -> str:
        cuda = bool(self.cuda_sources)
        stamp = (
            f"TFKIT_BUILD_STAMP tf_version={tf.version.VERSION};cuda={int(cuda)};"
            f"cuda_version={_cuda_release(self.cuda) if cuda else 'none'};"
            f"cuda_archs={','.join(CUDA_ARCHS) if cuda else 'none'};"
        )
        return (
            'extern "C" __attribute__((visibility("default"), used)) '
            f'const char tfkit_build_stamp[] = "{stamp}";\n'
        )

    def build(self, folder: Path, library: Path) -> None:
        stamp = _write_if_changed(folder / "_build_stamp.cc", self.stamp_source())
        jobs = [(s, folder / f"{s.name}.o", self.cxx_command) for s in [*self.sources, stamp]]
        jobs += [(s, folder / f"{s.name}.o", self.nvcc_command) for s in self.cuda_sources]
        workers = min(len(jobs), os.cpu_count() or 1)
        with concurrent.futures.ThreadPoolExecutor(workers) as pool:
            objects = list(pool.map(lambda job: self.compile(folder, *job), jobs))
        partial = folder / f"{library.name}.{os.getpid()}.tmp"
        self.run([self.cxx, "-shared", *map(str, objects), "-o", str(partial), *self.ldflags], folder, "link")
        os.replace(partial, library)  # only a complete library ever has the final name
        library.with_suffix(".key").write_text(self.key)

    def cxx_command(self, source: Path, obj: Path) -> list[str]:
        return [self.cxx, *self.cflags, "-c", str(source), "-o", str(obj)]

    def nvcc_command(self, source: Path, obj: Path) -> list[str]:
        return [str(self.cuda / "bin" / "nvcc"), *self.nvcc_flags(), "-c", str(source), "-o", str(obj)]

    def compile(self, folder: Path, source: Path, obj: Path, command) -> Path:
        """Compiles one source; prints one progress line for each of the user's."""
        start = time.perf_counter()
        partial = obj.with_name(f"{obj.name}.{os.getpid()}.tmp")
        self.run(command(source, partial), folder, source.name)
        os.replace(partial, obj)
        if source.parent != folder:  # not the generated stamp
            seconds = time.perf_counter() - start
            print(f"tfkit.build {self.name}: compiled {source.name} in {seconds:.1f} s", file=sys.stderr)
        return obj

    def run(self, command: list[str], folder: Path, what: str) -> None:
        if self.verbose:
            print(" ".join(command), file=sys.stderr)
        result = subprocess.run(command, capture_output=True, text=True, cwd=folder, check=False)
        output = result.stdout + result.stderr
        if self.verbose and output:
            print(output, file=sys.stderr)
        if result.returncode != 0:
            log = folder / f"{what}.log"
            log.write_text(" ".join(command) + "\n\n" + output)
            raise BuildError(_failure_message(self.name, what, output, log))


def _failure_message(name: str, what: str, output: str, log: Path) -> str:
    lines = output.splitlines()
    errors = [i for i, line in enumerate(lines) if _ERROR_LINE.match(line)]
    shown = []
    for i in errors[:3]:
        shown += lines[i : i + 3]
    excerpt = "\n".join(shown or lines[-15:])
    return f"tfkit.build {name}: {what} failed:\n{excerpt}\nfull log: {log}"


@functools.lru_cache(maxsize=None)
def _compiler_version(compiler: str) -> str:
    try:
        result = subprocess.run([compiler, "--version"], capture_output=True, text=True, check=False)
    except OSError as err:
        raise BuildError(f"tfkit.build: cannot run the compiler {compiler!r}: {err}") from err
    return result.stdout.strip()


def _cuda_release(root: Path) -> str:
    match = re.search(r"release (\d+\.\d+)", _compiler_version(str(root / "bin" / "nvcc")))
    return match.group(1) if match else "unknown"


def _digest(parts) -> str:
    return hashlib.sha256(json.dumps(list(parts)).encode()).hexdigest()


def _content(path: Path) -> str:
    return f"{path}:{hashlib.sha256(path.read_bytes()).hexdigest()}"


def _write_if_changed(path: Path, text: str) -> Path:
    if not path.is_file() or path.read_text() != text:
        partial = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        partial.write_text(text)
        os.replace(partial, path)
    return path
