"""Open Inference Protocol (KServe V2) REST codec, with Triton's binary tensor data extension.

Pure functions from request bytes to model columns and from output arrays to response bytes;
no HTTP server, no model. The wire format, as ``tritonclient.http`` speaks it by default:

A request body is a JSON object, optionally followed by a binary section. When the HTTP header
``Inference-Header-Content-Length`` is given, its value is the byte length of the JSON header
and the rest of the body is the binary section; without it the whole body is JSON::

    {"id": "42", "parameters": {"binary_data_output": true},
     "inputs": [{"name": "age", "shape": [2, 1], "datatype": "FP32", "data": [[31.0], [47.5]]},
                {"name": "city", "shape": [2], "datatype": "BYTES",
                 "parameters": {"binary_data_size": 14}}],
     "outputs": [{"name": "probabilities", "parameters": {"binary_data": true}}]}
    <14 bytes: per element a little-endian uint32 length, then that many UTF-8 bytes>

Each input is one model feature, of shape ``[N]`` or ``[N, 1]``; all share N, the row count.
An input carries either ``data`` (JSON numbers or strings, flat or nested row-major) or
``parameters.binary_data_size``: binary inputs take consecutive slices of the binary section in
the order the inputs appear, and together must use all of it. Numeric binary data is
little-endian, row-major, without padding.

An output is sent as binary when its request entry has ``"binary_data": true``; when the entry
does not say, or no outputs are listed, the request parameter ``binary_data_output`` decides.
The response is ``{"model_name", "model_version", "id"?, "outputs": [{"name", "datatype",
"shape", "data" | "parameters": {"binary_data_size"}}]}``, followed by the binary outputs'
bytes in output order; the server then sends the JSON header's length in the response header
``Inference-Header-Content-Length``. JSON cannot carry NaN or infinity: such values in a JSON
output are sent as ``null``.
"""

from __future__ import annotations

import reprlib
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import orjson

from kiln.errors import InvalidInput, PayloadTooLarge
from service.codecs.bounds import MAX_DEPTH, check_structure, free_form, structure_budget
from service.codecs.jsonkeys import ensure_unique_keys

