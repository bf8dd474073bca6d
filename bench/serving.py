"""Serving benchmark: Kiln against a plain FastAPI + ONNX Runtime app, on the same machine.

One run trains the demo model into a temporary ``BENTOML_HOME``, starts the plain reference
app (``bench/plain_fastapi_ort.py`` under uvicorn) and a fresh Kiln (``bentoml serve``) for
each of its targets, all on 127.0.0.1 only, and loads each target in turn with wrk (or hey)
at a fixed concurrency, every request carrying the same one-row body. Per target it records
requests per second, p50 and p99 latency, errors, the server's CPU seconds per 1000
requests, its resident memory after the run, and the CPU that other processes used
meanwhile (a disturbed run is measured again). The servers are stopped at the end, whatever
happened. With ``--peers`` (default: every peer whose venv exists) it also measures the
services a user would otherwise pick (bench/peers/: FastAPI or BentoML over the pickled
scikit-learn pipeline, Seldon MLServer with and without adaptive batching)::

    .venv/bin/python bench/serving.py                      # 20 s per target, 64 connections
    .venv/bin/python bench/serving.py --quick              # 3 s per target: a smoke test
    .venv/bin/python bench/serving.py --workers 1 2 --profile bench/profile \\
        --json bench/runs/main.json             # the main run of bench/RESULTS.md

The load generator runs on the same cores as the servers: the figures are for this machine
as a whole, not for the server alone. See bench/README.md.
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import json
import os
import platform
import re
import resource
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from importlib import metadata as importlib_metadata
from pathlib import Path
from types import FrameType
from typing import Any, TextIO

import psutil

REPO = Path(__file__).resolve().parent.parent
BENCH = REPO / "bench"
BIN = Path(sys.executable).parent  # .venv/bin when run as .venv/bin/python
LUA_SCRIPT = BENCH / "post_body.lua"
VERSIONED = ("bentoml", "onnxruntime", "fastapi", "uvicorn", "starlette", "orjson", "numpy")
TRAIN_TIMEOUT_S = 600
READY_TIMEOUT_S = 180
STOP_TIMEOUT_S = 20
PEER_VENVS = REPO / "build" / "bench-venvs"
PEER_MODELS = REPO / "build" / "bench-models"
# The peers a user would otherwise pick (bench/peers/): name -> the venv it runs in.
PEERS = {
    "fastapi-sklearn": "fastapi-sklearn",
    "bentoml-sklearn": "bentoml-sklearn",
    "mlserver": "mlserver",
    "mlserver-batching": "mlserver",
}
MLSERVER_BATCHING = {"max_batch_size": 16, "max_batch_time": 0.002}  # seconds


class BenchError(RuntimeError):
    """A step of the benchmark failed; the message says which and why."""


# -- servers ---------------------------------------------------------------------------------


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def http(
    method: str, url: str, body: bytes | None = None, timeout: float = 5.0
) -> tuple[int, bytes]:
    """One request: (status, body); a connection failure raises OSError."""
    request = urllib.request.Request(url, data=body, method=method)
    if body is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return int(response.status), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


class Server:
    """A server process (and its children) started in its own session, stopped as a group."""

    def __init__(
        self, name: str, argv: list[str], env: dict[str, str], log_path: Path, ready_url: str
    ) -> None:
        self.name = name
        self.argv = argv
        self.env = env
        self.log_path = log_path
        self.ready_url = ready_url
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: TextIO | None = None

    def start(self) -> None:
        self._log = self.log_path.open("w", encoding="utf-8")
        self.proc = subprocess.Popen(
            self.argv,
            cwd=REPO,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def wait_ready(self, timeout: float = READY_TIMEOUT_S) -> float:
        """Poll ``ready_url`` until it answers 200; return the seconds it took."""
        assert self.proc is not None
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            if self.proc.poll() is not None:
                raise BenchError(
                    f"{self.name} exited with {self.proc.returncode} before it was ready:\n"
                    + self.log_tail()
                )
            with contextlib.suppress(OSError):
                if http("GET", self.ready_url, timeout=2)[0] == 200:
                    return time.monotonic() - started
            time.sleep(0.25)
        raise BenchError(f"{self.name} not ready after {timeout:.0f} s:\n{self.log_tail()}")

    def processes(self) -> list[psutil.Process]:
        """The server process and all its descendants (BentoML: arbiter and workers)."""
        if self.proc is None or self.proc.poll() is not None:
            return []
        try:
            root = psutil.Process(self.proc.pid)
            return [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def cpu_seconds(self) -> float:
        """User + system CPU seconds used so far by the live processes of the tree."""
        total = 0.0
        for proc in self.processes():
            with contextlib.suppress(psutil.NoSuchProcess):
                times = proc.cpu_times()
                total += times.user + times.system
        return total

    def memory(self) -> dict[str, int]:
        """Resident bytes per process of the tree, by ``pid name``."""
        sizes: dict[str, int] = {}
        for proc in self.processes():
            with contextlib.suppress(psutil.NoSuchProcess):
                sizes[f"{proc.pid} {_role(proc)}"] = int(proc.memory_info().rss)
        return sizes

    def listening(self) -> list[str]:
        """Addresses the tree listens on (TCP), as ``host:port``."""
        found: set[str] = set()
        for proc in self.processes():
            with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
                for conn in proc.net_connections(kind="inet"):
                    if conn.status == psutil.CONN_LISTEN:
                        found.add(f"{conn.laddr.ip}:{conn.laddr.port}")
        return sorted(found)

    def worker_pids(self) -> list[int]:
        """The BentoML worker processes (the ones that serve requests); else the root."""
        procs = self.processes()
        workers = [p.pid for p in procs if "_bentoml_impl.worker" in " ".join(_cmdline(p))]
        return workers or [p.pid for p in procs[:1]]

    def stop(self) -> None:
        """SIGTERM to the group, SIGKILL after ``STOP_TIMEOUT_S``; idempotent."""
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=5)
        if self.proc is not None:  # the session may outlive its leader: reap the stragglers
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, signal.SIGKILL)
        if self._log is not None:
            self._log.close()
            self._log = None


def _cmdline(proc: psutil.Process) -> list[str]:
    try:
        return proc.cmdline()
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return []


def _role(proc: psutil.Process) -> str:
    line = " ".join(_cmdline(proc))
    if "_bentoml_impl.worker" in line:
        return "bentoml-worker"
    if "bentoml serve" in line:
        return "bentoml-arbiter"
    if "uvicorn" in line:
        return "uvicorn"
    if "mlserver" in line:
        return "mlserver"
    return proc.name()


# -- load generators ---------------------------------------------------------------------------


@dataclass
class Load:
    """What one load-generator run measured."""

    tool: str
    requests: int
    seconds: float
    rps: float
    p50_ms: float
    p99_ms: float
    non_2xx: int
    socket_errors: int
    output: str = field(repr=False)

    @property
    def errors(self) -> int:
        return self.non_2xx + self.socket_errors


_UNIT_MS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3, "h": 3600e3}


def _ms(value: str, unit: str) -> float:
    return float(value) * _UNIT_MS[unit]


def _search(pattern: str, text: str, what: str) -> re.Match[str]:
    match = re.search(pattern, text, re.MULTILINE)
    if match is None:
        raise BenchError(f"cannot find {what} in the load generator's output:\n{text}")
    return match


def parse_wrk(output: str) -> Load:
    """Parse ``wrk --latency`` output."""
    done = _search(r"(\d+) requests in ([\d.]+)(us|ms|s|m|h)", output, "the request count")
    percentiles = {
        p: _ms(v, u)
        for p, v, u in re.findall(r"^\s+(\d+)%\s+([\d.]+)(us|ms|s|m|h)\s*$", output, re.M)
    }
    if "50" not in percentiles or "99" not in percentiles:
        raise BenchError(f"no latency distribution in wrk's output (--latency?):\n{output}")
    socket_errors = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output
    )
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    return Load(
        tool="wrk",
        requests=int(done.group(1)),
        seconds=_ms(done.group(2), done.group(3)) / 1e3,
        rps=float(_search(r"Requests/sec:\s+([\d.]+)", output, "Requests/sec").group(1)),
        p50_ms=percentiles["50"],
        p99_ms=percentiles["99"],
        non_2xx=int(non_2xx.group(1)) if non_2xx else 0,
        socket_errors=sum(map(int, socket_errors.groups())) if socket_errors else 0,
        output=output,
    )


def parse_hey(output: str) -> Load:
    """Parse hey's default summary."""
    statuses = [
        (int(c), int(n)) for c, n in re.findall(r"^\s+\[(\d{3})\]\s+(\d+) responses", output, re.M)
    ]
    errors_block = (
        output.split("Error distribution:", 1)[1] if "Error distribution:" in output else ""
    )
    socket_errors = sum(int(n) for n in re.findall(r"^\s+\[(\d+)\]\s", errors_block, re.M))
    percentiles = {
        p: float(v) * 1e3 for p, v in re.findall(r"^\s+(\d+)% in ([\d.]+) secs", output, re.M)
    }
    if "50" not in percentiles or "99" not in percentiles:
        raise BenchError(f"no latency distribution in hey's output:\n{output}")
    return Load(
        tool="hey",
        requests=sum(n for _, n in statuses) + socket_errors,
        seconds=float(_search(r"Total:\s+([\d.]+) secs", output, "Total").group(1)),
        rps=float(_search(r"Requests/sec:\s+([\d.]+)", output, "Requests/sec").group(1)),
        p50_ms=percentiles["50"],
        p99_ms=percentiles["99"],
        non_2xx=sum(n for code, n in statuses if not 200 <= code < 300),
        socket_errors=socket_errors,
        output=output,
    )


