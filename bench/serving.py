"""Serving benchmark: Kiln against its peers and the limits of this machine, in one run.

One run trains the benchmark's models into a cached ``BENTOML_HOME`` (the breast cancer data
with StandardScaler + LogisticRegression, a 100-tree random forest and a wide MLP, plus the
demo models for the cold-start figure), measures the in-process ONNX Runtime limits, then
starts each server on 127.0.0.1 in turn and drives it with wrk (or hey):

- Kiln as ``make serve`` runs it (``bentoml serve``), and again with batching off;
- the limits: a plain FastAPI + ONNX Runtime app (``bench/plain_fastapi_ort.py``) and its
  no-op route, Kiln's own no-op route, in-process ONNX Runtime (``bench/limits.py``);
- the peers a user would otherwise pick, each from its own venv (``bench/peers/``): FastAPI
  + scikit-learn, BentoML + scikit-learn, Seldon MLServer with and without adaptive batching.

Workloads: one-row JSON requests at concurrency 1, 16, 64 and 256; 1,000-row requests at
concurrency 4 as JSON records, V2 JSON (MLServer) and V2 binary tensors (Kiln). Per load run:
requests/s, rows/s, p50 and p99 latency, errors, the server's CPU seconds per 1,000 requests
and its memory; per server: cold start (process start to ready) and idle memory. The report
(``bench/RESULTS.md``), a chart (``bench/results.png``) and every figure as JSON
(``bench/runs/latest.json``) come from the same run; ``--check`` exits 1 when a target of
bench/README.md is not met::

    .venv/bin/python bench/serving.py                  # make bench: about 30 minutes
    .venv/bin/python bench/serving.py --quick          # make bench-quick: under 3 minutes
    .venv/bin/python bench/serving.py --check          # the same, exit 1 below a target

The load generator runs on the same cores as the servers: the figures are for this machine
as a whole, not for the server alone. See bench/README.md.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import psutil

BENCH_DIR = Path(__file__).resolve().parent
if str(BENCH_DIR.parent) not in sys.path:  # run as a script: kiln/ and training/ importable
    sys.path.insert(0, str(BENCH_DIR.parent))

import limits  # noqa: E402
import report  # noqa: E402
from loadgen import LoadError, run_load  # noqa: E402
from profiling import ProfileError, profile  # noqa: E402
from servers import (  # noqa: E402
    BIN,
    PEER_BULK,
    PEER_SWEEP,
    PEERS,
    REPO,
    Server,
    ServerError,
    http,
    kiln_server,
    peer_body,
    peer_label,
    peer_python,
    peer_server,
    plain_server,
    running,
)
from workloads import Body, WorkloadError, bodies_for  # noqa: E402

TRAIN_TIMEOUT_S = 900
STORE_ROOT = REPO / "build" / "bench-store"
PEER_MODELS = REPO / "build" / "bench-models"
# The benchmark's models: short key -> spec. The same trained models serve every server.
MODELS = {
    "lr": REPO / "training" / "specs" / "breast-cancer.yaml",
    "forest": BENCH_DIR / "specs" / "breast-cancer-forest.yaml",
    "heavy": BENCH_DIR / "specs" / "breast-cancer-mlp.yaml",
}
MODEL_LABELS = {
    "lr": "LogisticRegression",
    "forest": "RandomForest (100 trees)",
    "heavy": "MLP (heavy)",
    "noop": "no-op route",
}
# Trained too, for the cold-start figure: `make serve` serves them.
DEMO_SPECS = ["wine.yaml", "diabetes.yaml", "churn.yaml"]
DEMO_SERVED = ["breast-cancer.yaml", *DEMO_SPECS]  # what `make train` puts in the store
BATCHING_OFF = {"KILN_SERVE_BATCH": '{"enabled": false}'}


class BenchError(RuntimeError):
    """A step of the benchmark failed; the message says which and why."""


@dataclass
class Result:
    """One measured load run."""

    server: str  # kiln, kiln-batching-off, plain, or a peer
    label: str  # the server as the report names it
    model: str  # lr, forest, heavy or noop
    workload: str  # records, v2-json, v2-tensor, v2-fp32 or v2-binary
    rows: int  # rows per request
    concurrency: int
    tool: str
    seconds: float
    requests: int
    rps: float
    rows_per_s: float
    p50_ms: float
    p99_ms: float
    non_2xx: int
    socket_errors: int
    errors: int
    cpu_s_per_1k: float
    server_cores: float
    loadgen_cores: float
    other_cores: float  # CPU used by anything else on the machine during the run
    rss_mb: float
    stolen_cores: float = 0.0  # CPU the hypervisor gave to other machines (steal time)
    attempt: int = 1


@dataclass
class Started:
    """One server start: how long until ready and its memory at idle."""

    server: str
    label: str
    ready_s: float
    idle_rss_mb: float
    rss_by_process_mb: dict[str, float] = field(default_factory=dict)


@dataclass
class Run:
    """Everything one benchmark run measured."""

    results: list[Result] = field(default_factory=list)
    starts: list[Started] = field(default_factory=list)
    limits: dict[str, dict[str, float]] = field(default_factory=dict)
    overload: dict[str, Any] = field(default_factory=dict)  # bench/overload.py's figures


# -- measuring ---------------------------------------------------------------------------------


def machine_busy() -> float:
    """Busy CPU seconds of the whole machine since boot (user + nice + system)."""
    t = psutil.cpu_times()
    return t.user + t.nice + t.system


def machine_stolen() -> float:
    """CPU seconds since boot that the hypervisor ran other machines on this one's cores
    (Linux steal time; 0 where it is not reported). On this VM it reached a quarter of both
    cores for minutes at a time, and a run under it answered at a third of its speed."""
    return float(getattr(psutil.cpu_times(), "steal", 0.0))


def wait_quiet(server: Server, threshold: float, limit: float) -> None:
    """Wait (at most ``limit`` s) until the rest of the machine uses under ``threshold``
    cores: other work on a shared machine skews every figure."""
    started = time.monotonic()
    while time.monotonic() - started < limit:
        busy, own = machine_busy(), server.cpu_seconds()
        time.sleep(1)
        if machine_busy() - busy - (server.cpu_seconds() - own) < threshold:
            return
    print(f"  the machine is still busy after {limit:.0f} s: measuring anyway", flush=True)


def measure_once(
    server: Server, url: str, body: Body, concurrency: int, args: argparse.Namespace
) -> dict[str, Any]:
    if args.quiet_wait > 0:
        wait_quiet(server, args.quiet_cores, args.quiet_wait)
    if args.warmup > 0:
        run_load(args.tool, url, body, args.warmup, concurrency, args.threads)
    cpu_before, busy_before, stolen_before = server.cpu_seconds(), machine_busy(), machine_stolen()
    load, loadgen_cpu = run_load(args.tool, url, body, args.duration, concurrency, args.threads)
    cpu = server.cpu_seconds() - cpu_before
    others = max(0.0, machine_busy() - busy_before - cpu - loadgen_cpu)
    stolen = max(0.0, machine_stolen() - stolen_before)
    return {
        "tool": load.tool,
        "seconds": round(load.seconds, 2),
        "requests": load.requests,
        "rps": round(load.rps, 1),
        "rows_per_s": round(load.rps * body.rows, 1),
        "p50_ms": round(load.p50_ms, 2),
        "p99_ms": round(load.p99_ms, 2),
        "non_2xx": load.non_2xx,
        "socket_errors": load.socket_errors,
        "errors": load.errors,
        "cpu_s_per_1k": round(cpu / max(load.requests, 1) * 1000, 3),
        "server_cores": round(cpu / load.seconds, 2),
        "loadgen_cores": round(loadgen_cpu / load.seconds, 2),
        "other_cores": round(others / load.seconds, 2),
        "rss_mb": round(sum(server.memory().values()) / 2**20, 1),
        "stolen_cores": round(stolen / load.seconds, 2),
    }


def measure(
    who: tuple[str, str],
    server: Server,
    url: str,
    model: str,
    body: Body,
    concurrency: int,
    args: argparse.Namespace,
) -> Result:
    """Measure one target, again while other work or the hypervisor disturbed it (up to
    ``--retries``); the least disturbed attempt counts."""
    attempts: list[dict[str, Any]] = []

    def disturbance(figures: dict[str, Any]) -> float:
        return float(figures["other_cores"] + figures["stolen_cores"])

    while True:
        figures = measure_once(server, url, body, concurrency, args)
        figures["attempt"] = len(attempts) + 1
        attempts.append(figures)
        if disturbance(figures) <= args.disturbed_cores or len(attempts) > args.retries:
            break
        print(
            f"  disturbed ({figures['other_cores']:.2f} cores elsewhere, "
            f"{figures['stolen_cores']:.2f} stolen): again",
            flush=True,
        )
    best = min(attempts, key=disturbance)
    result = Result(who[0], who[1], model, body.kind, body.rows, concurrency, **best)
    print(
        f"  {who[1]:<22} {model:<6} {body.kind:<9} {body.rows:>5} rows c={concurrency:<3} "
        f"{result.rps:>8.1f} req/s {result.rows_per_s:>10.0f} rows/s  p50 {result.p50_ms:>7.2f}"
        f"  p99 {result.p99_ms:>7.2f} ms  err {result.errors}  cpu {result.cpu_s_per_1k:.3f}"
        f" s/1k  rss {result.rss_mb:.0f} MB  other {result.other_cores:.2f}"
        f"  stolen {result.stolen_cores:.2f}",
        flush=True,
    )
    return result


@contextlib.contextmanager
def started(run: Run, server: Server, key: str, idle: float = 2.0) -> Iterator[Server]:
    """Start ``server``; record its cold start and idle memory; stop it on the way out."""
    with running(server):
        time.sleep(idle)  # what start-up left behind, before any request
        memory = server.memory()
        assert server.ready_s is not None
        run.starts.append(
            Started(
                key,
                server.name,
                round(server.ready_s, 2),
                round(sum(memory.values()) / 2**20, 1),
                {k: round(v / 2**20, 1) for k, v in memory.items()},
            )
        )
        yield server


# -- models and answers ------------------------------------------------------------------------


def store_key() -> str:
    """What the cached store depends on: the specs, the lock, Kiln's training code."""
    digest = hashlib.sha256()
    paths = [*MODELS.values(), *(REPO / "training" / "specs" / s for s in DEMO_SPECS)]
    paths += [REPO / "requirements.lock", *sorted((REPO / "training").rglob("*.py"))]
    for path in paths:
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def train_all(home: Path) -> dict[str, Path]:
    """Train every model into ``home`` unless it is there; model key -> version directory."""
    specs = {**MODELS, **{s: REPO / "training" / "specs" / s for s in DEMO_SPECS}}
    dirs = {}
    for key, spec in specs.items():
        name = yaml_name(spec)
        latest = home / "models" / name / "latest"
        if not latest.exists():
            print(f"training {spec.relative_to(REPO)}", flush=True)
            env = {**os.environ, "BENTOML_HOME": str(home), "KILN_TRAIN_PROGRESS": "false",
                   "KILN_TRAIN_REPORTS_DIR": "none"}  # fmt: skip
            done = subprocess.run(
                [str(BIN / "kiln"), "train", str(spec)], cwd=REPO, env=env,
                capture_output=True, text=True, timeout=TRAIN_TIMEOUT_S, check=False,
            )  # fmt: skip
            if done.returncode != 0:
                raise BenchError(f"kiln train {spec} exited {done.returncode}:\n{done.stderr}")
        version = latest.read_text(encoding="utf-8").strip()
        dirs[key] = home / "models" / name / version
    return dirs


