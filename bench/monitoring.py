"""What input checks and drift cost: one-row requests at concurrency 64, on and off.

The issue's goal: the one-row c=64 benchmark loses at most 5% requests/s with the input
checks (``warn``, the default) and the drift window on, and the window's memory is bounded.
One run trains the benchmark's logistic regression (training/specs/breast-cancer.yaml: 30
numeric features) and the churn demo (numbers and categories) into a store cached under
``build/bench-monitoring-store``, then for each model starts two servers side by side and
loads them in turn, ``--rounds`` short runs each, the order swapped every round, so that a
change in the machine's load (this VM's throughput wanders by a fifth within minutes) hits
both alike:

- **off**: ``KILN_SERVE_INPUT_CHECKS=off`` and ``KILN_SERVE_DRIFT_WINDOW=0``;
- **on**: the defaults (checks in each model's own mode, the 10,000-row drift window);
- **off-again**: a second "off" server, so that its ratio to the first shows how far two
  identical servers differ here (an A/A test): a ratio inside that spread is no difference.

``--parts`` adds a server with the checks alone and one with the drift window alone;
``--together`` loads every server at the same time (each with its own wrk) instead of in
turn, which pairs them on the same moment of the machine but splits its cores between them.

Each run is wrk (closed loop, 64 connections) on ``/v1/models/NAME/predict`` with one row
of the training data; the ratio is the median over rounds of on/off requests/s in the same
round. After the runs: each server's memory (RSS, all processes) and, for the "on" server,
the drift gauges it exposes (proof that the window was filled and computed). The goal is
judged on "on" against the mean of the two "off" servers of the same round (either alone
is off by its A/A ratio: where a server starts counts on this VM); on/off is shown too::

    .venv/bin/python bench/monitoring.py               # about 5 minutes
    .venv/bin/python bench/monitoring.py --seconds 3 --rounds 2

Figures as JSON to ``bench/runs/monitoring-latest.json`` (``--json``: elsewhere), a Markdown
table to stdout; exit 1 when a model's on / both off ratio is under ``--goal`` (0.95).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
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
SPECS = {
    "breast-cancer": REPO / "training" / "specs" / "breast-cancer.yaml",
    "churn": REPO / "training" / "specs" / "churn.yaml",
}
STORE = REPO / "build" / "bench-monitoring-store"
OUT = HERE / "runs" / "monitoring-latest.json"
SETTINGS = {
    "off": {"KILN_SERVE_INPUT_CHECKS": "off", "KILN_SERVE_DRIFT_WINDOW": "0"},
    "on": {},
    # with --parts: each half alone
    "checks": {"KILN_SERVE_DRIFT_WINDOW": "0"},
    "drift": {"KILN_SERVE_INPUT_CHECKS": "off"},
    # a second "off" server: its ratio to the first is this machine's noise (an A/A test)
    "off-again": {"KILN_SERVE_INPUT_CHECKS": "off", "KILN_SERVE_DRIFT_WINDOW": "0"},
}


def train(home: Path, name: str) -> Path:
    """The model's version directory in ``home``, trained there if it is not yet."""
    latest = home / "models" / name / "latest"
    if not latest.exists():
        env = {**os.environ, "BENTOML_HOME": str(home), "KILN_TRAIN_PROGRESS": "false",
               "KILN_TRAIN_REPORTS_DIR": "none"}  # fmt: skip
        subprocess.run(
            [str(servers.BIN / "kiln"), "train", str(SPECS[name])], cwd=REPO, env=env,
            check=True, capture_output=True, timeout=600,
        )  # fmt: skip
    return home / "models" / name / latest.read_text(encoding="utf-8").strip()


def training_row(name: str, model_dir: Path) -> dict[str, Any]:
    """One row of the model's training data, as JSON records carry it."""
    if name != "churn":
        return workloads.instances(SPECS[name], model_dir, 1)[0]
    import pandas as pd

    from kiln.artifact import read_metadata

    features = [f.name for f in read_metadata(model_dir).features]
    frame = pd.read_csv(REPO / "training" / "data" / "churn.csv", nrows=50)
    complete = frame[features].dropna().iloc[0]
    return {k: (v.item() if hasattr(v, "item") else v) for k, v in complete.items()}


def drift_gauges(base: str, name: str) -> dict[str, float]:
    """The model's ``kiln_feature_drift_psi`` samples on /metrics: feature -> PSI."""
    _, page = servers.http("GET", f"{base}/metrics", timeout=30)
    found = {}
    for labels, value in re.findall(
        r"^kiln_feature_drift_psi\{([^}]*)\} ([0-9.e+-]+)$", page.decode(), re.MULTILINE
    ):
        pairs = dict(re.findall(r'(\w+)="([^"]*)"', labels))
        if pairs.get("model") == name:
            found[pairs["feature"]] = float(value)
    return found


