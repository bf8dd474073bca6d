"""Metric labels come from sets the service owns, whatever paths clients send.

100,000 requests to random paths (random segments, and random model names and versions in
the inference routes' real shapes), with API keys set (answered 401) and without (404, 405,
503): /metrics stays under 1 MB, every ``endpoint`` label is a route of the app with a served
model name, ``_unknown`` or ``_other``, and a known route keeps its label.
"""

from __future__ import annotations

import contextlib
import re
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.servers import kiln_server

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

REQUESTS = 100_000
KEY = "metrics-test-key-0123456789"
# wrk's Lua: each request a random path; every thread stops after its share of REQUESTS.
SCRIPT = """
local shapes = {
  function(r) return "GET", "/" .. r end,
  function(r) return "GET", "/v1/" .. r .. "/" .. r end,
  function(r) return "POST", "/v1/models/" .. r .. "/predict" end,
  function(r) return "GET", "/v1/models/" .. r end,
  function(r) return "POST", "/v2/models/" .. r .. "/infer" end,
  function(r) return "POST", "/v2/models/wine/versions/" .. r .. "/infer" end,
  function(r) return "GET", "/v2/models/" .. r .. "/versions/" .. r .. "/ready" end,
  function(r) return "GET", "/metrics" .. r end,
}
local count, limit = 0, %(per_thread)d
function setup(thread) thread:set("id", math.random(1, 1e9)) end
function init(args) math.randomseed(id) end
function request()
  count = count + 1
  if count > limit then wrk.thread:stop() end
  local r = string.format("r%%08x%%08x", math.random(0, 2^30), math.random(0, 2^30))
  local method, path = shapes[math.random(#shapes)](r)
  return wrk.format(method, path, {["Content-Type"] = "application/json"}, "{}")
end
"""
THREADS = 2


def _endpoints(metrics: str) -> set[str]:
    return set(re.findall(r'bentoml_service_request_total\{[^}]*endpoint="([^"]*)"', metrics))


