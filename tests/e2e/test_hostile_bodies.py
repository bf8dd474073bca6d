"""Hostile request bodies and HTTP manners, on the real server (issue 13, items 5, 6 and 8).

Deep or sprawling JSON is a 400 that costs the worker little memory and never holds its event
loop for long; gzip bodies are read within the body limit; a client that leaves mid-body is
not an error in the log; 405s carry ``Allow``; HEAD works where GET does; a stray trailing
slash is a JSON 404, never a redirect to the client's own Host header.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from service.settings import ServingSettings
from tests.conftest import CHURN_ROW

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

RECORDS = "/v1/models/churn/predict"
V2 = "/v2/models/churn/infer"
JSON = {"Content-Type": "application/json"}
MiB = 1024 * 1024
LIMIT = ServingSettings.model_fields["max_body_bytes"].default  # the default body limit


@pytest.fixture(scope="module")
def server(
    served_models: dict[str, Any], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, psutil.Process, Path]]:
    """A server at the default limits (16 MiB bodies, 10,000 rows), its process and log."""
    from tests.servers import kiln_process

    log = tmp_path_factory.mktemp("hostile") / "server.log"
    with kiln_process(served_models, log) as (url, process):
        yield url, psutil.Process(process.pid), log


def _url(server: tuple[str, psutil.Process, Path]) -> str:
    return server[0]


def _rss_mb(process: psutil.Process) -> float:
    """The largest resident set of the server's processes (the worker's), in MB."""
    sizes = []
    for p in [process, *process.children(recursive=True)]:
        with contextlib.suppress(psutil.NoSuchProcess):
            sizes.append(p.memory_info().rss)
    return max(sizes) / 1e6


def _v2_inputs() -> list[dict[str, Any]]:
    row = {k: (0.0 if v is None else v) for k, v in CHURN_ROW.items()}
    return [
        {"name": k, "shape": [1], "datatype": "BYTES" if isinstance(v, str) else "FP32",
         "data": [v]}
        for k, v in row.items()
    ]  # fmt: skip


def _deep(levels: int) -> str:
    return "[" * levels + "]" * levels


def _assert_json_error(response: httpx.Response, status: int) -> str:
    assert response.status_code == status, response.text[:300]
    assert response.headers["content-type"].startswith("application/json")
    error = response.json()["error"]
    assert isinstance(error, str) and error
    return error


class _Poller:
    """Polls /livez from a thread while something else runs; keeps the slowest answer and
    the worker's peak RSS."""

    def __init__(self, url: str, process: psutil.Process) -> None:
        self.url, self.process = url, process
        self.worst, self.peak, self.answers = 0.0, _rss_mb(process), 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run)

    def _run(self) -> None:
        with httpx.Client(timeout=30) as client:
            while not self._stop.is_set() and self.answers < 10_000:
                started = time.perf_counter()
                assert client.get(self.url + "/livez").status_code == 200
                self.worst = max(self.worst, time.perf_counter() - started)
                self.answers += 1
                self.peak = max(self.peak, _rss_mb(self.process))
                time.sleep(0.005)

    def __enter__(self) -> _Poller:
        self._thread.start()
        time.sleep(0.2)
        return self

    def __exit__(self, *_: object) -> None:
        time.sleep(0.2)
        self._stop.set()
        self._thread.join(30)


# -- 5. deep JSON --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "body"),
    [
        pytest.param(
            RECORDS,
            json.dumps({"instances": [CHURN_ROW], "parameters": {"a": "@"}}),
            id="records-parameters",
        ),
        pytest.param(
            V2, json.dumps({"inputs": _v2_inputs(), "parameters": {"a": "@"}}), id="v2-parameters"
        ),
        pytest.param(
            V2,
            json.dumps(
                {"inputs": _v2_inputs(), "outputs": [{"name": "label", "parameters": {"a": "@"}}]}
            ),
            id="v2-output-parameters",
        ),
    ],
)
def test_deep_parameters_are_a_400_not_a_500(
    server: tuple[str, psutil.Process, Path], path: str, body: str
) -> None:
    for levels in (40, 485, 1000):  # below orjson's own limit of 1024
        deep = body.replace('"@"', _deep(levels)).encode()
        response = httpx.post(_url(server) + path, content=deep, headers=JSON, timeout=30)
        assert "nested more than 32 levels" in _assert_json_error(response, 400)
        assert len(response.content) < 200
    assert "RecursionError" not in server[2].read_text()


