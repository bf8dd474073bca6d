"""The Open Inference Protocol over gRPC on the real server, as clients call it.

``tritonclient.grpc`` with its defaults (binary ``raw_input_contents``) makes every call of
``inference.GRPCInferenceService``; typed contents go through the stubs ``tritonclient.grpc``
ships (Triton's proto, wire-compatible with the official one). Every answer is compared with
the REST V2 route's for the same rows, from ``tritonclient.http`` against the same server:
the same outputs, the same warnings, the same metadata. Then many concurrent calls, the
shared batcher (a REST client and a gRPC client merge into the same ONNX Runtime calls), the
metrics, grpc.health.v1, and where the front listens.
"""

from __future__ import annotations

import csv
import json
import math
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import grpc
import httpx
import numpy as np
import psutil
import pytest
import tritonclient.grpc as triton_grpc
import tritonclient.http as triton_http
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client.parser import text_string_to_metric_families
from tritonclient.grpc import service_pb2, service_pb2_grpc
from tritonclient.utils import InferenceServerException

from kiln.artifact import ModelMetadata
from tests.conftest import REPO

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

MODELS = ("churn", "wine", "diabetes")
CALL_S = 30  # every call's deadline
CONCURRENT_CALLS = 200
THREADS = 16


# -- rows and tensors ----------------------------------------------------------------------


def _snake(name: str) -> str:
    """Column names as Kiln's trainer writes them for scikit-learn's bundled data."""
    return "".join(c if c.isalnum() else "_" for c in name.lower()).strip("_")


def data_rows(name: str, meta: ModelMetadata, count: int) -> list[dict[str, Any]]:
    """``count`` rows of the model's own training data (None: a missing value), by feature."""
    features = [f.name for f in meta.features]
    if name == "churn":
        with (REPO / "training" / "data" / "churn.csv").open(newline="") as fh:
            read = [row for _, row in zip(range(count), csv.DictReader(fh), strict=False)]
        kinds = {f.name: f.dtype for f in meta.features}
        return [
            {
                k: (None if row[k] == "" else float(row[k]) if kinds[k] == "float32" else row[k])
                for k in features
            }
            for row in read
        ]
    import sklearn.datasets

    frame = getattr(sklearn.datasets, f"load_{name}")(as_frame=True).frame
    frame = frame.rename(columns=_snake).head(count)
    return [{k: float(row[k]) for k in features} for _, row in frame.iterrows()]


def columns(meta: ModelMetadata, rows: list[dict[str, Any]]) -> dict[str, np.ndarray]:
    """One [N, 1] array per feature: float32 (NaN for None) or object (str; None as "")."""
    found = {}
    for feature in meta.features:
        values = [row[feature.name] for row in rows]
        if feature.dtype == "float32":
            found[feature.name] = np.array(
                [[math.nan if v is None else v] for v in values], np.float32
            )
        else:
            found[feature.name] = np.array([["" if v is None else v] for v in values], object)
    return found


def triton_inputs(module: Any, arrays: dict[str, np.ndarray], flat: bool = False) -> list[Any]:
    """tritonclient InferInputs (``module``: tritonclient.grpc or .http), binary by default;
    ``flat``: shape [N] rather than [N, 1]."""
    inputs = []
    for name, array in arrays.items():
        data = array.reshape(-1) if flat else array
        tensor = module.InferInput(
            name, list(data.shape), "BYTES" if data.dtype == object else "FP32"
        )
        tensor.set_data_from_numpy(data)
        inputs.append(tensor)
    return inputs


def typed_request(
    model: str, arrays: dict[str, np.ndarray], **fields: Any
) -> service_pb2.ModelInferRequest:
    """The same tensors in typed contents (fp32_contents, bytes_contents), no raw bytes."""
    request = service_pb2.ModelInferRequest(model_name=model, **fields)
    for name, array in arrays.items():
        tensor = request.inputs.add(name=name, shape=list(array.shape))
        if array.dtype == object:
            tensor.datatype = "BYTES"
            tensor.contents.bytes_contents.extend(str(v).encode() for v in array.reshape(-1))
        else:
            tensor.datatype = "FP32"
            tensor.contents.fp32_contents.extend(array.reshape(-1).tolist())
    return request


