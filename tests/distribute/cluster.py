"""Clusters on 127.0.0.1 for the tests: `python -m tfkit launch` and single
tasks as child processes, each bounded in time and always stopped."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator

from tests.conftest import ROOT

TASK_SECONDS = 120  # the most any process a test starts may run


def environment(**extra: str) -> dict[str, str]:
    pythonpath = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "PYTHONPATH": pythonpath, "TF_CPP_MIN_LOG_LEVEL": "3", **extra}


def stop(process: subprocess.Popen, grace: float = 20) -> None:
    """SIGTERM (the launcher passes it on to its tasks), then SIGKILL."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(grace)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def start_launch(options: list[str], command: list[str]) -> subprocess.Popen:
    """`python -m tfkit launch OPTIONS -- COMMAND`, its output (stderr in stdout) on a pipe."""
    return subprocess.Popen(
        [sys.executable, "-m", "tfkit", "launch", *options, "--", *command],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=environment(),
        cwd=ROOT,
    )


def launch(options: list[str], command: list[str], timeout: float = TASK_SECONDS) -> subprocess.CompletedProcess:
    """`python -m tfkit launch OPTIONS -- COMMAND` to its end: its output and status."""
    process = start_launch(options, command)
    try:
        output, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        stop(process)
        output, _ = process.communicate()
        raise AssertionError(f"tfkit launch ran past {timeout} s:\n{output[-4000:]}") from None
    return subprocess.CompletedProcess(process.args, process.returncode, output, "")


def tf_config(cluster: dict[str, list[str]], job: str, index: int) -> str:
    return json.dumps({"cluster": cluster, "task": {"type": job, "index": index}})


@contextlib.contextmanager
def tasks(commands: dict[tuple[str, int], list[str]], cluster: dict[str, list[str]]) -> Iterator[None]:
    """Starts each (job, index) task's command with its TF_CONFIG; stops them all on leaving."""
    started = []
    try:
        for (job, index), command in commands.items():
            started.append(
                subprocess.Popen(
                    command,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                    env=environment(TF_CONFIG=tf_config(cluster, job, index)),
                    cwd=ROOT,
                )
            )
        yield
    finally:
        for process in started:
            stop(process, grace=5)
