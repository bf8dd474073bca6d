"""The Open Inference Protocol's tensor rules, whatever the wire: REST (service/codecs/v2.py,
JSON and Triton's binary extension) and gRPC (service/grpc/codec.py) both parse a request into
:class:`Tensor` objects and plain values, and these functions do the rest, so both protocols
refuse the same requests with the same messages.

- Inputs: one per model feature (:class:`InputSpec`), each once, none unknown (unless
  ``unknown_features=ignore``), none missing; shape ``[N]`` or ``[N, 1]``, the same N for all
  (the row count, at most ``max_rows``); FP32 features take any numeric datatype (numbers,
  integers within their type's range, little-endian raw bytes), BYTES features BYTES (strings,
  UTF-8 bytes, or 4-byte little-endian lengths each followed by its bytes). :func:`assemble`.
- Outputs: every one, or those requested, each binary (raw) as its ``binary_data`` parameter
  says, else as the request parameter ``binary_data_output`` does (:func:`decode_outputs`,
  :func:`binary_default`, :func:`choose_outputs`); encoded by :func:`wire_datatype` and
  :func:`binary_bytes`.
- What both fronts answer alike: the input-check warnings as response parameters, the model's
  and the server's metadata.
"""

from __future__ import annotations

import reprlib
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import metadata as importlib_metadata
from typing import Any, Literal

import numpy as np
import orjson

from kiln.artifact import ModelMetadata
from kiln.checks import Finding, warnings_body
from kiln.errors import InvalidInput, PayloadTooLarge
from service.codecs.bounds import MAX_DEPTH

__all__ = [
    "DATATYPES",
    "FEATURE_DATATYPES",
    "FLOAT_DATATYPES",
    "FLOAT_DTYPES",
    "TYPED_CONTENTS",
    "InputSpec",
    "RequestedOutput",
    "Tensor",
    "V2Request",
    "as_object",
    "assemble",
    "binary_bytes",
    "binary_default",
    "check_known_outputs",
    "check_params",
    "check_tensor",
    "choose_outputs",
    "decode_outputs",
    "model_metadata",
    "quote",
    "response_parameters",
    "server_metadata",
    "wire_datatype",
]

# The V2 datatype of a model tensor, by the element type its metadata names
# (kiln.artifact: Feature.dtype, Output.dtype). Features are float32 or string.
FEATURE_DATATYPES: dict[str, Literal["FP32", "BYTES"]] = {"float32": "FP32", "string": "BYTES"}
DATATYPES: dict[str, str] = {**FEATURE_DATATYPES, "int64": "INT64"}

# Numeric wire datatypes an FP32 feature accepts, with their little-endian binary layout.
_NUMERIC: dict[str, np.dtype[Any]] = {
    name: np.dtype(code)
    for name, code in {
        "FP16": "<f2", "FP32": "<f4", "FP64": "<f8",
        "INT8": "i1", "INT16": "<i2", "INT32": "<i4", "INT64": "<i8",
        "UINT8": "u1", "UINT16": "<u2", "UINT32": "<u4", "UINT64": "<u8",
    }.items()
}  # fmt: skip
_KNOWN_DATATYPES = frozenset(_NUMERIC) | {"BOOL", "BYTES", "BF16"}
FLOAT_DATATYPES = frozenset(name for name, dtype in _NUMERIC.items() if dtype.kind == "f")
"""The float wire datatypes: an FP32 feature reads JSON numbers sent as any of them alike."""
# numpy dtype (kind + itemsize, byte order dropped) -> wire datatype, for outputs.
_OUTPUT_DATATYPES = {dtype.str[1:]: name for name, dtype in _NUMERIC.items()} | {"b1": "BOOL"}
_LENGTH = struct.Struct("<I")
_FLOAT32 = np.dtype(np.float32)
_PENDING = np.empty(0, dtype=np.float32)  # a column's place, kept in the inputs' order

TYPED_CONTENTS: dict[str, str] = {
    "BOOL": "bool_contents",
    "INT8": "int_contents",
    "INT16": "int_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "UINT8": "uint_contents",
    "UINT16": "uint_contents",
    "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
    "BYTES": "bytes_contents",
}
"""The gRPC protocol's ``InferTensorContents`` field of each datatype (service/grpc/codec.py);
FP16 and BF16 have none (raw contents only)."""
FLOAT_DTYPES: dict[str, np.dtype[Any]] = {
    name: dtype for name, dtype in _NUMERIC.items() if dtype.kind == "f" and name in TYPED_CONTENTS
}
"""The datatypes whose typed contents are floats: numbers by construction, read as an array."""

