"""Runs the README's prototype-to-served-op commands, so they cannot drift."""

import re

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
def test_readme_journey_runs_as_written(journey):
    """The commands run once, by the `journey` fixture (tests/tools/conftest.py)."""
    assert len(shell_commands(journey_commands())) <= 6
    result = journey.result
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "22 passed" in result.stdout
    assert "opcheck my_ops.ops.soft_clip" in result.stdout and "failed" not in result.stdout.split("opcheck")[1]
    assert "[1.3333334 1.3333334]" in result.stdout
