"""The gRPC API with tensorflow-serving-api's own stubs: Predict,
GetModelMetadata, GetModelStatus, and their error statuses."""

from __future__ import annotations

import grpc
import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import get_model_metadata_pb2, get_model_status_pb2, predict_pb2

from tests.serving.conftest import MAX_REQUEST_BYTES, MODEL, TIMEOUT, outputs_of
from tests.serving.models import SIGNATURES

X = np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]], np.float32)


def test_predict(client):
    response = client.predict({"x": X})
    assert response.model_spec.name == MODEL
    assert response.model_spec.version.value == 1
    assert response.model_spec.signature_name == "serving_default"
    np.testing.assert_array_equal(outputs_of(response)["y"], 2 * X + 1)
    assert client.predict({"x": X}, signature="serving_default", version=1).outputs["y"] == response.outputs["y"]


def test_predict_several_outputs_strings_and_filter(client):
    a = np.arange(8, dtype=np.float32).reshape(2, 4)
    outputs = outputs_of(client.predict({"a": a, "b": np.array([1, 2], np.int32)}, signature="multi"))
    np.testing.assert_array_equal(outputs["sum"], a.sum(1) + np.array([1, 2]))
    assert outputs["normed"].shape == (2, 4)
    only = client.predict({"a": a, "b": np.array([1, 2], np.int32)}, signature="multi", output_filter=["sum"])
    assert set(only.outputs) == {"sum"}
    text = outputs_of(client.predict({"s": np.array([b"ab", b"\xffq"], object)}, signature="text"))
    assert text["upper_bytes"].tolist() == [b"AB", b"\xffQ"]
    assert text["length"].tolist() == [2, 2]


def test_metadata(client):
    response = client.metadata()
    assert response.model_spec.version.value == 1
    signatures = get_model_metadata_pb2.SignatureDefMap()
    response.metadata["signature_def"].Unpack(signatures)
    assert set(signatures.signature_def) == SIGNATURES
    assert signatures.signature_def["multi"].inputs["b"].dtype == 3  # DT_INT32


def test_status(client):
    (status,) = client.status().model_version_status
    assert status.version == 1
    assert status.state == get_model_status_pb2.ModelVersionStatus.AVAILABLE
    assert client.status(version=1) == client.status()


def _request_with_dtype(dtype_enum: int) -> predict_pb2.PredictRequest:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = MODEL
    request.inputs["x"].CopyFrom(tf.make_tensor_proto(X))
    request.inputs["x"].dtype = dtype_enum
    return request


BAD_CALLS = [
    # (call, status code, part of the details)
    (lambda c: c.predict({"x": X[:, :2]}), grpc.StatusCode.INVALID_ARGUMENT, "expects shape float32 [?, 3]"),
    (
        lambda c: c.predict({"x": X.astype(np.float64)}),
        grpc.StatusCode.INVALID_ARGUMENT,
        "expects float32, got float64",
    ),
    (lambda c: c.predict({}), grpc.StatusCode.INVALID_ARGUMENT, "missing ['x']"),
    (
        lambda c: c.predictions.Predict(_request_with_dtype(999), timeout=TIMEOUT),
        grpc.StatusCode.INVALID_ARGUMENT,
        "expects float32, got an unknown dtype (999)",
    ),
    (lambda c: c.predict({"x": X}, output_filter=["nope"]), grpc.StatusCode.INVALID_ARGUMENT, "no output ['nope']"),
    (
        lambda c: c.predict({"x": np.array([-1.0], np.float32)}, signature="checked"),
        grpc.StatusCode.INVALID_ARGUMENT,
        "x must be >= 0",
    ),
    (
        lambda c: c.predict({"path": np.array(b"/no/such/file", object)}, signature="read"),
        grpc.StatusCode.INTERNAL,
        "the model call failed",
    ),
    (lambda c: c.predict({"x": X}, signature="nope"), grpc.StatusCode.NOT_FOUND, "no signature 'nope'"),
    (lambda c: c.predict({"x": X}, version=5), grpc.StatusCode.NOT_FOUND, "version 5 is not available"),
    (lambda c: c.metadata(name="other"), grpc.StatusCode.NOT_FOUND, "model 'other' is not served"),
    (lambda c: c.metadata(fields=()), grpc.StatusCode.INVALID_ARGUMENT, "metadata_field"),
    (lambda c: c.status(version=3), grpc.StatusCode.NOT_FOUND, "has no version 3"),
    (
        lambda c: c.predict({"x": np.zeros([MAX_REQUEST_BYTES // 12 + 1, 3], np.float32)}),
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        "larger than max",
    ),
]


def _filled_request(rows: int) -> predict_pb2.PredictRequest:
    """A small message whose one value fills a [rows, 3] input."""
    request = predict_pb2.PredictRequest()
    request.model_spec.name = MODEL
    x = request.inputs["x"]
    x.dtype = tf.float32.as_datatype_enum
    x.tensor_shape.dim.add(size=rows)
    x.tensor_shape.dim.add(size=3)
    x.float_val.append(1.0)
    return request


def test_a_small_message_that_decodes_to_an_oversized_tensor_is_refused(client):
    rows = MAX_REQUEST_BYTES // 12
    filled = outputs_of(client.predictions.Predict(_filled_request(rows), timeout=TIMEOUT))["y"]
    np.testing.assert_array_equal(filled, np.full([rows, 3], 3.0, np.float32))
    with pytest.raises(grpc.RpcError) as caught:
        client.predictions.Predict(_filled_request(1 << 40), timeout=TIMEOUT)
    assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert f"more than the server's limit of {MAX_REQUEST_BYTES}" in caught.value.details()
    filled_strings = predict_pb2.PredictRequest()
    filled_strings.model_spec.name = MODEL
    filled_strings.model_spec.signature_name = "text"
    s = filled_strings.inputs["s"]
    s.dtype = tf.string.as_datatype_enum
    s.tensor_shape.dim.add(size=1000)
    s.string_val.append(b"x" * 1000)  # a 1 kB message that decodes to 1 MB
    with pytest.raises(grpc.RpcError) as caught:
        client.predictions.Predict(filled_strings, timeout=TIMEOUT)
    assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


@pytest.mark.parametrize(("call", "code", "details"), BAD_CALLS)
def test_bad_calls_get_status_codes(client, call, code, details):
    with pytest.raises(grpc.RpcError) as caught:
        call(client)
    assert caught.value.code() == code
    assert details in caught.value.details()
    np.testing.assert_array_equal(outputs_of(client.predict({"x": X}))["y"], 2 * X + 1)


def test_an_unknown_output_is_refused_before_the_model_runs(client):
    with pytest.raises(grpc.RpcError) as caught:  # the model would reject x < 0
        client.predict({"x": np.array([-1.0], np.float32)}, signature="checked", output_filter=["nope"])
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "no output ['nope']" in caught.value.details()


def test_cancelled_call_leaves_the_server_serving(client):
    future = client.predictions.Predict.future(_slow_request(), timeout=10)
    future.cancel()
    np.testing.assert_array_equal(outputs_of(client.predict({"x": X}))["y"], 2 * X + 1)


def _slow_request() -> predict_pb2.PredictRequest:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = MODEL
    request.model_spec.signature_name = "slow"
    request.inputs["x"].CopyFrom(tf.make_tensor_proto(np.ones([1], np.float32)))
    return request
