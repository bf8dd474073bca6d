"""Kiln errors as gRPC status codes: one table, read by every gRPC answer.

Each Kiln error carries its HTTP status (kiln/errors.py); the gRPC front answers the code
that status stands for, with the same message as the REST answer's ``error``:

    HTTP  Kiln error                                        gRPC status
    400   InvalidInput (a malformed request)                INVALID_ARGUMENT
    415   UnsupportedMediaType (REST only)                  INVALID_ARGUMENT
    422   InputRejected, NonFiniteOutput                    INVALID_ARGUMENT
    413   PayloadTooLarge (rows over the limit)             RESOURCE_EXHAUSTED
    404   ModelNotFound (no such model or version)          NOT_FOUND
    401   no API key, or a wrong one (service/grpc/keys.py) UNAUTHENTICATED
    503   Overloaded (queue full), ModelNotReady,           UNAVAILABLE
          ServiceUnavailable (still starting)
    504   past the timeout                                  DEADLINE_EXCEEDED
    500   anything else                                     INTERNAL

Two limits are not Kiln errors, and answer RESOURCE_EXHAUSTED as grpcio itself does: a
message over ``KILN_SERVE_MAX_BODY_BYTES`` (grpcio refuses it before Kiln sees it) and a call
past ``KILN_SERVE_MAX_CONCURRENCY`` (:data:`AT_LIMIT`). UNAVAILABLE is the code gRPC clients
retry; an overloaded answer also carries ``grpc-retry-pushback-ms`` (REST's ``Retry-After``).
"""

from __future__ import annotations

import grpc

from kiln.errors import KilnError

__all__ = ["AT_LIMIT", "RETRY_PUSHBACK", "at_limit_message", "code_of", "trailers_of"]

_BY_HTTP: dict[int, grpc.StatusCode] = {
    400: grpc.StatusCode.INVALID_ARGUMENT,
    401: grpc.StatusCode.UNAUTHENTICATED,
    404: grpc.StatusCode.NOT_FOUND,
    413: grpc.StatusCode.RESOURCE_EXHAUSTED,
    415: grpc.StatusCode.INVALID_ARGUMENT,
    422: grpc.StatusCode.INVALID_ARGUMENT,
    503: grpc.StatusCode.UNAVAILABLE,
    504: grpc.StatusCode.DEADLINE_EXCEEDED,
}

AT_LIMIT = grpc.StatusCode.RESOURCE_EXHAUSTED
"""A call past ``KILN_SERVE_MAX_CONCURRENCY`` (REST: 503 with Retry-After)."""

RETRY_PUSHBACK = (("grpc-retry-pushback-ms", "1000"),)
"""Trailers of a "busy, retry shortly" answer: gRPC's retry pushback, REST's Retry-After: 1."""


def code_of(exc: KilnError) -> grpc.StatusCode:
    """The gRPC status of a Kiln error: by its HTTP status, any other 4xx INVALID_ARGUMENT
    (bad input is never INTERNAL), anything else INTERNAL."""
    code = _BY_HTTP.get(exc.status_code)
    if code is not None:
        return code
    if 400 <= exc.status_code < 500:
        return grpc.StatusCode.INVALID_ARGUMENT
    return grpc.StatusCode.INTERNAL


def trailers_of(exc: KilnError) -> tuple[tuple[str, str], ...]:
    """The trailing metadata of an error answer: the retry pushback when it says busy."""
    return RETRY_PUSHBACK if exc.status_code == 503 else ()


def at_limit_message(limit: int) -> str:
    """What a call past the concurrency limit is told, as REST's 503 says it."""
    return f"the server is at its limit of {limit} concurrent requests; retry shortly"
