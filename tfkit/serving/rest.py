"""TensorFlow Serving's REST API over aiohttp.

  GET  /v1/models/{name}[/versions/{version}]            status
  GET  /v1/models/{name}[/versions/{version}]/metadata   signature defs
  POST /v1/models/{name}[/versions/{version}]:predict    predictions

Every error is a JSON object {"error": "..."}: 400 for a bad request, 404
for an unknown model, version or signature, 408 for a body that does not
arrive within the read timeout, 413 for a body over the size limit, 500 when
the model call fails, 503 when the server is at its limit of requests at
once or the batch queue is full.

Request bodies may be compressed (`Content-Encoding: gzip` or `deflate`);
this module decompresses them itself, within the size limit.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import zlib

import grpc
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from google.protobuf import json_format

from tfkit.serving import codec, protos
from tfkit.serving.errors import ServingError, echo, internal, invalid_argument, log_refusal, not_found, unimplemented
from tfkit.serving.service import InferenceService

# Requests (and responses of as many values) this large are decoded and
# encoded on the thread pool, so that the event loop keeps serving others.
LARGE_BODY_BYTES = 1 << 20
LARGE_OUTPUT_VALUES = LARGE_BODY_BYTES // 8

_PATH = re.compile(
    r"^(?P<name>[^/:]+)"
    r"(?:/versions/(?P<version>[^/:]+)|/labels/(?P<label>[^/:]+))?"
    r"(?P<method>/metadata|:predict|:classify|:regress)?$"
)


def _parse_path(path: str) -> tuple[str, int | None, str]:
    """(model name, version or None, method) of the part after /v1/models/."""
    match = _PATH.match(path)
    if match is None:
        raise not_found(f"no such endpoint: /v1/models/{echo(path)}")
    if match["label"] is not None:
        raise not_found(
            f"version labels are not supported (got label '{echo(match['label'])}'); use /versions/<number>"
        )
    version = _parse_version(match["version"]) if match["version"] is not None else None
    return match["name"], version, (match["method"] or "").lstrip("/:")


_VERSION = re.compile(r"-?[0-9]{1,19}")
_INT64_MAX = 2**63 - 1


def _parse_version(text: str) -> int:
    """The number in /versions/<number>: ASCII digits that fit an int64, as
    TensorFlow Serving reads it."""
    if _VERSION.fullmatch(text) is None or not -_INT64_MAX - 1 <= int(text) <= _INT64_MAX:
        raise invalid_argument(f"failed to convert version '{echo(text)}' to a number: use /versions/<decimal int64>")
    return int(text)


def _json_errors(max_request_bytes: int):
    """A middleware that turns every failure into {"error": ...} with the
    right status, and logs it (one line each)."""

    @web.middleware
    async def middleware(request: web.Request, handler) -> web.StreamResponse:
        unexpected = None
        try:
            return await handler(request)
        except ServingError as err:
            status, message = err.http_status, err.message
        except web.HTTPRequestEntityTooLarge:
            status, message = 413, f"the request body is larger than the server's limit of {max_request_bytes} bytes"
        except web.HTTPException as err:
            if err.status < 400:
                raise
            status, message = err.status, err.reason
        except (ConnectionError, OSError) as err:  # the client went away mid-request
            status, message = 400, f"the request could not be read: {err}"
        except Exception as err:  # never let one request take the server down
            status, message, unexpected = 500, internal(f"internal error: {err}").message, err
        log_refusal("REST", str(status), f"{request.method} {echo(request.path)}", _peer(request), message, unexpected)
        return web.json_response({"error": message}, status=status)

    return middleware


def _peer(request: web.BaseRequest) -> str:
    """The client's address:port ("unknown" once its connection is gone)."""
    peername = request.transport.get_extra_info("peername") if request.transport else None
    if not peername:
        return "unknown"
    host, port = peername[:2]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class ProtocolErrorLog(logging.LoggerAdapter):
    """aiohttp's server logger: a request it cannot parse, which it answers
    400 itself before any handler runs, is logged as one refusal line
    (aiohttp's own log of it is a traceback); the rest as aiohttp logs it."""

    def __init__(self):
        super().__init__(logging.getLogger("aiohttp.server"), {})

    def exception(self, msg, *args, exc_info=True, **kwargs) -> None:
        if isinstance(exc_info, HttpProcessingError):
            peer = str(args[0]) if args else "unknown"  # aiohttp passes the client's address, without its port
            log_refusal("REST", str(exc_info.code), "(unparsable request)", peer, exc_info.message)
        else:
            super().exception(msg, *args, exc_info=exc_info, **kwargs)


