"""`bentoml serve` with a bad or misspelt KILN_SERVE_* variable, as a user starts it: it stops
at once with one line per variable and exit code 2, never a traceback, never a server."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest

from service.settings import ENV_PREFIX
from tests.servers import free_port, start, stop

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize(
    ("settings", "lines"),
    [
        (
            {"KILN_SERVE_TIMEOUT": "30s"},
            ["KILN_SERVE_TIMEOUT='30s': expected a number of seconds"],
        ),
        (
            {"KILN_SERVE_TIMOUT": "30"},
            ["unknown setting KILN_SERVE_TIMOUT (did you mean KILN_SERVE_TIMEOUT?)"],
        ),
        (
            {"KILN_SERVE_MAX_CONCURENCY": "48", "KILN_SERVE_EVENT_LOOP": "trio"},
            [
                "unknown setting KILN_SERVE_MAX_CONCURENCY (did you mean "
                "KILN_SERVE_MAX_CONCURRENCY?)",
                "KILN_SERVE_EVENT_LOOP='trio': expected 'asyncio' or 'uvloop'",
            ],
        ),
    ],
    ids=["bad-value", "misspelt-name", "both"],
)
def test_a_bad_setting_stops_bentoml_serve_with_one_line_each(
    settings: dict[str, str], lines: list[str], tmp_path: Path
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith(ENV_PREFIX)}
    env |= {"BENTOML_DO_NOT_TRACK": "true", **settings}
    bentoml = Path(sys.executable).parent / "bentoml"
    log = tmp_path / "serve.log"
    argv = [str(bentoml), "serve", "--host", "127.0.0.1", "--port", str(free_port())]
    started = time.monotonic()
    process = start(argv, log, env)
    try:
        code = process.wait(60)
    finally:
        stop(process)
    took = time.monotonic() - started
    output = log.read_text()
    assert code == 2, output
    assert output.splitlines() == lines
    assert "Traceback" not in output
    assert took < 30, f"took {took:.1f} s to refuse"
