"""Each request the server refuses or fails is one line of its log (REST and
gRPC alike: status, what was asked, the client's address, the reason it was
given); answered requests log nothing. Also: the server listens on loopback
by default."""

from __future__ import annotations

import logging
import re
import socket
import urllib.parse
from pathlib import Path

import grpc
import numpy as np
import pytest
from tensorflow_serving.apis import classification_pb2

from tests.serving.conftest import (
    MAX_REQUEST_BYTES,
    MODEL,
    TIMEOUT,
    Client,
    listening_addresses,
    options,
    read_response,
    rest_call,
    start_predict,
)
from tfkit import serving
from tfkit.serving import protos

PREDICT = f"/v1/models/{MODEL}:predict"
X = [[1.0, 2.0, 3.0]]
GRPC_PEER = r"127\.0\.0\.1:\d+"


@pytest.fixture
def refusals(caplog):
    """The tfkit.serving log records of the test, the INFO ones included."""
    caplog.set_level(logging.INFO, logger="tfkit.serving")
    return lambda: [record for record in caplog.records if record.name == "tfkit.serving"]


def only_line(records) -> str:
    """The message of the one record, a WARNING without a traceback."""
    assert [(record.levelname, record.exc_info) for record in records] == [("WARNING", None)]
    return records[0].getMessage()


def test_answered_requests_log_nothing(server, client, refusals):
    assert client.post(PREDICT, {"instances": X})[0] == 200
    assert client.get(f"/v1/models/{MODEL}")[0] == 200
    client.predict({"x": np.array(X, np.float32)})
    client.status()
    assert refusals() == []


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "reason"),
    [
        (
            "POST",
            PREDICT,
            b"{bad",
            400,
            "the request body is not valid JSON: Expecting property name enclosed in double quotes: "
            "line 1 column 2 (char 1)",
        ),
        ("GET", "/v1/models/absent", None, 404, f"model 'absent' is not served; this server serves ['{MODEL}']"),
        (
            "POST",
            PREDICT,
            b" " * (MAX_REQUEST_BYTES + 1),
            413,
            f"the request body is larger than the server's limit of {MAX_REQUEST_BYTES} bytes",
        ),
        ("GET", "/elsewhere", None, 404, "Not Found"),
    ],
    ids=["bad-json", "unknown-model", "too-large", "no-route"],
)
def test_a_rest_refusal_is_one_line(server, refusals, method, path, body, status, reason):
    answer = rest_call(server.server.rest_port, method, path, body)
    assert answer[:2] == (status, reason)
    assert only_line(refusals()) == f"refused REST {status} {method} {path} from {answer[2]}: {reason}"


def test_a_refusal_line_escapes_and_cuts_what_the_client_sent(server, refusals):
    name = "a\nrefused REST 200 forged" + "x" * 100
    status, _, peer = rest_call(server.server.rest_port, "GET", f"/v1/models/{urllib.parse.quote(name)}")
    assert status == 404
    assert only_line(refusals()) == (
        r"refused REST 404 GET /v1/models/a\nrefused REST 200 forged"
        + "x" * 28
        + f"... (136 characters) from {peer}: Not Found"
    )


