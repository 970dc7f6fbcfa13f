"""TensorFlow Serving's gRPC API on grpcio's threaded server: PredictionService.Predict and
GetModelMetadata, ModelService.GetModelStatus, with the messages and service
definitions of the tensorflow-serving-api package, so its stubs work as
they are. Errors are gRPC statuses (INVALID_ARGUMENT, NOT_FOUND, ...)."""

from __future__ import annotations

import functools
import logging
import threading

import grpc
from tensorflow_serving.apis import (
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from tfkit.serving import codec, protos
from tfkit.serving.errors import ServingError, echo, echo_names, internal, invalid_argument, not_found
from tfkit.serving.service import InferenceService

log = logging.getLogger("tfkit.serving")


def _statuses(method):
    """Ends the RPC with the ServingError's status (INTERNAL for the unexpected)."""

    @functools.wraps(method)
    def wrapper(self, request, context: grpc.ServicerContext):
        try:
            return method(self, request, context)
        except ServingError as err:
            context.abort(err.code, err.message)
        except Exception as err:  # never let one request take the server down
            log.exception("unexpected error in %s", method.__name__)
            context.abort(grpc.StatusCode.INTERNAL, internal(f"internal error: {err}").message)

    return wrapper


def _version(model_spec) -> int | None:
    if model_spec.WhichOneof("version_choice") == "version_label":
        raise not_found(f"version labels are not supported (got '{echo(model_spec.version_label)}'); set version")
    return model_spec.version.value if model_spec.HasField("version") else None


def _name(model_spec) -> str:
    if not model_spec.name:
        raise invalid_argument("model_spec.name is required")
    return model_spec.name


class PredictionService(prediction_service_pb2_grpc.PredictionServiceServicer):
    """Predict and GetModelMetadata (Classify, Regress, MultiInference: UNIMPLEMENTED)."""

    def __init__(self, service: InferenceService, max_request_bytes: int):
        self.service = service
        self.max_request_bytes = max_request_bytes

    @_statuses
    def Predict(self, request, context):
        spec = request.model_spec
        servable, signature, outputs = self.service.predict_blocking(
            _name(spec),
            _version(spec),
            spec.signature_name or None,
            functools.partial(self._decode, request),
        )
        response = predict_pb2.PredictResponse(model_spec=protos.model_spec(servable, signature.name))
        for key in signature.select_outputs(request.output_filter):
            response.outputs[key].CopyFrom(codec.to_proto(outputs[key]))
        return response

    def _decode(self, request: predict_pb2.PredictRequest, signature) -> dict:
        """The request's inputs for `signature`, once its output_filter is
        known to name outputs of it (before the model runs)."""
        signature.select_outputs(request.output_filter)
        return codec.proto_inputs(signature, request.inputs, self.max_request_bytes)

    @_statuses
    def GetModelMetadata(self, request, context):
        fields = set(request.metadata_field)
        if fields != {protos.SIGNATURE_DEF_FIELD}:
            raise invalid_argument(f'metadata_field must be ["signature_def"], got {echo_names(fields)}')
        servable = self.service.repository.servable(_name(request.model_spec), _version(request.model_spec))
        return protos.metadata_response(servable)


class ModelService(model_service_pb2_grpc.ModelServiceServicer):
    """GetModelStatus (HandleReloadConfigRequest: UNIMPLEMENTED)."""

    def __init__(self, service: InferenceService):
        self.service = service

    @_statuses
    def GetModelStatus(self, request, context):
        spec = request.model_spec
        return protos.status_response(self.service.repository, _name(spec), _version(spec))


class _Unparsable:
    """Stands for a request message that did not parse."""

    def __init__(self, error: Exception):
        self.error = error


class CallGuard(grpc.ServerInterceptor):
    """Wraps every unary method: a message that does not parse is answered
    INVALID_ARGUMENT (grpcio's own answer is INTERNAL), and the calls whose
    handler runs are counted, so that a shutdown tells them from calls still
    waiting for their message."""

    def __init__(self):
        self._running = 0
        self._changed = threading.Condition()

    def intercept_service(self, continuation, handler_call_details):
        handler = continuation(handler_call_details)
        if handler is None or handler.request_streaming or handler.response_streaming:
            return handler
        return grpc.unary_unary_rpc_method_handler(
            self._wrap(handler.unary_unary, handler_call_details.method),
            request_deserializer=_lenient(handler.request_deserializer),
            response_serializer=handler.response_serializer,
        )

    def _wrap(self, behavior, method: str):
        def run(request, context: grpc.ServicerContext):
            if isinstance(request, _Unparsable):
                err = invalid_argument(f"the request is not a valid message for {method}: {request.error}")
                context.abort(err.code, err.message)
            with self._changed:
                self._running += 1
            try:
                return behavior(request, context)
            finally:
                with self._changed:
                    self._running -= 1
                    self._changed.notify_all()

        return run

    def wait_until_idle(self, timeout: float) -> bool:
        """Waits up to `timeout` seconds for no handler to run; True if none does."""
        with self._changed:
            return self._changed.wait_for(lambda: self._running == 0, timeout)


def _lenient(deserializer):
    def deserialize(data: bytes):
        try:
            return deserializer(data)
        except Exception as err:  # protobuf's DecodeError, or whatever a parser raises
            return _Unparsable(err)

    return deserialize


def add_services(server: grpc.Server, service: InferenceService, max_request_bytes: int) -> None:
    """Adds PredictionService and ModelService; a request's inputs together
    may decode to at most `max_request_bytes`, like the message holding them."""
    prediction = PredictionService(service, max_request_bytes)
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(prediction, server)
    model_service_pb2_grpc.add_ModelServiceServicer_to_server(ModelService(service), server)