def one_run(
    server: servers.Server, base: str, name: str, body: workloads.Body, seconds: int
) -> dict[str, Any]:
    url = f"{base}/v1/models/{name}/predict"
    cpu = server.cpu_seconds()
    load, _ = loadgen.run_load("wrk", url, body, seconds, 64, threads=2)
    return {
        "requests_per_s": load.rps,
        # the server's CPU per answer: steadier than requests/s when the VM's speed wanders
        "cpu_us_per_request": (server.cpu_seconds() - cpu) / max(load.requests, 1) * 1e6,
        "p50_ms": load.p50_ms,
        "p99_ms": load.p99_ms,
        "errors": load.errors,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=8, help="each wrk run (default 8)")
    parser.add_argument("--rounds", type=int, default=8, help="runs per setting and model")
    parser.add_argument("--goal", type=float, default=0.95, help="least on/off ratio")
    parser.add_argument("--json", type=Path, default=OUT)
    parser.add_argument("--models", default=",".join(SPECS), help="comma-separated")
    parser.add_argument("--parts", action="store_true", help="also checks alone, drift alone")
    parser.add_argument(
        "--on-first", action="store_true", help="start the 'on' server first (default: 'off')"
    )
    parser.add_argument(
        "--together", action="store_true", help="load the servers at the same time, not in turn"
    )
    args = parser.parse_args()
    settings = ["off", "on", "off-again", *(["checks", "drift"] if args.parts else [])]
    if args.on_first:  # the servers start (and are loaded in round 1) in this order
        settings = ["on", *(s for s in settings if s != "on")]

    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="kiln-monitoring-") as tmp:
        for name in args.models.split(","):
            model_dir = train(STORE, name)
            row = training_row(name, model_dir)
            body = workloads.write(Path(tmp), f"{name}-1", "records", 1, workloads.records([row]))
            runs: dict[str, list[dict[str, Any]]] = {s: [] for s in settings}
            started = {}
            for setting in settings:
                served = {"KILN_SERVE_MODELS": json.dumps([name]), **SETTINGS[setting]}
                started[setting] = servers.kiln_server(STORE, f"{name}-{setting}", served)
            with contextlib.ExitStack() as stack:
                for server, _ in started.values():
                    stack.enter_context(servers.running(server))
                for setting in settings:
                    one_run(*started[setting], name, body, 2)  # warm-up
                for round_ in range(args.rounds):
                    if args.together:  # every server under load at once: the same machine
                        with ThreadPoolExecutor(len(settings)) as pool:
                            done = {
                                s: pool.submit(one_run, *started[s], name, body, args.seconds)
                                for s in settings
                            }
                        for setting in settings:
                            runs[setting].append(done[setting].result())
                    else:  # in turn, the order reversed every other round
                        order = settings if round_ % 2 == 0 else list(reversed(settings))
                        for setting in order:
                            run = one_run(*started[setting], name, body, args.seconds)
                            runs[setting].append(run)
                    said = ", ".join(f"{s} {runs[s][-1]['requests_per_s']:,.0f}" for s in settings)
                    print(f"{name} round {round_ + 1}: {said} req/s", flush=True)
                memory = {s: sum(started[s][0].memory().values()) for s in settings}
                gauges = drift_gauges(started["on"][1], name)
            ratios = {
                s: [
                    run["requests_per_s"] / off["requests_per_s"]
                    for off, run in zip(runs["off"], runs[s], strict=True)
                ]
                for s in settings
                if s != "off"
            }
            # "off" as the mean of the two identical "off" servers of the round: either alone
            # is off by as much as the A/A ratio (where a server starts counts here)
            both_off = [
                run["requests_per_s"] / ((a["requests_per_s"] + b["requests_per_s"]) / 2)
                for a, run, b in zip(runs["off"], runs["on"], runs["off-again"], strict=True)
            ]
            median = {s: statistics.median(r["requests_per_s"] for r in runs[s]) for s in runs}
            cpu = {s: statistics.median(r["cpu_us_per_request"] for r in runs[s]) for s in runs}
            results[name] = {
                "runs": runs,
                "median_requests_per_s": median,
                "median_cpu_us_per_request": cpu,
                "round_ratios": ratios,
                "ratios": {s: statistics.median(r) for s, r in ratios.items()},
                "ratio": statistics.median(ratios["on"]),
                "round_ratios_to_both_off": both_off,
                "ratio_to_both_off": statistics.median(both_off),
                "rss_bytes": memory,
                "drift_gauges_after": gauges,
            }

    report = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{os.cpu_count()} CPUs, {platform.platform()}",
        "load_average": os.getloadavg(),
        "seconds": args.seconds,
        "rounds": args.rounds,
        "models": results,
        "goal": args.goal,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print("\n| model | off req/s | on req/s | on/off | on/both off | A/A | CPU us/req off "
          "| on | p99 off ms | p99 on ms | RSS off MB | RSS on MB | drift gauges |")  # fmt: skip
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name, r in results.items():
        p99 = {s: statistics.median(x["p99_ms"] for x in r["runs"][s]) for s in r["runs"]}
        rss = {s: r["rss_bytes"][s] / 2**20 for s in r["rss_bytes"]}
        print(
            f"| {name} | {r['median_requests_per_s']['off']:,.0f} "
            f"| {r['median_requests_per_s']['on']:,.0f} | {r['ratio']:.3f} "
            f"| {r['ratio_to_both_off']:.3f} | {r['ratios']['off-again']:.3f} "
            f"| {r['median_cpu_us_per_request']['off']:.0f} "
            f"| {r['median_cpu_us_per_request']['on']:.0f} | {p99['off']:.1f} "
            f"| {p99['on']:.1f} | {rss['off']:.0f} | {rss['on']:.0f} "
            f"| {len(r['drift_gauges_after'])} |"
        )
    for name, r in results.items():
        rounds = {s: [round(x, 3) for x in v] for s, v in r["round_ratios"].items()}
        print(f"{name}: on/off per round {rounds['on']}; A/A {r['ratios']['off-again']:.3f} "
              f"per round {rounds['off-again']}")  # fmt: skip
    return 0 if all(r["ratio_to_both_off"] >= args.goal for r in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