def load_argv(
    tool: str, url: str, body: Path, seconds: int, concurrency: int, threads: int
) -> list[str]:
    """The command line of one load run."""
    if tool == "wrk":
        return [
            "wrk", "-s", str(LUA_SCRIPT), f"-t{threads}", f"-c{concurrency}", f"-d{seconds}s",
            "--timeout", "10s", "--latency", url,
        ]  # fmt: skip
    return [
        "hey", "-c", str(concurrency), "-z", f"{seconds}s", "-m", "POST",
        "-T", "application/json", "-D", str(body), "-t", "10", url,
    ]  # fmt: skip


def run_load(
    tool: str, url: str, body: Path, seconds: int, concurrency: int, threads: int
) -> tuple[Load, float]:
    """Run the load generator: (its measurement, the CPU seconds it used itself)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    try:
        done = subprocess.run(
            load_argv(tool, url, body, seconds, concurrency, threads),
            env={**os.environ, "WRK_BODY_FILE": str(body)},
            capture_output=True,
            text=True,
            timeout=seconds + 60,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise BenchError(f"{tool} did not finish within {seconds + 60} s on {url}") from None
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise BenchError(f"{tool} failed ({done.returncode}) on {url}:\n{done.stderr}{done.stdout}")
    used = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    parse = parse_wrk if tool == "wrk" else parse_hey
    return parse(done.stdout), used


# -- targets and measurements ---------------------------------------------------------------------


@dataclass
class Target:
    label: str
    server: str  # "kiln", "plain" or a peer's name
    path: str
    workers: int | None = None  # Kiln's KILN_SERVE_WORKERS; None for the plain app


@dataclass
class Result:
    target: str
    server: str
    path: str
    workers: int | None
    tool: str
    seconds: float
    requests: int
    rps: float
    p50_ms: float
    p99_ms: float
    non_2xx: int
    socket_errors: int
    errors: int
    cpu_s_per_1k: float
    server_cores: float
    loadgen_cores: float
    other_cores: float  # CPU used by anything else on the machine during the run
    steal_cores: float  # CPU the hypervisor took (virtual machines)
    quiet_wait_s: float  # how long the run waited for the machine to be quiet first
    rss_mb: float
    rss_by_process_mb: dict[str, float]
    attempt: int = 1  # which run of the target this is (runs disturbed by other work are redone)


def machine_cpu() -> tuple[float, float]:
    """(busy, steal) CPU seconds of the whole machine since boot, all cores together."""
    t = psutil.cpu_times()
    busy = t.user + t.nice + t.system  # irq/softirq left out: mostly our own loopback traffic
    return busy, getattr(t, "steal", 0.0)


def wait_quiet(server: Server, threshold: float, limit: float) -> float:
    """Wait until the rest of the machine uses under ``threshold`` cores (at most ``limit``
    seconds); return the seconds waited. Other work on a shared machine skews every figure."""
    started = time.monotonic()
    while True:
        busy, _ = machine_cpu()
        own = server.cpu_seconds()
        time.sleep(2)
        others = (machine_cpu()[0] - busy - (server.cpu_seconds() - own)) / 2
        waited = time.monotonic() - started
        if others < threshold:
            return waited
        if waited >= limit:
            print(f"  the machine is still busy ({others:.2f} cores elsewhere): measuring anyway")
            return waited


def measure(
    target: Target, server: Server, base_url: str, body: Path, args: argparse.Namespace
) -> Result:
    """Warm up, then one measured load run with the server's CPU and memory around it."""
    url = base_url + target.path
    quiet = wait_quiet(server, args.quiet_cores, args.quiet_wait) if args.quiet_wait > 0 else 0.0
    if args.warmup > 0:
        run_load(args.tool, url, body, args.warmup, args.concurrency, args.threads)
    cpu_before = server.cpu_seconds()
    busy_before, steal_before = machine_cpu()
    load, loadgen_cpu = run_load(
        args.tool, url, body, args.duration, args.concurrency, args.threads
    )
    busy_after, steal_after = machine_cpu()
    cpu = server.cpu_seconds() - cpu_before
    others = max(0.0, busy_after - busy_before - cpu - loadgen_cpu)
    memory = server.memory()
    ok = max(load.requests, 1)
    result = Result(
        target=target.label,
        server=target.server,
        path=target.path,
        workers=target.workers,
        tool=load.tool,
        seconds=round(load.seconds, 2),
        requests=load.requests,
        rps=round(load.rps, 1),
        p50_ms=round(load.p50_ms, 2),
        p99_ms=round(load.p99_ms, 2),
        non_2xx=load.non_2xx,
        socket_errors=load.socket_errors,
        errors=load.errors,
        cpu_s_per_1k=round(cpu / ok * 1000, 3),
        server_cores=round(cpu / load.seconds, 2),
        loadgen_cores=round(loadgen_cpu / load.seconds, 2),
        other_cores=round(others / load.seconds, 2),
        steal_cores=round((steal_after - steal_before) / load.seconds, 2),
        quiet_wait_s=round(quiet, 1),
        rss_mb=round(sum(memory.values()) / 2**20, 1),
        rss_by_process_mb={k: round(v / 2**20, 1) for k, v in memory.items()},
    )
    print(
        f"  {target.label:<48} {result.rps:>8.1f} req/s  p50 {result.p50_ms:>7.2f} ms  "
        f"p99 {result.p99_ms:>7.2f} ms  errors {result.errors}  "
        f"cpu {result.cpu_s_per_1k:.3f} s/1k  rss {result.rss_mb:.0f} MB  "
        f"other {result.other_cores:.2f} cores",
        flush=True,
    )
    return result


