"""`python -m tfkit serve` refusing what it must not run, each refusal
followed by a good request answered exactly: long client strings,
TensorProtos TensorFlow would refuse or misread, inputs over the size limit
together, bodies that do not decode, JSON values or versions the input
cannot hold, requests over the concurrency limit, and clients slow to send."""

from __future__ import annotations

import gzip
import json
import os
import re
import signal
import socket
import threading
import time
import zlib

import grpc
import numpy as np
import pytest
import requests
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2

import tfkit_cli as cli
from tests.serving.conftest import (
    MODEL,
    TIMEOUT,
    Client,
    listening_addresses,
    outputs_of,
    read_response,
    rest_call,
    start_predict,
)
from tfkit.serving.launch import ServerProcess

LIMIT = 64 * 1024  # --max_request_bytes
SLOTS = 2  # --max_concurrent_requests
READ_TIMEOUT = 3.0  # --request_read_timeout_seconds
DRAIN = 120  # --drain_seconds: far longer than any test waits
PREDICT = f"/v1/models/{MODEL}:predict"
X = [[1.0, 2.0, 3.0]]
Y = [[3.0, 5.0, 7.0]]
BODY = json.dumps({"instances": X}).encode()
PREDICT_METHOD = "/tensorflow.serving.PredictionService/Predict"


