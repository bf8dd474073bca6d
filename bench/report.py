"""The serving benchmark's report: environment, tables, targets, chart.

``targets`` turns one run's figures into the ratios bench/README.md sets targets for;
``markdown`` writes the whole report; ``write_results`` puts it at the top of RESULTS.md and
keeps what people wrote below ``NOTES_MARKER``; ``chart`` draws throughput and p99 latency
against concurrency.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import shlex
import statistics
import subprocess
import sys
from dataclasses import dataclass
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from servers import PEER_VENVS, PEERS

if TYPE_CHECKING:
    from serving import Result, Run

VERSIONED = ("bentoml", "onnxruntime", "fastapi", "uvicorn", "starlette", "orjson", "numpy",
             "uvloop", "httptools")  # fmt: skip
NOTES_MARKER = "<!-- Written by people from here on: bench/serving.py keeps it. -->"
MODEL_NAMES = {
    "lr": "LogisticRegression",
    "forest": "RandomForest, 100 trees",
    "heavy": "MLP (heavy)",
    "noop": "no-op route",
}
WORKLOADS = {
    "records": "JSON records",
    "v2-json": "V2 JSON, one input per feature (pandas codec)",
    "v2-tensor": "V2 JSON, one [N, n] FP32 tensor",
    "v2-fp32": "V2 JSON, as tritonclient sends it",
    "v2-binary": "V2 binary",
}


@dataclass
class Check:
    """One target: the measured value against the bound. ``met`` is None when the run lacks
    a figure the target needs (a peer that was not measured, say)."""

    name: str
    value: float | None
    bound: float
    higher_is_better: bool
    unit: str
    detail: str

    @property
    def met(self) -> bool | None:
        if self.value is None:
            return None
        return self.value >= self.bound if self.higher_is_better else self.value <= self.bound


def _find(run: Run, server: str | tuple[str, ...], model: str, workload: str, rows: int,
          concurrency: int) -> Result | None:  # fmt: skip
    servers = (server,) if isinstance(server, str) else server
    found = [
        r
        for r in run.results
        if r.server in servers
        and r.model == model
        and r.workload == workload
        and r.rows == rows
        and r.concurrency == concurrency
    ]
    return max(found, key=lambda r: r.rps) if found else None


def _ratio(a: Result | None, b: Result | None, figure: str = "rps") -> float | None:
    if a is None or b is None or not getattr(b, figure):
        return None
    return round(getattr(a, figure) / getattr(b, figure), 2)


def _best(run: Run, prefix: str, model: str, concurrency: int) -> Result | None:
    """The best one-row run of every server whose key starts with ``prefix`` (a peer's
    settings: MLServer's four, Triton's two), whatever body it was sent."""
    found = [
        r
        for r in run.results
        if r.server.startswith(prefix)
        and r.model == model
        and r.rows == 1
        and r.concurrency == concurrency
    ]
    return max(found, key=lambda r: r.rps) if found else None


def targets(run: Run, args: argparse.Namespace) -> list[Check]:
    """The targets of bench/README.md, from this run's figures."""
    c = 64 if 64 in args.concurrency else max(args.concurrency)
    bulk = args.bulk_rows

    def one(server: str | tuple[str, ...], model: str, conc: int = c) -> Result | None:
        return _find(run, server, model, "records", 1, conc)

    checks: list[Check] = []
    kilns, plains = ("kiln", "kiln-2w"), ("plain", "plain-2w")  # each at its better setting
    for model in ("lr", "forest"):
        name = MODEL_NAMES[model]
        kiln = one(kilns, model)
        noop = one(kiln.server, "noop") if kiln else None  # the same setting's ceiling
        checks += [
            Check(f"Kiln (its better setting) / Triton at its best, {name}, 1 row, c={c}",
                  _ratio(kiln, _best(run, "triton", model, c)), 2, True, "x", "requests/s"),
            Check(f"Kiln (its better setting) / MLServer at its best, {name}, 1 row, c={c}",
                  _ratio(kiln, _best(run, "mlserver", model, c)), 3, True, "x", "requests/s"),
            Check(f"Kiln / plain FastAPI+ORT, each at its better setting, {name}, 1 row, c={c}",
                  _ratio(kiln, one(plains, model)), 1.3, True, "x", "requests/s"),
            Check(f"Kiln / FastAPI+sklearn, {name}, 1 row, c={c}",
                  _ratio(kiln, one("fastapi-sklearn", model)), 1.5 if model == "lr" else 10,
                  True, "x", "requests/s"),
            Check(f"Kiln p99, {name}, 1 row, c={c}", kiln.p99_ms if kiln else None, 15, False,
                  "ms", "p99 latency"),
            Check(f"Kiln predict / Kiln no-op route, {name}, 1 row, c={c}",
                  _ratio(kiln, noop), 0.6, True, "x", "requests/s"),
        ]  # fmt: skip
    for conc in sorted({1, 16, c} & set(args.concurrency)):
        v1 = one("kiln", "lr", conc)
        for kind, label in (("v2-fp32", "V2 JSON"), ("v2-binary", "V2 binary")):
            v2 = _find(run, "kiln", "lr", kind, 1, conc)
            checks.append(
                Check(f"Kiln {label} / Kiln /v1, LogisticRegression, 1 row, c={conc}",
                      _ratio(v2, v1), 0.9, True, "x", "requests/s")
            )  # fmt: skip
    if 1 in args.concurrency:
        checks.append(
            Check("Kiln p50 / plain FastAPI+ORT p50, LogisticRegression, 1 row, c=1",
                  _ratio(one("kiln", "lr", 1), one("plain", "lr", 1), "p50_ms"), 1.2, False,
                  "x", "p50 latency")
        )  # fmt: skip
    for model, bound in (("lr", 0.3), ("forest", 0.8)):
        binary = _find(run, "kiln", model, "v2-binary", bulk, 4)
        limit = run.limits.get(model, {}).get("v2_binary_decode_ort_rows_per_s")
        checks.append(
            Check(f"Kiln V2 binary / in-process binary decode + ORT, {MODEL_NAMES[model]}, "
                  f"{bulk} rows, c=4", _per(binary, limit), bound, True, "x", "rows/s")
        )  # fmt: skip
    forest = run.limits.get("forest", {})
    records = _find(run, "kiln", "forest", "records", bulk, 4)
    checks.append(
        Check(f"Kiln JSON / in-process JSON decode + ORT, RandomForest, {bulk} rows, c=4",
              _per(records, forest.get("json_ort_rows_per_s")), 0.5, True, "x", "rows/s")
    )  # fmt: skip
    on = _find(run, "kiln", "heavy", "records", 1, c)
    off = _find(run, "kiln-batching-off", "heavy", "records", 1, c)
    checks += [
        Check(f"heavy model, batching on / off, 1 row, c={c}", _ratio(on, off), 1.5, True,
              "x", "requests/s"),
        Check(f"heavy model, p99 batching on / off, 1 row, c={c}", _ratio(on, off, "p99_ms"),
              2, False, "x", "p99 latency"),
    ]  # fmt: skip
    overloads = run.overload.get("overload", []) if run.overload else []
    checks.append(
        Check(f"overload: rows/s served at 4x capacity / at capacity, {bulk}-row requests, "
              "worst queue setting",
              round(min(r["ratio"] for r in overloads), 2) if overloads else None, 0.8, True,
              "x", "rows/s")
    )  # fmt: skip
    demo = [s for s in run.starts if s.server == "kiln-demo"]
    checks += [
        Check("Kiln over the demo models: cold start (process start to /readyz 200), median",
              round(statistics.median(s.ready_s for s in demo), 2) if demo else None, 2, False,
              "s", f"{len(demo)} starts"),
        Check("Kiln over the demo models: memory at idle, all processes, largest",
              max(s.idle_rss_mb for s in demo) if demo else None, 250, False, "MB", "RSS"),
    ]  # fmt: skip
    return checks


