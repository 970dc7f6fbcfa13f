"""`tfkit init DIR`: an op project of one's own that builds with Bazel
(tfkit's rules from tfkit, not copied) and with tfkit.build, with the Python
that made it, takes more families from `tfkit new-op`, and passes its tests
both ways."""

import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT, project_bazel_flags
from tests.tools.test_scaffold import PROTOTYPE
from tfkit import scaffold

# Both families' compiled ops against their references, in a fresh process
# that imports only the project: the library `make build*` made loads and runs.
COMPILED_OPS_CHECK = """
import numpy as np, tensorflow as tf, my_ops
x = tf.constant([[-4.0, 0.5, 6.0], [1.0, -2.0, 3.0]])
for name in ("soft_clip", "scaled_softmax"):
    op, reference = getattr(my_ops.ops, name), getattr(my_ops.ops, name + "_reference")
    np.testing.assert_allclose(op(x, backend="compiled"), reference(x), rtol=1e-6)
print("compiled ops match their references")
"""


def run(command, cwd, env, timeout=900):
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def test_init_refuses_a_non_empty_directory_and_bad_names(tmp_path):
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "file").write_text("mine")
    with pytest.raises(scaffold.ScaffoldError, match="not empty"):
        scaffold.init_project(tmp_path / "taken")
    with pytest.raises(scaffold.ScaffoldError, match="valid package name"):
        scaffold.init_project(tmp_path / "1bad")
    with pytest.raises(scaffold.ScaffoldError, match="valid family name"):
        scaffold.init_project(tmp_path / "good_ops", family="Bad")
    assert (tmp_path / "taken" / "file").read_text() == "mine"


def test_the_makefile_runs_the_python_that_ran_init(tmp_path):
    scaffold.init_project(tmp_path / "my_ops")
    makefile = (tmp_path / "my_ops" / "Makefile").read_text()
    assert f"\nPY ?= {sys.executable}\n" in makefile
    assert "make PY=/path/to/python test" in (tmp_path / "my_ops" / "README.md").read_text()


def test_new_op_adds_a_family_to_an_init_project(tmp_path):
    project = tmp_path / "my_ops"
    scaffold.init_project(project)
    (project / "my_prototypes.py").write_text(PROTOTYPE)
    written = scaffold.new_op("scaled_product", project, "my_prototypes:scaled_product")
    assert sorted(str(path.relative_to(project)) for path in written) == [
        "cc/kernels/scaled_product_kernels.cc",
        "cc/ops/scaled_product_ops.cc",
        "kernels/scaled_product/scaled_product.cu.cc",
        "kernels/scaled_product/scaled_product_cpu.h",
        "kernels/scaled_product/scaled_product_gpu.h",
        "my_ops/ops/__init__.py",
        "my_ops/ops/scaled_product.py",
        "tests/test_scaled_product.py",
    ]
    exported = (project / "my_ops" / "ops" / "__init__.py").read_text()
    assert "from my_ops.ops.soft_clip import soft_clip, soft_clip_reference" in exported
    assert "from my_ops.ops.scaled_product import scaled_product, scaled_product_reference" in exported
    wrapper = (project / "my_ops" / "ops" / "scaled_product.py").read_text()
    assert "MyOps>ScaledProduct" in wrapper and "_library.load().my_ops_scaled_product(" in wrapper
    assert "@scaled_product.compiled(library=_library.load)" in wrapper
    tests = (project / "tests" / "test_scaled_product.py").read_text()
    assert "from my_prototypes import scaled_product as prototype" in tests
    for path in written:
        if path.suffix == ".py":
            compile(path.read_text(), str(path), "exec")
    with pytest.raises(scaffold.ScaffoldError, match="clashes with an existing op family"):
        scaffold.new_op("soft_clip", project)
    with pytest.raises(scaffold.ScaffoldError, match=r"neither a tfkit checkout .* nor an op project"):
        scaffold.new_op("other_op", tmp_path)


@pytest.mark.slow
def test_project_builds_both_ways_and_passes_its_tests(journey, tmp_path):
    """The project built is the one the README journey's `tfkit init
    my_ops` made and its `make build` built with Bazel (the `journey`
    fixture in tests/tools/conftest.py). Here `tfkit new-op` adds a second
    family; the project is built with tfkit.build and its compiled ops
    checked, then `make test` builds it with Bazel and runs both families'
    tests, with no PY= either time: the Makefile runs the Python that ran
    `tfkit init`."""
    env, project = journey.env, journey.folder / "my_ops"
    assert (project / "Makefile").is_file(), journey.result.stdout[-2000:] + journey.result.stderr[-3000:]
    # `init` with a path from elsewhere makes that same project, file for file.
    created = run(["tfkit", "init", str(tmp_path / "my_ops")], tmp_path, env)
    assert created.returncode == 0, created.stderr[-3000:]
    assert "its Makefile runs " in created.stdout and "make PY=/path/to/python test" in created.stdout
    made = sorted(p.relative_to(tmp_path / "my_ops") for p in (tmp_path / "my_ops").rglob("*") if p.is_file())
    assert Path("tests/test_soft_clip.py") in made and Path("my_ops/__init__.py") in made
    for name in made:
        assert (project / name).read_bytes() == (tmp_path / "my_ops" / name).read_bytes(), name
    assert not (project / "cc" / "op_library.bzl").exists()  # the macro comes from tfkit
    added = run(["tfkit", "new-op", "scaled_softmax"], project, env)
    assert added.returncode == 0, added.stderr[-3000:]
    assert "wrote " in added.stdout and "tests/test_scaled_softmax.py" in added.stdout

    nobazel = run(["make", "build-nobazel"], project, env)
    assert nobazel.returncode == 0, nobazel.stdout[-2000:] + nobazel.stderr[-3000:]
    checked = run([sys.executable, "-c", COMPILED_OPS_CHECK], project, env)
    assert checked.returncode == 0 and "match their references" in checked.stdout, checked.stderr[-3000:]

    with_bazel = run(["make", "test", *project_bazel_flags()], project, env)
    overrides = (project / ".bazelrc.tfkit").read_text() if (project / ".bazelrc.tfkit").exists() else ""
    run(["make", "clean"], project, env)  # the last to use the journey's project
    assert with_bazel.returncode == 0, with_bazel.stdout[-3000:] + with_bazel.stderr[-3000:]
    assert f"--override_repository=tfkit={ROOT}" in overrides
    assert "44 passed" in with_bazel.stdout