def test_a_request_aiohttp_cannot_parse_is_one_line_without_a_traceback(server, refusals, caplog):
    with socket.create_connection(("127.0.0.1", server.server.rest_port), timeout=TIMEOUT) as connection:
        connection.sendall(b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: abc\r\n\r\n")
        assert connection.recv(1024).startswith(b"HTTP/1.0 400 Bad Request")
    assert only_line(refusals()).startswith(
        r"refused REST 400 (unparsable request) from 127.0.0.1: Invalid character in Content-Length:\n"
    )
    assert [record for record in caplog.records if record.name.startswith("aiohttp")] == []


def grpc_refusal(call) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as caught:
        call()
    return caught.value


@pytest.mark.parametrize(
    ("call", "code", "asked"),
    [
        (lambda client: client.status(name=""), grpc.StatusCode.INVALID_ARGUMENT, "GetModelStatus model ''"),
        (lambda client: client.metadata(name="absent"), grpc.StatusCode.NOT_FOUND, "GetModelMetadata model 'absent'"),
        (
            lambda client: client.channel.unary_unary("/tensorflow.serving.PredictionService/Predict")(
                b"\xff\xff\xff", timeout=TIMEOUT
            ),
            grpc.StatusCode.INVALID_ARGUMENT,
            "Predict",
        ),
        (
            lambda client: client.predictions.Classify(
                classification_pb2.ClassificationRequest(model_spec={"name": MODEL}), timeout=TIMEOUT
            ),
            grpc.StatusCode.UNIMPLEMENTED,
            f"Classify model '{MODEL}'",
        ),
        (
            lambda client: client.channel.unary_unary("/tensorflow.serving.PredictionService/Absent")(
                b"", timeout=TIMEOUT
            ),
            grpc.StatusCode.UNIMPLEMENTED,
            "/tensorflow.serving.PredictionService/Absent",
        ),
    ],
    ids=["invalid-argument", "not-found", "unparsable", "classify", "no-such-method"],
)
def test_a_grpc_refusal_is_one_line(client, refusals, call, code, asked):
    error = grpc_refusal(lambda: call(client))
    assert error.code() == code
    expected = f"refused gRPC {code.name} {re.escape(asked)} from {GRPC_PEER}: {re.escape(error.details())}"
    assert re.fullmatch(expected, only_line(refusals()))


def test_an_internal_error_is_one_error_line_with_its_traceback(server, client, refusals, monkeypatch):
    def broken(*args):
        raise RuntimeError("broken")

    monkeypatch.setattr(protos, "status_response", broken)
    status, reason, peer = rest_call(server.server.rest_port, "GET", f"/v1/models/{MODEL}")
    assert (status, reason) == (500, "internal error: broken")
    error = grpc_refusal(client.status)
    assert (error.code(), error.details()) == (grpc.StatusCode.INTERNAL, "internal error: broken")
    rest, grpc_ = refusals()
    assert [(record.levelname, repr(record.exc_info[1])) for record in (rest, grpc_)] == [
        ("ERROR", "RuntimeError('broken')")
    ] * 2
    assert rest.getMessage() == f"refused REST 500 GET /v1/models/{MODEL} from {peer}: internal error: broken"
    expected = f"refused gRPC INTERNAL GetModelStatus model '{MODEL}' from {GRPC_PEER}: internal error: broken"
    assert re.fullmatch(expected, grpc_.getMessage())


def test_requests_past_max_concurrent_requests_are_one_line_each(model_base, refusals):
    with serving.ServerThread(options(model_base, max_concurrent_requests=1)) as server:
        body = b'{"instances": [[1.0, 2.0, 3.0]]}'
        held = start_predict(server.server.rest_port, len(body))  # holds the one slot
        client = Client(server)
        try:
            status, reason, peer = rest_call(server.server.rest_port, "POST", PREDICT, b"{}")
            error = grpc_refusal(lambda: client.predict({"x": np.array(X, np.float32)}))
        finally:
            held.sendall(body)
            client.close()
        assert read_response(held)[0] == 200
    limit = "the server is at its limit of 1 requests at once; retry later"
    assert (status, reason, error.code(), error.details()) == (503, limit, grpc.StatusCode.UNAVAILABLE, limit)
    rest, grpc_ = [record.getMessage() for record in refusals() if record.levelno >= logging.WARNING]
    assert rest == f"refused REST 503 POST {PREDICT} from {peer}: {limit}"
    assert re.fullmatch(f"refused gRPC UNAVAILABLE Predict model '{MODEL}' from {GRPC_PEER}: {re.escape(limit)}", grpc_)


@pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="reads the listening sockets from Linux's /proc")
def test_the_default_host_is_loopback_only(server):
    assert serving.ServerOptions(models=[]).host == serving.DEFAULT_HOST == "127.0.0.1"
    assert server.server.options.host == "127.0.0.1"  # the default: tests/serving/conftest.py sets none
    assert listening_addresses(server.server.rest_port) == {"127.0.0.1"}
    assert listening_addresses(server.server.grpc_port) == {"127.0.0.1"}
