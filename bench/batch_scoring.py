"""Batch scoring benchmark: `kiln predict` (training/batch.py) against ONNX Runtime alone.

One run trains the churn demo model into a temporary ``BENTOML_HOME`` (deleted at the end;
``--model REF`` uses a model of the current store instead and trains nothing), writes a CSV
of ``--rows`` rows (default 1,000,000) made of ``training/data/churn.csv`` rows repeated with
a little noise, a few missing values and unique ids, then measures rows per second of:

- ``score_file`` end to end, CSV in, CSV out and Parquet out (model loading, reading,
  checking, typing, inference, writing: what ``kiln predict`` does);
- ONNX Runtime alone on the same rows already in memory as typed columns, one
  ``ModelRuntime.run`` per 50,000-row chunk: with ONNX Runtime's own threads (all cores),
  and as ``score_file`` runs it (one thread per session call, a chunk cut into one slice per
  core, bit-for-bit the service's answers);
- reading the CSV alone, in chunks, with the options ``score_file`` uses.

Each figure is the best of ``--repeat`` runs (the median is shown too); the machine, the
date, the load average and the library versions go with the table, which is printed and
written to ``bench/BATCH.md``::

    .venv/bin/python bench/batch_scoring.py                  # about 3 minutes on 2 cores
    .venv/bin/python bench/batch_scoring.py --rows 200000 --repeat 1 --markdown /tmp/b.md
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
CHURN_CSV = REPO / "training" / "data" / "churn.csv"
CHURN_SPEC = REPO / "training" / "specs" / "churn.yaml"
VERSIONED = ("onnxruntime", "pandas", "pyarrow", "numpy")
CHUNK = 50_000


# -- set-up ----------------------------------------------------------------------------------


@contextlib.contextmanager
def model_store(ref: str | None, keep: bool) -> Iterator[str]:
    """The tag to score with: ``ref`` as is, or churn trained into a temporary store."""
    if ref:
        yield ref
        return
    home = Path(tempfile.mkdtemp(prefix="kiln-batch-bench-"))
    saved = {k: os.environ.get(k) for k in ("BENTOML_HOME", "KILN_TRAIN_REPORTS_DIR")}
    os.environ["BENTOML_HOME"] = str(home)
    os.environ["KILN_TRAIN_REPORTS_DIR"] = str(home / "reports")  # not ./reports
    try:
        from training.run import train
        from training.spec import load_spec

        started = time.perf_counter()
        stored = train(load_spec(CHURN_SPEC), spec_path=CHURN_SPEC)
        print(f"trained {stored.tag} in {time.perf_counter() - started:.1f} s", file=sys.stderr)
        yield stored.tag
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        if keep:
            print(f"kept the store in {home}", file=sys.stderr)
        else:
            shutil.rmtree(home, ignore_errors=True)


def write_rows(path: Path, rows: int, seed: int = 0) -> None:
    """``rows`` rows of churn.csv, repeated with noise on the numbers, some values missing."""
    base = pd.read_csv(CHURN_CSV, dtype={"customer_id": str})
    rng = np.random.default_rng(seed)
    numeric = ["tenure_months", "monthly_charge", "data_gb", "support_calls", "age"]
    with path.open("w", encoding="utf-8", newline="") as fh:
        for start in range(0, rows, len(base) * 10):
            n = min(len(base) * 10, rows - start)
            part = base.iloc[rng.integers(0, len(base), n)].reset_index(drop=True)
            part["customer_id"] = [f"C{i:08d}" for i in range(start, start + n)]
            for column in numeric:
                values = part[column].to_numpy(dtype=np.float64)
                noisy = values * rng.normal(1.0, 0.03, n)
                decimals = 0 if column in ("tenure_months", "support_calls", "age") else 2
                noisy = np.clip(noisy, 0, None).round(decimals)
                noisy[rng.random(n) < 0.01] = np.nan  # a few more missing values
                part[column] = noisy
            part.to_csv(fh, header=start == 0, index=False)


def typed_columns(tag: str, path: Path) -> tuple[list[dict[str, np.ndarray]], int]:
    """The file as the model takes it, in 50,000-row chunks (what ORT alone is fed)."""
    from kiln.artifact import FeatureKind
    from kiln.store import get_model

    features = [(f.name, f.kind) for f in get_model(tag).metadata.features]
    strings = {n: str for n, k in features if k is not FeatureKind.numeric}
    chunks = []
    rows = 0
    with pd.read_csv(path, usecols=[n for n, _ in features], dtype=strings, chunksize=CHUNK) as r:
        for frame in r:
            chunks.append(
                {
                    n: frame[n].to_numpy(dtype=np.float32)
                    if k is FeatureKind.numeric
                    else frame[n].fillna("").to_numpy(dtype=object)
                    for n, k in features
                }
            )
            rows += len(frame)
    return chunks, rows


# -- measurements ----------------------------------------------------------------------------


def timed(label: str, rows: int, repeat: int, run: Callable[[], Any]) -> dict[str, Any]:
    seconds = []
    load = os.getloadavg()[0]
    for _ in range(repeat):
        started = time.perf_counter()
        run()
        seconds.append(time.perf_counter() - started)
    best, median = min(seconds), statistics.median(seconds)
    print(
        f"{label}: best {best:.2f} s ({rows / best:,.0f} rows/s), median {median:.2f} s, "
        f"load {load:.1f}",
        file=sys.stderr,
    )
    return {"what": label, "rows": rows, "best": best, "median": median, "load": load}


def measure_ort(tag: str, data: Path, rows: int, repeat: int) -> list[dict[str, Any]]:
    """ONNX Runtime alone on the rows in memory: with its own threads, and as batch runs it."""
    from kiln.runtime import ModelRuntime, default_providers
    from kiln.store import get_model
    from training.scoring import _Inference

    chunks, n = typed_columns(tag, data)
    assert n == rows, (n, rows)
    stored = get_model(tag)
    providers = default_providers()
    all_cores = ModelRuntime(stored, providers, intra_op_threads=0)
    all_cores.warm_up()
    one = ModelRuntime(stored, providers, intra_op_threads=1)
    one.warm_up()
    sliced = _Inference(one)
    try:
        return [
            timed(
                "ONNX Runtime alone, in memory, its own threads (intra_op 0), 1 run per 50k",
                rows,
                repeat,
                lambda: [all_cores.run(c) for c in chunks],
            ),
            timed(
                f"ONNX Runtime alone, in memory, as score_file runs it ({sliced.workers} "
                "slices x 1 thread per 50k)",
                rows,
                repeat,
                lambda: [sliced.run(c, len(next(iter(c.values())))) for c in chunks],
            ),
        ]
    finally:
        sliced.close()


def measure(tag: str, data: Path, work: Path, rows: int, repeat: int) -> list[dict[str, Any]]:
    from training.batch import score_file

    def read_only() -> None:
        strings = dict.fromkeys(
            ("customer_id", "plan", "contract", "region", "payment_method"), str
        )
        with pd.read_csv(data, dtype=strings, chunksize=CHUNK) as reader:
            for _ in reader:
                pass

    def scorer(out: Path) -> Callable[[], Any]:
        return lambda: score_file(tag, data, out, chunk_rows=CHUNK)

    results = [timed("read the CSV alone (pandas, 50k-row chunks)", rows, repeat, read_only)]
    results += measure_ort(tag, data, rows, repeat)
    for suffix in ("csv", "parquet"):
        results.append(
            timed(
                f"score_file end to end, CSV -> {suffix.upper()} (kiln predict)",
                rows,
                repeat,
                scorer(work / f"scores.{suffix}"),
            )
        )
    return results


# -- report ----------------------------------------------------------------------------------


def _best(result: dict[str, Any]) -> float:
    return float(result["best"])


def cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def markdown(results: list[dict[str, Any]], rows: int, data: Path, repeat: int, model: str) -> str:
    versions = ", ".join(f"{p} {importlib_metadata.version(p)}" for p in VERSIONED)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    reference = min((r for r in results if "ONNX Runtime alone" in r["what"]), key=_best)
    lines = [
        "# Batch scoring benchmark",
        "",
        "`kiln predict` (`training/batch.py`) against in-process ONNX Runtime on the same model "
        "and rows. Written by `bench/batch_scoring.py`; rerun it to refresh this file.",
        "",
        f"- date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
        f"- machine: {cores} cores (nproc), {cpu_model()}, {platform.system()} "
        f"{platform.release()}; Python {platform.python_version()}; {versions}",
        f"- model: {model}",
        f"- data: {rows:,} rows, {data.stat().st_size / 1e6:.0f} MB of CSV (churn.csv rows "
        "repeated with noise, ~1% more missing numbers); 50,000-row chunks",
        f"- figures: best of {repeat} runs (median in brackets); `load` is the 1-minute load "
        "average just before the runs",
        "",
        "| what | seconds | rows/s | vs fastest ORT alone | load |",
        "|---|---:|---:|---:|---:|",
    ]
    for r in results:
        rate = r["rows"] / r["best"]
        ratio = reference["best"] / r["best"]
        lines.append(
            f"| {r['what']} | {r['best']:.2f} ({r['median']:.2f}) | {rate:,.0f} | "
            f"{ratio:.2f}x | {r['load']:.1f} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--model", help="a model of $BENTOML_HOME that takes churn.csv's columns; train nothing"
    )
    parser.add_argument("--markdown", type=Path, default=REPO / "bench" / "BATCH.md")
    parser.add_argument("--notes", type=Path, help="markdown appended below the table")
    parser.add_argument("--keep", action="store_true", help="keep the temporary model store")
    args = parser.parse_args()

    with (
        tempfile.TemporaryDirectory(prefix="kiln-batch-data-") as tmp,
        model_store(args.model, args.keep) as tag,
    ):
        work = Path(tmp)
        data = work / "rows.csv"
        started = time.perf_counter()
        write_rows(data, args.rows)
        print(
            f"wrote {args.rows:,} rows ({data.stat().st_size / 1e6:.0f} MB) in "
            f"{time.perf_counter() - started:.1f} s",
            file=sys.stderr,
        )
        results = measure(tag, data, work, args.rows, args.repeat)
        model = (
            args.model
            if args.model
            else f"{tag}, trained from training/specs/churn.yaml into a temporary store "
            "(GradientBoostingClassifier, 200 trees of depth 3; 5 numeric and 4 categorical "
            "features)"
        )
        text = markdown(results, args.rows, data, args.repeat, model)
    if args.notes:
        text += "\n" + args.notes.read_text(encoding="utf-8")
    print(text)
    args.markdown.write_text(text, encoding="utf-8")
    print(f"written to {args.markdown}", file=sys.stderr)


if __name__ == "__main__":
    main()
