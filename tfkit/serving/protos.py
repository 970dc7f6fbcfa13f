"""TensorFlow Serving's status and metadata messages, shared by both APIs
(REST sends them as JSON)."""

from __future__ import annotations

from tensorflow_serving.apis import get_model_metadata_pb2, get_model_status_pb2, model_pb2

from tfkit.serving.repository import AVAILABLE, ModelRepository
from tfkit.serving.servable import Servable

SIGNATURE_DEF_FIELD = "signature_def"
_STATES = get_model_status_pb2.ModelVersionStatus.State
# tensorflow.error.Code values used in a version's status.
_OK, _UNKNOWN = 0, 2


def model_spec(servable: Servable, signature_name: str = "") -> model_pb2.ModelSpec:
    spec = model_pb2.ModelSpec(name=servable.name, signature_name=signature_name)
    spec.version.value = servable.version
    return spec


def status_response(
    repository: ModelRepository, name: str, version: int | None
) -> get_model_status_pb2.GetModelStatusResponse:
    """The state of every version of a model (or of one), newest first."""
    response = get_model_status_pb2.GetModelStatusResponse()
    for status in repository.statuses(name, version):
        entry = response.model_version_status.add(version=status.version, state=_STATES.Value(status.state))
        entry.status.error_code = _OK if status.state == AVAILABLE or not status.error else _UNKNOWN
        entry.status.error_message = status.error
    return response


def signature_def_map(servable: Servable) -> get_model_metadata_pb2.SignatureDefMap:
    signatures = get_model_metadata_pb2.SignatureDefMap()
    for key, signature_def in servable.signature_defs.items():
        signatures.signature_def[key].CopyFrom(signature_def)
    return signatures


def metadata_response(servable: Servable) -> get_model_metadata_pb2.GetModelMetadataResponse:
    response = get_model_metadata_pb2.GetModelMetadataResponse(model_spec=model_spec(servable))
    response.metadata[SIGNATURE_DEF_FIELD].Pack(signature_def_map(servable))
    return response
