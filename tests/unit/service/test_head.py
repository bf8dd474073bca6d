"""HEAD is GET without the body; 405s name HEAD where GET is allowed."""

from __future__ import annotations

from starlette.testclient import TestClient

from service.app import create_app
from service.head import allow_head


def test_head_answers_as_get_without_a_body() -> None:
    client = TestClient(create_app())
    get, head = client.get("/v2/health/live"), client.head("/v2/health/live")
    assert get.status_code == head.status_code == 200
    assert head.content == b"" and head.headers["content-length"] == str(len(get.content))


def test_405_allow_names_head_beside_get() -> None:
    client = TestClient(create_app())
    answer = client.delete("/v2/health/live")
    assert answer.status_code == 405 and answer.headers["allow"] == "GET, HEAD"
    assert answer.json() == {"error": "Method Not Allowed"}
    post_only = client.head("/v1/noop")
    assert post_only.status_code == 405 and post_only.headers["allow"] == "POST"
    assert allow_head(None) is None
    assert allow_head({"Allow": "POST"}) == {"Allow": "POST"}
    assert allow_head({"Allow": "GET, POST"}) == {"Allow": "GET, HEAD, POST"}


def test_a_trailing_slash_is_not_redirected() -> None:
    answer = TestClient(create_app()).get("/v2/health/live/", follow_redirects=False)
    assert answer.status_code == 404 and "location" not in answer.headers
