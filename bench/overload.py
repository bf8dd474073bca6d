"""Overload benchmark: goodput of 1,000-row requests at four times the clients that saturate
the server.

The issue's goal: at 4x capacity with 1,000-row requests, at least 80% of the rows/s served
at capacity are still served. One run trains the demo logistic regression
(training/specs/breast-cancer.yaml) into a store cached under ``build/bench-overload-store``,
starts Kiln (``bentoml serve``, default settings plus ``--kiln-env``) and, with hey (closed
loop: each client sends its next request when the answer arrives):

1. **capacity**: 1,000-row JSON records requests at each of ``--capacity-clients`` (2 and 4)
   clients; the best rows/s (answers 200 x 1,000 rows over the run) is the capacity, and its
   clients the saturating count;
2. **overload**: four times those clients, once with the default queue
   (``KILN_SERVE_MAX_QUEUE_ROWS`` 20,000: the requests queue) and once with
   ``--small-queue`` rows (4,000: most requests are refused, 503), each on a fresh server.

For every run: rows/s served, 200 and 503 answers, ONNX Runtime rows run (the change in the
sum of ``kiln_batch_rows`` on /metrics) and rows counted received
(``kiln_rows_received_total``), so work done for refused requests shows as ``wasted``
(rows run minus rows answered 200), and the ratio of served rows/s to capacity::

    .venv/bin/python bench/overload.py                  # about 3 minutes
    .venv/bin/python bench/overload.py --seconds 4      # quicker

Figures as JSON to ``bench/runs/overload-latest.json``, a Markdown table to stdout; exit 1
when a ratio is under ``--goal`` (0.8).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
if str(HERE.parent) not in sys.path:  # run as a script: kiln/ and training/ importable
    sys.path.insert(0, str(HERE.parent))

import loadgen  # noqa: E402
import servers  # noqa: E402
import workloads  # noqa: E402

REPO = HERE.parent
SPEC = REPO / "training" / "specs" / "breast-cancer.yaml"
MODEL = "breast-cancer"
STORE = REPO / "build" / "bench-overload-store"
ROWS = 1_000
OUT = HERE / "runs" / "overload-latest.json"


def train(home: Path) -> Path:
    """The model's version directory in ``home``, trained there if it is not yet."""
    latest = home / "models" / MODEL / "latest"
    if not latest.exists():
        env = {**os.environ, "BENTOML_HOME": str(home), "KILN_TRAIN_PROGRESS": "false",
               "KILN_TRAIN_REPORTS_DIR": "none"}  # fmt: skip
        subprocess.run(
            [str(servers.BIN / "kiln"), "train", str(SPEC)], cwd=REPO, env=env, check=True,
            capture_output=True, timeout=600,
        )  # fmt: skip
    return home / "models" / MODEL / latest.read_text(encoding="utf-8").strip()


def metric_sum(text: str, name: str) -> float:
    """The sum of every sample of ``name`` for the model in a /metrics page."""
    pattern = rf'^{name}\{{[^}}]*model="{re.escape(MODEL)}"[^}}]*\}} ([0-9.e+-]+)$'
    return sum(float(v) for v in re.findall(pattern, text, re.MULTILINE))


def counters(base: str) -> dict[str, float]:
    _, page = servers.http("GET", f"{base}/metrics", timeout=30)
    text = page.decode()
    return {
        "rows_run": metric_sum(text, "kiln_batch_rows_sum"),
        "rows_received": metric_sum(text, "kiln_rows_received_total"),
    }


def statuses(output: str) -> dict[int, int]:
    found = re.findall(r"^\s+\[(\d{3})\]\s+(\d+) responses", output, re.MULTILINE)
    return {int(code): int(count) for code, count in found}


