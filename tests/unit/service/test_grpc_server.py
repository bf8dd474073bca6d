"""The gRPC front in-process (service/grpc/server.py), on a data plane of one fake model: the
six RPCs as tritonclient's stubs call them, errors as status codes, API keys, health, the
concurrency limit, reflection, and where it listens. The real server: tests/e2e/test_grpc.py."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable
from types import SimpleNamespace
from typing import Any

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client import CollectorRegistry
from tritonclient.grpc import service_pb2 as pb
from tritonclient.grpc import service_pb2_grpc as pb_grpc

from kiln.errors import ModelNotFound, ModelNotReady, Overloaded
from service.access import KeyRing
from service.codecs.tensors import InputSpec
from service.dataplane import Inference
from service.grpc.server import http_host, start
from service.settings import ServingSettings

Code = grpc.StatusCode
KEY = (("authorization", "Bearer s3cret"),)


def _feature(name: str, dtype: str) -> SimpleNamespace:
    return SimpleNamespace(name=name, dtype=dtype)


SUM = SimpleNamespace(
    name="sum",
    version="3",
    metadata=SimpleNamespace(
        name="sum",
        version="3",
        features=[_feature("a", "float32"), _feature("b", "float32")],
        outputs=[SimpleNamespace(name="total", dtype="float32", shape=[-1])],
    ),
    # what ServedModel derives from its metadata for the V2 fronts
    v2_inputs=[InputSpec("a", "FP32"), InputSpec("b", "FP32")],
    output_names=["total"],
)


class FakePlane:
    """What the front calls of :class:`service.dataplane.DataPlane`: one model, ``sum``."""

    def __init__(self, settings: ServingSettings) -> None:
        self.settings = settings
        self.models = {"sum": SUM}
        self.failed = {"broken": "model broken: its file is damaged"}
        self.problems: dict[str, str] = {}
        self.admitted: list[tuple[str, int, str]] = []
        self.errors: list[str] = []
        self.overloaded = False
        self.gate: asyncio.Event | None = None
        self.bug: Exception | None = None

    @property
    def ready(self) -> bool:  # as service.models.ModelSet.ready
        return bool(self.models) and not self.failed and not self.problems

    def get(self, name: str, version: str | None = None) -> Any:
        if name in self.failed:
            raise ModelNotReady(name, self.failed[name])
        if name != "sum" or version not in (None, "3"):
            raise ModelNotFound(name if version is None else f"{name}:{version}", ["sum"])
        return SUM

    async def admit(self, name: str, version: str | None, size: Any, protocol: str) -> None:
        if self.overloaded:
            raise Overloaded(name, "its queue is full")
        self.admitted.append((name, size, protocol))

    def record_error(self, name: str, exc: BaseException) -> None:
        self.errors.append(type(exc).__name__)

    async def infer(
        self, name: str, columns: dict[str, np.ndarray], rows: int, version: str | None = None
    ) -> Inference:
        if self.gate is not None:
            await self.gate.wait()
        if self.bug is not None:
            raise self.bug
        return Inference(SUM, {"total": columns["a"] + columns["b"]}, [], 0)  # type: ignore[arg-type]


def request(rows: int = 2, model: str = "sum") -> pb.ModelInferRequest:
    message = pb.ModelInferRequest(model_name=model, id="r1")
    for name in ("a", "b"):
        message.inputs.add(name=name, datatype="FP32", shape=[rows, 1])
        message.raw_input_contents.append(np.arange(rows, dtype="<f4").tobytes())
    return message


Body = Callable[[pb_grpc.GRPCInferenceServiceStub, grpc.aio.Channel, FakePlane], Awaitable[None]]


def serve(
    body: Body,
    *,
    keys: KeyRing | None = None,
    starting: bool = False,
    registry: CollectorRegistry | None = None,
    **env: Any,
) -> None:
    """Run ``body`` against a started front on a free loopback port, then stop it."""
    settings = ServingSettings(grpc_port=0, **env)
    plane = FakePlane(settings)
    registry = CollectorRegistry() if registry is None else registry

    async def main() -> None:
        front = await start(
            settings,
            lambda: None if starting else plane,  # type: ignore[arg-type,return-value]
            keys,
            host="127.0.0.1",
            port=0,
            registry=registry,
        )
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{front.port}") as channel:
                await asyncio.wait_for(
                    body(pb_grpc.GRPCInferenceServiceStub(channel), channel, plane), 20
                )
        finally:
            await front.stop(0)

    asyncio.run(main())


async def code_of(call: Awaitable[Any]) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    return caught.value.code(), caught.value.details() or ""


def test_the_six_rpcs() -> None:
    async def body(stub: Any, channel: Any, plane: FakePlane) -> None:
        assert (await stub.ServerLive(pb.ServerLiveRequest())).live
        assert not (await stub.ServerReady(pb.ServerReadyRequest())).ready  # one failed model
        assert (await stub.ModelReady(pb.ModelReadyRequest(name="sum"))).ready
        assert not (await stub.ModelReady(pb.ModelReadyRequest(name="broken"))).ready
        server = await stub.ServerMetadata(pb.ServerMetadataRequest())
        assert server.name == "kiln"
        assert list(server.extensions) == []
        meta = await stub.ModelMetadata(pb.ModelMetadataRequest(name="sum"))
        assert (meta.name, list(meta.versions), meta.platform) == ("sum", ["3"], "onnxruntime_onnx")
        assert [(t.name, t.datatype, list(t.shape)) for t in meta.inputs] == [
            ("a", "FP32", [-1, 1]),
            ("b", "FP32", [-1, 1]),
        ]
        message = request(3)
        answer = await stub.ModelInfer(message)
        assert (answer.model_name, answer.model_version, answer.id) == ("sum", "3", "r1")
        total = np.frombuffer(answer.raw_output_contents[0], "<f4")
        assert total.tolist() == [0.0, 2.0, 4.0]
        assert plane.admitted == [("sum", message.ByteSize(), "grpc")]

    serve(body)


def test_errors_are_status_codes_with_rests_messages() -> None:
    async def body(stub: Any, channel: Any, plane: FakePlane) -> None:
        code, details = await code_of(stub.ModelInfer(request(model="nope")))
        assert (code, details) == (Code.NOT_FOUND, "model 'nope' is not in the store (known: sum)")
        code, _ = await code_of(
            stub.ModelMetadata(pb.ModelMetadataRequest(name="sum", version="9"))
        )
        assert code is Code.NOT_FOUND
        code, details = await code_of(stub.ModelInfer(request(rows=10_001)))
        assert code is Code.RESOURCE_EXHAUSTED
        assert details == "input 'a' has 10001 rows, over the limit of 10000"
        bad = request()
        bad.inputs[1].name = "c"
        code, details = await code_of(stub.ModelInfer(bad))
        assert code is Code.INVALID_ARGUMENT
        assert details == "unknown input 'c' (the model's inputs: 'a', 'b')"
        plane.overloaded = True
        call = stub.ModelInfer(request())
        code, details = await code_of(call)
        assert (code, details) == (
            Code.UNAVAILABLE,
            "model 'sum' is overloaded: its queue is full; retry later",
        )
        assert ("grpc-retry-pushback-ms", "1000") in tuple(await call.trailing_metadata())
        assert plane.errors == ["ModelNotFound", "PayloadTooLarge", "InvalidInput", "Overloaded"]
        raw = channel.unary_unary("/inference.GRPCInferenceService/ModelInfer")
        code, details = await code_of(raw(b"\xff\xff\xff"))
        assert code is Code.INVALID_ARGUMENT
        assert details.startswith("the message is not a valid inference.ModelInferRequest")
        assert (await stub.ServerLive(pb.ServerLiveRequest())).live  # still serving

    serve(body)


def test_a_message_over_the_body_limit_is_refused() -> None:
    async def body(stub: Any, channel: Any, plane: FakePlane) -> None:
        code, _ = await code_of(stub.ModelInfer(request(rows=400)))
        assert code is Code.RESOURCE_EXHAUSTED
        assert plane.admitted == []

    serve(body, max_body_bytes=2048)


def test_while_starting_every_call_is_unavailable_and_health_not_serving() -> None:
    async def body(stub: Any, channel: Any, plane: FakePlane) -> None:
        code, details = await code_of(stub.ModelInfer(request()))
        assert (code, details) == (
            Code.UNAVAILABLE,
            "the service has not finished starting; retry shortly",
        )
        assert not (await stub.ServerReady(pb.ServerReadyRequest())).ready
        health = health_pb2_grpc.HealthStub(channel)
        answer = await health.Check(health_pb2.HealthCheckRequest(service=""))
        assert answer.status == health_pb2.HealthCheckResponse.NOT_SERVING

    serve(body, starting=True)


def test_health_follows_readiness_overall_and_per_model() -> None:
    async def body(stub: Any, channel: Any, plane: FakePlane) -> None:
        health = health_pb2_grpc.HealthStub(channel)

        async def status(service: str) -> int:
            answer = await health.Check(health_pb2.HealthCheckRequest(service=service))
            return int(answer.status)

        serving, not_serving = (
            health_pb2.HealthCheckResponse.SERVING,
            health_pb2.HealthCheckResponse.NOT_SERVING,
        )
        assert await status("") == not_serving  # "broken" failed: /readyz is 503
        assert await status("inference.GRPCInferenceService") == not_serving
        assert await status("sum") == serving
        assert await status("broken") == not_serving
        code, _ = await code_of(health.Check(health_pb2.HealthCheckRequest(service="other")))
        assert code is Code.NOT_FOUND
        plane.failed.clear()
        assert await status("") == serving
        plane.problems["metrics"] = "metrics directory is full"
        assert await status("") == not_serving
        assert await status("sum") == not_serving

    serve(body)


def test_api_keys_guard_all_but_health() -> None:
    async def body(stub: Any, channel: Any, plane: FakePlane) -> None:
        code, details = await code_of(stub.ModelInfer(request()))
        assert code is Code.UNAUTHENTICATED
        assert (
            details
            == "this service needs an API key: send the metadata authorization: Bearer <key>"
        )
        bad = (("authorization", "Bearer wrong"),)
        code, details = await code_of(
            stub.ModelMetadata(pb.ModelMetadataRequest(name="sum"), metadata=bad)
        )
        assert (code, details) == (Code.UNAUTHENTICATED, "the API key is not valid")
        assert (await stub.ModelInfer(request(), metadata=KEY)).model_name == "sum"
        assert (await stub.ServerLive(pb.ServerLiveRequest())).live
        health = health_pb2_grpc.HealthStub(channel)
        await health.Check(health_pb2.HealthCheckRequest(service="sum"))
        assert plane.admitted  # only the call with the key got in

    serve(body, keys=KeyRing(["s3cret"]))


def test_protect_health_closes_the_health_calls_too() -> None:
    async def body(stub: Any, channel: Any, plane: FakePlane) -> None:
        code, _ = await code_of(stub.ServerLive(pb.ServerLiveRequest()))
        assert code is Code.UNAUTHENTICATED
        health = health_pb2_grpc.HealthStub(channel)
        code, _ = await code_of(health.Check(health_pb2.HealthCheckRequest(service="")))
        assert code is Code.UNAUTHENTICATED
        assert (await stub.ServerLive(pb.ServerLiveRequest(), metadata=KEY)).live

    serve(body, keys=KeyRing(["s3cret"], protect_health=True))


def test_calls_past_the_concurrency_limit_are_resource_exhausted() -> None:
    async def body(stub: Any, channel: Any, plane: FakePlane) -> None:
        plane.gate = asyncio.Event()
        held = [stub.ModelInfer(request()) for _ in range(2)]
        while len(plane.admitted) < 2:  # both are in the model's queue
            await asyncio.sleep(0.01)
        code, details = await code_of(stub.ModelInfer(request()))
        assert code is Code.RESOURCE_EXHAUSTED
        assert details == "the server is at its limit of 2 concurrent requests; retry shortly"
        assert (await stub.ServerReady(pb.ServerReadyRequest())) is not None  # never limited
        plane.gate.set()
        for call in held:
            assert (await call).model_name == "sum"

    serve(body, max_concurrency=2)


@pytest.mark.parametrize("enabled", [False, True])
def test_reflection_only_when_asked_for(enabled: bool) -> None:
    from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

    async def body(stub: Any, channel: Any, plane: FakePlane) -> None:
        reflect = reflection_pb2_grpc.ServerReflectionStub(channel)
        call = reflect.ServerReflectionInfo()

        async def ask() -> Any:  # the write itself fails when the call has already ended
            await call.write(reflection_pb2.ServerReflectionRequest(list_services=""))
            return await call.read()

        if not enabled:
            code, _ = await code_of(ask())
            assert code is Code.UNIMPLEMENTED
            return
        answer = await ask()
        names = {s.name for s in answer.list_services_response.service}
        assert {"inference.GRPCInferenceService", "grpc.health.v1.Health"} <= names
        symbol = "inference.ModelInferRequest"
        await call.write(reflection_pb2.ServerReflectionRequest(file_containing_symbol=symbol))
        assert (await call.read()).file_descriptor_response.file_descriptor_proto
        await call.done_writing()

    serve(body, grpc_reflection=enabled)


def test_the_host_is_the_http_sockets() -> None:
    with socket.socket() as listening:
        listening.bind(("127.0.0.1", 0))
        listening.listen()
        assert http_host(["worker", "--fd", str(listening.fileno())]) == "127.0.0.1"
        assert listening.getsockname()[0] == "127.0.0.1"  # the HTTP socket is left open
    assert http_host(["worker"]) == "127.0.0.1"
    assert http_host(["worker", "--fd", "not-a-number"]) == "127.0.0.1"


def test_past_the_timeout_deadline_exceeded_and_a_bug_is_internal() -> None:
    async def body(stub: Any, channel: Any, plane: FakePlane) -> None:
        plane.gate = asyncio.Event()
        code, details = await code_of(stub.ModelInfer(request()))
        assert code is Code.DEADLINE_EXCEEDED
        assert details == "Not able to process the request in 0.2 seconds"
        plane.gate.set()
        plane.bug = RuntimeError("a bug of ours")
        code, details = await code_of(stub.ModelInfer(request()))
        assert (code, details) == (Code.INTERNAL, "internal error")
        plane.bug = None
        assert (await stub.ModelInfer(request())).model_name == "sum"

    serve(body, timeout=0.2)


def test_calls_are_counted_by_rpc_and_status() -> None:
    registry = CollectorRegistry()

    async def body(stub: Any, channel: Any, plane: FakePlane) -> None:
        await stub.ModelInfer(request())
        await stub.ModelInfer(request())
        await code_of(stub.ModelInfer(request(model="nope")))
        await stub.ServerLive(pb.ServerLiveRequest())

    serve(body, registry=registry)

    def count(method: str, code: str) -> float | None:
        labels = {"method": method, "code": code}
        return registry.get_sample_value("kiln_grpc_requests_total", labels)

    assert count("ModelInfer", "OK") == 2
    assert count("ModelInfer", "NOT_FOUND") == 1
    assert count("ServerLive", "OK") == 1


def test_stop_lets_calls_in_progress_finish_and_health_says_not_serving() -> None:
    settings = ServingSettings(grpc_port=0)
    plane = FakePlane(settings)
    plane.failed.clear()
    plane.gate = asyncio.Event()

    async def main() -> None:
        front = await start(
            settings, lambda: plane, host="127.0.0.1", port=0, registry=CollectorRegistry()
        )  # type: ignore[arg-type,return-value]
        async with grpc.aio.insecure_channel(f"127.0.0.1:{front.port}") as channel:
            stub = pb_grpc.GRPCInferenceServiceStub(channel)
            held = stub.ModelInfer(request())
            while not plane.admitted:
                await asyncio.sleep(0.01)
            stopping = asyncio.create_task(front.stop(5))
            await asyncio.sleep(0.2)
            assert front.health.statuses()[""] == health_pb2.HealthCheckResponse.NOT_SERVING
            plane.gate.set()
            assert (await held).model_name == "sum"  # finished within the grace period
            await asyncio.wait_for(stopping, 10)
            code, _ = await code_of(stub.ServerLive(pb.ServerLiveRequest(), timeout=2))
            assert code is Code.UNAVAILABLE  # the port is closed

    asyncio.run(main())
