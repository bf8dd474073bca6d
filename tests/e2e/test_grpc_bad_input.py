"""Bad input over gRPC: the right status code, the same message as REST, and the server keeps
serving.

Each case is one request in two forms built from the same description: a ModelInferRequest
(typed contents, or raw_input_contents where the case is about binary data) and the V2 REST
request that says the same (JSON, or the binary extension), both sent to one real server with
tight limits. The gRPC status is the REST status mapped (400 and 422 INVALID_ARGUMENT, 404
NOT_FOUND, 413 RESOURCE_EXHAUSTED) and the message is REST's ``error``, word for word. Then
what only gRPC can get wrong: bytes that are no ModelInferRequest (sent through a raw
channel with identity serializers), a message over the size limit (grpc's own
RESOURCE_EXHAUSTED), raw and typed contents mixed, a raw section per input miscounted. After
every bad call a good one is answered.
"""

from __future__ import annotations

import json
import random
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import Any

import grpc
import httpx
import pytest
from tritonclient.grpc import service_pb2, service_pb2_grpc

from tests.conftest import CHURN_ROW

pytestmark = [pytest.mark.e2e]

MAX_ROWS = 20
MAX_BODY = 64 * 1024
CALL_S = 30
INFER = "/inference.GRPCInferenceService/ModelInfer"
# The REST status of a Kiln error -> its gRPC status code (the mapping).
CODES = {
    400: grpc.StatusCode.INVALID_ARGUMENT,
    404: grpc.StatusCode.NOT_FOUND,
    413: grpc.StatusCode.RESOURCE_EXHAUSTED,
    422: grpc.StatusCode.INVALID_ARGUMENT,
}
NUMERIC = ("tenure_months", "monthly_charge", "data_gb", "support_calls", "age")
ROW = {k: (0.0 if v is None else float(v) if k in NUMERIC else v) for k, v in CHURN_ROW.items()}


@dataclass
class Tensor:
    """One input as both protocols carry it; ``raw`` sends it as binary data."""

    name: str
    datatype: str
    shape: list[int]
    data: list[Any]
    raw: bytes | None = None
    parameters: dict[str, Any] = field(default_factory=dict)


def tensor(name: str, value: Any = None, **changes: Any) -> Tensor:
    value = ROW[name] if value is None else value
    datatype = "BYTES" if isinstance(value, str) else "FP32"
    return Tensor(**{"name": name, "datatype": datatype, "shape": [1], "data": [value], **changes})


def good(**replace: Tensor | None) -> list[Tensor]:
    """churn's inputs for ROW; ``replace``: a feature's tensor swapped (None: dropped)."""
    found = [replace.get(k, tensor(k)) for k in ROW]
    return [t for t in found if t is not None]


def fp32(*values: float) -> bytes:
    return struct.pack(f"<{len(values)}f", *values)


def texts(*values: bytes) -> bytes:
    return b"".join(struct.pack("<I", len(v)) + v for v in values)


@dataclass
class Case:
    inputs: list[Tensor]
    model: str = "churn"
    version: str = ""
    outputs: list[str] = field(default_factory=list)

    def tensors(self) -> list[Tensor]:
        """The inputs; when one is binary, all are (gRPC's raw_input_contents is one entry
        per input or none), the others' data as raw bytes."""
        if all(t.raw is None for t in self.inputs):
            return self.inputs
        return [t if t.raw is not None else replace(t, raw=_raw(t)) for t in self.inputs]

    def message(self) -> service_pb2.ModelInferRequest:
        request = service_pb2.ModelInferRequest(model_name=self.model, model_version=self.version)
        for t in self.tensors():
            entry = request.inputs.add(name=t.name, datatype=t.datatype, shape=t.shape)
            for key, value in t.parameters.items():
                _set(entry.parameters[key], value)
            if t.raw is not None:
                request.raw_input_contents.append(t.raw)
            elif t.datatype == "BYTES":
                entry.contents.bytes_contents.extend(str(v).encode() for v in t.data)
            elif t.datatype == "INT64":
                entry.contents.int64_contents.extend(t.data)
            elif t.datatype == "FP64":
                entry.contents.fp64_contents.extend(t.data)
            else:
                entry.contents.fp32_contents.extend(t.data)
        for name in self.outputs:
            request.outputs.add(name=name)
        return request

    def rest(self) -> tuple[str, bytes, dict[str, str]]:
        """(path, body, headers) of the same request over V2 REST."""
        path = f"/v2/models/{self.model}" + (f"/versions/{self.version}" if self.version else "")
        entries, chunks = [], []
        for t in self.tensors():
            entry: dict[str, Any] = {"name": t.name, "datatype": t.datatype, "shape": t.shape}
            params = dict(t.parameters)
            if t.raw is not None:
                params["binary_data_size"] = len(t.raw)
                chunks.append(t.raw)
            else:
                entry["data"] = t.data
            if params:
                entry["parameters"] = params
            entries.append(entry)
        doc: dict[str, Any] = {"inputs": entries}
        if self.outputs:
            doc["outputs"] = [{"name": n} for n in self.outputs]
        header = json.dumps(doc).encode()
        headers = {"Content-Type": "application/json"}
        if chunks:
            headers["Inference-Header-Content-Length"] = str(len(header))
        return f"{path}/infer", header + b"".join(chunks), headers