def response_arrays(response: service_pb2.ModelInferResponse) -> dict[str, np.ndarray]:
    """Every output of a response as an array, from raw_output_contents or typed contents."""
    found = {}
    for index, output in enumerate(response.outputs):
        shape = list(output.shape)
        if response.raw_output_contents:
            result = triton_grpc.InferResult(response)
            array = result.as_numpy(output.name)
        elif output.datatype == "BYTES":
            array = np.array(list(output.contents.bytes_contents), dtype=object)
        else:
            contents = output.contents
            typed = {"FP32": contents.fp32_contents, "FP64": contents.fp64_contents,
                     "INT64": contents.int64_contents, "INT32": contents.int_contents}  # fmt: skip
            dtype = {"FP32": np.float32, "FP64": np.float64, "INT64": np.int64,
                     "INT32": np.int32}[output.datatype]  # fmt: skip
            array = np.array(list(typed[output.datatype]), dtype=dtype)
        assert array is not None, (index, output.name)
        found[output.name] = array.reshape(shape)
    return found


def parameters(message: Any) -> dict[str, Any]:
    """A protobuf ``map<string, InferParameter>`` as plain values."""
    return {key: getattr(p, p.WhichOneof("parameter_choice")) for key, p in message.items()}


def assert_same_outputs(got: dict[str, np.ndarray], want: dict[str, np.ndarray]) -> None:
    assert list(got) == list(want)
    for name in want:
        assert got[name].dtype == want[name].dtype, name
        assert got[name].shape == want[name].shape, name
        # bit for bit: the same data plane ran the same rows (NaN is no model's answer)
        np.testing.assert_array_equal(got[name], want[name], strict=True)


# -- fixtures -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def grpc_server(
    served_models: dict[str, Any], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, str]]:
    """The real server with its gRPC front on a free port: (HTTP URL, gRPC target)."""
    from tests.servers import kiln_grpc_server

    log = tmp_path_factory.mktemp("grpc") / "server.log"
    with kiln_grpc_server(served_models, log) as (url, target):
        yield url, target


@pytest.fixture(scope="module")
def grpc_client(grpc_server: tuple[str, str]) -> Iterator[triton_grpc.InferenceServerClient]:
    client = triton_grpc.InferenceServerClient(grpc_server[1])
    yield client
    client.close()


@pytest.fixture(scope="module")
def http_client(grpc_server: tuple[str, str]) -> Iterator[triton_http.InferenceServerClient]:
    client = triton_http.InferenceServerClient(grpc_server[0].removeprefix("http://"))
    yield client
    client.close()


@pytest.fixture(scope="module")
def stub(grpc_server: tuple[str, str]) -> Iterator[service_pb2_grpc.GRPCInferenceServiceStub]:
    with grpc.insecure_channel(grpc_server[1]) as channel:
        yield service_pb2_grpc.GRPCInferenceServiceStub(channel)


def _meta(served_models: dict[str, Any], name: str) -> ModelMetadata:
    meta: ModelMetadata = served_models[name].metadata
    return meta


