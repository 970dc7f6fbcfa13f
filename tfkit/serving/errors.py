"""The errors a request can meet, with their gRPC status and HTTP code."""

from __future__ import annotations

import logging
from collections.abc import Iterable

import grpc

log = logging.getLogger("tfkit.serving")

_HTTP_STATUS = {
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.FAILED_PRECONDITION: 400,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.DEADLINE_EXCEEDED: 408,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 413,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.INTERNAL: 500,
}

# A message's UTF-8 bytes: gRPC percent-encodes it into a trailer, which
# must stay under the client's metadata limit (8 KiB by default).
MAX_MESSAGE_BYTES = 2000
ECHO_CHARS = 64
ECHO_NAMES = 10


class ServingError(Exception):
    """A request the server answers with an error instead of a result.

    Attributes:
      code: the gRPC status code; `http_status` is its REST counterpart.
      message: what went wrong and what the client should send instead
        (cut to MAX_MESSAGE_BYTES).
    """

    def __init__(self, code: grpc.StatusCode, message: str):
        message = _capped(message)
        super().__init__(message)
        self.code = code
        self.message = message

    @property
    def http_status(self) -> int:
        return _HTTP_STATUS.get(self.code, 500)


def _capped(message: str) -> str:
    encoded = message.encode()
    if len(encoded) <= MAX_MESSAGE_BYTES:
        return message
    return encoded[:MAX_MESSAGE_BYTES].decode(errors="ignore") + " ..."


def echo(text: object) -> str:
    """A string the client sent, as an error message quotes it: its first
    ECHO_CHARS characters and its length when it is longer."""
    text = str(text)
    if len(text) <= ECHO_CHARS:
        return text
    return f"{text[:ECHO_CHARS]}... ({len(text)} characters)"


def echo_names(names: Iterable[object]) -> str:
    """Names the client sent, sorted, as a list of at most ECHO_NAMES echoed names."""
    names = sorted(str(name) for name in names)
    shown = ", ".join(repr(echo(name)) for name in names[:ECHO_NAMES])
    more = f", ... ({len(names) - ECHO_NAMES} more)" if len(names) > ECHO_NAMES else ""
    return f"[{shown}{more}]"


def invalid_argument(message: str) -> ServingError:
    return ServingError(grpc.StatusCode.INVALID_ARGUMENT, message)


def not_found(message: str) -> ServingError:
    return ServingError(grpc.StatusCode.NOT_FOUND, message)


def internal(message: str) -> ServingError:
    return ServingError(grpc.StatusCode.INTERNAL, message)


def resource_exhausted(message: str) -> ServingError:
    return ServingError(grpc.StatusCode.RESOURCE_EXHAUSTED, message)


def unavailable(message: str) -> ServingError:
    return ServingError(grpc.StatusCode.UNAVAILABLE, message)


def unimplemented(message: str) -> ServingError:
    return ServingError(grpc.StatusCode.UNIMPLEMENTED, message)


def log_refusal(
    protocol: str, status: str, call: str, peer: str, reason: str, unexpected: BaseException | None = None
) -> None:
    """Logs a request the server refused or failed, in one line:

        refused REST 404 GET /v1/models/nope from 127.0.0.1:50412: model 'nope' is not served ...

    at WARNING; at ERROR with its traceback when `unexpected` (an error in
    the server itself) is given. Control characters a client sent are
    escaped, so that each refusal stays one line of bounded length.

    Args:
      protocol: "REST" or "gRPC".
      status: the HTTP code or the gRPC status name.
      call: what was asked: the method and path, or the RPC and model.
      peer: the client's address:port.
      reason: the message the client gets.
      unexpected: the exception behind an internal error, if any.
    """
    log.log(
        logging.ERROR if unexpected else logging.WARNING,
        "refused %s %s %s from %s: %s",
        protocol,
        status,
        _one_line(call),
        _one_line(peer),
        _one_line(_capped(reason)),
        exc_info=unexpected,
    )


def _one_line(text: str) -> str:
    return "".join(char if char.isprintable() else repr(char)[1:-1] for char in text)


class ModelLoadError(RuntimeError):
    """A model version could not be loaded, or failed tfkit's SavedModel check."""
