"""Builds tfkit_kernels: every family's framework-free kernels as a Python
module (pybind11), without TensorFlow: the CPU kernels over NumPy arrays and,
where a CUDA toolkit is found, the CUDA launchers over GPU arrays
(`tfkit_kernels.cuda`).

    python tools/build_kernels_module.py [--out DIR] [--cuda auto|on|off] [--arch native|sm_80,sm_90]

The module lands in build/kernels/ (or DIR); the sources are
kernels/python/*.cc and, with CUDA, kernels/*/*.cu.cc. It is rebuilt only
when a file under kernels/ (or this tool, or tfkit/_cuda.py with nvcc's
flags) is newer than it or the build flavor changed, one build at a time in a
folder. A module built is also kept in $TFKIT_CACHE_DIR/kernels-module
(default ~/.cache/tfkit), keyed by the contents of those files and the
compilers', Python's and pybind11's versions, so another checkout of the
same sources copies it instead of compiling (not for --arch native, which
depends on the GPU present).
Prints the module's path. Imports neither TensorFlow nor tfkit, so it runs
where only a compiler, Python, pybind11 and NumPy are.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import fcntl
import hashlib
import importlib.util
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MODULE = "tfkit_kernels"
CXXFLAGS = ["-O3", "-std=c++17", "-fPIC", "-fvisibility=hidden", "-Wall", "-Wno-unused-function"]


def module_path(out: Path) -> Path:
    return out / (MODULE + sysconfig.get_config_var("EXT_SUFFIX"))


def pybind11_include() -> str:
    """pybind11's headers: from the installed package, else $PYBIND11_INCLUDE
    (headers carried to a machine without the package)."""
    try:
        import pybind11
    except ImportError:
        include = os.environ.get("PYBIND11_INCLUDE")
        if not include:
            raise RuntimeError("pybind11 is not installed; install it or set PYBIND11_INCLUDE") from None
        return include
    return pybind11.get_include()


def _load_cuda_rules():
    """tfkit/_cuda.py, the CUDA search and nvcc flags tfkit.build uses, loaded
    by its path (importing the tfkit package would import TensorFlow)."""
    spec = importlib.util.spec_from_file_location("tfkit_cuda_rules", ROOT / "tfkit" / "_cuda.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


_cuda = _load_cuda_rules()
find_cuda = _cuda.find_cuda


def build(out: Path = ROOT / "build" / "kernels", cuda: str = "auto", arch: str = "sm_80,sm_90") -> Path:
    """Compiles and links the module if needed; returns its path."""
    toolkit = find_cuda() if cuda != "off" else None
    if cuda == "on" and toolkit is None:
        raise RuntimeError("--cuda on, but no CUDA toolkit (nvcc) was found")
    flavor = f"cuda {toolkit} {arch}" if toolkit else "cpu"
    out.mkdir(parents=True, exist_ok=True)
    with open(out / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another process building into `out` finishes first
        target, stamp = module_path(out), out / "flavor"
        inputs = _inputs()
        fresh = target.exists() and all(p.stat().st_mtime <= target.stat().st_mtime for p in inputs)
        if not (fresh and stamp.exists() and stamp.read_text() == flavor):
            cxx = os.environ.get("CXX") or shutil.which("g++") or "c++"
            cached = None if arch == "native" else _cache_dir() / _key(toolkit, arch, cxx) / target.name
            if cached is not None and _copied(cached, target):
                os.utime(cached.parent)  # recently used
            else:
                _build(out, toolkit, arch, target, cxx)
                if cached is not None:
                    _store(target, cached)
            stamp.write_text(flavor)
    return target


CACHED_BUILDS = 4  # the most recently used modules kept in the cache


def _inputs() -> list[Path]:
    """The sources, and the files that say how they are compiled."""
    rules = [Path(__file__).resolve(), ROOT / "tfkit" / "_cuda.py"]
    return [p for p in (ROOT / "kernels").rglob("*") if p.is_file()] + [p for p in rules if p.is_file()]


def _cache_dir() -> Path:
    return Path(os.environ.get("TFKIT_CACHE_DIR") or Path.home() / ".cache" / "tfkit") / "kernels-module"


def _key(toolkit: Path | None, arch: str, cxx: str) -> str:
    """What the module's bytes depend on: not the checkout's or the venv's paths."""
    pybind11_headers = (Path(pybind11_include()) / "pybind11" / "detail" / "common.h").read_text()  # its version
    parts = [MODULE, sysconfig.get_config_var("EXT_SUFFIX"), sys.version, pybind11_headers, *CXXFLAGS]
    parts += [_version(cxx), _version(str(toolkit / "bin" / "nvcc")) if toolkit else "cpu", arch if toolkit else ""]
    digest = hashlib.sha256("\0".join(parts).encode())
    for path in sorted(_inputs()):
        digest.update(f"\0{path.relative_to(ROOT)}\0".encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:24]