_repr = reprlib.Repr()
_repr.maxstring = _repr.maxother = 40
_repr.maxlist = _repr.maxdict = 4
_repr.maxlevel = 2


def quote(value: object) -> str:
    """A short repr of a client-sent value, safe to echo in an error message."""
    text = _repr.repr(value)
    return text if len(text) <= 45 else text[:40] + "..."


@dataclass(frozen=True)
class InputSpec:
    """One model feature: the input tensor of that name and the datatype the model wants."""

    name: str
    datatype: Literal["FP32", "BYTES"]

    @classmethod
    def of_feature(cls, name: str, dtype: str) -> InputSpec:
        """The input of a feature whose tensor's element type is ``dtype`` (float32, string)."""
        return cls(name, FEATURE_DATATYPES[dtype])


@dataclass(frozen=True)
class RequestedOutput:
    """An output the client asked for, and whether it is to come back as binary data."""

    name: str
    binary: bool


@dataclass(frozen=True)
class V2Request:
    """A decoded inference request.

    ``columns`` maps each feature name, in ``InputSpec`` order, to a 1-D array of ``rows``
    values: ``np.float32`` for FP32 features, an object array of ``str`` for BYTES features.
    ``outputs`` is None when the client asked for all outputs, each then binary iff the request
    parameter ``binary_data_output`` is true.
    """

    id: str | None
    columns: dict[str, np.ndarray]
    rows: int
    outputs: list[RequestedOutput] | None
    parameters: dict[str, Any]


@dataclass
class Tensor:
    """One input tensor as a request carries it, whatever the protocol: ``data`` a list of
    values (JSON ``data``, gRPC typed contents), or ``raw`` its little-endian bytes (the
    binary section, gRPC ``raw_input_contents``), or ``values`` an array already typed
    (gRPC ``fp32_contents``: numbers by construction)."""

    name: str
    shape: list[int]
    datatype: str
    data: Any  # the JSON "data", when not binary
    size: int | None = None  # parameters.binary_data_size (REST)
    raw: memoryview | bytes | None = None
    values: np.ndarray | None = None

    @property
    def where(self) -> str:
        return f"input {quote(self.name)}"


def as_object(value: Any, what: str) -> dict[str, Any]:
    """A JSON object member (None: empty), or ``InvalidInput`` naming ``what``."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidInput(f"{what} must be a JSON object")
    return value


def check_params(params: Mapping[str, Any], what: str) -> None:
    """Refuse the parameters of extensions Kiln does not implement (shared memory,
    classification), on an input or an output."""
    for key in params:
        if key.startswith("shared_memory") or key == "classification":
            raise InvalidInput(f"{what}: parameter {quote(key)} is not supported")


def check_tensor(name: str, shape: list[int], datatype: str, params: Mapping[str, Any]) -> None:
    """The checks on an input's header that do not depend on how it was encoded."""
    if shape and min(shape) < 0:
        raise InvalidInput(f"input {quote(name)}: 'shape' must be a list of non-negative integers")
    if datatype not in _KNOWN_DATATYPES:
        raise InvalidInput(f"input {quote(name)}: unknown datatype {quote(datatype)}")
    if params:  # the name quoted only when there is something to check (per input, per call)
        check_params(params, f"input {quote(name)}")


def _rows(tensor: Tensor, max_rows: int) -> int:
    shape = tensor.shape
    if not (len(shape) == 1 or (len(shape) == 2 and shape[1] == 1)):
        raise InvalidInput(f"{tensor.where}: shape {quote(shape)} must be [N] or [N, 1]")
    if shape[0] < 1:
        raise InvalidInput(f"{tensor.where}: shape {quote(shape)} has no rows")
    if shape[0] > max_rows:
        raise PayloadTooLarge(f"{tensor.where} has {shape[0]} rows, over the limit of {max_rows}")
    return shape[0]


