"""`tfkit server` (a cluster task with tfkit's ops) and `tfkit launch` (a
local cluster on 127.0.0.1, each task with its TF_CONFIG)."""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass

HOST = "127.0.0.1"
STOP_SECONDS = 10  # how long a stopped task has to exit before it is killed


def add_cluster_parsers(commands) -> None:
    server = commands.add_parser(
        "server",
        help="run this task's tf.distribute server (from TF_CONFIG) with tfkit's ops loaded, until SIGTERM/SIGINT",
    )
    server.add_argument(
        "--op_library", action="append", default=[], metavar="PATH", help="another op library to load first"
    )
    launch = commands.add_parser(
        "launch",
        help="run a local cluster on 127.0.0.1: COMMAND on every worker, or with --ps on the chief only",
        description="Starts the tasks of a cluster on 127.0.0.1, each with its TF_CONFIG. Without --ps every "
        "worker (and the chief, with --chief) runs COMMAND (MultiWorkerMirroredStrategy's layout); with --ps the "
        "chief runs COMMAND and the workers and parameter servers run `python -m tfkit server` "
        "(ParameterServerStrategy's layout; --ps implies --chief). Exits with the first failing task's status.",
    )
    launch.add_argument("--workers", type=int, required=True, help="worker tasks")
    launch.add_argument("--ps", type=int, default=0, help="parameter-server tasks")
    launch.add_argument("--chief", action="store_true", help="add a chief task")
    launch.add_argument("--port_base", type=int, default=None, help="consecutive ports from P (default: free ports)")
    launch.add_argument("task_command", nargs=argparse.REMAINDER, metavar="-- COMMAND ARGS...")


def server(args: argparse.Namespace) -> int:
    """Starts the server, prints where it listens, serves until a signal."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    stop = threading.Event()
    for number in (signal.SIGTERM, signal.SIGINT):
        signal.signal(number, lambda *_: stop.set())
    from tfkit import _loader, distribute

    try:
        started = distribute.start_server(op_libraries=args.op_library)
    except (ValueError, _loader.OpLibraryError) as err:
        print(f"tfkit server: {err}", file=sys.stderr)
        return 2
    definition = started.server_def
    print(f"tfkit server: /job:{definition.job_name}/task:{definition.task_index} at {started.target}", flush=True)
    while not stop.wait(0.5):
        pass
    print("tfkit server: stopped", flush=True)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)  # the server's threads never join; nothing else is left to clean up


@dataclass
class Task:
    job: str
    index: int
    command: list[str]
    runs_command: bool  # False: a server, stopped when the command's tasks are done
    process: subprocess.Popen | None = None
    reader: threading.Thread | None = None

    @property
    def name(self) -> str:
        return f"{self.job}:{self.index}"


def free_ports(count: int) -> list[int]:
    """Ports on 127.0.0.1 that nothing listens on now (held open together, so distinct)."""
    sockets = []
    try:
        for _ in range(count):
            bound = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            bound.bind((HOST, 0))
            sockets.append(bound)
        return [bound.getsockname()[1] for bound in sockets]
    finally:
        for bound in sockets:
            bound.close()


def cluster_spec(workers: int, ps: int, chief: bool, ports: list[int]) -> dict[str, list[str]]:
    counts = {"chief": int(chief), "worker": workers, "ps": ps}
    spec, at = {}, 0
    for job, count in counts.items():
        if count:
            spec[job] = [f"{HOST}:{port}" for port in ports[at : at + count]]
            at += count
    return spec


def plan_tasks(args: argparse.Namespace) -> tuple[dict[str, list[str]], list[Task]]:
    """The cluster and its tasks, each with the command it runs."""
    command = args.task_command[1:] if args.task_command[:1] == ["--"] else args.task_command
    if not command:
        raise ValueError("give the command to run after --")
    if args.workers < 0 or args.ps < 0 or (args.workers == 0 and not args.chief and not args.ps):
        raise ValueError("--workers and --ps must be >= 0, with at least one task to run the command")
    chief = args.chief or args.ps > 0
    total = int(chief) + args.workers + args.ps
    ports = free_ports(total) if args.port_base is None else list(range(args.port_base, args.port_base + total))
    spec = cluster_spec(args.workers, args.ps, chief, ports)
    serve = [sys.executable, "-m", "tfkit", "server"]
    tasks = []
    for job, addresses in spec.items():
        runs_command = job == "chief" or (job == "worker" and not args.ps)
        tasks += [Task(job, index, command if runs_command else serve, runs_command) for index in range(len(addresses))]
    return spec, tasks


def prefix_output(task: Task, lock: threading.Lock) -> None:
    for line in task.process.stdout:
        with lock:
            sys.stdout.write(f"[{task.name}] {line}")
            sys.stdout.flush()


def start(task: Task, spec: dict[str, list[str]], lock: threading.Lock) -> None:
    config = {"cluster": spec, "task": {"type": task.job, "index": task.index}}
    task.process = subprocess.Popen(
        task.command,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        bufsize=1,
        env={**os.environ, "TF_CONFIG": json.dumps(config), "PYTHONUNBUFFERED": "1"},
        start_new_session=True,  # signals reach a task only through the launcher
    )
    task.reader = threading.Thread(target=prefix_output, args=(task, lock), daemon=True)
    task.reader.start()


def stop_all(tasks: list[Task], number: int = signal.SIGTERM) -> None:
    """Signals every running task, then kills those still running after STOP_SECONDS."""
    for task in tasks:
        if task.process.poll() is None:
            task.process.send_signal(number)
    deadline = time.monotonic() + STOP_SECONDS
    for task in tasks:
        try:
            task.process.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            task.process.kill()
            task.process.wait()


def exit_status(returncode: int) -> int:
    return 128 - returncode if returncode < 0 else returncode


def launch(args: argparse.Namespace) -> int:
    """Runs the cluster until the command's tasks end or one task fails."""
    try:
        spec, tasks = plan_tasks(args)
    except ValueError as err:
        print(f"tfkit launch: {err}", file=sys.stderr)
        return 2
    print(f"tfkit launch: cluster {json.dumps(spec)}", flush=True)
    lock, signalled = threading.Lock(), []
    for number in (signal.SIGTERM, signal.SIGINT):
        signal.signal(number, lambda received, _: signalled.append(received))
    for task in tasks:
        start(task, spec, lock)
    status = wait(tasks, signalled)
    stop_all(tasks, signalled[0] if signalled else signal.SIGTERM)
    for task in tasks:
        task.reader.join(5)
    return status


def wait(tasks: list[Task], signalled: list[int]) -> int:
    """Until a signal, a failing task, or the end of every task that runs the command."""
    runners = [task for task in tasks if task.runs_command]
    while True:
        if signalled:
            print(f"tfkit launch: {signal.Signals(signalled[0]).name}, stopping the cluster", flush=True)
            return 128 + signalled[0]
        for task in tasks:
            code = task.process.poll()
            if code:
                print(f"tfkit launch: {task.name} exited with {code}, stopping the others", flush=True)
                return exit_status(code)
            if code == 0 and task not in runners:
                print(f"tfkit launch: {task.name} (a server) exited early, stopping the others", flush=True)
                return 1
        if all(task.process.poll() == 0 for task in runners):
            return 0
        time.sleep(0.1)
