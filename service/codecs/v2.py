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

Only the wire is here: the rules that are not about JSON (inputs, shapes, datatypes, requested
outputs, metadata) are service/codecs/tensors.py's, which the gRPC front uses too.
"""

from __future__ import annotations

import functools
import itertools
import operator
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import orjson

from kiln.errors import InvalidInput
from kiln.values import by_identity
from service.codecs.bounds import MAX_ITEMS, check_structure, free_form, structure_budget
from service.codecs.jsonkeys import ensure_unique_keys
from service.codecs.tensors import (
    DATATYPES,
    FEATURE_DATATYPES,
    FLOAT_DATATYPES,
    InputSpec,
    RequestedOutput,
    Tensor,
    V2Request,
    as_object,
    assemble,
    binary_bytes,
    binary_default,
    check_tensor,
    choose_outputs,
    decode_outputs,
    quote,
    wire_datatype,
)

# The codec's own names, and the shared ones its callers (REST routes, tests) read through it.
__all__ = [
    "DATATYPES",
    "FEATURE_DATATYPES",
    "InputSpec",
    "RequestedOutput",
    "V2Request",
    "decode_request",
    "encode_response",
]


def _parse_tensor(item: Any, index: int) -> Tensor:
    if not isinstance(item, dict):
        raise InvalidInput(f"inputs[{index}] must be a JSON object")
    name = item.get("name")
    if not isinstance(name, str):
        raise InvalidInput(f"inputs[{index}] needs a string 'name'")
    # The input's name is quoted for a message only when there is one to give: per input of
    # every request, quoting cost more than the rest of these checks.
    shape = item.get("shape")
    if type(shape) is not list or not all(type(d) is int for d in shape):
        raise InvalidInput(f"input {quote(name)}: 'shape' must be a list of non-negative integers")
    datatype = item.get("datatype")
    if not isinstance(datatype, str):
        raise InvalidInput(f"input {quote(name)}: 'datatype' must be a string")
    params = item.get("parameters")
    if params is None:
        params = {}
    elif type(params) is not dict:
        params = as_object(params, f"input {quote(name)}: 'parameters'")
    check_tensor(name, shape, datatype, params)
    size = params.get("binary_data_size")
    if size is not None:
        where = f"input {quote(name)}"
        if type(size) is not int or size < 0:
            raise InvalidInput(f"{where}: 'binary_data_size' must be a non-negative integer")
        if "data" in item:
            raise InvalidInput(f"{where} has both 'data' and 'binary_data_size'")
    elif "data" not in item:
        where = f"input {quote(name)}"
        raise InvalidInput(f"{where} has neither 'data' nor 'parameters.binary_data_size'")
    return Tensor(name, shape, datatype, item.get("data"), size)


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
    if binary and len(header) <= _PLAN_HEADER_BYTES:
        plan = _binary_plan(header, by_identity(inputs, "v2", _Layout), max_rows)
        if plan is not None and len(binary) == plan.binary_bytes:
            return plan.request(binary)
    doc, request_id, parameters, outputs, raw_inputs = _header(
        header, len(inputs), max_rows, header_length
    )

    plain = _plain_inputs(raw_inputs, binary, inputs, max_rows)
    if plain is not None:
        columns, rows, members = plain
        ensure_unique_keys(header, members + _members(doc, skip_inputs=True))
        return V2Request(request_id, columns, rows, outputs, parameters)

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


def _header(
    header: bytes, inputs: int, max_rows: int, header_length: int | None
) -> tuple[dict[str, Any], str | None, dict[str, Any], list[RequestedOutput] | None, list[Any]]:
    """The JSON header's document, checked down to its inputs: (document, id, parameters,
    requested outputs, the raw inputs, a non-empty list)."""
    what = f"a request of {max_rows:,} rows of {inputs} inputs"
    check_structure(header, structure_budget(max_rows, inputs), what)
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
    parameters = as_object(doc.get("parameters"), "request 'parameters'")
    outputs = decode_outputs(doc.get("outputs"), binary_default(parameters, False))
    raw_inputs = doc.get("inputs")
    if not isinstance(raw_inputs, list) or not raw_inputs:
        raise InvalidInput("request 'inputs' must be a non-empty list")
    return doc, request_id, parameters, outputs, raw_inputs


# A client sends the same JSON header with every request of the same size: tritonclient
# writes the same inputs, shapes, sizes and outputs each time, only the binary data differs.
# What that header says is worked out once per distinct header (its bytes) and kept: a
# one-row request of 30 FP32 inputs spent about 50 us of its 240 in process parsing and
# checking it (bench/RESULTS.md). Only the usual binary form (every input raw FP32, as
# :func:`_plain_inputs` reads it) is kept, and only from headers of a bounded size, so the
# cache holds at most _PLANS x _PLAN_HEADER_BYTES.
_PLANS = 32
_PLAN_HEADER_BYTES = 256 * 1024


@dataclass(frozen=True)
class _Plan:
    """What a header of the usual binary form says: the request but for its binary data."""

    request_id: str | None
    layout: _Layout
    names: tuple[str, ...]  # the inputs in the order sent, each ``rows`` FP32 values
    rows: int
    outputs: tuple[RequestedOutput, ...] | None
    parameters: dict[str, Any]

    @property
    def binary_bytes(self) -> int:
        return 4 * self.rows * len(self.names)

    def request(self, binary: memoryview) -> V2Request:
        return V2Request(
            self.request_id,
            self.layout.from_binary(self.names, self.rows, binary),
            self.rows,
            None if self.outputs is None else list(self.outputs),
            dict(self.parameters),  # each request its own: a caller may change it
        )


@functools.lru_cache(maxsize=_PLANS)
def _binary_plan(header: bytes, layout: _Layout, max_rows: int) -> _Plan | None:
    """The plan of a header of the usual binary form, or None: any other header, valid or
    not, goes the whole way (:func:`decode_request`), which gives a bad one its message."""
    try:
        doc, request_id, parameters, outputs, raw_inputs = _header(
            header, len(layout.names), max_rows, len(header)
        )
        form = _plain_form(raw_inputs, True, layout, max_rows)
        if form is None:
            return None
        names, rows, _ = form
        ensure_unique_keys(header, 5 * len(names) + _members(doc, skip_inputs=True))
    except InvalidInput:
        return None
    listed = None if outputs is None else tuple(outputs)
    return _Plan(request_id, layout, names, rows, listed, parameters)


_PLAIN_NUMBERS = frozenset({float, int})  # exact types: a bool is not a number here


def _plain_inputs(
    raw_inputs: list[Any], binary: memoryview, inputs: list[InputSpec], max_rows: int
) -> tuple[dict[str, np.ndarray], int, int] | None:
    """The usual request's inputs as (columns, rows, object members), or None.

    Usual: one input per model feature and nothing else, all of one form: each with exactly
    ``name``, ``shape`` (the same for all: ``[N]`` or ``[N, 1]``, N within ``max_rows``),
    ``datatype`` and either ``data``, a flat list of N values (JSON numbers for an FP32
    feature, with a float datatype; strings for a BYTES one), or ``parameters``
    ``{"binary_data_size": 4 * N}``, FP32 raw data filling the binary section in order. That
    is what tritonclient and most clients send. The general path (``_parse_tensor``,
    ``assemble``) spends about 8 us per input on checks that such an input passes by
    construction, most of a one-row request of 30 features; here each check is one C-level
    pass over all the inputs (set and map over the fields), about 0.3 us per input. Anything
    else, valid or not, is None: the general path decodes it, and a bad request gets that
    path's message. The values are the general path's (JSON numbers as float64, then
    float32; raw FP32 as it is), which tests/unit/service/test_v2_codec.py holds it to."""
    layout = by_identity(inputs, "v2", _Layout)
    is_binary = len(binary) > 0
    form = _plain_form(raw_inputs, is_binary, layout, max_rows)
    if form is None:
        return None
    names, rows, (datatypes, payloads) = form
    count = len(names)
    if is_binary:
        if len(binary) != 4 * rows * count:
            return None
        return layout.from_binary(names, rows, binary), rows, 5 * count
    if set(map(type, payloads)) != {list} or set(map(len, payloads)) != {rows}:
        return None
    if layout.all_fp32 and set(datatypes) <= FLOAT_DATATYPES:  # the usual model: no strings
        values = list(itertools.chain.from_iterable(payloads))
        if not set(map(type, values)) <= _PLAIN_NUMBERS:
            return None
        return layout.ordered(names, _float32(values, count, rows)), rows, 4 * count
    specs = layout.specs
    columns: dict[str, np.ndarray] = {}
    numbers: list[tuple[str, list[Any]]] = []
    for name, datatype, data in zip(names, datatypes, payloads, strict=True):
        want = specs[name]
        if want == "FP32" and datatype in FLOAT_DATATYPES:
            numbers.append((name, data))
        elif want == "BYTES" and datatype == "BYTES":
            if set(map(type, data)) != {str}:
                return None
            column = np.empty(rows, dtype=object)
            column[:] = data
            columns[name] = column
        else:
            return None
    if numbers:
        values = list(itertools.chain.from_iterable(data for _, data in numbers))
        if not set(map(type, values)) <= _PLAIN_NUMBERS:
            return None
        typed = _float32(values, len(numbers), rows)
        columns.update((name, typed[i]) for i, (name, _) in enumerate(numbers))
    return {spec.name: columns[spec.name] for spec in inputs}, rows, 4 * count


def _plain_form(
    raw_inputs: list[Any], is_binary: bool, layout: _Layout, max_rows: int
) -> tuple[tuple[str, ...], int, tuple[tuple[Any, ...], tuple[Any, ...]]] | None:
    """What the JSON header alone tells of the usual request (:func:`_plain_inputs`): (the
    input names in the order sent, rows, (their datatypes, their data or parameters)), or
    None. A binary one is then complete but for the binary section's length."""
    # By hand: no library validates a JSON document this fast, and the rules are the
    # general path's, narrowed to what a few C-level operations can check.
    count = len(raw_inputs)
    if count != len(layout.names) or set(map(type, raw_inputs)) != {dict}:
        return None
    if set(map(len, raw_inputs)) != {4}:
        return None
    try:
        fields = list(map(_BINARY_FIELDS if is_binary else _JSON_FIELDS, raw_inputs))
        names, shapes, datatypes, payloads = zip(*fields, strict=True)
        given = set(names)
        distinct_shapes = set(map(tuple, shapes)) if set(map(type, shapes)) == {list} else None
    except (KeyError, TypeError):  # a field missing, or not hashable where it must be
        return None
    specs = layout.specs
    if len(given) != count or given != specs.keys() or distinct_shapes is None:
        return None
    # (Sets merge equal values: 4.0 and True would pass for 4 and 1, so types first.)
    if set(map(type, datatypes)) != {str}:
        return None
    if set(map(type, itertools.chain.from_iterable(shapes))) != {int}:
        return None
    if len(distinct_shapes) != 1:
        return None
    shape = next(iter(distinct_shapes))
    if not (len(shape) == 1 or (len(shape) == 2 and shape[1] == 1)):
        return None
    rows = shape[0]
    if not 1 <= rows <= max_rows:
        return None
    if is_binary:
        if set(datatypes) != {"FP32"} or not layout.all_fp32:
            return None
        if set(map(type, payloads)) != {dict} or set(map(len, payloads)) != {1}:
            return None
        try:
            sizes = list(map(_SIZE, payloads))
        except KeyError:
            return None
        if set(map(type, sizes)) != {int} or set(sizes) != {4 * rows}:
            return None
    return names, rows, (datatypes, payloads)


