"""Builds tfkit's wheel: the Python package plus the op library (built with
Bazel where a Bazel is found, else with tfkit.build's compiler path), its
public C++ headers and the Bazel macro and configure rules op projects use.
The wheel requires the TensorFlow release the library was built for; the
extra `serve` adds the model server's dependencies.

An editable install (`pip install -e .`, which `make setup` runs) builds
nothing: the checkout's `make build` puts the library in place."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from setuptools import Distribution, setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
LIBRARY = "_tfkit_ops.so"
# The Bazel files an op project of one's own loads from the installed tfkit.
BAZEL_FILES = [
    "WORKSPACE",
    "cc/op_library.bzl",
    "tfkit/include",
    "kernels/BUILD",
    "kernels/common",
    "third_party/tf",
    "third_party/cuda",
    "third_party/rules_cc",
    "third_party/rules_java",
]


def bazel_available() -> bool:
    return any(shutil.which(tool) for tool in ("bazelisk", "bazel-4", "bazel"))


def build_op_library() -> Path:
    """The op library for this Python's TensorFlow: Bazel, else tfkit.build."""
    if bazel_available():
        command = [str(ROOT / "tools" / "bazel.sh"), "build", f"--repo_env=PYTHON_BIN_PATH={sys.executable}"]
        subprocess.run([*command, f"//cc:{LIBRARY}"], cwd=ROOT, check=True)
        return ROOT / "bazel-bin" / "cc" / LIBRARY
    sys.path.insert(0, str(ROOT))
    from tfkit import build

    return build.compile_layout(ROOT, "_tfkit_ops")


class BuildWithOpLibrary(build_py):
    def run(self):
        super().run()
        if getattr(self, "editable_mode", False):
            return
        package = Path(self.build_lib) / "tfkit"
        shutil.copy2(build_op_library(), package / LIBRARY)
        for name in BAZEL_FILES:
            source, target = ROOT / name, package / "bazel" / name
            target.parent.mkdir(parents=True, exist_ok=True)
            if source.is_dir():
                shutil.copytree(source, target, dirs_exist_ok=True)
            else:
                shutil.copy2(source, target)
        # The macro's package, without the targets of tfkit's own library.
        (package / "bazel" / "cc" / "BUILD").write_text('exports_files(["op_library.bzl"])\n')
        (package / "bazel" / "BUILD").write_text("")


class BinaryDistribution(Distribution):
    """The wheel holds a compiled library: a platform wheel."""

    def has_ext_modules(self):
        return True


def tensorflow_version() -> str:
    import tensorflow as tf

    return tf.version.VERSION


def serve_requirements(tf_version: str) -> list[str]:
    """`tfkit serve`'s dependencies: the serving API of this TensorFlow release."""
    release = ".".join(tf_version.split(".")[:2])
    return ["aiohttp>=3.9", "grpcio>=1.60", f"tensorflow-serving-api=={release}.*"]


TF_VERSION = tensorflow_version()
setup(
    cmdclass={"build_py": BuildWithOpLibrary},
    distclass=BinaryDistribution,
    install_requires=[f"tensorflow=={TF_VERSION}"],
    extras_require={"serve": serve_requirements(TF_VERSION)},
)
