"""The request timeout middleware: same answers as BentoML's, no timer left behind."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from bentoml._internal.server.http import traffic as bentoml_traffic

from service.traffic import CancellingTimeoutMiddleware, install


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
    install()
    from bentoml._internal.server.http.traffic import TimeoutMiddleware

    assert TimeoutMiddleware is CancellingTimeoutMiddleware
