"""Goodput under overload on the real server: a request is admitted whole or refused whole,
before its body is read, so refused requests cost ONNX Runtime nothing and are not counted
as received rows; a keep-alive connection whose refused body was never read stays in step."""

from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import CHURN_ROW
from tests.servers import hey_statuses, kiln_server

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

ROWS = 1_000
CLIENTS = 12
SECONDS = 6
SETTINGS = {  # 1,000-row requests split into two chunks; room for two requests
    "KILN_SERVE_BATCH": '{"max_batch_rows": 512, "max_wait_ms": 1}',
    "KILN_SERVE_MAX_QUEUE_ROWS": "2000",
}


def _metric(text: str, name: str) -> float:
    pattern = rf'^{name}\{{[^}}]*model="churn"[^}}]*\}} ([0-9.e+-]+)$'
    return sum(float(v) for v in re.findall(pattern, text, re.MULTILINE))


def _hey(url: str, body: Path, clients: int, seconds: int) -> subprocess.Popen[str]:
    argv = ["hey", "-z", f"{seconds}s", "-c", str(clients), "-m", "POST"]
    argv += ["-T", "application/json", "-D", str(body), "-t", "20", url]
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _answer(sock: socket.socket, buffer: bytearray) -> tuple[int, bytes]:
    """One HTTP/1.1 answer with a Content-Length from ``sock``: (status, body)."""
    while b"\r\n\r\n" not in buffer:
        chunk = sock.recv(65536)
        assert chunk, "the server closed the connection"
        buffer += chunk
    head, _, rest = bytes(buffer).partition(b"\r\n\r\n")
    length = int(re.search(rb"(?im)^content-length:\s*(\d+)", head).group(1))  # type: ignore[union-attr]
    while len(rest) < length:
        chunk = sock.recv(65536)
        assert chunk, "the server closed the connection"
        rest += chunk
    buffer[:] = rest[length:]
    return int(head.split(b" ", 2)[1]), rest[:length]


def test_overload_wastes_no_model_work_and_counts_no_refused_rows(
    served_models: dict[str, Any], tmp_path: Path
) -> None:
    if shutil.which("hey") is None:
        pytest.skip("hey is missing: apt-get install hey (.ci/run installs it)")
    body = tmp_path / "body.json"
    body.write_bytes(json.dumps({"instances": [CHURN_ROW] * ROWS}).encode())
    with kiln_server(served_models, tmp_path / "server.log", **SETTINGS) as url:
        predict = f"{url}/v1/models/churn/predict"
        for _ in range(3):  # the bytes per row of this body are learned
            assert httpx.post(predict, content=body.read_bytes(), timeout=30).status_code == 200
        before = httpx.get(f"{url}/metrics", timeout=30).text
        load = _hey(predict, body, CLIENTS, SECONDS)
        try:
            # Ten times the rows: the queue (room for two requests) cannot take it while
            # the load keeps anything queued, so it is refused before its body.
            big = json.dumps({"instances": [CHURN_ROW] * (10 * ROWS)}).encode()
            ours = _keep_alive_after_refusals(url, big)
        finally:
            out, _ = load.communicate(timeout=SECONDS + 60)
        after = httpx.get(f"{url}/metrics", timeout=30).text

    statuses = hey_statuses(out)
    assert set(statuses) <= {200, 503}, out
    assert statuses.get(503, 0) > 10, out  # it really was over what it takes
    ran = _metric(after, "kiln_batch_rows_sum") - _metric(before, "kiln_batch_rows_sum")
    received = _metric(after, "kiln_rows_received_total") - _metric(
        before, "kiln_rows_received_total"
    )
    served = statuses[200] * ROWS + ours * 10 * ROWS
    slack = CLIENTS * ROWS  # requests in flight when hey stopped
    print(f"\ngoodput: {statuses} (+{ours}), ONNX Runtime rows {ran:.0f}, received {received:.0f}")
    assert ran <= served + slack  # no chunk of a refused request ran
    assert received <= served + slack  # no refused request's rows were counted
    assert ran == received  # what was counted is what ran


def _keep_alive_after_refusals(url: str, body: bytes) -> int:
    """On one connection: headers only, then (answered or not) the body and another request.
    A 503 sent before the body was read must leave the connection in step: the unread body
    is skipped and the next request on the connection is answered. Returns its 200s."""
    host, port = url.removeprefix("http://").split(":")
    head = (
        f"POST /v1/models/churn/predict HTTP/1.1\r\nHost: {host}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    refused_early = served = 0
    # While the load runs (bounded in count too): a refusal comes after at most the
    # admission wait (0.25 s), so an answer not there within 0.6 s means admitted.
    deadline = time.monotonic() + SECONDS - 1
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        buffer = bytearray()
        for _ in range(40):
            if refused_early >= 3 or time.monotonic() > deadline:
                break
            sock.sendall(head)
            sock.settimeout(0.6)
            try:
                early = sock.recv(65536)  # a refusal comes without the body
            except TimeoutError:
                early = b""
            sock.settimeout(30)
            buffer += early
            sock.sendall(body)  # sent either way, as a client that did not look would
            status, answer = _answer(sock, buffer)
            assert status in (200, 503), answer
            if early:
                assert status == 503 and b"retry" in answer
                refused_early += 1
            served += status == 200
        sock.sendall(f"GET /livez HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
        status, _ = _answer(sock, buffer)
        assert status == 200
    assert refused_early, "no request was refused before its body"
    return served
