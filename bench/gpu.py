"""GPU against CPU in-process: Kiln's own runtime path on ONNX Runtime's CUDA and CPU providers.

For each Kiln model version directory (``model.onnx`` + ``kiln.json``), each provider set
(CUDA then CPU, as Kiln asks for it when onnxruntime-gpu is installed; and CPU alone at each
``--threads``) and each batch size (1, 64 and 1,000 rows by default), this opens the model
through :class:`kiln.runtime.ModelRuntime`, the class the service, the Predictor and batch
scoring all open models with (its session options, its providers, its ``run``), and calls
``run`` on prebuilt typed columns back to back, bounded by ``--seconds`` and ``--max-calls``
after a short warm-up. It reports:

- ``rows_per_s``: rows times calls over the wall time of all the timed calls;
- ``p50_ms``, ``p99_ms``: per call (over ``calls`` calls: with few calls, p99 is their max);
- where each node runs, from ONNX Runtime's own profiler: a second session with the same
  options (``session.get_session_options()`` of Kiln's session, plus ``enable_profiling``)
  runs ``PROFILE_RUNS`` calls; the trace's per-node kernel events give, per provider, how many
  nodes ran there, which operators, and their summed kernel time. Under CUDA the kernel time
  of a CUDA node is what the host spent in it: launches are asynchronous, so it can be less
  than the GPU's own time (release builds of ONNX Runtime carry no GPU-side timer).

The rows are the serving benchmark's (bench/workloads.py: the model's bundled scikit-learn
data, cycled), typed by Kiln's own records decoder (kiln/records.py), as the service types a
``/v1`` request. Without a CUDA provider (onnxruntime rather than onnxruntime-gpu, or no
device), it says so and exits 2, unless ``--cpu-only`` is given: then it measures the CPU
alone, and its table and JSON say that no GPU figure was measured::

    python bench/gpu.py MODEL_DIR [MODEL_DIR ...] --json gpu.json --markdown gpu.md
    python bench/gpu.py MODEL_DIR --cpu-only --seconds 1

bench/gpu.sh runs it on a GPU machine (it fetches, installs and finds what that needs).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from kiln.runtime import ModelRuntime
    from kiln.store import StoredModel

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
for _path in (REPO, BENCH_DIR):  # run as a script: kiln/ and bench/workloads.py importable
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

__all__ = ["Cell", "NodePlacement", "main", "measure", "placement"]

BATCHES = (1, 64, 1000)
DEFAULT_DATASET = "breast_cancer"
WARM_UP_CALLS = 5  # the first CUDA calls pay for cuBLAS/cuDNN set-up and memory arenas
MIN_CALLS = 5  # even a slow call (the MLP on 1,000 rows on one CPU thread) is timed 5 times
PROFILE_RUNS = 10
PROFILE_SKIPPED_RUNS = 2  # warm-up runs left out of the profile's figures
NO_GPU = "no GPU figure was measured"
EXIT_NO_CUDA = 2


@dataclass(frozen=True)
class NodePlacement:
    """Where a session's nodes ran, from ONNX Runtime's profile trace."""

    nodes: dict[str, int]  # provider -> distinct nodes that ran there
    kernel_us: dict[str, float]  # provider -> kernel time per run, µs (summed over its nodes)
    ops: dict[str, dict[str, int]]  # provider -> operator type -> nodes
    runs: int  # runs the figures cover


@dataclass
class Cell:
    """One model on one provider set at one batch size."""

    model: str
    version: str
    config: str  # "CUDA", "CPU 1 thread", ...
    requested: list[str]
    active: list[str]
    intra_op_threads: int
    batch: int
    calls: int
    seconds: float
    rows_per_s: float
    p50_ms: float
    p99_ms: float
    placement: NodePlacement | None = field(default=None)


def placement(trace: list[dict[str, Any]], skip_runs: int = 0) -> NodePlacement:
    """Nodes, operators and kernel time per provider in one ONNX Runtime profile trace.

    ``trace``: the JSON list that ``InferenceSession.end_profiling()`` writes. Node events
    (``cat`` "Node", name ``<node>_kernel_time``, ``args.provider`` and ``args.op_name``)
    count; fences and session events do not. The first ``skip_runs`` ``model_run`` events and
    the nodes inside them are left out (warm-up).
    """
    runs = sorted(
        (e for e in trace if e.get("cat") == "Session" and e.get("name") == "model_run"),
        key=lambda e: float(e["ts"]),
    )
    if len(runs) > skip_runs:
        start, counted = float(runs[skip_runs]["ts"]), len(runs) - skip_runs
    else:  # too few runs to skip any (or no run events: taken as one run)
        start, counted = float("-inf"), max(len(runs), 1)
    names: dict[str, set[str]] = {}
    ops: dict[str, Counter[str]] = {}
    kernel_us: dict[str, float] = {}
    for event in trace:
        args = event.get("args") or {}
        name = str(event.get("name", ""))
        if event.get("cat") != "Node" or not name.endswith("_kernel_time"):
            continue
        provider = args.get("provider")
        if not provider or float(event.get("ts", 0)) < start:
            continue
        node = name.removesuffix("_kernel_time")
        if node not in names.setdefault(provider, set()):
            names[provider].add(node)
            ops.setdefault(provider, Counter())[str(args.get("op_name", "?"))] += 1
        kernel_us[provider] = kernel_us.get(provider, 0.0) + float(event.get("dur", 0))
    return NodePlacement(
        nodes={p: len(n) for p, n in sorted(names.items())},
        kernel_us={p: kernel_us[p] / counted for p in sorted(names)},
        ops={p: dict(sorted(ops[p].items())) for p in sorted(names)},
        runs=counted if runs else 0,
    )


def open_model(model_dir: Path) -> StoredModel:
    """A model version directory as Kiln's store hands it over (no BentoML needed)."""
    from kiln.artifact import read_metadata
    from kiln.store import StoredModel

    model_dir = Path(model_dir)
    meta = read_metadata(model_dir)
    tag = f"{meta.name}:{meta.version}"
    return StoredModel(tag=tag, path=model_dir, metadata=read_metadata(model_dir, tag))


