"""Request and response tensors: TensorFlow Serving's JSON formats and
TensorProtos to and from NumPy arrays checked against a signature."""

from __future__ import annotations

import base64
import binascii
import math
from typing import Any

import numpy as np
import tensorflow as tf
from tensorflow.core.framework import tensor_pb2

from tfkit.serving.errors import echo_names, invalid_argument, resource_exhausted
from tfkit.serving.servable import Signature, TensorInfo

_KINDS = {"b": "boolean", "i": "integer", "u": "unsigned integer", "f": "floating point", "c": "complex"}
# JSON values of these kinds may be converted to an input of the key's kind
# (JSON booleans only to booleans, as TensorFlow Serving converts them).
_ACCEPTED_KINDS = {"b": "b", "i": "iu", "u": "u", "f": "iuf", "c": "iufc"}


def parse_predict_body(body: dict[str, Any]) -> tuple[str | None, str, Any]:
    """Splits a REST predict request into (signature_name, format, data).

    The format is "instances" (rows) or "inputs" (columns).

    Raises:
      ServingError: INVALID_ARGUMENT unless exactly one of the two is given.
    """
    if not isinstance(body, dict):
        raise invalid_argument('the request body must be a JSON object with "instances" or "inputs"')
    formats = [key for key in ("instances", "inputs") if key in body]
    if len(formats) != 1:
        raise invalid_argument('the request must have exactly one of "instances" (row format) or "inputs" (columnar)')
    signature_name = body.get("signature_name")
    if signature_name is not None and not isinstance(signature_name, str):
        raise invalid_argument('"signature_name" must be a string')
    return signature_name, formats[0], body[formats[0]]


def json_inputs(signature: Signature, form: str, data: Any, max_bytes: int) -> dict[str, np.ndarray]:
    """The arrays of a REST request in row ("instances") or columnar format.

    Raises:
      ServingError: INVALID_ARGUMENT for a wrong name, dtype, value or shape,
        RESOURCE_EXHAUSTED when the arrays would take more than `max_bytes`.
    """
    columns = _rows_to_columns(signature, data) if form == "instances" else _named_columns(signature, data)
    check_input_names(signature, columns)
    arrays, decoded = {}, 0
    for key, value in columns.items():
        arrays[key] = _json_array(signature.inputs[key], key, value)
        decoded += _array_bytes(arrays[key])
        check_decoded_size(decoded, max_bytes)
    return _checked_shapes(signature, arrays)


def _rows_to_columns(signature: Signature, instances: Any) -> dict[str, Any]:
    if not isinstance(instances, list) or not instances:
        raise invalid_argument('"instances" must be a non-empty list, one entry per example')
    if all(isinstance(row, dict) and "b64" not in row for row in instances):
        keys = set(instances[0])
        for i, row in enumerate(instances):
            if set(row) != keys:
                raise invalid_argument(f"instance {i} has inputs {echo_names(row)}, instance 0 has {echo_names(keys)}")
        return {key: [row[key] for row in instances] for key in keys}
    return {_only_input(signature, '"instances" hold bare values'): instances}


def _named_columns(signature: Signature, inputs: Any) -> dict[str, Any]:
    if isinstance(inputs, dict) and "b64" not in inputs:
        return inputs
    return {_only_input(signature, '"inputs" is not an object of named inputs'): inputs}


def _only_input(signature: Signature, why: str) -> str:
    if len(signature.inputs) != 1:
        raise invalid_argument(
            f"{why}, but signature '{signature.name}' has {len(signature.inputs)} inputs "
            f"{sorted(signature.inputs)}: name each one"
        )
    return next(iter(signature.inputs))


def _json_array(info: TensorInfo, key: str, value: Any) -> np.ndarray:
    if info.dtype == tf.string:
        return _string_array(key, value)
    try:
        array = np.asarray(value)
    except ValueError as err:  # ragged nested lists
        raise invalid_argument(f"input '{key}' is not a rectangular array ({err})") from err
    kind = _kind(info.dtype)
    if array.dtype.kind not in _ACCEPTED_KINDS.get(kind, "") and array.size:
        raise invalid_argument(f"input '{key}' expects {info.dtype.name} values, got {_describe_kind(array)}")
    if _holds_booleans(array, value):
        raise invalid_argument(f"input '{key}' expects {info.dtype.name} values, got booleans among its numbers")
    _check_integer_range(key, info, array)
    return _converted(key, info, array)


