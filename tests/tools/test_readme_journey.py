"""Runs the README's prototype-to-served-op commands, so they cannot drift;
their output is shown in docs/writing-ops.md."""

import re

import pytest

from tests.conftest import ROOT, missing_from_output


def readme_block(name: str, language: str, page: str = "README.md") -> str:
    text = (ROOT / page).read_text()
    block = re.search(rf"<!-- {name}:start -->\n```{language}\n(.*?)```\n<!-- {name}:end -->", text, re.S)
    assert block, f"{page} lost its {name} section"
    return block.group(1)


def journey_commands() -> str:
    return readme_block("journey", "sh")


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
    missing = missing_from_output(readme_block("journey-output", "text", "docs/writing-ops.md"), result.stdout)
    assert missing is None, f"the journey did not print {missing!r}:\n{result.stdout[-4000:]}"
    assert "failed" not in result.stdout.split("opcheck")[1]
    assert "AutoGraph" not in result.stderr, result.stderr[-3000:]


def test_shown_output_matches_whole_lines_in_order():
    printed = "created x (3 files)\nbuild line\n22 passed in 4.1s\nlast"
    assert missing_from_output("created ... files)\n...\n22 passed in ...\nlast", printed) is None
    assert missing_from_output("22 passed in ...\ncreated ...", printed) == "created ..."
    assert missing_from_output("22 passed", printed) == "22 passed"
