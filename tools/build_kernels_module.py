"""Builds tfkit_kernels: every family's framework-free CPU kernels as a
Python module over NumPy arrays (pybind11), without TensorFlow.

    python tools/build_kernels_module.py [--out DIR]

The module lands in build/kernels/ (or DIR); the sources are
kernels/python/*.cc. It is rebuilt only when a file under kernels/ is newer
than it. Prints the module's path.
"""

from __future__ import annotations

import argparse
import concurrent.futures
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


def build(out: Path = ROOT / "build" / "kernels") -> Path:
    """Compiles and links the module if any kernel source is newer; returns its path."""
    import pybind11

    target = module_path(out)
    sources = sorted((ROOT / "kernels" / "python").glob("*.cc"))
    inputs = [p for p in (ROOT / "kernels").rglob("*") if p.is_file()]
    if target.exists() and all(p.stat().st_mtime <= target.stat().st_mtime for p in inputs):
        return target
    out.mkdir(parents=True, exist_ok=True)
    cxx = os.environ.get("CXX") or shutil.which("g++") or "c++"
    includes = [f"-I{ROOT}", f"-I{pybind11.get_include()}", f"-I{sysconfig.get_paths()['include']}"]
    objects = [out / f"{source.stem}.o" for source in sources]

    def compile_one(source: Path, obj: Path) -> None:
        _run([cxx, *CXXFLAGS, *includes, "-c", str(source), "-o", str(obj)])

    with concurrent.futures.ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        list(pool.map(compile_one, sources, objects))
    partial = target.with_suffix(".partial")
    _run([cxx, "-shared", *[str(o) for o in objects], "-o", str(partial)])
    os.replace(partial, target)  # a failed build never leaves a module behind
    return target


def _run(command: list[str]) -> None:
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)}\n{result.stderr[-4000:]}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "build" / "kernels")
    args = parser.parse_args()
    try:
        print(build(args.out))
    except RuntimeError as err:
        print(f"build failed: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
