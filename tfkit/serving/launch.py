"""`python -m tfkit serve` as a child process: start it on free ports, learn
them from its log, stop it with SIGTERM (used by the demo, the benchmark and
the tests)."""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

LISTENING = re.compile(r"REST API at http://[^\s]+:(\d+)/v1/models, gRPC at [^\s]+:(\d+)")
_ROOT = Path(__file__).resolve().parents[2]


class ServerProcess:
    """`python -m tfkit serve ARGS --port 0 --rest_api_port 0`, on loopback (the default host).

    Args:
      args: the serve arguments (model path and flags), without the ports.
      start_timeout: seconds to wait for it to listen.

    Raises:
      RuntimeError: it exited or did not listen in time (with its log).
    """

    def __init__(self, args: list[str], start_timeout: float = 120):
        command = [
            sys.executable,
            "-m",
            "tfkit",
            "serve",
            *args,
            "--port",
            "0",
            "--rest_api_port",
            "0",
        ]
        pythonpath = os.pathsep.join(filter(None, [str(_ROOT), os.environ.get("PYTHONPATH")]))
        self.process = subprocess.Popen(
            command,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONPATH": pythonpath, "TF_CPP_MIN_LOG_LEVEL": "3"},
        )
        self.log: list[str] = []
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read_log, daemon=True)
        self._reader.start()
        self.rest_port, self.grpc_port = self._wait_listening(start_timeout)

    @property
    def rest_url(self) -> str:
        return f"http://127.0.0.1:{self.rest_port}"

    @property
    def grpc_target(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    def stop(self, timeout: float = 60, signum: int = signal.SIGTERM) -> int:
        """Sends `signum` and returns the exit status (killing it after `timeout`);
        its log is then read to the end and the pipe closed."""
        if self.process.poll() is None:
            self.process.send_signal(signum)
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise
        finally:
            self._reader.join(timeout=timeout)

    def _read_log(self) -> None:
        with self.process.stderr as lines:
            for line in lines:
                self.log.append(line)
                self._lines.put(line)
        self._lines.put(None)

    def _wait_listening(self, timeout: float) -> tuple[int, int]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self._lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                break
            if line is None:
                break
            if match := LISTENING.search(line):
                return int(match[1]), int(match[2])
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        self._reader.join(timeout=timeout)
        raise RuntimeError("tfkit serve did not start:\n" + "".join(self.log[-40:]))

    def __enter__(self) -> ServerProcess:
        return self

    def __exit__(self, *exc) -> None:
        if self.process.poll() is None:
            self.stop()