def _raw(t: Tensor) -> bytes:
    if t.datatype == "BYTES":
        return texts(*(str(v).encode() for v in t.data))
    return fp32(*t.data)


def _set(parameter: service_pb2.InferParameter, value: Any) -> None:
    if isinstance(value, bool):
        parameter.bool_param = value
    elif isinstance(value, int):
        parameter.int64_param = value
    else:
        parameter.string_param = str(value)


# fmt: off
# id -> a request that REST and gRPC must refuse alike
SAME_AS_REST: dict[str, Case] = {
    "shape-two-columns": Case(good(age=tensor("age", shape=[1, 2], data=[30.0, 31.0]))),
    "shape-three-dims": Case(good(age=tensor("age", shape=[1, 1, 1]))),
    "shape-no-rows": Case(good(age=tensor("age", shape=[0], data=[]))),
    "shape-more-than-data": Case([tensor(k, shape=[2]) for k in ROW]),
    "shape-negative": Case(good(age=tensor("age", shape=[-1]))),
    "unknown-datatype": Case(good(age=tensor("age", datatype="FP8"))),
    "no-inputs": Case([]),
    "rows-differ": Case(good(age=tensor("age", shape=[2], data=[30.0, 31.0]))),
    "bytes-for-a-number": Case(good(age=tensor("age", "thirty"))),
    "number-for-a-category": Case(good(plan=tensor("plan", 3.0))),
    "int64-for-a-category": Case(good(plan=tensor("plan", datatype="INT64", data=[3]))),
    "unknown-input": Case([*good(), tensor("colour", "red")]),
    "missing-input": Case(good(region=None)),
    "input-twice": Case([*good(), tensor("age")]),
    "unknown-output": Case(good(), outputs=["nope"]),
    "output-twice": Case(good(), outputs=["label", "label"]),
    "rows-over-the-limit": Case(
        [tensor(k, shape=[MAX_ROWS + 1], data=[v] * (MAX_ROWS + 1)) for k, v in ROW.items()]
    ),
    "not-finite": Case(good(age=tensor("age", raw=fp32(float("inf"))))),
    "shared-memory": Case(good(age=tensor("age", parameters={"shared_memory_region": "r"}))),
    "unknown-model": Case(good(), model="no-such-model"),
    "unknown-version": Case(good(), version="999999"),
    "raw-too-short": Case(good(age=tensor("age", raw=fp32(30.0)[:3]))),
    "raw-too-long": Case(good(age=tensor("age", raw=fp32(30.0, 31.0)))),
    "raw-bytes-truncated": Case(good(plan=tensor("plan", raw=texts(b"fiber")[:-2]))),
    "raw-bytes-not-utf8": Case(good(plan=tensor("plan", raw=texts(b"\xff\xfe")))),
    "raw-bytes-count": Case(good(plan=tensor("plan", raw=texts(b"fiber", b"basic")))),
}
# fmt: on

# Bytes that are no ModelInferRequest at all.
MALFORMED = {
    "truncated-tag": b"\xff",
    "truncated-varint": b"\x08",
    "length-past-the-end": b"\x0a\x05ab",
    "inputs-cut-short": b"\x2a\x01",  # field 5 (inputs): one byte promised, none sent
    "invalid-utf8-name": b"\x0a\x02\xff\xfe",  # model_name: proto3 strings are UTF-8
    "group-end-tag": b"\x0c",
    "noise": random.Random(16).randbytes(200),
}


@pytest.fixture(scope="module")
def strict_server(
    served_models: dict[str, Any], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, str]]:
    from tests.servers import kiln_grpc_server

    log = tmp_path_factory.mktemp("grpc-bad-input") / "server.log"
    limits = {
        "KILN_SERVE_MAX_ROWS_PER_REQUEST": str(MAX_ROWS),
        "KILN_SERVE_MAX_BODY_BYTES": str(MAX_BODY),
    }
    with kiln_grpc_server(served_models, log, **limits) as found:
        yield found


@pytest.fixture(scope="module")
def channel(strict_server: tuple[str, str]) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(strict_server[1]) as opened:
        yield opened


def _good_call(channel: grpc.Channel) -> None:
    """The server still answers: a good request, the same channel."""
    stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
    answer = stub.ModelInfer(Case(good()).message(), timeout=CALL_S)
    assert answer.model_name == "churn" and len(answer.outputs) >= 1


def _refusal(call: Any, *args: Any) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as caught:
        call(*args, timeout=CALL_S)
    return caught.value


def test_the_good_request_is_good_on_both(
    strict_server: tuple[str, str], channel: grpc.Channel
) -> None:
    path, body, headers = Case(good()).rest()
    assert httpx.post(strict_server[0] + path, content=body, headers=headers).status_code == 200
    _good_call(channel)


