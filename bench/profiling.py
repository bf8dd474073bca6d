"""py-spy profiles of a Kiln worker under load, summarised by layer and by function.

``profile`` records the first BentoML worker while the load generator drives one URL and
writes a flame graph, the raw stacks (gzipped) and ``profile-summary.md``: where the worker's
time goes, by library (BentoML, OpenTelemetry, uvicorn, FastAPI, Kiln, ONNX Runtime, ...).
"""

from __future__ import annotations

import gzip
import re
import shutil
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from loadgen import load_argv, load_env
from servers import BIN, REPO, Server
from workloads import Body


class ProfileError(RuntimeError):
    """py-spy is missing or failed."""


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
    ("Kiln: records codec (kiln/records.py)", "kiln/records.py"),
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


def profile(
    server: Server, url: str, body: Body, out: Path, seconds: int, concurrency: int, tool: str
) -> None:
    """py-spy on the first Kiln worker while the load generator drives ``url``."""
    py_spy = shutil.which("py-spy", path=str(BIN)) or shutil.which("py-spy")
    if py_spy is None:
        raise ProfileError("--profile needs py-spy: .venv/bin/pip install py-spy")
    out.mkdir(parents=True, exist_ok=True)
    pid = server.worker_pids()[0]
    load = subprocess.Popen(
        load_argv(tool, url, body, 2 * seconds + 8, concurrency, 2),
        env=load_env(body),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        time.sleep(2)
        for fmt, name in (("raw", "profile-raw.txt"), ("flamegraph", "profile.svg")):
            subprocess.run(
                [py_spy, "record", "--pid", str(pid), "--duration", str(seconds), "--rate", "100",
                 "--nonblocking", "--full-filenames", "--format", fmt, "--output", str(out / name)],
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
        f"py-spy record, {seconds} s at 100 Hz, Kiln worker pid {pid}, under {tool} "
        f"-c{concurrency} on {url}\n\n{summary}",
        encoding="utf-8",
    )
    print(f"  profile: {out}/profile-summary.md, profile.svg, profile-raw.txt.gz")
