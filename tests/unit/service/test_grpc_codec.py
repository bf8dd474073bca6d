"""The gRPC codec (service/grpc/codec.py): a ModelInferRequest as columns by the REST codec's
rules, every fault refused with REST's own message, and responses tritonclient.grpc reads."""

from __future__ import annotations

import struct
from typing import Any

import numpy as np
import orjson
import pytest
import tritonclient.grpc as triton
from tritonclient.grpc import service_pb2

from kiln.errors import InvalidInput, PayloadTooLarge
from service.codecs import tensors, v2
from service.grpc import codec
from service.grpc.proto import open_inference_grpc_pb2 as pb

SPECS = [tensors.InputSpec("size", "FP32"), tensors.InputSpec("city", "BYTES")]
MAX_ROWS = 100


def packed(texts: list[bytes]) -> bytes:
    return b"".join(struct.pack("<I", len(t)) + t for t in texts)


def raw_of(datatype: str, values: list[Any]) -> bytes:
    if datatype == "BYTES":
        return packed([v if isinstance(v, bytes) else v.encode() for v in values])
    return np.asarray(values, tensors._NUMERIC[datatype]).tobytes()


# A tensor as both fronts receive it: (name, datatype, shape, values).
Tensor = tuple[str, str, list[int], list[Any]]
GOOD: list[Tensor] = [("size", "FP32", [2, 1], [1.5, -3.0]), ("city", "BYTES", [2], ["Zürich", ""])]


def grpc_request(tensors: list[Tensor], *, raw: bool, **fields: Any) -> pb.ModelInferRequest:
    request = pb.ModelInferRequest(model_name="m", **fields)
    for name, datatype, shape, values in tensors:
        tensor = request.inputs.add(name=name, datatype=datatype, shape=shape)
        if raw:
            request.raw_input_contents.append(raw_of(datatype, values))
        elif datatype == "BYTES":
            tensor.contents.bytes_contents.extend(
                v if isinstance(v, bytes) else v.encode() for v in values
            )
        elif datatype.startswith("INT"):
            tensor.contents.int_contents.extend(values)
        else:  # FP32, FP64, and an unknown datatype (refused before its contents are read)
            field = "fp64_contents" if datatype == "FP64" else "fp32_contents"
            getattr(tensor.contents, field).extend(values)
    return request


def rest_body(tensors: list[Tensor], *, raw: bool) -> tuple[bytes, int | None]:
    inputs, binary = [], b""
    for name, datatype, shape, values in tensors:
        if raw:
            chunk = raw_of(datatype, values)
            binary += chunk
            entry = {"parameters": {"binary_data_size": len(chunk)}}
        else:
            entry = {"data": values}
        inputs.append({"name": name, "datatype": datatype, "shape": shape, **entry})
    header = orjson.dumps({"inputs": inputs})
    return header + binary, (len(header) if raw else None)


def decode_grpc(request: pb.ModelInferRequest) -> tensors.V2Request:
    return codec.decode_request(request, SPECS, max_rows=MAX_ROWS)


def refusals(tensors: list[Tensor], raw: bool) -> tuple[InvalidInput, InvalidInput]:
    """What REST and gRPC answer for the same tensors: both must refuse them."""
    body, header_length = rest_body(tensors, raw=raw)
    with pytest.raises(InvalidInput) as rest:
        v2.decode_request(body, SPECS, header_length=header_length, max_rows=MAX_ROWS)
    with pytest.raises(InvalidInput) as grpc_:
        decode_grpc(grpc_request(tensors, raw=raw))
    return rest.value, grpc_.value


