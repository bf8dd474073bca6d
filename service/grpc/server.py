"""The gRPC server of one worker: built and started on the worker's running event loop, and
stopped gracefully at shutdown (service/bento.py's start-up and shutdown hooks).

Every BentoML worker is its own process with its own data plane, so each starts its own
``grpc.aio`` server on the same port with ``SO_REUSEPORT``: the kernel spreads new
connections over the workers. A gRPC channel is one long-lived HTTP/2 connection, so all of
one channel's calls go to one worker; clients spread load with several channels. The host is
the HTTP server's (the address of the listening socket BentoML hands the worker), so
``--host 127.0.0.1`` keeps both ports on loopback (grpcio binds an IPv4 address on a
dual-stack socket: tools show ``::ffff:127.0.0.1``, which takes connections to 127.0.0.1
only). A message larger than ``KILN_SERVE_MAX_BODY_BYTES`` is refused by grpcio itself
(RESOURCE_EXHAUSTED) before it is parsed; one that does not parse as its RPC's request is
INVALID_ARGUMENT naming the message type (:func:`register`: grpcio alone would answer
UNKNOWN, as for a bug of the server's).
"""

from __future__ import annotations

import functools
import logging
import socket
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf.message import DecodeError, Message
from grpc_health.v1 import health_pb2, health_pb2_grpc

from kiln.errors import KilnError
from service.access import KeyRing
from service.dataplane import DataPlane
from service.grpc.health import SERVICE_NAME, Readiness
from service.grpc.keys import KeyInterceptor
from service.grpc.proto import open_inference_grpc_pb2 as pb
from service.grpc.servicer import CallCounter, InferenceServicer
from service.settings import ServingSettings

__all__ = ["GrpcFront", "http_host", "register", "start"]

log = logging.getLogger("kiln.service")

_LOOPBACK = "127.0.0.1"


def http_host(argv: list[str] | None = None) -> str:
    """The address the worker's HTTP socket listens on (BentoML passes it as ``--fd N``);
    loopback when there is none (the service run in-process)."""
    args = sys.argv if argv is None else argv
    try:
        fd = int(args[args.index("--fd") + 1])
    except (ValueError, IndexError):
        return _LOOPBACK
    try:
        # a duplicate, so that closing it leaves the HTTP server's socket alone
        with socket.socket(fileno=socket.dup(fd)) as listening:
            host = listening.getsockname()[0]
    except OSError:
        return _LOOPBACK
    return str(host)


@functools.cache
def _calls_family(registry: Any) -> Any:
    """``kiln_grpc_requests_total``, made once per registry (workers: BentoML's multiprocess
    one); its labels are this front's own RPC names and gRPC's status code names."""
    from prometheus_client import Counter

    return Counter(
        "kiln_grpc_requests_total",
        "Calls answered on the gRPC port, by RPC and status code (grpc.health.v1 not counted).",
        ["method", "code"],
        registry=registry,
    )


def call_counter(registry: Any = None) -> CallCounter:
    """A counter of answered calls in ``registry`` (None: the default one)."""
    if registry is None:
        from prometheus_client import REGISTRY

        registry = REGISTRY
    family = _calls_family(registry)
    children: dict[tuple[str, grpc.StatusCode], Any] = {}

    def count(method: str, code: grpc.StatusCode) -> None:
        child = children.get((method, code))
        if child is None:
            child = children[(method, code)] = family.labels(method, code.name)
        child.inc()

    return count


@dataclass(frozen=True)
class _Undecodable:
    """What the request deserializer hands on for bytes that are not its message."""

    problem: str


def _parser(message: type[Message]) -> Callable[[bytes], Message | _Undecodable]:
    def parse(data: bytes) -> Message | _Undecodable:
        try:
            return message.FromString(data)
        except DecodeError as exc:
            name = message.DESCRIPTOR.full_name
            return _Undecodable(f"the message is not a valid {name}: {exc}")

    return parse


