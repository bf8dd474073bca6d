"""HTTP limits before the body: header size, header count, header-read timeout, idle
keep-alive timeout and concurrent connections, enforced in uvicorn's HTTP protocol.

Everything here happens before a request reaches any ASGI code, so it cannot be middleware.
uvicorn has no header-read timeout and, for httptools (the parser BentoML's worker gets with
``http="auto"``), no limit on the size or number of headers (``h11_max_incomplete_event_size``
only covers h11), nor on connections (``limit_concurrency`` answers 503 once the headers are
in, which is too late for a connection that never finishes them). Measured on the real server
(issue 13): a 128 MiB header line was read whole (14.8 s; httptools concatenates a header
value chunk by chunk), 8 concurrent 48 MiB headers cost 400 MB, a connection that never sent a
byte stayed open forever, and about 20,000 connections sending one header byte a second used
up the worker's file descriptors, so predict and /livez stopped answering.

:class:`LimitedHttpToolsProtocol` is uvicorn's ``HttpToolsProtocol`` with those limits
(:class:`HttpLimits`, from the ``KILN_SERVE_*`` settings); :func:`install` points uvicorn's
``http="auto"`` at it, as service/bento.py does for the event loop. Past a limit:

- request line and headers over ``max_header_bytes``, or more than ``max_headers`` headers:
  ``431`` and the connection is closed (bytes past the limit are never handed to the parser);
- headers not complete within ``header_timeout`` of the connection opening or of the previous
  response ending: ``408`` if part of a request came, else the connection is just closed;
- idle for ``keep_alive_timeout`` after a response: closed (uvicorn's own keep-alive timer;
  this value replaces BentoML's fixed 5 s);
- a new connection past ``max_connections`` in this worker closes the connection that has
  waited longest for its headers (an idle keep-alive one or a slow sender: one that holds no
  request), so a flood of slow connections cannot keep probes and real clients out; only when
  every connection holds a request in flight is the new one answered ``503`` with
  ``Retry-After`` (once its request arrives) and closed.

Every answer is ``{"error": "..."}`` JSON with ``Connection: close``, uvicorn's plain-text 400
for a malformed request included. The cost on the hot path is a few attribute updates and one
ordered-dict insert and delete per request; timeouts are checked by one sweep per worker.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any
from weakref import WeakKeyDictionary

import httptools
import orjson
import uvicorn.config as uvicorn_config
from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol
from uvicorn.server import ServerState

from service.settings import ServingSettings

__all__ = ["HttpLimits", "LimitedHttpToolsProtocol", "install"]

logger = logging.getLogger("kiln.http")

# What uvicorn's ``http="auto"`` imports once this module is installed.
_PROTOCOL = f"{__name__}:LimitedHttpToolsProtocol"
# How long a connection being refused is kept open to read the request it is sending and to
# let the answer reach the client: closing a socket with unread bytes makes the kernel send a
# reset, which can destroy the answer before the client reads it.
_LINGER_SECONDS = 1.0
_RETRY_AFTER_SECONDS = 1

# A connection's phase: reading a request line and headers, after them (body, or waiting for
# its response), refused past the connection limit, closing (everything read is dropped).
_HEAD, _BODY, _REFUSED, _CLOSING = range(4)


def _default(field: str) -> Any:
    return ServingSettings.model_fields[field].default


@dataclass(frozen=True)
class HttpLimits:
    """The connection limits of one worker (defaults: those of :class:`ServingSettings`)."""

    # The defaults are the settings' own, defined there once.
    max_header_bytes: int = _default("max_header_bytes")
    max_headers: int = _default("max_headers")
    header_timeout: float = _default("header_timeout")
    keep_alive_timeout: float = _default("keep_alive_timeout")
    max_connections: int = _default("max_connections")

    @classmethod
    def from_settings(cls, settings: ServingSettings) -> HttpLimits:
        return cls(
            max_header_bytes=settings.max_header_bytes,
            max_headers=settings.max_headers,
            header_timeout=settings.header_timeout,
            keep_alive_timeout=settings.keep_alive_timeout,
            max_connections=settings.max_connections,
        )


def install(settings: ServingSettings) -> None:
    """Make uvicorn's ``http="auto"`` (what BentoML's worker uses) this module's protocol,
    with the limits in ``settings``. Call it before the server starts."""
    LimitedHttpToolsProtocol.limits = HttpLimits.from_settings(settings)
    uvicorn_config.HTTP_PROTOCOLS["auto"] = _PROTOCOL


class _Refused(Exception):
    """Raised in a parser callback to stop parsing; the answer is in ``_refusal``."""


class _Waiting:
    """The connections of one server waiting for a request's headers, longest-waiting first.

    One timer per server sweeps out those past the header timeout, instead of a timer per
    request; a connection is closed between ``timeout`` and ``timeout + interval`` after it
    began to wait.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, timeout: float) -> None:
        self.loop = loop
        self.timeout = timeout
        self.interval = min(1.0, timeout / 4)
        self.since: OrderedDict[LimitedHttpToolsProtocol, float] = OrderedDict()
        self._sweep_timer: asyncio.TimerHandle | None = None

    def add(self, connection: LimitedHttpToolsProtocol) -> None:
        # Never already in: a connection leaves when its headers are complete, and is added
        # again only when it opens or after a response.
        self.since[connection] = self.loop.time()
        if self._sweep_timer is None:
            self._sweep_timer = self.loop.call_later(self.interval, self._sweep)

    def discard(self, connection: LimitedHttpToolsProtocol) -> None:
        self.since.pop(connection, None)

    def pop_oldest(self) -> LimitedHttpToolsProtocol | None:
        return self.since.popitem(last=False)[0] if self.since else None

    def _sweep(self) -> None:
        self._sweep_timer = None
        started_before = self.loop.time() - self.timeout
        while self.since:
            connection, started = next(iter(self.since.items()))
            if started > started_before:
                break
            del self.since[connection]
            connection.header_timeout_passed()
        if self.since:
            self._sweep_timer = self.loop.call_later(self.interval, self._sweep)