def _flatten(tensor: Tensor, rows: int) -> list[Any]:
    """The JSON data as a flat row-major list of ``rows`` scalars; iterative, for deep nesting."""
    if not isinstance(tensor.data, list):
        raise InvalidInput(f"{tensor.where}: 'data' must be a list")
    flat: list[Any] = []
    stack = [iter(tensor.data)]
    while stack:
        for item in stack[-1]:
            if isinstance(item, list):
                if len(stack) == MAX_DEPTH:
                    raise InvalidInput(f"{tensor.where}: 'data' is nested too deeply")
                stack.append(iter(item))
                break
            flat.append(item)
        else:
            stack.pop()
    _check_count(tensor, len(flat), rows)
    return flat


def _check_count(tensor: Tensor, elements: int, rows: int) -> None:
    if elements != rows:
        needs = f"shape {quote(tensor.shape)} needs {rows}"
        raise InvalidInput(f"{tensor.where} has {elements} data elements, {needs}")


def _numeric_column(tensor: Tensor, rows: int) -> np.ndarray:
    dtype = _NUMERIC[tensor.datatype]
    if tensor.values is not None:
        _check_count(tensor, len(tensor.values), rows)
        values: np.ndarray = tensor.values
    elif tensor.raw is not None:
        need = rows * dtype.itemsize
        if len(tensor.raw) != need:
            got = len(tensor.raw)
            raise InvalidInput(f"{tensor.where}: {got} bytes of {tensor.datatype}, needs {need}")
        values = np.frombuffer(tensor.raw, dtype=dtype)
        if dtype == _FLOAT32:  # the usual case: a copy (the buffer is read-only), no cast
            return values.copy()
    else:
        flat = _flatten(tensor, rows)
        if dtype.kind == "f":
            ok = (type(v) is float or type(v) is int for v in flat)
            kind = "numbers"
        else:
            info = np.iinfo(dtype)
            ok = (type(v) is int and info.min <= v <= info.max for v in flat)
            kind = f"integers in the range of {tensor.datatype}"
        bad = next((i for i, good in enumerate(ok) if not good), None)
        if bad is not None:
            raise InvalidInput(f"{tensor.where}: data must be {kind}, got {quote(flat[bad])}")
        values = np.array(flat, dtype=np.float64)
    with np.errstate(over="ignore", invalid="ignore"):
        return values.astype(np.float32)


def _utf8(tensor: Tensor, index: int, value: str | bytes | memoryview) -> str:
    if isinstance(value, str):
        return value
    try:
        return str(value, "utf-8")
    except UnicodeDecodeError:
        raise InvalidInput(f"{tensor.where}: element {index} is not UTF-8") from None


def _split(tensor: Tensor, raw: memoryview | bytes, rows: int) -> list[str]:
    """BYTES raw contents as ``rows`` strings: each a 4-byte little-endian length, then that
    many bytes of UTF-8."""
    # By hand: each length says where the next element starts, so no vectorised reader (or
    # library) applies; this loop does the least per element (one unpack, one slice), and
    # the UTF-8 is decoded after it, in one pass.
    data = raw if isinstance(raw, bytes) else bytes(raw)  # slices of bytes are the cheapest
    end, pos = len(data), 0
    parts: list[bytes] = []
    append, unpack = parts.append, _LENGTH.unpack_from
    truncated = False
    for _ in range(rows):
        if pos >= end:
            break
        # Fewer than 4 bytes left: the length itself is cut off, so it counts as truncated.
        start = pos + 4
        if start > end:
            truncated = True
            break
        pos = start + unpack(data, start - 4)[0]
        if pos > end:
            truncated = True
            break
        append(data[start:pos])
    try:  # the element at fault is looked for only on failure
        texts = [part.decode() for part in parts]
    except UnicodeDecodeError:
        for index, part in enumerate(parts):
            _utf8(tensor, index, part)
        raise  # pragma: no cover (the loop raises)
    if truncated:
        raise InvalidInput(f"{tensor.where}: binary element {len(parts)} is truncated")
    if len(parts) != rows or pos != end:
        raise InvalidInput(f"{tensor.where}: binary data is not exactly {rows} elements")
    return texts


def _bytes_column(tensor: Tensor, rows: int) -> np.ndarray:
    if tensor.raw is None:
        texts = _flatten(tensor, rows)
        bad = next((i for i, v in enumerate(texts) if not isinstance(v, str)), None)
        if bad is not None and all(isinstance(v, str | bytes) for v in texts):
            texts = [_utf8(tensor, i, v) for i, v in enumerate(texts)]  # gRPC bytes_contents
        elif bad is not None:
            got = quote(texts[bad])
            raise InvalidInput(f"{tensor.where}: BYTES data must be strings, got {got}")
    else:
        texts = _split(tensor, tensor.raw, rows)
    column = np.empty(rows, dtype=object)
    column[:] = texts
    return column


