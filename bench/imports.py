"""Import benchmark: `kiln import` of large boosted pipelines, and how they serve beside the
spec-trained models.

One run makes a synthetic mixed-type data set (numbers with missing values, categories),
fits two pipelines a data scientist would bring (a ColumnTransformer imputing and one-hot
encoding, then a 500-tree ``LGBMClassifier``, or a 300-iteration
``HistGradientBoostingClassifier``), saves them with joblib, and times ``kiln import`` of each
with a 50,000-row labelled sample in a fresh process (load, contract, export, verification on
every sample row, evaluation, registration: each phase timed). Then it serves the two
imported models beside the benchmark's spec-trained logistic regression and 100-tree forest
(trained into the same temporary store) and measures, for every model, one-row JSON requests
at concurrency 64 (requests/s, p99) and 1,000-row JSON requests at concurrency 4 (rows/s),
with wrk, all models in one run so the figures compare::

    .venv/bin/python bench/imports.py                     # about 6 minutes on 2 cores
    .venv/bin/python bench/imports.py --quick             # small sizes, 2 s runs: a smoke test

The table goes to stdout and ``bench/IMPORTS.md`` (``--markdown``), with the machine, the date
and the load average; the figures as JSON to ``bench/runs/imports-latest.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
if str(HERE.parent) not in sys.path:  # run as a script: kiln/ and training/ importable
    sys.path.insert(0, str(HERE.parent))

import loadgen  # noqa: E402
import servers  # noqa: E402
import workloads  # noqa: E402

REPO = HERE.parent
KILN = Path(sys.executable).parent / "kiln"
SPECS = {
    "breast-cancer": REPO / "training" / "specs" / "breast-cancer.yaml",
    "breast-cancer-forest": HERE / "specs" / "breast-cancer-forest.yaml",
}

# Times one import in a fresh process, phase by phase (the steps import_model reports).
DRIVER = """
import json, sys, time
import joblib
from training.importer import import_model
marks = [("joblib.load", time.perf_counter())]  # (the step that starts, when)
model = joblib.load(sys.argv[1])
def step(text):
    marks.append((text, time.perf_counter()))
stored = import_model(model, sys.argv[2], sample=sys.argv[3], target="target",
                      gate="roc_auc >= 0.6", on_step=step)
marks.append(("done", time.perf_counter()))
phases = [(marks[i][0], marks[i + 1][1] - marks[i][1]) for i in range(len(marks) - 1)]
print(json.dumps({"tag": stored.tag, "seconds": marks[-1][1] - marks[0][1], "phases": phases}))
"""


def make_data(rows: int, seed: int = 0) -> pd.DataFrame:
    """Mixed numeric and categorical columns with missing values and a binary target."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {f"x{i}": rng.normal(0, 1 + i % 3, rows).round(4) for i in range(12)}
        | {
            "plan": rng.choice(["basic", "standard", "fiber", "mobile"], rows),
            "region": rng.choice(["north", "south", "east", "west", "islands"], rows),
            "channel": rng.choice(["web", "shop", "phone"], rows),
        }
    )
    signal = (
        0.8 * frame["x0"]
        - 0.5 * frame["x1"] * frame["x2"]
        + 0.3 * np.sin(frame["x3"])
        + 0.9 * (frame["plan"] == "fiber")
        - 0.6 * (frame["region"] == "islands")
        + rng.normal(0, 1, rows)
    )
    frame["target"] = np.where(signal > 0.2, "yes", "no")
    for column, share in [("x0", 0.05), ("x4", 0.1), ("plan", 0.04)]:
        frame.loc[rng.random(rows) < share, column] = np.nan
    return frame


