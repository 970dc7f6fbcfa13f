"""One loaded model version: its signatures, their metadata, and calls.

A `Servable` is immutable once loaded. The repository swaps whole servables
when a new version arrives, so a request that picked one keeps it to the end.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import tensorflow as tf
from tensorflow.core.protobuf import meta_graph_pb2, saved_model_pb2

from tfkit import saved_model
from tfkit.serving.errors import ModelLoadError, echo, echo_names, invalid_argument, not_found

DEFAULT_SIGNATURE = "serving_default"
SERVE_TAG = "serve"


@dataclasses.dataclass(frozen=True)
class TensorInfo:
    """An input or output of a signature: its key, dtype and shape.

    `shape` is None for an unknown rank, with None for each unknown dimension.
    """

    key: str
    dtype: tf.DType
    shape: tuple[int | None, ...] | None

    @classmethod
    def from_proto(cls, key: str, info: meta_graph_pb2.TensorInfo) -> TensorInfo:
        shape = (
            None
            if info.tensor_shape.unknown_rank
            else tuple(d.size if d.size >= 0 else None for d in info.tensor_shape.dim)
        )
        return cls(key, tf.dtypes.as_dtype(info.dtype), shape)

    def describe(self) -> str:
        dims = (
            "unknown rank"
            if self.shape is None
            else "[" + ", ".join("?" if d is None else str(d) for d in self.shape) + "]"
        )
        return f"{self.dtype.name} {dims}"

    def check(self, value: np.ndarray) -> None:
        """Raises INVALID_ARGUMENT unless `value`'s shape fits this input."""
        if self.shape is None:
            return
        fits = value.ndim == len(self.shape) and all(
            want is None or want == got for want, got in zip(self.shape, value.shape, strict=True)
        )
        if not fits:
            raise invalid_argument(f"input '{self.key}' expects shape {self.describe()}, got {list(value.shape)}")


@dataclasses.dataclass(frozen=True)
class Signature:
    """A callable signature of a loaded SavedModel."""

    name: str
    inputs: dict[str, TensorInfo]
    outputs: dict[str, TensorInfo]
    function: tf.types.experimental.ConcreteFunction

    def __call__(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Runs the signature on validated inputs; returns NumPy outputs by key."""
        results = self.function(**{key: tf.constant(value) for key, value in inputs.items()})
        return {key: tensor.numpy() for key, tensor in results.items()}

    def select_outputs(self, output_filter) -> list[str]:
        """The output keys to return: all of them, or the requested ones."""
        if not output_filter:
            return list(self.outputs)
        unknown = sorted(set(output_filter) - set(self.outputs))
        if unknown:
            raise invalid_argument(
                f"signature '{self.name}' has no output {echo_names(unknown)}; its outputs are {sorted(self.outputs)}"
            )
        return list(output_filter)


@dataclasses.dataclass(frozen=True)
class Servable:
    """A model version ready to serve."""

    name: str
    version: int
    path: Path
    signatures: dict[str, Signature]
    signature_defs: dict[str, meta_graph_pb2.SignatureDef]
    module: object  # the loaded SavedModel object, kept alive with its signatures

    def signature(self, name: str | None) -> Signature:
        """Returns the signature named `name` (default: serving_default).

        Raises:
          ServingError: NOT_FOUND for a signature the model lacks.
        """
        name = name or DEFAULT_SIGNATURE
        if name not in self.signatures:
            raise not_found(
                f"model '{self.name}' version {self.version} has no signature '{echo(name)}'; "
                f"its signatures are {sorted(self.signatures)}"
            )
        return self.signatures[name]


def load_servable(name: str, version: int, path: Path) -> Servable:
    """Checks and loads one version directory of a model.

    The SavedModel is first inspected with `tfkit.saved_model.check`: a model
    holding Python-callback ops, or ops no loaded library registers, is
    refused with the check's report.

    Raises:
      ModelLoadError: the check failed or TensorFlow could not load it.
    """
    try:
        report = saved_model.check(str(path))
    except FileNotFoundError as err:
        raise ModelLoadError(str(err)) from err
    except Exception as err:  # a corrupt saved_model.pb
        raise ModelLoadError(f"model '{name}' version {version} failed to load from {path}: {err}") from err
    if not report.ok:
        raise ModelLoadError(f"model '{name}' version {version} refused:\n{report}")
    try:
        module = tf.saved_model.load(str(path), tags=[SERVE_TAG])
    except Exception as err:  # whatever TensorFlow raises on a broken SavedModel
        raise ModelLoadError(f"model '{name}' version {version} failed to load from {path}: {err}") from err
    signature_defs = _signature_defs(path)
    signatures = {
        key: Signature(
            key,
            {k: TensorInfo.from_proto(k, v) for k, v in signature_defs[key].inputs.items()},
            {k: TensorInfo.from_proto(k, v) for k, v in signature_defs[key].outputs.items()},
            function,
        )
        for key, function in module.signatures.items()
        if key in signature_defs
    }
    if not signatures:
        raise ModelLoadError(f"model '{name}' version {version} at {path} has no serving signatures")
    return Servable(name, version, Path(path), signatures, {k: signature_defs[k] for k in signatures}, module)


def _signature_defs(path: Path) -> dict[str, meta_graph_pb2.SignatureDef]:
    """The SignatureDefs of the meta graph tagged `serve`."""
    saved = saved_model_pb2.SavedModel.FromString((Path(path) / "saved_model.pb").read_bytes())
    for meta_graph in saved.meta_graphs:
        if SERVE_TAG in meta_graph.meta_info_def.tags:
            return dict(meta_graph.signature_def)
    return {}