def _column(tensor: Tensor, spec: InputSpec, rows: int) -> np.ndarray:
    if spec.datatype == "BYTES" and tensor.datatype == "BYTES":
        return _bytes_column(tensor, rows)
    if spec.datatype != "BYTES" and tensor.datatype in _NUMERIC:
        return _numeric_column(tensor, rows)
    expected = "BYTES" if spec.datatype == "BYTES" else "FP32 (or another numeric datatype)"
    raise InvalidInput(f"{tensor.where} has datatype {tensor.datatype}, expected {expected}")


def decode_outputs(raw: Any, binary_default: bool) -> list[RequestedOutput] | None:
    """The requested outputs (JSON objects ``{"name", "parameters"?}``); None: all of them.
    An output is binary as its ``binary_data`` parameter says, else ``binary_default``."""
    if raw is None or raw == []:
        return None
    if not isinstance(raw, list):
        raise InvalidInput("'outputs' must be a list")
    requested: dict[str, RequestedOutput] = {}
    for index, item in enumerate(raw):
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise InvalidInput(f"outputs[{index}] must be a JSON object with a string 'name'")
        where = f"output {quote(item['name'])}"
        params = as_object(item.get("parameters"), f"{where}: 'parameters'")
        check_params(params, where)
        binary = params.get("binary_data", binary_default)
        if not isinstance(binary, bool):
            raise InvalidInput(f"{where}: 'binary_data' must be a boolean")
        if item["name"] in requested:
            raise InvalidInput(f"{where} is requested twice")
        requested[item["name"]] = RequestedOutput(item["name"], binary)
    return list(requested.values())


def binary_default(parameters: Mapping[str, Any], default: bool) -> bool:
    """The request parameter ``binary_data_output``: whether outputs that do not say are sent
    as binary. REST's default is JSON (False), gRPC's raw contents (True, as Triton does)."""
    value = parameters.get("binary_data_output", default)
    if not isinstance(value, bool):
        raise InvalidInput("request parameter 'binary_data_output' must be a boolean")
    return value


def assemble(
    tensors: list[Tensor],
    inputs: list[InputSpec],
    *,
    request_id: str | None,
    outputs: list[RequestedOutput] | None,
    parameters: dict[str, Any],
    max_rows: int,
    unknown_inputs: Literal["reject", "ignore"] = "reject",
) -> V2Request:
    """A request's input tensors, in the order sent, as one column per model input: each
    input once, none unknown (unless ``unknown_inputs`` is ``"ignore"``), none missing, all
    of the same row count; ``InvalidInput`` (``PayloadTooLarge`` past ``max_rows``) else."""
    specs = {spec.name: spec for spec in inputs}
    named: dict[str, Tensor] = {}
    for tensor in tensors:
        if tensor.name in named:
            raise InvalidInput(f"{tensor.where} is given more than once")
        if tensor.name not in specs and unknown_inputs != "ignore":
            known = ", ".join(quote(name) for name in list(specs)[:5])
            more = ", ..." if len(specs) > 5 else ""
            raise InvalidInput(f"unknown {tensor.where} (the model's inputs: {known}{more})")
        named[tensor.name] = tensor
    missing = [name for name in specs if name not in named]
    if missing:
        raise InvalidInput(f"missing input {quote(missing[0])} ({len(missing)} missing in all)")

    rows = 0
    for spec in inputs:
        tensor = named[spec.name]
        n = _rows(tensor, max_rows)
        if rows and n != rows:
            raise InvalidInput(f"{tensor.where} has {n} rows, earlier inputs have {rows}")
        rows = n
    columns: dict[str, np.ndarray] = {}
    floats: list[tuple[str, memoryview | bytes]] = []
    need = rows * _FLOAT32.itemsize
    for spec in inputs:
        tensor = named[spec.name]
        raw = tensor.raw
        if raw is not None and tensor.datatype == spec.datatype == "FP32" and len(raw) == need:
            floats.append((spec.name, raw))
            columns[spec.name] = _PENDING  # filled below, in this order
        else:
            columns[spec.name] = _column(tensor, spec, rows)
    if floats:
        # The usual binary request: every FP32 input read in one copy (a numpy call per
        # input costs about a microsecond, which is most of a one-row call's decoding),
        # each column a row of the one block.
        block = np.frombuffer(b"".join([raw for _, raw in floats]), _FLOAT32)
        block = block.reshape(len(floats), rows).copy()
        for index, (name, _) in enumerate(floats):
            columns[name] = block[index]
    return V2Request(request_id, columns, rows, outputs, parameters)


