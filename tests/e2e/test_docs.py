"""Every curl command in README.md and docs/*.md, run as written against a served store.

The `server` fixture (tests/conftest.py) serves the demo models churn, wine and diabetes; only
the base URL http://127.0.0.1:3000 is rewritten to the test server's. An example answers 2xx
with JSON, or the error status its first comment line shows, with a JSON error
(tests/markdown.py has the rules).
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.markdown import BASE_URL, CurlExample, curl_examples, shell_problems

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

EXAMPLES = curl_examples()
# curl is a system package .ci/run installs: without it these fail, never skip silently.


@pytest.mark.parametrize("example", EXAMPLES, ids=[e.id for e in EXAMPLES])
def test_curl_example_runs_as_written(example: CurlExample, server: str, tmp_path: Path) -> None:
    assert shell_problems(example) == []
    body = tmp_path / "body"
    argv = [arg.replace(BASE_URL, server, 1) for arg in example.argv]
    checks = ["-sS", "-o", str(body), "-w", "%{http_code}", "--max-time", "30"]
    if example.status is None:
        checks.append("--fail-with-body")
    done = subprocess.run([argv[0], *checks, *argv[1:]], capture_output=True, text=True, timeout=60)
    answer = body.read_text() if body.exists() else ""
    where = f"{example.id}: {example.command}\n-> {done.stdout} {answer}{done.stderr}"
    assert done.returncode == 0, where
    status = int(done.stdout)
    if example.status is None:
        assert 200 <= status < 300, where
        json.loads(answer)
    else:
        assert status == example.status, where
        assert isinstance(json.loads(answer)["error"], str), where