@pytest.mark.parametrize("case", list(SAME_AS_REST.values()), ids=list(SAME_AS_REST))
def test_refused_as_rest_refuses_it(
    case: Case, strict_server: tuple[str, str], channel: grpc.Channel
) -> None:
    path, body, headers = case.rest()
    rest = httpx.post(strict_server[0] + path, content=body, headers=headers, timeout=CALL_S)
    assert rest.status_code in CODES, rest.text
    stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
    refused = _refusal(stub.ModelInfer, case.message())
    assert refused.code() == CODES[rest.status_code], refused.details()
    assert refused.details() == rest.json()["error"]
    _good_call(channel)


@pytest.mark.parametrize("data", list(MALFORMED.values()), ids=list(MALFORMED))
@pytest.mark.parametrize("method", ["ModelInfer", "ModelMetadata", "ModelReady"])
def test_bytes_that_are_no_message_are_invalid_argument(
    method: str, data: bytes, channel: grpc.Channel
) -> None:
    call = channel.unary_unary(
        f"/inference.GRPCInferenceService/{method}",
        request_serializer=None,  # the bytes go as they are
        response_deserializer=None,
    )
    refused = _refusal(call, data)
    assert refused.code() == grpc.StatusCode.INVALID_ARGUMENT, (refused.code(), refused.details())
    assert refused.details()
    _good_call(channel)


def test_a_message_over_the_body_limit_is_resource_exhausted(channel: grpc.Channel) -> None:
    big = Case(good(plan=tensor("plan", "x" * MAX_BODY))).message()
    assert big.ByteSize() > MAX_BODY
    stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
    refused = _refusal(stub.ModelInfer, big)
    assert refused.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, refused.details()
    _good_call(channel)
    # just under the limit is read (and answered: an unseen category only warns)
    fits = Case(good(plan=tensor("plan", "x" * (MAX_BODY - 1024)))).message()
    assert fits.ByteSize() < MAX_BODY
    assert stub.ModelInfer(fits, timeout=CALL_S).outputs


def _grpc_only(inputs: list[Tensor], mutate: Any) -> service_pb2.ModelInferRequest:
    request = Case(inputs).message()
    mutate(request)
    return request


GRPC_ONLY = {
    # raw_input_contents is one entry per input, or none: 8 for 9 inputs is wrong
    "raw-entry-missing": lambda r: (
        r.raw_input_contents.extend(fp32(3.0) for _ in r.inputs),
        r.raw_input_contents.pop(),
        [t.ClearField("contents") for t in r.inputs],
    ),
    "raw-entry-extra": lambda r: (
        r.raw_input_contents.extend(fp32(3.0) for _ in range(len(r.inputs) + 1)),
        [t.ClearField("contents") for t in r.inputs],
    ),
    # raw and typed contents in one request: the protocol forbids the mix
    "raw-and-typed": lambda r: r.raw_input_contents.extend(
        fp32(3.0) if t.datatype == "FP32" else texts(b"x") for t in r.inputs
    ),
    "typed-in-the-wrong-field": lambda r: (
        r.inputs[0].contents.ClearField("fp32_contents"),
        r.inputs[0].contents.int64_contents.append(3),
    ),
    "no-contents": lambda r: r.inputs[0].ClearField("contents"),
    "no-model-name": lambda r: r.ClearField("model_name"),
    "bytes-not-utf8": lambda r: (
        r.inputs[5].contents.ClearField("bytes_contents"),
        r.inputs[5].contents.bytes_contents.append(b"\xff\xfe"),
    ),
}


@pytest.mark.parametrize("mutate", list(GRPC_ONLY.values()), ids=list(GRPC_ONLY))
def test_what_only_grpc_can_get_wrong_is_invalid_argument(
    mutate: Any, channel: grpc.Channel
) -> None:
    request = _grpc_only(good(), mutate)
    stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
    refused = _refusal(stub.ModelInfer, request)
    allowed = {grpc.StatusCode.INVALID_ARGUMENT}
    if not request.model_name:
        allowed.add(grpc.StatusCode.NOT_FOUND)
    assert refused.code() in allowed, (refused.code(), refused.details())
    assert refused.details()
    _good_call(channel)


def test_unknown_model_metadata_and_readiness_say_what_rest_says(
    strict_server: tuple[str, str], channel: grpc.Channel
) -> None:
    url = strict_server[0]
    stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
    for name, version, path in [
        ("no-such-model", "", "/v2/models/no-such-model"),
        ("churn", "999999", "/v2/models/churn/versions/999999"),
    ]:
        rest = httpx.get(url + path, timeout=CALL_S)
        assert rest.status_code == 404
        for call, request in [
            (stub.ModelMetadata, service_pb2.ModelMetadataRequest(name=name, version=version)),
            (stub.ModelReady, service_pb2.ModelReadyRequest(name=name, version=version)),
        ]:
            refused = _refusal(call, request)
            assert refused.code() == grpc.StatusCode.NOT_FOUND
            assert refused.details() == rest.json()["error"]
    _good_call(channel)