@pytest.mark.parametrize("raw", [True, False], ids=["raw", "typed"])
@pytest.mark.parametrize(
    "case",
    [
        [GOOD[0]],  # missing input
        [*GOOD, ("colour", "FP32", [2], [1.0, 2.0])],  # unknown input
        [*GOOD, GOOD[0]],  # given twice
        [("size", "FP32", [1, 2], [1.0, 2.0]), ("city", "BYTES", [1], ["a"])],  # [N, 2]
        [("size", "FP32", [0], []), ("city", "BYTES", [0], [])],  # no rows
        [("size", "FP32", [101], [1.0] * 101), ("city", "BYTES", [101], ["a"] * 101)],  # rows
        [("size", "FP32", [3], [1.0, 2.0, 3.0]), GOOD[1]],  # rows differ
        [("size", "BYTES", [2], ["a", "b"]), GOOD[1]],  # BYTES for an FP32 feature
        [GOOD[0], ("city", "FP32", [2], [1.0, 2.0])],  # FP32 for a BYTES feature
        [("size", "FP32", [2], [1.0, 2.0, 3.0]), GOOD[1]],  # more values than the shape
        [GOOD[0], ("city", "BYTES", [2], [b"\xff", b"ok"])],  # not UTF-8
        [("size", "FP32", [-1], [1.0]), GOOD[1]],  # a negative dimension
        [("size", "COMPLEX", [2], [1.0, 2.0]), GOOD[1]],  # no such datatype
    ],
    ids=[
        "missing",
        "unknown",
        "twice",
        "shape",
        "no-rows",
        "too-many-rows",
        "rows-differ",
        "bytes-for-fp32",
        "fp32-for-bytes",
        "count",
        "utf8",
        "negative",
        "datatype",
    ],
)
def test_a_bad_request_is_refused_as_rest_refuses_it(case: list[Tensor], raw: bool) -> None:
    if raw and case[0][1] == "COMPLEX":
        pytest.skip("no binary layout for an unknown datatype")
    if not raw and any(isinstance(v, bytes) for *_, values in case for v in values):
        pytest.skip("JSON cannot carry bytes that are not UTF-8")
    rest, grpc_ = refusals(case, raw)
    assert (type(grpc_), str(grpc_)) == (type(rest), str(rest))


def test_too_many_rows_is_payload_too_large() -> None:
    tensors = [("size", "FP32", [101], [1.0] * 101), ("city", "BYTES", [101], ["a"] * 101)]
    with pytest.raises(PayloadTooLarge, match="101 rows, over the limit of 100"):
        decode_grpc(grpc_request(tensors, raw=True))


@pytest.mark.parametrize("raw", [True, False], ids=["raw", "typed"])
@pytest.mark.parametrize("shape", [[2], [2, 1]])
def test_raw_and_typed_contents_decode_to_the_same_columns(raw: bool, shape: list[int]) -> None:
    tensors = [("size", "FP32", shape, [1.5, -3.0]), ("city", "BYTES", shape, ["Zürich", ""])]
    decoded = decode_grpc(grpc_request(tensors, raw=raw, id="req-7"))
    assert decoded.rows == 2
    assert decoded.id == "req-7"
    np.testing.assert_array_equal(decoded.columns["size"], np.array([1.5, -3.0], np.float32))
    assert decoded.columns["size"].dtype == np.float32
    assert decoded.columns["city"].tolist() == ["Zürich", ""]
    body, header_length = rest_body(tensors, raw=raw)
    rest = v2.decode_request(body, SPECS, header_length=header_length, max_rows=MAX_ROWS)
    for name in ("size", "city"):
        np.testing.assert_array_equal(decoded.columns[name], rest.columns[name])


def test_other_numeric_datatypes_are_read_as_rest_reads_them() -> None:
    request = grpc_request([("size", "INT32", [2], [3, -4]), GOOD[1]], raw=False)
    assert decode_grpc(request).columns["size"].tolist() == [3.0, -4.0]
    request = grpc_request([("size", "FP64", [2], [0.5, 1e300]), GOOD[1]], raw=False)
    assert decode_grpc(request).columns["size"].tolist()[0] == 0.5
    request = grpc_request([("size", "INT8", [2], [3, 300]), GOOD[1]], raw=False)
    with pytest.raises(InvalidInput, match="integers in the range of INT8, got 300"):
        decode_grpc(request)


def test_contents_in_the_wrong_field_name_the_right_one() -> None:
    request = grpc_request(GOOD, raw=False)
    request.inputs[0].contents.int_contents.extend([1, 2])
    with pytest.raises(InvalidInput, match="datatype FP32 carries its values in fp32_contents"):
        decode_grpc(request)
    request = grpc_request([("size", "FP16", [2], [1.0, 2.0]), GOOD[1]], raw=True)
    request.ClearField("raw_input_contents")
    request.inputs[0].contents.fp32_contents.extend([1.0, 2.0])
    with pytest.raises(InvalidInput, match="FP16 carries its values only in raw_input_contents"):
        decode_grpc(request)


def test_bytes_contents_that_are_not_utf8_as_raw_ones() -> None:
    tensors = [GOOD[0], ("city", "BYTES", [2], ["ok", b"\xff"])]
    for raw in (True, False):
        with pytest.raises(InvalidInput, match=r"^input 'city': element 1 is not UTF-8$"):
            decode_grpc(grpc_request(tensors, raw=raw))