def test_parameters_of_many_values_are_a_400(server: tuple[str, psutil.Process, Path]) -> None:
    many = json.dumps({"instances": [CHURN_ROW], "parameters": [{}] * 2000}).encode()
    response = httpx.post(_url(server) + RECORDS, content=many, headers=JSON, timeout=30)
    assert "more than 1024 values" in _assert_json_error(response, 400)
    fine = json.dumps({"instances": [CHURN_ROW], "parameters": {"a": [1, {"b": [2]}]}})
    response = httpx.post(_url(server) + RECORDS, content=fine, headers=JSON, timeout=30)
    assert response.status_code == 200, response.text


# -- 6. bodies that amplify memory or hold the event loop ----------------------------------


def test_a_body_of_empty_objects_is_refused_cheaply(
    server: tuple[str, psutil.Process, Path],
) -> None:
    url, process, _ = server
    row = json.dumps({"instances": [CHURN_ROW], "parameters": []}).encode()
    fill = (LIMIT - len(row) - 10) // 3
    body = row[:-2] + b"[" + b"{}," * fill + b"{}]}"
    assert len(body) <= LIMIT
    before = _rss_mb(process)
    with _Poller(url, process) as poll:
        response = httpx.post(url + RECORDS, content=body, headers=JSON, timeout=60)
    assert "JSON containers and values" in _assert_json_error(response, 400)
    # Before the bound: 200, +830 MB of RSS and /livez waiting 3.9 s.
    assert poll.peak - before < 250, (before, poll.peak)
    assert poll.worst < 0.5, poll.worst
    assert httpx.get(url + "/livez", timeout=10).status_code == 200


@pytest.mark.parametrize("what", ["10000-rows", "one-long-string", "braces-in-strings"])
def test_a_large_request_in_flight_leaves_the_loop_free(
    server: tuple[str, psutil.Process, Path], what: str
) -> None:
    url, process, _ = server
    if what == "10000-rows":
        body = json.dumps({"instances": [CHURN_ROW] * 10_000}).encode()
        status = 200
    elif what == "one-long-string":
        body = json.dumps({"instances": [CHURN_ROW], "parameters": "x" * (LIMIT - MiB)}).encode()
        status = 200
    else:  # {, [ and , inside strings are not structure: counted outside strings
        text = "{[," * 2000
        body = json.dumps({"instances": [{**CHURN_ROW, "region": text}] * 2000}).encode()
        status = 200
    with _Poller(url, process) as poll:
        for _ in range(3):
            response = httpx.post(url + RECORDS, content=body, headers=JSON, timeout=60)
            assert response.status_code == status, response.text[:300]
    assert poll.answers > 10
    assert poll.worst < 0.5, poll.worst


# -- 8. HTTP manners -----------------------------------------------------------------------


def test_a_client_leaving_mid_body_is_counted_not_an_error(
    server: tuple[str, psutil.Process, Path],
) -> None:
    url, _, log = server
    host, port = url.removeprefix("http://").split(":")

    def disconnects() -> float:
        for line in httpx.get(url + "/metrics", timeout=10).text.splitlines():
            if line.startswith("kiln_client_disconnects_total"):
                return float(line.split()[-1])
        return 0.0

    before = disconnects()
    for path in (RECORDS, V2):
        with socket.create_connection((host, int(port)), timeout=10) as s:
            head = f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            s.sendall(head.encode() + b"Content-Length: 1000\r\n\r\n" + b'{"instances": [')
            time.sleep(0.3)
    deadline = time.monotonic() + 10
    while disconnects() < before + 2 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert disconnects() == before + 2
    text = log.read_text()
    assert "ClientDisconnect" not in text and "Traceback" not in text, text[-2000:]


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("DELETE", "/v1/models", {"GET", "HEAD"}),
        ("PUT", "/v2/models/churn", {"GET", "HEAD"}),
        ("GET", RECORDS, {"POST"}),
        ("POST", "/livez", {"GET", "HEAD"}),  # BentoML's own route
    ],
)
def test_405_names_the_allowed_methods(
    server: tuple[str, psutil.Process, Path], method: str, path: str, allowed: set[str]
) -> None:
    response = httpx.request(method, _url(server) + path, timeout=10)
    _assert_json_error(response, 405)
    assert {m.strip() for m in response.headers["allow"].split(",")} == allowed