def yaml_name(spec: Path) -> str:
    import yaml

    return str(yaml.safe_load(spec.read_text(encoding="utf-8"))["name"])


def peer_model(spec: Path, model_dir: Path) -> Path:
    """The spec's scikit-learn pipeline, pickled by bench/peers/models.py and checked against
    the ONNX model at ``model_dir`` (reused while the ONNX model is the same)."""
    out = PEER_MODELS / f"{yaml_name(spec)}.joblib"
    stamp = out.with_suffix(".source")
    source = str(model_dir)
    from peers.models import array_path  # the array twin the MLServer peer loads

    fresh = stamp.exists() and stamp.read_text(encoding="utf-8") == source
    if out.exists() and array_path(out).exists() and fresh:
        return out
    done = subprocess.run(
        [sys.executable, str(BENCH_DIR / "peers" / "models.py"), "--spec", str(spec),
         "--model-dir", str(model_dir), "--out", str(out)],
        cwd=REPO, capture_output=True, text=True, timeout=TRAIN_TIMEOUT_S, check=False,
    )  # fmt: skip
    if done.returncode != 0:
        raise BenchError(f"bench/peers/models.py failed:\n{done.stdout}{done.stderr}")
    print(done.stdout.strip(), flush=True)
    stamp.write_text(source, encoding="utf-8")
    return out