def _version(compiler: str) -> str:
    return subprocess.run([compiler, "--version"], capture_output=True, text=True, check=True).stdout


def _copied(source: Path, target: Path) -> bool:
    """Copies `source` to `target` whole, or not at all (False: no such file)."""
    partial = target.with_name(f"{target.name}.{os.getpid()}.partial")
    try:
        shutil.copyfile(source, partial)
    except FileNotFoundError:
        return False
    os.chmod(partial, 0o755)
    os.replace(partial, target)  # never a half-copied module under either name
    return True


def _store(module: Path, cached: Path) -> None:
    cached.parent.mkdir(parents=True, exist_ok=True)
    _copied(module, cached)
    entries = sorted(cached.parent.parent.iterdir(), key=_mtime, reverse=True)
    for old in entries[CACHED_BUILDS:]:
        shutil.rmtree(old, ignore_errors=True)


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except FileNotFoundError:  # removed by another build meanwhile
        return 0.0


def _build(out: Path, toolkit: Path | None, arch: str, target: Path, cxx: str) -> None:
    includes = [f"-I{ROOT}", f"-I{pybind11_include()}", f"-I{sysconfig.get_paths()['include']}"]
    sources = sorted((ROOT / "kernels" / "python").glob("*.cc"))
    jobs, link = [], []
    if toolkit:
        includes += ["-DTFKIT_KERNELS_CUDA", f"-I{toolkit / 'include'}"]
        nvcc = [str(toolkit / "bin" / "nvcc"), *_cuda.nvcc_flags(archs=arch.split(","), ptx=False), f"-I{ROOT}"]
        for source in sorted((ROOT / "kernels").glob("*/*.cu.cc")):
            obj = out / f"{source.parent.name}_cu.o"
            jobs.append([*nvcc, "-c", str(source), "-o", str(obj)])
            link.append(str(obj))
        libs = _cuda.link_flags(toolkit)
    else:
        sources = [s for s in sources if not s.stem.endswith("_cuda")]
        libs = []
    for source in sources:
        obj = out / f"{source.stem}.o"
        jobs.append([cxx, *CXXFLAGS, *includes, "-c", str(source), "-o", str(obj)])
        link.append(str(obj))
    with concurrent.futures.ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        list(pool.map(_run, jobs))
    partial = target.with_suffix(".partial")
    _run([cxx, "-shared", *link, "-o", str(partial), *libs])
    os.replace(partial, target)  # a failed build never leaves a module behind


def _run(command: list[str]) -> None:
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)}\n{result.stderr[-4000:]}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "build" / "kernels")
    parser.add_argument("--cuda", choices=("auto", "on", "off"), default="auto")
    parser.add_argument("--arch", default="sm_80,sm_90", help="native (the GPU present), or a list like sm_80,sm_90")
    args = parser.parse_args()
    try:
        print(build(args.out, args.cuda, args.arch))
    except RuntimeError as err:
        print(f"build failed: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
