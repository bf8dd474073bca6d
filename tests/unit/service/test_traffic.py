"""Kiln's timeout middleware (BentoML's answers, no timer left behind) and concurrency limit
(503 with Retry-After past the limit, health routes never limited)."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest
from bentoml._internal.server.http import traffic as bentoml_traffic

from service.traffic import CancellingTimeoutMiddleware, ConcurrencyLimitMiddleware, install


async def answer(scope: Any, receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


async def slow(scope: Any, receive: Any, send: Any) -> None:
    await asyncio.sleep(5)
    await answer(scope, receive, send)


async def serve(middleware: Any, requests: int) -> tuple[list[Any], int]:
    sent: list[Any] = []

    async def send(message: Any) -> None:
        sent.append(message)

    async def receive() -> Any:
        return {"type": "http.request", "body": b""}

    for _ in range(requests):
        await middleware({"type": "http", "path": "/"}, receive, send)
    await asyncio.sleep(0.01)  # let a cancelled app task finish cancelling
    loop = asyncio.get_running_loop()
    pending = [h for h in loop._scheduled if not h.cancelled()]  # type: ignore[attr-defined]
    return sent, len(pending)


def test_bentomls_middleware_keeps_a_timer_per_finished_request() -> None:
    """The problem, measured: every answered request leaves a 30 s timer holding it."""
    _, pending = asyncio.run(serve(bentoml_traffic.TimeoutMiddleware(answer, 30.0), 50))
    assert pending == 50


def test_ours_answers_the_same_and_leaves_no_timer() -> None:
    sent, pending = asyncio.run(serve(CancellingTimeoutMiddleware(answer, 30.0), 50))
    assert pending == 0
    assert [m["type"] for m in sent[:2]] == ["http.response.start", "http.response.body"]
    assert len(sent) == 100


def test_a_request_past_the_timeout_still_gets_504() -> None:
    sent, pending = asyncio.run(serve(CancellingTimeoutMiddleware(slow, 0.05), 1))
    assert sent[0]["status"] == 504 and b"0.05 seconds" in sent[1]["body"]
    assert pending == 0


def test_install_replaces_bentomls_class(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bentoml_traffic, "TimeoutMiddleware", bentoml_traffic.TimeoutMiddleware)
    monkeypatch.setattr(
        bentoml_traffic, "MaxConcurrencyMiddleware", bentoml_traffic.MaxConcurrencyMiddleware
    )
    install()
    from bentoml._internal.server.http.traffic import MaxConcurrencyMiddleware, TimeoutMiddleware

    assert TimeoutMiddleware is CancellingTimeoutMiddleware
    assert MaxConcurrencyMiddleware is ConcurrencyLimitMiddleware


def test_past_the_concurrency_limit_503_with_retry_after_and_health_still_answers() -> None:
    async def scenario() -> tuple[list[Any], list[Any]]:
        gate = asyncio.Event()

        async def held(scope: Any, receive: Any, send: Any) -> None:
            await gate.wait()
            await answer(scope, receive, send)

        limit = ConcurrencyLimitMiddleware(held, max_concurrency=2)
        sent: list[Any] = []

        async def send(message: Any) -> None:
            sent.append(message)

        async def receive() -> Any:
            return {"type": "http.request", "body": b""}

        def call(path: str) -> Any:
            return limit({"type": "http", "path": path}, receive, send)

        running = [asyncio.create_task(call("/v1/models/m/predict")) for _ in range(2)]
        await asyncio.sleep(0.01)
        await call("/v1/models/m/predict")  # the third: refused at once
        refused = list(sent)
        sent.clear()
        probe = asyncio.create_task(call("/livez"))  # health is never limited
        await asyncio.sleep(0.01)
        gate.set()
        await asyncio.gather(*running, probe)
        await call("/v1/models/m/predict")  # capacity is back: served
        return refused, sent

    refused, later = asyncio.run(scenario())
    start, body = refused
    assert start["status"] == 503 and (b"retry-after", b"1") in start["headers"]
    assert (b"content-type", b"application/json") in start["headers"]
    assert "limit of 2 concurrent requests" in orjson.loads(body["body"])["error"]
    statuses = [m["status"] for m in later if m["type"] == "http.response.start"]
    assert statuses == [200, 200, 200, 200]