def _flood(url: str, tmp_path: Path) -> str:
    script = tmp_path / "random-paths.lua"
    script.write_text(SCRIPT % {"per_thread": REQUESTS // THREADS})
    argv = ["wrk", "-t", str(THREADS), "-c", "32", "-d", "150s", "-s", str(script), url]
    return subprocess.run(argv, capture_output=True, text=True, timeout=200, check=True).stdout


@pytest.mark.parametrize("keys", [False, True], ids=["open", "with-api-keys"])
def test_random_paths_add_no_series(
    served_models: dict[str, Any], bentoml_home: Path, tmp_path: Path, keys: bool
) -> None:
    if shutil.which("wrk") is None:
        pytest.skip("wrk is missing: apt-get install wrk (.ci/run installs it)")
    settings = {"KILN_SERVE_API_KEYS": KEY} if keys else {}
    auth = {"Authorization": f"Bearer {KEY}"}
    with kiln_server(served_models, tmp_path / "server.log", **settings) as url:
        wine = httpx.get(f"{url}/v1/models/wine", headers=auth).json()
        row = dict.fromkeys((f["name"] for f in wine["features"]), 13.0)
        ok = httpx.post(f"{url}/v1/models/wine/predict", json={"instances": [row]}, headers=auth)
        assert ok.status_code == 200
        before = httpx.get(f"{url}/metrics").content

        started = time.monotonic()
        report = _flood(url, tmp_path)
        seconds = time.monotonic() - started
        done = int(re.search(r"(\d+) requests in", report).group(1))  # type: ignore[union-attr]
        assert done >= REQUESTS * 0.9, report

        after = httpx.get(f"{url}/metrics")
        size = len(after.content)
        files = sum(f.stat().st_size for f in (bentoml_home / "prometheus_multiproc_dir").glob("*"))
        errors = sum(
            len(line) + 1
            for line in after.text.splitlines()
            if line.startswith("kiln_request_errors_total")
        )
        print(
            f"\n{done} random-path requests in {seconds:.1f} s: /metrics {len(before):,} -> "
            f"{size:,} bytes ({errors:,} of them kiln_request_errors_total), multiprocess "
            f"files {files:,} bytes"
        )
        assert size < 1_000_000, f"/metrics is {size:,} bytes after {done} requests"
        endpoints = _endpoints(after.text)
        assert "/v1/models/wine/predict" in endpoints  # a known route keeps its label
        leaked = [e for e in endpoints if re.search(r"r[0-9a-f]{16}", e)]
        assert not leaked, f"client-sent path parts in labels: {leaked[:5]}"
        assert len(endpoints) < 60, sorted(endpoints)


# -- A full metrics directory: a log line and a failing /readyz, not a crash loop -----------


def _workers(process: subprocess.Popen[bytes]) -> set[int]:
    import psutil

    children = psutil.Process(process.pid).children(recursive=True)
    return {child.pid for child in children if "worker" in " ".join(child.cmdline())}


def _wine_row(url: str) -> dict[str, float]:
    wine = httpx.get(f"{url}/v1/models/wine").json()
    return dict.fromkeys((f["name"] for f in wine["features"]), 13.0)


def test_a_low_metrics_directory_is_not_ready(
    served_models: dict[str, Any], tmp_path: Path
) -> None:
    log = tmp_path / "server.log"
    settings = {"KILN_SERVE_METRICS_MIN_FREE_BYTES": str(2**60)}  # more than any disk has
    with kiln_server(served_models, log, wait_for="/livez", **settings) as url:
        deadline = time.monotonic() + 15
        while "problems" not in (body := httpx.get(f"{url}/readyz").json()):
            assert time.monotonic() < deadline, body
            time.sleep(0.5)
        ready = httpx.get(f"{url}/readyz")
        assert ready.status_code == 503 and "KILN_SERVE_METRICS_MIN_FREE_BYTES" in str(body)
        assert body["failed"] == {} and set(body["models"]) == {"churn", "diabetes", "wine"}
        answer = httpx.post(f"{url}/v1/models/wine/predict", json={"instances": [_wine_row(url)]})
        assert answer.status_code == 200
    assert re.search(r"ERROR.*not ready: metrics directory .* MiB free", log.read_text())


def test_a_full_metrics_directory_is_not_a_crash(
    served_models: dict[str, Any], bentoml_home: Path, tmp_path: Path
) -> None:
    """The directory a small tmpfs, filled up once the server is ready: the next new series
    finds no room. Without the reservation the worker dies of SIGBUS (and again when it
    restarts), with nothing in the log."""
    import os

    from tests.servers import kiln_process

    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a tmpfs needs root (CI runs as root)")
    home = tmp_path / "store"
    shutil.copytree(bentoml_home / "models", home / "models")
    directory = home / "prometheus_multiproc_dir"
    directory.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(directory)], capture_output=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"mount is not allowed here: {mounted.stderr.decode().strip()}")
    log = tmp_path / "server.log"
    settings = {"BENTOML_HOME": str(home), "KILN_SERVE_METRICS_MIN_FREE_BYTES": "0"}
    try:
        with kiln_process(served_models, log, **settings) as (url, process):
            workers = _workers(process)
            filler = directory / "filler"  # not *.db: no metrics file; fills what is left
            with contextlib.suppress(OSError), filler.open("wb", buffering=0) as out:
                while True:
                    out.write(b"\0" * 4096)
            row = {"instances": [_wine_row(url)]}
            paths = ["/v1/models", "/v2", "/docs", "/openapi.json", "/try", "/schema.json"]
            paths += [f"/v1/models/{name}" for name in served_models]
            deadline = time.monotonic() + 30
            while "problems" not in (body := httpx.get(f"{url}/readyz").json()):
                assert time.monotonic() < deadline, f"never full: {body}"
                for path in paths:  # each a new series in the histograms' file
                    for method, tail in (("GET", ""), ("GET", "/nope"), ("DELETE", "")):
                        httpx.request(method, f"{url}{path}{tail}")
                answer = httpx.post(f"{url}/v1/models/wine/predict", json=row)
                assert answer.status_code == 200, answer.text
            assert "is full" in body["problems"]["metrics"], body
            assert httpx.get(f"{url}/readyz").status_code == 503
            assert httpx.post(f"{url}/v1/models/wine/predict", json=row).status_code == 200
            assert httpx.get(f"{url}/metrics").status_code == 200
            assert _workers(process) == workers, "a worker died"
    finally:
        subprocess.run(["umount", "-l", str(directory)], check=False)
    assert re.search(r"ERROR.*not ready: metrics directory .* is full", log.read_text())