def _float32(values: list[Any], inputs: int, rows: int) -> np.ndarray:
    """JSON numbers as the general path types them: float64, then float32 (past its range:
    infinity, which the data plane refuses), one row per input."""
    block = np.array(values, dtype=np.float64).reshape(inputs, rows)
    with np.errstate(over="ignore", invalid="ignore"):
        return block.astype(np.float32)


class _Layout:
    """What the one-pass path needs of a model's inputs, made once per list (by_identity)."""

    def __init__(self, inputs: list[InputSpec]) -> None:
        self.specs = {spec.name: spec.datatype for spec in inputs}
        self.names = tuple(self.specs)
        self.all_fp32 = set(self.specs.values()) == {"FP32"}

    def from_binary(
        self, names: tuple[str, ...], rows: int, binary: memoryview
    ) -> dict[str, np.ndarray]:
        """The columns of raw FP32 data, ``rows`` values per input named in ``names``."""
        block = np.frombuffer(binary, np.float32).reshape(len(names), rows).copy()
        return self.ordered(names, block)

    def ordered(self, names: tuple[str, ...], block: np.ndarray) -> dict[str, np.ndarray]:
        """The rows of ``block``, one per input named in ``names``, in the model's order."""
        columns = dict(zip(names, block, strict=True))
        if names == self.names:  # sent in the model's order, as clients do
            return columns
        return {name: columns[name] for name in self.names}


