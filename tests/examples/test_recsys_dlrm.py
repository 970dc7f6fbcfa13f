"""examples/recsys_dlrm.py in its quick setting: on one machine (model.fit,
both models timed, exported, checked, served) and on a local
ParameterServerStrategy cluster (sharded tables, the custom loop)."""

import sys

import pytest

from tests.distribute.cluster import launch
from tests.examples.runs import SECONDS, assert_served, assert_timed, reached, run_quick

# Run alone, after the parallel suite: they serve a model and time training
# (see docs/testing.md).
pytestmark = pytest.mark.serial


def test_quick_run_trains_both_models_times_them_and_serves(tmp_path):
    output = run_quick("recsys_dlrm.py", tmp_path)
    assert reached(output, "tfkit") > 0.6
    assert reached(output, "Keras layers") > 0.6
    assert_timed(output)
    assert_served(output)
    assert (tmp_path / "auc.png").stat().st_size > 0
    assert (tmp_path / "dlrm.keras").is_file()


def test_quick_distributed_run_shards_the_tables_and_serves(tmp_path):
    command = [sys.executable, "examples/recsys_dlrm.py", "--quick", "--distributed", "--out", str(tmp_path)]
    result = launch(["--workers", "2", "--ps", "2"], command, timeout=SECONDS)
    assert result.returncode == 0, result.stdout[-6000:]
    output = result.stdout
    assert "table0 shards on /job:ps/replica:0/task:0/device:CPU:0, /job:ps/replica:0/task:1" in output, output[-3000:]
    assert reached(output, "tfkit, sharded") > 0.6
    assert_served(output)
    assert (tmp_path / "auc.png").stat().st_size > 0