def serve(model_base) -> ServerProcess:
    return ServerProcess(
        [
            str(model_base),
            "--model_name",
            MODEL,
            "--max_request_bytes",
            str(LIMIT),
            "--max_concurrent_requests",
            str(SLOTS),
            "--request_read_timeout_seconds",
            str(READ_TIMEOUT),
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


def _x_proto(shape: list[int], **fields) -> predict_pb2.PredictRequest:
    """A request whose input x is a float32 TensorProto of `shape` with `fields` set as given."""
    request = predict_pb2.PredictRequest()
    request.model_spec.name = MODEL
    x = request.inputs["x"]
    x.dtype = tf.float32.as_datatype_enum
    for size in shape:
        x.tensor_shape.dim.add(size=size)
    for name, value in fields.items():
        if name == "tensor_content":
            x.tensor_content = value
        else:
            getattr(x, name).extend(value)
    return request


MISREAD_PROTOS = [
    # (request, part of the error); TensorFlow reads the first three as zeros
    (_x_proto([2, 3], int_val=[1] * 6), "is float32 but has values in ['int_val']: float32 values go in float_val"),
    (_x_proto([2, 3], string_val=[b"1"] * 6), "has values in ['string_val']"),
    (_x_proto([2, 3], double_val=[1.0] * 6), "has values in ['double_val']"),
    (_x_proto([-1, 3], float_val=[1.0, 2.0, 3.0]), "has shape [-1, 3]: every dimension must be >= 0"),
    (_x_proto([1, 3], float_val=[1.0], tensor_content=np.ones(3, np.float32).tobytes()), "both tensor_content"),
    (_x_proto([2, 3], float_val=[1.0] * 4), "has 4 values for shape [2, 3] (6 elements): send 6, or 1"),
    (_x_proto([2, 3], float_val=[1.0] * 7), "has 7 values for shape [2, 3]"),
    (_x_proto([2, 3], tensor_content=b"\0" * 20), "has 20 bytes of tensor_content for 6 float32 elements (24 bytes)"),
    (_x_proto([1] * 255, float_val=[1.0]), "has 255 dimensions, more than TensorFlow's 254"),
]


@pytest.mark.parametrize(
    ("request_", "message"),
    MISREAD_PROTOS,
    ids=["int_val", "string_val", "double_val", "negative-dim", "both", "too-few", "too-many", "content-size", "rank"],
)
def test_a_tensor_proto_tensorflow_would_refuse_or_misread_is_invalid_argument(client, request_, message):
    with pytest.raises(grpc.RpcError) as caught:
        client.predictions.Predict(request_, timeout=TIMEOUT)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "tensor parsing error: input 'x'" in caught.value.details()
    assert message in caught.value.details()
    assert_still_serving(client)


def test_a_tensor_proto_with_one_value_or_all_values_is_answered(client):
    filled = outputs_of(client.predictions.Predict(_x_proto([2, 3], float_val=[1.0]), timeout=TIMEOUT))["y"]
    np.testing.assert_array_equal(filled, np.full([2, 3], 3.0, np.float32))
    whole = outputs_of(client.predictions.Predict(_x_proto([1, 3], float_val=X[0]), timeout=TIMEOUT))["y"]
    np.testing.assert_array_equal(whole, Y)


@pytest.mark.parametrize(
    "message",
    [b"\xff\xff\xff", b"\x0a\x03\x0a\x01\xff"],  # a corrupt wire format; a model name that is not UTF-8
    ids=["corrupt", "not-utf8"],
)
def test_an_unparsable_predict_message_is_invalid_argument(client, message):
    send_bytes = client.channel.unary_unary(PREDICT_METHOD)
    with pytest.raises(grpc.RpcError) as caught:
        send_bytes(message, timeout=TIMEOUT)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert f"not a valid message for {PREDICT_METHOD}" in caught.value.details()
    assert_still_serving(client)


def _multi_filled(rows: int) -> predict_pb2.PredictRequest:
    """A small message whose two inputs fill [rows, 4] float32 and [rows] int32."""
    request = predict_pb2.PredictRequest()
    request.model_spec.name = MODEL
    request.model_spec.signature_name = "multi"
    for key, dtype, shape, field, value in (
        ("a", tf.float32, [rows, 4], "float_val", 1.0),
        ("b", tf.int32, [rows], "int_val", 2),
    ):
        proto = request.inputs[key]
        proto.dtype = dtype.as_datatype_enum
        for size in shape:
            proto.tensor_shape.dim.add(size=size)
        getattr(proto, field).append(value)
    return request


def test_inputs_over_the_limit_together_are_refused_over_grpc(client):
    rows = LIMIT // 20 + 100  # a alone takes 16 bytes a row and b 4: each is under the limit, both are over it
    assert 16 * rows < LIMIT < 20 * rows
    with pytest.raises(grpc.RpcError) as caught:
        client.predictions.Predict(_multi_filled(rows), timeout=TIMEOUT)
    assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert f"more than the server's limit of {LIMIT}" in caught.value.details()
    under = outputs_of(client.predictions.Predict(_multi_filled(LIMIT // 20), timeout=TIMEOUT))
    np.testing.assert_array_equal(under["sum"], np.full([LIMIT // 20], 6.0, np.float32))
    assert_still_serving(client)


def post_encoded(client: Client, body: bytes, encoding: str) -> tuple[int, dict]:
    headers = {"Content-Encoding": encoding, "Content-Type": "application/json"}
    response = requests.post(client.url + PREDICT, data=body, headers=headers, timeout=TIMEOUT)
    return response.status_code, response.json()


UNDECODABLE = [
    # (Content-Encoding, body, part of the error)
    ("gzip", b"not gzip at all", "not valid gzip data"),
    ("deflate", b"\xff" * 16, "not valid deflate data"),
    ("gzip", gzip.compress(BODY)[:-4], "not valid gzip data"),
    ("gzip", gzip.compress(BODY) + b"trailing junk", "not valid gzip data"),
    ("deflate", zlib.compress(BODY)[:-2], "not valid deflate data"),
    ("br", BODY, "Content-Encoding 'br' is not supported"),
]


@pytest.mark.parametrize(
    ("encoding", "body", "message"),
    UNDECODABLE,
    ids=["gzip-garbage", "deflate-garbage", "gzip-truncated", "gzip-then-junk", "deflate-truncated", "brotli"],
)
def test_a_body_that_does_not_decode_is_a_400(served, client, encoding, body, message):
    status, answer = post_encoded(client, body, encoding)
    assert status == 400
    assert message in answer["error"]
    assert_still_serving(client)
    assert not [line for line in served.log if "Traceback" in line or "Unhandled exception" in line]


def _raw_deflate(data: bytes) -> bytes:
    compressor = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    return compressor.compress(data) + compressor.flush()


@pytest.mark.parametrize(
    ("encoding", "body"),
    [
        ("gzip", gzip.compress(BODY)),
        ("gzip", gzip.compress(BODY[:5]) + gzip.compress(BODY[5:])),  # two gzip members
        ("deflate", zlib.compress(BODY)),
        ("deflate", _raw_deflate(BODY)),
        ("gzip, deflate", zlib.compress(gzip.compress(BODY))),
    ],
    ids=["gzip", "gzip-members", "deflate", "raw-deflate", "gzip-then-deflate"],
)
def test_a_compressed_body_is_answered(client, encoding, body):
    assert post_encoded(client, body, encoding) == (200, {"predictions": Y})


def test_a_body_that_decompresses_past_the_limit_is_a_413(client):
    bomb = gzip.compress(b" " * (16 * LIMIT) + BODY)
    assert len(bomb) < LIMIT // 16
    status, answer = post_encoded(client, bomb, "gzip")
    assert status == 413
    assert f"more than the server's limit of {LIMIT}" in answer["error"]
    assert_still_serving(client)


def test_inputs_over_the_limit_together_are_refused_over_rest(client):
    rows = LIMIT // 16  # 12 bytes of JSON a row decode to 20
    body = json.dumps(
        {"signature_name": "multi", "inputs": {"a": [[0, 0, 0, 0]] * rows, "b": [0] * rows}}, separators=(",", ":")
    )
    assert len(body) < LIMIT < 20 * rows
    status, answer = client.post(PREDICT, data=body.encode())
    assert status == 413
    assert f"more than the server's limit of {LIMIT}" in answer["error"]
    assert_still_serving(client)


BAD_VALUES = [
    # (body, part of the error)
    (
        {"signature_name": "multi", "inputs": {"a": [[1.0] * 4], "b": [True]}},
        "input 'b' expects int32 values, got boolean",
    ),
    ({"signature_name": "multi", "inputs": {"a": [[1.0] * 4] * 2, "b": [1, False]}}, "got booleans among its numbers"),
    (
        {"instances": [[1e308, 0.0, 0.0]]},
        "expects float32 values, got 1e+308 (outside [-3.4028235e+38, 3.4028235e+38])",
    ),
    ({"instances": [[0.0, -1e39, 0.0]]}, "got -1e+39"),
    ({"instances": [[0.0, 2.0, True]]}, "got booleans among its numbers"),
]


@pytest.mark.parametrize(
    ("body", "message"), BAD_VALUES, ids=["bool-for-int", "bools-among-ints", "1e308", "-1e39", "bool-among-floats"]
)
def test_json_values_the_input_cannot_hold_are_a_400(client, body, message):
    status, answer = client.post(PREDICT, body)
    assert status == 400
    assert message in answer["error"]
    assert_still_serving(client)


@pytest.mark.parametrize(
    "path",
    [
        f"/v1/models/{MODEL}/versions/\u0661:predict",  # ARABIC-INDIC DIGIT ONE
        f"/v1/models/{MODEL}/versions/\uff11",  # FULLWIDTH DIGIT ONE
        f"/v1/models/{MODEL}/versions/1\u0660/metadata",
        f"/v1/models/{MODEL}/versions/99999999999999999999:predict",
    ],
    ids=["arabic-indic", "fullwidth", "mixed", "past-int64"],
)
def test_a_version_that_is_not_an_ascii_int64_is_a_400(client, path):
    method = requests.post if path.endswith(":predict") else requests.get
    response = method(client.url + path, json={"instances": X}, timeout=TIMEOUT)
    assert response.status_code == 400
    assert "failed to convert version" in response.json()["error"]
    assert client.post(f"/v1/models/{MODEL}/versions/1:predict", {"instances": X}) == (200, {"predictions": Y})
    assert_still_serving(client)


def test_requests_past_max_concurrent_requests_are_refused_on_both_apis(served, client):
    held = [start_predict(served.rest_port, len(BODY)) for _ in range(SLOTS)]  # each holds a slot, body unsent
    try:
        status, answer = client.post(PREDICT, {"instances": X})
        assert status == 503
        assert f"limit of {SLOTS} requests at once" in answer["error"]
        with pytest.raises(grpc.RpcError) as caught:
            client.predict({"x": np.array(X, np.float32)})
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    finally:
        for connection in held:
            connection.sendall(BODY)
    assert [read_response(connection) for connection in held] == [(200, {"predictions": Y})] * SLOTS
    assert_still_serving(client)


def test_a_body_that_does_not_arrive_within_the_read_timeout_is_a_408(served, client):
    started = time.monotonic()
    held = start_predict(served.rest_port, len(BODY))
    held.sendall(BODY[:5])
    assert_still_serving(client)  # while the slow body is held
    status, answer = read_response(held)
    waited = time.monotonic() - started
    assert status == 408
    assert f"read timeout of {READ_TIMEOUT:g} s" in answer["error"]
    assert READ_TIMEOUT - 0.5 < waited < READ_TIMEOUT + TIMEOUT / 2
    assert_still_serving(client)


def test_a_request_head_that_does_not_arrive_within_the_read_timeout_is_dropped(served, client):
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", served.rest_port), timeout=TIMEOUT) as held:
        held.sendall(f"POST {PREDICT} HTTP/1.1\r\nHost: localhost\r\n".encode())  # the head never ends
        assert_still_serving(client)
        assert held.recv(1024) == b""  # closed by the server
    assert READ_TIMEOUT - 0.5 < time.monotonic() - started < READ_TIMEOUT + TIMEOUT / 2
    assert_still_serving(client)


def _hold_grpc_call(client: Client, release: threading.Event) -> grpc.Future:
    """A Predict call whose message the client never sends (until `release`)."""

    def no_message():
        release.wait(TIMEOUT)
        return
        yield

    stream = client.channel.stream_unary(
        PREDICT_METHOD,
        request_serializer=predict_pb2.PredictRequest.SerializeToString,
        response_deserializer=predict_pb2.PredictResponse.FromString,
    )
    return stream.future(no_message(), timeout=DRAIN)


def test_a_refusal_is_one_line_of_the_servers_log(served):
    status, reason, peer = rest_call(served.rest_port, "GET", "/v1/models/absent")
    assert (status, reason) == (404, f"model 'absent' is not served; this server serves ['{MODEL}']")
    line = re.compile(
        r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} WARNING tfkit serve: "
        + re.escape(f"refused REST 404 GET /v1/models/absent from {peer}: {reason}\n")
    )
    deadline = time.monotonic() + TIMEOUT
    while not any(line.fullmatch(logged) for logged in served.log) and time.monotonic() < deadline:
        time.sleep(0.05)  # the server writes the line before it answers; the log reader thread may lag
    assert [logged for logged in served.log if line.fullmatch(logged)] == [served.log[-1]]


@pytest.mark.skipif(not os.path.exists("/proc/net/tcp"), reason="reads the listening sockets from Linux's /proc")
def test_tfkit_serve_listens_on_loopback_by_default(served):
    assert listening_addresses(served.rest_port) == {"127.0.0.1"}
    assert listening_addresses(served.grpc_port) == {"127.0.0.1"}


def test_clients_holding_a_request_open_do_not_hold_the_shutdown_past_the_read_timeout(model_base):
    server = serve(model_base)
    client = Client(server)
    release = threading.Event()
    try:
        rest_held = start_predict(server.rest_port, len(BODY))
        grpc_held = _hold_grpc_call(client, release)
        assert_still_serving(client)
        signalled = time.monotonic()
        server.process.send_signal(signal.SIGTERM)
        assert server.process.wait(timeout=READ_TIMEOUT + TIMEOUT) == 0
        assert time.monotonic() - signalled < READ_TIMEOUT + TIMEOUT / 2  # --drain_seconds is 120
        assert read_response(rest_held)[0] == 408
        with pytest.raises(grpc.RpcError):
            grpc_held.result(timeout=TIMEOUT)
    finally:
        release.set()
        client.close()
        server.stop(timeout=TIMEOUT)


@pytest.mark.parametrize(
    "flags", [["--max_concurrent_requests", "0"], ["--request_read_timeout_seconds", "0"]], ids=["slots", "timeout"]
)
def test_limits_must_be_positive(tmp_path, capsys, flags):
    assert cli.main(["serve", str(tmp_path), *flags]) == 2
    assert "must be" in capsys.readouterr().err
