"""`python -m tfkit serve` as a user runs it: a subprocess on free ports,
TensorFlow Serving's flags and config files, SIGTERM or SIGINT draining
requests in flight and exiting 0."""

from __future__ import annotations

import argparse
import signal
import time
from pathlib import Path

import numpy as np
import pytest
import requests

import tfkit_cli as cli
from tests.serving.conftest import MODEL, TIMEOUT, Client, options, outputs_of, read_response, start_predict
from tfkit import OpLibraryError, library_path, serving
from tfkit.serving.launch import ServerProcess
from tfkit.serving.server import load_op_libraries
from tfkit_cli.serve import add_serve_parser, serve_options

SLOW_BODY = b'{"signature_name": "slow", "instances": [4.0]}'


@pytest.mark.serial  # with a build running beside it, the request in flight is sometimes never answered
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_serve_then_a_signal_drains_and_exits_0(model_base, tmp_path, signum):
    parameters = tmp_path / "batching.txt"
    parameters.write_text("max_batch_size { value: 65536 }\nbatch_timeout_micros { value: 1000 }\n")
    server = ServerProcess(
        [str(model_base), "--model_name", MODEL, "--enable_batching", "--batching_parameters_file", str(parameters)]
    )
    client = Client(server)
    try:
        x = np.array([[1.0, 2.0, 3.0]], np.float32)
        assert client.post(f"/v1/models/{MODEL}:predict", {"instances": x.tolist()})[1] == {
            "predictions": (2 * x + 1).tolist()
        }
        np.testing.assert_array_equal(outputs_of(client.predict({"x": x}))["y"], 2 * x + 1)
        rows = np.random.default_rng(0).random([16, 3]).astype(np.float32)
        large = {"inputs": np.tile(rows, (4096, 1)).tolist()}  # 2.4 MB, decoded off the event loop
        assert client.post(f"/v1/models/{MODEL}:predict", large) == (
            200,
            {"outputs": (2 * np.tile(rows, (4096, 1)) + 1).tolist()},
        )
        in_flight = start_predict(server.rest_port, len(SLOW_BODY))  # its handler runs
        in_flight.sendall(SLOW_BODY)  # the model call takes 1 s: the signal comes during it
        time.sleep(0.25)  # the body is read (a server that drains reads no more bytes)
        server.process.send_signal(signum)
        assert read_response(in_flight) == (200, {"predictions": [4.0]})
        assert server.process.wait(timeout=TIMEOUT) == 0
        assert server.stop(timeout=TIMEOUT) == 0
        assert server.process.stderr.closed
        with pytest.raises(requests.ConnectionError):
            requests.get(f"{server.rest_url}/v1/models/{MODEL}", timeout=TIMEOUT)
    finally:
        client.close()
        if server.process.poll() is None:
            server.process.kill()
            server.process.wait(timeout=TIMEOUT)


def test_bad_flags_exit_2(capsys):
    assert cli.main(["serve"]) == 2
    assert "MODEL_BASE_PATH" in capsys.readouterr().err
    assert cli.main(["serve", "x", "--model_config_file", "y"]) == 2
    assert cli.main(["serve", "x", "--model_base_path", "z"]) == 2
    assert "differ" in capsys.readouterr().err


def parsed(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_serve_parser(parser.add_subparsers())
    return parser.parse_args(["serve", *argv])


def test_the_host_is_loopback_unless_given(tmp_path, capsys):
    assert serve_options(parsed([str(tmp_path)])).host == serving.DEFAULT_HOST == "127.0.0.1"
    assert serve_options(parsed([str(tmp_path), "--host", "0.0.0.0"])).host == "0.0.0.0"
    with pytest.raises(SystemExit):
        cli.main(["serve", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert f"(default {serving.DEFAULT_HOST}: this machine only). The server has no authentication" in help_text


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
    config.write_text("model_config_list { config { name: 'a' base_path: '/a' model_version_policy { all {} } } }")
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
    with pytest.raises(ValueError, match=r"batching\.txt:1"):
        serving.read_batching_parameters_file(path)


def test_op_libraries_load_before_models(tmp_path):
    load_op_libraries(serving.ServerOptions(models=[], op_libraries=[library_path()]))
    with pytest.raises(OpLibraryError, match="was not found"):
        load_op_libraries(serving.ServerOptions(models=[], op_libraries=[tmp_path / "missing.so"]))


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_while_the_models_load_stops_with_status_0(model_base, monkeypatch, signum):
    def signalled_load(repository) -> None:
        signal.raise_signal(signum)  # on this, the main thread
        time.sleep(TIMEOUT)  # not reached: the handler raises first

    monkeypatch.setattr(serving.ModelRepository, "load_initial", signalled_load)
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    started = time.monotonic()
    assert serving.serve(options(model_base)) == 0
    assert time.monotonic() - started < TIMEOUT
    assert {sig: signal.getsignal(sig) for sig in handlers} == handlers
