"""Version polling: a new version replaces the old without failing requests
in flight; a version that fails to load or fails the SavedModel check is
reported and the old one keeps serving."""

from __future__ import annotations

import dataclasses
import shutil
import socket
import threading
import time

import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import get_model_status_pb2, predict_pb2

from tests.serving.conftest import TIMEOUT, Client, options, outputs_of
from tests.serving.models import export_callback_version, export_version
from tfkit import serving
from tfkit.serving.servable import load_servable

X = np.array([[1.0, 2.0, 3.0]], np.float32)
AVAILABLE = get_model_status_pb2.ModelVersionStatus.AVAILABLE
END = get_model_status_pb2.ModelVersionStatus.END


def wait_for(condition, what: str, timeout: float = TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def states(client: Client) -> dict[int, tuple[int, str]]:
    return {s.version: (s.state, s.status.error_message) for s in client.status().model_version_status}


@pytest.fixture(scope="module")
def callback_model(tmp_path_factory):
    staging = tmp_path_factory.mktemp("callback")
    return export_callback_version(staging, 1)


def signalling_loader(started: threading.Event):
    """Loads versions whose "slow" signature sets `started` when it runs."""

    def load(name, version, path):
        servable = load_servable(name, version, path)
        slow = servable.signatures["slow"]

        def function(**inputs):
            started.set()
            return slow.function(**inputs)

        signatures = {**servable.signatures, "slow": dataclasses.replace(slow, function=function)}
        return dataclasses.replace(servable, signatures=signatures)

    return load


def slow_request() -> predict_pb2.PredictRequest:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "m"
    request.model_spec.signature_name = "slow"
    request.inputs["x"].CopyFrom(tf.make_tensor_proto(np.array([4.0], np.float32)))
    return request


def test_versions_switch_and_failures_keep_the_old_one(model_base, callback_model, tmp_path):
    base = tmp_path / "m"
    shutil.copytree(model_base / "1", base / "1")
    staged_v2 = export_version(tmp_path / "staging", 2, offset=5.0)
    started = threading.Event()
    running_options = options(base, poll_seconds=0.1)
    repository = serving.ModelRepository(running_options.models, 0.1, loader=signalling_loader(started))
    with serving.ServerThread(running_options, repository) as running:
        client = Client(running)
        try:
            slow_result = {}
            slow = threading.Thread(
                target=lambda: slow_result.update(r=client.predict({"x": np.ones([1], np.float32)}, signature="slow"))
            )
            slow.start()
            assert started.wait(TIMEOUT)  # the slow call now runs on version 1
            staged_v2.rename(base / "2")  # a version appears whole, as a rename
            wait_for(lambda: states(client).get(2, (None,))[0] == AVAILABLE, "version 2")
            slow.join(timeout=TIMEOUT)
            assert slow_result["r"].model_spec.version.value == 1
            assert states(client)[1][0] == END
            np.testing.assert_array_equal(outputs_of(client.predict({"x": X}))["y"], 2 * X + 5)

            (base / "3").mkdir()
            (base / "3" / "saved_model.pb").write_bytes(b"not a SavedModel")
            wait_for(lambda: 3 in states(client), "version 3 to fail")
            assert states(client)[3][0] == END and "failed to load" in states(client)[3][1]

            shutil.copytree(callback_model, base / "4")
            wait_for(lambda: 4 in states(client), "version 4 to be refused")
            assert states(client)[4][0] == END and "python callback ops" in states(client)[4][1]

            assert states(client)[2][0] == AVAILABLE
            response = client.predict({"x": X})
            assert response.model_spec.version.value == 2
            np.testing.assert_array_equal(outputs_of(response)["y"], 2 * X + 5)
        finally:
            client.close()


def test_callback_model_refused_at_start(callback_model, tmp_path):
    shutil.copytree(callback_model, tmp_path / "c" / "1")
    repository = serving.ModelRepository([serving.ModelConfig("c", tmp_path / "c")])
    with pytest.raises(serving.ModelLoadError, match="python callback ops"):
        repository.load_initial()


def test_missing_base_path_and_empty_base_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        serving.ModelRepository([serving.ModelConfig("m", tmp_path / "nowhere")]).load_initial()
    (tmp_path / "empty").mkdir()
    repository = serving.ModelRepository([serving.ModelConfig("m", tmp_path / "empty")])
    repository.load_initial()  # waits for a version, serving nothing yet
    with pytest.raises(serving.ServingError, match="no version loaded yet"):
        repository.servable("m")


def test_several_models(model_base):
    configs = [serving.ModelConfig("first", model_base), serving.ModelConfig("second", model_base)]
    running_options = options(model_base)
    running_options.models = configs
    with serving.ServerThread(running_options) as running:
        client = Client(running)
        try:
            for name in ("first", "second"):
                assert client.post(f"/v1/models/{name}:predict", {"instances": X.tolist()}) == (
                    200,
                    {"predictions": (2 * X + 1).tolist()},
                )
            status, body = client.get("/v1/models/m")
            assert status == 404 and "serves ['first', 'second']" in body["error"]
        finally:
            client.close()


@pytest.mark.parametrize("which", ["rest_api_port", "port"])
def test_a_port_in_use_is_an_error_and_nothing_is_left_running(model_base, which):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        before = threading.active_count()
        with pytest.raises(OSError, match=r"could not listen on 127\.0\.0\.1:"):
            serving.ServerThread(options(model_base, **{which: taken.getsockname()[1]}))
        wait_for(lambda: threading.active_count() <= before, "the server's threads to end")


def test_a_stopped_server_leaves_no_thread_behind(model_base, tmp_path):
    before = set(threading.enumerate())
    parameters = serving.BatchingParameters(num_batch_threads=2)
    with serving.ServerThread(options(model_base, batching=parameters)) as running:
        client = Client(running)
        try:
            for _ in range(3):
                client.predict({"x": X})
                assert client.post("/v1/models/m:predict", {"instances": X.tolist()})[0] == 200
        finally:
            client.close()
    wait_for(lambda: not set(threading.enumerate()) - before, "the server's threads to end")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        serving.ServerThread(options(tmp_path / "nowhere", batching=parameters))
    assert not {thread.name for thread in set(threading.enumerate()) - before}


def test_stopping_finishes_a_grpc_call_in_flight(model_base):
    started = threading.Event()
    running_options = options(model_base)
    repository = serving.ModelRepository(running_options.models, 0, loader=signalling_loader(started))
    running = serving.ServerThread(running_options, repository)
    client = Client(running)
    stopped = False
    try:
        in_flight = client.predictions.Predict.future(slow_request(), timeout=TIMEOUT)
        assert started.wait(TIMEOUT)  # the model call has begun
        running.stop()
        stopped = True
        assert outputs_of(in_flight.result(timeout=TIMEOUT))["same"].tolist() == [4.0]
    finally:
        client.close()
        if not stopped:
            running.stop()
