"""In-process compute limits: what one ONNX Runtime thread does with no HTTP in front of it.

The serving benchmark compares each server against these figures. For a Kiln model version
directory (``model.onnx`` + ``kiln.json``), with one intra-op and one inter-op thread on the
CPU provider (as Kiln serves by default), each figure is measured for about ``seconds``:

- ``ort_one_row_calls_per_s``, ``ort_one_row_us``: ``session.run`` on one row;
- ``ort_rows_per_s``: ``session.run`` on ``rows`` rows, prebuilt as [rows, 1] tensors per input;
- ``json_ort_rows_per_s``: what a JSON server must do for a ``rows``-row request:
  ``orjson.loads`` of ``{"instances": [{feature: value, ...}, ...]}``, one [rows, 1] float32
  (or object) tensor per input built from the records, ``session.run``;
  ``json_stdlib_ort_rows_per_s`` is the same with the standard library's ``json.loads``;
- ``v2_binary_decode_ort_rows_per_s``: ``np.frombuffer`` of a raw little-endian float32
  [rows, F] buffer (features in the model's order, as an Open Inference Protocol binary
  tensor), split into contiguous [rows, 1] columns, ``session.run``. Numeric models only.

Every figure comes from the **median** call time over all the calls made in that time (after
a short warm-up): rows/s is ``rows / median``, calls/s is ``1 / median``. A median resists
bursts of other work on a shared machine better than a total-based rate would.

The rows cycle through the model's own data, scikit-learn's bundled breast cancer data by
default, with the column names Kiln's trainer gives them::

    .venv/bin/python bench/limits.py MODEL_DIR [MODEL_DIR ...] --seconds 3 --rows 1000 \\
        --json out.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import onnxruntime as ort

    from kiln.artifact import ModelMetadata

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run as a script: make kiln/ importable
    sys.path.insert(0, str(REPO))

__all__ = ["instances", "limits", "main", "records_body"]

DEFAULT_DATASET = "breast_cancer"
WARM_UP_CALLS = 3
Feeds = dict[str, np.ndarray]


def _metadata(model_dir: Path) -> ModelMetadata:
    from kiln.artifact import read_metadata

    return read_metadata(model_dir)


def instances(
    meta: ModelMetadata, rows: int, dataset: str = DEFAULT_DATASET
) -> list[dict[str, Any]]:
    """``rows`` records of the bundled ``dataset`` (cycled), keyed by the model's features
    (the rows the HTTP benchmark sends, bench/workloads.py)."""
    from workloads import dataset_rows

    return dataset_rows(dataset, meta.features, rows)


def records_body(model_dir: Path, rows: int, dataset: str = DEFAULT_DATASET) -> bytes:
    """``{"instances": [...]}`` with ``rows`` records of the model's data, orjson-encoded."""
    import orjson

    return orjson.dumps({"instances": instances(_metadata(model_dir), rows, dataset)})


def _session(model_dir: Path) -> ort.InferenceSession:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    return ort.InferenceSession(
        str(model_dir / "model.onnx"), options, providers=["CPUExecutionProvider"]
    )


def _feeds(meta: ModelMetadata, records: list[dict[str, Any]]) -> Feeds:
    """One [N, 1] tensor per ONNX input: float32 for numbers, object for strings."""
    from kiln.artifact import FeatureKind

    feeds: Feeds = {}
    for f in meta.features:
        dtype = np.float32 if f.kind is FeatureKind.numeric else object
        feeds[f.input] = np.array([r[f.name] for r in records], dtype=dtype).reshape(-1, 1)
    return feeds


def _median_seconds(call: Callable[[], object], seconds: float) -> float:
    """Median wall time of ``call``, called repeatedly for about ``seconds``."""
    for _ in range(WARM_UP_CALLS):
        call()
    times: list[float] = []
    end = time.perf_counter() + seconds
    while True:
        start = time.perf_counter()
        call()
        done = time.perf_counter()
        times.append(done - start)
        if done >= end:
            return statistics.median(times)


