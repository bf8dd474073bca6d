"""The HTTP protocol's limits before the body, on a fake transport: header size and count
(431), malformed requests (JSON 400), the header-read timeout (408, or a silent close), the
keep-alive timeout, and the connection limit (the longest-waiting connection closed; 503 when
every connection holds a request)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
import pytest
import uvicorn.config as uvicorn_config
from uvicorn.config import Config
from uvicorn.server import ServerState

from service import httpserver
from service.httpserver import HttpLimits, LimitedHttpToolsProtocol
from service.settings import ServingSettings

GET = b"GET /livez HTTP/1.1\r\nHost: x\r\n\r\n"


class FakeTransport:
    """The parts of an asyncio transport the protocol uses, recording what it is sent."""

    def __init__(self) -> None:
        self.written = bytearray()
        self.closed = False
        self.eof = False

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"sockname": ("127.0.0.1", 3000), "peername": ("127.0.0.1", 40000)}.get(
            name, default
        )

    def write(self, data: bytes) -> None:
        assert not self.eof, "write after write_eof"
        self.written += data

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        self.eof = True

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def set_protocol(self, protocol: Any) -> None:
        pass

    def status(self) -> int:
        return int(self.written.split(b" ", 2)[1])

    def error(self) -> str:
        return str(orjson.loads(self.written.split(b"\r\n\r\n", 1)[1])["error"])


class Server:
    """Protocols sharing one server state, as uvicorn makes them for one listening socket."""

    def __init__(self, app: Callable[..., Awaitable[None]], limits: HttpLimits) -> None:
        self.config = Config(app=app, log_config=None)
        self.state = ServerState()
        self.protocol = type("Limited", (LimitedHttpToolsProtocol,), {"limits": limits})

    def connect(self) -> tuple[LimitedHttpToolsProtocol, FakeTransport]:
        protocol = self.protocol(self.config, self.state, {})
        transport = FakeTransport()
        protocol.connection_made(transport)  # type: ignore[arg-type]
        return protocol, transport


async def ok(scope: Any, receive: Any, send: Any) -> None:
    while (await receive()).get("more_body"):
        pass
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


def serve(limits: HttpLimits, test: Callable[[Server], Awaitable[None]], app: Any = ok) -> None:
    async def run() -> None:
        await test(Server(app, limits))

    asyncio.run(run())


async def settle(seconds: float = 0.01) -> None:
    await asyncio.sleep(seconds)


def test_headers_over_the_size_limit_are_431_and_never_parsed_past_it() -> None:
    async def test(server: Server) -> None:
        protocol, transport = server.connect()
        protocol.data_received(b"GET / HTTP/1.1\r\nX-Big: " + b"a" * 5000)
        assert transport.status() == 431 and transport.eof
        assert transport.error() == "request line and headers are over the limit of 2048 bytes"
        assert b"connection: close" in transport.written
        protocol.data_received(b"more")  # dropped while the connection lingers
        assert transport.written.count(b"HTTP/1.1") == 1

    serve(HttpLimits(max_header_bytes=2048), test)


def test_a_head_dribbled_in_small_chunks_is_counted_across_them() -> None:
    async def test(server: Server) -> None:
        protocol, transport = server.connect()
        protocol.data_received(b"GET / HTTP/1.1\r\n")
        for _ in range(200):
            protocol.data_received(b"X-A: 1234567\r\n")
            if transport.written:
                break
        assert transport.status() == 431

    serve(HttpLimits(max_header_bytes=1024), test)


def test_a_head_within_the_limit_is_served_with_its_body_in_the_same_chunk() -> None:
    async def test(server: Server) -> None:
        protocol, transport = server.connect()
        head = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\nX-Pad: "
        head += b"p" * (1024 - len(head) - 4) + b"\r\n\r\n"
        assert len(head) == 1024
        protocol.data_received(head + b"b" * 5000)  # head exactly at the limit, then a body
        await settle()
        assert transport.status() == 200, bytes(transport.written)

    serve(HttpLimits(max_header_bytes=1024), test)


def test_pipelined_requests_past_the_limit_in_one_chunk_are_all_served() -> None:
    async def test(server: Server) -> None:
        protocol, transport = server.connect()
        protocol.data_received(GET * 100)  # 3,300 bytes, every head far under 1,024
        for _ in range(100):
            await settle(0.001)
        assert transport.written.count(b"HTTP/1.1 200") == 100

    serve(HttpLimits(max_header_bytes=1024), test)


@pytest.mark.parametrize(("count", "status"), [(10, 200), (11, 431)])
def test_more_headers_than_the_limit_are_431(count: int, status: int) -> None:
    async def test(server: Server) -> None:
        protocol, transport = server.connect()
        headers = b"".join(b"X-%d: 1\r\n" % i for i in range(count))
        protocol.data_received(b"GET / HTTP/1.1\r\n" + headers + b"\r\n")
        await settle()
        assert transport.status() == status
        if status == 431:
            assert transport.error() == "more than 10 request headers"

    serve(HttpLimits(max_headers=10), test)


def test_a_malformed_request_is_a_json_400() -> None:
    async def test(server: Server) -> None:
        protocol, transport = server.connect()
        protocol.data_received(b"NOT HTTP\r\n\r\n")
        assert transport.status() == 400
        assert transport.error().startswith("malformed HTTP request")
        assert b"content-type: application/json" in transport.written

    serve(HttpLimits(), test)


def test_a_connection_that_sends_nothing_is_closed_silently_after_the_header_timeout() -> None:
    async def test(server: Server) -> None:
        _, transport = server.connect()
        await settle(0.03)
        assert not transport.closed
        await settle(0.15)
        assert transport.closed and not transport.written

    serve(HttpLimits(header_timeout=0.1), test)


def test_a_slow_head_is_408_after_the_header_timeout() -> None:
    async def test(server: Server) -> None:
        protocol, transport = server.connect()
        protocol.data_received(b"GET / HTTP/1.1\r\nX-Slow: ")
        for _ in range(10):
            protocol.data_received(b"a")  # a byte at a time never resets the timeout
            await settle(0.03)
        assert transport.status() == 408
        assert transport.error() == "request headers not received within 0.1 s"

    serve(HttpLimits(header_timeout=0.1), test)


def test_the_header_timeout_restarts_after_each_response() -> None:
    async def test(server: Server) -> None:
        protocol, transport = server.connect()
        for _ in range(4):  # 4 x 0.06 s: longer than the timeout in all, never in one wait
            await settle(0.06)
            protocol.data_received(GET)
        await settle()
        assert transport.written.count(b"HTTP/1.1 200") == 4 and not transport.closed

    serve(HttpLimits(header_timeout=0.1, keep_alive_timeout=5), test)


def test_the_keep_alive_timeout_is_the_setting() -> None:
    async def test(server: Server) -> None:
        protocol, transport = server.connect()
        assert protocol.timeout_keep_alive == 0.05
        protocol.data_received(GET)
        await settle()
        assert transport.status() == 200 and not transport.closed
        await settle(0.1)
        assert transport.closed  # idle after its response, well before the header timeout

    serve(HttpLimits(keep_alive_timeout=0.05, header_timeout=10), test)


def test_past_the_connection_limit_the_longest_waiting_connection_is_closed() -> None:
    async def test(server: Server) -> None:
        (_, first), (_, second) = server.connect(), server.connect()
        third, new = server.connect()
        assert first.closed and not first.written
        assert not second.closed and not new.closed
        third.data_received(GET)
        await settle()
        assert new.status() == 200
        assert len(server.state.connections) == 2

    serve(HttpLimits(max_connections=2), test)


def test_past_the_limit_with_every_connection_busy_a_new_one_is_503() -> None:
    release = asyncio.Event()

    async def busy(scope: Any, receive: Any, send: Any) -> None:
        await release.wait()
        await ok(scope, receive, send)

    async def test(server: Server) -> None:
        busy_ones = [server.connect() for _ in range(2)]
        for protocol, _ in busy_ones:
            protocol.data_received(GET)
        await settle()
        refused, transport = server.connect()
        assert not transport.written  # answered once its request has been read
        refused.data_received(GET)
        assert transport.status() == 503
        assert b"retry-after: 1\r\n" in transport.written
        assert transport.error() == "over 2 connections; retry later"
        release.set()
        await settle()
        assert all(t.status() == 200 for _, t in busy_ones)

    serve(HttpLimits(max_connections=2), test, app=busy)


def test_limits_come_from_the_settings_and_install_points_uvicorn_at_the_protocol(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(uvicorn_config.HTTP_PROTOCOLS, "auto", "elsewhere")
    monkeypatch.setattr(LimitedHttpToolsProtocol, "limits", HttpLimits())
    settings = ServingSettings(
        max_header_bytes=4096,
        max_headers=7,
        header_timeout=3,
        keep_alive_timeout=2,
        max_connections=9,
    )
    httpserver.install(settings)
    assert uvicorn_config.HTTP_PROTOCOLS["auto"] == "service.httpserver:LimitedHttpToolsProtocol"
    assert LimitedHttpToolsProtocol.limits == HttpLimits(4096, 7, 3.0, 2.0, 9)
    assert HttpLimits.from_settings(ServingSettings()) == HttpLimits()  # defaults agree
