"""Batch scoring on Ray against one process: rows/s and peak memory at 1 M and 10 M rows.

One run trains the churn demo model into the store the monitoring benchmark caches
(``build/bench-monitoring-store``, reused when present), writes the input once per size as
Parquet parts under ``build/bench-ray-data/<rows>/`` (``training/data/churn.csv``'s rows
cycled, an ``id`` column from 0, ten parts, row groups of 100,000; reused when present and
written one row group at a time, so the generator stays small), then runs, per size:

- ``kiln predict churn --engine local``: one process, the output one ``.parquet`` file;
- ``kiln predict churn --engine ray --workers 1`` and ``--workers 2``: a local Ray started
  by the CLI for the run and stopped after, the output a directory of Parquet parts.

Each is its own subprocess, so the memory measured is the run's own: every 0.2 s the
resident memory (RSS) of the CLI process and all its descendants is summed (for Ray: GCS,
raylet, the dashboard and log processes, the workers; pages of the object store's shared
memory count in every process that touched them, as RSS shows them) and, once a second, the
proportional set size (PSS: each shared page split between the processes that map it, so
shared memory counts once). Wall seconds include starting Python, Ray and the model, as a
user waits for them. After each run the output's rows are counted (scored + rejected must be
the input's rows) and each Ray output is compared with the local one row for row, in order
(pyarrow, streamed batch by batch, so the 10 M comparison stays small too)::

    .venv/bin/python bench/ray_scoring.py                      # about 5 minutes on 2 cores
    .venv/bin/python bench/ray_scoring.py --sizes 200000 --json /tmp/ray.json

Figures as JSON to ``bench/runs/ray-scoring-latest.json`` (``--json``: elsewhere) and a
Markdown table with the flat-memory check (peak at the largest size / peak at the smallest,
per engine) to stdout. Exit 1 when a run fails, loses a row or answers differently.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

HERE = Path(__file__).resolve().parent
if str(HERE.parent) not in sys.path:  # run as a script: kiln/ and training/ importable
    sys.path.insert(0, str(HERE.parent))

import monitoring  # noqa: E402
import servers  # noqa: E402
from batch_scoring import CHURN_CSV, cpu_model  # noqa: E402

REPO = HERE.parent
DATA = REPO / "build" / "bench-ray-data"
OUT = HERE / "runs" / "ray-scoring-latest.json"
RAY_TMP = Path("/tmp/kiln-bench-ray")  # short: Ray's unix sockets live under it (107 bytes)
PARTS = 10
ROW_GROUP = 100_000
SAMPLE_S = 0.2
PSS_EVERY = 5  # samples: PSS reads /proc/PID/smaps_rollup, dearer than RSS
MB = 1024 * 1024
# (engine, --workers): the single process, then Ray with one and two actors
RUNS: tuple[tuple[str, int | None], ...] = (("local", None), ("ray", 1), ("ray", 2))
SAID = ("scored ", "input checks", "no row rejected", "rejected ")  # the CLI's summary lines
VERSIONED = ("ray", "pyarrow", "onnxruntime", "pandas")


# -- input -----------------------------------------------------------------------------------


def features(model_dir: Path) -> list[str]:
    """The columns the model reads, from its kiln.json."""
    from kiln.artifact import read_metadata

    return [f.name for f in read_metadata(model_dir).features]


def _base_table(columns: list[str]) -> pa.Table:
    """churn.csv's rows, the model's columns only, typed as pandas reads them."""
    import pandas as pd

    frame = pd.read_csv(CHURN_CSV, usecols=columns)[columns]
    table = pa.Table.from_pandas(frame, preserve_index=False).replace_schema_metadata(None)
    plain = [  # pandas' strings arrive as large_string: written as the usual string
        pa.field(f.name, pa.string() if pa.types.is_large_string(f.type) else f.type)
        for f in table.schema
    ]
    return table.cast(pa.schema(plain))


def input_parts(rows: int, columns: list[str]) -> Path:
    """The directory of Parquet parts for ``rows`` rows, written if not cached yet."""
    key = {
        "rows": rows,
        "parts": PARTS,
        "row_group": ROW_GROUP,
        "columns": columns,
        "churn_csv_sha256": hashlib.sha256(CHURN_CSV.read_bytes()).hexdigest(),
    }
    target = DATA / str(rows)
    stamp = target / "input.json"
    if stamp.exists() and json.loads(stamp.read_text(encoding="utf-8")) == key:
        return target
    shutil.rmtree(target, ignore_errors=True)
    partial = DATA / f"{rows}.partial"
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    base = _base_table(columns)
    started = time.perf_counter()
    bounds = np.linspace(0, rows, PARTS + 1).astype(np.int64)
    for k in range(PARTS):
        with pq.ParquetWriter(partial / f"part-{k:05d}.parquet", _with_id(base).schema) as out:
            for start in range(int(bounds[k]), int(bounds[k + 1]), ROW_GROUP):
                ids = np.arange(start, min(start + ROW_GROUP, int(bounds[k + 1])))
                chunk = base.take(pa.array(ids % base.num_rows))
                out.write_table(_with_id(chunk, ids), row_group_size=ROW_GROUP)
    (partial / "input.json").write_text(json.dumps(key, indent=2) + "\n", encoding="utf-8")
    partial.rename(target)
    print(f"wrote {rows:,} rows in {PARTS} parts in {time.perf_counter() - started:.1f} s")
    return target


def _with_id(table: pa.Table, ids: np.ndarray | None = None) -> pa.Table:
    values = pa.array(np.arange(table.num_rows) if ids is None else ids, pa.int64())
    return table.add_column(0, "id", values)


# -- one run ---------------------------------------------------------------------------------


def _tree(root: psutil.Process) -> list[psutil.Process]:
    with contextlib.suppress(psutil.Error):
        return [root, *root.children(recursive=True)]
    return []


def _rss(proc: psutil.Process) -> int:
    with contextlib.suppress(psutil.Error):
        return int(proc.memory_info().rss)
    return 0


def _pss(proc: psutil.Process) -> int:
    with contextlib.suppress(psutil.Error, AttributeError):
        return int(proc.memory_full_info().pss)
    return 0


def _leftovers(seen: dict[int, psutil.Process], wait_s: float = 15.0) -> list[str]:
    """Processes of the run still alive after the CLI exited (killed here: they are ours)."""
    deadline = time.monotonic() + wait_s
    alive: list[psutil.Process] = []
    while True:
        alive = []
        for proc in seen.values():
            with contextlib.suppress(psutil.Error):
                if proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE:
                    alive.append(proc)
        if not alive or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    names = []
    for proc in alive:
        with contextlib.suppress(psutil.Error):
            names.append(f"{proc.pid} {' '.join(proc.cmdline())[:80]}")
            proc.kill()
    return names


def run_one(
    engine: str, workers: int | None, rows: int, data: Path, work: Path, env: dict[str, str]
) -> dict[str, Any]:
    """One ``kiln predict`` subprocess, its process tree's memory sampled while it runs."""
    label = "local" if workers is None else f"ray-{workers}"
    output = work / ("local.parquet" if workers is None else label)
    argv = [str(servers.BIN / "kiln"), "predict", "churn", "--input", str(data)]
    argv += ["--output", str(output), "--engine", engine]
    argv += [] if workers is None else ["--workers", str(workers)]
    log = work / f"{label}.log"
    load = os.getloadavg()[0]
    seen: dict[int, psutil.Process] = {}
    peak_rss = peak_pss = peak_procs = samples = 0
    with log.open("w", encoding="utf-8") as out:
        started = time.perf_counter()
        proc = psutil.Popen(argv, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)
        while proc.poll() is None:
            tree = _tree(proc)
            for member in tree:
                seen.setdefault(member.pid, member)
            peak_rss = max(peak_rss, sum(_rss(p) for p in tree))
            if samples % PSS_EVERY == 0:
                peak_pss = max(peak_pss, sum(_pss(p) for p in tree))
            peak_procs = max(peak_procs, len(tree))
            samples += 1
            time.sleep(SAMPLE_S)
        seconds = time.perf_counter() - started
    left = _leftovers(seen)
    text = log.read_text(encoding="utf-8", errors="replace")
    if proc.returncode != 0:
        raise SystemExit(f"{label} at {rows:,} rows exited {proc.returncode}:\n{text[-3000:]}")
    scored = output_rows(output)
    rejected = rejects_rows(output)
    result = {
        "engine": engine,
        "workers": workers,
        "rows": rows,
        "seconds": round(seconds, 2),
        "rows_per_s": round(rows / seconds),
        "peak_rss_mb": round(peak_rss / MB, 1),
        "peak_pss_mb": round(peak_pss / MB, 1),
        "peak_processes": peak_procs,
        "samples": samples,
        "scored": scored,
        "rejected": rejected,
        "all_rows": scored + rejected == rows,
        "load_before": round(load, 2),
        "left_running": left,
        "summary": [line for line in text.splitlines() if line.startswith(SAID)],
    }
    print(
        f"{label} {rows:,} rows: {seconds:.1f} s, {rows / seconds:,.0f} rows/s, peak RSS "
        f"{peak_rss / MB:,.0f} MB (PSS {peak_pss / MB:,.0f} MB, {peak_procs} processes), "
        f"scored {scored:,} + rejected {rejected:,}, load before {load:.2f}",
        flush=True,
    )
    return result


