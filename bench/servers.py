"""The servers of the serving benchmark: started on 127.0.0.1, watched, stopped.

``Server`` runs one server process (and its children) in its own session, waits until its
ready URL answers 200, measures the tree's CPU time and memory, and stops the whole group.
The launchers build the command line of each kind of server: Kiln (``bentoml serve`` from
the repository root), the plain FastAPI + ONNX Runtime reference, and the peers, each from its
own virtual environment under ``build/bench-venvs/``.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import psutil

REPO = Path(__file__).resolve().parent.parent
BENCH = REPO / "bench"
BIN = Path(sys.executable).parent  # .venv/bin when run as .venv/bin/python
READY_TIMEOUT_S = 180
STOP_TIMEOUT_S = 20
PEER_VENVS = REPO / "build" / "bench-venvs"


@dataclass(frozen=True)
class MLServerVariant:
    """One way to run Seldon MLServer's scikit-learn runtime."""

    label: str
    parallel_workers: int | None  # None: MLServer's default (one inference worker process)
    batching: bool  # adaptive batching, MLSERVER_BATCHING


@dataclass(frozen=True)
class TritonVariant:
    """One way to run Triton through PyTriton (bench/peers/triton_server.py's options)."""

    label: str
    queue_delay_us: int  # how long the dynamic batcher holds a request for others to join
    max_batch_size: int = 1024  # Triton refuses a request of more rows: the 1,000-row bodies
    instances: int = 1
    intra_op_threads: int = 1


# MLServer inline (parallel_workers 0: the model runs on the server's event loop, no hop to a
# worker process) or with its default pool, adaptive batching off and on. All take the
# v2-tensor body, one [N, n_features] FP32 input, the request its numpy codec is made for.
MLSERVER = {
    "mlserver": MLServerVariant("MLServer", None, batching=False),
    "mlserver-batching": MLServerVariant("MLServer, batching", None, batching=True),
    "mlserver-pw0": MLServerVariant("MLServer, inline", 0, batching=False),
    "mlserver-pw0-batching": MLServerVariant("MLServer, inline, batching", 0, batching=True),
}
MLSERVER_BATCHING = {"max_batch_size": 16, "max_batch_time": 0.002}  # seconds
# Triton's dynamic batcher merging whatever is queued when the model is free, or waiting a
# little for more (bench/README.md says what the short runs found).
TRITON = {
    "triton": TritonVariant("Triton (PyTriton)", queue_delay_us=0),
    "triton-delay": TritonVariant("Triton (PyTriton), delay", queue_delay_us=200),
}
# The peers a user would otherwise pick (bench/peers/): name -> the venv it runs in.
PEERS = {
    "fastapi-sklearn": "fastapi-sklearn",
    "bentoml-sklearn": "bentoml-sklearn",
    **dict.fromkeys(MLSERVER, "mlserver"),
    **dict.fromkeys(TRITON, "triton"),
}
# Every peer runs one-row requests at the focus concurrency (64) to both models, where the
# report takes the best variant of each; these also run the logistic regression over the
# whole concurrency sweep, and 1,000-row requests to the forest (each peer's best there).
PEER_SWEEP = ("fastapi-sklearn", "bentoml-sklearn", "mlserver", "triton")
PEER_BULK = ("fastapi-sklearn", "bentoml-sklearn", "mlserver-pw0-batching", "triton")