def make_pipelines(trees_lgbm: int, trees_hgb: int) -> dict[str, Any]:
    from lightgbm import LGBMClassifier
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder

    numeric = [f"x{i}" for i in range(12)]
    categorical = ["plan", "region", "channel"]

    def pre() -> ColumnTransformer:
        strings = Pipeline(
            [
                ("impute", SimpleImputer(strategy="most_frequent")),
                ("onehot", OneHotEncoder(handle_unknown="ignore", sparse_output=False)),
            ]
        )
        return ColumnTransformer(
            [("num", SimpleImputer(strategy="median"), numeric), ("cat", strings, categorical)]
        )

    return {
        f"lgbm{trees_lgbm}": Pipeline(
            [
                ("preprocess", pre()),
                (
                    "model",
                    LGBMClassifier(
                        n_estimators=trees_lgbm, num_leaves=31, n_jobs=1, verbose=-1, seed=0
                    ),
                ),
            ]
        ),
        f"hgb{trees_hgb}": Pipeline(
            [
                ("preprocess", pre()),
                (
                    "model",
                    HistGradientBoostingClassifier(
                        max_iter=trees_hgb, early_stopping=False, random_state=0
                    ),
                ),
            ]
        ),
    }


def _run(argv: list[Any], env: dict[str, str], timeout: float = 1800) -> str:
    done = subprocess.run(
        [str(a) for a in argv], env=env, cwd=REPO, capture_output=True, text=True, timeout=timeout
    )
    if done.returncode != 0:
        raise SystemExit(f"{argv[0]} failed ({done.returncode}):\n{done.stdout}{done.stderr}")
    return done.stdout


def _model_dir(home: Path, tag: str) -> Path:
    name, version = tag.split(":")
    return home / "models" / name / version


def serve_and_load(
    home: Path, models: dict[str, dict[str, Any]], seconds: int, bulk_rows: int, work: Path
) -> None:
    """Serve every model at once; one-row c=64 and ``bulk_rows``-row c=4 for each."""
    env = {
        "KILN_SERVE_MODELS": json.dumps([m["tag"] for m in models.values()]),
        "OMP_NUM_THREADS": "1",
    }
    server, base = servers.kiln_server(home, "imports", env)
    with servers.running(server):
        for label, model in models.items():
            name = model["tag"].split(":")[0]
            url = f"{base}/v1/models/{name}/predict"
            rows = model["rows"]
            one = workloads.write(work, f"{label}-1", "records", 1, workloads.records(rows[:1]))
            bulk = workloads.write(
                work, f"{label}-bulk", "records", bulk_rows, workloads.records(rows[:bulk_rows])
            )
            status, answer = servers.http("POST", url, bulk.read(), timeout=60)
            if status != 200:
                raise SystemExit(f"{label}: {status} {answer[:300]!r}")
            loadgen.run_load("wrk", url, one, 2, 16, 2)  # warm-up
            single, _ = loadgen.run_load("wrk", url, one, seconds, 64, 2)
            many, _ = loadgen.run_load("wrk", url, bulk, seconds, 4, 2)
            model["one_row_c64"] = {
                "rps": single.rps,
                "p50_ms": single.p50_ms,
                "p99_ms": single.p99_ms,
                "errors": single.errors,
            }
            model["bulk_c4"] = {
                "rows_per_s": many.rps * bulk_rows,
                "p99_ms": many.p99_ms,
                "errors": many.errors,
            }
            print(
                f"{label}: one row c=64 {single.rps:,.0f} req/s p99 {single.p99_ms:.1f} ms; "
                f"{bulk_rows} rows c=4 {many.rps * bulk_rows:,.0f} rows/s",
                flush=True,
            )


