"""Open Inference Protocol gRPC codec: a ``ModelInferRequest`` as model columns, output
arrays as a ``ModelInferResponse``, by the REST codec's rules (service/codecs/tensors.py).

Only the wire differs. Each input tensor becomes a :class:`service.codecs.tensors.Tensor` and
:func:`service.codecs.tensors.assemble` does the rest (inputs the model has, shapes ``[N]`` and
``[N, 1]``, datatypes, the row limit), so a request both fronts would refuse is refused with
the same message. An input carries its values either in ``raw_input_contents`` (one entry per
input, in the inputs' order: little-endian values, BYTES as 4-byte little-endian lengths each
followed by its bytes; ``tritonclient.grpc`` sends this) or in the typed ``contents`` field of
its datatype (``fp32_contents`` for FP32, ``bytes_contents`` for BYTES, ...); never both.

Outputs go back as ``raw_output_contents`` (what ``tritonclient.grpc`` reads; Triton answers
so) unless the request says otherwise: the request parameter ``binary_data_output`` false,
or ``binary_data`` false on every requested output, answers typed ``contents``. The protocol
allows one or the other for a whole response (``raw_output_contents`` is indexed like
``outputs``), so one output asking for raw makes them all raw. Parameters (``InferParameter``)
read as plain bool, int, float and str values, as in JSON.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import numpy as np

from kiln.errors import InvalidInput
from service.codecs import tensors
from service.grpc.proto import open_inference_grpc_pb2 as pb

__all__ = ["decode_request", "encode_response", "parameter", "parameters"]


def parameters(entries: Mapping[str, pb.InferParameter]) -> dict[str, Any]:
    """``InferParameter`` values as plain ones (an unset one is None)."""
    found: dict[str, Any] = {}
    if not entries:  # the usual case, and a third of the cost of the loop's set-up
        return found
    for key, value in entries.items():
        choice = value.WhichOneof("parameter_choice")
        found[key] = None if choice is None else getattr(value, choice)
    return found


def parameter(value: bool | int | float | str) -> pb.InferParameter:
    """A plain value as an ``InferParameter``."""
    if isinstance(value, bool):
        return pb.InferParameter(bool_param=value)
    if isinstance(value, int):
        return pb.InferParameter(int64_param=value)
    if isinstance(value, float):
        return pb.InferParameter(double_param=value)
    return pb.InferParameter(string_param=value)


def _contents(item: pb.ModelInferRequest.InferInputTensor, tensor: tensors.Tensor) -> None:
    """Fill ``tensor`` from the typed contents of ``item``."""
    field = tensors.TYPED_CONTENTS.get(item.datatype)
    others = [f.name for f, _ in item.contents.ListFields() if f.name != field]
    if others:
        wants = f"in {field}" if field else "only in raw_input_contents"
        raise InvalidInput(f"{tensor.where}: datatype {item.datatype} carries its values {wants}")
    if field is None:
        raise InvalidInput(f"{tensor.where}: datatype {item.datatype} has no typed contents")
    values = getattr(item.contents, field)
    if item.datatype in tensors.FLOAT_DTYPES:  # numbers by construction: no check one by one
        tensor.values = np.array(values, dtype=tensors.FLOAT_DTYPES[item.datatype])
    else:
        tensor.data = list(values)


def decode_request(
    request: pb.ModelInferRequest,
    inputs: list[tensors.InputSpec],
    *,
    max_rows: int,
    unknown_inputs: Literal["reject", "ignore"] = "reject",
) -> tensors.V2Request:
    """Decode a ``ModelInferRequest`` into one column per model feature, as REST decodes.

    Raises ``InvalidInput`` for a malformed request and ``PayloadTooLarge`` for one with more
    than ``max_rows`` rows.
    """
    params = parameters(request.parameters)
    requested = [{"name": o.name, "parameters": parameters(o.parameters)} for o in request.outputs]
    outputs = tensors.decode_outputs(requested, tensors.binary_default(params, True))
    items = request.inputs
    if not items:
        raise InvalidInput("request 'inputs' must be a non-empty list")
    raw = list(request.raw_input_contents)  # once: an index into the field copies the entry
    if raw and len(raw) != len(items):
        count = f"{len(raw)} entries for {len(items)} inputs"
        raise InvalidInput(f"raw_input_contents has {count}: one per input, or none")
    found: list[tensors.Tensor] = []
    # This loop runs once per input of every call: each field is read once (a read of a
    # message's field makes a new Python object), the shape as a slice (a third of list()'s
    # time).
    for index, item in enumerate(items):
        name, datatype, shape = item.name, item.datatype, item.shape[:]
        tensors.check_tensor(name, shape, datatype, parameters(item.parameters))
        tensor = tensors.Tensor(name, shape, datatype, None)
        if raw:
            if item.HasField("contents"):
                where = tensor.where
                raise InvalidInput(f"{where} has contents, and raw_input_contents is used")
            tensor.raw = raw[index]
        else:
            _contents(item, tensor)
        found.append(tensor)
    return tensors.assemble(
        found,
        inputs,
        request_id=request.id or None,
        outputs=outputs,
        parameters=params,
        max_rows=max_rows,
        unknown_inputs=unknown_inputs,
    )


def _typed(tensor: pb.ModelInferResponse.InferOutputTensor, array: np.ndarray) -> None:
    field = getattr(tensor.contents, tensors.TYPED_CONTENTS[tensor.datatype])
    items = array.reshape(-1).tolist()
    if array.dtype.kind in "OUS":  # BYTES, as tensors.wire_datatype decides
        field.extend(v if isinstance(v, bytes) else str(v).encode() for v in items)
    else:
        field.extend(items)


def encode_response(
    *,
    model_name: str,
    model_version: str,
    request_id: str | None,
    outputs: list[tuple[str, np.ndarray]],
    requested: list[tensors.RequestedOutput] | None,
    binary_default: bool,
    response_parameters: Mapping[str, bool | int | float | str] | None = None,
) -> pb.ModelInferResponse:
    """Output arrays as a ``ModelInferResponse``; the arguments as REST's
    :func:`service.codecs.v2.encode_response` takes them."""
    chosen = tensors.choose_outputs(outputs, requested, binary_default)
    raw = any(binary for _, _, binary in chosen)
    response = pb.ModelInferResponse(
        model_name=model_name, model_version=model_version, id=request_id or ""
    )
    for key, plain in (response_parameters or {}).items():
        response.parameters[key].CopyFrom(parameter(plain))
    for name, value, _ in chosen:
        array = np.asarray(value)
        datatype = tensors.wire_datatype(name, array)
        tensor = response.outputs.add(name=name, datatype=datatype, shape=array.shape)
        if raw:
            response.raw_output_contents.append(tensors.binary_bytes(array, datatype))
        else:
            _typed(tensor, array)
    return response
