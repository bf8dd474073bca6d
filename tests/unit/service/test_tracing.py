"""service/tracing.py: the untraced routes skip the tracing middleware; the others are traced."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from opentelemetry.instrumentation import asgi
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from service import tracing


@pytest.fixture
def middleware(monkeypatch: pytest.MonkeyPatch) -> Iterator[type]:
    """The class BentoML would build, after install(); the module's own restored after."""
    monkeypatch.setattr(asgi, "OpenTelemetryMiddleware", asgi.OpenTelemetryMiddleware)
    tracing.install()
    tracing.install()  # twice: still one subclass deep
    yield asgi.OpenTelemetryMiddleware


def client(middleware: type, exporter: InMemorySpanExporter) -> TestClient:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))

    async def answer(_: object) -> PlainTextResponse:
        return PlainTextResponse("ok")

    app = Starlette(routes=[Route(p, answer, methods=["GET", "POST"]) for p in PATHS])
    wrapped = middleware(app, excluded_urls=",".join(tracing.UNTRACED), tracer_provider=provider)
    return TestClient(wrapped)


PATHS = ["/v1/models/wine/predict", "/v2/models/wine/infer", "/v1/noop", "/livez"]


def test_untraced_routes_skip_the_url_work_and_others_are_traced(
    middleware: type, monkeypatch: pytest.MonkeyPatch
) -> None:
    built: list[str] = []
    original = asgi.get_host_port_url_tuple

    def counted(scope: dict[str, object]) -> tuple[str, int, str]:
        built.append(str(scope["path"]))
        return original(scope)  # type: ignore[no-any-return]

    monkeypatch.setattr(asgi, "get_host_port_url_tuple", counted)
    exporter = InMemorySpanExporter()
    with client(middleware, exporter) as http:
        for path in PATHS[:3]:
            assert http.post(path).text == "ok"
        assert exporter.get_finished_spans() == ()
        assert built == []  # straight to the app: no URL built, no pattern matched
        assert http.get("/livez").text == "ok"
    assert set(built) == {"/livez"}  # (the middleware builds it twice for a traced request)
    assert [
        span.attributes.get("url.path", span.attributes.get("http.target"))
        for span in exporter.get_finished_spans()
        if span.kind.name == "SERVER"
    ] == ["/livez"]


def test_install_subclasses_once(middleware: type) -> None:
    bases = [c for c in middleware.__mro__ if c.__name__ == "OpenTelemetryMiddleware"]
    assert len(bases) == 1 and middleware.__name__ == "UntracedFirst"
