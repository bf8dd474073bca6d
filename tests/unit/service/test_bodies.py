"""Reading bodies: the limit, gzip within it, encodings refused, a client that leaves."""

from __future__ import annotations

import gzip
import zlib

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.testclient import TestClient

from kiln.errors import InvalidInput, KilnError, PayloadTooLarge, UnsupportedMediaType
from service.bodies import ClientDisconnect, inflate, read_body

LIMIT = 64 * 1024


def _client(left: list[int]) -> TestClient:
    async def echo(request: Request) -> Response:
        try:
            body = await read_body(request, LIMIT, lambda: left.append(1))
        except KilnError as exc:
            return JSONResponse({"error": exc.message}, exc.status_code)
        return Response(body)

    return TestClient(Starlette(routes=[Route("/", echo, methods=["POST"])]))


def test_plain_and_gzip_bodies_are_read() -> None:
    client = _client([])
    assert client.post("/", content=b"plain").content == b"plain"
    for encoding in ("gzip", "x-gzip", "GZIP", "identity, gzip"):
        answer = client.post(
            "/", content=gzip.compress(b"zipped"), headers={"Content-Encoding": encoding}
        )
        assert answer.content == b"zipped", encoding
    two = gzip.compress(b"one ") + gzip.compress(b"two")  # members, as gzip(1) concatenates
    assert client.post("/", content=two, headers={"Content-Encoding": "gzip"}).content == b"one two"
    assert client.post("/", content=b"x", headers={"Content-Encoding": "identity"}).content == b"x"


def test_limits_apply_to_the_inflated_size() -> None:
    client = _client([])
    answer = client.post("/", content=b"x" * (LIMIT + 1))
    assert answer.status_code == 413
    fits = gzip.compress(b"x" * LIMIT)
    assert client.post("/", content=fits, headers={"Content-Encoding": "gzip"}).status_code == 200
    over = gzip.compress(b"x" * (LIMIT + 1))
    answer = client.post("/", content=over, headers={"Content-Encoding": "gzip"})
    assert answer.status_code == 413 and "inflated" in answer.json()["error"]


def test_a_bomb_is_never_inflated_past_the_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    bomb = gzip.compress(b"\0" * (100 * 1024 * 1024), compresslevel=9)
    written: list[int] = []
    real = zlib.decompressobj

    class Counting:
        def __init__(self, wbits: int) -> None:
            self.inner = real(wbits)

        def decompress(self, data: bytes, max_length: int) -> bytes:
            out = self.inner.decompress(data, max_length)
            written.append(len(out))
            return out

        def __getattr__(self, name: str) -> object:
            return getattr(self.inner, name)

    monkeypatch.setattr(zlib, "decompressobj", Counting)
    with pytest.raises(PayloadTooLarge):
        inflate(bomb, LIMIT)
    assert sum(written) == LIMIT + 1


def test_broken_gzip_and_other_encodings() -> None:
    with pytest.raises(InvalidInput, match="not valid gzip"):
        inflate(b"not gzip at all", LIMIT)
    with pytest.raises(InvalidInput, match="cut short"):
        inflate(gzip.compress(b"x" * 1000)[:-10], LIMIT)
    with pytest.raises(InvalidInput, match="not valid gzip"):
        inflate(gzip.compress(b"x") + b"junk", LIMIT)
    client = _client([])
    for encoding in ("br", "deflate", "gzip, gzip", "zstd"):
        answer = client.post("/", content=b"x", headers={"Content-Encoding": encoding})
        assert answer.status_code == 415, encoding
        assert "Content-Encoding: gzip" in answer.json()["error"]
    assert issubclass(UnsupportedMediaType, InvalidInput)


def test_a_client_that_leaves_is_reported_once() -> None:
    left: list[int] = []

    async def app(scope: dict, receive: object, send: object) -> None:
        request = Request(scope, receive)  # type: ignore[arg-type]
        with pytest.raises(ClientDisconnect):
            await read_body(request, LIMIT, lambda: left.append(1))

    messages = [
        {"type": "http.request", "body": b"{", "more_body": True},
        {"type": "http.disconnect"},
    ]

    async def receive() -> dict:
        return messages.pop(0)

    import asyncio

    scope = {"type": "http", "method": "POST", "path": "/", "headers": [], "query_string": b""}
    asyncio.run(app(scope, receive, None))
    assert left == [1]