_JSON_FIELDS = operator.itemgetter("name", "shape", "datatype", "data")
_BINARY_FIELDS = operator.itemgetter("name", "shape", "datatype", "parameters")
_SIZE = operator.itemgetter("binary_data_size")


def _members(doc: dict[str, Any], *, skip_inputs: bool = False) -> int:
    """The object members of a decoded request, without walking the tensors' data (which holds
    numbers and strings once decoded); a count that misses some only makes
    ``ensure_unique_keys`` look closer, never wrongly pass. Every other value is free-form
    as far as bounds go (``parameters``, and fields the protocol does not define): walked
    within :mod:`service.codecs.bounds`'s limits, or ``InvalidInput``. ``skip_inputs``: the
    inputs are counted already (:func:`_plain_inputs`)."""
    found = len(doc)
    for key, value in doc.items():
        if key not in ("inputs", "outputs"):
            found += free_form(value, f"request {quote(key)}")
    for key in ("outputs",) if skip_inputs else ("inputs", "outputs"):
        for index, item in enumerate(doc.get(key) or ()):
            if isinstance(item, dict):
                found += len(item)
                for field, value in item.items():
                    # Scalars hold no members, and an input's shape was checked to be a list
                    # of integers (only its length can be past the bound): walked, with a
                    # message built, only when there is something to walk.
                    if field == "data" or type(value) not in (dict, list):
                        continue
                    if field == "shape" and key == "inputs" and len(value) <= MAX_ITEMS:
                        continue
                    found += free_form(value, f"{key}[{index}].{field}")
    return found


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
