"""Fixtures for the server tests: the test model on disk, servers started in
this process on free loopback ports (always stopped), and bounded clients."""

from __future__ import annotations

import http.client
import ipaddress
import json
import socket
import sys
from pathlib import Path

import grpc
import numpy as np
import pytest
import requests
import tensorflow as tf
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from tests.serving.models import export_version
from tfkit import serving

TIMEOUT = 20  # seconds, for every client call
MAX_REQUEST_BYTES = 64 * 1024
MODEL = "m"


@pytest.fixture(scope="package")
def model_base(tmp_path_factory):
    """A model folder with version 1 (y = 2x + 1)."""
    base = tmp_path_factory.mktemp("models") / MODEL
    export_version(base, 1, offset=1.0)
    return base


def options(base, **kwargs) -> serving.ServerOptions:
    defaults = {
        "port": 0,
        "rest_api_port": 0,
        "poll_seconds": 0,
        "max_request_bytes": MAX_REQUEST_BYTES,
        "drain_seconds": 10,
    }
    return serving.ServerOptions(models=[serving.ModelConfig(MODEL, base)], **{**defaults, **kwargs})


@pytest.fixture(scope="package")
def server(model_base):
    with serving.ServerThread(options(model_base)) as running:
        yield running


class Client:
    """REST and gRPC calls to one server, each bounded by TIMEOUT."""

    def __init__(self, running: serving.ServerThread):
        self.url = running.rest_url
        self.channel = grpc.insecure_channel(running.grpc_target)
        self.predictions = prediction_service_pb2_grpc.PredictionServiceStub(self.channel)
        self.models = model_service_pb2_grpc.ModelServiceStub(self.channel)

    def get(self, path: str) -> tuple[int, dict]:
        response = requests.get(self.url + path, timeout=TIMEOUT)
        return response.status_code, response.json()

    def post(self, path: str, body=None, data: bytes | None = None) -> tuple[int, dict]:
        response = requests.post(self.url + path, json=body, data=data, timeout=TIMEOUT)
        return response.status_code, response.json()

    def predict(
        self, inputs: dict[str, np.ndarray], signature: str = "", version: int | None = None, output_filter=()
    ) -> predict_pb2.PredictResponse:
        request = predict_pb2.PredictRequest(output_filter=list(output_filter))
        request.model_spec.name = MODEL
        request.model_spec.signature_name = signature
        if version is not None:
            request.model_spec.version.value = version
        for key, value in inputs.items():
            request.inputs[key].CopyFrom(tf.make_tensor_proto(value))
        return self.predictions.Predict(request, timeout=TIMEOUT)

    def metadata(self, name: str = MODEL, fields=("signature_def",)):
        request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=list(fields))
        request.model_spec.name = name
        return self.predictions.GetModelMetadata(request, timeout=TIMEOUT)

    def status(self, name: str = MODEL, version: int | None = None):
        request = get_model_status_pb2.GetModelStatusRequest()
        request.model_spec.name = name
        if version is not None:
            request.model_spec.version.value = version
        return self.models.GetModelStatus(request, timeout=TIMEOUT)

    def close(self) -> None:
        self.channel.close()


@pytest.fixture(scope="package")
def client(server):
    running = Client(server)
    yield running
    running.close()


def outputs_of(response: predict_pb2.PredictResponse) -> dict[str, np.ndarray]:
    return {key: tf.make_ndarray(value) for key, value in response.outputs.items()}


def start_predict(port: int, body_length: int, path: str = f"/v1/models/{MODEL}:predict") -> socket.socket:
    """Sends the head of a predict request with `Expect: 100-continue`, and
    returns once the server has answered `100 Continue`: its handler is then
    running, waiting for the body (which the caller sends, or holds back)."""
    connection = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
    head = (
        f"POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
        f"Expect: 100-continue\r\nContent-Length: {body_length}\r\n\r\n"
    )
    connection.sendall(head.encode())
    interim = connection.recv(1024)
    assert interim.startswith(b"HTTP/1.1 100 Continue"), interim
    return connection


def read_response(connection: socket.socket) -> tuple[int, dict]:
    """The status and JSON body of the response on `connection`, which it closes."""
    with connection:
        response = http.client.HTTPResponse(connection)
        response.begin()
        return response.status, json.loads(response.read())


def rest_call(port: int, method: str, path: str, body: bytes | None = None) -> tuple[int, str, str]:
    """(status, error message, the client's address:port) of one REST request to `port`."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=TIMEOUT)
    connection.connect()
    client_host, client_port = connection.sock.getsockname()
    try:
        connection.request(method, path, body=body, headers={"Content-Type": "application/json"})
        response = connection.getresponse()
        return response.status, json.loads(response.read())["error"], f"{client_host}:{client_port}"
    finally:
        connection.close()


def listening_addresses(port: int) -> set[str]:
    """The addresses of the TCP sockets listening on `port`, from Linux's
    /proc/net/tcp and tcp6 (an IPv4-mapped IPv6 address as IPv4)."""
    found = set()
    for table in ("tcp", "tcp6"):
        path = Path("/proc/net") / table
        for row in path.read_text().splitlines()[1:] if path.exists() else []:
            local, state = row.split()[1], row.split()[3]
            hex_address, hex_port = local.split(":")
            if state == "0A" and int(hex_port, 16) == port:  # 0A: LISTEN
                packed = bytes.fromhex(hex_address)  # 32-bit words, each in the host's byte order
                words = [int.from_bytes(packed[i : i + 4], sys.byteorder) for i in range(0, len(packed), 4)]
                address = ipaddress.ip_address(b"".join(word.to_bytes(4, "big") for word in words))
                found.add(str(getattr(address, "ipv4_mapped", None) or address))
    return found
