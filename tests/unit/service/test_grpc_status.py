"""Kiln errors as gRPC status codes (service/grpc/status.py): the table, the retry pushback on
busy answers, and the concurrency message REST sends."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
import orjson
import pytest

from kiln.errors import (
    ArtifactError,
    DataError,
    InputRejected,
    InvalidInput,
    KilnError,
    ModelNotFound,
    ModelNotReady,
    NonFiniteOutput,
    Overloaded,
    PayloadTooLarge,
    ServiceUnavailable,
    SpecError,
    UnsupportedMediaType,
)
from service.grpc.status import AT_LIMIT, RETRY_PUSHBACK, at_limit_message, code_of, trailers_of
from service.traffic import ConcurrencyLimitMiddleware

Code = grpc.StatusCode


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (InvalidInput("bad"), Code.INVALID_ARGUMENT),
        (UnsupportedMediaType("text"), Code.INVALID_ARGUMENT),
        (NonFiniteOutput({0: "probabilities = nan"}), Code.INVALID_ARGUMENT),
        (InputRejected(["row 0: far out"], 1, {}), Code.INVALID_ARGUMENT),
        (SpecError([("field", "wrong")]), Code.INVALID_ARGUMENT),
        (DataError("unreadable"), Code.INVALID_ARGUMENT),
        (PayloadTooLarge("too many rows"), Code.RESOURCE_EXHAUSTED),
        (ModelNotFound("nope", ["wine"]), Code.NOT_FOUND),
        (ModelNotReady("churn"), Code.UNAVAILABLE),
        (Overloaded("churn", "the queue is full"), Code.UNAVAILABLE),
        (ServiceUnavailable("starting"), Code.UNAVAILABLE),
        (ArtifactError("churn:1", "corrupt"), Code.INTERNAL),
        (KilnError("inference failed"), Code.INTERNAL),
    ],
    ids=lambda value: type(value).__name__ if isinstance(value, Exception) else value.name,
)
def test_each_error_has_the_status_of_its_http_code(
    error: KilnError, code: grpc.StatusCode
) -> None:
    assert code_of(error) is code


def test_bad_input_of_any_4xx_is_never_internal() -> None:
    class Teapot(InvalidInput):
        status_code = 418

    assert code_of(Teapot("short and stout")) is Code.INVALID_ARGUMENT


def test_only_busy_answers_carry_the_retry_pushback() -> None:
    assert trailers_of(Overloaded("churn", "full")) == RETRY_PUSHBACK
    assert trailers_of(ModelNotReady("churn")) == RETRY_PUSHBACK
    assert trailers_of(InvalidInput("bad")) == ()
    assert dict(RETRY_PUSHBACK) == {"grpc-retry-pushback-ms": "1000"}


def test_the_concurrency_message_is_rests() -> None:
    """REST's 503 past KILN_SERVE_MAX_CONCURRENCY (service/traffic.py) says the same words."""
    sent: list[Any] = []

    async def send(message: Any) -> None:
        sent.append(message)

    async def receive() -> Any:
        return {"type": "http.request", "body": b""}

    limit = ConcurrencyLimitMiddleware(lambda *_: None, max_concurrency=3)  # type: ignore[arg-type]
    limit.active = 3
    asyncio.run(limit({"type": "http", "path": "/v2/models/wine/infer"}, receive, send))
    assert sent[0]["status"] == 503
    assert orjson.loads(sent[1]["body"])["error"] == at_limit_message(3)
    assert AT_LIMIT is Code.RESOURCE_EXHAUSTED
