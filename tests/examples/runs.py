"""Running an end-to-end example in its quick setting, and reading what it printed."""

from __future__ import annotations

import importlib
import re
import subprocess
import sys

from tests.conftest import ROOT
from tests.distribute.cluster import environment

SECONDS = 300  # a quick setting takes about a minute and a half alone on this 2-core machine


def run_quick(script: str, out, *options: str) -> str:
    """`python examples/SCRIPT --quick --out OUT`; its output, after asserting exit 0."""
    command = [sys.executable, f"examples/{script}", "--quick", "--out", str(out), *options]
    result = subprocess.run(command, capture_output=True, text=True, env=environment(), cwd=ROOT, timeout=SECONDS)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    return result.stdout


def reached(output: str, model: str) -> float:
    """The metric in the final table's row for `model`."""
    match = re.search(rf"^(?:\[chief:0\] )?\| {re.escape(model)} \| ([0-9.]+) \|", output, re.M)
    assert match, output[-4000:]
    return float(match[1])


def assert_timed(output: str) -> None:
    """Both speed rows: medians, their ratio and both ranges."""
    number, spread = r"[0-9.]+", r"[0-9.]+-[0-9.]+"
    for mode in ("no XLA", "XLA"):
        row = rf"^\| {mode} \| {number} \| {number} \| {number}x \| {spread} \| {spread} \|$"
        assert re.search(row, output, re.M), output[-3000:]


def assert_served(output: str) -> None:
    """The .keras round trip, `tfkit check`, and REST and gRPC answers equal to the model's."""
    reloaded = re.search(r"reloaded outputs differ by (\S+)$", output, re.M)
    assert reloaded and float(reloaded[1]) <= 1e-6, output[-4000:]
    for way in ("REST", "gRPC"):
        assert f"{way} answer matches the in-process prediction" in output, output[-4000:]
    assert "tfkit serve stopped by SIGTERM, exit status 0" in output, output[-4000:]
    assert re.search(r"tfkit check \S+: exit 0", output), output[-4000:]


def example_module(name: str):
    """examples/NAME.py imported (the examples import each other by name)."""
    if str(ROOT / "examples") not in sys.path:
        sys.path.insert(0, str(ROOT / "examples"))
    return importlib.import_module(name)
