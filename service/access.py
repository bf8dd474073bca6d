"""Optional API keys: with keys configured, every route but health and metrics needs one.

Keys come from ``KILN_SERVE_API_KEYS`` (one or several, for rotation) and/or a mounted secret
file, ``KILN_SERVE_API_KEYS_FILE`` (one key per line; blank lines and ``#`` comments are
skipped). The file is read again when it changes (Kubernetes updates mounted Secrets in
place), so a key can be added or retired without a restart. With no key configured the
service is open, as before.

A request carries its key as ``Authorization: Bearer <key>``. A missing or wrong key is
answered ``401`` with a JSON error and ``WWW-Authenticate: Bearer``. Keys are compared in
constant time: the candidate's SHA-256 digest is compared with every key's digest with
``hmac.compare_digest`` (all of them, whichever matches), so neither the time taken nor an
early exit tells a caller how much of a key it guessed, or its length. Keys are never logged:
settings hold them as secrets, and nothing here writes one anywhere.

The health and metrics routes (``HEALTH_PATHS``, service/health.py: ``/livez``,
``/healthz``, ``/readyz``, ``/metrics`` and the V2 health routes) stay open, for probes and
Prometheus, unless ``KILN_SERVE_PROTECT_HEALTH`` closes them too. The try-it page's own files
(``/try``) stay open: they hold no data, and the page asks for a key when the API answers 401.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from starlette.types import ASGIApp, Receive, Scope, Send

from kiln.errors import KilnError
from service.health import HEALTH_PATHS
from service.settings import ServingSettings

__all__ = ["ApiKeyMiddleware", "KeyRing", "read_key_file"]

log = logging.getLogger("kiln.service")

_PAGE_PREFIX = "/try"
_RECHECK_SECONDS = 2.0  # how often the key file's modification time is looked at, at most
_UNAUTHORIZED = (
    b'{"error":"this service needs an API key: send the header Authorization: Bearer <key>"}'
)
_WRONG = b'{"error":"the API key is not valid"}'


def _digest(key: str | bytes) -> bytes:
    raw = key.encode() if isinstance(key, str) else key
    return hashlib.sha256(raw).digest()


def _unreadable(path: Path, exc: Exception) -> KilnError:
    return KilnError(f"the API key file {path} cannot be read: {exc}")


def _modified(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError as exc:
        raise _unreadable(path, exc) from None


def read_key_file(path: Path) -> list[str]:
    """The keys in a secret file: one per line, blank lines and ``#`` comments skipped."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise _unreadable(path, exc) from None
    keys = [line.strip() for line in text.splitlines()]
    return [k for k in keys if k and not k.startswith("#")]


class KeyRing:
    """The accepted keys (as digests), from the settings and the secret file."""

    def __init__(
        self, keys: list[str], file: Path | None = None, *, protect_health: bool = False
    ) -> None:
        self.protect_health = protect_health
        self._fixed = [_digest(k) for k in keys if k]
        self._file = file
        self._from_file: list[bytes] = []
        self._stamp: float | None = None
        self._checked = 0.0
        if file is not None:
            self._reload(force=True)

    @classmethod
    def from_settings(cls, settings: ServingSettings) -> KeyRing:
        return cls(
            [k.get_secret_value() for k in settings.api_keys],
            settings.api_keys_file,
            protect_health=settings.protect_health,
        )

    @property
    def enabled(self) -> bool:
        return self._file is not None or bool(self._fixed)

    def _reload(self, *, force: bool = False) -> None:
        assert self._file is not None
        now = time.monotonic()
        if not force and now - self._checked < _RECHECK_SECONDS:
            return
        self._checked = now
        try:
            stamp = _modified(self._file)
            if stamp == self._stamp:
                return
            keys = read_key_file(self._file)
        except KilnError as exc:
            if force:
                raise
            log.error("%s: keeping its last keys", exc.message)
            return
        self._from_file = [_digest(k) for k in keys]
        self._stamp = stamp
        log.info("read %d API key(s) from %s", len(keys), self._file)

    def accepts(self, key: bytes) -> bool:
        """Whether ``key`` is one of the keys, compared in constant time against all."""
        if self._file is not None:
            self._reload()
        candidate = _digest(key)
        found = False
        for digest in (*self._fixed, *self._from_file):
            found |= hmac.compare_digest(candidate, digest)
        return found


class ApiKeyMiddleware:
    """ASGI middleware: ``401`` unless the request carries an accepted Bearer key, on every
    route but the open ones.

    ``keys`` gives the key ring once the service has read its settings (BentoML builds its
    middleware before the service starts); until then, only the open routes are answered.
    With no key configured every request passes.
    """

    def __init__(self, app: ASGIApp, keys: Callable[[], KeyRing | None]) -> None:
        self.app = app
        self._source = keys
        self._keys: KeyRing | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        keys = self._keys or self._resolve()
        if keys is not None and not keys.enabled:
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        if (
            path == _PAGE_PREFIX
            or (  # the page and its files: one path segment, no more
                path.startswith(_PAGE_PREFIX + "/") and "/" not in path[len(_PAGE_PREFIX) + 1 :]
            )
        ):
            await self.app(scope, receive, send)
            return
        if path in HEALTH_PATHS and (keys is None or not keys.protect_health):
            await self.app(scope, receive, send)
            return
        if keys is None:
            await _answer(send, 503, b'{"error":"the service is starting"}')
            return
        key = _bearer(scope)
        if key is not None and keys.accepts(key):
            await self.app(scope, receive, send)
            return
        await _answer(send, 401, _UNAUTHORIZED if key is None else _WRONG)

    def _resolve(self) -> KeyRing | None:
        self._keys = self._source()
        return self._keys


def _bearer(scope: Scope) -> bytes | None:
    """The key of an ``Authorization: Bearer <key>`` header, else None."""
    for name, value in scope["headers"]:
        if name == b"authorization":
            scheme, _, key = value.partition(b" ")
            if scheme.lower() == b"bearer" and key.strip():
                return key.strip()
            return None
    return None


async def _answer(send: Any, status: int, body: bytes) -> None:
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
    ]
    if status == 401:
        headers.append((b"www-authenticate", b'Bearer realm="kiln"'))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
