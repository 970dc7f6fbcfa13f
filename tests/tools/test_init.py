"""`python -m tfkit init DIR`: an op project of one's own that builds with
Bazel (tfkit's rules from tfkit, not copied) and with tfkit.build, and passes
its tests both ways."""

import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tfkit import scaffold


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


@pytest.mark.slow
def test_project_builds_both_ways_and_passes_its_tests(journey, tmp_path):
    """The project built is the one the README journey's `python -m tfkit
    init my_ops` made and its `make build` built with Bazel (the `journey`
    fixture in tests/tools/conftest.py): one Bazel build of it, not two. Here
    it is built with tfkit.build and tested, then `make test` puts the
    Bazel-built library back (building it, if the journey didn't) and tests
    that."""
    env, project = journey.env, journey.folder / "my_ops"
    assert (project / "Makefile").is_file(), journey.result.stdout[-2000:] + journey.result.stderr[-3000:]
    # `init` with a path from elsewhere makes that same project, file for file.
    created = run([sys.executable, "-m", "tfkit", "init", str(tmp_path / "my_ops")], tmp_path, env)
    assert created.returncode == 0, created.stderr[-3000:]
    made = sorted(p.relative_to(tmp_path / "my_ops") for p in (tmp_path / "my_ops").rglob("*") if p.is_file())
    assert Path("tests/test_soft_clip.py") in made and Path("my_ops/__init__.py") in made
    for name in made:
        assert (project / name).read_bytes() == (tmp_path / "my_ops" / name).read_bytes(), name
    assert not (project / "cc" / "op_library.bzl").exists()  # the macro comes from tfkit
    make = ["make", f"PY={sys.executable}"]

    nobazel = run([*make, "build-nobazel"], project, env)
    assert nobazel.returncode == 0, nobazel.stdout[-2000:] + nobazel.stderr[-3000:]
    tests = run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"], project, env)
    assert tests.returncode == 0 and "22 passed" in tests.stdout, tests.stdout[-3000:] + tests.stderr[-2000:]

    with_bazel = run([*make, "test"], project, env)
    overrides = (project / ".bazelrc.tfkit").read_text() if (project / ".bazelrc.tfkit").exists() else ""
    run(["make", "clean"], project, env)  # the last to use the journey's project
    assert with_bazel.returncode == 0, with_bazel.stdout[-3000:] + with_bazel.stderr[-3000:]
    assert f"--override_repository=tfkit={ROOT}" in overrides
    assert "22 passed" in with_bazel.stdout