def test_raw_contents_are_one_per_input_and_exclude_typed_ones() -> None:
    request = grpc_request(GOOD, raw=True)
    request.raw_input_contents.append(b"1234")
    with pytest.raises(InvalidInput, match="raw_input_contents has 3 entries for 2 inputs"):
        decode_grpc(request)
    request = grpc_request(GOOD, raw=True)
    request.inputs[0].contents.fp32_contents.extend([1.5, -3.0])
    with pytest.raises(InvalidInput, match="'size' has contents, and raw_input_contents is used"):
        decode_grpc(request)
    with pytest.raises(InvalidInput, match="'inputs' must be a non-empty list"):
        decode_grpc(pb.ModelInferRequest(model_name="m"))


def test_parameters_are_plain_values_and_checked_as_rest_checks_them() -> None:
    request = grpc_request(GOOD, raw=True)
    request.parameters["binary_data_output"].bool_param = False
    request.parameters["priority"].int64_param = 3
    request.parameters["note"].string_param = "hi"
    decoded = decode_grpc(request)
    assert decoded.parameters == {"binary_data_output": False, "priority": 3, "note": "hi"}
    request.parameters["binary_data_output"].string_param = "yes"
    with pytest.raises(InvalidInput, match="'binary_data_output' must be a boolean"):
        decode_grpc(request)
    request = grpc_request(GOOD, raw=True)
    request.inputs[0].parameters["shared_memory_region"].string_param = "r"
    with pytest.raises(InvalidInput, match="parameter 'shared_memory_region' is not supported"):
        decode_grpc(request)


def test_requested_outputs_are_raw_unless_asked_otherwise() -> None:
    request = grpc_request(GOOD, raw=True)
    assert decode_grpc(request).outputs is None
    request.outputs.add(name="label")
    request.outputs.add(name="probabilities").parameters["binary_data"].bool_param = False
    assert decode_grpc(request).outputs == [
        tensors.RequestedOutput("label", True),
        tensors.RequestedOutput("probabilities", False),
    ]
    request.outputs.add(name="label")
    with pytest.raises(InvalidInput, match="output 'label' is requested twice"):
        decode_grpc(request)


OUTPUTS = [
    ("label", np.array(["yes", "no"], dtype=object)),
    ("probabilities", np.array([[0.25, 0.75], [0.5, 0.5]], np.float32)),
]


def as_triton(response: pb.ModelInferResponse) -> triton.InferResult:
    """Our message, parsed by tritonclient's own stubs, as tritonclient.grpc reads it."""
    return triton.InferResult(
        service_pb2.ModelInferResponse.FromString(response.SerializeToString())
    )


def encode(**kwargs: Any) -> pb.ModelInferResponse:
    fields: dict[str, Any] = {
        "model_name": "m",
        "model_version": "7",
        "request_id": "req-7",
        "outputs": OUTPUTS,
        "requested": None,
        "binary_default": True,
    }
    return codec.encode_response(**{**fields, **kwargs})


def test_raw_outputs_read_by_tritonclient() -> None:
    response = encode(response_parameters={"warnings": "[]", "warning_count": 0})
    assert len(response.raw_output_contents) == 2
    result = as_triton(response)
    assert result.as_numpy("label").tolist() == [b"yes", b"no"]
    np.testing.assert_array_equal(result.as_numpy("probabilities"), OUTPUTS[1][1], strict=True)
    answer = result.get_response()
    assert (answer.model_name, answer.model_version, answer.id) == ("m", "7", "req-7")
    params = codec.parameters(response.parameters)
    assert params == {"warnings": "[]", "warning_count": 0}


def test_typed_outputs_when_no_output_asks_for_raw() -> None:
    response = encode(binary_default=False, request_id=None)
    assert not response.raw_output_contents
    assert response.id == ""
    label, probabilities = response.outputs
    assert list(label.contents.bytes_contents) == [b"yes", b"no"]
    assert list(probabilities.contents.fp32_contents) == [0.25, 0.75, 0.5, 0.5]
    assert list(probabilities.shape) == [2, 2]


def test_requested_outputs_in_their_order_one_raw_makes_all_raw() -> None:
    wanted = tensors.RequestedOutput
    requested = [wanted("probabilities", False), wanted("label", True)]
    response = encode(requested=requested)
    assert [o.name for o in response.outputs] == ["probabilities", "label"]
    assert len(response.raw_output_contents) == 2
    with pytest.raises(InvalidInput, match="unknown output 'score'"):
        encode(requested=[tensors.RequestedOutput("score", True)])