def wire_datatype(name: str, array: np.ndarray) -> str:
    """The V2 datatype that carries an output array."""
    if array.dtype.kind in "OUS":
        return "BYTES"
    datatype = _OUTPUT_DATATYPES.get(array.dtype.str[1:])
    if datatype is None:
        raise TypeError(f"output {name!r} has dtype {array.dtype}, which V2 cannot carry")
    return datatype


class _Encoded(dict[str, bytes]):
    """Strings to their BYTES wire form (length prefix and UTF-8), each made on first use."""

    def __missing__(self, text: str) -> bytes:
        raw = text.encode()
        self[text] = found = _LENGTH.pack(len(raw)) + raw
        return found


def binary_bytes(array: np.ndarray, datatype: str) -> bytes:
    """An output's binary form: little-endian values, or BYTES as length-prefixed items."""
    if datatype == "BYTES":  # bytes elements go through as they are
        items = array.ravel().tolist()
        if len(items) > 8:
            # labels: few distinct values, each looked at and encoded once (a value is a str
            # exactly when its distinct value is: a set merges only equal values)
            distinct = set(items)
            if all(type(v) is str for v in distinct):
                encoded = _Encoded()
                return b"".join(map(encoded.__getitem__, items))
        items = [v if isinstance(v, bytes) else str(v).encode() for v in items]
        return b"".join(_LENGTH.pack(len(item)) + item for item in items)
    return np.ascontiguousarray(array, array.dtype.newbyteorder("<")).tobytes()


def choose_outputs(
    outputs: list[tuple[str, np.ndarray]],
    requested: list[RequestedOutput] | None,
    binary_default: bool,
) -> list[tuple[str, np.ndarray, bool]]:
    """The outputs to send, in order, each with whether it goes as binary: every one (binary
    iff ``binary_default``) when none was requested, else the requested ones as asked."""
    if requested is None:
        return [(name, array, binary_default) for name, array in outputs]
    arrays = dict(outputs)
    unknown = next((r.name for r in requested if r.name not in arrays), None)
    if unknown is not None:
        raise InvalidInput(f"unknown output {quote(unknown)}")
    return [(r.name, arrays[r.name], r.binary) for r in requested]


def response_parameters(warnings: list[Finding], count: int) -> dict[str, int | str] | None:
    """The input-check warnings of an answer as V2 response parameters: the protocol allows
    only bool, number and string values, so the list travels as a JSON string (in gRPC as a
    ``string_param``), beside ``warning_count``; None when there is nothing to say."""
    body = warnings_body(warnings, count)
    if not body:
        return None
    return {
        "warnings": orjson.dumps(body["warnings"]).decode(),
        "warning_count": body["warning_count"],
    }


def model_metadata(meta: ModelMetadata) -> dict[str, Any]:
    """A model's V2 metadata (``GET /v2/models/{name}``, gRPC ``ModelMetadata``)."""
    return {
        "name": meta.name,
        "versions": [meta.version],
        "platform": "onnxruntime_onnx",
        "inputs": [
            {"name": f.name, "datatype": DATATYPES[f.dtype], "shape": [-1, 1]}
            for f in meta.features
        ],
        "outputs": [
            {"name": o.name, "datatype": DATATYPES[o.dtype], "shape": o.shape} for o in meta.outputs
        ],
    }


def server_metadata(extensions: list[str]) -> dict[str, Any]:
    """The server's V2 metadata (``GET /v2``, gRPC ``ServerMetadata``); ``extensions``: the
    protocol extensions of that front (REST has ``binary_tensor_data``, gRPC none)."""
    try:
        version = importlib_metadata.version("kiln")
    except importlib_metadata.PackageNotFoundError:
        version = "unknown"
    return {"name": "kiln", "version": version, "extensions": extensions}


def check_known_outputs(requested: list[RequestedOutput] | None, known: list[str]) -> None:
    """Refuse a requested output the model does not have, before the model runs."""
    for wanted in requested or []:
        if wanted.name not in known:
            raise InvalidInput(f"unknown output {wanted.name!r}; the model has {', '.join(known)}")