def columns(stored: StoredModel, rows: int, dataset: str) -> dict[str, np.ndarray]:
    """``rows`` rows of the model's data, typed as Kiln's /v1 decoder types a request."""
    from workloads import dataset_rows

    from kiln.records import decode_instances

    meta = stored.metadata
    records = dataset_rows(dataset, meta.features, rows)
    features = [(f.name, f.kind) for f in meta.features]
    typed, _ = decode_instances({"instances": records}, features, max_rows=rows)
    return typed


def _profile(runtime: ModelRuntime, feeds: dict[str, np.ndarray]) -> NodePlacement:
    """Run ``PROFILE_RUNS`` calls in a profiling twin of Kiln's session; parse its trace."""
    import onnxruntime as ort

    options = runtime.session.get_session_options()
    with tempfile.TemporaryDirectory(prefix="kiln-gpu-profile-") as scratch:
        options.enable_profiling = True
        options.profile_file_prefix = str(Path(scratch) / "ort")
        twin = ort.InferenceSession(
            runtime.stored.read_onnx(), options, providers=runtime.providers.requested
        )
        onnx_feeds = {
            onnx_input: feeds[name].reshape(-1, 1) for name, _, onnx_input in runtime.features
        }
        for _ in range(PROFILE_RUNS):
            twin.run(runtime.output_names, onnx_feeds)
        trace = json.loads(Path(twin.end_profiling()).read_text(encoding="utf-8"))
    return placement(trace, PROFILE_SKIPPED_RUNS)


def _timed(
    runtime: ModelRuntime, feeds: dict[str, np.ndarray], seconds: float, max_calls: int
) -> tuple[list[float], float]:
    """Per-call seconds of ``runtime.run`` and the wall time they took, bounded both ways."""
    for _ in range(WARM_UP_CALLS):
        runtime.run(feeds)
    times: list[float] = []
    begin = time.perf_counter()
    end = begin + seconds
    while len(times) < max_calls:
        start = time.perf_counter()
        runtime.run(feeds)
        done = time.perf_counter()
        times.append(done - start)
        if done >= end and len(times) >= MIN_CALLS:
            break
    return times, time.perf_counter() - begin


