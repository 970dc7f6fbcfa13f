"""`python -m tfkit serve` refusing what it must not run, each refusal
followed by a good request answered exactly: long client strings."""

from __future__ import annotations

import grpc
import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2

from tests.serving.conftest import MODEL, TIMEOUT, Client, outputs_of
from tfkit.serving.launch import ServerProcess

LIMIT = 64 * 1024  # --max_request_bytes
DRAIN = 120  # --drain_seconds: far longer than any test waits
PREDICT = f"/v1/models/{MODEL}:predict"
X = [[1.0, 2.0, 3.0]]
Y = [[3.0, 5.0, 7.0]]


def serve(model_base) -> ServerProcess:
    return ServerProcess(
        [
            str(model_base),
            "--model_name",
            MODEL,
            "--max_request_bytes",
            str(LIMIT),
            "--drain_seconds",
            str(DRAIN),
            "--file_system_poll_wait_seconds",
            "0",
        ]
    )


@pytest.fixture(scope="module")
def served(model_base):
    server = serve(model_base)
    try:
        yield server
    finally:
        server.stop(timeout=TIMEOUT)


@pytest.fixture(scope="module")
def client(served):
    running = Client(served)
    yield running
    running.close()


def assert_still_serving(client: Client) -> None:
    assert client.post(PREDICT, {"instances": X}) == (200, {"predictions": Y})
    np.testing.assert_array_equal(outputs_of(client.predict({"x": np.array(X, np.float32)}))["y"], Y)


LONG = "n" * 20_000


def _predict_named(client: Client, model: str = MODEL, signature: str = "", inputs: dict | None = None):
    request = predict_pb2.PredictRequest()
    request.model_spec.name = model
    request.model_spec.signature_name = signature
    for key, value in (inputs or {"x": np.array(X, np.float32)}).items():
        request.inputs[key].CopyFrom(tf.make_tensor_proto(value))
    return client.predictions.Predict(request, timeout=TIMEOUT)


LONG_NAMES = [
    # (call, status code, part of the details)
    (lambda c: _predict_named(c, model=LONG), grpc.StatusCode.NOT_FOUND, "is not served"),
    (lambda c: _predict_named(c, signature=LONG), grpc.StatusCode.NOT_FOUND, "has no signature"),
    (
        lambda c: _predict_named(c, inputs={"x": np.array(X, np.float32), LONG: np.zeros(1, np.float32)}),
        grpc.StatusCode.INVALID_ARGUMENT,
        "unknown [",
    ),
    (
        lambda c: _predict_named(c, inputs={f"{LONG[:1000]}{i}": np.zeros(1, np.float32) for i in range(50)}),
        grpc.StatusCode.INVALID_ARGUMENT,
        "(40 more)",
    ),
]


@pytest.mark.parametrize(("call", "code", "details"), LONG_NAMES, ids=["model", "signature", "input", "inputs"])
def test_long_client_strings_are_cut_in_grpc_errors(client, call, code, details):
    with pytest.raises(grpc.RpcError) as caught:
        call(client)
    assert caught.value.code() == code
    assert details in caught.value.details()
    assert " characters)" in caught.value.details()
    assert len(caught.value.details()) < 2100
    assert_still_serving(client)


def test_long_client_strings_are_cut_in_rest_errors(client):
    status, answer = client.post(PREDICT, {"signature_name": LONG, "instances": X})
    assert status == 404
    assert f"has no signature '{LONG[:64]}... (20000 characters)'" in answer["error"]
    assert len(answer["error"]) < 2100
    assert_still_serving(client)