# -- checks ----------------------------------------------------------------------------------


def _files(output: Path) -> list[Path]:
    """The output's Parquet files in row order (a Ray output's parts sorted by name)."""
    return [output] if output.is_file() else sorted(output.glob("*.parquet"))


def output_rows(output: Path) -> int:
    return sum(pq.ParquetFile(f).metadata.num_rows for f in _files(output))


def rejects_rows(output: Path) -> int:
    """Rows of the rejects file the run wrote beside its output (none written: 0)."""
    from training.batch import default_rejects_path  # both engines': <output stem>.rejects.csv

    path = default_rejects_path(output)
    if not path.exists():
        return 0
    with path.open(encoding="utf-8", newline="") as fh:
        return max(sum(1 for _ in csv.reader(fh)) - 1, 0)


def _batches(output: Path) -> Iterator[pa.Table]:
    for path in _files(output):
        for batch in pq.ParquetFile(path).iter_batches(batch_size=65_536):
            yield pa.Table.from_batches([batch])


def compare(local: Path, other: Path) -> dict[str, Any]:
    """Row for row, in order: same columns, same ids and labels, probabilities' largest gap."""
    left, right = _batches(local), _batches(other)
    a = b = None
    rows = differing = 0
    gap = 0.0
    columns: list[str] = []
    while True:
        if a is None or a.num_rows == 0:
            a = next(left, None)
        if b is None or b.num_rows == 0:
            b = next(right, None)
        if a is None or b is None:
            break
        if not columns:
            columns = a.column_names
            if b.column_names != columns:
                return {"equal": False, "why": f"columns {columns} against {b.column_names}"}
        n = min(a.num_rows, b.num_rows)
        x, y = a.slice(0, n), b.slice(0, n)
        for name in columns:
            p, q = x.column(name), y.column(name)
            if pa.types.is_floating(p.type):
                u, v = p.to_numpy(zero_copy_only=False), q.to_numpy(zero_copy_only=False)
                gap = max(gap, float(np.nanmax(np.abs(u - v), initial=0.0)))
                differing += int(np.count_nonzero(~((u == v) | (np.isnan(u) & np.isnan(v)))))
            else:  # ids and labels: equal, or missing in both
                same = pc.or_(
                    pc.fill_null(pc.equal(p, q), False), pc.and_(p.is_null(), q.is_null())
                )
                differing += n - int(pc.sum(same).as_py() or 0)
        rows += n
        a, b = a.slice(n), b.slice(n)
    extra = (a is not None and a.num_rows > 0) or (b is not None and b.num_rows > 0)
    extra = extra or next(left, None) is not None or next(right, None) is not None
    return {
        "equal": differing == 0 and not extra,
        "rows_compared": rows,
        "values_differing": differing,
        "max_abs_probability_gap": gap,
        "unequal_length": extra,
        "columns": columns,
    }