def _rest(
    client: triton_http.InferenceServerClient, model: str, arrays: dict[str, np.ndarray], **kw: Any
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """The REST V2 route's answer (binary tensors both ways): outputs and parameters."""
    result = client.infer(model, triton_inputs(triton_http, arrays), **kw)
    response = result.get_response()
    names = [o["name"] for o in response["outputs"]]
    return {n: result.as_numpy(n) for n in names}, response.get("parameters", {})


# -- the calls ------------------------------------------------------------------------------


def test_server_live_ready_and_metadata_as_rest_says(
    grpc_client: triton_grpc.InferenceServerClient, grpc_server: tuple[str, str]
) -> None:
    url = grpc_server[0]
    assert grpc_client.is_server_live(client_timeout=CALL_S) is True
    assert grpc_client.is_server_ready(client_timeout=CALL_S) is True
    got = grpc_client.get_server_metadata(client_timeout=CALL_S)
    rest = httpx.get(f"{url}/v2", timeout=CALL_S).json()
    assert (got.name, got.version) == (rest["name"], rest["version"])
    # binary_tensor_data is Triton's HTTP extension; gRPC carries raw contents by itself
    assert list(got.extensions) == [e for e in rest["extensions"] if e != "binary_tensor_data"]


@pytest.mark.parametrize("model", MODELS)
def test_model_ready_and_metadata_as_rest_says(
    model: str,
    grpc_client: triton_grpc.InferenceServerClient,
    grpc_server: tuple[str, str],
    served_models: dict[str, Any],
) -> None:
    url, version = grpc_server[0], _meta(served_models, model).version
    assert grpc_client.is_model_ready(model, client_timeout=CALL_S) is True
    assert grpc_client.is_model_ready(model, version, client_timeout=CALL_S) is True
    for asked in ("", version):
        got = grpc_client.get_model_metadata(model, asked, client_timeout=CALL_S)
        path = f"/v2/models/{model}" + (f"/versions/{asked}" if asked else "")
        rest = httpx.get(url + path, timeout=CALL_S).json()
        assert got.name == rest["name"] and list(got.versions) == rest["versions"]
        assert got.platform == rest["platform"]
        for side in ("inputs", "outputs"):
            tensors = [
                {"name": t.name, "datatype": t.datatype, "shape": list(t.shape)}
                for t in getattr(got, side)
            ]
            assert tensors == rest[side], side


def test_an_unknown_model_or_version_is_not_found(
    grpc_client: triton_grpc.InferenceServerClient, served_models: dict[str, Any]
) -> None:
    version = _meta(served_models, "churn").version
    for call in (
        lambda: grpc_client.is_model_ready("no-such-model", client_timeout=CALL_S),
        lambda: grpc_client.get_model_metadata("no-such-model", client_timeout=CALL_S),
        lambda: grpc_client.get_model_metadata("churn", "not-" + version, client_timeout=CALL_S),
    ):
        with pytest.raises(InferenceServerException) as caught:
            call()
        assert caught.value.status() == "StatusCode.NOT_FOUND", caught.value


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("flat", [False, True], ids=["shape-N-1", "shape-N"])
def test_binary_infer_answers_as_rest(
    model: str,
    flat: bool,
    grpc_client: triton_grpc.InferenceServerClient,
    http_client: triton_http.InferenceServerClient,
    served_models: dict[str, Any],
) -> None:
    """tritonclient.grpc's default: every input in raw_input_contents; churn's categories are
    BYTES inputs and its missing numbers NaN."""
    meta = _meta(served_models, model)
    arrays = columns(meta, data_rows(model, meta, 12))
    result = grpc_client.infer(
        model, triton_inputs(triton_grpc, arrays, flat), client_timeout=CALL_S
    )
    response = result.get_response()
    assert len(response.raw_output_contents) == len(response.outputs) > 0
    assert (response.model_name, response.model_version) == (meta.name, meta.version)
    want, want_parameters = _rest(http_client, model, arrays)
    assert_same_outputs(response_arrays(response), want)
    assert parameters(response.parameters) == want_parameters
    if model == "churn":
        assert any(np.isnan(arrays[f.name]).any() for f in meta.features if f.dtype == "float32")


@pytest.mark.parametrize("model", MODELS)
def test_typed_contents_answer_as_binary(
    model: str,
    stub: service_pb2_grpc.GRPCInferenceServiceStub,
    http_client: triton_http.InferenceServerClient,
    served_models: dict[str, Any],
) -> None:
    meta = _meta(served_models, model)
    arrays = columns(meta, data_rows(model, meta, 9))
    request = typed_request(model, {n: a.reshape(-1) for n, a in arrays.items()})
    assert not request.raw_input_contents
    response = stub.ModelInfer(request, timeout=CALL_S)
    want, _ = _rest(http_client, model, arrays)
    assert_same_outputs(response_arrays(response), want)
    # and typed contents back, when the request says binary_data_output false
    request.parameters["binary_data_output"].bool_param = False
    typed = stub.ModelInfer(request, timeout=CALL_S)
    assert not typed.raw_output_contents
    assert_same_outputs(response_arrays(typed), want)


def test_requested_outputs_and_the_id_come_back(
    grpc_client: triton_grpc.InferenceServerClient,
    stub: service_pb2_grpc.GRPCInferenceServiceStub,
    http_client: triton_http.InferenceServerClient,
    served_models: dict[str, Any],
) -> None:
    meta = _meta(served_models, "churn")
    arrays = columns(meta, data_rows("churn", meta, 5))
    names = [o.name for o in meta.outputs]
    assert len(names) >= 2
    for wanted in ([names[-1]], list(reversed(names))):
        result = grpc_client.infer(
            "churn",
            triton_inputs(triton_grpc, arrays),
            outputs=[triton_grpc.InferRequestedOutput(n) for n in wanted],
            request_id="order-42/é",
            client_timeout=CALL_S,
        )
        response = result.get_response()
        assert [o.name for o in response.outputs] == wanted
        assert response.id == "order-42/é"
        rest, _ = _rest(
            http_client,
            "churn",
            arrays,
            outputs=[triton_http.InferRequestedOutput(n) for n in wanted],
        )
        assert_same_outputs(response_arrays(response), rest)
    typed = stub.ModelInfer(
        typed_request("churn", arrays, id="typed-7", outputs=[{"name": names[0]}]),
        timeout=CALL_S,
    )
    assert typed.id == "typed-7" and [o.name for o in typed.outputs] == [names[0]]
    no_id = grpc_client.infer("churn", triton_inputs(triton_grpc, arrays), client_timeout=CALL_S)
    assert no_id.get_response().id == ""


def test_input_check_warnings_in_the_response_parameters(
    grpc_client: triton_grpc.InferenceServerClient,
    http_client: triton_http.InferenceServerClient,
    served_models: dict[str, Any],
) -> None:
    """churn checks in `warn` mode: an unseen category and an age out of range are answered,
    with the same warnings as REST's (a JSON string: parameters are scalars)."""
    meta = _meta(served_models, "churn")
    rows = data_rows("churn", meta, 3)
    rows[1] = {**rows[1], "plan": "gold", "age": 500.0}
    arrays = columns(meta, rows)
    result = grpc_client.infer("churn", triton_inputs(triton_grpc, arrays), client_timeout=CALL_S)
    got = parameters(result.get_response().parameters)
    _, want = _rest(http_client, "churn", arrays)
    assert got == want
    warnings = json.loads(got["warnings"])
    assert {(w["row"], w["feature"], w["reason"]) for w in warnings} >= {
        (1, "plan", "unseen_category"),
        (1, "age", "out_of_range"),
    }
    assert got["warning_count"] == len(warnings)


def test_many_concurrent_calls_each_get_their_own_answer(
    grpc_server: tuple[str, str],
    http_client: triton_http.InferenceServerClient,
    served_models: dict[str, Any],
) -> None:
    """200 calls over 16 threads on one channel, 1-4 rows each, some in typed contents: each
    answer is the slice of one REST answer over all the rows (batching merges the calls)."""
    meta = _meta(served_models, "churn")
    rows = data_rows("churn", meta, 300)
    arrays = columns(meta, rows)
    want, _ = _rest(http_client, "churn", arrays)
    client = triton_grpc.InferenceServerClient(grpc_server[1])
    deadline = time.monotonic() + 120

    def call(i: int) -> tuple[int, int, dict[str, np.ndarray]]:
        assert time.monotonic() < deadline, "the concurrent calls ran out of time"
        start, count = i % 290, 1 + i % 4
        part = {n: a[start : start + count] for n, a in arrays.items()}
        if i % 5 == 0:
            with grpc.insecure_channel(grpc_server[1]) as channel:
                response = service_pb2_grpc.GRPCInferenceServiceStub(channel).ModelInfer(
                    typed_request("churn", part), timeout=CALL_S
                )
        else:
            inputs = triton_inputs(triton_grpc, part)
            response = client.infer("churn", inputs, client_timeout=CALL_S).get_response()
        return start, count, response_arrays(response)

    try:
        with ThreadPoolExecutor(THREADS) as pool:
            answers = list(pool.map(call, range(CONCURRENT_CALLS), timeout=150))
    finally:
        client.close()
    assert len(answers) == CONCURRENT_CALLS
    for start, count, got in answers:
        assert_same_outputs(got, {n: a[start : start + count] for n, a in want.items()})


def _samples(url: str, family: str) -> dict[tuple[tuple[str, str], ...], float]:
    found = {}
    for metric in text_string_to_metric_families(httpx.get(f"{url}/metrics", timeout=CALL_S).text):
        for sample in metric.samples:
            if sample.name == family:
                found[tuple(sorted(sample.labels.items()))] = sample.value
    return found


def _one(samples: dict[tuple[tuple[str, str], ...], float], **labels: str) -> float:
    return sum(v for k, v in samples.items() if set(labels.items()) <= set(k))


def test_grpc_requests_are_counted_in_the_same_metrics(
    grpc_server: tuple[str, str],
    grpc_client: triton_grpc.InferenceServerClient,
    stub: service_pb2_grpc.GRPCInferenceServiceStub,
    served_models: dict[str, Any],
) -> None:
    url = grpc_server[0]
    meta = _meta(served_models, "wine")
    arrays = columns(meta, data_rows("wine", meta, 7))
    rows_before = _one(_samples(url, "kiln_rows_received_total"), model="wine")
    errors_before = _one(_samples(url, "kiln_request_errors_total"), model="wine")
    calls_before = _samples(url, "kiln_grpc_requests_total")
    grpc_client.infer("wine", triton_inputs(triton_grpc, arrays), client_timeout=CALL_S)
    bad = typed_request("wine", {n: a.reshape(-1) for n, a in arrays.items()})
    bad.inputs[0].shape[:] = [7, 2]
    with pytest.raises(grpc.RpcError):
        stub.ModelInfer(bad, timeout=CALL_S)
    assert _one(_samples(url, "kiln_rows_received_total"), model="wine") - rows_before == 7
    errors = _one(_samples(url, "kiln_request_errors_total"), model="wine")
    assert errors - errors_before == 1
    calls = _samples(url, "kiln_grpc_requests_total")
    for code in ("OK", "INVALID_ARGUMENT"):  # and the front's own count, by RPC and code
        moved = _one(calls, method="ModelInfer", code=code)
        assert moved - _one(calls_before, method="ModelInfer", code=code) == 1, code


def test_a_rest_client_and_a_grpc_client_share_the_batcher(
    grpc_server: tuple[str, str],
    grpc_client: triton_grpc.InferenceServerClient,
    served_models: dict[str, Any],
) -> None:
    """One REST client and one gRPC client, each sending one-row requests one after the
    other, at the same time. Each alone is a lone client, whose every request is its own
    ONNX Runtime call; only a batcher that both protocols share merges them into fewer."""
    url = grpc_server[0]
    meta = _meta(served_models, "diabetes")
    arrays = columns(meta, data_rows("diabetes", meta, 1))
    per_client, stop_at = 300, time.monotonic() + 60
    done = {"rest": 0, "grpc": 0}
    start = threading.Barrier(2, timeout=30)

    def rest() -> None:
        client = triton_http.InferenceServerClient(url.removeprefix("http://"))  # its thread's
        start.wait()
        try:
            while done["rest"] < per_client and time.monotonic() < stop_at:
                client.infer("diabetes", triton_inputs(triton_http, arrays))
                done["rest"] += 1
        finally:
            client.close()

    def over_grpc() -> None:
        start.wait()
        while done["grpc"] < per_client and time.monotonic() < stop_at:
            grpc_client.infer("diabetes", triton_inputs(triton_grpc, arrays), client_timeout=CALL_S)
            done["grpc"] += 1

    calls_before = _one(_samples(url, "kiln_batch_rows_count"), model="diabetes")
    with ThreadPoolExecutor(2) as pool:
        for future in [pool.submit(rest), pool.submit(over_grpc)]:
            future.result(timeout=90)
    calls = _one(_samples(url, "kiln_batch_rows_count"), model="diabetes") - calls_before
    requests = done["rest"] + done["grpc"]
    assert min(done.values()) >= 50, done
    assert calls < requests, (calls, done)


# -- health, and where it listens -----------------------------------------------------------


def test_grpc_health_serving_overall_and_per_model(grpc_server: tuple[str, str]) -> None:
    with grpc.insecure_channel(grpc_server[1]) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for service in ("", "inference.GRPCInferenceService", *MODELS):
            answer = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=CALL_S)
            assert answer.status == health_pb2.HealthCheckResponse.SERVING, service
        with pytest.raises(grpc.RpcError) as caught:
            health.Check(health_pb2.HealthCheckRequest(service="no-such-model"), timeout=CALL_S)
        assert caught.value.code() == grpc.StatusCode.NOT_FOUND


def test_reflection_is_off_by_default(grpc_server: tuple[str, str]) -> None:
    with grpc.insecure_channel(grpc_server[1]) as channel:
        reflect = channel.stream_stream(
            "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
            request_serializer=None,
            response_deserializer=None,
        )
        with pytest.raises(grpc.RpcError) as caught:
            list(reflect(iter([b""]), timeout=CALL_S))
        assert caught.value.code() == grpc.StatusCode.UNIMPLEMENTED


def test_the_grpc_front_listens_on_loopback_only(grpc_server: tuple[str, str]) -> None:
    port = int(grpc_server[1].rpartition(":")[2])
    found = {
        (c.laddr.ip, c.laddr.port)
        for c in psutil.net_connections(kind="inet")
        if c.status == psutil.CONN_LISTEN and c.laddr.port == port
    }
    # grpcio listens on an IPv6 socket bound to the IPv4-mapped loopback address
    assert found and all(ip in ("127.0.0.1", "::ffff:127.0.0.1") for ip, _ in found), found
