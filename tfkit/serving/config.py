"""Server options, and TensorFlow Serving's model config and batching
parameters files."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

from google.protobuf import text_format
from tensorflow_serving.config import model_server_config_pb2

from tfkit.serving.batching import BatchingParameters
from tfkit.serving.repository import ModelConfig

# Loopback only: the server has no authentication, so listening where others
# can reach it is the user's choice (--host 0.0.0.0).
DEFAULT_HOST = "127.0.0.1"
DEFAULT_MAX_REQUEST_BYTES = 64 * 1024 * 1024
DEFAULT_MAX_CONCURRENT_REQUESTS = 64
DEFAULT_REQUEST_READ_TIMEOUT_SECONDS = 30.0


@dataclasses.dataclass
class ServerOptions:
    """Everything `tfkit serve` is configured with.

    Attributes:
      models: the models to serve.
      port: the gRPC port (0: any free port).
      rest_api_port: the REST port (0: any free port).
      host: the address both listen on: loopback by default; another
        address lets whoever reaches it run the models (no authentication).
      batching: the batching parameters, or None for no batching.
      poll_seconds: how often to look for new versions (<= 0: only at start).
      op_libraries: op libraries to load before any model (e.g. tfkit.build output).
      max_request_bytes: the largest request body (REST, also once
        decompressed) or message (gRPC), and the most one request's inputs
        together may take once decoded.
      max_concurrent_requests: the most predict requests, REST and gRPC
        together, being read, decoded or run at once; more are refused
        (503 / UNAVAILABLE).
      request_read_timeout_seconds: how long a client may take to send a
        request's head and body (REST; gRPC at shutdown: its message).
      drain_seconds: how long a shutdown waits for requests in flight.
      intra_op_threads: TensorFlow's threads within one op (0: its default).
      inter_op_threads: TensorFlow's threads running ops side by side (0: its default).
    """

    models: list[ModelConfig]
    port: int = 8500
    rest_api_port: int = 8501
    host: str = DEFAULT_HOST
    batching: BatchingParameters | None = None
    poll_seconds: float = 1.0
    op_libraries: list[Path] = dataclasses.field(default_factory=list)
    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES
    max_concurrent_requests: int = DEFAULT_MAX_CONCURRENT_REQUESTS
    request_read_timeout_seconds: float = DEFAULT_REQUEST_READ_TIMEOUT_SECONDS
    drain_seconds: float = 30.0
    intra_op_threads: int = 0
    inter_op_threads: int = 0

    def __post_init__(self):
        if self.max_concurrent_requests < 1:
            raise ValueError(f"max_concurrent_requests must be >= 1, got {self.max_concurrent_requests}")
        if not self.request_read_timeout_seconds > 0:
            raise ValueError(f"request_read_timeout_seconds must be > 0, got {self.request_read_timeout_seconds}")


def read_model_config_file(path: Path) -> list[ModelConfig]:
    """The models of a ModelServerConfig text proto (`model_config_list`).

    Relative base paths are taken from the config file's folder.

    Raises:
      ValueError: the file does not parse, or asks for what is not supported.
    """
    path = Path(path)
    try:
        config = text_format.Parse(path.read_text(), model_server_config_pb2.ModelServerConfig())
    except text_format.ParseError as err:
        raise ValueError(f"{path}: not a ModelServerConfig text proto: {err}") from err
    if config.WhichOneof("config") != "model_config_list" or not config.model_config_list.config:
        raise ValueError(f"{path}: expected model_config_list {{ config {{ name: ... base_path: ... }} }}")
    models = []
    for entry in config.model_config_list.config:
        if not entry.name or not entry.base_path:
            raise ValueError(f"{path}: every config needs a name and a base_path")
        if entry.model_platform not in ("", "tensorflow"):
            raise ValueError(f"{path}: model '{entry.name}': only model_platform 'tensorflow' is served")
        policy = entry.model_version_policy.WhichOneof("policy_choice")
        if policy not in (None, "latest") or entry.model_version_policy.latest.num_versions > 1:
            raise ValueError(f"{path}: model '{entry.name}': only the latest-version policy (one version) is supported")
        models.append(ModelConfig(entry.name, (path.parent / entry.base_path).resolve()))
    return models


_PARAMETER = re.compile(r"^\s*(\w+)\s*\{\s*value\s*:\s*(\d+)\s*\}\s*$")
_PARAMETER_NAMES = {field.name for field in dataclasses.fields(BatchingParameters)}


def read_batching_parameters_file(path: Path) -> BatchingParameters:
    """TensorFlow Serving's batching parameters file, e.g.

        max_batch_size { value: 32 }
        batch_timeout_micros { value: 1000 }

    Raises:
      ValueError: a line that is not one of the supported parameters.
    """
    values = {}
    for number, line in enumerate(Path(path).read_text().splitlines(), 1):
        line = line.split("#", 1)[0]
        if not line.strip():
            continue
        match = _PARAMETER.match(line)
        if match is None or match[1] not in _PARAMETER_NAMES:
            raise ValueError(
                f"{path}:{number}: expected `<name> {{ value: <int> }}` with a name among {sorted(_PARAMETER_NAMES)}, "
                f"got {line.strip()!r}"
            )
        values[match[1]] = int(match[2])
    return BatchingParameters(**values)
