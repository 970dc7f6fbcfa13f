"""`tfkit serve`: a model server that speaks TensorFlow Serving's REST and
gRPC APIs and serves SavedModels that use custom ops.

The stock TensorFlow Serving binary links its ops in statically; this server
registers tfkit's op library (and any other the user names) before it loads
a model, and refuses models a server cannot run (`tfkit.saved_model.check`).

- `repository`: TensorFlow Serving's `base_path/<version>/` layout, version polling.
- `servable`: one loaded version, its signatures and their checks.
- `codec`: the JSON row/columnar formats and TensorProtos to and from NumPy.
- `batching`: concurrent requests merged into one model call and split back.
- `service`: what both APIs share; `rest` (aiohttp) and `grpc_service` (grpcio).
- `server`: start, drain and stop; `config`: options and TF Serving's config files;
  `launch`: the server as a child process.
"""

from __future__ import annotations

from tfkit.serving.batching import BatchingParameters
from tfkit.serving.config import DEFAULT_HOST, ServerOptions, read_batching_parameters_file, read_model_config_file
from tfkit.serving.errors import ModelLoadError, ServingError
from tfkit.serving.repository import ModelConfig, ModelRepository
from tfkit.serving.server import ModelServer, ServerThread, serve

__all__ = [
    "DEFAULT_HOST",
    "BatchingParameters",
    "ModelConfig",
    "ModelLoadError",
    "ModelRepository",
    "ModelServer",
    "ServerOptions",
    "ServerThread",
    "ServingError",
    "read_batching_parameters_file",
    "read_model_config_file",
    "serve",
]