def _holds_booleans(array: np.ndarray, value: Any) -> bool:
    """Whether numbers NumPy converted (to integers or floats) had JSON
    booleans among them."""
    if array.dtype.kind not in "iufc" or not array.size:
        return False
    leaves = np.asarray(value, dtype=object)
    return any(type(leaf) is bool for leaf in leaves.flat)


def _converted(key: str, info: TensorInfo, array: np.ndarray) -> np.ndarray:
    """`array` in the input's dtype; INVALID_ARGUMENT for finite numbers
    that the dtype could only hold as infinity (1e308 for float32)."""
    with np.errstate(over="ignore"):
        converted = array.astype(info.dtype.as_numpy_dtype, copy=False)
    if _kind(info.dtype) in "fc":
        overflowed = np.isinf(converted) & np.isfinite(array)
        if overflowed.any():
            bad, limit = array[overflowed][0], info.dtype.real_dtype.max
            raise invalid_argument(
                f"input '{key}' expects {info.dtype.name} values, got {bad} (outside [-{limit:.8g}, {limit:.8g}])"
            )
    return converted


def _kind(dtype: tf.DType) -> str:
    """The NumPy kind of a TensorFlow dtype; bfloat16 is floating point,
    though NumPy sees it as an opaque type."""
    if dtype.is_floating:
        return "f"
    return np.dtype(dtype.as_numpy_dtype).kind


def _check_integer_range(key: str, info: TensorInfo, array: np.ndarray) -> None:
    """Raises INVALID_ARGUMENT for integers the input's dtype cannot hold
    (instead of letting them wrap around)."""
    want = np.dtype(info.dtype.as_numpy_dtype)
    if want.kind not in "iu" or array.dtype.kind not in "iu" or not array.size:
        return
    limits = np.iinfo(want)
    low, high = array.min(), array.max()
    if low < limits.min or high > limits.max:
        bad = low if low < limits.min else high
        raise invalid_argument(
            f"input '{key}' expects {info.dtype.name} values, got {bad} (outside [{limits.min}, {limits.max}])"
        )


def _string_array(key: str, value: Any) -> np.ndarray:
    try:
        array = np.array(_decode_strings(value), dtype=object)
    except ValueError as err:
        raise invalid_argument(f"input '{key}': {err}") from err
    except RecursionError as err:
        raise invalid_argument(f"input '{key}' is nested too deeply") from err
    if not all(isinstance(item, bytes) for item in array.flat):  # NumPy keeps ragged lists as objects
        raise invalid_argument(f"input '{key}' is not a rectangular array of strings")
    return array


def _describe_kind(array: np.ndarray) -> str:
    return _KINDS.get(array.dtype.kind, "strings or objects" if array.dtype.kind in "OUS" else str(array.dtype))


def _decode_strings(value: Any) -> Any:
    """Nested lists with {"b64": ...} objects and text turned into bytes."""
    if isinstance(value, list):
        return [_decode_strings(item) for item in value]
    if isinstance(value, dict):
        if set(value) != {"b64"} or not isinstance(value["b64"], str):
            raise ValueError('a binary value must be {"b64": "<base64 string>"}')
        try:
            return base64.b64decode(value["b64"], validate=True)
        except binascii.Error as err:
            raise ValueError(f"invalid base64: {err}") from err
    if isinstance(value, str):
        return value.encode()
    raise ValueError(f"expects strings, got {type(value).__name__}")


def check_input_names(signature: Signature, keys) -> None:
    """Raises INVALID_ARGUMENT unless `keys` are the signature's input names."""
    missing = sorted(set(signature.inputs) - set(keys))
    unknown = set(keys) - set(signature.inputs)
    if missing or unknown:
        problems = ([f"missing {missing}"] if missing else []) + ([f"unknown {echo_names(unknown)}"] if unknown else [])
        raise invalid_argument(
            f"signature '{signature.name}' takes inputs {_describe_inputs(signature)}: " + ", ".join(problems)
        )


