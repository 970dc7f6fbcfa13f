"""The CUDA toolkit and nvcc's flags, for every build outside Bazel.

tfkit.build (op libraries) and tools/build_kernels_module.py (the kernels
module, where no TensorFlow is installed) both take them from here, so this
module imports nothing of TensorFlow or tfkit: the tool loads it by its path.
The Bazel rules (third_party/cuda, cc/op_library.bzl) hold the same search
and architectures for Bazel builds; a test keeps the architectures equal.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

# The GPU architectures compiled for (cubins), plus PTX of the last one.
CUDA_ARCHS = ("sm_80", "sm_90")


def find_cuda() -> Path | None:
    """The CUDA toolkit root, searched like the Bazel rule `cuda_configure`:
    CUDA_HOME, CUDA_PATH, the folder above nvcc on PATH, /usr/local/cuda; the
    first holding bin/nvcc and include/cuda_runtime.h."""
    candidates = [os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH")]
    nvcc = shutil.which("nvcc")
    if nvcc:
        candidates.append(str(Path(nvcc).resolve().parents[1]))
    candidates.append("/usr/local/cuda")
    for root in filter(None, candidates):
        if (Path(root) / "bin" / "nvcc").is_file() and (Path(root) / "include" / "cuda_runtime.h").is_file():
            return Path(root)
    return None


def gencode_flags(archs=CUDA_ARCHS, ptx: bool = True) -> list[str]:
    """Cubins for each of `archs` ("sm_80", ...) and (ptx) PTX of the last,
    or nvcc's own choice for the GPU present with archs == ("native",)."""
    if tuple(archs) == ("native",):
        return ["-arch=native"]
    flags = [f"-gencode=arch=compute_{arch[3:]},code={arch}" for arch in archs]
    last = archs[-1][3:]
    return [*flags, f"-gencode=arch=compute_{last},code=compute_{last}"] if ptx else flags


def nvcc_flags(std: str = "-std=c++17", archs=CUDA_ARCHS, ptx: bool = True) -> list[str]:
    """nvcc's flags for a .cu.cc source of tfkit's (before includes and defines)."""
    return ["-x", "cu", std, "-O3", "--expt-relaxed-constexpr", "-Xcompiler", "-fPIC", *gencode_flags(archs, ptx)]


def link_flags(cuda: Path) -> list[str]:
    """What a shared object with CUDA kernels links against (the static runtime)."""
    return [f"-L{cuda / 'lib64'}", "-lcudart_static", "-ldl", "-lrt", "-lpthread"]
