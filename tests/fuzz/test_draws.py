"""A derandomized Hypothesis test draws the same cases whatever the process
imported before it (tests/conftest.py empties the pool of the project's
literals that Hypothesis would mix in)."""

from __future__ import annotations

import importlib
import sys

from hypothesis import given, settings
from hypothesis import strategies as st


def _drawn() -> list[int]:
    seen: list[int] = []

    @settings(derandomize=True, database=None, max_examples=300)
    @given(st.integers(0, 2**40))
    def draw(value):
        seen.append(value)

    draw()
    return seen


def test_importing_a_module_full_of_literals_changes_no_draw(tmp_path, monkeypatch):
    before = _drawn()
    literals = ", ".join(str(987_654_321 + 7919 * i) for i in range(64))
    (tmp_path / "module_of_literals.py").write_text(f"VALUES = [{literals}]\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        importlib.import_module("module_of_literals")
        assert _drawn() == before
    finally:
        sys.modules.pop("module_of_literals", None)
