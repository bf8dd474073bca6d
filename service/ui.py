"""The try-it page: a small web page over the JSON records API, for people rather than code.

``GET /try`` serves ``static/try.html``; its style and script come from ``/try/try.css`` and
``/try/try.js``, served from this package too, and it loads nothing from anywhere else (it
works offline; the Content-Security-Policy says so to the browser). The page lists the models
(``GET /v1/models``), builds a form from one model's features (``GET /v1/models/{name}``) and
shows the answer of ``POST /v1/models/{name}/predict``: it adds no API of its own.

The files are read once per process. They are sent with an ``ETag`` and
``Cache-Control: no-cache``, so a browser keeps them but asks each time whether they changed
(answered ``304`` while they have not): a new version of the service is seen at once.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import Response
from starlette.exceptions import HTTPException

from kiln.errors import KilnError

__all__ = ["PAGE_PATH", "STATIC", "router"]

log = logging.getLogger("kiln.service")
STATIC = Path(__file__).resolve().parent / "static"
PAGE_PATH = "/try"
_PAGE = "try.html"
# What the page loads, by URL name under PAGE_PATH: the only files served from STATIC.
_ASSETS = {
    "try.css": "text/css; charset=utf-8",
    "try.js": "text/javascript; charset=utf-8",
}
_HEADERS = {
    "Cache-Control": "no-cache",
    # Same origin only: no fonts, scripts or styles from elsewhere, no framing, no inline script.
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
        "img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


@dataclass(frozen=True)
class _File:
    body: bytes
    media_type: str
    etag: str


@cache
def _load(name: str, media_type: str) -> _File:
    path = STATIC / name
    try:
        body = path.read_bytes()
    except OSError as exc:
        log.error("the try-it page cannot be served: %s", exc)
        raise KilnError(
            f"the try-it page is missing from this installation ({path.name} is not in "
            f"service/static/)"
        ) from None
    return _File(body, media_type, f'"{hashlib.sha256(body).hexdigest()[:32]}"')


def _send(request: Request, file: _File) -> Response:
    headers = {**_HEADERS, "ETag": file.etag}
    if file.etag in request.headers.get("if-none-match", ""):
        return Response(status_code=304, headers=headers)
    return Response(file.body, media_type=file.media_type, headers=headers)


router = APIRouter(include_in_schema=False)


@router.api_route(PAGE_PATH, methods=["GET", "HEAD"])
async def try_page(request: Request) -> Response:
    """The page itself."""
    return _send(request, _load(_PAGE, "text/html; charset=utf-8"))


@router.api_route(PAGE_PATH + "/{name}", methods=["GET", "HEAD"])
async def try_asset(name: str, request: Request) -> Response:
    """The page's style sheet and script."""
    media_type = _ASSETS.get(name)
    if media_type is None:
        raise HTTPException(404, f"no such file: {PAGE_PATH}/{name}")
    return _send(request, _load(name, media_type))
