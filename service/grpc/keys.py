"""API keys on the gRPC port: the REST rules (service/access.py) read from gRPC metadata.

With keys configured, every call needs the metadata ``authorization: Bearer <key>``, checked
by the same :class:`service.access.KeyRing` (constant-time, the key file re-read when it
changes); a missing or wrong key is UNAUTHENTICATED. The health calls (grpc.health.v1 and
the protocol's ``ServerLive`` and ``ServerReady``, as REST's health routes) stay open unless
``KILN_SERVE_PROTECT_HEALTH`` closes them too. Without keys no interceptor is installed.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc

from service.access import KeyRing

__all__ = ["HEALTH_METHODS", "KeyInterceptor", "bearer"]

HEALTH_METHODS = frozenset(
    {
        "/grpc.health.v1.Health/Check",
        "/grpc.health.v1.Health/Watch",
        "/inference.GRPCInferenceService/ServerLive",
        "/inference.GRPCInferenceService/ServerReady",
    }
)
MISSING = "this service needs an API key: send the metadata authorization: Bearer <key>"
WRONG = "the API key is not valid"


def bearer(metadata: Any) -> bytes | None:
    """The key of an ``authorization: Bearer <key>`` metadata entry, else None."""
    for key, value in metadata or ():
        if key == "authorization":
            raw = value.encode() if isinstance(value, str) else value
            scheme, _, token = raw.partition(b" ")
            if scheme.lower() == b"bearer" and token.strip():
                return token.strip()
            return None
    return None


def _refusal(handler: grpc.RpcMethodHandler, message: str) -> grpc.RpcMethodHandler:
    """A handler of the same kind as ``handler`` that answers UNAUTHENTICATED."""

    async def unary(request: Any, context: grpc.aio.ServicerContext) -> None:
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, message)

    async def stream(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[None]:
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, message)
        yield  # pragma: no cover (abort raises)

    serializers = {
        "request_deserializer": handler.request_deserializer,
        "response_serializer": handler.response_serializer,
    }
    if handler.unary_unary:
        return grpc.unary_unary_rpc_method_handler(unary, **serializers)
    if handler.unary_stream:
        return grpc.unary_stream_rpc_method_handler(stream, **serializers)
    if handler.stream_unary:
        return grpc.stream_unary_rpc_method_handler(unary, **serializers)
    return grpc.stream_stream_rpc_method_handler(stream, **serializers)


class KeyInterceptor(grpc.aio.ServerInterceptor):
    """Refuses every call without an accepted key, but the open health calls."""

    def __init__(self, keys: KeyRing) -> None:
        self.keys = keys

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        method = handler_call_details.method
        if method in HEALTH_METHODS and not self.keys.protect_health:
            return await continuation(handler_call_details)
        key = bearer(handler_call_details.invocation_metadata)
        if key is not None and self.keys.accepts(key):
            return await continuation(handler_call_details)
        handler = await continuation(handler_call_details)
        if handler is None:  # no such method: grpcio answers UNIMPLEMENTED
            return handler
        return _refusal(handler, MISSING if key is None else WRONG)
