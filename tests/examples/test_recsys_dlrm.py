"""examples/recsys_dlrm.py in its quick setting: on one machine (model.fit,
both models timed, exported, checked, served) and on a local
ParameterServerStrategy cluster (sharded tables, the custom loop)."""

import re
import subprocess
import sys

from tests.conftest import ROOT
from tests.distribute.cluster import environment, launch

SCRIPT = [sys.executable, "examples/recsys_dlrm.py", "--quick"]
SECONDS = 300  # the quick setting takes about a minute alone on this 2-core machine


def reached_auc(output: str, model: str) -> float:
    """The held-out AUC in the final table's row for `model`."""
    match = re.search(rf"^(?:\[chief:0\] )?\| {re.escape(model)} \| ([0-9.]+) \| ([0-9.]+) \|", output, re.M)
    assert match, output[-4000:]
    return float(match[1])


def assert_served(output: str) -> None:
    for way in ("REST", "gRPC"):
        assert f"{way} answer matches the in-process prediction" in output, output[-4000:]
    assert "tfkit serve stopped by SIGTERM, exit status 0" in output, output[-4000:]
    assert re.search(r"tfkit check \S+: exit 0", output), output[-4000:]


def test_quick_run_trains_both_models_times_them_and_serves(tmp_path):
    result = subprocess.run(
        [*SCRIPT, "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        env=environment(),
        cwd=ROOT,
        timeout=SECONDS,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    output = result.stdout
    assert reached_auc(output, "tfkit") > 0.6
    assert reached_auc(output, "Keras layers") > 0.6
    for mode in ("no XLA", "XLA"):
        assert re.search(rf"^\| {mode} \| [0-9.]+ \| [0-9.]+ \| [0-9.]+x \|$", output, re.M), output[-3000:]
    assert_served(output)
    assert (tmp_path / "auc.png").stat().st_size > 0
    assert (tmp_path / "dlrm.keras").is_file()


def test_quick_distributed_run_shards_the_tables_and_serves(tmp_path):
    command = [*SCRIPT, "--distributed", "--out", str(tmp_path)]
    result = launch(["--workers", "2", "--ps", "2"], command, timeout=SECONDS)
    assert result.returncode == 0, result.stdout[-6000:]
    output = result.stdout
    assert "table0 shards on /job:ps/replica:0/task:0/device:CPU:0, /job:ps/replica:0/task:1" in output, output[-3000:]
    assert reached_auc(output, "tfkit, sharded") > 0.6
    assert_served(output)
    assert (tmp_path / "auc.png").stat().st_size > 0
