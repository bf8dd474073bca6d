"""API keys over gRPC: the ``authorization`` metadata (``Bearer <key>``) opens what the same
REST route needs a key for, with the same message and UNAUTHENTICATED when it is missing or
wrong; grpc.health.v1 stays open as the REST health routes do; keys never reach the log."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from tritonclient.grpc import service_pb2, service_pb2_grpc

from tests.conftest import API_KEYS, CHURN_ROW, keyed_settings

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

CALL_S = 30
NUMERIC = ("tenure_months", "monthly_charge", "data_gb", "support_calls", "age")


def _infer_request() -> service_pb2.ModelInferRequest:
    request = service_pb2.ModelInferRequest(model_name="churn")
    for name, value in CHURN_ROW.items():
        tensor = request.inputs.add(name=name, shape=[1])
        if name in NUMERIC:
            tensor.datatype = "FP32"
            tensor.contents.fp32_contents.append(float("nan") if value is None else value)
        else:
            tensor.datatype = "BYTES"
            tensor.contents.bytes_contents.append(str(value).encode())
    return request


def _calls(
    stub: service_pb2_grpc.GRPCInferenceServiceStub, version: str
) -> list[tuple[str, Callable[..., Any], Any, str]]:
    """(name, method, request, the REST route that does the same) of every RPC."""
    return [
        ("ServerLive", stub.ServerLive, service_pb2.ServerLiveRequest(), "GET /v2/health/live"),
        ("ServerReady", stub.ServerReady, service_pb2.ServerReadyRequest(), "GET /v2/health/ready"),
        ("ServerMetadata", stub.ServerMetadata, service_pb2.ServerMetadataRequest(), "GET /v2"),
        ("ModelReady", stub.ModelReady, service_pb2.ModelReadyRequest(name="churn"),
         "GET /v2/models/churn/ready"),
        ("ModelReady-version", stub.ModelReady,
         service_pb2.ModelReadyRequest(name="churn", version=version),
         f"GET /v2/models/churn/versions/{version}/ready"),
        ("ModelMetadata", stub.ModelMetadata, service_pb2.ModelMetadataRequest(name="churn"),
         "GET /v2/models/churn"),
        ("ModelInfer", stub.ModelInfer, _infer_request(), "POST /v2/models/churn/infer"),
    ]  # fmt: skip


@pytest.fixture(scope="module")
def keyed(
    served_models: dict[str, Any], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, str, Path]]:
    """The real server with keys (one from the environment, two from a file): URL, gRPC
    target, log (the access log on)."""
    from tests.servers import kiln_grpc_server

    directory = tmp_path_factory.mktemp("grpc-keyed")
    log = directory / "server.log"
    with kiln_grpc_server(served_models, log, **keyed_settings(directory)) as (url, target):
        yield url, target, log


def _rest(url: str, route: str, headers: dict[str, str]) -> httpx.Response:
    method, path = route.split(" ")
    body = None
    if method == "POST":  # the REST answer to a bad key comes before the body is read
        body = b"{}"
    return httpx.request(method, url + path, content=body, headers=headers, timeout=CALL_S)


def test_each_rpc_needs_a_key_where_its_rest_route_does(
    keyed: tuple[str, str, Path], served_models: dict[str, Any]
) -> None:
    url, target, _ = keyed
    version = served_models["churn"].metadata.version
    needing = set()
    with grpc.insecure_channel(target) as channel:
        stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
        for name, call, request, route in _calls(stub, version):
            for sent in ([], [("authorization", "Bearer not-a-key")], [("authorization", "k")]):
                rest = _rest(url, route, dict(sent))
                if rest.status_code != 401:  # open on REST: open on gRPC
                    assert call(request, metadata=sent, timeout=CALL_S) is not None, name
                    continue
                with pytest.raises(grpc.RpcError) as caught:
                    call(request, metadata=sent, timeout=CALL_S)
                assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED, (name, sent)
                # REST's words, where gRPC's own are metadata, not a header
                said = rest.json()["error"].replace(
                    "header Authorization", "metadata authorization"
                )
                assert caught.value.details() == said, (name, sent)
                needing.add(name)
            for key in API_KEYS:
                answer = call(
                    request, metadata=[("authorization", f"Bearer {key}")], timeout=CALL_S
                )
                assert answer is not None, (name, key)
    # as on REST: health is open, metadata and inference need a key
    assert needing == {"ServerMetadata", "ModelReady", "ModelReady-version", "ModelMetadata",
                       "ModelInfer"}  # fmt: skip


def test_the_scheme_is_read_as_rest_reads_it(keyed: tuple[str, str, Path]) -> None:
    _, target, _ = keyed
    with grpc.insecure_channel(target) as channel:
        stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
        for value in (f"bearer {API_KEYS[0]}", f"BEARER {API_KEYS[1]}"):
            stub.ModelInfer(_infer_request(), metadata=[("authorization", value)], timeout=CALL_S)
        for value in (API_KEYS[0], f"Basic {API_KEYS[0]}", "Bearer ", f"Bearer {API_KEYS[0]}x"):
            with pytest.raises(grpc.RpcError) as caught:
                stub.ModelInfer(
                    _infer_request(), metadata=[("authorization", value)], timeout=CALL_S
                )
            assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED, value


def test_grpc_health_stays_open(keyed: tuple[str, str, Path]) -> None:
    _, target, _ = keyed
    with grpc.insecure_channel(target) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for service in ("", "churn"):
            answer = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=CALL_S)
            assert answer.status == health_pb2.HealthCheckResponse.SERVING


def test_keys_never_reach_the_log(keyed: tuple[str, str, Path]) -> None:
    _, target, log = keyed
    with grpc.insecure_channel(target) as channel:
        stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
        for key in (*API_KEYS, "a-wrong-key"):
            try:
                stub.ModelInfer(
                    _infer_request(), metadata=[("authorization", f"Bearer {key}")], timeout=CALL_S
                )
            except grpc.RpcError as refused:
                assert refused.code() == grpc.StatusCode.UNAUTHENTICATED
    text = log.read_text()
    for key in (*API_KEYS, "a-wrong-key"):
        assert key not in text


def test_protect_health_closes_grpc_health_too(
    served_models: dict[str, Any], tmp_path: Path
) -> None:
    from tests.servers import kiln_grpc_server

    settings = {"KILN_SERVE_API_KEYS": "k1,k2", "KILN_SERVE_PROTECT_HEALTH": "true"}
    with (
        kiln_grpc_server(served_models, tmp_path / "log", wait_for="/try", **settings) as (
            _,
            target,
        ),
        grpc.insecure_channel(target) as channel,
    ):
        health = health_pb2_grpc.HealthStub(channel)
        request = health_pb2.HealthCheckRequest(service="")
        with pytest.raises(grpc.RpcError) as caught:
            health.Check(request, timeout=CALL_S)
        assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
        ok = health.Check(request, metadata=[("authorization", "Bearer k2")], timeout=CALL_S)
        assert ok.status == health_pb2.HealthCheckResponse.SERVING
        stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
        with pytest.raises(grpc.RpcError) as live:
            stub.ServerLive(service_pb2.ServerLiveRequest(), timeout=CALL_S)
        assert live.value.code() == grpc.StatusCode.UNAUTHENTICATED


def test_a_malformed_message_without_a_key_is_refused_not_failed(
    keyed: tuple[str, str, Path],
) -> None:
    """The key is checked before the bytes are read as a message: no INTERNAL, no UNKNOWN."""
    _, target, _ = keyed
    with grpc.insecure_channel(target) as channel:
        call = channel.unary_unary(
            "/inference.GRPCInferenceService/ModelInfer",
            request_serializer=None,
            response_deserializer=None,
        )
        with pytest.raises(grpc.RpcError) as caught:
            call(b"\x0a\x05ab", timeout=CALL_S)
        assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED, caught.value.details()
        with pytest.raises(grpc.RpcError) as caught:
            call(
                b"\x0a\x05ab", metadata=[("authorization", f"Bearer {API_KEYS[0]}")], timeout=CALL_S
            )
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT, caught.value.details()
