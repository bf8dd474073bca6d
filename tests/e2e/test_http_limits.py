"""HTTP limits before the body, on the real server (service/httpserver.py): headers over the
size or count limit are a JSON 431, a malformed request a JSON 400, a connection that sends
nothing or sends its headers too slowly is closed, idle keep-alive connections close after
their timeout, and a flood of slow connections past the connection limit keeps neither /livez
nor predict from answering, even when it would use up the worker's file descriptors."""

from __future__ import annotations

import json
import resource
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import psutil
import pytest

from tests.conftest import CHURN_ROW
from tests.servers import kiln_process, kiln_server

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

MAX_HEADER_BYTES = 16 * 1024
MAX_HEADERS = 30
HEADER_TIMEOUT = 1.5
KEEP_ALIVE_TIMEOUT = 1.0
LIVEZ = b"GET /livez HTTP/1.1\r\nHost: kiln\r\n"


@pytest.fixture(scope="module")
def server(
    served_models: dict[str, Any], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    log = tmp_path_factory.mktemp("http-limits") / "server.log"
    limits = {
        "KILN_SERVE_MAX_HEADER_BYTES": str(MAX_HEADER_BYTES),
        "KILN_SERVE_MAX_HEADERS": str(MAX_HEADERS),
        "KILN_SERVE_HEADER_TIMEOUT": str(HEADER_TIMEOUT),
        "KILN_SERVE_KEEP_ALIVE_TIMEOUT": str(KEEP_ALIVE_TIMEOUT),
    }
    with kiln_server(served_models, log, **limits) as url:
        yield url


def connect(url: str, timeout: float = 10) -> socket.socket:
    host, port = url.removeprefix("http://").split(":")
    return socket.create_connection((host, int(port)), timeout=timeout)


def read_answer(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """One answer with a Content-Length body: status, headers (lower-case), body."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"closed without an answer after {data!r}"
        data += chunk
    head, body = data.split(b"\r\n\r\n", 1)
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, v in (line.split(":", 1) for line in lines)}
    while len(body) < int(headers["content-length"]):
        body += sock.recv(65536)
    return int(status_line.split()[1]), headers, body


def refused(url: str, request: bytes) -> tuple[int, str]:
    """Send ``request`` raw; the status and JSON error it gets, and the connection closed."""
    with connect(url) as sock:
        sock.sendall(request)
        status, headers, body = read_answer(sock)
        assert headers["content-type"] == "application/json", headers
        assert headers["connection"] == "close"
        assert sock.recv(1) == b""
    return status, json.loads(body)["error"]


def closed_after(sock: socket.socket) -> float:
    """Seconds until the server closes ``sock`` (its answer, if any, read and dropped)."""
    started = time.monotonic()
    while sock.recv(65536):
        pass
    return time.monotonic() - started


def still_answers(url: str) -> None:
    assert httpx.get(f"{url}/livez", timeout=10).status_code == 200
    answer = httpx.post(f"{url}/v1/models/churn/predict", json={"instances": [CHURN_ROW]})
    assert answer.status_code == 200, answer.text


def test_headers_over_the_size_limit_are_431_and_the_server_keeps_answering(server: str) -> None:
    big = LIVEZ + b"X-Big: " + b"a" * MAX_HEADER_BYTES + b"\r\n\r\n"
    status, error = refused(server, big)
    assert status == 431
    assert error == f"request line and headers are over the limit of {MAX_HEADER_BYTES} bytes"
    started = time.monotonic()  # 8 MiB: refused as soon as the limit is passed
    assert refused(server, LIVEZ + b"X-Big: " + b"a" * (8 << 20) + b"\r\n\r\n")[0] == 431
    assert time.monotonic() - started < 5
    still_answers(server)


def test_a_head_just_under_the_size_limit_is_served(server: str) -> None:
    padding = MAX_HEADER_BYTES - len(LIVEZ) - 64
    with connect(server) as sock:
        sock.sendall(LIVEZ + b"X-Pad: " + b"p" * padding + b"\r\n\r\n")
        assert read_answer(sock)[0] == 200


def test_more_headers_than_the_limit_are_431(server: str) -> None:
    def request(count: int) -> bytes:
        return LIVEZ + b"".join(b"X-%d: 1\r\n" % i for i in range(count - 1)) + b"\r\n"

    assert refused(server, request(MAX_HEADERS + 1)) == (
        431,
        f"more than {MAX_HEADERS} request headers",
    )
    with connect(server) as sock:
        sock.sendall(request(MAX_HEADERS))
        assert read_answer(sock)[0] == 200
    still_answers(server)


@pytest.mark.parametrize(
    "request_line",
    [b"GARBAGE\r\n\r\n", b"GET /livez HTTP/9.9\r\n\r\n", b"GET /li vez HTTP/1.1\r\n\r\n"],
)
def test_a_malformed_request_is_a_json_400(server: str, request_line: bytes) -> None:
    status, error = refused(server, request_line)
    assert status == 400 and error.startswith("malformed HTTP request"), error


def test_a_connection_that_sends_nothing_is_closed_after_the_header_timeout(server: str) -> None:
    with connect(server) as sock:
        assert HEADER_TIMEOUT - 0.1 < closed_after(sock) < HEADER_TIMEOUT + 2


def test_a_slow_head_is_408_and_closed(server: str) -> None:
    with connect(server, timeout=0.2) as sock:
        started = time.monotonic()
        sock.sendall(LIVEZ + b"X-Slow: ")
        while time.monotonic() - started < HEADER_TIMEOUT + 3:
            try:
                sock.sendall(b"a")  # a byte every 0.2 s: the head never ends
                if sock.recv(1, socket.MSG_PEEK):
                    break
            except TimeoutError:
                pass
        sock.settimeout(10)
        status, _, body = read_answer(sock)
        assert status == 408, body
        assert json.loads(body) == {
            "error": f"request headers not received within {HEADER_TIMEOUT} s"
        }
        assert time.monotonic() - started < HEADER_TIMEOUT + 2


def test_keep_alive_requests_are_served_and_an_idle_connection_closes(server: str) -> None:
    with connect(server) as sock:
        for _ in range(3):  # one connection, requests apart by less than the timeouts
            sock.sendall(LIVEZ + b"\r\n")
            status, headers, _ = read_answer(sock)
            assert status == 200 and headers.get("connection") != "close"
            time.sleep(KEEP_ALIVE_TIMEOUT / 2)
        assert closed_after(sock) < KEEP_ALIVE_TIMEOUT + 1  # BentoML's own: 5 s
    with httpx.Client(timeout=10) as client:
        for _ in range(50):
            answer = client.post(
                f"{server}/v1/models/churn/predict", json={"instances": [CHURN_ROW]}
            )
            assert answer.status_code == 200


def test_a_thousand_pipelined_requests_are_all_answered(server: str) -> None:
    """Far past the header limit in all, each head within it (a guard: uvicorn passed it)."""
    body = json.dumps({"instances": [CHURN_ROW]}).encode()
    request = b"POST /v1/models/churn/predict HTTP/1.1\r\nHost: kiln\r\n"
    request += b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
    with connect(server, timeout=30) as sock:
        sock.sendall(request * 1000)
        answers = b""
        while answers.count(b"HTTP/1.1 ") < 1000 and (chunk := sock.recv(1 << 20)):
            answers += chunk
    assert answers.count(b"HTTP/1.1 200 OK\r\n") == 1000


SLOW = 400  # slow connections, past both the limit and the worker's spare descriptors
WAVE = 25  # opened at once: asyncio accepts a whole burst before the limit can act
MAX_CONNECTIONS = 50
SPARE_FDS = 200


def test_slow_connections_past_the_limit_keep_neither_probes_nor_predict_out(
    served_models: dict[str, Any], tmp_path: Any
) -> None:
    """Issue 13's attack, scaled down: connections that send a header byte now and then and
    never end their head, opened a wave at a time. The worker has SPARE_FDS descriptors to
    spare, fewer than the attack's connections, as the real 20,000 used up a worker's 20,000;
    without the limit the probes find no descriptor left."""
    settings = {
        "KILN_SERVE_MAX_CONNECTIONS": str(MAX_CONNECTIONS),
        "KILN_SERVE_HEADER_TIMEOUT": "60",
    }
    with kiln_process(served_models, tmp_path / "server.log", **settings) as (url, process):
        for child in psutil.Process(process.pid).children(recursive=True):
            _, hard = resource.prlimit(child.pid, resource.RLIMIT_NOFILE)
            spare = child.num_fds() + SPARE_FDS
            resource.prlimit(child.pid, resource.RLIMIT_NOFILE, (spare, hard))
        slow: list[socket.socket] = []
        done = threading.Event()
        still_open: list[int] = []

        def attack() -> None:
            opened = 0
            while not done.wait(0.1):
                for _ in range(min(WAVE, SLOW - opened)):
                    sock = connect(url, timeout=5)
                    sock.sendall(b"POST /v1/models/churn/predict HTTP/1.1\r\nHost: kiln\r\nX-a: ")
                    slow.append(sock)
                    opened += 1
                for sock in list(slow):
                    try:
                        sock.sendall(b"a")  # one byte a turn: the head never ends
                    except OSError:
                        slow.remove(sock)
                        sock.close()
                still_open.append(len(slow))

        attacker = threading.Thread(target=attack)
        attacker.start()
        waits: list[float] = []
        try:
            deadline = time.monotonic() + 8
            while time.monotonic() < deadline:
                started = time.monotonic()
                still_answers(url)
                waits.append(time.monotonic() - started)
                time.sleep(0.1)
        finally:
            done.set()
            attacker.join(10)
            for sock in slow:
                sock.close()
        assert max(waits) < 2, f"a probe and a predict took up to {max(waits):.1f} s: {waits}"
        assert len(still_open) > 40 and max(still_open[-10:]) <= MAX_CONNECTIONS, still_open