class ServerError(RuntimeError):
    """A server failed to start, answered wrongly or listened where it must not."""


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def http(
    method: str,
    url: str,
    body: bytes | None = None,
    timeout: float = 5.0,
    headers: dict[str, str] | None = None,
) -> tuple[int, bytes]:
    """One request: (status, body); a connection failure raises OSError."""
    request = urllib.request.Request(url, data=body, method=method)
    if body is not None:
        request.add_header("Content-Type", "application/json")
    for name, value in (headers or {}).items():
        request.add_header(name, value)
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
        self.ready_s: float | None = None  # process start to the first 200 from ready_url
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
                raise ServerError(
                    f"{self.name} exited with {self.proc.returncode} before it was ready:\n"
                    + self.log_tail()
                )
            with contextlib.suppress(OSError):
                if http("GET", self.ready_url, timeout=2)[0] == 200:
                    return time.monotonic() - started
            time.sleep(0.25)
        raise ServerError(f"{self.name} not ready after {timeout:.0f} s:\n{self.log_tail()}")

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
    if "mlserver" in line:  # the server, and its inference pool's worker processes
        return "mlserver-worker" if "multiprocessing" in line else "mlserver"
    if "triton_python_backend_stub" in line:  # Triton's Python backend, one per instance
        return "triton-stub"
    if "tritonserver" in line:
        return "tritonserver"
    if "triton_server.py" in line:  # PyTriton's side: the ONNX Runtime session runs here
        return "pytriton"
    if "bench-venvs/triton" in line:  # PyTriton's shared-memory block manager, its tracker
        return "pytriton-helper"
    return proc.name()


@contextlib.contextmanager
def running(server: Server) -> Iterator[Server]:
    """Start ``server``, wait until ready, stop it on the way out (error or not)."""
    try:
        server.start()
        took = server.wait_ready()
        server.ready_s = took
        listening = server.listening()
        loopback = ("127.0.0.1:", "::ffff:127.0.0.1:")  # MLServer's gRPC: IPv4-mapped
        if not listening or any(not a.startswith(loopback) for a in listening):
            raise ServerError(f"{server.name} listens on {listening}, not on 127.0.0.1 only")
        print(f"{server.name} ready in {took:.1f} s on {', '.join(listening)}", flush=True)
        yield server
    finally:
        server.stop()


def kiln_server(home: Path, label: str, env: dict[str, str]) -> tuple[Server, str]:
    """Kiln as ``make serve`` runs it, on a free port, over the store at ``home``; ``env``
    adds settings (``KILN_SERVE_*``) to the environment."""
    port = free_port()
    full = {
        **os.environ,
        "BENTOML_HOME": str(home),
        "BENTOML_DO_NOT_TRACK": "true",  # no usage report (and no network) at start-up
        **env,
    }
    base = f"http://127.0.0.1:{port}"
    argv = [str(BIN / "bentoml"), "serve", "--host", "127.0.0.1", "--port", str(port)]
    log = home / f"kiln-{_slug(label)}.log"
    return Server(label, argv, full, log, f"{base}/readyz"), base


def plain_server(home: Path, model_dirs: list[Path], workers: int = 1) -> tuple[Server, str]:
    """The reference app under uvicorn, ``workers`` processes (1: one, no supervisor), no
    access log, on a free port."""
    port = free_port()
    env = {**os.environ, "KILN_BENCH_MODEL_DIRS": os.pathsep.join(map(str, model_dirs))}
    base = f"http://127.0.0.1:{port}"
    argv = [
        str(BIN / "uvicorn"), "--app-dir", str(BENCH), "plain_fastapi_ort:app",
        "--host", "127.0.0.1", "--port", str(port), "--workers", str(workers),
        "--no-access-log", "--log-level", "warning",
    ]  # fmt: skip
    label = "plain FastAPI+ORT" + ("" if workers == 1 else f", {workers} workers")
    log = home / f"plain-{workers}.log"
    return Server(label, argv, env, log, f"{base}/openapi.json"), base


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in text.lower()).strip("-")


def peer_python(peer: str) -> Path:
    return PEER_VENVS / PEERS[peer] / "bin" / "python"


def peer_body(peer: str) -> str:
    """The body kind the peer takes (bench/workloads.py): its natural request."""
    return "v2-tensor" if peer in MLSERVER or peer in TRITON else "records"


def peer_label(peer: str) -> str:
    if peer in MLSERVER:
        return MLSERVER[peer].label
    if peer in TRITON:
        return TRITON[peer].label
    return {"fastapi-sklearn": "FastAPI+sklearn", "bentoml-sklearn": "BentoML+sklearn"}[peer]


