"""ParameterServerStrategy on 127.0.0.1 (through `tfkit launch --ps 2`): a
recommendation model whose embedding table is sharded over both parameter
servers, trained with ClusterCoordinator.schedule."""

import json
import subprocess
import sys

import numpy as np

from tests.conftest import ROOT
from tests.distribute.cluster import TASK_SECONDS, environment, launch

TRAIN = [sys.executable, "-m", "tests.distribute.ps_train"]
STEPS = 20
SHARDED_VS_WHOLE = 1e-5  # the bag's partial sums are added in another order: float32 rounding


def saved(out, name):
    with np.load(out / f"{name}.npz") as weights:
        arrays = [weights[key] for key in weights.files]
    return arrays, json.loads((out / f"{name}.json").read_text())


def train_in_one_process(out, name, layout):
    result = subprocess.run(
        [*TRAIN, str(out), name, "--layout", layout, "--steps", str(STEPS)],
        capture_output=True,
        text=True,
        env=environment(),
        cwd=ROOT,
        timeout=TASK_SECONDS,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return saved(out, name)


def assert_one_shard_per_ps(report):
    assert report["devices"] == [f"/job:ps/replica:0/task:{i}/device:CPU:0" for i in range(2)]


def test_one_worker_trains_the_sharded_table_as_one_process_does(tmp_path):
    result = launch(["--workers", "1", "--ps", "2"], [*TRAIN, str(tmp_path), "cluster", "--steps", str(STEPS)])
    assert result.returncode == 0, result.stdout[-6000:]
    cluster, report = saved(tmp_path, "cluster")
    assert_one_shard_per_ps(report)
    sharded, sharded_report = train_in_one_process(tmp_path, "sharded", "sharded")
    assert report["losses"] == sharded_report["losses"]
    for got, want in zip(cluster, sharded, strict=True):
        np.testing.assert_array_equal(got, want)  # the same steps in the same order: exactly
    whole, _ = train_in_one_process(tmp_path, "whole", "whole")
    np.testing.assert_allclose(np.concatenate(cluster[:2]), whole[0], rtol=SHARDED_VS_WHOLE, atol=SHARDED_VS_WHOLE)
    for got, want in zip(cluster[2:], whole[1:], strict=True):
        np.testing.assert_allclose(got, want, rtol=SHARDED_VS_WHOLE, atol=SHARDED_VS_WHOLE)


def test_two_workers_train_and_the_sharded_lookup_matches_the_unsharded_op(tmp_path):
    command = [*TRAIN, str(tmp_path), "cluster", "--steps", str(STEPS), "--check_lookup"]
    result = launch(["--workers", "2", "--ps", "2"], command)
    assert result.returncode == 0, result.stdout[-6000:]
    _, report = saved(tmp_path, "cluster")
    assert_one_shard_per_ps(report)
    losses = report["losses"]
    assert np.mean(losses[-5:]) < 0.8 * np.mean(losses[:5]), losses
    # every combiner, weighted or not, dense and ragged bags: bags and table gradients
    assert report["lookup_gap"] <= 1e-5, report["lookup_gap"]


def test_the_distributed_recommendation_example_trains_exports_and_serves(tmp_path):
    command = [sys.executable, "examples/distributed_recsys.py", "--out", str(tmp_path), "--epochs", "2"]
    result = launch(["--workers", "2", "--ps", "2"], [*command, "--steps", "15"])
    assert result.returncode == 0, result.stdout[-6000:]
    assert (
        "[chief:0] user table shards on /job:ps/replica:0/task:0/device:CPU:0, /job:ps/replica:0/task:1"
        in result.stdout
    )
    assert "held-out accuracy" in result.stdout and "served outputs differ by 0 " in result.stdout, result.stdout[
        -3000:
    ]