# One waiting list per uvicorn server (in a BentoML worker, exactly one).
_WAITING: WeakKeyDictionary[ServerState, _Waiting] = WeakKeyDictionary()


class LimitedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with Kiln's limits before the body (module docstring)."""

    limits = HttpLimits()  # set by install()

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        # Not BentoML's fixed 5 s. (uvicorn types it int; it is only given to call_later.)
        self.timeout_keep_alive = self.limits.keep_alive_timeout  # type: ignore[assignment]
        waiting = _WAITING.get(server_state)
        if waiting is None:
            waiting = _WAITING[server_state] = _Waiting(self.loop, self.limits.header_timeout)
        self._waiting = waiting
        self._phase = _HEAD
        self._head_bytes = 0  # bytes received since the current request began
        self._heads = 0  # requests whose headers were complete, to tell where a feed ended
        self._refusal: tuple[int, str] | None = None
        self._max_header_bytes = self.limits.max_header_bytes

    # -- Connection ----------------------------------------------------------------------

    def connection_made(  # type: ignore[override]
        self, transport: asyncio.Transport
    ) -> None:
        super().connection_made(transport)
        if len(self.connections) > self.limits.max_connections:
            oldest = self._waiting.pop_oldest()
            if oldest is None:  # every connection holds a request: refuse this one
                self._phase = _REFUSED
                self.connections.discard(self)
                self.loop.call_later(_LINGER_SECONDS, self.transport.close)
                return
            logger.debug("connection limit reached: closing the longest-waiting connection")
            oldest.close_now()
        self._waiting.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self._phase = _CLOSING
        self._waiting.discard(self)
        super().connection_lost(exc)

    def close_now(self) -> None:
        """Close without an answer (an idle or evicted connection)."""
        self._phase = _CLOSING
        self._waiting.discard(self)
        self.connections.discard(self)
        self.transport.close()

    def header_timeout_passed(self) -> None:
        """Called by the sweep: the headers did not come in time."""
        if self._phase == _HEAD and self._head_bytes > 0:
            seconds = self.limits.header_timeout
            self.answer(408, f"request headers not received within {seconds:g} s")
        else:
            self.close_now()

    def answer(self, status: int, message: str) -> None:
        """Answer ``{"error": message}`` with ``status`` and close the connection."""
        if self._phase == _CLOSING:
            return
        body = orjson.dumps({"error": message})
        content = [STATUS_LINE[status]]
        for name, value in self.server_state.default_headers:
            content += [name, b": ", value, b"\r\n"]
        content += [
            b"content-type: application/json\r\n",
            b"content-length: %d\r\n" % len(body),
            b"connection: close\r\n",
        ]
        if status == 503:
            content.append(b"retry-after: %d\r\n" % _RETRY_AFTER_SECONDS)
        content += [b"\r\n", body]
        self._phase = _CLOSING
        self._waiting.discard(self)
        self.connections.discard(self)
        self.transport.write(b"".join(content))
        # Half-close and drop what still comes, then close (see _LINGER_SECONDS).
        if self.transport.can_write_eof():
            self.transport.write_eof()
            self.loop.call_later(_LINGER_SECONDS, self.transport.close)
        else:
            self.transport.close()

    # -- Reading -------------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        # The hot path: uvicorn's own data_received plus two comparisons, written out here
        # rather than calling _feed, to spare a call per request.
        phase = self._phase
        if phase == _HEAD:
            self._head_bytes += len(data)
            if self._head_bytes > self._max_header_bytes:
                self._feed_head_over_limit(data)
                return
        elif phase != _BODY:
            if phase == _REFUSED:  # its request is in: answer it
                self.answer(503, f"over {self.limits.max_connections} connections; retry later")
            return  # _CLOSING: dropped
        self._feed(data)

    def _feed_head_over_limit(self, data: bytes) -> None:
        """Feed only the bytes a head may still take; 431 unless the head ends within them.
        What follows a head that ends in time (its body, a pipelined request) is fed as
        usual; a pipelined request's head is counted from the next chunk on."""
        limit = self._max_header_bytes
        view = memoryview(data)
        while view:
            room = len(view) - (self._head_bytes - limit)
            heads = self._heads
            self._head_bytes = limit
            self._feed(view[:room])
            if self._phase == _CLOSING:
                return
            if self._heads == heads:
                self.answer(431, f"request line and headers are over the limit of {limit} bytes")
                return
            view = view[room:]
            if self._phase != _HEAD:
                self._feed(view)
                return
            self._head_bytes += len(view)
            if self._head_bytes <= limit:
                self._feed(view)
                return

    def _feed(self, data: bytes | memoryview) -> None:
        self._unset_keepalive_if_required()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._parser_error(exc)
        except httptools.HttpParserUpgrade:
            self._upgrade()

    def _upgrade(self) -> None:  # as uvicorn's data_received
        if self._should_upgrade():
            self.handle_websocket_upgrade()
        else:
            self._unsupported_upgrade_warning()

    def _parser_error(self, exc: httptools.HttpParserError) -> None:
        if self._refusal is not None:
            self.answer(*self._refusal)
            return
        # debug, not uvicorn's warning: any client can send these, as many as it likes
        logger.debug("malformed HTTP request: %s", exc)
        self.answer(400, f"malformed HTTP request: {exc}")

    def send_400_response(self, msg: str) -> None:
        self.answer(400, msg)  # uvicorn's only other caller would answer plain text

    # -- Parser callbacks ----------------------------------------------------------------

    def on_header(self, name: bytes, value: bytes) -> None:
        if len(self.headers) >= self.limits.max_headers:
            self._refusal = (431, f"more than {self.limits.max_headers} request headers")
            raise _Refused
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._phase = _BODY
        self._heads += 1
        self._waiting.discard(self)
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._phase = _HEAD
        self._head_bytes = 0

    def on_response_complete(self) -> None:
        super().on_response_complete()
        # uvicorn armed its keep-alive timer: no pipelined request to start and the connection
        # stays open, so it now waits for the next request's headers.
        if self.timeout_keep_alive_task is not None and self._phase != _CLOSING:
            self._waiting.add(self)