def limits(
    model_dir: Path, rows: int = 1000, seconds: float = 3.0, dataset: str = DEFAULT_DATASET
) -> dict[str, float]:
    """Every in-process figure for one model version (see the module docstring)."""
    import orjson

    from kiln.artifact import FeatureKind

    model_dir = Path(model_dir)
    meta = _metadata(model_dir)
    session = _session(model_dir)
    outputs = [o.name for o in meta.outputs]
    records = instances(meta, rows, dataset)
    body = orjson.dumps({"instances": records})
    one_row, bulk = _feeds(meta, records[:1]), _feeds(meta, records)

    def from_json(loads: Callable[[bytes], Any]) -> Callable[[], object]:
        return lambda: session.run(outputs, _feeds(meta, loads(body)["instances"]))

    one = _median_seconds(lambda: session.run(outputs, one_row), seconds)
    found = {
        "ort_one_row_calls_per_s": 1 / one,
        "ort_one_row_us": one * 1e6,
        "ort_rows_per_s": rows / _median_seconds(lambda: session.run(outputs, bulk), seconds),
        "json_ort_rows_per_s": rows / _median_seconds(from_json(orjson.loads), seconds),
        "json_stdlib_ort_rows_per_s": rows / _median_seconds(from_json(json.loads), seconds),
    }
    if all(f.kind is FeatureKind.numeric for f in meta.features):
        raw = np.hstack([bulk[f.input] for f in meta.features]).astype("<f4").tobytes()
        inputs = [f.input for f in meta.features]

        def from_binary() -> object:
            matrix = np.frombuffer(raw, dtype="<f4").reshape(rows, len(inputs))
            feeds = {name: np.ascontiguousarray(matrix[:, [i]]) for i, name in enumerate(inputs)}
            return session.run(outputs, feeds)

        found["v2_binary_decode_ort_rows_per_s"] = rows / _median_seconds(from_binary, seconds)
    return found


_COLUMNS = (
    ("ort_one_row_calls_per_s", "1-row calls/s"),
    ("ort_one_row_us", "µs/1-row call"),
    ("ort_rows_per_s", "rows/s ORT"),
    ("json_ort_rows_per_s", "rows/s orjson+ORT"),
    ("json_stdlib_ort_rows_per_s", "rows/s json+ORT"),
    ("v2_binary_decode_ort_rows_per_s", "rows/s binary+ORT"),
)


def table(results: list[dict[str, Any]]) -> str:
    """The figures of each model, one line per model."""
    width = max([5, *(len(r["model"]) for r in results)])
    lines = [" ".join([f"{'model':<{width}}", *(f"{title:>17}" for _, title in _COLUMNS)])]
    for r in results:
        cells = [f"{r[key]:>17,.0f}" if key in r else f"{'-':>17}" for key, _ in _COLUMNS]
        lines.append(" ".join([f"{r['model']:<{width}}", *cells]))
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("model_dirs", nargs="+", type=Path, metavar="MODEL_DIR")
    parser.add_argument("--seconds", type=float, default=3.0, help="per figure (default 3)")
    parser.add_argument("--rows", type=int, default=1000, help="rows per bulk call")
    parser.add_argument("--dataset", default=DEFAULT_DATASET, help="bundled scikit-learn data")
    parser.add_argument("--json", type=Path, help="write every figure here")
    args = parser.parse_args(argv)
    if args.rows < 1 or args.seconds <= 0:
        parser.error("--rows must be at least 1 and --seconds above 0")
    return args


def main(argv: list[str] | None = None) -> int:
    import onnxruntime as ort

    from kiln.errors import KilnError

    args = parse_args(argv)
    results: list[dict[str, Any]] = []
    for model_dir in args.model_dirs:
        try:
            meta = _metadata(model_dir)
            figures = limits(model_dir, args.rows, args.seconds, args.dataset)
        except (KilnError, OSError, RuntimeError, ValueError) as exc:  # WorkloadError too
            print(f"{model_dir}: {exc}", file=sys.stderr)
            return 1
        results.append(
            {"model": meta.name, "version": meta.version, "model_dir": str(model_dir), **figures}
        )
    print(table(results))
    if args.json:
        document = {
            "onnxruntime": ort.__version__,
            "rows": args.rows,
            "seconds": args.seconds,
            "dataset": args.dataset,
            "statistic": "median call time",
            "models": results,
        }
        args.json.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