class RestApi:
    """The aiohttp application for one InferenceService.

    Args:
      service: the predictions.
      max_request_bytes: the largest body, as sent and once decompressed, and
        the most its inputs may take once decoded.
      read_timeout: seconds a predict request's body may take to arrive.
    """

    def __init__(self, service: InferenceService, max_request_bytes: int, read_timeout: float):
        self.service = service
        self.max_request_bytes = max_request_bytes
        self.read_timeout = read_timeout
        self.app = web.Application(middlewares=[_json_errors(max_request_bytes)], client_max_size=max_request_bytes)
        self.app.router.add_get("/v1/models/{path:.+}", self.get)
        self.app.router.add_post("/v1/models/{path:.+}", self.post)

    async def get(self, request: web.Request) -> web.Response:
        name, version, method = _parse_path(request.match_info["path"])
        repository = self.service.repository
        if method == "":
            return web.json_response(_as_json(protos.status_response(repository, name, version)))
        if method == "metadata":
            servable = repository.servable(name, version)
            signatures = _as_json(protos.signature_def_map(servable))
            return web.json_response(
                {"model_spec": _as_json(protos.model_spec(servable)), "metadata": {"signature_def": signatures}}
            )
        raise web.HTTPMethodNotAllowed("GET", ["POST"], reason=f"use POST for :{method}")

    async def post(self, request: web.Request) -> web.Response:
        name, version, method = _parse_path(request.match_info["path"])
        if method != "predict":
            if method in ("classify", "regress"):
                raise unimplemented(f":{method} is not supported by this server; use :predict")
            raise web.HTTPMethodNotAllowed("POST", ["GET"], reason="use GET for status and metadata")
        with self.service.admit():
            return await self._predict(request, name, version)

    async def _predict(self, request: web.Request, name: str, version: int | None) -> web.Response:
        body = await self._read_body(request)
        encoding = request.headers.get("Content-Encoding", "")
        large = len(body) > LARGE_BODY_BYTES or encoding.strip().lower() not in ("", "identity")
        parsed = await self._run(large, _parse_body, body, encoding, self.max_request_bytes)
        signature_name, form, data = codec.parse_predict_body(parsed)
        _, _, outputs = await self.service.predict(
            name,
            version,
            signature_name,
            lambda signature: codec.json_inputs(signature, form, data, self.max_request_bytes),
            large,
        )
        large = large or sum(value.size for value in outputs.values()) > LARGE_OUTPUT_VALUES
        text = await self._run(large, _encode_outputs, form, outputs)
        return web.Response(text=text, content_type="application/json")

    async def _read_body(self, request: web.Request) -> bytes:
        try:
            return await asyncio.wait_for(request.read(), self.read_timeout)
        except asyncio.TimeoutError as err:
            raise ServingError(
                grpc.StatusCode.DEADLINE_EXCEEDED,
                f"the request body did not arrive within the server's read timeout of {self.read_timeout:g} s "
                "(--request_read_timeout_seconds)",
            ) from err

    async def _run(self, in_thread: bool, function, *args):
        """function(*args), on the thread pool when `in_thread`."""
        if not in_thread:
            return function(*args)
        return await asyncio.get_running_loop().run_in_executor(self.service.executor, function, *args)


def _as_json(message) -> dict:
    """A message as TensorFlow Serving writes it: proto field names, and
    fields at their default values included."""
    return json_format.MessageToDict(
        message, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )


def _encode_outputs(form: str, outputs) -> str:
    return json.dumps(codec.json_outputs(form, outputs))


def _parse_body(body: bytes, content_encoding: str, max_bytes: int):
    return _parse_json(_decompressed(body, content_encoding, max_bytes))


# zlib's window bits for each content coding; "deflate" is zlib's format,
# or raw deflate from clients that send that instead.
_WBITS = {"gzip": 16 + zlib.MAX_WBITS, "x-gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}
_ZLIB_METHOD = 8


def _decompressed(body: bytes, content_encoding: str, max_bytes: int) -> bytes:
    """The body with its content codings (listed in the order applied) undone.

    Raises:
      ServingError: INVALID_ARGUMENT for an unsupported coding or a body that
        does not decode, RESOURCE_EXHAUSTED past `max_bytes` decoded.
    """
    codings = [coding.strip().lower() for coding in content_encoding.split(",")]
    for coding in reversed([coding for coding in codings if coding not in ("", "identity")]):
        if coding not in _WBITS:
            raise invalid_argument(f"Content-Encoding '{echo(coding)}' is not supported: send gzip, deflate or none")
        body = _inflate(body, coding, max_bytes)
    return body


def _inflate(body: bytes, coding: str, max_bytes: int) -> bytes:
    """One coding undone; a gzip body may hold several members, one after the other."""
    data = b""
    while True:
        raw = coding == "deflate" and len(body) > 0 and body[0] & 0x0F != _ZLIB_METHOD
        decompressor = zlib.decompressobj(-zlib.MAX_WBITS if raw else _WBITS[coding])
        try:
            data += decompressor.decompress(body, max_bytes + 1 - len(data))
        except zlib.error as err:
            raise invalid_argument(f"the request body is not valid {coding} data: {err}") from err
        codec.check_decoded_size(len(data), max_bytes)
        if not decompressor.eof:
            raise invalid_argument(f"the request body is not valid {coding} data: it ends before its stream does")
        body = decompressor.unused_data
        if not body:
            return data
        if coding == "deflate":
            raise invalid_argument("the request body is not valid deflate data: bytes follow the end of its stream")


def _parse_json(body: bytes):
    try:
        return json.loads(body)
    except ValueError as err:
        raise invalid_argument(f"the request body is not valid JSON: {err}") from err
    except RecursionError as err:
        raise invalid_argument("the request body's JSON is nested too deeply") from err
