"""HTTP routes of both protocols, as one FastAPI app that BentoML mounts.

Routes only translate: read the body, decode it with the protocol's codec, call the data
plane, encode the answer. Every Kiln error becomes ``{"error": message}`` with its status.

- JSON records: ``GET /v1/models``, ``GET /v1/models/{name}``,
  ``POST /v1/models/{name}/predict``.
- Open Inference Protocol (KServe V2) REST with the binary tensor extension: ``GET /v2``,
  ``/v2/health/live``, ``/v2/health/ready``, ``GET /v2/models/{name}[/versions/{v}]``,
  ``.../ready``, ``POST .../infer``.
- The try-it page: ``GET /try`` (service/ui.py), which calls the JSON records API.
- ``POST /v1/noop``: reads the body and answers, the HTTP ceiling for benchmarks.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import AsyncIterator
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException

from kiln.checks import warnings_body
from kiln.errors import (
    InvalidInput,
    KilnError,
    Overloaded,
    ServiceUnavailable,
    UnsupportedMediaType,
)
from kiln.records import decode_instances, encode_predictions
from service.bodies import ClientDisconnect, off_loop, read_body
from service.codecs import tensors, v2
from service.codecs.bounds import check_structure, structure_budget
from service.codecs.jsonkeys import ensure_unique_keys, payload_members
from service.dataplane import DataPlane
from service.fastlane import FastLane, routes_first
from service.head import HeadAsGet, allow_head
from service.models import ServedModel
from service.openapi import install as install_openapi
from service.settings import ServingSettings

__all__ = ["create_app"]

log = logging.getLogger("kiln.service")
JSON = "application/json"
HEADER_LENGTH = "Inference-Header-Content-Length"


def _json(content: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(
        orjson.dumps(content, option=orjson.OPT_SERIALIZE_NUMPY),
        status_code=status,
        media_type=JSON,
        headers=headers,
    )


def _error(exc: KilnError) -> Response:
    headers = {"Retry-After": "1"} if isinstance(exc, Overloaded) else None
    return _json({"error": exc.message}, exc.status_code, headers)


def _plane(request: Request) -> DataPlane:
    plane: DataPlane | None = getattr(request.app.state, "dataplane", None)
    if plane is None:
        raise ServiceUnavailable("the service has not finished starting; retry shortly")
    return plane


async def _body(request: Request) -> bytes:
    """The body, inflated, within the limit (service/bodies.py)."""
    plane = _plane(request)
    return await read_body(
        request, plane.settings.max_body_bytes, functools.partial(_disconnected, plane)
    )


def _disconnected(plane: DataPlane) -> None:
    if plane.metrics:
        plane.metrics.client_disconnects.inc()


def _check_content_type(request: Request, *, binary: bool = False) -> None:
    """JSON bodies: ``application/json`` (or ``application/*+json``), or no content type at
    all; the V2 binary extension also ``application/octet-stream``. Anything else (a form,
    text, XML) is answered 415 before the body is read."""
    raw = request.headers.get("content-type")
    if raw is None:
        return
    media = raw.partition(";")[0].strip().lower()
    if media == JSON or (media.startswith("application/") and media.endswith("+json")):
        return
    if binary and media == "application/octet-stream":
        return
    accepted = "application/json" + (" or application/octet-stream" if binary else "")
    hint = " (curl -d sends a form: add -H 'Content-Type: application/json')"
    raise UnsupportedMediaType(
        f"content type {raw[:60]!r} is not read here; send {accepted}"
        + (hint if media == "application/x-www-form-urlencoded" else "")
    )


def _parse_json(body: bytes) -> Any:
    if not body:
        raise InvalidInput("the body is empty; send a JSON object")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidInput(f"the body is not valid JSON: {exc}") from None


def _decode_records(
    body: bytes, served: ServedModel, settings: ServingSettings
) -> tuple[dict[str, Any], int]:
    """A records body as typed columns; run off the loop when large (service/bodies.py)."""
    rows, features = settings.max_rows_per_request, len(served.features)
    what = f"a request of {rows:,} rows of {features} features"
    check_structure(body, structure_budget(rows, features), what)
    payload = _parse_json(body)
    columns, count = decode_instances(
        payload, served.features, max_rows=rows, unknown=settings.unknown_features
    )
    ensure_unique_keys(body, payload_members(payload))
    return columns, count


@contextlib.asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    """While the app runs, the data plane watches for newly promoted production versions."""
    plane: DataPlane | None = getattr(app.state, "dataplane", None)
    watcher = None
    if plane is not None and plane.settings.poll_seconds > 0:
        watcher = asyncio.create_task(plane.watch(), name="kiln-production-watch")
    try:
        yield
    finally:
        if watcher is not None:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher


def create_app(*, fast_lane: bool = True) -> FastAPI:
    """The routes; the data plane is attached later as ``app.state.dataplane``.
    ``fast_lane=False`` leaves the inference routes to FastAPI's routing (for comparison)."""
    app = FastAPI(
        title="Kiln",
        summary="scikit-learn models served with ONNX Runtime",
        lifespan=_lifespan,
        # A path with a stray trailing slash is 404, not a redirect built from the client's
        # Host header (BentoML's outer app: service/errorbodies.py).
        redirect_slashes=False,
    )

    @app.exception_handler(KilnError)
    async def kiln_error(_: Request, exc: KilnError) -> Response:
        return _error(exc)

    @app.exception_handler(HTTPException)
    async def http_error(_: Request, exc: HTTPException) -> Response:
        return _json({"error": str(exc.detail)}, exc.status_code, allow_head(exc.headers))

    @app.exception_handler(ClientDisconnect)
    async def client_left(_: Request, exc: ClientDisconnect) -> Response:
        # Logged at debug and counted where the body is read; nobody reads this answer.
        return _json({"error": "the client disconnected before its body was complete"}, 400)

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, exc: RequestValidationError) -> Response:
        return _json({"error": f"invalid request: {exc.errors()}"}, 422)

    @app.exception_handler(Exception)
    async def unexpected(_: Request, exc: Exception) -> Response:
        log.exception("unexpected error")
        return _json({"error": "internal error"}, 500)

    # -- JSON records ---------------------------------------------------------------------

    @app.get("/v1/models")
    async def list_models(request: Request) -> Response:
        plane = _plane(request)
        return _json(
            {
                "models": [
                    {"name": m.name, "version": m.version, "task": m.metadata.task.value}
                    for m in plane.models.values()
                ]
            }
        )

    @app.get("/v1/models/{name}")
    async def model_metadata(name: str, request: Request) -> Response:
        return _json(_plane(request).get(name).describe())

    @app.post("/v1/models/{name}/predict")
    async def predict(name: str, request: Request) -> Response:
        plane = _plane(request)
        try:
            served = plane.get(name)
            _check_content_type(request)
            # refused here under overload, before the body is read (service/dataplane.py)
            await plane.admit(name, None, request.headers.get("content-length"), "json")
            body = await _body(request)
            decode = functools.partial(_decode_records, body, served, plane.settings)
            columns, rows = await off_loop(len(body), decode)
        except KilnError as exc:
            plane.record_error(name, exc)
            raise
        answer = await plane.infer(name, columns, rows)
        served = answer.served
        encoded = encode_predictions(
            model=served.name,
            version=served.version,
            outputs=answer.outputs,
            classes=served.metadata.classes,
        )
        encoded.update(warnings_body(answer.warnings, answer.warning_count))
        return _json(encoded)

    @app.post("/v1/noop")
    async def noop(request: Request) -> Response:
        """Reads the body and answers: the HTTP ceiling of this service, for benchmarks."""
        await _body(request)
        return _json({"ok": True})

    # -- Open Inference Protocol (V2) ----------------------------------------------------

    @app.get("/v2")
    async def server_metadata() -> Response:
        return _json(tensors.server_metadata(["binary_tensor_data"]))

    @app.get("/v2/health/live")
    async def server_live() -> Response:
        return _json({"live": True})

    @app.get("/v2/health/ready")
    async def server_ready(request: Request) -> Response:
        ready = _plane(request).ready
        return _json({"ready": ready}, 200 if ready else 503)

    @app.get("/v2/models/{name}")
    @app.get("/v2/models/{name}/versions/{version}")
    async def v2_model_metadata(
        name: str, request: Request, version: str | None = None
    ) -> Response:
        return _json(tensors.model_metadata(_plane(request).get(name, version).metadata))

    @app.get("/v2/models/{name}/ready")
    @app.get("/v2/models/{name}/versions/{version}/ready")
    async def v2_model_ready(name: str, request: Request, version: str | None = None) -> Response:
        served = _plane(request).get(name, version)
        return _json({"name": served.name, "ready": True})

    @app.post("/v2/models/{name}/infer")
    @app.post("/v2/models/{name}/versions/{version}/infer")
    async def v2_infer(name: str, request: Request, version: str | None = None) -> Response:
        plane = _plane(request)
        try:
            served = plane.get(name, version)
            _check_content_type(request, binary=True)
            header = request.headers.get(HEADER_LENGTH)
            if header is not None and not header.isdigit():
                raise InvalidInput(f"{HEADER_LENGTH} must be a whole number, got {header[:20]!r}")
            protocol = "v2" if header is None else "v2-binary"
            await plane.admit(name, version, request.headers.get("content-length"), protocol)
            body = await _body(request)
            decode = functools.partial(
                v2.decode_request,
                body,
                served.v2_inputs,
                header_length=int(header) if header is not None else None,
                max_rows=plane.settings.max_rows_per_request,
                unknown_inputs=plane.settings.unknown_features,
            )
            decoded = await off_loop(len(body), decode)
            known = served.output_names
            tensors.check_known_outputs(decoded.outputs, known)
        except KilnError as exc:
            plane.record_error(name, exc)
            raise
        answer = await plane.infer(name, decoded.columns, decoded.rows, version)
        body, header_length = v2.encode_response(
            model_name=answer.served.name,
            model_version=answer.served.version,
            request_id=decoded.id,
            outputs=[(n, answer.outputs[n]) for n in known],
            requested=decoded.outputs,
            binary_default=bool(decoded.parameters.get("binary_data_output", False)),
            parameters=tensors.response_parameters(answer.warnings, answer.warning_count),
        )
        if header_length is None:
            return Response(body, media_type=JSON)
        return Response(
            body,
            media_type="application/octet-stream",
            headers={HEADER_LENGTH: str(header_length)},
        )

    # -- The try-it page (GET /try): a web page over the JSON records API ----------------

    from service.ui import router as try_page

    app.include_router(try_page)

    install_openapi(app)  # the routes' real request and response schemas (service/openapi.py)
    # The inference routes skip FastAPI's routing machinery (service/fastlane.py says why).
    if fast_lane:
        app.add_middleware(FastLane)
        routes_first(app)
    app.add_middleware(HeadAsGet)  # HEAD on every GET route (service/head.py)
    return app