def peer_server(
    peer: str, home: Path, model: str, pickle: Path, model_dir: Path
) -> tuple[Server, str, str]:
    """A peer on a free port of 127.0.0.1: (server, base URL, predict path). The scikit-learn
    peers serve ``pickle`` (bench/peers/models.py), Triton the ONNX model in ``model_dir``."""
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
    log = home / f"{peer}-{model}.log"
    v2 = f"/v2/models/{model}"
    if peer == "fastapi-sklearn":
        argv = [
            str(bin_dir / "uvicorn"), "--app-dir", str(BENCH / "peers"), "fastapi_sklearn:app",
            "--host", "127.0.0.1", "--port", str(port), "--workers", "1", "--no-access-log",
            "--log-level", "warning",
        ]  # fmt: skip
        return Server(peer, argv, env, log, f"{base}/openapi.json"), base, "/predict"
    if peer == "bentoml-sklearn":
        env["BENTOML_HOME"] = str(home / f"peer-bentoml-home-{model}")
        argv = [
            str(bin_dir / "bentoml"), "serve", "service:SklearnPeer", "--working-dir",
            str(BENCH / "peers" / "bentoml_sklearn"), "--host", "127.0.0.1", "--port", str(port),
        ]  # fmt: skip
        return Server(peer, argv, env, log, f"{base}/readyz"), base, "/predict"
    if peer in TRITON:
        workspace = home / f"{peer}-{model}-{port}"  # pytriton wants a folder not there yet
        argv = triton_argv(TRITON[peer], bin_dir, workspace, model, model_dir)
        argv += ["--http-port", str(port)]
        return Server(peer, argv, env, log, f"{base}{v2}/ready"), base, f"{v2}/infer"
    repo = mlserver_repository(MLSERVER[peer], home / f"{peer}-{model}", model, pickle, port)
    argv = [str(bin_dir / "mlserver"), "start", str(repo)]
    return Server(peer, argv, env, log, f"{base}{v2}/ready"), base, f"{v2}/infer"


def mlserver_repository(
    variant: MLServerVariant, repo: Path, model: str, pickle: Path, port: int
) -> Path:
    """A model repository folder with MLServer's settings and the model's, serving the array
    twin of ``pickle`` (it decodes the v2-tensor body into one array)."""
    from peers.models import array_path  # bench/peers/models.py: where it writes the twin

    twin = array_path(pickle)
    if not twin.exists():
        raise ServerError(f"no {twin}: remove {pickle} and run again (bench/peers/models.py)")
    (repo / model).mkdir(parents=True, exist_ok=True)
    settings: dict[str, Any] = {
        "host": "127.0.0.1",
        "http_port": port,
        "grpc_port": free_port(),
        "metrics_port": free_port(),
        "debug": False,
    }
    if variant.parallel_workers is not None:
        settings["parallel_workers"] = variant.parallel_workers
    (repo / "settings.json").write_text(json.dumps(settings), encoding="utf-8")
    model_settings: dict[str, Any] = {
        "name": model,
        "implementation": "mlserver_sklearn.SKLearnModel",
        "parameters": {"uri": str(twin)},
    }
    if variant.batching:
        model_settings.update(MLSERVER_BATCHING)
    (repo / model / "model-settings.json").write_text(json.dumps(model_settings), "utf-8")
    return repo


def triton_argv(
    variant: TritonVariant, bin_dir: Path, workspace: Path, model: str, model_dir: Path
) -> list[str]:
    """bench/peers/triton_server.py's command line, less ``--http-port``."""
    from workloads import TENSOR_INPUT, TENSOR_OUTPUT

    return [
        str(bin_dir / "python"), str(BENCH / "peers" / "triton_server.py"),
        "--model-dir", str(model_dir), "--name", model, "--workspace", str(workspace),
        "--grpc-port", str(free_port()), "--metrics-port", str(free_port()),
        "--input", TENSOR_INPUT, "--output", TENSOR_OUTPUT,
        "--max-batch-size", str(variant.max_batch_size),
        "--queue-delay-us", str(variant.queue_delay_us),
        "--instances", str(variant.instances),
        "--intra-op-threads", str(variant.intra_op_threads),
    ]  # fmt: skip