def probabilities(raw: bytes) -> list[float]:
    """The first row's class probabilities, sorted, from any server's JSON answer."""
    answer = json.loads(raw)
    if "outputs" in answer:  # V2: predict_proba or probabilities, flat row-major
        out = next(o for o in answer["outputs"] if o["name"] in ("predict_proba", "probabilities"))
        width = out["shape"][-1]
        return sorted(float(x) for x in out["data"][:width])
    return sorted(answer["probabilities"][0].values())


def check(url: str, body: Body, expected: list[float] | None) -> list[float] | None:
    """One request: it answers 200, and (one-row JSON) the probabilities match ``expected``."""
    status, raw = http("POST", url, body.read(), timeout=60, headers=_headers(body))
    if status != 200:
        raise BenchError(f"{url} answered {status} to {body.path.name}: {raw[:500]!r}")
    if body.kind == "v2-binary" or body.rows != 1 or url.endswith("/noop"):
        return None
    got = probabilities(raw)
    if expected is not None and (
        len(got) != len(expected)
        or any(abs(a - b) > 1e-4 for a, b in zip(got, expected, strict=True))
    ):
        raise BenchError(f"{url} disagrees with the plain app: {got} vs {expected}")
    return got


def _headers(body: Body) -> dict[str, str]:
    return {"Content-Type": body.content_type, **body.headers}


