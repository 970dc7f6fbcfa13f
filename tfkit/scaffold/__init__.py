"""`tfkit new-op NAME`: a complete new op family in tfkit's layout (in a tfkit
checkout, or in a project `tfkit init` made, where the benchmark is left out).

The family is a small, real op to start from: `y = x / (1 + |x| / limit)`, a
smooth clip with a float attr `limit` and a compiled gradient, in every layer:

    kernels/NAME/NAME_cpu.h, NAME_gpu.h, NAME.cu.cc   framework-free CPU and CUDA math
    cc/ops/NAME_ops.cc                                REGISTER_OP + shape functions
    cc/kernels/NAME_kernels.cc                        OpKernels: validation, sharding, GPU registration
    tfkit/ops/NAME.py                                 the tfkit.Op: compiled + reference, gradient
    tests/ops/test_NAME.py                            opcheck over dtypes and shapes, bad inputs
    benchmarks/bench_NAME.py                          vs the composite and XLA

and adds it to `tfkit.ops`; the Bazel library (cc/BUILD) finds every family
by its files' names, so it needs no change. It never
overwrites a file. With `--from MODULE:FUNCTION` the family takes a
prototype op's inputs, attributes and docstring instead (see signature.py).
"""

from __future__ import annotations

import keyword
import re
import string
import sys
from pathlib import Path

from tfkit.scaffold import signature

__all__ = ["ScaffoldError", "init_project", "new_op"]

_TEMPLATES = Path(__file__).with_name("family")
_PROJECT = Path(__file__).with_name("project")
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


def new_op(name: str, root: str | Path = ".", source: str | None = None) -> list[Path]:
    """Generates the family `name` in the tfkit checkout, or the project
    `tfkit init` made, at `root`.

    With `source` ("MODULE:FUNCTION", importable from `root`), the family
    takes the inputs, attributes and docstring of that prototype op, and its
    tests compare it with the prototype (marked as expected to fail until the
    kernels and the reference hold the prototype's math).

    Returns:
      The files written or changed.

    Raises:
      ScaffoldError: `root` is neither a tfkit checkout nor an `init`
        project, `name` is not a lowercase identifier of words of at least
        two characters, names an existing family or Python keyword, a file
        to write already exists (nothing is written then), or `source` is
        not a prototype op whose signature a family can take.
    """
    root = Path(root)
    package = _package_of(root)
    ops_dir = root / package / "ops"
    _check_name(name, root, ops_dir)
    try:
        sig = signature.from_prototype(source, root) if source else signature.soft_clip()
    except signature.SignatureError as err:
        raise ScaffoldError(str(err)) from None
    values = _values(name, package, sig)
    files = _FILES if package == "tfkit" else _PROJECT_FAMILY_FILES
    targets = {template: root / path.format(p=package, f=name) for template, path in files.items()}
    existing = [str(path) for path in targets.values() if path.exists()]
    if existing:
        raise ScaffoldError(f"new-op {name}: refusing to overwrite {existing}")
    written = [_render(_TEMPLATES / f"{template}.tmpl", target, values) for template, target in targets.items()]
    written.append(_add_to_ops_package(ops_dir / "__init__.py", package, name))
    return written


def _package_of(root: Path) -> str:
    """The package whose ops/ a new family joins: tfkit in a tfkit checkout,
    else the package of a project `tfkit init` made (the one with a
    _library.py beside its ops/)."""
    if (root / "cc" / "BUILD").is_file():
        if (root / "tfkit" / "ops").is_dir():
            return "tfkit"
        packages = sorted(p.parent.name for p in root.glob("*/_library.py") if (p.parent / "ops").is_dir())
        if len(packages) == 1:
            return packages[0]
    raise ScaffoldError(
        f"{root.resolve()} is neither a tfkit checkout (cc/BUILD and tfkit/ops/) nor an op project "
        "`tfkit init` made (cc/BUILD and PACKAGE/ops/ beside PACKAGE/_library.py): run new-op in its top folder, "
        "or pass --root"
    )


def _check_name(name: str, root: Path, ops_dir: Path) -> None:
    if not _NAME.fullmatch(name) or keyword.iskeyword(name):
        raise ScaffoldError(
            f"new-op: {name!r} is not a valid family name: use lowercase words of letters and digits, at least "
            "two characters each, joined by '_' (e.g. soft_clip)"
        )
    kernels = root / "kernels"
    families = {p.name for p in kernels.iterdir() if p.is_dir() and p.name != "common"} if kernels.is_dir() else set()
    families |= {p.stem for p in ops_dir.glob("*.py") if not p.stem.startswith("_")}
    exported = (ops_dir / "__init__.py").read_text()
    if name in families or re.search(rf"\b{name}\b", exported):
        raise ScaffoldError(f"new-op: {name!r} clashes with an existing op family or op of that name")


