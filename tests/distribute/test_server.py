"""`tfkit.distribute.start_server` and `python -m tfkit server`, and what a
task without tfkit's ops tells the user."""

import re
import signal
import subprocess
import sys

import pytest

from tests.conftest import ROOT, run_python
from tests.distribute.cluster import TASK_SECONDS, environment, stop, tasks, tf_config
from tfkit import distribute
from tfkit_cli.cluster import free_ports


def loopback_cluster(**counts: int) -> dict[str, list[str]]:
    ports = iter(free_ports(sum(counts.values())))
    return {job: [f"127.0.0.1:{next(ports)}" for _ in range(count)] for job, count in counts.items()}


def test_start_server_needs_a_cluster(monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(ValueError, match="no cluster to join: set TF_CONFIG"):
        distribute.start_server()


def test_start_server_refuses_a_task_outside_the_cluster():
    import tensorflow as tf

    resolver = tf.distribute.cluster_resolver.SimpleClusterResolver(
        tf.train.ClusterSpec(loopback_cluster(worker=1)), task_type="ps", task_id=0
    )
    with pytest.raises(ValueError, match="task 'ps' 0 is not in the cluster"):
        distribute.start_server(resolver)


def test_server_command_serves_until_sigterm_then_exits_0():
    cluster = loopback_cluster(worker=1)
    process = subprocess.Popen(
        [sys.executable, "-m", "tfkit", "server"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=environment(TF_CONFIG=tf_config(cluster, "worker", 0)),
        cwd=ROOT,
    )
    try:
        first = process.stdout.readline()
        process.send_signal(signal.SIGTERM)
        rest = process.communicate(timeout=TASK_SECONDS)[0]
    finally:
        stop(process)
    assert re.match(r"tfkit server: /job:worker/task:0 at grpc://", first), first
    assert process.returncode == 0 and "tfkit server: stopped" in rest


def test_server_command_refuses_a_missing_op_library(tmp_path):
    cluster = loopback_cluster(worker=1)
    result = subprocess.run(
        [sys.executable, "-m", "tfkit", "server", "--op_library", str(tmp_path / "missing.so")],
        capture_output=True,
        text=True,
        env=environment(TF_CONFIG=tf_config(cluster, "worker", 0)),
        cwd=ROOT,
        timeout=TASK_SECONDS,
    )
    assert result.returncode == 2 and "missing.so" in result.stderr, result.stderr[-2000:]


BARE_SERVER = """
import tensorflow as tf, time
r = tf.distribute.cluster_resolver.TFConfigClusterResolver()
tf.distribute.Server(r.cluster_spec(), job_name=r.task_type, task_index=r.task_id, start=True)
time.sleep(120)
"""

# The chief of a ParameterServerStrategy cluster: one scheduled bag over a
# table on the ps (the resource op runs there) or over a tensor (on the worker).
CHIEF = """
import sys, tensorflow as tf, tfkit
strategy = tf.distribute.experimental.ParameterServerStrategy(
    tf.distribute.cluster_resolver.TFConfigClusterResolver())
coordinator = tf.distribute.coordinator.ClusterCoordinator(strategy)
with strategy.scope():
    table = tf.Variable(tf.ones([10, 4]))

@tf.function
def bag():
    ids = tf.constant([[1, 2]], tf.int64)
    return tfkit.ops.embedding_bag(ids, table if sys.argv[1] == "variable" else tf.ones([10, 4]))

try:
    print(coordinator.schedule(bag).fetch())
except tf.errors.NotFoundError as err:
    print("NotFoundError:", err.message)
"""


@pytest.mark.parametrize(
    "bare_task, table, op",
    [("ps", "variable", "Tfkit>ResourceEmbeddingBag"), ("worker", "tensor", "Tfkit>EmbeddingBag")],
)
def test_a_task_without_the_ops_names_the_op_and_the_task(bare_task, table, op):
    cluster = loopback_cluster(chief=1, worker=1, ps=1)
    serve = [sys.executable, "-m", "tfkit", "server"]
    bare = [sys.executable, "-c", BARE_SERVER]
    commands = {(job, 0): bare if job == bare_task else serve for job in ("worker", "ps")}
    with tasks(commands, cluster):
        result = run_python(
            f"import sys; sys.argv = ['chief', {table!r}]\n" + CHIEF,
            env={"TF_CONFIG": tf_config(cluster, "chief", 0)},
            timeout=TASK_SECONDS,
        )
    assert result.returncode == 0, result.stderr[-3000:]
    message = result.stdout
    assert "NotFoundError:" in message, message
    assert f"Op type not registered '{op}'" in message and f"/job:{bare_task}/" in message, message
