"""Metric labels come from sets the service owns, whatever paths clients send.

100,000 requests to random paths (random segments, and random model names and versions in
the inference routes' real shapes), with API keys set (answered 401) and without (404, 405,
503): /metrics stays under 1 MB, every ``endpoint`` label is a route of the app with a served
model name, ``_unknown`` or ``_other``, and a known route keeps its label.
"""

from __future__ import annotations

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
        print(
            f"\n{done} random-path requests in {seconds:.1f} s: /metrics {len(before):,} -> "
            f"{size:,} bytes, multiprocess files {files:,} bytes"
        )
        assert size < 1_000_000, f"/metrics is {size:,} bytes after {done} requests"
        endpoints = _endpoints(after.text)
        assert "/v1/models/wine/predict" in endpoints  # a known route keeps its label
        leaked = [e for e in endpoints if re.search(r"r[0-9a-f]{16}", e)]
        assert not leaked, f"client-sent path parts in labels: {leaked[:5]}"
        assert len(endpoints) < 60, sorted(endpoints)
