"""`python -m tfkit launch`: a local cluster on 127.0.0.1, and `python -m tfkit server`."""

import json
import re
import signal
import subprocess
import sys
import time

import pytest

from tests.conftest import ROOT
from tests.distribute.cluster import TASK_SECONDS, environment, launch, start_launch, stop
from tfkit_cli.cluster import free_ports

PRINT_TASK = "import json, os; t = json.loads(os.environ['TF_CONFIG']); print('task', t['task']['type'], t['task']['index'], json.dumps(t['cluster']))"  # noqa: E501


def task_lines(output: str) -> dict[str, tuple[str, dict]]:
    """{"worker:0": ("worker 0", cluster)} from the `[name] task TYPE INDEX CLUSTER` lines."""
    found = {}
    for name, job, index, cluster in re.findall(r"^\[(\S+)\] task (\S+) (\d+) (.*)$", output, re.M):
        found[name] = (f"{job} {index}", json.loads(cluster))
    return found


def test_every_worker_and_the_chief_run_the_command_with_their_tf_config():
    result = launch(["--workers", "2", "--chief"], [sys.executable, "-c", PRINT_TASK])
    assert result.returncode == 0, result.stdout
    found = task_lines(result.stdout)
    assert {name: task for name, (task, _) in found.items()} == {
        "chief:0": "chief 0",
        "worker:0": "worker 0",
        "worker:1": "worker 1",
    }
    cluster = found["chief:0"][1]
    assert all(spec == cluster for _, spec in found.values())
    addresses = cluster["chief"] + cluster["worker"]
    assert len(set(addresses)) == 3 and all(a.startswith("127.0.0.1:") for a in addresses)


def test_port_base_gives_consecutive_ports():
    base = free_ports(1)[0]
    result = launch(["--workers", "2", "--port_base", str(base)], [sys.executable, "-c", PRINT_TASK])
    assert result.returncode == 0, result.stdout
    cluster = task_lines(result.stdout)["worker:0"][1]
    assert cluster == {"worker": [f"127.0.0.1:{base}", f"127.0.0.1:{base + 1}"]}


def test_the_first_failing_task_sets_the_status_and_stops_the_others():
    fail_one = "import json, os, sys, time; t = json.loads(os.environ['TF_CONFIG'])['task']; t['index'] and sys.exit(3); time.sleep(100)"  # noqa: E501
    started = time.monotonic()
    result = launch(["--workers", "2"], [sys.executable, "-c", fail_one])
    assert result.returncode == 3, result.stdout
    assert "worker:1 exited with 3" in result.stdout
    assert time.monotonic() - started < 60, "the sleeping worker should have been stopped"


WAIT_FOR_SERVERS = """
import json, os, socket, time
cluster = json.loads(os.environ["TF_CONFIG"])["cluster"]
for address in cluster["worker"] + cluster["ps"]:
    host, port = address.rsplit(":", 1)
    deadline = time.monotonic() + 90
    while True:
        try:
            socket.create_connection((host, int(port)), timeout=1).close()
            break
        except OSError:
            assert time.monotonic() < deadline, address
            time.sleep(0.2)
"""


def test_parameter_server_layout_runs_the_command_on_the_chief_and_stops_the_servers():
    command = WAIT_FOR_SERVERS + PRINT_TASK
    result = launch(["--workers", "1", "--ps", "1"], [sys.executable, "-c", command])
    assert result.returncode == 0, result.stdout
    assert set(task_lines(result.stdout)) == {"chief:0"}, "only the chief runs the command"
    for name, job in (("ps:0", "ps"), ("worker:0", "worker")):
        assert re.search(rf"^\[{name}\] tfkit server: /job:{job}/task:0 at ", result.stdout, re.M), result.stdout
        assert f"[{name}] tfkit server: stopped" in result.stdout


def test_a_signal_to_the_launcher_reaches_every_task():
    record = "import signal, sys, time; signal.signal(signal.SIGTERM, lambda *_: (print('got SIGTERM', flush=True), sys.exit(0))); print('ready', flush=True); time.sleep(100)"  # noqa: E501
    process = start_launch(["--workers", "2"], [sys.executable, "-c", record])
    try:
        lines = []
        deadline = time.monotonic() + TASK_SECONDS
        while sum("ready" in line for line in lines) < 2 and time.monotonic() < deadline:
            lines.append(process.stdout.readline())
        process.send_signal(signal.SIGTERM)
        output = "".join(lines) + process.communicate(timeout=60)[0]
    finally:
        stop(process)
    assert process.returncode == 128 + signal.SIGTERM, output
    assert "[worker:0] got SIGTERM" in output and "[worker:1] got SIGTERM" in output, output


@pytest.mark.parametrize(
    "options, message",
    [
        (["--workers", "1"], "give the command to run after --"),
        (["--workers", "0"], "at least one task"),
    ],
)
def test_bad_launch_arguments_are_refused(options, message):
    command = [sys.executable, "-m", "tfkit", "launch", *options] + ([] if "1" in options else ["--", "true"])
    result = subprocess.run(command, capture_output=True, text=True, env=environment(), cwd=ROOT, timeout=60)
    assert result.returncode == 2 and message in result.stderr, result.stderr
