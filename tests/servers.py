"""Starting and stopping real servers for tests: loopback only, bounded waits, always stopped."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
import yaml

from tests.conftest import REPO

T = TypeVar("T")

__all__ = [
    "free_port",
    "hey_statuses",
    "kiln_grpc_server",
    "kiln_process",
    "kiln_server",
    "prometheus_query",
    "prometheus_server",
    "start",
    "stop",
    "wait_for",
    "wait_ready",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start(args: list[str], log: Path, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    """Start ``args`` in its own process group from the repository root, output to ``log``."""
    with log.open("w") as out:
        return subprocess.Popen(
            args, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )


def stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM the process group, SIGKILL it after 20 s."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(20)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(5)


def wait_ready(url: str, process: subprocess.Popen[bytes], log: Path, seconds: float) -> None:
    """Poll ``url`` until it answers 200; fail with the log's tail if the process dies."""
    deadline = time.monotonic() + seconds
    while True:
        if process.poll() is not None:
            pytest.fail(f"{log.stem} exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            pytest.fail(f"{log.stem} not ready in {seconds:.0f} s:\n{log.read_text()[-3000:]}")
        time.sleep(0.5)


@contextmanager
def kiln_process(
    served_models: dict[str, Any], log: Path, *, wait_for: str = "/readyz", **settings: str
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """`bentoml serve` from the repository root, as a user runs it, serving exactly the
    versions in ``served_models``; yields its URL and process once ``wait_for`` answers 200.
    ``settings`` are environment variables (``KILN_SERVE_*``, or ``BENTOML_HOME`` for another
    store). The gRPC front is off unless ``settings`` give it a port (:func:`kiln_grpc_server`
    does): its default port is one for the whole machine, which servers started side by side
    would share (SO_REUSEPORT). Stopped on the way out, if it still runs."""
    port = free_port()
    env = {
        **os.environ,
        "KILN_SERVE_MODELS": json.dumps([m.tag for m in served_models.values()]),
        "KILN_SERVE_BATCH": '{"max_batch_rows": 64, "max_wait_ms": 10}',
        "KILN_SERVE_GRPC_PORT": "0",
        **settings,
    }
    bentoml = Path(sys.executable).parent / "bentoml"
    process = start([str(bentoml), "serve", "--host", "127.0.0.1", "--port", str(port)], log, env)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_ready(f"{url}{wait_for}", process, log, 90)
        yield url, process
    finally:
        stop(process)


@contextmanager
def kiln_server(
    served_models: dict[str, Any], log: Path, *, wait_for: str = "/readyz", **settings: str
) -> Iterator[str]:
    """:func:`kiln_process`, yielding only the URL."""
    with kiln_process(served_models, log, wait_for=wait_for, **settings) as (url, _):
        yield url


@contextmanager
def kiln_grpc_server(
    served_models: dict[str, Any], log: Path, *, wait_for: str = "/readyz", **settings: str
) -> Iterator[tuple[str, str]]:
    """:func:`kiln_process` with its gRPC front on a free port of 127.0.0.1: yields the HTTP
    URL and the gRPC target (``127.0.0.1:PORT``) once both take connections."""
    import grpc

    port = free_port()
    settings = {"KILN_SERVE_GRPC_PORT": str(port), **settings}
    with kiln_process(served_models, log, wait_for=wait_for, **settings) as (url, process):
        target = f"127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        with grpc.insecure_channel(target) as channel:
            while True:  # the HTTP side answered: the gRPC side starts in the same workers
                try:
                    grpc.channel_ready_future(channel).result(timeout=1)
                    break
                except grpc.FutureTimeoutError:
                    if process.poll() is not None or time.monotonic() > deadline:
                        pytest.fail(f"no gRPC on {target}:\n{log.read_text()[-3000:]}")
        yield url, target


@contextmanager
def prometheus_server(
    prometheus: str, target: str, rule_files: list[Path], home: Path
) -> Iterator[str]:
    """A real Prometheus (Debian's ``prometheus`` binary) on a free port of 127.0.0.1 that
    scrapes ``target`` (a Kiln base URL) as job ``kiln`` and evaluates ``rule_files``, every
    second; yields its URL once it is ready."""
    config = {
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(f) for f in rule_files],
        "scrape_configs": [
            {
                "job_name": "kiln",
                "static_configs": [{"targets": [target.removeprefix("http://")]}],
            }
        ],
    }
    (home / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    log = home / "prometheus.log"
    process = start(
        [
            prometheus,
            f"--config.file={home / 'prometheus.yml'}",
            f"--storage.tsdb.path={home / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        log,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        wait_ready(f"{url}/-/ready", process, log, 30)
        yield url
    finally:
        stop(process)


def prometheus_query(prometheus: str, expr: str) -> list[dict[str, Any]]:
    """The result of an instant query ``expr`` on a Prometheus at ``prometheus``."""
    response = httpx.get(f"{prometheus}/api/v1/query", params={"query": expr}, timeout=10)
    body = response.json()
    assert response.status_code == 200 and body["status"] == "success", (expr, body)
    return list(body["data"]["result"])


def wait_for(
    what: str, check: Callable[[], T | None], seconds: float = 30, poll: float = 0.25
) -> T:
    """``check()``'s first answer that is not None, polled every ``poll`` s; a test failure
    naming ``what`` after ``seconds``."""
    deadline = time.monotonic() + seconds
    while True:
        found = check()
        if found is not None:
            return found
        if time.monotonic() > deadline:
            pytest.fail(f"no {what} after {seconds:.0f} s")
        time.sleep(poll)


def hey_statuses(output: str) -> dict[int, int]:
    """Answers per status code in ``hey``'s report (its "Status code distribution")."""
    found = re.findall(r"^\s+\[(\d{3})\]\s+(\d+) responses", output, re.MULTILINE)
    return {int(code): int(count) for code, count in found}
