"""API keys: the key ring (settings, secret file, rotation) and the middleware's answers."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from kiln.errors import KilnError
from service import access
from service.access import ApiKeyMiddleware, KeyRing, read_key_file
from service.health import HEALTH_PATHS
from service.settings import ServingSettings


def _client(keys: KeyRing | None) -> TestClient:
    async def ok(_: object) -> PlainTextResponse:
        return PlainTextResponse("ok")

    paths = ["/v1/models", "/v1/models/x/predict", "/try", "/try/try.js", *HEALTH_PATHS]
    app = Starlette(routes=[Route(p, ok, methods=["GET", "POST"]) for p in paths])
    app.add_middleware(ApiKeyMiddleware, keys=lambda: keys)
    return TestClient(app)


def test_settings_read_keys_comma_separated_or_as_json_and_never_show_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("KILN_SERVE_API_KEYS", " first-key , second-key ,")
    settings = ServingSettings()
    assert [k.get_secret_value() for k in settings.api_keys] == ["first-key", "second-key"]
    assert "first-key" not in repr(settings) and "first-key" not in str(settings.model_dump())
    monkeypatch.setenv("KILN_SERVE_API_KEYS", '["a,b", "c"]')
    assert [k.get_secret_value() for k in ServingSettings().api_keys] == ["a,b", "c"]


def test_no_key_configured_leaves_every_route_open() -> None:
    client = _client(KeyRing([]))
    assert client.post("/v1/models/x/predict").status_code == 200
    assert client.get("/v1/models").status_code == 200


@pytest.mark.parametrize("path", ["/v1/models", "/v1/models/x/predict"])
def test_a_missing_or_wrong_key_is_401_json_with_www_authenticate(path: str) -> None:
    client = _client(KeyRing(["old-key", "new-key"]))
    for headers, needs in (
        ({}, "needs an API key"),
        ({"Authorization": "Bearer wrong"}, "not valid"),
        ({"Authorization": "Basic b2xkLWtleQ=="}, "needs an API key"),
        ({"Authorization": "Bearer "}, "needs an API key"),
        ({"Authorization": "Bearer old-key-and-more"}, "not valid"),
        ({"Authorization": "Bearer old-ke"}, "not valid"),
    ):
        response = client.post(path, headers=headers)
        assert response.status_code == 401, headers
        assert response.headers["content-type"] == "application/json"
        assert response.headers["www-authenticate"].startswith("Bearer")
        assert needs in response.json()["error"]
    for key in ("old-key", "new-key"):  # both keys of a rotation work
        ok = client.post(path, headers={"Authorization": f"Bearer {key}"})
        assert ok.status_code == 200 and ok.text == "ok"
    assert client.post(path, headers={"authorization": "bearer new-key"}).status_code == 200


def test_the_open_routes_are_every_health_route_probes_call() -> None:
    """One list, shared with the concurrency limit (service/traffic.py)."""
    bentoml = {"/livez", "/healthz", "/readyz", "/metrics"}
    assert {"/v2/health/live", "/v2/health/ready"} | bentoml == HEALTH_PATHS


def test_health_metrics_and_the_try_page_stay_open_unless_closed() -> None:
    client = _client(KeyRing(["k"]))
    for path in [*HEALTH_PATHS, "/try", "/try/try.js"]:
        assert client.get(path).status_code == 200, path
    closed = _client(KeyRing(["k"], protect_health=True))
    for path in HEALTH_PATHS:
        assert closed.get(path).status_code == 401, path
        assert closed.get(path, headers={"Authorization": "Bearer k"}).status_code == 200
    assert closed.get("/try").status_code == 200  # the page holds no data; it asks for a key
    for sneaky in ("/try/../v1/models", "/try/x/y", "/livez/", "/metrics/../v1/models"):
        assert client.get(sneaky).status_code == 401, sneaky


def test_before_the_settings_are_read_only_open_routes_answer() -> None:
    client = _client(None)
    assert client.get("/livez").status_code == 200
    starting = client.post("/v1/models/x/predict", headers={"Authorization": "Bearer k"})
    assert starting.status_code == 503 and starting.json()["error"]


def test_every_key_is_compared_whichever_matches(monkeypatch: pytest.MonkeyPatch) -> None:
    """Constant time: no early exit on a match, digests of equal length."""
    compared: list[tuple[bytes, bytes]] = []
    real = access.hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        compared.append((a, b))
        return real(a, b)

    monkeypatch.setattr(access.hmac, "compare_digest", spy)
    ring = KeyRing(["one", "two", "three"])
    assert ring.accepts(b"one")
    assert len(compared) == 3 and {len(a) for a, _ in compared} == {32}
    compared.clear()
    assert not ring.accepts(b"x" * 1000)
    assert len(compared) == 3 and {len(a) for a, _ in compared} == {32}


def test_key_file_comments_blank_lines_and_rotation_without_restart(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = tmp_path / "keys"
    secret.write_text("# rotated 2026-11\nalpha\n\n  beta  \n")
    assert read_key_file(secret) == ["alpha", "beta"]
    ring = KeyRing([], secret)
    assert ring.enabled and ring.accepts(b"alpha") and ring.accepts(b"beta")
    assert not ring.accepts(b"# rotated 2026-11")
    secret.write_text("gamma\n")
    stamp = time.time() + 5
    os.utime(secret, (stamp, stamp))
    monkeypatch.setattr(access, "_RECHECK_SECONDS", 0.0)
    assert ring.accepts(b"gamma") and not ring.accepts(b"alpha")
    secret.unlink()  # a file that goes away keeps the last keys (and says so in the log)
    assert ring.accepts(b"gamma")


def test_an_unreadable_key_file_stops_start_up(tmp_path: Path) -> None:
    with pytest.raises(KilnError, match="cannot be read"):
        KeyRing([], tmp_path / "missing")
