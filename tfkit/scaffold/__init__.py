"""`python -m tfkit new-op NAME`: a complete new op family in tfkit's layout.

The family is a small, real op to start from: `y = x / (1 + |x| / limit)`, a
smooth clip with a float attr `limit` and a compiled gradient, in every layer:

    kernels/NAME/NAME_cpu.h, NAME_gpu.h, NAME.cu.cc   framework-free CPU and CUDA math
    cc/ops/NAME_ops.cc                                REGISTER_OP + shape functions
    cc/kernels/NAME_kernels.cc                        OpKernels: validation, sharding, GPU registration
    tfkit/ops/NAME.py                                 the tfkit.Op: compiled + reference, gradient
    tests/ops/test_NAME.py                            opcheck over dtypes and shapes, bad inputs
    benchmarks/bench_NAME.py                          vs the composite and XLA

and adds it to the Bazel library (cc/BUILD) and to `tfkit.ops`. It never
overwrites a file.
"""

from __future__ import annotations

import keyword
import re
import string
from pathlib import Path

__all__ = ["ScaffoldError", "new_op"]

_TEMPLATES = Path(__file__).with_name("family")
_NAME = re.compile(r"[a-z][a-z0-9]+(_[a-z][a-z0-9]+)*")

# template file -> where it goes, relative to the repository root
_FILES = {
    "kernels__cpu.h": "kernels/{f}/{f}_cpu.h",
    "kernels__gpu.h": "kernels/{f}/{f}_gpu.h",
    "kernels__cu.cc": "kernels/{f}/{f}.cu.cc",
    "cc_ops.cc": "cc/ops/{f}_ops.cc",
    "cc_kernels.cc": "cc/kernels/{f}_kernels.cc",
    "ops.py": "tfkit/ops/{f}.py",
    "test_ops.py": "tests/ops/test_{f}.py",
    "bench.py": "benchmarks/bench_{f}.py",
}


class ScaffoldError(ValueError):
    """The name is unusable, clashes with a family, or a file exists."""


def new_op(name: str, root: str | Path = ".") -> list[Path]:
    """Generates the family `name` in the tfkit checkout at `root`.

    Returns:
      The files written or changed.

    Raises:
      ScaffoldError: `name` is not a lowercase identifier of words of at
        least two characters, names an existing family or Python keyword, or
        a file to write already exists (nothing is written then).
    """
    root = Path(root)
    if not (root / "cc" / "BUILD").is_file() or not (root / "tfkit" / "ops").is_dir():
        raise ScaffoldError(f"{root.resolve()} is not a tfkit checkout (no cc/BUILD or tfkit/ops)")
    _check_name(name, root)
    values = _values(name)
    targets = {template: root / path.format(f=name) for template, path in _FILES.items()}
    existing = [str(path) for path in targets.values() if path.exists()]
    if existing:
        raise ScaffoldError(f"new-op {name}: refusing to overwrite {existing}")
    written = []
    for template, target in targets.items():
        target.parent.mkdir(parents=True, exist_ok=True)
        text = string.Template((_TEMPLATES / f"{template}.tmpl").read_text()).substitute(values)
        with open(target, "x") as out:
            out.write(text)
        written.append(target)
    written.append(_add_to_bazel_library(root / "cc" / "BUILD", name))
    written.append(_add_to_ops_package(root / "tfkit" / "ops" / "__init__.py", name))
    return written


def _check_name(name: str, root: Path) -> None:
    if not _NAME.fullmatch(name) or keyword.iskeyword(name):
        raise ScaffoldError(
            f"new-op: {name!r} is not a valid family name: use lowercase words of letters and digits, at least "
            "two characters each, joined by '_' (e.g. soft_clip)"
        )
    families = {p.name for p in (root / "kernels").iterdir() if p.is_dir() and p.name != "common"}
    families |= {p.stem for p in (root / "tfkit" / "ops").glob("*.py") if not p.stem.startswith("_")}
    exported = (root / "tfkit" / "ops" / "__init__.py").read_text()
    if name in families or re.search(rf"\b{name}\b", exported):
        raise ScaffoldError(f"new-op: {name!r} clashes with an existing op family or op of that name")


def _values(name: str) -> dict[str, str]:
    from tfkit.build import python_op_name

    camel = "".join(part.capitalize() for part in name.split("_"))
    op = f"Tfkit>{camel}"
    snake_op = python_op_name(op).removeprefix("tfkit_")
    return {"family": name, "Camel": camel, "FAMILY": name.upper(), "op": op, "snake_op": snake_op}


def _add_to_bazel_library(build: Path, name: str) -> Path:
    text = build.read_text()
    srcs = re.search(r"(\n    srcs = \[\n)((?:        .*\n)*?)(    \],)", text)
    gpu = re.search(r"\n    gpu_srcs = \[([^\]]*)\],", text)
    if not srcs or not gpu:
        raise ScaffoldError(f"{build}: can't find the srcs and gpu_srcs lists of tf_custom_op_library")
    entries = sorted({*srcs.group(2).splitlines(), f'        "kernels/{name}_kernels.cc",', f'        "ops/{name}_ops.cc",'})
    gpu_entries = [e.strip().strip(",") for e in gpu.group(1).split(",") if e.strip()]
    gpu_entries = sorted({*gpu_entries, f'"//kernels:{name}/{name}.cu.cc"'})
    new_gpu = "\n    gpu_srcs = [\n" + "".join(f"        {e},\n" for e in gpu_entries) + "    ],"
    text = text[: srcs.start(2)] + "\n".join(entries) + "\n" + text[srcs.end(2) :]
    gpu = re.search(r"\n    gpu_srcs = \[([^\]]*)\],", text)
    build.write_text(text[: gpu.start()] + new_gpu + text[gpu.end() :])
    return build


def _add_to_ops_package(init: Path, name: str) -> Path:
    with open(init, "a") as out:
        out.write(f'\nfrom tfkit.ops.{name} import {name}, {name}_reference  # noqa: E402\n\n__all__ += ["{name}", "{name}_reference"]\n')
    return init