__all__ = [
    "DATATYPES",
    "FEATURE_DATATYPES",
    "InputSpec",
    "RequestedOutput",
    "V2Request",
    "decode_request",
    "encode_response",
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
# numpy dtype (kind + itemsize, byte order dropped) -> wire datatype, for outputs.
_OUTPUT_DATATYPES = {dtype.str[1:]: name for name, dtype in _NUMERIC.items()} | {"b1": "BOOL"}
_LENGTH = struct.Struct("<I")

_repr = reprlib.Repr()
_repr.maxstring = _repr.maxother = 40
_repr.maxlist = _repr.maxdict = 4
_repr.maxlevel = 2


def _q(value: object) -> str:
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
class _Tensor:
    name: str
    shape: list[int]
    datatype: str
    data: Any  # the JSON "data", when not binary
    size: int | None  # parameters.binary_data_size
    raw: memoryview | None = None

    @property
    def where(self) -> str:
        return f"input {_q(self.name)}"


def _object(value: Any, what: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidInput(f"{what} must be a JSON object")
    return value


def _check_params(params: dict[str, Any], what: str) -> None:
    for key in params:
        if key.startswith("shared_memory") or key == "classification":
            raise InvalidInput(f"{what}: parameter {_q(key)} is not supported")


def _parse_tensor(item: Any, index: int) -> _Tensor:
    if not isinstance(item, dict):
        raise InvalidInput(f"inputs[{index}] must be a JSON object")
    name = item.get("name")
    if not isinstance(name, str):
        raise InvalidInput(f"inputs[{index}] needs a string 'name'")
    where = f"input {_q(name)}"
    shape = item.get("shape")
    if not isinstance(shape, list) or not all(type(d) is int and d >= 0 for d in shape):
        raise InvalidInput(f"{where}: 'shape' must be a list of non-negative integers")
    datatype = item.get("datatype")
    if not isinstance(datatype, str):
        raise InvalidInput(f"{where}: 'datatype' must be a string")
    if datatype not in _KNOWN_DATATYPES:
        raise InvalidInput(f"{where}: unknown datatype {_q(datatype)}")
    params = _object(item.get("parameters"), f"{where}: 'parameters'")
    _check_params(params, where)
    size = params.get("binary_data_size")
    if size is not None:
        if type(size) is not int or size < 0:
            raise InvalidInput(f"{where}: 'binary_data_size' must be a non-negative integer")
        if "data" in item:
            raise InvalidInput(f"{where} has both 'data' and 'binary_data_size'")
    elif "data" not in item:
        raise InvalidInput(f"{where} has neither 'data' nor 'parameters.binary_data_size'")
    return _Tensor(name, shape, datatype, item.get("data"), size)


def _rows(tensor: _Tensor, max_rows: int) -> int:
    shape = tensor.shape
    if not (len(shape) == 1 or (len(shape) == 2 and shape[1] == 1)):
        raise InvalidInput(f"{tensor.where}: shape {_q(shape)} must be [N] or [N, 1]")
    if shape[0] < 1:
        raise InvalidInput(f"{tensor.where}: shape {_q(shape)} has no rows")
    if shape[0] > max_rows:
        raise PayloadTooLarge(f"{tensor.where} has {shape[0]} rows, over the limit of {max_rows}")
    return shape[0]


def _flatten(tensor: _Tensor, rows: int) -> list[Any]:
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
    if len(flat) != rows:
        raise InvalidInput(
            f"{tensor.where} has {len(flat)} data elements, shape {_q(tensor.shape)} needs {rows}"
        )
    return flat


def _numeric_column(tensor: _Tensor, rows: int) -> np.ndarray:
    dtype = _NUMERIC[tensor.datatype]
    if tensor.raw is not None:
        need = rows * dtype.itemsize
        if len(tensor.raw) != need:
            got = len(tensor.raw)
            raise InvalidInput(f"{tensor.where}: {got} bytes of {tensor.datatype}, needs {need}")
        values: np.ndarray = np.frombuffer(tensor.raw, dtype=dtype)
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
            raise InvalidInput(f"{tensor.where}: data must be {kind}, got {_q(flat[bad])}")
        values = np.array(flat, dtype=np.float64)
    with np.errstate(over="ignore", invalid="ignore"):
        return values.astype(np.float32)


def _bytes_column(tensor: _Tensor, rows: int) -> np.ndarray:
    if tensor.raw is None:
        texts = _flatten(tensor, rows)
        bad = next((i for i, v in enumerate(texts) if not isinstance(v, str)), None)
        if bad is not None:
            raise InvalidInput(f"{tensor.where}: BYTES data must be strings, got {_q(texts[bad])}")
    else:
        raw, pos, texts = tensor.raw, 0, []
        while pos < len(raw) and len(texts) < rows:
            # Fewer than 4 bytes left: the length itself is cut off, so it counts as truncated.
            length = _LENGTH.unpack_from(raw, pos)[0] if len(raw) - pos >= 4 else len(raw)
            if length > len(raw) - pos - 4:
                raise InvalidInput(f"{tensor.where}: binary element {len(texts)} is truncated")
            try:
                texts.append(str(raw[pos + 4 : pos + 4 + length], "utf-8"))
            except UnicodeDecodeError:
                raise InvalidInput(f"{tensor.where}: element {len(texts)} is not UTF-8") from None
            pos += 4 + length
        if len(texts) != rows or pos != len(raw):
            raise InvalidInput(f"{tensor.where}: binary data is not exactly {rows} elements")
    column = np.empty(rows, dtype=object)
    column[:] = texts
    return column


def _column(tensor: _Tensor, spec: InputSpec, rows: int) -> np.ndarray:
    if spec.datatype == "BYTES" and tensor.datatype == "BYTES":
        return _bytes_column(tensor, rows)
    if spec.datatype != "BYTES" and tensor.datatype in _NUMERIC:
        return _numeric_column(tensor, rows)
    expected = "BYTES" if spec.datatype == "BYTES" else "FP32 (or another numeric datatype)"
    raise InvalidInput(f"{tensor.where} has datatype {tensor.datatype}, expected {expected}")


def _decode_outputs(raw: Any, binary_default: bool) -> list[RequestedOutput] | None:
    if raw is None or raw == []:
        return None
    if not isinstance(raw, list):
        raise InvalidInput("'outputs' must be a list")
    requested: dict[str, RequestedOutput] = {}
    for index, item in enumerate(raw):
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise InvalidInput(f"outputs[{index}] must be a JSON object with a string 'name'")
        where = f"output {_q(item['name'])}"
        params = _object(item.get("parameters"), f"{where}: 'parameters'")
        _check_params(params, where)
        binary = params.get("binary_data", binary_default)
        if not isinstance(binary, bool):
            raise InvalidInput(f"{where}: 'binary_data' must be a boolean")
        if item["name"] in requested:
            raise InvalidInput(f"{where} is requested twice")
        requested[item["name"]] = RequestedOutput(item["name"], binary)
    return list(requested.values())


def decode_request(
    body: bytes,
    inputs: list[InputSpec],
    *,
    header_length: int | None,
    max_rows: int,
    unknown_inputs: Literal["reject", "ignore"] = "reject",
) -> V2Request:
    """Decode a V2 inference request body into one column per model feature.

    ``header_length`` is the ``Inference-Header-Content-Length`` header (None when absent).
    Raises ``InvalidInput`` for any malformed request and ``PayloadTooLarge`` for one with
    more than ``max_rows`` rows; inputs the model does not have are an error unless
    ``unknown_inputs`` is ``"ignore"``.
    """
    split = len(body) if header_length is None else header_length
    if not 0 <= split <= len(body):
        where = f"outside the body of {len(body)} bytes"
        raise InvalidInput(f"Inference-Header-Content-Length {split} is {where}")
    binary = memoryview(body)[split:]
    header = body[:split] if split < len(body) else body
    what = f"a request of {max_rows:,} rows of {len(inputs)} inputs"
    check_structure(header, structure_budget(max_rows, len(inputs)), what)
    try:
        doc = orjson.loads(header)
    except orjson.JSONDecodeError as error:
        hint = "" if header_length is not None else " (binary data needs the header length)"
        raise InvalidInput(f"request is not valid JSON: {str(error)[:80]}{hint}") from None
    if not isinstance(doc, dict):
        raise InvalidInput("request must be a JSON object")
    request_id = doc.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise InvalidInput("request 'id' must be a string")
    parameters = _object(doc.get("parameters"), "request 'parameters'")
    binary_default = parameters.get("binary_data_output", False)
    if not isinstance(binary_default, bool):
        raise InvalidInput("request parameter 'binary_data_output' must be a boolean")
    outputs = _decode_outputs(doc.get("outputs"), binary_default)
    raw_inputs = doc.get("inputs")
    if not isinstance(raw_inputs, list) or not raw_inputs:
        raise InvalidInput("request 'inputs' must be a non-empty list")

    specs = {spec.name: spec for spec in inputs}
    tensors: dict[str, _Tensor] = {}
    offset = 0
    for index, item in enumerate(raw_inputs):
        tensor = _parse_tensor(item, index)
        if tensor.name in tensors:
            raise InvalidInput(f"{tensor.where} is given more than once")
        if tensor.name not in specs and unknown_inputs != "ignore":
            known = ", ".join(_q(name) for name in list(specs)[:5])
            more = ", ..." if len(specs) > 5 else ""
            raise InvalidInput(f"unknown {tensor.where} (the model's inputs: {known}{more})")
        if tensor.size is not None:
            left = len(binary) - offset
            if tensor.size > left:
                needs = f"needs {tensor.size} bytes, {left} left"
                raise InvalidInput(f"binary data for {tensor.where} is truncated: {needs}")
            tensor.raw = binary[offset : offset + tensor.size]
            offset += tensor.size
        tensors[tensor.name] = tensor
    if offset != len(binary):
        raise InvalidInput(f"{len(binary) - offset} bytes of binary data belong to no input")
    missing = [name for name in specs if name not in tensors]
    if missing:
        raise InvalidInput(f"missing input {_q(missing[0])} ({len(missing)} missing in all)")

    rows = 0
    for spec in inputs:
        tensor = tensors[spec.name]
        n = _rows(tensor, max_rows)
        if rows and n != rows:
            raise InvalidInput(f"{tensor.where} has {n} rows, earlier inputs have {rows}")
        rows = n
    columns = {spec.name: _column(tensors[spec.name], spec, rows) for spec in inputs}
    ensure_unique_keys(header, _members(doc))
    return V2Request(request_id, columns, rows, outputs, parameters)


def _members(doc: dict[str, Any]) -> int:
    """The object members of a decoded request, without walking the tensors' data (which holds
    numbers and strings once decoded); a count that misses some only makes
    ``ensure_unique_keys`` look closer, never wrongly pass. Every other value is free-form
    as far as bounds go (``parameters``, and fields the protocol does not define): walked
    within :mod:`service.codecs.bounds`'s limits, or ``InvalidInput``."""
    found = len(doc)
    for key, value in doc.items():
        if key not in ("inputs", "outputs"):
            found += free_form(value, f"request {_q(key)}")
    for key in ("inputs", "outputs"):
        for index, item in enumerate(doc.get(key) or ()):
            if isinstance(item, dict):
                found += len(item)
                for field, value in item.items():
                    if field != "data":
                        found += free_form(value, f"{key}[{index}].{field}")
    return found


def _wire_datatype(name: str, array: np.ndarray) -> str:
    if array.dtype.kind in "OUS":
        return "BYTES"
    datatype = _OUTPUT_DATATYPES.get(array.dtype.str[1:])
    if datatype is None:
        raise TypeError(f"output {name!r} has dtype {array.dtype}, which V2 cannot carry")
    return datatype


def _binary(array: np.ndarray, datatype: str) -> bytes:
    if datatype == "BYTES":  # bytes elements go through as they are
        items = [v if isinstance(v, bytes) else str(v).encode() for v in array.ravel().tolist()]
        return b"".join(_LENGTH.pack(len(item)) + item for item in items)
    return np.ascontiguousarray(array, array.dtype.newbyteorder("<")).tobytes()


def encode_response(
    *,
    model_name: str,
    model_version: str,
    request_id: str | None,
    outputs: list[tuple[str, np.ndarray]],
    requested: list[RequestedOutput] | None,
    binary_default: bool,
    parameters: Mapping[str, bool | int | float | str] | None = None,
) -> tuple[bytes, int | None]:
    """Encode output arrays as a V2 response body.

    ``requested`` None sends every output in the given order, binary iff ``binary_default``;
    otherwise only the requested ones, in requested order, each as it asked. ``parameters``:
    the response's own (the protocol allows only bool, number and string values). Returns
    the body and the JSON header's length, or None when no output is binary (all JSON).
    """
    arrays = dict(outputs)
    if requested is None:
        chosen = [(name, array, binary_default) for name, array in outputs]
    else:
        unknown = next((r.name for r in requested if r.name not in arrays), None)
        if unknown is not None:
            raise InvalidInput(f"unknown output {_q(unknown)}")
        chosen = [(r.name, arrays[r.name], r.binary) for r in requested]
    entries: list[dict[str, Any]] = []
    chunks: list[bytes] = []
    for name, value, binary in chosen:
        array = np.asarray(value)
        datatype = _wire_datatype(name, array)
        entry: dict[str, Any] = {"name": name, "datatype": datatype, "shape": list(array.shape)}
        if binary:
            chunk = _binary(array, datatype)
            chunks.append(chunk)
            entry["parameters"] = {"binary_data_size": len(chunk)}
        elif datatype == "BYTES":
            texts = array.ravel().tolist()
            entry["data"] = [
                v.decode(errors="replace") if isinstance(v, bytes) else str(v) for v in texts
            ]
        else:  # orjson writes native-endian C-contiguous arrays directly, NaN and inf as null
            entry["data"] = np.ascontiguousarray(array.reshape(-1), array.dtype.newbyteorder("="))
        entries.append(entry)
    doc: dict[str, Any] = {"model_name": model_name, "model_version": model_version}
    if request_id is not None:
        doc["id"] = request_id
    if parameters:
        doc["parameters"] = dict(parameters)
    doc["outputs"] = entries
    header = orjson.dumps(doc, option=orjson.OPT_SERIALIZE_NUMPY)
    if any(binary for _, _, binary in chosen):
        return header + b"".join(chunks), len(header)
    return header, None