# -- the run -----------------------------------------------------------------------------------


@dataclass
class Target:
    """A running server and how to reach each model on it."""

    key: str  # kiln, kiln-batching-off, plain, or a peer
    label: str
    server: Server
    url: Callable[[str, Body], str]  # (model key or "noop", body) -> URL


def kiln_target(key: str, label: str, server: Server, base: str) -> Target:
    names = {k: yaml_name(MODELS[k]) for k in MODELS}

    def url(model: str, body: Body) -> str:
        if model == "noop":
            return f"{base}/v1/noop"
        if body.kind == "records":
            return f"{base}/v1/models/{names[model]}/predict"
        return f"{base}/v2/models/{names[model]}/infer"

    return Target(key, label, server, url)


def plain_target(server: Server, base: str, key: str = "plain") -> Target:
    names = {k: yaml_name(MODELS[k]) for k in MODELS}

    def url(model: str, _: Body) -> str:
        return f"{base}/noop" if model == "noop" else f"{base}/predict/{names[model]}"

    return Target(key, server.name, server, url)


Plan = list[tuple[Target, str, str, int]]  # (target, model, body key, concurrency)


def run_plan(
    run: Run,
    plan: Plan,
    bodies: dict[str, dict[str, Body]],
    expected: dict[str, list[float]],
    args: argparse.Namespace,
) -> None:
    """Measure each step of ``plan`` in order (each answer checked first)."""
    for target, model, body_key, concurrency in plan:
        body = bodies["lr" if model == "noop" else model][body_key]
        url = target.url(model, body)
        check(url, body, expected.get(model))
        who = (target.key, target.label)
        run.results.append(measure(who, target.server, url, model, body, concurrency, args))


def main_plan(plain: Target, kiln: Target, sweep: list[int], bulk: int) -> Plan:
    """Kiln and the plain app side by side: each of Kiln's runs right after the plain app's
    run of the same workload, so that drift in the machine's speed (a shared VM) hits both.
    The pairs the ratio targets compare (one-row logistic regression and forest at the focus
    concurrency) run twice, plain-Kiln-Kiln-plain; the report counts the better run of each."""
    focus = 64 if 64 in sweep else max(sweep)
    plan: Plan = []
    for c in sweep:
        for model in ("lr", "noop", "forest", "heavy"):
            if model in ("lr", "noop") or c == focus:
                plan.append((plain, model, "records-1", c))
            plan.append((kiln, model, "records-1", c))
            if c == focus and model in ("lr", "forest"):  # the ratio targets: again, reversed;
                plan.append((kiln, model, "records-1", c))  # the better run of each counts
                plan.append((plain, model, "records-1", c))
            if model == "lr" and c in (1, 16, focus):  # V2 REST against /v1, same rows
                plan.append((kiln, model, "v2-fp32-1", c))
                plan.append((kiln, model, "v2-binary-1", c))
    for model in ("lr", "forest"):
        plan.append((plain, model, f"records-{bulk}", 4))
        plan.append((kiln, model, f"records-{bulk}", 4))
        plan.append((kiln, model, f"v2-binary-{bulk}", 4))
    return plan


TWO_WORKERS = 2


