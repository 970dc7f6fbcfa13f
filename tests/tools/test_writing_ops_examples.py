"""Runs the examples of docs/writing-ops.md as written, so they cannot drift.

Each example sits between `<!-- example:NAME:start -->` and
`<!-- example:NAME:end -->`; NAME is the file it is written to (or, for
`.output`, what its script prints).
"""

import os
import re
import subprocess
import sys

import pytest

from tests.conftest import ROOT

DOC = ROOT / "docs" / "writing-ops.md"
HEADER = ROOT / "tfkit" / "include" / "tfkit" / "op_utils.h"
_EXAMPLE = re.compile(
    r"<!-- example:(?P<name>[\w.]+):start -->\n```\w*\n(?P<code>.*?)```\n<!-- example:(?P=name):end -->", re.S
)
WORKED_EXAMPLE = ("scaled_softmax.cc", "my_ops.py", "check_scaled_softmax.py")


def examples() -> dict[str, str]:
    return {match["name"]: match["code"] for match in _EXAMPLE.finditer(DOC.read_text())}


def run_in_process(name: str, capsys) -> list[str]:
    """Runs the example `name` here; the lines it printed."""
    exec(compile(examples()[name], name, "exec"), {"__name__": f"writing_ops_{name[:-3]}"})
    return capsys.readouterr().out.splitlines()


def test_the_doc_keeps_its_examples():
    assert set(examples()) == {
        "prototype_several_outputs.py",
        "opcheck_bad_inputs.py",
        *WORKED_EXAMPLE,
        "check_scaled_softmax.output",
    }


def test_the_op_utils_table_has_the_headers_signatures():
    """Each signature the table shows is the header's, with `tensorflow::`
    and `shape_inference::` left out as the table says."""
    section = DOC.read_text().split("### 1. The op")[1].split("### 2.")[0]
    signatures = re.findall(r"^\| `([^`]+\))` \|", section, re.M)
    assert len(signatures) == 11, signatures
    header = re.sub(r"tensorflow::(shape_inference::)?", "", HEADER.read_text())
    header = " ".join(header.split())
    for signature in signatures:
        assert signature in header, signature


def test_the_several_outputs_prototype_runs_as_written(capsys):
    assert run_in_process("prototype_several_outputs.py", capsys) == [
        "[4. 6.] [2 1]",
        "[[1.0, 0.0, 1.0], [0.0, 0.0, 10.0]]",
        "[TensorShape([None]), TensorShape([None])]",
    ]


def test_the_bad_inputs_example_runs_as_written(capsys):
    assert run_in_process("opcheck_bad_inputs.py", capsys) == [
        "2 bad argument sets, eager and graph: InvalidArgumentError"
    ]


def without_times(output: str) -> list[str]:
    """opcheck's table without its milliseconds column, each line stripped."""
    return [re.sub(r"^(  \S+\s+\S+)\s+\d+ ms", r"\1", line).rstrip() for line in output.splitlines()]


@pytest.fixture(scope="module")
def worked_example(tmp_path_factory):
    """The three files of the worked example, run as the doc says: `python
    check_scaled_softmax.py` in their folder, with a fresh build cache."""
    folder = tmp_path_factory.mktemp("scaled_softmax")
    for name in WORKED_EXAMPLE:
        (folder / name).write_text(examples()[name])
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "3", "TFKIT_CACHE_DIR": str(folder / "cache")}
    return subprocess.run(
        [sys.executable, "check_scaled_softmax.py"], capture_output=True, text=True, env=env, cwd=folder, timeout=900
    )


@pytest.mark.slow
def test_the_worked_example_compiles_passes_opcheck_and_prints_what_the_doc_shows(worked_example):
    assert worked_example.returncode == 0, worked_example.stdout[-3000:] + worked_example.stderr[-3000:]
    assert re.search(r"tfkit.build my_ops: compiled scaled_softmax.cc in \d+\.\d s", worked_example.stderr)
    lines = without_times(worked_example.stdout)
    assert lines[:3] == [
        "auto runs: compiled",
        "float32 matches NumPy's float64 softmax: True",
        "float64 matches NumPy's float64 softmax: True",
    ]
    joined, bare = worked_example.stdout.split("opcheck ")[1:]
    assert joined.startswith("scaled_softmax\n") and bare.startswith("my_ops_scaled_softmax\n")
    for report in (joined, bare):
        assert " failed " not in report and " skipped " not in report, report
        assert "loaded and run in a fresh process importing ['tfkit', 'my_ops']" in report
        assert "3 bad argument sets, eager and graph: InvalidArgumentError (1 in the graph as" in report
    assert "  reference       passed  against its prototype\n" in "\n".join(without_times(joined))
    assert "numeric vs analytic Jacobian (float64); gradients match its prototype's" in joined
    assert "temperature must be a finite float > 0, got -1 [Op:MyOps>ScaledSoftmax]" in worked_example.stdout
    assert lines == without_times(examples()["check_scaled_softmax.output"])
