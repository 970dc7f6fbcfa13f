"""The `tfkit` command: installed by `make setup`, its help answers without
TensorFlow, `make info` only reads, and `serve` names the extra it needs."""

import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT
from tfkit_cli import build_parser

HELP_WITHOUT_TENSORFLOW = """
import sys, tfkit_cli
for argv in sys.argv[1:]:
    try:
        tfkit_cli.main(argv.split())
    except SystemExit as exit:
        assert exit.code == 0, (argv, exit.code)
imported = sorted(name for name in ("tensorflow", "keras", "numpy", "tfkit") if name in sys.modules)
print("imported:", imported)
"""


def subcommands() -> list[str]:
    (commands,) = [action for action in build_parser()._actions if action.dest == "command"]
    return sorted(commands.choices)


def test_every_help_answers_without_importing_tensorflow():
    assert {"info", "check", "init", "new-op", "serve", "bazel-dir", "build-library"} <= set(subcommands())
    helps = ["--help", *(f"{command} --help" for command in subcommands())]
    result = subprocess.run(
        [sys.executable, "-c", HELP_WITHOUT_TENSORFLOW, *helps], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "imported: []" in result.stdout
    assert result.stdout.count("usage: tfkit") == len(helps)


def test_the_console_script_is_installed():
    script = Path(sys.executable).parent / "tfkit"
    assert script.is_file(), f"{script} is missing: `make setup` installs tfkit (pip install -e .)"
    result = subprocess.run([str(script), "--help"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.startswith("usage: tfkit") and "new-op" in result.stdout


def test_serve_names_the_extra_it_needs():
    blocked = "import sys; sys.modules['aiohttp'] = None; import tfkit_cli; sys.exit(tfkit_cli.main(['serve', 'x']))"
    result = subprocess.run([sys.executable, "-c", blocked], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert "pip install 'tfkit[serve]'" in result.stderr and "aiohttp" in result.stderr


def test_make_info_only_reads():
    outside_make = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MAKELEVEL", "MFLAGS")}
    result = subprocess.run(
        ["make", "--no-print-directory", "-n", "info"], cwd=ROOT, env=outside_make, capture_output=True, text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    commands = [line for line in result.stdout.splitlines() if line.strip()]
    assert commands[-1] == ".venv/bin/python -m tfkit info", commands
    assert not any(word in result.stdout for word in ("bazel", "pip", "cp ", "install -")), commands
