"""TensorFlow Serving's gRPC API on grpcio's threaded server: PredictionService.Predict and
GetModelMetadata, ModelService.GetModelStatus, with the messages and service
definitions of the tensorflow-serving-api package, so its stubs work as
they are. Errors are gRPC statuses (INVALID_ARGUMENT, NOT_FOUND, ...)."""

from __future__ import annotations

import functools
import threading
import urllib.parse
from typing import NoReturn

import grpc
from tensorflow_serving.apis import (
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from tfkit.serving import codec, protos
from tfkit.serving.errors import (
    ServingError,
    echo,
    echo_names,
    internal,
    invalid_argument,
    log_refusal,
    not_found,
    unimplemented,
)
from tfkit.serving.service import InferenceService


def _statuses(method):
    """Ends the RPC with the ServingError's status (INTERNAL for the unexpected)."""

    @functools.wraps(method)
    def wrapper(self, request, context: grpc.ServicerContext):
        unexpected = None
        try:
            return method(self, request, context)
        except ServingError as err:
            failure = err
        except Exception as err:  # never let one request take the server down
            failure, unexpected = internal(f"internal error: {err}"), err
        _refuse(context, _call(method.__name__, request), failure, unexpected)

    return wrapper


def _call(rpc: str, request) -> str:
    """The RPC and the model it names, as a refusal's log line shows them."""
    if "model_spec" not in request.DESCRIPTOR.fields_by_name:
        return rpc
    return f"{rpc} model '{echo(request.model_spec.name)}'"


def _refuse(
    context: grpc.ServicerContext, call: str, err: ServingError, unexpected: BaseException | None = None
) -> NoReturn:
    """Logs the refusal and ends the RPC with its status."""
    log_refusal("gRPC", err.code.name, call, _peer(context), err.message, unexpected)
    context.abort(err.code, err.message)


def _peer(context: grpc.ServicerContext) -> str:
    """The client's address:port, as REST's log writes it ("ipv4:" and "ipv6:" dropped)."""
    peer = urllib.parse.unquote(context.peer() or "unknown")
    return peer.split(":", 1)[1] if peer.startswith(("ipv4:", "ipv6:")) else peer


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

    @_statuses
    def Classify(self, request, context):
        raise unimplemented("Classify is not supported by this server; use Predict")

    @_statuses
    def Regress(self, request, context):
        raise unimplemented("Regress is not supported by this server; use Predict")

    @_statuses
    def MultiInference(self, request, context):
        raise unimplemented("MultiInference is not supported by this server; use Predict")


class ModelService(model_service_pb2_grpc.ModelServiceServicer):
    """GetModelStatus (HandleReloadConfigRequest: UNIMPLEMENTED)."""

    def __init__(self, service: InferenceService):
        self.service = service

    @_statuses
    def GetModelStatus(self, request, context):
        spec = request.model_spec
        return protos.status_response(self.service.repository, _name(spec), _version(spec))

    @_statuses
    def HandleReloadConfigRequest(self, request, context):
        raise unimplemented(
            "HandleReloadConfigRequest is not supported by this server; its models are set at start "
            "(MODEL_BASE_PATH or --model_config_file)"
        )


class _Unparsable:
    """Stands for a request message that did not parse."""

    def __init__(self, error: Exception):
        self.error = error


class CallGuard(grpc.ServerInterceptor):
    """Wraps every unary method: a message that does not parse is answered
    INVALID_ARGUMENT (grpcio's own answer is INTERNAL), an unknown method
    UNIMPLEMENTED (logged, as every refusal is), and the calls whose
    handler runs are counted, so that a shutdown tells them from calls still
    waiting for their message."""

    def __init__(self):
        self._running = 0
        self._changed = threading.Condition()

    def intercept_service(self, continuation, handler_call_details):
        handler = continuation(handler_call_details)
        if handler is None:
            refuse = functools.partial(_no_such_method, handler_call_details.method)
            return grpc.stream_stream_rpc_method_handler(refuse)
        if handler.request_streaming or handler.response_streaming:
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
                _refuse(context, method.rsplit("/", 1)[-1], err)
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


def _no_such_method(method: str, requests, context: grpc.ServicerContext) -> NoReturn:
    """Refuses a method no service has, before reading its messages (whether
    the client streams them or sends one)."""
    _refuse(context, echo(method), ServingError(grpc.StatusCode.UNIMPLEMENTED, f"no such method: {echo(method)}"))


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
