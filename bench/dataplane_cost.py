"""What the input checks and the drift window cost one request inside the data plane.

bench/monitoring.py measures the cost over HTTP, where this VM's noise is as large as the
cost itself; this measures it where it is spent, without HTTP. 64 one-row requests at a time
go through :meth:`service.dataplane.DataPlane.infer` (decoded columns, as a route hands
them over), ``--batches`` times, for each setting in turn, the order reversed every other
run; per request it reports the CPU time of the event loop's thread (``time.thread_time``:
what one-row requests wait on, the loop being the one thread every request goes through) and
of the whole process (the inference thread and the drift thread too). Settings as in
bench/monitoring.py: ``off`` (checks off, no drift window), ``checks`` (the checks alone),
``drift`` (the window alone), ``on`` (both)::

    .venv/bin/python bench/dataplane_cost.py            # about a minute
    .venv/bin/python bench/dataplane_cost.py --models churn --runs 4

Figures as JSON to ``bench/runs/dataplane-cost-latest.json``, a Markdown table to stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
if str(HERE.parent) not in sys.path:  # run as a script: kiln/ and service/ importable
    sys.path.insert(0, str(HERE.parent))

import monitoring  # noqa: E402

OUT = HERE / "runs" / "dataplane-cost-latest.json"
SETTINGS = {
    "off": {"input_checks": "off", "drift_window": 0},
    "checks": {"drift_window": 0},
    "drift": {"input_checks": "off"},
    "on": {},
}
CONCURRENCY = 64


async def measure(plane: Any, name: str, columns: dict[str, Any], batches: int) -> dict[str, float]:
    """Per-request CPU microseconds (loop thread, process) of ``batches`` x 64 requests."""

    async def one() -> None:
        await plane.infer(name, dict(columns), 1)

    for _ in range(20):  # warm-up: the batcher's task, the metric children
        await asyncio.gather(*(one() for _ in range(CONCURRENCY)))
    loop_cpu, all_cpu = time.thread_time(), time.process_time()
    for _ in range(batches):
        await asyncio.gather(*(one() for _ in range(CONCURRENCY)))
    requests = batches * CONCURRENCY
    return {
        "loop_us": (time.thread_time() - loop_cpu) / requests * 1e6,
        "process_us": (time.process_time() - all_cpu) / requests * 1e6,
    }


async def compare(
    planes: dict[str, Any], name: str, columns: dict[str, Any], runs: int, batches: int
) -> dict[str, list[dict[str, float]]]:
    """:func:`measure` each setting's data plane ``runs`` times, in turn."""
    found: dict[str, list[dict[str, float]]] = {s: [] for s in planes}
    order = list(planes)
    for run in range(runs):
        for setting in order if run % 2 == 0 else reversed(order):
            found[setting].append(await measure(planes[setting], name, columns, batches))
    for plane in planes.values():
        await plane.close()
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default=",".join(monitoring.SPECS), help="comma-separated")
    parser.add_argument("--runs", type=int, default=10, help="runs per setting (default 10)")
    parser.add_argument("--batches", type=int, default=100, help="64-request rounds per run")
    parser.add_argument("--json", type=Path, default=OUT)
    args = parser.parse_args()

    os.environ["BENTOML_HOME"] = str(monitoring.STORE)
    from prometheus_client import CollectorRegistry

    from kiln.records import decode_instances
    from service.dataplane import DataPlane
    from service.metrics import Metrics
    from service.settings import ServingSettings

    results: dict[str, Any] = {}
    for name in args.models.split(","):
        model_dir = monitoring.train(monitoring.STORE, name)
        row = monitoring.training_row(name, model_dir)
        planes = {
            # each with its metrics, as served: counting is part of the cost
            s: DataPlane.load(
                ServingSettings(models=[name], **options), Metrics(CollectorRegistry())
            )
            for s, options in SETTINGS.items()
        }
        columns, _ = decode_instances(
            {"instances": [row]}, planes["off"].get(name).features, max_rows=1
        )
        runs = asyncio.run(compare(planes, name, columns, args.runs, args.batches))
        median = {
            s: {k: statistics.median(r[k] for r in runs[s]) for k in ("loop_us", "process_us")}
            for s in SETTINGS
        }
        results[name] = {"runs": runs, "median": median}
        said = ", ".join(f"{s} {m['loop_us']:.0f}/{m['process_us']:.0f}" for s, m in median.items())
        print(f"{name}: loop/process us per request: {said}", flush=True)

    report = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{os.cpu_count()} CPUs, {platform.platform()}",
        "load_average": os.getloadavg(),
        "runs": args.runs,
        "requests_per_run": args.batches * CONCURRENCY,
        "models": results,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print("\n| model | CPU µs per request: loop, process | " + " | ".join(SETTINGS) + " |")
    print("|---|---|" + "---:|" * len(SETTINGS))
    for name, r in results.items():
        for key, what in (("loop_us", "event loop"), ("process_us", "whole process")):
            cells = " | ".join(f"{r['median'][s][key]:.1f}" for s in SETTINGS)
            print(f"| {name} | {what} | {cells} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
