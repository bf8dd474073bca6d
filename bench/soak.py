"""Soak: a running Kiln server under steady load for a long while; no errors, no memory creep.

    .venv/bin/python bench/soak.py --url http://127.0.0.1:3000 --pid PID [--seconds 600]
    make soak         (starts `make serve`'s server itself, 10 minutes, writes the figures)

Drives ``POST /v1/models/{model}/predict`` with the example request the server's own OpenAPI
document gives for the model, at a fixed rate (hey, ``-q``), and samples the resident memory
of the server's whole process tree (BentoML's arbiter and its workers) every second. The
first ``--warmup`` seconds fill caches and pools; the memory at their end is the baseline.

Passes (exit 0) when no request failed (non-2xx or socket error) and the memory at the end
is within ``--max-growth`` (10%) of the baseline; exit 1 otherwise; 2 when it cannot run.
The figures go to stdout and, with ``--json``, to a file. CI runs 60 s of it
(tests/e2e/test_soak.py); bench/RESULTS.md has the 10-minute figures.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import psutil
from loadgen import Load, LoadError, run_load
from workloads import Body


def tree_rss(pid: int) -> int:
    """Resident bytes of ``pid`` and all its descendants."""
    root = psutil.Process(pid)
    total = 0
    for proc in [root, *root.children(recursive=True)]:
        try:
            total += proc.memory_info().rss
        except psutil.NoSuchProcess:
            continue
    return total


def example_body(url: str, model: str | None, directory: Path) -> tuple[str, Body]:
    """(model, body) from the OpenAPI document's example for the model (default: the first)."""
    import httpx

    document = httpx.get(f"{url}/openapi.json", timeout=10).json()
    operation = document["paths"]["/v1/models/{name}/predict"]["post"]
    examples: dict[str, Any] = operation["requestBody"]["content"]["application/json"].get(
        "examples", {}
    )
    if not examples:
        raise LoadError(f"{url} serves no model (its OpenAPI document has no example)")
    chosen = model or sorted(examples)[0]
    if chosen not in examples:
        raise LoadError(f"{url} does not serve {chosen!r} (it serves {', '.join(examples)})")
    path = directory / f"{chosen}.json"
    path.write_text(json.dumps(examples[chosen]["value"]))
    return chosen, Body("records", 1, path)


def soak(
    url: str,
    pid: int,
    *,
    seconds: int,
    warmup: int,
    rate: float,
    concurrency: int,
    model: str | None = None,
) -> dict[str, Any]:
    """Run the soak; the figures, with ``passed`` left to the caller's limits."""
    if shutil.which("hey") is None:
        raise LoadError("hey is not installed (apt-get install hey)")
    with tempfile.TemporaryDirectory(prefix="kiln-soak-") as tmp:
        chosen, body = example_body(url, model, Path(tmp))
        target = f"{url}/v1/models/{chosen}/predict"
        samples: list[tuple[float, int]] = []
        result: dict[str, Load] = {}
        failure: list[BaseException] = []

        def drive() -> None:
            try:
                result["load"], _ = run_load(
                    "hey", target, body, seconds, concurrency, concurrency, rate
                )
            except BaseException as exc:  # reported below, in the main thread
                failure.append(exc)

        started = time.monotonic()
        driver = threading.Thread(target=drive)
        driver.start()
        while driver.is_alive():
            samples.append((time.monotonic() - started, tree_rss(pid)))
            driver.join(1.0)
        if failure:
            raise failure[0]
    load = result["load"]
    baseline = next((rss for t, rss in samples if t >= warmup), samples[-1][1])
    final = samples[-1][1]
    return {
        "url": target,
        "seconds": seconds,
        "warmup_s": warmup,
        "rate_target": rate,
        "concurrency": concurrency,
        "requests": load.requests,
        "rps": round(load.rps, 1),
        "p50_ms": round(load.p50_ms, 2),
        "p99_ms": round(load.p99_ms, 2),
        "errors": load.errors,
        "rss_start_mb": round(samples[0][1] / 2**20, 1),
        "rss_baseline_mb": round(baseline / 2**20, 1),
        "rss_end_mb": round(final / 2**20, 1),
        "rss_max_mb": round(max(r for _, r in samples) / 2**20, 1),
        "rss_growth": round(final / baseline - 1, 4),
        "samples": [(round(t, 1), round(r / 2**20, 1)) for t, r in samples],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", help="the server, e.g. http://127.0.0.1:3000")
    parser.add_argument("--pid", type=int, help="`bentoml serve`'s process id")
    parser.add_argument(
        "--serve", action="store_true", help="start Kiln on a free port over $BENTOML_HOME"
    )
    parser.add_argument("--model", help="model to drive (default: the first served)")
    parser.add_argument("--seconds", type=int, default=600)
    parser.add_argument("--warmup", type=int, default=60)
    parser.add_argument("--rate", type=float, default=1000.0, help="requests per second")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--max-growth", type=float, default=0.10)
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args(argv)
    if args.warmup >= args.seconds:
        parser.error("--warmup must be shorter than --seconds")
    if not args.serve and (args.url is None or args.pid is None):
        parser.error("give --url and --pid of a running server, or --serve")
    options = {
        "seconds": args.seconds,
        "warmup": args.warmup,
        "rate": args.rate,
        "concurrency": args.concurrency,
        "model": args.model,
    }
    try:
        if args.serve:
            from servers import ServerError, kiln_server, running

            home = Path(os.environ.get("BENTOML_HOME", Path.home() / "bentoml"))
            server, url = kiln_server(home, "Kiln (soak)", {})
            try:
                with running(server):
                    assert server.proc is not None
                    figures = soak(url, server.proc.pid, **options)
            except ServerError as exc:
                raise LoadError(str(exc)) from None
        else:
            figures = soak(args.url, args.pid, **options)
    except (LoadError, psutil.Error, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    figures["max_growth"] = args.max_growth
    figures["passed"] = figures["errors"] == 0 and figures["rss_growth"] <= args.max_growth
    shown = {k: v for k, v in figures.items() if k != "samples"}
    print(json.dumps(shown, indent=2))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
    return 0 if figures["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