def _values(name: str, package: str = "tfkit", sig: signature.Signature | None = None) -> dict[str, str]:
    """Template values for family `name` in tfkit or in a project `package`,
    computing `sig` (default: the soft_clip example)."""
    from tfkit.build import python_op_name

    camel = "".join(part.capitalize() for part in name.split("_"))
    namespace = "Tfkit" if package == "tfkit" else "".join(part.capitalize() for part in package.split("_"))
    op = f"{namespace}>{camel}"
    values = {"family": name, "Camel": camel, "FAMILY": name.upper(), "op": op, "py_op": python_op_name(op)}
    values["package"] = package
    values["ops_package"] = f"{package}.ops"
    if package == "tfkit":
        values["loader_import"] = "from tfkit import _loader"
        values["load_library"] = "_loader.load_library"
        values["compiled_decorator"] = f"@{name}.compiled"
    else:
        values["loader_import"] = f"from {package} import _library"
        values["load_library"] = "_library.load"
        values["compiled_decorator"] = f"@{name}.compiled(library=_library.load)"
    code = signature.snippets(sig or signature.soft_clip())
    return {**values, **{key: _Template(text).substitute(values) for key, text in code.items()}}


class _Template(string.Template):
    """Substitutes only ${name}: a lone `$` (Makefiles, shells) stays as it is."""

    pattern = r"\$(?:(?P<escaped>(?!))|(?P<named>(?!))|\{(?P<braced>[A-Za-z_]+)\}|(?P<invalid>(?!)))"


def _render(template: Path, target: Path, values: dict[str, str]) -> Path:
    text = _Template(template.read_text()).substitute(values)
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target, "x") as out:  # never overwrite
        out.write(text)
    return target


def _add_to_ops_package(init: Path, package: str, name: str) -> Path:
    with open(init, "a") as out:
        out.write(
            f"\nfrom {package}.ops.{name} import {name}, {name}_reference  # noqa: E402\n\n"
            f'__all__ += ["{name}", "{name}_reference"]\n'
        )
    return init


# project template -> path in the project ({p}: the package, {f}: the family)
_PROJECT_FILES = {
    "WORKSPACE.tmpl": "WORKSPACE",
    "bazelrc.tmpl": ".bazelrc",
    "cc_BUILD.tmpl": "cc/BUILD",
    "Makefile.tmpl": "Makefile",
    "pyproject.toml.tmpl": "pyproject.toml",
    "setup.py.tmpl": "setup.py",
    "README.md.tmpl": "README.md",
    "package_init.py.tmpl": "{p}/__init__.py",
    "package_library.py.tmpl": "{p}/_library.py",
    "package_ops_init.py.tmpl": "{p}/ops/__init__.py",
}
_PROJECT_FAMILY_FILES = {
    "kernels__cpu.h": "kernels/{f}/{f}_cpu.h",
    "kernels__gpu.h": "kernels/{f}/{f}_gpu.h",
    "kernels__cu.cc": "kernels/{f}/{f}.cu.cc",
    "cc_ops.cc": "cc/ops/{f}_ops.cc",
    "cc_kernels.cc": "cc/kernels/{f}_kernels.cc",
    "ops.py": "{p}/ops/{f}.py",
    "test_ops.py": "tests/test_{f}.py",
}


def init_project(directory: str | Path, family: str = "soft_clip") -> list[Path]:
    """Creates an op project of one's own in `directory` (new or empty).

    The project builds with Bazel, loading tfkit's macro and configure rules
    from the installed tfkit (`tfkit bazel-dir`), or with tfkit.build
    (`make build-nobazel`), and its first family is made as by `new-op`.
    Its package is named after the directory. Its Makefile runs this
    Python (the one running `init`), unless `make PY=...` says otherwise.

    Raises:
      ScaffoldError: the directory is not empty, or its name or `family` is
        not a valid name.
    """
    directory = Path(directory)
    package = directory.resolve().name.replace("-", "_")
    if not _NAME.fullmatch(package) or keyword.iskeyword(package) or package == "tfkit":
        raise ScaffoldError(f"init: the directory name {package!r} must be a valid package name (e.g. my_ops)")
    if not _NAME.fullmatch(family) or keyword.iskeyword(family):
        raise ScaffoldError(f"init: {family!r} is not a valid family name (e.g. soft_clip)")
    if directory.exists() and any(directory.iterdir()):
        raise ScaffoldError(f"init: {directory} is not empty")
    values = {**_values(family, package), "python": sys.executable}
    written = [
        _render(_PROJECT / template, directory / path.format(p=package, f=family), values)
        for template, path in _PROJECT_FILES.items()
    ]
    for template, path in _PROJECT_FAMILY_FILES.items():
        written.append(_render(_TEMPLATES / f"{template}.tmpl", directory / path.format(p=package, f=family), values))
    from tfkit.build import bazel_dir

    kernel_helpers = Path(bazel_dir()) / "kernels" / "common"  # framework-free: Half, Acc, Load/Store, sums
    (directory / "BUILD").write_text("")
    (directory / "kernels" / "BUILD").write_text((kernel_helpers.parent / "BUILD").read_text())
    for helper in sorted([*kernel_helpers.glob("*.h"), *kernel_helpers.glob("*.cuh")]):
        target = directory / "kernels" / "common" / helper.name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(helper.read_text())
        written.append(target)
    (directory / ".gitignore").write_text("bazel-*\n.bazelrc.tfkit\n*.so\nbuild/\ndist/\n*.egg-info/\n__pycache__/\n")
    return written