def measure(
    stored: StoredModel,
    config: str,
    providers: list[str],
    threads: int,
    batches: tuple[int, ...],
    seconds: float,
    max_calls: int,
    dataset: str = DEFAULT_DATASET,
    profile: bool = True,
) -> list[Cell]:
    """Every batch size of one model on one provider set (see the module docstring)."""
    from kiln.runtime import ModelRuntime

    runtime = ModelRuntime(stored, providers, intra_op_threads=threads)
    if runtime.providers.active[0] != providers[0]:
        raise RuntimeError(
            f"{stored.tag}: asked for {providers}, ONNX Runtime runs {runtime.providers.active} "
            "(no usable device, or a CUDA library missing: ONNX Runtime's own EP error is "
            "printed above)"
        )
    cells: list[Cell] = []
    for batch in batches:
        feeds = columns(stored, batch, dataset)
        times, wall = _timed(runtime, feeds, seconds, max_calls)
        cells.append(
            Cell(
                model=stored.metadata.name,
                version=stored.metadata.version,
                config=config,
                requested=list(providers),
                active=list(runtime.providers.active),
                intra_op_threads=threads,
                batch=batch,
                calls=len(times),
                seconds=round(wall, 3),
                rows_per_s=batch * len(times) / wall,
                p50_ms=float(np.percentile(times, 50)) * 1e3,
                p99_ms=float(np.percentile(times, 99)) * 1e3,
                placement=_profile(runtime, feeds) if profile else None,
            )
        )
    return cells


def cuda_problem() -> str | None:
    """Why the CUDA provider cannot be used here, or None when it can."""
    import onnxruntime as ort

    from kiln.runtime import CUDA

    available = ort.get_available_providers()
    if CUDA not in available:
        return (
            f"ONNX Runtime {ort.__version__} here has no {CUDA} (providers: {available}): "
            "install onnxruntime-gpu (its CUDA major version must match the machine's; see "
            "bench/gpu.sh)"
        )
    try:
        device = ort.get_device()
    except Exception as exc:  # ORT raises its own types
        return f"ONNX Runtime cannot name its device: {exc}"
    return None if device == "GPU" else f"ONNX Runtime's device is {device}, not GPU"


def configs(cpu_only: bool, threads: list[int]) -> list[tuple[str, list[str], int]]:
    """(label, providers, intra-op threads) to measure: CUDA as Kiln asks for it, then CPU."""
    from kiln.runtime import CPU, CUDA

    found: list[tuple[str, list[str], int]] = []
    if not cpu_only:
        found.append(("CUDA", [CUDA, CPU], threads[0]))
    for n in threads:
        label = "CPU, all cores" if n == 0 else f"CPU, {n} thread{'s' if n > 1 else ''}"
        found.append((label, [CPU], n))
    return found


def _where(cell: Cell) -> str:
    if cell.placement is None:
        return "-"
    p = cell.placement
    short = {"CUDAExecutionProvider": "CUDA", "CPUExecutionProvider": "CPU"}
    parts = []
    for provider, nodes in p.nodes.items():
        ops = ", ".join(f"{op} x{n}" if n > 1 else op for op, n in p.ops[provider].items())
        us = p.kernel_us[provider]
        parts.append(f"{short.get(provider, provider)}: {nodes} ({ops}; {us:,.0f} µs)")
    return "; ".join(parts)


