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

The rules that are not about JSON (which inputs a model takes, shapes ``[N]`` and ``[N, 1]``,
datatypes, requested outputs and their ``binary_data``, the request's parameters, the
warnings as response parameters, the model's metadata) are the functions below that take
:class:`Tensor` objects and plain values; the gRPC front (service/grpc/codec.py) builds the
same ``Tensor`` objects from a ``ModelInferRequest`` and calls them, so both protocols refuse
the same requests with the same messages.
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
from service.codecs.bounds import MAX_DEPTH, check_structure, free_form, structure_budget
from service.codecs.jsonkeys import ensure_unique_keys

__all__ = [
    "DATATYPES",
    "FEATURE_DATATYPES",
    "FLOAT_DTYPES",
    "TYPED_CONTENTS",
    "InputSpec",
    "RequestedOutput",
    "Tensor",
    "V2Request",
    "assemble",
    "binary_bytes",
    "binary_default",
    "check_known_outputs",
    "check_params",
    "check_tensor",
    "choose_outputs",
    "decode_outputs",
    "decode_request",
    "encode_response",
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
# numpy dtype (kind + itemsize, byte order dropped) -> wire datatype, for outputs.
_OUTPUT_DATATYPES = {dtype.str[1:]: name for name, dtype in _NUMERIC.items()} | {"b1": "BOOL"}
_LENGTH = struct.Struct("<I")

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


def _object(value: Any, what: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidInput(f"{what} must be a JSON object")
    return value


def check_params(params: Mapping[str, Any], what: str) -> None:
    """Refuse the parameters of extensions Kiln does not implement (shared memory,
    classification), on an input, an output or the request."""
    for key in params:
        if key.startswith("shared_memory") or key == "classification":
            raise InvalidInput(f"{what}: parameter {quote(key)} is not supported")


def _parse_tensor(item: Any, index: int) -> Tensor:
    if not isinstance(item, dict):
        raise InvalidInput(f"inputs[{index}] must be a JSON object")
    name = item.get("name")
    if not isinstance(name, str):
        raise InvalidInput(f"inputs[{index}] needs a string 'name'")
    where = f"input {quote(name)}"
    shape = item.get("shape")
    if not isinstance(shape, list) or not all(type(d) is int for d in shape):
        raise InvalidInput(f"{where}: 'shape' must be a list of non-negative integers")
    datatype = item.get("datatype")
    if not isinstance(datatype, str):
        raise InvalidInput(f"{where}: 'datatype' must be a string")
    params = _object(item.get("parameters"), f"{where}: 'parameters'")
    check_tensor(name, shape, datatype, params)
    size = params.get("binary_data_size")
    if size is not None:
        if type(size) is not int or size < 0:
            raise InvalidInput(f"{where}: 'binary_data_size' must be a non-negative integer")
        if "data" in item:
            raise InvalidInput(f"{where} has both 'data' and 'binary_data_size'")
    elif "data" not in item:
        raise InvalidInput(f"{where} has neither 'data' nor 'parameters.binary_data_size'")
    return Tensor(name, shape, datatype, item.get("data"), size)


def check_tensor(name: str, shape: list[int], datatype: str, params: Mapping[str, Any]) -> None:
    """The checks on an input's header that do not depend on how it was encoded."""
    if any(d < 0 for d in shape):
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
        raw, pos, texts = tensor.raw, 0, []
        while pos < len(raw) and len(texts) < rows:
            # Fewer than 4 bytes left: the length itself is cut off, so it counts as truncated.
            length = _LENGTH.unpack_from(raw, pos)[0] if len(raw) - pos >= 4 else len(raw)
            if length > len(raw) - pos - 4:
                raise InvalidInput(f"{tensor.where}: binary element {len(texts)} is truncated")
            texts.append(_utf8(tensor, len(texts), raw[pos + 4 : pos + 4 + length]))
            pos += 4 + length
        if len(texts) != rows or pos != len(raw):
            raise InvalidInput(f"{tensor.where}: binary data is not exactly {rows} elements")
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
        params = _object(item.get("parameters"), f"{where}: 'parameters'")
        check_params(params, where)
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
    outputs = decode_outputs(doc.get("outputs"), binary_default(parameters, False))
    raw_inputs = doc.get("inputs")
    if not isinstance(raw_inputs, list) or not raw_inputs:
        raise InvalidInput("request 'inputs' must be a non-empty list")

    tensors: list[Tensor] = []
    offset = 0
    for index, item in enumerate(raw_inputs):
        tensor = _parse_tensor(item, index)
        if tensor.size is not None:
            left = len(binary) - offset
            if tensor.size > left:
                needs = f"needs {tensor.size} bytes, {left} left"
                raise InvalidInput(f"binary data for {tensor.where} is truncated: {needs}")
            tensor.raw = binary[offset : offset + tensor.size]
            offset += tensor.size
        tensors.append(tensor)
    if offset != len(binary):
        raise InvalidInput(f"{len(binary) - offset} bytes of binary data belong to no input")
    decoded = assemble(
        tensors,
        inputs,
        request_id=request_id,
        outputs=outputs,
        parameters=parameters,
        max_rows=max_rows,
        unknown_inputs=unknown_inputs,
    )
    ensure_unique_keys(header, _members(doc))
    return decoded


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
    columns = {spec.name: _column(named[spec.name], spec, rows) for spec in inputs}
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
            found += free_form(value, f"request {quote(key)}")
    for key in ("inputs", "outputs"):
        for index, item in enumerate(doc.get(key) or ()):
            if isinstance(item, dict):
                found += len(item)
                for field, value in item.items():
                    if field != "data":
                        found += free_form(value, f"{key}[{index}].{field}")
    return found


def wire_datatype(name: str, array: np.ndarray) -> str:
    """The V2 datatype that carries an output array."""
    if array.dtype.kind in "OUS":
        return "BYTES"
    datatype = _OUTPUT_DATATYPES.get(array.dtype.str[1:])
    if datatype is None:
        raise TypeError(f"output {name!r} has dtype {array.dtype}, which V2 cannot carry")
    return datatype


def binary_bytes(array: np.ndarray, datatype: str) -> bytes:
    """An output's binary form: little-endian values, or BYTES as length-prefixed items."""
    if datatype == "BYTES":  # bytes elements go through as they are
        items = [v if isinstance(v, bytes) else str(v).encode() for v in array.ravel().tolist()]
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
    chosen = choose_outputs(outputs, requested, binary_default)
    entries: list[dict[str, Any]] = []
    chunks: list[bytes] = []
    for name, value, binary in chosen:
        array = np.asarray(value)
        datatype = wire_datatype(name, array)
        entry: dict[str, Any] = {"name": name, "datatype": datatype, "shape": list(array.shape)}
        if binary:
            chunk = binary_bytes(array, datatype)
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