def measure(base: str, body: workloads.Body, clients: int, seconds: int) -> dict[str, Any]:
    """One hey run of ``clients`` clients: what was served, refused and run."""
    url = f"{base}/v1/models/{MODEL}/predict"
    before = counters(base)
    load, _ = loadgen.run_load("hey", url, body, seconds, clients, threads=clients)
    time.sleep(1.0)  # requests hey gave up on at the end finish on the server
    after = counters(base)
    codes = statuses(load.output)
    served = codes.get(200, 0) * ROWS
    run = after["rows_run"] - before["rows_run"]
    result = {
        "clients": clients,
        "seconds": load.seconds,
        "ok": codes.get(200, 0),
        "refused_503": codes.get(503, 0),
        "other": {str(c): n for c, n in codes.items() if c not in (200, 503)},
        "socket_errors": load.socket_errors,
        "rows_per_s": served / load.seconds,
        "rows_run": run,
        "rows_received": after["rows_received"] - before["rows_received"],
        "wasted_rows": run - served,
        "p50_ms": load.p50_ms,
        "p99_ms": load.p99_ms,
    }
    print(
        f"  {clients:>3} clients: {result['rows_per_s']:>9,.0f} rows/s, {result['ok']} x 200, "
        f"{result['refused_503']} x 503, ORT rows {run:,.0f}, wasted {result['wasted_rows']:,.0f}",
        flush=True,
    )
    return result


def serve(home: Path, label: str, env: dict[str, str]) -> tuple[servers.Server, str]:
    return servers.kiln_server(home, label, {"KILN_SERVE_MODELS": json.dumps([]), **env})


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=15, help="each hey run (default 15)")
    parser.add_argument("--capacity-clients", default="2,4", help="clients tried for capacity")
    parser.add_argument("--small-queue", type=int, default=4_000, help="rows, second overload")
    parser.add_argument("--goal", type=float, default=0.8, help="least served/capacity ratio")
    parser.add_argument("--kiln-env", action="append", default=[], metavar="NAME=VALUE")
    parser.add_argument("--json", type=Path, default=OUT)
    args = parser.parse_args()
    extra = dict(item.split("=", 1) for item in args.kiln_env)

    model_dir = train(STORE)
    with tempfile.TemporaryDirectory(prefix="kiln-overload-") as tmp:
        rows = workloads.instances(SPEC, model_dir, ROWS)
        body = workloads.write(Path(tmp), "records", "records", ROWS, workloads.records(rows))
        server, base = serve(STORE, "capacity", extra)
        with servers.running(server):
            print("capacity:", flush=True)
            tried = [
                measure(base, body, int(c), args.seconds) for c in args.capacity_clients.split(",")
            ]
        capacity = max(tried, key=lambda r: r["rows_per_s"])
        overloads = []
        for label, queue in (
            ("default queue", None),
            (f"queue {args.small_queue}", args.small_queue),
        ):
            env = {**extra, **({"KILN_SERVE_MAX_QUEUE_ROWS": str(queue)} if queue else {})}
            server, base = serve(STORE, label, env)
            with servers.running(server):
                print(f"overload, {label}:", flush=True)
                result = measure(base, body, 4 * capacity["clients"], args.seconds)
            result["queue"] = label
            result["ratio"] = result["rows_per_s"] / capacity["rows_per_s"]
            overloads.append(result)

    report = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{os.cpu_count()} CPUs, {platform.platform()}",
        "load_average": os.getloadavg(),
        "model": MODEL,
        "rows_per_request": ROWS,
        "capacity_runs": tried,
        "capacity": capacity,
        "overload": overloads,
        "goal": args.goal,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print("\n| run | clients | rows/s | 200 | 503 | ORT rows | wasted | p99 ms | ratio |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in [*tried, *overloads]:
        ratio = f"{r['ratio']:.2f}" if "ratio" in r else ""
        print(
            f"| {r.get('queue', 'capacity')} | {r['clients']} | {r['rows_per_s']:,.0f} | {r['ok']} "
            f"| {r['refused_503']} | {r['rows_run']:,.0f} | {r['wasted_rows']:,.0f} "
            f"| {r['p99_ms']:.0f} | {ratio} |"
        )
    return 0 if all(r["ratio"] >= args.goal for r in overloads) else 1


if __name__ == "__main__":
    sys.exit(main())