def _checked_shapes(signature: Signature, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    for key, value in inputs.items():
        signature.inputs[key].check(value)
    return inputs


def _describe_inputs(signature: Signature) -> str:
    return "{" + ", ".join(f"{k}: {v.describe()}" for k, v in sorted(signature.inputs.items())) + "}"


def check_decoded_size(decoded_bytes: int, max_bytes: int) -> None:
    """The server's one limit on what a request decodes to (its body once
    uncompressed, its inputs' arrays summed over all inputs).

    Raises:
      ServingError: RESOURCE_EXHAUSTED when `decoded_bytes` > `max_bytes`.
    """
    if decoded_bytes > max_bytes:
        raise resource_exhausted(
            f"the request would take {decoded_bytes} bytes or more once decoded, "
            f"more than the server's limit of {max_bytes} (--max_request_bytes)"
        )


def _array_bytes(array: np.ndarray) -> int:
    if array.dtype.kind == "O":
        return array.nbytes + sum(len(item) for item in array.flat)
    return array.nbytes


def proto_inputs(signature: Signature, protos, max_bytes: int) -> dict[str, np.ndarray]:
    """The arrays of a gRPC PredictRequest's inputs map.

    Every TensorProto is checked before any is decoded.

    Args:
      signature: the signature the inputs are for.
      protos: the request's map of input keys to TensorProtos.
      max_bytes: the most bytes all inputs together may take once decoded.

    Raises:
      ServingError: INVALID_ARGUMENT for a wrong name, dtype or shape, or a
        TensorProto that TensorFlow would refuse or read otherwise than the
        client meant (see `_check_tensor_proto`);
        RESOURCE_EXHAUSTED when the inputs would take more than `max_bytes`
        (a TensorProto with one value and a large shape fills the shape).
    """
    check_input_names(signature, protos)
    decoded = 0
    for key, proto in protos.items():
        info = signature.inputs[key]
        if proto.dtype != info.dtype.as_datatype_enum:
            raise invalid_argument(f"input '{key}' expects {info.dtype.name}, got {_dtype_name(proto.dtype)}")
        _check_tensor_proto(key, info.dtype, proto)
        decoded += _decoded_bytes(proto)
        check_decoded_size(decoded, max_bytes)
    return _checked_shapes(signature, {key: _ndarray(key, proto) for key, proto in protos.items()})


def _ndarray(key: str, proto: tensor_pb2.TensorProto) -> np.ndarray:
    try:
        return tf.make_ndarray(proto)
    except Exception as err:  # contents make_ndarray refuses beyond those checked
        raise invalid_argument(f"tensor parsing error: input '{key}': {err}") from err


def _dtype_name(dtype_enum: int) -> str:
    if not dtype_enum:
        return "no dtype"
    try:
        return tf.dtypes.as_dtype(dtype_enum).name
    except TypeError:  # a value no DataType has
        return f"an unknown dtype ({dtype_enum})"


# The TensorProto field holding the values of each dtype (tensor.proto).
_VALUE_FIELDS = {
    "half_val": ("float16", "bfloat16"),
    "float_val": ("float32",),
    "double_val": ("float64",),
    "int_val": ("int8", "int16", "int32", "uint8", "uint16", "qint8", "qint16", "qint32", "quint8", "quint16"),
    "int64_val": ("int64",),
    "uint32_val": ("uint32",),
    "uint64_val": ("uint64",),
    "bool_val": ("bool",),
    "string_val": ("string",),
    "scomplex_val": ("complex64",),
    "dcomplex_val": ("complex128",),
    "float8_val": ("float8_e5m2", "float8_e4m3fn"),
}
_FIELD_OF = {name: field for field, names in _VALUE_FIELDS.items() for name in names}
# TensorFlow's TensorShape::MaxDimensions().
MAX_RANK = 254


def _check_tensor_proto(key: str, dtype: tf.DType, proto: tensor_pb2.TensorProto) -> None:
    """Raises INVALID_ARGUMENT ("tensor parsing error", as TensorFlow Serving
    words it) for a TensorProto that Tensor::FromProto refuses (a negative
    dimension, too many dimensions or elements, tensor_content of the wrong
    length) or that it would read other than the client meant: values in
    another dtype's field (it reads zeros), in both tensor_content and a
    typed field (it ignores the field), or a count that is neither 0, 1 (which
    fills the shape) nor the element count (it drops or repeats values)."""
    shape = [dim.size for dim in proto.tensor_shape.dim]
    problem = _shape_problem(shape) or _values_problem(dtype, proto, shape)
    if problem:
        raise invalid_argument(f"tensor parsing error: input '{key}' {problem}")


def _shape_problem(shape: list[int]) -> str | None:
    if any(size < 0 for size in shape):
        return f"has shape {shape}: every dimension must be >= 0"
    if len(shape) > MAX_RANK:
        return f"has {len(shape)} dimensions, more than TensorFlow's {MAX_RANK}"
    if math.prod(shape) > np.iinfo(np.int64).max:
        return f"has shape {shape}, whose element count overflows int64"
    return None


def _values_problem(dtype: tf.DType, proto: tensor_pb2.TensorProto, shape: list[int]) -> str | None:
    field = _FIELD_OF.get(dtype.name)
    filled = [f.name for f, _ in proto.ListFields() if f.name.endswith("_val")]
    foreign = [name for name in filled if name != field]
    if foreign:
        home = f"{field} or tensor_content" if field else "tensor_content"
        return f"is {dtype.name} but has values in {foreign}: {dtype.name} values go in {home}"
    elements = math.prod(shape)
    if proto.tensor_content:
        return _content_problem(dtype, proto, elements, filled)
    numbers = len(getattr(proto, field)) if field else 0
    if dtype.is_complex and numbers % 2:
        return f"has {numbers} numbers in {field}: a complex value takes two"
    count = numbers // 2 if dtype.is_complex else numbers
    if count not in (0, 1, elements):
        return f"has {count} values for shape {shape} ({elements} elements): send {elements}, or 1 to fill the shape"
    return None


def _content_problem(dtype: tf.DType, proto: tensor_pb2.TensorProto, elements: int, filled: list[str]) -> str | None:
    if filled:
        return f"has values in both tensor_content and {filled[0]}: send them in one of the two"
    if dtype == tf.string:
        return "has tensor_content: string values go in string_val"
    if len(proto.tensor_content) != elements * dtype.size:
        return (
            f"has {len(proto.tensor_content)} bytes of tensor_content for {elements} {dtype.name} elements "
            f"({elements * dtype.size} bytes)"
        )
    return None


def _decoded_bytes(proto: tensor_pb2.TensorProto) -> int:
    """The bytes a checked TensorProto takes once decoded: values short of
    its shape are filled in with the last one."""
    elements = math.prod(dim.size for dim in proto.tensor_shape.dim)
    if proto.dtype != tf.string.as_datatype_enum:
        return elements * tf.dtypes.as_dtype(proto.dtype).size
    strings = proto.string_val
    filled = max(elements - len(strings), 0) * (len(strings[-1]) if strings else 0)
    return elements * np.dtype(object).itemsize + sum(len(s) for s in strings) + filled


def to_proto(array: np.ndarray) -> tensor_pb2.TensorProto:
    return tf.make_tensor_proto(array)


def json_outputs(form: str, outputs: dict[str, np.ndarray]) -> dict[str, Any]:
    """The REST response: {"predictions": rows} or {"outputs": columns}."""
    if form == "inputs":
        columns = {key: _to_json(key, value) for key, value in outputs.items()}
        return {"outputs": next(iter(columns.values())) if len(columns) == 1 else columns}
    batch = {value.shape[0] if value.ndim else None for value in outputs.values()}
    if len(batch) != 1 or None in batch:
        raise invalid_argument(
            "the row format needs every output to have the same first dimension "
            f'(got shapes { {k: list(v.shape) for k, v in outputs.items()} }); use the columnar format ("inputs")'
        )
    columns = {key: _to_json(key, value) for key, value in outputs.items()}
    if len(columns) == 1:
        return {"predictions": next(iter(columns.values()))}
    keys = list(columns)
    return {"predictions": [dict(zip(keys, row, strict=True)) for row in zip(*columns.values(), strict=True)]}


def _to_json(key: str, value: np.ndarray) -> Any:
    if value.dtype.kind in "OSU":
        return _encode_strings(value.tolist(), always_b64=key.endswith("_bytes"))
    return value.tolist()


def _encode_strings(value: Any, always_b64: bool) -> Any:
    if isinstance(value, list):
        return [_encode_strings(item, always_b64) for item in value]
    if isinstance(value, bytes):
        if not always_b64:
            try:
                return value.decode()
            except UnicodeDecodeError:
                pass
        return {"b64": base64.b64encode(value).decode()}
    return value
