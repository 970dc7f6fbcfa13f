"""The REST API over loopback: status, metadata, predict, and every kind of
bad request answered with {"error": ...} while the server keeps serving."""

from __future__ import annotations

import base64
import socket
import sys
import threading

import numpy as np
import pytest
import tensorflow as tf

from tests.serving.conftest import MAX_REQUEST_BYTES, MODEL, TIMEOUT
from tests.serving.models import SIGNATURES
from tfkit.serving import codec
from tfkit.serving.errors import ServingError
from tfkit.serving.servable import Signature, TensorInfo

X = [[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]
Y = (2 * np.array(X, np.float32) + 1).tolist()


def test_status(client):
    status, body = client.get(f"/v1/models/{MODEL}")
    assert status == 200
    assert body == {
        "model_version_status": [
            {"version": "1", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}
        ]
    }
    assert client.get(f"/v1/models/{MODEL}/versions/1")[1] == body


def test_metadata(client):
    status, body = client.get(f"/v1/models/{MODEL}/metadata")
    assert status == 200
    assert body["model_spec"] == {"name": MODEL, "version": "1", "signature_name": ""}
    signatures = body["metadata"]["signature_def"]["signature_def"]
    assert set(signatures) == SIGNATURES
    x = signatures["serving_default"]["inputs"]["x"]
    assert x["dtype"] == "DT_FLOAT"
    assert x["tensor_shape"] == {"dim": [{"size": "-1", "name": ""}, {"size": "3", "name": ""}], "unknown_rank": False}


def test_predict_row_and_columnar(client):
    assert client.post(f"/v1/models/{MODEL}:predict", {"instances": X}) == (200, {"predictions": Y})
    assert client.post(f"/v1/models/{MODEL}/versions/1:predict", {"inputs": X}) == (200, {"outputs": Y})
    assert client.post(f"/v1/models/{MODEL}:predict", {"instances": [{"x": row} for row in X]})[1] == {"predictions": Y}


def test_predict_named_inputs_and_outputs_through_a_tfkit_op(client):
    a = [[1.0, 2.0, 3.0, 4.0], [0.0, 0.0, 1.0, 1.0]]
    status, rows = client.post(
        f"/v1/models/{MODEL}:predict",
        {"signature_name": "multi", "instances": [{"a": a[0], "b": 1}, {"a": a[1], "b": 2}]},
    )
    assert status == 200
    assert [row["sum"] for row in rows["predictions"]] == [11.0, 4.0]
    normed = np.array([row["normed"] for row in rows["predictions"]])
    a64 = np.array(a)
    expected = (a64 - a64.mean(1, keepdims=True)) / np.sqrt(a64.var(1, keepdims=True) + 1e-5)
    np.testing.assert_allclose(normed, expected, rtol=1e-5, atol=1e-5)
    status, columns = client.post(
        f"/v1/models/{MODEL}:predict", {"signature_name": "multi", "inputs": {"a": a, "b": [1, 2]}}
    )
    assert status == 200
    assert columns["outputs"]["sum"] == [11.0, 4.0]


def test_predict_strings_and_b64(client):
    binary = bytes([0xFF, 0x00, 0x61])
    status, body = client.post(
        f"/v1/models/{MODEL}:predict",
        {"signature_name": "text", "instances": ["abc", {"b64": base64.b64encode(binary).decode()}]},
    )
    assert status == 200
    assert [row["length"] for row in body["predictions"]] == [3, 3]
    # outputs named *_bytes come back as {"b64": ...}
    assert base64.b64decode(body["predictions"][0]["upper_bytes"]["b64"]) == b"ABC"
    assert base64.b64decode(body["predictions"][1]["upper_bytes"]["b64"]) == bytes([0xFF, 0x00, 0x41])


PREDICT = f"/v1/models/{MODEL}:predict"
BAD_REQUESTS = [
    # (path, json body or raw bytes, status, part of the error)
    (PREDICT, b"{not json", 400, "not valid JSON"),
    (PREDICT, b"[1, 2]", 400, "JSON object"),
    (PREDICT, b"[" * 10_000 + b"]" * 10_000, 400, "nested too deeply"),
    (PREDICT, {"signature_name": "multi", "inputs": {"a": [[1.0] * 4], "b": [2**32 + 5]}}, 400, "outside [-2147483648"),
    (PREDICT, {"signature_name": "multi", "inputs": {"a": [[1.0] * 4], "b": [-(2**31) - 1]}}, 400, "got -2147483649"),
    (PREDICT, {"signature_name": "serving_default"}, 400, 'exactly one of "instances"'),
    (PREDICT, {"instances": X, "inputs": X}, 400, 'exactly one of "instances"'),
    (PREDICT, {"instances": []}, 400, "non-empty list"),
    (PREDICT, {"instances": [[1.0, 2.0]]}, 400, "input 'x' expects shape float32 [?, 3], got [1, 2]"),
    (PREDICT, {"instances": [[1.0, 2.0, 3.0], [1.0]]}, 400, "not a rectangular array"),
    (PREDICT, {"instances": [["a", "b", "c"]]}, 400, "expects float32 values, got strings"),
    (PREDICT, {"signature_name": "multi", "instances": [{"a": [1, 2, 3, 4]}]}, 400, "missing ['b']"),
    (PREDICT, {"signature_name": "multi", "inputs": {"a": [[1.0] * 4], "b": [1.5]}}, 400, "expects int32 values"),
    (PREDICT, {"signature_name": "multi", "instances": [[1, 2, 3, 4]]}, 400, "has 2 inputs"),
    (PREDICT, {"inputs": {"x": X, "z": X}}, 400, "unknown ['z']"),
    (PREDICT, {"signature_name": "text", "instances": [{"b64": "%%%"}]}, 400, "invalid base64"),
    (PREDICT, {"signature_name": "text", "instances": [7]}, 400, "expects strings"),
    (PREDICT, {"signature_name": "text", "instances": [["a"], ["b", "c"]]}, 400, "not a rectangular array"),
    (PREDICT, {"signature_name": "text", "inputs": ["a", ["b"]]}, 400, "not a rectangular array"),
    (PREDICT, {"signature_name": "checked", "instances": [-1.0]}, 400, "x must be >= 0"),
    (PREDICT, {"signature_name": "read", "inputs": "/no/such/file"}, 500, "the model call failed"),
    (PREDICT, {"signature_name": "nope", "instances": X}, 404, "no signature 'nope'"),
    ("/v1/models/other:predict", {"instances": X}, 404, "model 'other' is not served"),
    (f"/v1/models/{MODEL}/versions/7:predict", {"instances": X}, 404, "version 7 is not available"),
    (f"/v1/models/{MODEL}/labels/stable:predict", {"instances": X}, 404, "labels are not supported"),
    (f"/v1/models/{MODEL}:classify", {"examples": []}, 501, "use :predict"),
    (f"/v1/models/{MODEL}:predict/x", {"instances": X}, 404, "no such endpoint"),
    ("/v2/models", {"instances": X}, 404, "Not Found"),
]


@pytest.mark.parametrize(("path", "body", "status", "message"), BAD_REQUESTS)
def test_bad_requests_get_json_errors(client, path, body, status, message):
    got_status, got = client.post(path, data=body) if isinstance(body, bytes) else client.post(path, body)
    assert got_status == status
    assert message in got["error"]
    assert client.post(PREDICT, {"instances": X}) == (200, {"predictions": Y})


def test_status_errors(client):
    assert client.get("/v1/models/other")[0] == 404
    status, body = client.get(f"/v1/models/{MODEL}/versions/9")
    assert status == 404 and "has no version 9" in body["error"]
    status, body = client.get(f"/v1/models/{MODEL}:predict")
    assert status == 405 and "POST" in body["error"]


def test_oversized_request(client):
    rows = [[1.0, 2.0, 3.0]] * (MAX_REQUEST_BYTES // 10)
    status, body = client.post(PREDICT, {"instances": rows})
    assert status == 413
    assert f"limit of {MAX_REQUEST_BYTES} bytes" in body["error"]
    assert client.post(PREDICT, {"instances": X}) == (200, {"predictions": Y})


def _raw_request(port: int, payload: bytes) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as conn:
        conn.sendall(payload)


def test_client_disconnecting_mid_body_and_mid_call(client, server):
    port = server.server.rest_port
    head = f"POST {PREDICT} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    _raw_request(port, (head + "Content-Length: 1000\r\n\r\n").encode() + b'{"instances": [[1.0')
    slow = b'{"signature_name": "slow", "instances": [1.0]}'
    _raw_request(port, (head + f"Content-Length: {len(slow)}\r\n\r\n").encode() + slow)
    _raw_request(port, b"GARBAGE / NOT-HTTP\r\n\r\n")
    assert client.post(PREDICT, {"instances": X}) == (200, {"predictions": Y})


def test_concurrent_clients_each_get_their_own_rows(client):
    results = {}

    def call(i: int) -> None:
        results[i] = client.post(PREDICT, {"instances": [[float(i), 0.0, 0.0]]})

    threads = [threading.Thread(target=call, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=TIMEOUT)
    assert results == {i: (200, {"predictions": [[2.0 * i + 1, 1.0, 1.0]]}) for i in range(8)}


def test_strings_nested_deeper_than_python_recurses_are_a_bad_request():
    signature = Signature("text", {"s": TensorInfo("s", tf.string, (None,))}, {}, function=None)
    nested = ["a"]
    for _ in range(sys.getrecursionlimit()):
        nested = [nested]
    with pytest.raises(ServingError, match="nested too deeply") as caught:
        codec.json_inputs(signature, "inputs", nested, MAX_REQUEST_BYTES)
    assert caught.value.http_status == 400


def test_bfloat16_inputs_take_json_numbers():
    signature = Signature("half", {"h": TensorInfo("h", tf.bfloat16, (None,))}, {}, function=None)
    (inputs,) = codec.json_inputs(signature, "inputs", [1.5, 2], MAX_REQUEST_BYTES).values()
    assert inputs.dtype == tf.bfloat16.as_numpy_dtype
    assert inputs.astype(np.float32).tolist() == [1.5, 2.0]
