"""Reading a request body: its size limit, gzip, a client that leaves, and work off the loop.

:func:`read_body` reads the body up to ``max_body_bytes``: a ``Content-Length`` over it is
answered 413 before any byte is read, and so is a body that grows past it. A body sent with
``Content-Encoding: gzip`` is inflated with the same limit applied to the inflated size: zlib
is asked for at most one byte more than the limit, so a gzip bomb is never inflated past it
(413). Any other encoding is answered 415 naming what is read. A client that disconnects
before its body is complete is logged at debug level and counted
(``kiln_client_disconnects_total``), not logged as an error with a traceback: it is the
client's doing, and nobody is left to answer.

:func:`off_loop` runs the decoding of a large body (parse, check, type) in a thread, so that
one request cannot hold the event loop (health probes, every other request) for the whole of
it. A thread helps although the parse holds the GIL: Python switches threads every
``sys.getswitchinterval()`` (5 ms) at the next bytecode, so the loop runs between the decode's
Python steps (the row checks, the duplicate-key scan, the chunked structure count). One C call
is not interrupted: orjson parses a whole document at once, about 2 ms per MiB on this machine
(docs/reliability.md has the measurements), which the structure bound keeps to what the rows
need. There is one such thread per worker: with several, the loop competed with all of them
for the GIL (four 32 MiB bodies at once held ``/livez`` 139 ms), and one at a time also
bounds the memory that large bodies being decoded hold together. Inflating gzip runs there
too. Small bodies, the common case, are decoded on the loop: a thread's hand-off would cost
more than their decode.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import zlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from starlette.requests import ClientDisconnect, Request

from kiln.errors import InvalidInput, PayloadTooLarge, UnsupportedMediaType

__all__ = ["ENCODINGS", "OFF_LOOP_BYTES", "ClientDisconnect", "off_loop", "read_body"]

log = logging.getLogger("kiln.service")
T = TypeVar("T")

OFF_LOOP_BYTES = 256 * 1024
"""Bodies larger than this are decoded in a thread (a 1,000-row records body is ~160 KB)."""
ENCODINGS = ("gzip", "x-gzip")
"""The request content encodings read (besides ``identity``, or none)."""
_GZIP = 16 + zlib.MAX_WBITS  # zlib's window bits for a gzip stream (header and trailer)


async def read_body(request: Request, limit: int, on_disconnect: Callable[[], None]) -> bytes:
    """The request's body, inflated if gzip, at most ``limit`` bytes (``PayloadTooLarge``
    past it). ``on_disconnect`` is called (then ``ClientDisconnect`` raised) if the client
    leaves before the body is complete."""
    encoding = _encoding(request.headers.get("content-encoding"))
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"body of {declared} bytes is over the limit of {limit} bytes")
    body = bytearray()
    try:
        async for chunk in request.stream():
            body += chunk
            if len(body) > limit:
                raise PayloadTooLarge(f"body is over the limit of {limit} bytes")
    except ClientDisconnect:
        path = request.url.path
        log.debug("client disconnected after %d bytes of its body (%s)", len(body), path)
        on_disconnect()
        raise
    if encoding is None:
        return bytes(body)
    # In a thread whatever its size: a few KB of gzip can inflate to the whole limit (200 KB
    # to 32 MiB held the loop 0.1 s), and zlib releases the GIL while it inflates.
    return await _in_thread(functools.partial(inflate, bytes(body), limit))


def _encoding(header: str | None) -> str | None:
    """The one content encoding to undo (None: none), or ``UnsupportedMediaType``."""
    if header is None:
        return None
    codings = [c.strip().lower() for c in header.split(",") if c.strip()]
    codings = [c for c in codings if c != "identity"]
    if not codings:
        return None
    if len(codings) == 1 and codings[0] in ENCODINGS:
        return codings[0]
    raise UnsupportedMediaType(
        f"content encoding {header[:40]!r} is not read here; send the body as it is or "
        "with Content-Encoding: gzip"
    )


def inflate(data: bytes, limit: int) -> bytes:
    """A gzip body (one or more members) inflated, never past ``limit + 1`` bytes:
    ``PayloadTooLarge`` over the limit, ``InvalidInput`` if it is not gzip or is cut short."""
    out = bytearray()
    while True:
        inflater = zlib.decompressobj(_GZIP)
        try:
            # max_length bounds what zlib writes; 0 would mean no bound, so it is at least 1.
            out += inflater.decompress(data, limit + 1 - len(out))
        except zlib.error as exc:
            raise InvalidInput(f"the body is not valid gzip ({exc})") from None
        if len(out) > limit:
            raise PayloadTooLarge(f"the inflated body is over the limit of {limit} bytes")
        if not inflater.eof:
            raise InvalidInput("the gzip body is cut short (no end of stream)")
        data = inflater.unused_data
        if not data:
            return bytes(out)


async def off_loop(size: int, decode: Callable[[], T]) -> T:
    """``decode()``, in a thread when the body it decodes (``size`` bytes) is large."""
    if size > OFF_LOOP_BYTES:
        return await _in_thread(decode)
    return decode()


@functools.cache
def _decoder() -> ThreadPoolExecutor:
    """The worker's one decoding thread, started on first use (nothing at import)."""
    return ThreadPoolExecutor(max_workers=1, thread_name_prefix="kiln-decode")


async def _in_thread(work: Callable[[], T]) -> T:
    return await asyncio.get_running_loop().run_in_executor(_decoder(), work)