def markdown(result: dict[str, Any]) -> str:
    lines = [
        "# Import benchmark",
        "",
        "`kiln import` of pipelines fitted outside Kiln, and how they serve beside "
        "spec-trained models. Written by `bench/imports.py`; rerun it to refresh this file.",
        "",
        f"- date: {result['date']}",
        f"- machine: {result['machine']}",
        f"- data: {result['sample_rows']:,}-row labelled sample (12 numeric columns, 3 "
        "categorical, missing values); pipelines fitted on "
        f"{result['fit_rows']:,} other rows",
        f"- load average before the runs: {result['load']}",
        "",
        "## Import (fresh process: joblib.load, contract, ONNX export, verification on "
        "every sample row, evaluation, registration)",
        "",
        "| model | seconds | slowest phases |",
        "|---|---:|---|",
    ]
    for label, imp in result["imports"].items():
        slow = sorted(imp["phases"], key=lambda p: -p[1])[:3]
        shown = "; ".join(f"{name} {secs:.1f} s" for name, secs in slow)
        lines.append(f"| {label} | {imp['seconds']:.1f} | {shown} |")
    lines += [
        "",
        f"## Served together (one Kiln server, wrk, {result['seconds']} s runs)",
        "",
        "| model | one row, c=64: req/s | p99 ms | "
        f"{result['bulk_rows']:,} rows, c=4: rows/s | errors |",
        "|---|---:|---:|---:|---:|",
    ]
    for label, model in result["served"].items():
        one, bulk = model["one_row_c64"], model["bulk_c4"]
        lines.append(
            f"| {label} | {one['rps']:,.0f} | {one['p99_ms']:.1f} | {bulk['rows_per_s']:,.0f} "
            f"| {one['errors'] + bulk['errors']} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes and 2 s runs")
    parser.add_argument("--markdown", type=Path, default=HERE / "IMPORTS.md")
    parser.add_argument("--json", type=Path, default=HERE / "runs" / "imports-latest.json")
    args = parser.parse_args()
    sample_rows, fit_rows = (2_000, 2_000) if args.quick else (50_000, 10_000)
    trees = (20, 15) if args.quick else (500, 300)
    seconds, bulk_rows = (2, 100) if args.quick else (10, 1_000)

    with tempfile.TemporaryDirectory(prefix="kiln-bench-imports-") as tmp:
        work = Path(tmp)
        home = work / "store"
        env = {
            **os.environ,
            "BENTOML_HOME": str(home),
            "BENTOML_DO_NOT_TRACK": "true",
            "KILN_TRAIN_PROGRESS": "false",
            "KILN_TRAIN_REPORTS_DIR": str(work / "reports"),
            "OMP_NUM_THREADS": "1",
        }
        data = make_data(fit_rows + sample_rows)
        fit, sample = data.iloc[:fit_rows], data.iloc[fit_rows:]
        sample_path = work / "sample.parquet"
        sample.to_parquet(sample_path)
        import joblib

        load = " ".join(f"{v:.1f}" for v in os.getloadavg())
        imports: dict[str, Any] = {}
        served: dict[str, dict[str, Any]] = {}
        features = [c for c in data.columns if c != "target"]
        served_rows = sample[features].astype(object).where(sample[features].notna(), None)
        rows = served_rows.head(bulk_rows).to_dict(orient="records")
        for label, pipeline in make_pipelines(*trees).items():
            pipeline.fit(fit[features], fit["target"])
            path = work / f"{label}.joblib"
            joblib.dump(pipeline, path)
            out = _run([sys.executable, "-c", DRIVER, path, f"bench-{label}", sample_path], env)
            imports[label] = json.loads(out.strip().splitlines()[-1])
            print(f"{label}: imported in {imports[label]['seconds']:.1f} s", flush=True)
            served[label] = {"tag": imports[label]["tag"], "rows": rows}
        for label, spec in SPECS.items():
            _run([KILN, "train", spec], env)
            listed = json.loads(_run([KILN, "models", "list", "--json"], env))["models"]
            tag = next(m["tag"] for m in listed if m["tag"].split(":")[0] == label)
            served[label] = {
                "tag": tag,
                "rows": workloads.instances(spec, _model_dir(home, tag), bulk_rows),
            }
        serve_and_load(home, served, seconds, bulk_rows, work)

    versions = ", ".join(
        f"{p} {importlib_metadata.version(p)}"
        for p in ("onnxruntime", "scikit-learn", "lightgbm", "skl2onnx", "onnxmltools")
    )
    result = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{os.cpu_count()} cores, {platform.processor() or platform.machine()}, "
        f"Linux {platform.release()}; Python {platform.python_version()}; {versions}",
        "load": load,
        "sample_rows": sample_rows,
        "fit_rows": fit_rows,
        "seconds": seconds,
        "bulk_rows": bulk_rows,
        "imports": imports,
        "served": {k: {kk: vv for kk, vv in v.items() if kk != "rows"} for k, v in served.items()},
    }
    text = markdown(result)
    print(text)
    if not args.quick:
        args.markdown.write_text(text, encoding="utf-8")
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