def _per(result: Result | None, limit: float | None) -> float | None:
    if result is None or not limit:
        return None
    return round(result.rows_per_s / limit, 2)


def targets_table(checks: list[Check]) -> str:
    lines = ["| target | measured | bound | met |", "|---|---:|---:|:---:|"]
    for check in checks:
        value = "not measured" if check.value is None else f"{check.value:g} {check.unit}"
        bound = f"{'≥' if check.higher_is_better else '≤'} {check.bound:g} {check.unit}"
        met = {True: "yes", False: "**no**", None: "n/a"}[check.met]
        lines.append(f"| {check.name} ({check.detail}) | {value} | {bound} | {met} |")
    return "\n".join(lines) + "\n"


# -- environment --------------------------------------------------------------------------------


def environment(args: argparse.Namespace) -> dict[str, Any]:
    """Machine, date, versions and the command, for the report's header."""
    cpuinfo = Path("/proc/cpuinfo").read_text(encoding="utf-8")
    model = re.search(r"^model name\s*:\s*(.+)$", cpuinfo, re.M)
    meminfo = re.search(
        r"^MemTotal:\s+(\d+) kB", Path("/proc/meminfo").read_text(encoding="utf-8"), re.M
    )
    versions = {"python": platform.python_version()}
    for package in VERSIONED:
        try:
            versions[package] = importlib_metadata.version(package)
        except importlib_metadata.PackageNotFoundError:
            versions[package] = "not installed"
    tool = subprocess.run(
        ["dpkg-query", "-W", "-f", "${Version}", args.tool],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    versions[args.tool] = tool or "unknown"
    return {
        "nproc": os.cpu_count(),
        "cpu": model.group(1).strip() if model else platform.processor(),
        "ram_gib": round(int(meminfo.group(1)) / 2**20, 1) if meminfo else None,
        "kernel": platform.release(),
        "date": subprocess.run(
            ["date", "-u"], capture_output=True, text=True, check=False
        ).stdout.strip(),
        "versions": versions,
        "command": " ".join(
            shlex.quote(a) for a in [".venv/bin/python", "bench/serving.py", *sys.argv[1:]]
        ),
    }


def peer_versions(peers: list[str]) -> list[str]:
    """One line per peer venv: its main packages, as installed."""
    keep = ("fastapi", "uvicorn", "bentoml", "mlserver", "mlserver-sklearn", "uvloop",
            "httptools", "scikit-learn", "pandas", "nvidia-pytriton", "onnxruntime",
            "tritonclient")  # fmt: skip
    lines = []
    for venv in dict.fromkeys(PEERS[p] for p in peers):
        freeze = PEER_VENVS / venv / "freeze.txt"
        pins = freeze.read_text(encoding="utf-8").splitlines() if freeze.exists() else []
        found = [line for line in pins if line.split("==")[0].lower() in keep]
        lines.append(f"- peer venv `{venv}`: {', '.join(found) or 'versions unknown'}")
    return lines


# -- the report ----------------------------------------------------------------------------------


def _row(r: Result) -> str:
    return (
        f"| {r.label} | {MODEL_NAMES[r.model]} | {WORKLOADS[r.workload]} | {r.rows} | "
        f"{r.concurrency} | {r.rps:,.0f} | {r.rows_per_s:,.0f} | {r.p50_ms:.1f} | "
        f"{r.p99_ms:.1f} | {r.errors} | {r.cpu_s_per_1k:.2f} | {r.rss_mb:.0f} | "
        f"{r.other_cores:.2f} | {r.stolen_cores:.2f} |"
    )


def markdown(env: dict[str, Any], run: Run, checks: list[Check], args: argparse.Namespace) -> str:
    v = env["versions"]
    kiln_env = ", ".join(args.kiln_env) or "none"
    lines = [
        "# Serving benchmark: results",
        "",
        "Written by `bench/serving.py` (`make bench`); every figure below comes from one run. "
        "What each target means and how to run it: [README.md](README.md). The chart: "
        "[results.png](results.png); every figure as JSON: [runs/latest.json](runs/latest.json).",
        "",
        f"- machine: {env['nproc']} CPUs ({env['cpu']}), {env['ram_gib']} GiB RAM, "
        f"Linux {env['kernel']}",
        f"- date: {env['date']}",
        f"- versions: Python {v['python']}, bentoml {v['bentoml']}, onnxruntime "
        f"{v['onnxruntime']}, fastapi {v['fastapi']}, uvicorn {v['uvicorn']}, starlette "
        f"{v['starlette']}, uvloop {v['uvloop']}, httptools {v['httptools']}, orjson "
        f"{v['orjson']}; {args.tool} {v[args.tool]}",
        *peer_versions(args.peers),
        f"- load: {args.tool}, closed loop (each connection sends its next request when the "
        f"answer arrives), {args.duration} s per run after {args.warmup} s of warm-up; the "
        "load generator shares the machine's cores with the server; a run during which other "
        "processes used, or the hypervisor took (steal time), over "
        f"{args.disturbed_cores} cores was measured again",
        f"- Kiln: `bentoml serve`, default settings; extra settings: {kiln_env}; "
        "'batching off' adds `KILN_SERVE_BATCH={\"enabled\": false}`",
        f"- command: `{env['command']}`",
        "- GPU: none on this machine, so no GPU figure here; bench/gpu.sh measures the CUDA "
        "provider where a GPU is lent (bench/README.md)",
        "",
        "## Targets",
        "",
        targets_table(checks),
        "## Load runs",
        "",
        "CPU s/1k: the server's CPU seconds (all its processes) per 1,000 requests. RSS: its "
        "memory after the run. Other: cores used by anything else during the run. Stolen: "
        "cores the hypervisor gave to other machines during the run (steal time).",
        "",
        "| server | model | body | rows | conc. | req/s | rows/s | p50 ms | p99 ms | errors | "
        "CPU s/1k | RSS MB | other | stolen |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        *(_row(r) for r in run.results),
        "",
        "## Start-up",
        "",
        "| server | ready after (s) | RSS at idle (MB) | by process (MB) |",
        "|---|---:|---:|---|",
        *(
            f"| {s.label} | {s.ready_s:.2f} | {s.idle_rss_mb:.0f} | "
            + ", ".join(f"{k.split(' ', 1)[-1]} {mb:.0f}" for k, mb in s.rss_by_process_mb.items())
            + " |"
            for s in run.starts
        ),
        "",
        "## In-process limits",
        "",
        "ONNX Runtime in one Python process, one intra-op thread, no HTTP: the compute limit.",
        "",
        "| model | 1-row calls/s | µs per 1-row call | rows/s, 1,000-row calls | rows/s, JSON "
        "decode (orjson) + ORT | rows/s, binary decode + ORT |",
        "|---|---:|---:|---:|---:|---:|",
        *(
            f"| {MODEL_NAMES[m]} | {f.get('ort_one_row_calls_per_s', 0):,.0f} | "
            f"{f.get('ort_one_row_us', 0):,.0f} | {f.get('ort_rows_per_s', 0):,.0f} | "
            f"{f.get('json_ort_rows_per_s', 0):,.0f} | "
            f"{f.get('v2_binary_decode_ort_rows_per_s', 0):,.0f} |"
            for m, f in run.limits.items()
        ),
        "",
        *_overload_table(run),
    ]
    return "\n".join(lines)


def _overload_table(run: Run) -> list[str]:
    """bench/overload.py's runs: capacity, then four times its clients per queue setting."""
    if not run.overload:
        return []
    o = run.overload
    lines = [
        "## Overload",
        "",
        f"bench/overload.py: {o['rows_per_request']:,}-row JSON requests to "
        f"{o['model']}, hey, closed loop; capacity is the best of the client counts tried, "
        "overload four times its clients, on a fresh server per queue setting.",
        "",
        "| run | clients | rows/s | 200 | 503 | rows run by ORT | wasted rows | p99 ms | "
        "served / capacity |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in [*o["capacity_runs"], *o["overload"]]:
        ratio = f"{r['ratio']:.2f}" if "ratio" in r else ""
        lines.append(
            f"| {r.get('queue', 'capacity')} | {r['clients']} | {r['rows_per_s']:,.0f} | "
            f"{r['ok']} | {r['refused_503']} | {r['rows_run']:,.0f} | {r['wasted_rows']:,.0f} "
            f"| {r['p99_ms']:.0f} | {ratio} |"
        )
    return [*lines, ""]


def write_results(path: Path, text: str) -> None:
    """Write the report, keeping what follows ``NOTES_MARKER`` in the file already there."""
    notes = ""
    if path.exists():
        old = path.read_text(encoding="utf-8")
        if NOTES_MARKER in old:
            notes = old.split(NOTES_MARKER, 1)[1]
    path.write_text(f"{text}\n{NOTES_MARKER}{notes or chr(10)}", encoding="utf-8")


def chart(run: Run, out: Path) -> None:
    """Requests/s and p99 latency against concurrency, one-row requests: the servers on the
    logistic regression (top), Kiln's models with batching on and off (bottom)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(12, 9), constrained_layout=True)
    one_row = [r for r in run.results if r.rows == 1 and r.workload in ("records", "v2-json")]

    def series(rows: list[Result]) -> dict[str, list[Result]]:
        found: dict[str, list[Result]] = {}
        for r in rows:
            found.setdefault(r.label if r.model != "noop" else f"{r.label} no-op", []).append(r)
        return {k: sorted(v, key=lambda r: r.concurrency) for k, v in found.items()}

    top = series([r for r in one_row if r.model in ("lr", "noop")])
    bottom: dict[str, list[Result]] = {}
    for r in one_row:
        if r.server.startswith("kiln") and r.model in ("lr", "forest", "heavy"):
            key = f"{r.label}: {MODEL_NAMES[r.model]}"
            bottom.setdefault(key, []).append(r)
    for row, (title, data) in enumerate(
        (("LogisticRegression, one-row requests", top),
         ("Kiln's models, one-row requests", bottom))
    ):  # fmt: skip
        for label, runs in data.items():
            best: dict[int, Result] = {}  # the better run where a workload ran twice
            for r in runs:
                if r.concurrency not in best or r.rps > best[r.concurrency].rps:
                    best[r.concurrency] = r
            points = [best[c] for c in sorted(best)]
            xs = [p.concurrency for p in points]
            style = "-o" if "Kiln" in label else "--s"
            axes[row][0].plot(xs, [p.rps for p in points], style, label=label)
            axes[row][1].plot(xs, [p.p99_ms for p in points], style, label=label)
        for col, ylabel in enumerate(("requests per second", "p99 latency (ms)")):
            ax = axes[row][col]
            ax.set_xscale("log", base=2)
            ticks = sorted({r.concurrency for r in one_row})
            ax.set_xticks(ticks, [str(t) for t in ticks])
            ax.set_xlabel("concurrent connections")
            ax.set_ylabel(ylabel)
            ax.set_title(f"{title}: {ylabel}")
            ax.grid(True, alpha=0.3)
            if col == 1:
                ax.set_yscale("log")
        axes[row][0].legend(fontsize=8)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
