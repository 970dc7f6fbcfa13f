"""`python -m tfkit serve` as a user runs it: a subprocess on free ports,
TensorFlow Serving's flags and config files, SIGTERM draining requests in
flight and exiting 0."""

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

import numpy as np
import pytest
import requests

from tests.conftest import ROOT
from tests.serving.conftest import TIMEOUT, MODEL, Client, outputs_of
from tfkit import __main__ as cli
from tfkit import serving

LISTENING = re.compile(r"REST API at http://[\d.]+:(\d+)/v1/models, gRPC at [\d.]+:(\d+)")


class _Ports:
    def __init__(self, rest: int, grpc: int):
        self.rest_url = f"http://127.0.0.1:{rest}"
        self.grpc_target = f"127.0.0.1:{grpc}"


def start_server(args: list[str]) -> tuple[subprocess.Popen, _Ports, queue.Queue]:
    """Starts `python -m tfkit serve ARGS` and waits (bounded) until it listens."""
    process = subprocess.Popen(
        [sys.executable, "-m", "tfkit", "serve", *args, "--port", "0", "--rest_api_port", "0", "--host", "127.0.0.1"],
        stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in process.stderr], daemon=True).start()
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=1)
        except queue.Empty:
            if process.poll() is not None:
                break
            continue
        if match := LISTENING.search(line):
            return process, _Ports(int(match[1]), int(match[2])), lines
    process.kill()
    raise AssertionError("the server did not start listening")


def test_serve_then_sigterm_drains_and_exits_0(model_base, tmp_path):
    parameters = tmp_path / "batching.txt"
    parameters.write_text("max_batch_size { value: 16 }\nbatch_timeout_micros { value: 1000 }\n")
    process, ports, lines = start_server(
        [str(model_base), "--model_name", MODEL, "--enable_batching", "--batching_parameters_file", str(parameters)]
    )
    client = Client(ports)
    try:
        x = np.array([[1.0, 2.0, 3.0]], np.float32)
        assert client.post(f"/v1/models/{MODEL}:predict", {"instances": x.tolist()})[1] == {
            "predictions": (2 * x + 1).tolist()
        }
        np.testing.assert_array_equal(outputs_of(client.predict({"x": x}))["y"], 2 * x + 1)
        in_flight = {}
        slow = threading.Thread(target=lambda: in_flight.update(
            r=client.post(f"/v1/models/{MODEL}:predict", {"signature_name": "slow", "instances": [4.0]})
        ))
        slow.start()
        time.sleep(0.3)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=TIMEOUT) == 0
        slow.join(timeout=TIMEOUT)
        assert in_flight["r"] == (200, {"predictions": [4.0]})
        with pytest.raises(requests.ConnectionError):
            requests.get(f"{ports.rest_url}/v1/models/{MODEL}", timeout=TIMEOUT)
    finally:
        client.close()
        if process.poll() is None:
            process.kill()
            process.wait(timeout=TIMEOUT)


def test_bad_flags_exit_2(capsys):
    assert cli.main(["serve"]) == 2
    assert "MODEL_BASE_PATH" in capsys.readouterr().err
    assert cli.main(["serve", "x", "--model_config_file", "y"]) == 2


def test_model_config_file(tmp_path):
    config = tmp_path / "models.config"
    config.write_text(
        "model_config_list {\n"
        "  config { name: 'a' base_path: '/models/a' model_platform: 'tensorflow' }\n"
        "  config { name: 'b' base_path: 'relative/b' }\n"
        "}\n"
    )
    assert serving.read_model_config_file(config) == [
        serving.ModelConfig("a", Path("/models/a")),
        serving.ModelConfig("b", (tmp_path / "relative/b").resolve()),
    ]
    config.write_text("model_config_list { config { name: 'a' base_path: '/a' "
                      "model_version_policy { all {} } } }")
    with pytest.raises(ValueError, match="only the latest-version policy"):
        serving.read_model_config_file(config)
    config.write_text("not a config")
    with pytest.raises(ValueError, match="not a ModelServerConfig"):
        serving.read_model_config_file(config)


def test_batching_parameters_file(tmp_path):
    path = tmp_path / "batching.txt"
    path.write_text("# TensorFlow Serving's format\nmax_batch_size { value: 8 }\nnum_batch_threads { value: 2 }\n")
    assert serving.read_batching_parameters_file(path) == serving.BatchingParameters(
        max_batch_size=8, num_batch_threads=2
    )
    path.write_text("allowed_batch_sizes: 8\n")
    with pytest.raises(ValueError, match="batching.txt:1"):
        serving.read_batching_parameters_file(path)
