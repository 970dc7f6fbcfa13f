"""Builds that several tools tests share, and the order the slow ones run in.

The README journey makes and builds a `my_ops` project (`tfkit init`, then
Bazel); the `init` test goes on with that same project rather than making
and building an identical one of its own. The journey runs once per test run,
also with `pytest -n`: the first worker to need it runs it, under a lock in
the folder the workers share, and the others read its result from there.
"""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.tools.test_readme_journey import journey_commands

# The slowest tests (a minute or more of builds each) start first, so that
# with `pytest -n` no worker is left with one of them at the end.
SLOW_FIRST = [
    "tests/tools/test_scaffold.py::test_generated_families_build_pass_their_tests_and_benchmark",
    "tests/tools/test_readme_journey.py::test_readme_journey_runs_as_written",
    "tests/kernels/test_gpu.py::test_the_gpu_check_is_ready",
    "tests/tools/test_init.py::test_project_builds_both_ways_and_passes_its_tests",
    "tests/tools/test_wheel.py::test_wheel_installs_into_a_separate_venv_and_runs",
    "tests/tools/test_sanitize.py::",
]
INIT_TEST = "tests/tools/test_init.py::test_project_builds_both_ways_and_passes_its_tests"


def pytest_collection_modifyitems(session, config, items):
    def rank(item):
        return next((i for i, prefix in enumerate(SLOW_FIRST) if item.nodeid.startswith(prefix)), len(SLOW_FIRST))

    items.sort(key=rank)  # stable: the rest keep their order


@dataclass
class Journey:
    result: subprocess.CompletedProcess
    folder: Path  # where the commands ran: the project is folder / "my_ops"
    env: dict[str, str]


def make_clean(project: Path, env: dict[str, str]) -> None:
    """Deletes the project's Bazel output base and built files."""
    if (project / "Makefile").exists():
        subprocess.run(["make", "clean"], cwd=project, env=env, capture_output=True, timeout=300)


@pytest.fixture(scope="session")
def journey(request, tmp_path_factory):
    """The README's journey commands, run once as written in a new folder."""
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    shared = tmp_path_factory.getbasetemp().parent if worker else tmp_path_factory.getbasetemp()
    folder, recorded = shared / "readme-journey", shared / "readme-journey.json"
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",  # `python` is this Python
        "PYTHONPATH": str(ROOT),  # tfkit, as if installed
        "TFKIT_CACHE_DIR": str(folder / "cache"),
        "TF_CPP_MIN_LOG_LEVEL": "2",
    }
    with open(shared / "readme-journey.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # a worker running it finishes first
        if not recorded.exists():
            folder.mkdir(exist_ok=True)
            result = subprocess.run(
                ["bash", "-euo", "pipefail", "-c", journey_commands()],
                cwd=folder,
                env=env,
                capture_output=True,
                text=True,
                timeout=900,
            )
            recorded.write_text(json.dumps([result.returncode, result.stdout, result.stderr]))
    returncode, stdout, stderr = json.loads(recorded.read_text())
    yield Journey(subprocess.CompletedProcess(journey_commands(), returncode, stdout, stderr), folder, env)
    if not any(item.nodeid == INIT_TEST for item in request.session.items):
        make_clean(folder / "my_ops", env)  # else the init test does, when it is done with the project