def markdown(cells: list[Cell], header: dict[str, Any]) -> str:
    """The results as a markdown table, with what was (and was not) measured above it."""
    lines = [f"GPU benchmark, {header['when']} on {header['host']}", ""]
    lines.append(f"- ONNX Runtime {header['onnxruntime']}, providers {header['available']}")
    lines.append(f"- GPU: {header['gpu']}")
    if header["cpu_only"]:
        lines.append(f"- CPU only: {header['cpu_only']}; {NO_GPU}")
    lines.append(
        f"- each cell: Kiln's ModelRuntime.run back to back, up to {header['seconds']} s or "
        f"{header['max_calls']} calls after {WARM_UP_CALLS} warm-up calls; rows/s = rows x "
        f"calls / wall time; nodes per provider from ONNX Runtime's profiler over "
        f"{PROFILE_RUNS - PROFILE_SKIPPED_RUNS} runs (kernel µs per run)"
    )
    lines += [
        "",
        "| model | provider | rows | calls | rows/s | p50 ms | p99 ms "
        "| nodes: where (ops; kernel µs/run) |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for c in cells:
        lines.append(
            f"| {c.model} | {c.config} | {c.batch:,} | {c.calls:,} | {c.rows_per_s:,.0f} | "
            f"{c.p50_ms:.3f} | {c.p99_ms:.3f} | {_where(c)} |"
        )
    return "\n".join(lines) + "\n"


def _gpu_name() -> str:
    """The GPU's name from nvidia-smi, when there is one (for the report only)."""
    import shutil
    import subprocess

    smi = shutil.which("nvidia-smi")
    if not smi:
        return "none found (no nvidia-smi)"
    try:
        done = subprocess.run(
            [smi, "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=20,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"nvidia-smi failed: {exc}"
    return done.stdout.strip() or f"nvidia-smi said nothing (exit {done.returncode})"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("model_dirs", nargs="+", type=Path, metavar="MODEL_DIR")
    parser.add_argument(
        "--batches", type=int, nargs="+", default=list(BATCHES), help="rows per call (1 64 1000)"
    )
    parser.add_argument("--seconds", type=float, default=2.0, help="per cell, at most (2)")
    parser.add_argument("--max-calls", type=int, default=5000, help="per cell, at most (5000)")
    parser.add_argument(
        "--threads",
        type=int,
        nargs="+",
        default=[1],
        help="CPU intra-op threads, one CPU config each; 0 = ONNX Runtime's own (all cores); "
        "the first is CUDA's too (default 1, as Kiln serves)",
    )
    parser.add_argument("--dataset", default=DEFAULT_DATASET, help="bundled scikit-learn data")
    parser.add_argument("--cpu-only", action="store_true", help="no CUDA: measure the CPU alone")
    parser.add_argument("--no-profile", action="store_true", help="skip the profiled runs")
    parser.add_argument("--json", type=Path, help="write every figure here")
    parser.add_argument("--markdown", type=Path, help="write the table here")
    args = parser.parse_args(argv)
    if min(args.batches) < 1 or args.seconds <= 0 or args.max_calls < MIN_CALLS:
        parser.error(f"--batches >= 1, --seconds > 0 and --max-calls >= {MIN_CALLS}")
    if min(args.threads) < 0:
        parser.error("--threads must be 0 or more")
    return args


def main(argv: list[str] | None = None) -> int:
    import onnxruntime as ort

    from kiln.errors import KilnError

    args = parse_args(argv)
    problem = cuda_problem()
    if problem and not args.cpu_only:
        print(
            f"no CUDA provider: {problem}. Nothing measured; --cpu-only measures the CPU "
            f"alone ({NO_GPU}).",
            file=sys.stderr,
        )
        return EXIT_NO_CUDA
    cpu_only = (problem or "asked for (--cpu-only)") if args.cpu_only else None
    header = {
        "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "host": platform.node(),
        "python": platform.python_version(),
        "onnxruntime": ort.__version__,
        "available": ort.get_available_providers(),
        "gpu": _gpu_name(),
        "cpu_only": cpu_only,
        "gpu_measured": cpu_only is None,
        "seconds": args.seconds,
        "max_calls": args.max_calls,
        "dataset": args.dataset,
    }
    cells: list[Cell] = []
    for model_dir in args.model_dirs:
        try:
            stored = open_model(model_dir)
            for label, providers, threads in configs(bool(args.cpu_only), args.threads):
                print(f"{stored.tag} on {label} ...", file=sys.stderr, flush=True)
                cells += measure(
                    stored,
                    label,
                    providers,
                    threads,
                    tuple(args.batches),
                    args.seconds,
                    args.max_calls,
                    args.dataset,
                    profile=not args.no_profile,
                )
        except (KilnError, OSError, RuntimeError, ValueError) as exc:  # WorkloadError too
            print(f"{model_dir}: {exc}", file=sys.stderr)
            return 1
    table = markdown(cells, header)
    print(table)
    if args.markdown:
        args.markdown.write_text(table, encoding="utf-8")
    if args.json:
        document = {**header, "cells": [asdict(c) for c in cells]}
        args.json.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
