"""Plain-text error answers become JSON; everything else passes untouched."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from service.errorbodies import JsonErrors


def _client() -> TestClient:
    async def ok(_: object) -> PlainTextResponse:
        return PlainTextResponse("fine")

    async def json_error(_: object) -> JSONResponse:
        return JSONResponse({"error": "ours"}, status_code=400)

    async def text_error(_: object) -> PlainTextResponse:
        return PlainTextResponse("Too many\n", status_code=429, headers={"Retry-After": "3"})

    app = Starlette(
        routes=[Route("/ok", ok), Route("/json", json_error), Route("/text", text_error)]
    )
    app.add_middleware(JsonErrors)
    return TestClient(app)


def test_plain_text_errors_become_json_keeping_status_and_headers() -> None:
    client = _client()
    missing = client.get("/nowhere")
    assert missing.status_code == 404 and missing.json() == {"error": "Not Found"}
    wrong_method = client.post("/ok")
    assert wrong_method.status_code == 405 and wrong_method.json()["error"]
    text = client.get("/text")
    assert text.status_code == 429 and text.json() == {"error": "Too many"}
    assert text.headers["retry-after"] == "3"
    assert text.headers["content-length"] == str(len(text.content))


def test_success_and_json_errors_pass_untouched() -> None:
    client = _client()
    ok = client.get("/ok")
    assert ok.text == "fine" and ok.headers["content-type"].startswith("text/plain")
    assert client.get("/json").json() == {"error": "ours"}


def test_a_trailing_slash_redirect_is_a_404_without_location() -> None:
    client = _client()
    for path in ("/ok/", "/text/"):
        answer = client.get(path, headers={"Host": "evil.example"}, follow_redirects=False)
        assert answer.status_code == 404, answer.headers
        assert "location" not in answer.headers
        assert answer.json() == {"error": f"no route {path!r} (did you mean {path[:-1]!r}?)"}


def test_other_redirects_pass() -> None:
    from starlette.responses import RedirectResponse

    async def moved(_: object) -> RedirectResponse:
        return RedirectResponse("/elsewhere")

    app = Starlette(routes=[Route("/old", moved)])
    app.add_middleware(JsonErrors)
    answer = TestClient(app).get("/old", follow_redirects=False)
    assert answer.status_code == 307 and answer.headers["location"] == "/elsewhere"