def two_workers(
    run: Run,
    home: Path,
    scratch: Path,
    dirs: dict[str, Path],
    bodies: dict[str, dict[str, Body]],
    expected: dict[str, list[float]],
    extra: dict[str, str],
    args: argparse.Namespace,
) -> None:
    """Kiln and the plain app with two worker processes each, one row at the focus
    concurrency: each at its better setting counts for the targets. One event loop is a
    core at most: with the load generator on the other core, two loops share the two."""
    focus = 64 if 64 in args.concurrency else max(args.concurrency)
    env = {**extra, "KILN_SERVE_WORKERS": str(TWO_WORKERS)}
    plain_server_, plain_url = plain_server(scratch, [dirs[k] for k in MODELS], TWO_WORKERS)
    kiln_server_, kiln_url = kiln_server(home, f"Kiln, {TWO_WORKERS} workers", env)
    with contextlib.ExitStack() as stack:
        stack.enter_context(started(run, plain_server_, "plain-2w", args.idle_seconds))
        stack.enter_context(started(run, kiln_server_, "kiln-2w", args.idle_seconds))
        plain = plain_target(plain_server_, plain_url, "plain-2w")
        kiln = kiln_target("kiln-2w", kiln_server_.name, kiln_server_, kiln_url)
        plan: Plan = []
        for model in ("lr", "forest"):
            plan += [(plain, model, "records-1", focus), (kiln, model, "records-1", focus)]
        plan.append((kiln, "noop", "records-1", focus))
        run_plan(run, plan, bodies, expected, args)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _terminate)
    if shutil.which(args.tool) is None:
        print(f"error: {args.tool} is not installed (apt-get install {args.tool})", file=sys.stderr)
        return 2
    for exe in ("kiln", "bentoml", "uvicorn"):
        if not (BIN / exe).exists():
            print(f"error: no {BIN / exe}: run with .venv/bin/python", file=sys.stderr)
            return 2
    env = report.environment(args)
    run = Run()
    sweep = args.concurrency
    bulk = args.bulk_rows
    scratch = Path(os.environ.get("TMPDIR", "/tmp")) / f"kiln-bench-{os.getpid()}"
    scratch.mkdir(parents=True, exist_ok=True)
    try:
        home = STORE_ROOT / store_key()
        home.mkdir(parents=True, exist_ok=True)
        dirs = train_all(home)
        bodies = {
            k: bodies_for(MODELS[k], dirs[k], k, scratch, bulk) for k in MODELS
        }  # fmt: skip
        print("in-process limits (ONNX Runtime, one thread)", flush=True)
        for key in MODELS:
            run.limits[key] = limits.limits(dirs[key], bulk, args.limit_seconds)
            print(f"  {key}: {run.limits[key]}", flush=True)

        # Cold start and idle memory as `make serve` has them: Kiln over the demo models.
        demo = json.dumps([yaml_name(REPO / "training" / "specs" / s) for s in DEMO_SERVED])
        for attempt in range(1, args.cold_starts + 1):
            label = f"Kiln, demo models (start {attempt})"
            server, _ = kiln_server(home, label, {"KILN_SERVE_MODELS": demo})
            with started(run, server, "kiln-demo", args.idle_seconds):
                pass

        # The plain app gives the answers every other server must give; Kiln's runs alternate
        # with its runs.
        expected: dict[str, list[float]] = {}
        names = {k: yaml_name(MODELS[k]) for k in MODELS}
        extra = dict(e.split("=", 1) for e in args.kiln_env)
        plain_server_, plain_url = plain_server(scratch, [dirs[k] for k in MODELS])
        kiln_server_, kiln_url = kiln_server(home, "Kiln", extra)
        with contextlib.ExitStack() as stack:
            stack.enter_context(started(run, plain_server_, "plain", args.idle_seconds))
            for key in MODELS:
                got = check(f"{plain_url}/predict/{names[key]}", bodies[key]["records-1"], None)
                assert got is not None
                expected[key] = got
            stack.enter_context(started(run, kiln_server_, "kiln", args.idle_seconds))
            plain = plain_target(plain_server_, plain_url)
            kiln = kiln_target("kiln", "Kiln", kiln_server_, kiln_url)
            run_plan(run, main_plan(plain, kiln, sweep, bulk), bodies, expected, args)
            if args.profile:
                url = kiln.url("lr", bodies["lr"]["records-1"])
                profile(kiln_server_, url, bodies["lr"]["records-1"], args.profile,
                        args.profile_seconds, 64, args.tool)  # fmt: skip

        if args.two_workers:
            two_workers(run, home, scratch, dirs, bodies, expected, extra, args)

        off_server, off_url = kiln_server(home, "Kiln, batching off", {**extra, **BATCHING_OFF})
        with started(run, off_server, "kiln-batching-off", args.idle_seconds):
            off = kiln_target("kiln-batching-off", "Kiln, batching off", off_server, off_url)
            off_plan: Plan = [(off, "heavy", "records-1", c) for c in sweep]
            off_plan.append((off, "lr", "records-1", 64 if 64 in sweep else max(sweep)))
            run_plan(run, off_plan, bodies, expected, args)

        for peer in args.peers:
            kind = peer_body(peer)  # its natural request: records, or one V2 tensor
            one, many = f"{kind}-1", f"{kind}-{bulk}"
            focus = 64 if 64 in sweep else max(sweep)
            plans = {
                "lr": [(one, c) for c in (sweep if peer in PEER_SWEEP else [focus])],
                "forest": [(one, focus)] + ([(many, 4)] if peer in PEER_BULK else []),
            }
            if args.quick:  # a smoke test: one model per peer
                del plans["forest"]
            for model, plan in plans.items():
                pickle = peer_model(MODELS[model], dirs[model])
                server, url, path = peer_server(peer, scratch, names[model], pickle, dirs[model])
                with started(run, server, peer, args.idle_seconds):
                    for body_key, concurrency in plan:
                        body = bodies[model][body_key]
                        check(url + path, body, expected[model])
                        who = (peer, peer_label(peer))
                        run.results.append(
                            measure(who, server, url + path, model, body, concurrency, args)
                        )
    except (BenchError, ServerError, LoadError, WorkloadError, ProfileError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

    if args.overload_seconds > 0:
        try:
            run.overload = overload(args)
        except BenchError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
    checks = report.targets(run, args)
    text = report.markdown(env, run, checks, args)
    print("\n" + report.targets_table(checks))
    if args.results:
        report.write_results(args.results, text)
        report.chart(run, args.chart)
        print(f"wrote {args.results} and {args.chart}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        document = {
            "environment": env,
            "results": [asdict(r) for r in run.results],
            "starts": [asdict(s) for s in run.starts],
            "limits": run.limits,
            "overload": run.overload,
            "targets": [asdict(c) for c in checks],
        }
        args.json.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    if args.check and not all(c.met for c in checks if c.met is not None):
        print("--check: a target is not met (see above)", file=sys.stderr)
        return 1
    return 0


def overload(args: argparse.Namespace) -> dict[str, Any]:
    """bench/overload.py's run (capacity with 1,000-row requests, then four times its
    clients), for the report's table and its target."""
    out = REPO / "build" / "bench-overload.json"
    out.unlink(missing_ok=True)
    argv = [sys.executable, str(BENCH_DIR / "overload.py"), "--seconds",
            str(args.overload_seconds), "--json", str(out)]  # fmt: skip
    for item in args.kiln_env:
        argv += ["--kiln-env", item]
    print("overload (bench/overload.py)", flush=True)
    done = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=1800, check=False)
    print(done.stdout.strip(), flush=True)
    if not out.exists():  # exit 1 only says a ratio is under its goal: the report says which
        raise BenchError(f"bench/overload.py failed ({done.returncode}):\n{done.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(out.read_text(encoding="utf-8"))
    return result


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=int, default=20, help="seconds per load run (20)")
    parser.add_argument("--warmup", type=int, default=3, help="unmeasured seconds first (3)")
    parser.add_argument(
        "--concurrency", type=int, nargs="+", default=[1, 16, 64, 256],
        help="connections of the one-row sweep (1 16 64 256)",
    )  # fmt: skip
    parser.add_argument("--bulk-rows", type=int, default=1000, help="rows of a bulk request")
    parser.add_argument("--quick", action="store_true", help="make bench-quick: 2 s runs, c=64")
    parser.add_argument("--check", action="store_true", help="exit 1 when a target is not met")
    parser.add_argument("--tool", choices=("wrk", "hey"), default="wrk", help="load generator")
    parser.add_argument("--threads", type=int, default=2, help="wrk threads (2)")
    parser.add_argument(
        "--kiln-env", action="append", default=[], metavar="NAME=VALUE",
        help="extra settings for every Kiln server (repeatable), e.g. KILN_SERVE_WORKERS=2",
    )  # fmt: skip
    parser.add_argument(
        "--peers", nargs="+", choices=(*PEERS, "all", "none"), default=None,
        help="peers to measure (default: every peer whose venv exists under "
        "build/bench-venvs/; bench/peers/setup.sh builds them)",
    )  # fmt: skip
    parser.add_argument(
        "--quiet-wait",
        type=float,
        default=30,
        help="wait up to this long for other work to stop before a run (30 s)",
    )
    parser.add_argument("--quiet-cores", type=float, default=0.15)
    parser.add_argument(
        "--disturbed-cores",
        type=float,
        default=0.2,
        help="a run with more other work or steal time than this (cores) is measured again (0.2)",
    )
    parser.add_argument("--retries", type=int, default=1, help="re-measurements per run (1)")
    parser.add_argument(
        "--limit-seconds", type=float, default=3.0, help="seconds per in-process limit (3)"
    )
    parser.add_argument(
        "--idle-seconds", type=float, default=2.0,
        help="after a server is ready, wait this long before reading its idle memory (2)",
    )  # fmt: skip
    parser.add_argument(
        "--cold-starts",
        type=int,
        default=3,
        help="starts of Kiln over the demo models, for the cold-start figure (3)",
    )
    parser.add_argument(
        "--overload-seconds", type=int, default=10,
        help="seconds per run of bench/overload.py (10; 0: skip it)",
    )  # fmt: skip
    parser.add_argument(
        "--no-two-workers", dest="two_workers", action="store_false",
        help="skip Kiln and the plain app with two worker processes each",
    )  # fmt: skip
    parser.add_argument("--profile", type=Path, help="py-spy Kiln's worker into this folder")
    parser.add_argument("--profile-seconds", type=int, default=10)
    parser.add_argument(
        "--results",
        type=Path,
        default=BENCH_DIR / "RESULTS.md",
        help="the report to write (bench/RESULTS.md; 'none': don't)",
    )
    parser.add_argument("--chart", type=Path, default=BENCH_DIR / "results.png")
    parser.add_argument("--json", type=Path, default=BENCH_DIR / "runs" / "latest.json")
    args = parser.parse_args(argv)
    for item in args.kiln_env:
        if "=" not in item:
            parser.error(f"--kiln-env takes NAME=VALUE, got {item!r}")
    if args.quick:
        args.duration, args.warmup, args.retries, args.quiet_wait = 2, 1, 0, 0
        args.concurrency, args.limit_seconds, args.profile_seconds = [64], 0.3, 3
        args.idle_seconds, args.cold_starts = 0.5, 1
        args.overload_seconds = min(args.overload_seconds, 3)  # hey needs ~100 answers for a p99
        args.two_workers = False
        if args.results == BENCH_DIR / "RESULTS.md":  # a smoke test never overwrites the report
            args.results = None
        if args.json == BENCH_DIR / "runs" / "latest.json":
            args.json = BENCH_DIR / "runs" / "quick.json"
    if args.results is not None and str(args.results) == "none":
        args.results = None
    if args.quick and args.peers is None:  # one setting of each peer: under 3 minutes
        args.peers = [p for p in QUICK_PEERS if peer_python(p).exists()]
    args.peers = select_peers(args.peers)
    return args


QUICK_PEERS = ("fastapi-sklearn", "mlserver-batching", "triton")
"""The peers of ``--quick`` unless named: each family's best setting in full runs."""


def select_peers(asked: list[str] | None) -> list[str]:
    """The peers to measure: named ones must have their venv; by default every one that has."""
    if asked is None or "all" in asked:
        found = [p for p in PEERS if peer_python(p).exists()]
        for peer in PEERS:
            if peer not in found:
                print(f"warning: no venv for peer {peer} (bench/peers/setup.sh): skipped")
        return found
    if "none" in asked:
        return []
    for peer in asked:
        if not peer_python(peer).exists():
            raise SystemExit(f"error: no {peer_python(peer)}: run bench/peers/setup.sh first")
    return list(dict.fromkeys(asked))


def _terminate(signum: int, _: FrameType | None) -> None:
    print(f"signal {signum}: stopping the servers", file=sys.stderr, flush=True)
    raise SystemExit(128 + signum)  # unwinds through the finally blocks that stop servers


if __name__ == "__main__":
    sys.exit(main())
