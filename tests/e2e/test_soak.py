"""Soak, bounded for CI: 60 s of steady load on the real server (bench/soak.py), no failed
request, resident memory at the end within 10% of what it was after warm-up."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO
from tests.servers import kiln_process

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def test_a_minute_of_steady_load_no_errors_no_memory_creep(
    served_models: dict[str, Any], tmp_path: Path
) -> None:
    if shutil.which("hey") is None:
        pytest.skip("hey is missing: apt-get install hey (.ci/run installs it)")
    figures = tmp_path / "soak.json"
    batching = {"KILN_SERVE_BATCH": '{"max_batch_rows": 1024, "max_wait_ms": 1}'}  # defaults
    with kiln_process(served_models, tmp_path / "server.log", **batching) as (url, process):
        argv = [sys.executable, str(REPO / "bench" / "soak.py"), "--url", url]
        argv += ["--pid", str(process.pid), "--model", "churn", "--seconds", "60"]
        argv += ["--warmup", "15", "--rate", "400", "--concurrency", "4"]
        argv += ["--json", str(figures)]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=180, check=False)
    assert done.returncode in (0, 1), done.stderr + done.stdout
    result = json.loads(figures.read_text())
    print(f"\nsoak: { {k: v for k, v in result.items() if k != 'samples'} }", file=sys.stderr)
    assert result["requests"] > 60 * 400 * 0.8  # the load was held
    assert result["errors"] == 0
    assert result["rss_growth"] <= 0.10
    assert done.returncode == 0
