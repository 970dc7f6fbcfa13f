"""Runs the README's prototype-to-served-op commands, so they cannot drift."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT


def journey_commands() -> str:
    readme = (ROOT / "README.md").read_text()
    block = re.search(r"<!-- journey:start -->\n```sh\n(.*?)```\n<!-- journey:end -->", readme, re.S)
    assert block, "the README lost its journey section"
    return block.group(1)


def shell_commands(script: str) -> list[str]:
    """The script's command lines, a here-document counting as part of its command."""
    commands, heredoc_end = [], None
    for line in script.splitlines():
        if heredoc_end is not None:
            heredoc_end = None if line == heredoc_end else heredoc_end
            continue
        if line.strip():
            commands.append(line)
            marker = re.search(r"<<'(\w+)'", line)
            heredoc_end = marker.group(1) if marker else None
    return commands


def test_the_journey_is_five_commands():
    assert len(shell_commands(journey_commands())) == 5


@pytest.mark.slow
def test_readme_journey_runs_as_written(tmp_path):
    commands = journey_commands()
    assert len(shell_commands(commands)) <= 6
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",  # `python` is this Python
        "PYTHONPATH": str(ROOT),  # tfkit, as if installed
        "TFKIT_CACHE_DIR": str(tmp_path / "cache"),
        "TF_CPP_MIN_LOG_LEVEL": "2",
    }
    result = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", commands], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900
    )
    subprocess.run(["make", "clean"], cwd=tmp_path / "my_ops", env=env, capture_output=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "22 passed" in result.stdout
    assert "opcheck my_ops.ops.soft_clip" in result.stdout and "failed" not in result.stdout.split("opcheck")[1]
    assert "[1.3333334 1.3333334]" in result.stdout