# -- report ----------------------------------------------------------------------------------


def markdown(report: dict[str, Any]) -> str:
    runs = report["runs"]
    local = {r["rows"]: r for r in runs if r["engine"] == "local"}
    lines = [
        f"- date: {report['date']}; machine: {report['machine']}",
        f"- {report['versions']}; model: {report['model']}",
        "",
        "| engine | workers | rows | seconds | rows/s | peak RSS MB | peak PSS MB | processes "
        "| rows/s vs single process | same answers as single process |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in runs:
        same = r.get("same_as_local")
        said = "" if same is None else ("yes" if same["equal"] else "**no**")
        if same and same["equal"]:
            said += f" ({same['rows_compared']:,} rows)"
        lines.append(
            f"| {r['engine']} | {r['workers'] or ''} | {r['rows']:,} | {r['seconds']:.1f} | "
            f"{r['rows_per_s']:,} | {r['peak_rss_mb']:,.0f} | {r['peak_pss_mb']:,.0f} | "
            f"{r['peak_processes']} | {r['rows_per_s'] / local[r['rows']]['rows_per_s']:.2f} | "
            f"{said} |"
        )
    sizes = sorted(local)
    if len(sizes) > 1:
        small, large = sizes[0], sizes[-1]
        lines += [
            "",
            f"Flat memory: peak at {large:,} rows / peak at {small:,} rows "
            f"({large // small}x the rows):",
            "",
            "| engine | workers | peak RSS MB | ratio RSS | peak PSS MB | ratio PSS "
            "| rows/s past the first size | fixed seconds |",
            "|---|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for engine, workers in RUNS:
            pair = [
                r for r in runs if (r["engine"], r["workers"]) == (engine, workers)
                and r["rows"] in (small, large)
            ]  # fmt: skip
            if len(pair) != 2:
                continue
            s, g = sorted(pair, key=lambda r: r["rows"])
            # the extra rows over the extra seconds: the rate once Ray and the model are up;
            # what the small run took beyond that rate is the fixed cost (start, load, stop)
            marginal = (g["rows"] - s["rows"]) / (g["seconds"] - s["seconds"])
            lines.append(
                f"| {engine} | {workers or ''} | {s['peak_rss_mb']:,.0f} -> "
                f"{g['peak_rss_mb']:,.0f} | {g['peak_rss_mb'] / s['peak_rss_mb']:.2f} | "
                f"{s['peak_pss_mb']:,.0f} -> {g['peak_pss_mb']:,.0f} | "
                f"{g['peak_pss_mb'] / s['peak_pss_mb']:.2f} | {marginal:,.0f} | "
                f"{s['seconds'] - s['rows'] / marginal:.1f} |"
            )
    return "\n".join(lines) + "\n"


def _code_version() -> str:
    """The commit, and whether the engines' code differed from it when the run began."""
    git = ["git", "-C", str(REPO)]
    head = subprocess.run([*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    dirty = subprocess.run(
        [*git, "status", "--porcelain", "--", "training", "kiln"], capture_output=True, text=True
    )
    changed = " (training/ or kiln/ changed since)" if dirty.stdout.strip() else ""
    return head.stdout.strip() + changed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--sizes", default="1000000,10000000", help="rows per input, comma-separated"
    )
    parser.add_argument("--json", type=Path, default=OUT)
    parser.add_argument("--keep", action="store_true", help="keep the outputs (build/)")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]

    model_dir = monitoring.train(monitoring.STORE, "churn")
    columns = features(model_dir)
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}  # a local Ray per run
    # ray.init() without an address joins the cluster a `ray start` left in
    # $RAY_TMPDIR/ray/ray_current_cluster (a test's, say): a directory of our own keeps every
    # run on the Ray it starts, and its logs out of /tmp/ray
    env.update(BENTOML_HOME=str(monitoring.STORE), RAY_TMPDIR=str(RAY_TMP))
    env.update(RAY_USAGE_STATS_ENABLED="0")
    cores = len(os.sched_getaffinity(0))
    report: dict[str, Any] = {
        "date": f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
        "machine": f"{cores} cores, {cpu_model()}, "
        f"{psutil.virtual_memory().total / 2**30:.0f} GiB; {platform.platform()}",
        "versions": f"Python {platform.python_version()}, "
        + ", ".join(f"{p} {importlib_metadata.version(p)}" for p in VERSIONED),
        "model": f"churn:{model_dir.name} (GradientBoostingClassifier, 200 trees of depth 3)",
        "code": _code_version(),
        "input": f"Parquet, {PARTS} parts, row groups of {ROW_GROUP:,}, under {DATA}",
        "runs": [],
    }
    failed = False
    for rows in sizes:
        data = input_parts(rows, columns)
        work = REPO / "build" / "bench-ray-out" / str(rows)
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        done = [run_one(engine, workers, rows, data, work, env) for engine, workers in RUNS]
        for result in done:
            if result["workers"] is not None:
                same = compare(work / "local.parquet", work / f"ray-{result['workers']}")
                result["same_as_local"] = same
                print(f"ray-{result['workers']} {rows:,} rows against local: {same}")
                failed |= not same["equal"]
            failed |= not result["all_rows"]
        report["runs"] += done
        shutil.rmtree(RAY_TMP, ignore_errors=True)  # the runs' sessions and logs
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    report["finished"] = f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC"
    args.json.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(markdown(report))
    print(f"written to {args.json}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