def _guarded(behaviour: Callable[[Any, Any], Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    async def call(request: Any, context: grpc.aio.ServicerContext) -> Any:
        if isinstance(request, _Undecodable):
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, request.problem)
        return await behaviour(request, context)

    return call


def register(servicer: InferenceServicer, server: grpc.aio.Server) -> None:
    """Add the protocol's RPCs to ``server``, as the generated
    ``add_GRPCInferenceServiceServicer_to_server`` does (its methods and message types read
    from the same descriptor), but with a request that does not parse answered
    INVALID_ARGUMENT."""
    service = pb.DESCRIPTOR.services_by_name["GRPCInferenceService"]
    handlers = {}
    for method in service.methods:
        request = getattr(pb, method.input_type.name)
        response = getattr(pb, method.output_type.name)
        handlers[method.name] = grpc.unary_unary_rpc_method_handler(
            _guarded(getattr(servicer, method.name)),
            request_deserializer=_parser(request),
            response_serializer=response.SerializeToString,
        )
    generic = grpc.method_handlers_generic_handler(service.full_name, handlers)
    server.add_generic_rpc_handlers((generic,))
    server.add_registered_method_handlers(service.full_name, handlers)


def _enable_reflection(server: grpc.aio.Server) -> None:
    """Server reflection for the three services, from one pool holding their files: the
    protocol's own stubs live in a pool of their own (proto/, ``make protos`` says why), the
    health and reflection ones in the default pool. Imported here, only when asked for
    (reflection is off by default): grpc_reflection and its descriptor_pb2 are a third of
    this module's import time, on the way to /readyz (issue 18)."""
    from google.protobuf import descriptor_pool
    from grpc_reflection.v1alpha import reflection, reflection_pb2

    pool = descriptor_pool.DescriptorPool()
    for file in (pb.DESCRIPTOR, health_pb2.DESCRIPTOR, reflection_pb2.DESCRIPTOR):
        pool.AddSerializedFile(file.serialized_pb)
    names = (SERVICE_NAME, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name)
    reflection.enable_server_reflection((*names, reflection.SERVICE_NAME), server, pool=pool)


@dataclass
class GrpcFront:
    """A started gRPC server: its port (the one bound, for port 0 in tests) and health."""

    server: grpc.aio.Server
    health: Readiness
    host: str
    port: int

    async def stop(self, grace: float) -> None:
        """NOT_SERVING at once, new calls refused, calls in progress given ``grace`` seconds."""
        await self.health.stop()
        await self.server.stop(grace)


async def start(
    settings: ServingSettings,
    plane: Callable[[], DataPlane | None],
    keys: KeyRing | None = None,
    *,
    host: str | None = None,
    port: int | None = None,
    registry: Any = None,
) -> GrpcFront:
    """Build and start the gRPC server on the running loop; raise ``KilnError`` when the
    port cannot be bound. ``host``/``port`` default to the HTTP server's host and
    ``grpc_port``; ``registry`` (None: the default) holds the call counter."""
    host = http_host() if host is None else host
    port = settings.grpc_port if port is None else port
    server = grpc.aio.server(
        interceptors=[KeyInterceptor(keys)] if keys is not None and keys.enabled else [],
        options=[
            ("grpc.so_reuseport", 1),
            ("grpc.max_receive_message_length", settings.max_body_bytes),
        ],
    )
    servicer = InferenceServicer(
        plane,
        max_concurrency=settings.max_concurrency,
        timeout=settings.timeout,
        count=call_counter(registry),
    )
    register(servicer, server)
    health = Readiness(plane)
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
    if settings.grpc_reflection:
        _enable_reflection(server)
    address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    try:
        bound = server.add_insecure_port(address)
    except RuntimeError as exc:
        raise KilnError(f"the gRPC port {address} cannot be bound: {exc}") from None
    if not bound:
        raise KilnError(f"the gRPC port {address} cannot be bound")
    await server.start()
    health.start()
    log.info("gRPC (Open Inference Protocol) listening on %s:%d", host, bound)
    return GrpcFront(server, health, host, bound)