def _snake(name: str) -> str:
    """Column names as Kiln's trainer writes them for scikit-learn's bundled data."""
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")


def one_row_body(spec_path: Path, model_dir: Path) -> dict[str, Any]:
    """``{"instances": [first row]}`` of the spec's bundled data, with the model's features."""
    import sklearn.datasets
    import yaml

    from kiln.artifact import FeatureKind, read_metadata

    spec = yaml.safe_load(spec_path.read_text(encoding="utf-8"))
    dataset = (spec.get("data") or {}).get("sklearn")
    if not dataset:
        raise BenchError(f"{spec_path}: the benchmark needs a spec on bundled data (data.sklearn)")
    frame = getattr(sklearn.datasets, f"load_{dataset}")(as_frame=True).frame.rename(columns=_snake)
    row = frame.iloc[0]
    instance: dict[str, Any] = {}
    for feature in read_metadata(model_dir).features:
        if feature.name not in row.index:
            raise BenchError(f"feature {feature.name!r} is not a column of {dataset}")
        value = row[feature.name]
        instance[feature.name] = float(value) if feature.kind is FeatureKind.numeric else str(value)
    return {"instances": [instance]}


def train(spec: Path, home: Path) -> Path:
    """Train ``spec`` into the store at ``home``; return the new version's directory."""
    env = {**os.environ, "BENTOML_HOME": str(home), "KILN_TRAIN_PROGRESS": "false"}
    try:
        done = subprocess.run(
            [str(BIN / "kiln"), "train", str(spec)],
            cwd=REPO, env=env, capture_output=True, text=True, timeout=TRAIN_TIMEOUT_S, check=False,
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        raise BenchError(f"kiln train {spec} did not finish in {TRAIN_TIMEOUT_S} s") from None
    if done.returncode != 0:
        raise BenchError(
            f"kiln train {spec} exited with {done.returncode}:\n{done.stdout}{done.stderr}"
        )
    name = yaml_name(spec)
    version = (home / "models" / name / "latest").read_text(encoding="utf-8").strip()
    return home / "models" / name / version


def yaml_name(spec: Path) -> str:
    import yaml

    return str(yaml.safe_load(spec.read_text(encoding="utf-8"))["name"])


def check_answers(kiln_url: str, plain_url: str, model: str, body: bytes) -> dict[str, Any]:
    """Each target answers 200 with the expected body; Kiln and the plain app agree."""
    answers = {}
    for label, url in (
        ("kiln", f"{kiln_url}/v1/models/{model}/predict"),
        ("plain", f"{plain_url}/predict"),
    ):
        status, raw = http("POST", url, body)
        if status != 200:
            raise BenchError(f"{url} answered {status}: {raw[:500]!r}")
        answers[label] = json.loads(raw)
    kiln, plain = answers["kiln"], answers["plain"]
    if kiln["predictions"] != plain["predictions"]:
        raise BenchError(f"Kiln and the plain app disagree: {kiln} vs {plain}")
    for url in (f"{kiln_url}/v1/noop", f"{plain_url}/noop"):
        status, raw = http("POST", url, body)
        if status != 200 or json.loads(raw) != {"ok": True}:
            raise BenchError(f"{url} answered {status}: {raw[:500]!r}")
    return kiln


# -- profile -------------------------------------------------------------------------------------


def _short(path: str) -> str:
    """A frame's file, relative to site-packages, the standard library or the repository."""
    for marker in ("/site-packages/", f"/python{sys.version_info.major}.{sys.version_info.minor}/"):
        if marker in path:
            return path.split(marker, 1)[1]
    repo = f"{REPO}/"
    return path[len(repo) :] if path.startswith(repo) else path


def _library(short: str) -> str:
    """Who a frame belongs to: a package, a standard-library module, or Kiln's own code."""
    head = short.split("/", 1)[0]
    if head in ("service", "kiln"):
        return f"Kiln {short}"
    if head == "_bentoml_impl":
        return "bentoml"
    if head.startswith("<frozen"):
        return "stdlib (frozen)"
    return head.removesuffix(".py")


_IDLE = (  # leaf frames of threads that wait (py-spy counts them when it pauses the process)
    ("Condition.wait", "threading.py"),
    ("Event.wait", "threading.py"),
    ("_worker", "concurrent/futures/thread.py"),
    ("EpollSelector.select", "selectors.py"),
    ("Thread._wait_for_tstate_lock", "threading.py"),
)


_LAYERS = (  # (layer, needle in "function (file)"): a sample is charged to the layer of its
    # innermost frame that matches; unmatched frames (numpy, logging, asyncio...) are charged
    # to the nearest matching caller, so numpy under Kiln's checks counts as Kiln.
    ("ONNX Runtime (Session.run)", "Session.run ("),
    ("Kiln: records codec (service/codecs/records.py)", "service/codecs/records.py"),
    ("Kiln: data plane checks and metrics (service/dataplane.py)", "service/dataplane.py"),
    ("Kiln: batcher (service/batching.py)", "service/batching.py"),
    ("Kiln: routes and body reading (service/app.py)", "service/app.py"),
    ("Kiln: ONNX Runtime wrapper (service/runtime.py)", "service/runtime.py"),
    ("reference app (bench/plain_fastapi_ort.py)", "plain_fastapi_ort.py"),
    ("Prometheus client (Kiln's and BentoML's metrics)", "prometheus_client/"),
    ("OpenTelemetry (BentoML's tracing middleware)", "opentelemetry/"),
    ("BentoML access log middleware", "bentoml/_internal/server/http/access.py"),
    ("BentoML request metrics middleware", "bentoml/_internal/server/http/instruments.py"),
    ("BentoML timeout middleware", "bentoml/_internal/server/http/traffic.py"),
    ("BentoML logging filters", "bentoml/_internal/log.py"),
    ("BentoML context and app", "bentoml"),
    ("FastAPI and Starlette (routing, middleware, responses)", "fastapi/"),
    ("FastAPI and Starlette (routing, middleware, responses)", "starlette/"),
    ("uvicorn and h11 (HTTP/1.1 protocol)", "uvicorn/"),
    ("uvicorn and h11 (HTTP/1.1 protocol)", "h11/"),
)
_LOOP = "asyncio event loop and sockets (no handler frame)"


def _layer(frames: list[str]) -> str:
    for frame in reversed(frames):
        for layer, needle in _LAYERS:
            if needle in frame:
                return layer
    return _LOOP


def summarise_profile(raw: Path, top: int = 25) -> str:
    """Markdown summary of a py-spy ``--format raw --full-filenames`` file (collapsed stacks)."""
    idle = busy = 0
    by_library: Counter[str] = Counter()
    by_layer: Counter[str] = Counter()
    self_time: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    for line in raw.read_text(encoding="utf-8", errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = []
        for frame in stack.split(";"):
            match = re.fullmatch(r"(.*) \((.*?)(?::\d+)?\)", frame.strip())
            if match:
                frames.append((match.group(1), _short(match.group(2))))
        if not frames:
            continue
        function, short = frames[-1]
        if (function, short) in _IDLE:
            idle += count
            continue
        busy += count
        by_library[_library(short)] += count
        by_layer[_layer([f"{function} ({short})" for function, short in frames])] += count
        self_time[f"{function} ({short})"] += count
        for name in {f"{function} ({short})" for function, short in frames}:
            inclusive[name] += count
    if not busy:
        return "no samples recorded\n"

    def table(title: str, counter: Counter[str], rows: int, code: bool = True) -> list[str]:
        fmt = "`{}`" if code else "{}"
        out = ["", f"| {title} | share |", "|---|---:|"]
        out += [
            f"| {fmt.format(k)} | {100 * n / busy:.1f}% |" for k, n in counter.most_common(rows)
        ]
        return out

    lines = [
        f"{busy} samples of running Python threads ({idle} more of threads waiting in "
        "queues, conditions or epoll are left out); shares are of the running samples. "
        "ONNX Runtime's native time shows under `Session.run`; garbage collection is "
        "charged to whatever function allocated when it started."
    ]
    lines += table("time by layer (innermost layer on the stack)", by_layer, 30, code=False)
    lines += table("self time by library (leaf frame)", by_library, 20, code=False)
    lines += table("self time by function", self_time, top)
    lines += table("inclusive time by function", inclusive, 2 * top)
    return "\n".join(lines) + "\n"


def profile(server: Server, url: str, body: Path, args: argparse.Namespace) -> None:
    """py-spy on the first Kiln worker while the load generator drives ``url``."""
    py_spy = shutil.which("py-spy", path=str(BIN)) or shutil.which("py-spy")
    if py_spy is None:
        raise BenchError("--profile needs py-spy: .venv/bin/pip install py-spy")
    out: Path = args.profile
    out.mkdir(parents=True, exist_ok=True)
    pid = server.worker_pids()[0]
    seconds = args.profile_seconds
    load = subprocess.Popen(
        load_argv(args.tool, url, body, 2 * seconds + 8, args.concurrency, args.threads),
        env={**os.environ, "WRK_BODY_FILE": str(body)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        time.sleep(2)
        for fmt, name in (("raw", "profile-raw.txt"), ("flamegraph", "profile.svg")):
            subprocess.run(
                [py_spy, "record", "--pid", str(pid), "--duration", str(seconds), "--rate", "100",
                 "--full-filenames", "--format", fmt, "--output", str(out / name)],
                capture_output=True, timeout=seconds + 60, check=True,
            )  # fmt: skip
    finally:
        load.kill()
        load.wait(timeout=10)
    summary = summarise_profile(out / "profile-raw.txt")
    with (
        (out / "profile-raw.txt").open("rb") as src,
        gzip.open(out / "profile-raw.txt.gz", "wb") as dst,
    ):
        shutil.copyfileobj(src, dst)
    (out / "profile-raw.txt").unlink()
    (out / "profile-summary.md").write_text(
        f"py-spy record, {seconds} s at 100 Hz, Kiln worker pid {pid}, under {args.tool} "
        f"-c{args.concurrency} on {url}\n\n{summary}",
        encoding="utf-8",
    )
    print(f"  profile: {out}/profile-summary.md, profile.svg, profile-raw.txt.gz")


# -- environment and report ----------------------------------------------------------------------


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
    for package in ("uvloop", "httptools"):
        try:
            versions[package] = importlib_metadata.version(package)
        except importlib_metadata.PackageNotFoundError:
            versions[package] = "not installed (asyncio loop, h11 parser)"
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


def peer_lines(args: argparse.Namespace) -> list[str]:
    """One header line per peer venv: its main packages, as installed."""
    keep = ("fastapi", "uvicorn", "bentoml", "mlserver", "mlserver-sklearn", "uvloop",
            "scikit-learn", "pandas", "numpy")  # fmt: skip
    lines = []
    for venv in dict.fromkeys(PEERS[p] for p in args.peers):
        freeze = PEER_VENVS / venv / "freeze.txt"
        pins = freeze.read_text(encoding="utf-8").splitlines() if freeze.exists() else []
        found = [line for line in pins if line.split("==")[0].lower() in keep]
        lines.append(f"- peer venv {venv}: {', '.join(found) or 'versions unknown'}")
    if args.peers:
        lines.append(
            "- peers: each in its own venv (bench/peers/), one process, on 127.0.0.1, serving "
            "the same scikit-learn pipeline pickled by bench/peers/models.py; MLServer takes a "
            "V2 request (one input per column, pandas codec) asking for predict_proba"
        )
    return lines


def markdown(env: dict[str, Any], results: list[Result], args: argparse.Namespace) -> str:
    """The report: header, the table and the ratios."""
    v = env["versions"]
    lines = [
        f"- machine: {env['nproc']} CPUs ({env['cpu']}), {env['ram_gib']} GiB RAM, "
        f"Linux {env['kernel']}",
        f"- date: {env['date']}",
        f"- versions: Python {v['python']}, bentoml {v['bentoml']}, onnxruntime "
        f"{v['onnxruntime']}, fastapi {v['fastapi']}, uvicorn {v['uvicorn']}, starlette "
        f"{v['starlette']}; uvloop {v['uvloop']}; httptools {v['httptools']}; "
        f"{args.tool} {v[args.tool]}",
        f"- load: {args.tool}, {args.concurrency} connections"
        + (f", {args.threads} threads" if args.tool == "wrk" else "")
        + f", {args.duration} s per target after {args.warmup} s of warm-up, one-row body; "
        "the load generator shares the machine's cores with the server; a run during which "
        f"other processes used over {args.disturbed_cores} cores was measured again "
        f"(up to {args.retries} times; the least disturbed run is shown)",
        "- servers: Kiln by `bentoml serve` (KILN_SERVE_WORKERS="
        + ", ".join(map(str, args.workers))
        + (f"; {', '.join(args.kiln_env)}" if args.kiln_env else "; default settings")
        + "), started afresh for each target; the plain app by uvicorn, 1 process; "
        "both on 127.0.0.1",
        *peer_lines(args),
        f"- command: `{env['command']}`",
        "",
        "| target | req/s | p50 ms | p99 ms | errors | CPU s/1k req | RSS MB | server cores | "
        "load-gen cores | other cores |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        lines.append(
            f"| {r.target} | {r.rps:.0f} | {r.p50_ms:.1f} | {r.p99_ms:.1f} | {r.errors} | "
            f"{r.cpu_s_per_1k:.3f} | {r.rss_mb:.0f} | {r.server_cores:.2f} | "
            f"{r.loadgen_cores:.2f} | {r.other_cores:.2f} |"
        )
    by = {(r.server, r.path, r.workers): r for r in results}
    first = args.workers[0]
    kiln_predict = by.get(("kiln", f"/v1/models/{args.model}/predict", first))
    kiln_noop = by.get(("kiln", "/v1/noop", first))
    plain_predict = by.get(("plain", "/predict", None))
    plain_noop = by.get(("plain", "/noop", None))
    pairs = [
        ("Kiln predict / plain FastAPI+ORT predict", kiln_predict, plain_predict),
        ("Kiln predict / Kiln noop", kiln_predict, kiln_noop),
        ("plain FastAPI+ORT predict / plain noop", plain_predict, plain_noop),
        ("Kiln noop / plain noop", kiln_noop, plain_noop),
    ]
    for workers in args.workers[1:]:
        more = by.get(("kiln", f"/v1/models/{args.model}/predict", workers))
        pairs.append((f"Kiln predict, {workers} / {first} worker(s)", more, kiln_predict))
    for r in results:
        if r.server in PEERS:
            pairs.append((f"Kiln predict / {r.target}", kiln_predict, r))
    lines += ["", "| ratio (req/s) | value |", "|---|---:|"]
    for label, a, b in pairs:
        if a is not None and b is not None and b.rps:
            lines.append(f"| {label} | {a.rps / b.rps:.2f} |")
    return "\n".join(lines) + "\n"


# -- main --------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=int, default=20, help="seconds per target (20)")
    parser.add_argument("--concurrency", type=int, default=64, help="connections (64)")
    parser.add_argument("--model", default="breast-cancer", help="spec in training/specs/")
    parser.add_argument("--quick", action="store_true", help="3 s per target, 1 s warm-up")
    parser.add_argument("--warmup", type=int, default=3, help="unmeasured seconds first (3)")
    parser.add_argument("--tool", choices=("wrk", "hey"), default="wrk", help="load generator")
    parser.add_argument("--threads", type=int, default=2, help="wrk threads (2)")
    parser.add_argument(
        "--workers", type=int, nargs="+", default=[int(os.environ.get("KILN_SERVE_WORKERS", "1"))],
        help="KILN_SERVE_WORKERS values to measure Kiln with, in order (default 1)",
    )  # fmt: skip
    parser.add_argument(
        "--kiln-env", action="append", default=[], metavar="NAME=VALUE",
        help="extra environment for Kiln, for diagnostics (repeatable), e.g. "
        "KILN_SERVE_TIMEOUT=1 or BENTOML_CONFIG_OPTIONS=services.kiln.logging.access.enabled=false",
    )  # fmt: skip
    parser.add_argument("--kiln-only", action="store_true", help="skip the plain app's targets")
    parser.add_argument(
        "--peers", nargs="+", choices=(*PEERS, "all", "none"), default=None,
        help="peers to measure too (bench/peers/; 'all': every peer whose venv "
        "build/bench-venvs/<venv> exists, with a warning for the others; default: all, "
        "silently); bench/peers/setup.sh builds the venvs",
    )  # fmt: skip
    parser.add_argument(
        "--quiet-wait", type=float, default=120,
        help="before each target, wait up to this many seconds for the rest of the machine "
        "to go quiet (0: don't wait; default 120)",
    )  # fmt: skip
    parser.add_argument(
        "--quiet-cores", type=float, default=0.15,
        help="'quiet': other processes use fewer cores than this (0.15)",
    )  # fmt: skip
    parser.add_argument(
        "--disturbed-cores", type=float, default=0.2,
        help="a run during which other processes used more cores than this on average is "
        "measured again (0.2)",
    )  # fmt: skip
    parser.add_argument("--retries", type=int, default=2, help="re-measurements per target (2)")
    parser.add_argument("--profile", type=Path, help="py-spy the Kiln worker into this folder")
    parser.add_argument("--profile-seconds", type=int, default=10)
    parser.add_argument("--json", type=Path, help="write every figure and the environment here")
    parser.add_argument("--markdown", type=Path, help="write the report table here")
    parser.add_argument("--keep", action="store_true", help="keep the temporary BENTOML_HOME")
    args = parser.parse_args(argv)
    for item in args.kiln_env:
        if "=" not in item:
            parser.error(f"--kiln-env takes NAME=VALUE, got {item!r}")
    if args.quick:
        args.duration, args.warmup, args.profile_seconds = 3, 1, 3
    args.peers = select_peers(args.peers)
    return args


def peer_python(peer: str) -> Path:
    return PEER_VENVS / PEERS[peer] / "bin" / "python"


def select_peers(asked: list[str] | None) -> list[str]:
    """The peers to measure: named ones must have their venv; 'all' skips those without."""
    if asked is None or "all" in asked:
        found = [p for p in PEERS if peer_python(p).exists()]
        if asked is not None:
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


def settled(attempts: list[Result], args: argparse.Namespace) -> bool:
    """Whether to stop measuring a target: the last run was undisturbed, or no retries left."""
    last = attempts[-1]
    last.attempt = len(attempts)
    if last.other_cores <= args.disturbed_cores:
        return True
    if len(attempts) > args.retries:
        print(f"  still disturbed after {len(attempts)} run(s): keeping the least disturbed one")
        return True
    print(f"  disturbed by other work ({last.other_cores:.2f} cores): measuring again")
    return False


def best(attempts: list[Result]) -> Result:
    """The least disturbed of a target's runs."""
    return min(attempts, key=lambda r: r.other_cores)


def _terminate(signum: int, _: FrameType | None) -> None:
    print(f"signal {signum}: stopping the servers", file=sys.stderr, flush=True)
    raise SystemExit(128 + signum)  # unwinds through the finally blocks that stop servers


@contextlib.contextmanager
def running(server: Server) -> Iterator[Server]:
    """Start ``server``, wait until ready, stop it on the way out (error or not)."""
    try:
        server.start()
        took = server.wait_ready()
        listening = server.listening()
        loopback = ("127.0.0.1:", "::ffff:127.0.0.1:")  # MLServer's gRPC: IPv4-mapped
        if not listening or any(not a.startswith(loopback) for a in listening):
            raise BenchError(f"{server.name} listens on {listening}, not on 127.0.0.1 only")
        print(f"{server.name} ready in {took:.1f} s on {', '.join(listening)}", flush=True)
        yield server
    finally:
        server.stop()


def kiln_server(home: Path, workers: int, extra: list[str]) -> tuple[Server, str]:
    """Kiln as ``make serve`` runs it, on a free port, over the store at ``home``."""
    port = free_port()
    env = {
        **os.environ,
        "BENTOML_HOME": str(home),
        "KILN_SERVE_WORKERS": str(workers),
        "BENTOML_DO_NOT_TRACK": "true",  # no usage report (and no network) at start-up
        **dict(item.split("=", 1) for item in extra),
    }
    base = f"http://127.0.0.1:{port}"
    argv = [str(BIN / "bentoml"), "serve", "--host", "127.0.0.1", "--port", str(port)]
    return Server(f"kiln ({workers} worker{'s' * (workers > 1)})", argv, env,
                  home / f"kiln-{workers}.log", f"{base}/readyz"), base  # fmt: skip


def plain_server(home: Path, model_dir: Path) -> tuple[Server, str]:
    """The reference app under uvicorn, one process, no access log, on a free port."""
    port = free_port()
    env = {**os.environ, "KILN_BENCH_MODEL_DIR": str(model_dir)}
    base = f"http://127.0.0.1:{port}"
    argv = [
        str(BIN / "uvicorn"), "--app-dir", str(BENCH), "plain_fastapi_ort:app",
        "--host", "127.0.0.1", "--port", str(port), "--workers", "1", "--no-access-log",
        "--log-level", "warning",
    ]  # fmt: skip
    return Server("plain FastAPI+ORT", argv, env, home / "plain.log", f"{base}/openapi.json"), base


def peer_model(spec: Path, model_dir: Path) -> Path:
    """The spec's scikit-learn pipeline, pickled by bench/peers/models.py (checked against
    the ONNX model at ``model_dir``)."""
    out = PEER_MODELS / f"{yaml_name(spec)}.joblib"
    done = subprocess.run(
        [sys.executable, str(BENCH / "peers" / "models.py"), "--spec", str(spec),
         "--model-dir", str(model_dir), "--out", str(out)],
        cwd=REPO, capture_output=True, text=True, timeout=TRAIN_TIMEOUT_S, check=False,
    )  # fmt: skip
    if done.returncode != 0:
        raise BenchError(f"bench/peers/models.py failed:\n{done.stdout}{done.stderr}")
    print(done.stdout.strip(), flush=True)
    return out


def v2_body(body: dict[str, Any]) -> dict[str, Any]:
    """The one-row body as an Open Inference (V2) request: one input per column, pandas codec,
    asking for ``predict_proba`` (MLServer's scikit-learn runtime)."""
    (row,) = body["instances"]
    inputs = []
    for name, value in row.items():
        numeric = isinstance(value, float)
        inputs.append(
            {"name": name, "shape": [1], "datatype": "FP64" if numeric else "BYTES",
             "data": [value]}
        )  # fmt: skip
    return {
        "parameters": {"content_type": "pd"},
        "inputs": inputs,
        "outputs": [{"name": "predict_proba"}],
    }


def peer_server(peer: str, home: Path, model: str, pickle: Path) -> tuple[Server, str, str]:
    """A peer on a free port of 127.0.0.1: (server, base URL, predict path)."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    bin_dir = peer_python(peer).parent
    env = {
        **os.environ,
        "KILN_BENCH_SKLEARN_MODEL": str(pickle),
        "BENTOML_DO_NOT_TRACK": "true",
        "VIRTUAL_ENV": str(bin_dir.parent),
        "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    env.pop("BENTOML_HOME", None)
    log = home / f"{peer}.log"
    if peer == "fastapi-sklearn":
        argv = [
            str(bin_dir / "uvicorn"), "--app-dir", str(BENCH / "peers"), "fastapi_sklearn:app",
            "--host", "127.0.0.1", "--port", str(port), "--workers", "1", "--no-access-log",
            "--log-level", "warning",
        ]  # fmt: skip
        return Server(peer, argv, env, log, f"{base}/openapi.json"), base, "/predict"
    if peer == "bentoml-sklearn":
        env["BENTOML_HOME"] = str(home / "peer-bentoml-home")
        argv = [
            str(bin_dir / "bentoml"), "serve", "service:SklearnPeer", "--working-dir",
            str(BENCH / "peers" / "bentoml_sklearn"), "--host", "127.0.0.1", "--port", str(port),
        ]  # fmt: skip
        return Server(peer, argv, env, log, f"{base}/readyz"), base, "/predict"
    # MLServer: a model repository folder with the server's and the model's settings.
    repo = home / peer
    (repo / model).mkdir(parents=True, exist_ok=True)
    settings = {
        "host": "127.0.0.1",
        "http_port": port,
        "grpc_port": free_port(),
        "metrics_port": free_port(),
        "debug": False,
    }
    (repo / "settings.json").write_text(json.dumps(settings), encoding="utf-8")
    model_settings: dict[str, Any] = {
        "name": model,
        "implementation": "mlserver_sklearn.SKLearnModel",
        "parameters": {"uri": str(pickle)},
    }
    if peer == "mlserver-batching":
        model_settings.update(MLSERVER_BATCHING)
    (repo / model / "model-settings.json").write_text(json.dumps(model_settings), "utf-8")
    argv = [str(bin_dir / "mlserver"), "start", str(repo)]
    ready = f"{base}/v2/models/{model}/ready"
    return Server(peer, argv, env, log, ready), base, f"/v2/models/{model}/infer"


def peer_label(peer: str) -> str:
    if peer == "mlserver-batching":
        batching = ", ".join(f"{k}={v}" for k, v in MLSERVER_BATCHING.items())
        return f"peer mlserver (adaptive batching: {batching})"
    return f"peer {peer}"


def check_peer(peer: str, url: str, body: bytes, expected: dict[str, float]) -> None:
    """The peer answers 200 with the same probabilities as the plain app (within 1e-4)."""
    status, raw = http("POST", url, body, timeout=30)
    if status != 200:
        raise BenchError(f"{peer}: {url} answered {status}: {raw[:500]!r}")
    answer = json.loads(raw)
    if "outputs" in answer:  # V2: predict_proba, in the pipeline's class order
        got = sorted(float(x) for x in answer["outputs"][0]["data"])
    else:
        got = sorted(answer["probabilities"][0].values())
    want = sorted(expected.values())
    if len(got) != len(want) or any(abs(a - b) > 1e-4 for a, b in zip(got, want, strict=True)):
        raise BenchError(f"{peer} disagrees with the plain app: {answer} vs {expected}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _terminate)
    for tool in (args.tool,):
        if shutil.which(tool) is None:
            print(f"error: {tool} is not installed (apt-get install {tool})", file=sys.stderr)
            return 2
    for exe in ("kiln", "bentoml", "uvicorn"):
        if not (BIN / exe).exists():
            print(f"error: no {BIN / exe}: run with .venv/bin/python", file=sys.stderr)
            return 2
    spec = REPO / "training" / "specs" / f"{args.model}.yaml"
    env = environment(args)
    home = Path(tempfile.mkdtemp(prefix="kiln-bench-"))
    results: list[Result] = []
    try:
        print(f"training {spec.relative_to(REPO)} into {home}", flush=True)
        model_dir = train(spec, home)
        model = yaml_name(spec)
        body = one_row_body(spec, model_dir)
        body_path = home / "body.json"
        body_path.write_bytes(json.dumps(body).encode())
        predict = f"/v1/models/{model}/predict"
        kiln_targets = ((f"Kiln {predict}", predict), ("Kiln /v1/noop", "/v1/noop"))
        plain_targets = (
            ("plain FastAPI+ORT /predict", "/predict"),
            ("plain FastAPI /noop", "/noop"),
        )
        plain, plain_url = plain_server(home, model_dir)
        with running(plain):
            for index, workers in enumerate(args.workers):
                notes = [f"{workers} workers"] if index > 0 or workers != 1 else []
                suffix = f" ({', '.join(notes + args.kiln_env)})" if notes or args.kiln_env else ""
                # A fresh Kiln for each target (and each attempt): what one run leaves behind
                # in the worker (see RESULTS.md: requests are retained for KILN_SERVE_TIMEOUT
                # seconds) must not be charged to the next one.
                for label, path in kiln_targets:
                    target = Target(label + suffix, "kiln", path, workers)
                    attempts: list[Result] = []
                    while True:
                        kiln, kiln_url = kiln_server(home, workers, args.kiln_env)
                        with running(kiln):
                            check_answers(kiln_url, plain_url, model, body_path.read_bytes())
                            attempts.append(measure(target, kiln, kiln_url, body_path, args))
                            done = settled(attempts, args)
                            if done and args.profile and index == 0 and path == predict:
                                profile(kiln, kiln_url + predict, body_path, args)
                        if done:
                            break
                    results.append(best(attempts))
                if index == 0 and not args.kiln_only:
                    for label, path in plain_targets:
                        target = Target(label, "plain", path)
                        attempts = [measure(target, plain, plain_url, body_path, args)]
                        while not settled(attempts, args):
                            attempts.append(measure(target, plain, plain_url, body_path, args))
                        results.append(best(attempts))
            status, raw = http("POST", f"{plain_url}/predict", body_path.read_bytes())
            expected = json.loads(raw)["probabilities"][0] if status == 200 else {}
        if args.peers:
            pickle = peer_model(spec, model_dir)
            v2_path = home / "body-v2.json"
            v2_path.write_bytes(json.dumps(v2_body(body)).encode())
        for peer in args.peers:
            peer_body = v2_path if peer.startswith("mlserver") else body_path
            target = Target(peer_label(peer), peer, "")
            attempts = []
            while True:
                server, url, path = peer_server(peer, home, model, pickle)
                target.path = path
                with running(server):
                    check_peer(peer, url + path, peer_body.read_bytes(), expected)
                    attempts.append(measure(target, server, url, peer_body, args))
                    done = settled(attempts, args)
                if done:
                    break
            results.append(best(attempts))
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        if args.keep:
            print(f"kept {home}")
        else:
            shutil.rmtree(home, ignore_errors=True)
    report = markdown(env, results, args)
    print("\n" + report)
    if args.markdown:
        args.markdown.write_text(report, encoding="utf-8")
    if args.json:
        document = {"environment": env, "results": [asdict(r) for r in results]}
        args.json.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