@pytest.mark.parametrize(
    "path", ["/v1/models", "/v1/models/churn", "/v2", "/v2/health/live", "/v2/models/churn"]
)
def test_head_is_get_without_the_body(server: tuple[str, psutil.Process, Path], path: str) -> None:
    get = httpx.get(_url(server) + path, timeout=10)
    head = httpx.head(_url(server) + path, timeout=10)
    assert get.status_code == head.status_code == 200
    assert head.content == b""
    assert head.headers["content-length"] == str(len(get.content))
    assert head.headers["content-type"] == get.headers["content-type"]


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v1/models/"),
        ("GET", "/v2/health/live/"),
        ("GET", "/livez/"),
        ("POST", RECORDS + "/"),
        ("GET", "/try/"),
    ],
)
def test_a_trailing_slash_is_a_404_not_a_redirect(
    server: tuple[str, psutil.Process, Path], method: str, path: str
) -> None:
    response = httpx.request(
        method, _url(server) + path, headers={"Host": "evil.example"}, timeout=10
    )
    _assert_json_error(response, 404)
    assert "location" not in response.headers


def test_gzip_bodies_are_read_within_the_limit(
    server: tuple[str, psutil.Process, Path],
) -> None:
    url, process, _ = server
    plain = json.dumps({"instances": [CHURN_ROW] * 3}).encode()
    zipped = {**JSON, "Content-Encoding": "gzip"}
    expected = httpx.post(url + RECORDS, content=plain, headers=JSON, timeout=30).json()
    answer = httpx.post(url + RECORDS, content=gzip.compress(plain), headers=zipped, timeout=30)
    assert answer.status_code == 200 and answer.json() == expected
    v2 = json.dumps({"inputs": _v2_inputs()}).encode()
    answer = httpx.post(url + V2, content=gzip.compress(v2), headers=zipped, timeout=30)
    assert answer.status_code == 200, answer.text
    # A bomb: 200 MB of spaces in 200 KB; inflated no further than the body limit.
    bomb = gzip.compress(plain[:-1] + b" " * (200 * 10**6) + b"}", compresslevel=9)
    assert len(bomb) < MiB
    before = _rss_mb(process)
    with _Poller(url, process) as poll:
        answer = httpx.post(url + RECORDS, content=bomb, headers=zipped, timeout=60)
    assert "inflated body is over the limit" in _assert_json_error(answer, 413)
    assert poll.peak - before < 250, (before, poll.peak)
    assert "not valid gzip" in _assert_json_error(
        httpx.post(url + RECORDS, content=plain, headers=zipped, timeout=30), 400
    )
    assert "cut short" in _assert_json_error(
        httpx.post(url + RECORDS, content=gzip.compress(plain)[:-12], headers=zipped, timeout=30),
        400,
    )
    for encoding in ("br", "deflate", "gzip, br"):
        answer = httpx.post(
            url + RECORDS, content=plain, headers={**JSON, "Content-Encoding": encoding}, timeout=30
        )
        assert "Content-Encoding: gzip" in _assert_json_error(answer, 415)


def test_the_server_still_serves(server: tuple[str, psutil.Process, Path]) -> None:
    response = httpx.post(_url(server) + RECORDS, json={"instances": [CHURN_ROW]}, timeout=30)
    assert response.status_code == 200 and len(response.json()["predictions"]) == 1
    assert "Traceback" not in server[2].read_text()
