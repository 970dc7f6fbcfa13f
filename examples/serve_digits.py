"""Serves the digits classifier with `python -m tfkit serve` and queries it
with TensorFlow Serving's own clients.

Run after examples/digits_classifier.py, which exports the model to
build/digits_model/1. Starts the server as a child process, sends one REST
request and one gRPC request (tensorflow-serving-api's
PredictionServiceStub), prints the predictions, checks that they equal the
model's own outputs computed in this process, and stops the server with
SIGTERM, which must end it with exit status 0.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import grpc
import numpy as np
import requests
import tensorflow as tf
from sklearn.datasets import load_digits
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

import tfkit  # noqa: F401 (registers the Tfkit> ops for the in-process call)
from tfkit.serving.launch import ServerProcess

BASE = Path(__file__).resolve().parents[1] / "build" / "digits_model"
MODEL = "digits"
TIMEOUT = 30


def rest_predict(url: str, x: np.ndarray) -> np.ndarray:
    response = requests.post(f"{url}/v1/models/{MODEL}:predict", json={"instances": x.tolist()}, timeout=TIMEOUT)
    response.raise_for_status()
    return np.array(response.json()["predictions"], np.float32)


def grpc_predict(target: str, x: np.ndarray, input_name: str) -> np.ndarray:
    with grpc.insecure_channel(target) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        request = predict_pb2.PredictRequest()
        request.model_spec.name = MODEL
        request.model_spec.signature_name = "serving_default"
        request.inputs[input_name].CopyFrom(tf.make_tensor_proto(x))
        response = stub.Predict(request, timeout=TIMEOUT)
    (output,) = response.outputs.values()
    return tf.make_ndarray(output)


def main() -> int:
    if not (BASE / "1" / "saved_model.pb").is_file():
        raise SystemExit(f"no model at {BASE}/1: run examples/digits_classifier.py first")
    digits = load_digits()
    x, labels = (digits.data[:8] / 16.0).astype(np.float32), digits.target[:8]

    signature = tf.saved_model.load(str(BASE / "1")).signatures["serving_default"]
    (input_name,) = signature.structured_input_signature[1]
    (in_process,) = signature(**{input_name: tf.constant(x)}).values()

    with ServerProcess([str(BASE), "--model_name", MODEL]) as server:
        print(f"tfkit serve: REST {server.rest_url}, gRPC {server.grpc_target}")
        over_rest = rest_predict(server.rest_url, x)
        over_grpc = grpc_predict(server.grpc_target, x, input_name)
        status = server.stop()

    print(f"labels:                 {labels.tolist()}")
    print(f"REST predictions:       {over_rest.argmax(-1).tolist()}")
    print(f"gRPC predictions:       {over_grpc.argmax(-1).tolist()}")
    print(f"in-process predictions: {in_process.numpy().argmax(-1).tolist()}")
    np.testing.assert_array_equal(over_rest, in_process.numpy())
    np.testing.assert_array_equal(over_grpc, in_process.numpy())
    print("REST and gRPC logits equal the in-process ones exactly")
    if status != 0:
        raise SystemExit(f"the server exited with {status} after SIGTERM")
    print("server stopped by SIGTERM, exit status 0")
    return 0


if __name__ == "__main__":
    sys.exit(main())
