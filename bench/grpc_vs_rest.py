"""gRPC beside REST (V2 binary): one-row and 1,000-row requests, same server, same model.

The issue's goal: over the Open Inference Protocol's gRPC front, one-row requests/s at least
REST's, and 1,000-row rows/s at least 1.2 times REST binary's (Triton's binary tensor
extension, what ``tritonclient.http`` sends). One Kiln server (default settings, its gRPC
front on a free port of 127.0.0.1) serves the logistic regression of
training/specs/breast-cancer.yaml (30 numbers) and churn (numbers and categories), trained as
bench/monitoring.py trains them, into the same cached store. Both protocols carry the same
rows in the same layout: every input ``[N, 1]``, FP32 or BYTES, as raw little-endian bytes
(``raw_input_contents``; the binary section after the JSON header), all outputs asked for, as
raw bytes too.

The load generator is the same for both, and C: ``h2load`` (Debian's nghttp2-client), closed
loop, ``-c`` connections, one request in flight on each. gRPC goes over h2c (HTTP/2 with prior
knowledge: ``content-type: application/grpc``, ``te: trailers``, the body the 5-byte length
prefix and the serialized ModelInferRequest); REST over HTTP/1.1 (``--h1``), as uvicorn
speaks it. h2load checks HTTP statuses only, and a gRPC error is a 200 whose trailers carry
it: gRPC errors are read from the server's ``kiln_grpc_requests_total`` (ModelInfer calls
by status code) around each run, so a failed call cannot pass unseen. At one row and c=64
a third line, "gRPC 1 conn", puts the 64 calls on one connection as streams, as one client
channel does (and so on one worker: a connection stays with the worker that accepted it).
The cores h2load itself used are in each run's figures (``loadgen_cores``): far under one,
it is not the bottleneck. ``--wrk`` adds REST under wrk (the other benchmarks' load
generator) as a check that h2load's HTTP/1.1 side gives REST no worse a figure.

Each run is ``--seconds`` long after a 1 s warm-up; ``--rounds`` rounds, the protocols' order
swapped every round (this VM's speed wanders by a fifth within minutes); figures are medians
over rounds, the ratio the median of the rounds' gRPC/REST ratios::

    .venv/bin/python bench/grpc_vs_rest.py                # about 6 minutes
    .venv/bin/python bench/grpc_vs_rest.py --seconds 3 --rounds 1 --models breast-cancer

Figures as JSON to ``bench/runs/grpc-latest.json`` (``--json``: elsewhere), a Markdown table
to stdout; exit 1 when a goal is missed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
if str(HERE.parent) not in sys.path:  # run as a script: kiln/ and training/ importable
    sys.path.insert(0, str(HERE.parent))

import loadgen  # noqa: E402
import monitoring  # noqa: E402
import servers  # noqa: E402
import workloads  # noqa: E402

OUT = HERE / "runs" / "grpc-latest.json"
METHOD = "/inference.GRPCInferenceService/ModelInfer"
BULK_ROWS = 1000
ONE_ROW_CONCURRENCY = (1, 16, 64)
BULK_CONCURRENCY = 4
FLOOR_CONCURRENCY = (16, 64)
FLOOR_MODEL = "churn"  # whose one-row bodies the floors are sent (its first model without it)
GOAL_ONE_ROW = 1.0  # gRPC requests/s over REST's, one row
GOAL_BULK = 1.2  # gRPC rows/s over REST binary's, 1,000 rows


@dataclass
class Run:
    """What one h2load (or wrk) run measured."""

    requests: int
    seconds: float
    requests_per_s: float
    rows_per_s: float
    p50_ms: float
    p99_ms: float
    errors: int
    loadgen_cores: float  # CPU seconds the load generator used over the run's seconds
    server_cpu_us_per_request: float
    rows_per_batch: float = 0.0  # rows per ONNX Runtime call over the run (Kiln only)


class H2loadError(RuntimeError):
    """h2load failed, or printed what this script cannot read."""


def rows_of(name: str, model_dir: Path, count: int) -> list[dict[str, Any]]:
    """``count`` complete rows of the model's training data (cycled), as Python values."""
    if name != "churn":
        return workloads.instances(monitoring.SPECS[name], model_dir, count)
    import pandas as pd

    from kiln.artifact import read_metadata

    features = [f.name for f in read_metadata(model_dir).features]
    frame = pd.read_csv(monitoring.REPO / "training" / "data" / "churn.csv")[features].dropna()
    picked = frame.iloc[[i % len(frame) for i in range(count)]]
    return [
        {k: (float(v) if isinstance(v, int | float) else str(v)) for k, v in row.items()}
        for row in picked.to_dict("records")
    ]


def grpc_request(name: str, rows: list[dict[str, Any]], outputs: list[str]) -> bytes:
    """The ModelInferRequest of ``rows`` in gRPC's framing (a 0 byte, the big-endian length,
    the message), raw contents laid out as the REST binary body's."""
    import numpy as np
    from tritonclient.grpc import service_pb2

    request = service_pb2.ModelInferRequest(model_name=name)
    for feature, value in rows[0].items():
        tensor = request.inputs.add(name=feature, shape=[len(rows), 1])
        if isinstance(value, float):
            tensor.datatype = "FP32"
            raw = np.asarray([r[feature] for r in rows], dtype="<f4").tobytes()
        else:
            tensor.datatype = "BYTES"
            encoded = [str(r[feature]).encode() for r in rows]
            raw = b"".join(len(e).to_bytes(4, "little") + e for e in encoded)
        request.raw_input_contents.append(raw)
    for output in outputs:
        request.outputs.add(name=output)
    message = request.SerializeToString()
    return b"\x00" + len(message).to_bytes(4, "big") + message


def check_answers(
    base: str, target: str, name: str, rest: workloads.Body, grpc_body: bytes
) -> None:
    """Send each body once, as the load will: both must answer, with the same outputs."""
    import urllib.request

    import grpc
    import numpy as np
    import tritonclient.grpc as triton_grpc
    import tritonclient.http as triton_http
    from tritonclient.grpc import service_pb2

    request = urllib.request.Request(
        f"{base}/v2/models/{name}/infer",
        data=rest.read(),
        method="POST",
        headers={**rest.headers, "Content-Type": rest.content_type},
    )
    with urllib.request.urlopen(request, timeout=30) as response:  # raises unless 2xx
        header = int(response.headers[workloads.HEADER_LENGTH])
        rest_result = triton_http.InferResult.from_response_body(
            response.read(), header_length=header
        )
    with grpc.insecure_channel(target) as channel:
        call = channel.unary_unary(
            METHOD,
            request_serializer=None,  # the bytes h2load sends, less the frame's prefix
            response_deserializer=service_pb2.ModelInferResponse.FromString,
        )
        answer = call(grpc_body[5:], timeout=30)
    grpc_result = triton_grpc.InferResult(answer)
    for output in answer.outputs:
        np.testing.assert_array_equal(
            grpc_result.as_numpy(output.name), rest_result.as_numpy(output.name)
        )


def h2load(
    url: str,
    body: Path,
    headers: dict[str, str],
    seconds: int,
    connections: int,
    streams: int,
    log: Path,
    *,
    h1: bool,
) -> tuple[str, float]:
    """One h2load run: (its output, the CPU seconds it used)."""
    argv = [
        "h2load", *(["--h1"] if h1 else []), "-t1", f"-c{connections}", f"-m{streams}",
        f"-D{seconds}", "--warm-up-time=1", "-d", str(body), f"--log-file={log}",
        *[arg for k, v in headers.items() for arg in ("-H", f"{k}: {v}")], url,
    ]  # fmt: skip
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    try:
        done = subprocess.run(
            argv, capture_output=True, text=True, timeout=seconds + 60, check=False
        )
    except subprocess.TimeoutExpired:
        raise H2loadError(f"h2load did not finish within {seconds + 60} s on {url}") from None
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise H2loadError(
            f"h2load failed ({done.returncode}) on {url}:\n{done.stderr}{done.stdout}"
        )
    used = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return done.stdout, used


def _find(pattern: str, text: str) -> re.Match[str]:
    match = re.search(pattern, text, re.MULTILINE)
    if match is None:
        raise H2loadError(f"cannot find {pattern!r} in h2load's output:\n{text}")
    return match


def parse_h2load(output: str, log: Path) -> dict[str, Any]:
    """Requests, seconds, requests/s, errors, and p50/p99 from the log."""
    rps = float(_find(r"^finished in [\d.]+m?s, ([\d.]+) req/s", output).group(1))
    done = _find(r"^requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded", output)
    elapsed = sorted(
        int(line.split("\t")[2])
        for line in log.read_text().splitlines()
        if line.count("\t") == 2 and line.split("\t")[1] == "200"
    )
    if not elapsed:
        raise H2loadError(f"no answered request in {log}:\n{output}")
    requests = int(done.group(3))
    statuses = _find(r"^status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", output)
    failures = _find(r"^requests: .* (\d+) errored, (\d+) timeout", output)
    return {
        "requests": requests,
        "seconds": requests / rps if rps else 0.0,  # the main duration, without the warm-up
        "rps": rps,
        # 4xx, 5xx, and requests that broke or timed out (not those cut off by the end)
        "errors": sum(map(int, statuses.groups()[2:])) + sum(map(int, failures.groups())),
        "p50_ms": elapsed[len(elapsed) // 2] / 1e3,
        "p99_ms": elapsed[min(len(elapsed) - 1, len(elapsed) * 99 // 100)] / 1e3,
    }


def grpc_errors(base: str) -> float:
    """ModelInfer calls answered with another code than OK, from the server's metrics."""
    _, page = servers.http("GET", f"{base}/metrics", timeout=30)
    found = re.findall(
        r"^kiln_grpc_requests_total\{([^}]*)\} ([0-9.e+-]+)$", page.decode(), re.MULTILINE
    )
    return sum(
        float(value)
        for labels, value in found
        if 'method="ModelInfer"' in labels and 'code="OK"' not in labels
    )


def batch_totals(base: str) -> tuple[float, float]:
    """(ONNX Runtime calls, rows in them) so far, all models, from the server's metrics."""
    _, page = servers.http("GET", f"{base}/metrics", timeout=30)
    text = page.decode()

    def total(series: str) -> float:
        pattern = rf"^{series}\{{[^}}]*\}} ([0-9.e+-]+)$"
        return sum(float(v) for v in re.findall(pattern, text, re.MULTILINE))

    return total("kiln_batch_rows_count"), total("kiln_batch_rows_sum")


def one_run(
    server: servers.Server,
    base: str,
    protocol: str,
    url: str,
    body: workloads.Body,
    rows: int,
    seconds: int,
    concurrency: int,
    workdir: Path,
) -> Run:
    calls_before, rows_before = batch_totals(base)
    cpu = server.cpu_seconds()
    failed_before = grpc_errors(base) if protocol.startswith("grpc") else 0
    if protocol == "rest-wrk":
        load, used = loadgen.run_load("wrk", url, body, seconds, concurrency, threads=2)
        measured = {
            "requests": load.requests, "seconds": load.seconds, "rps": load.rps,
            "p50_ms": load.p50_ms, "p99_ms": load.p99_ms, "errors": load.errors,
        }  # fmt: skip
    else:
        grpc = protocol.startswith("grpc")
        connections, streams = (1, concurrency) if protocol == "grpc-1conn" else (concurrency, 1)
        headers = (
            {"content-type": "application/grpc", "te": "trailers"}
            if grpc
            else {"content-type": body.content_type, **body.headers}
        )
        log = workdir / "h2load.log"
        log.unlink(missing_ok=True)  # h2load appends to its log file
        output, used = h2load(
            url, body.path, headers, seconds, connections, streams, log, h1=not grpc
        )
        parsed = parse_h2load(output, log)
        errors = parsed["errors"]
        if grpc:  # a gRPC error is an HTTP 200: the server counts them by status code
            errors += grpc_errors(base) - failed_before
        measured = {**parsed, "errors": errors}
    # h2load's 1 s warm-up loads the server too: its CPU is spread over the requests the
    # warm-up sent at the run's rate
    warm_up = 0.0 if protocol == "rest-wrk" else 1.0
    seconds_loaded = float(measured["seconds"]) + warm_up
    requests = max(float(measured["rps"]) * seconds_loaded, 1.0)
    cpu_used = server.cpu_seconds() - cpu
    calls_after, rows_after = batch_totals(base)
    return Run(
        requests=int(measured["requests"]),
        seconds=float(measured["seconds"]),
        requests_per_s=float(measured["rps"]),
        rows_per_s=float(measured["rps"]) * rows,
        p50_ms=float(measured["p50_ms"]),
        p99_ms=float(measured["p99_ms"]),
        errors=int(measured["errors"]),
        loadgen_cores=used / max(seconds_loaded, 1e-9),
        server_cpu_us_per_request=cpu_used / requests * 1e6,
        rows_per_batch=(rows_after - rows_before) / max(calls_after - calls_before, 1.0),
    )


class FloorServer(servers.Server):
    """One of bench/floor_servers.py's transports; ready once its port takes connections."""

    def __init__(self, kind: str, port: int, log: Path) -> None:
        argv = [sys.executable, str(HERE / "floor_servers.py"), kind, str(port)]
        super().__init__(f"{kind} floor", argv, dict(os.environ), log, "")
        self.port = port

    def wait_ready(self, timeout: float = 30.0) -> float:
        assert self.proc is not None
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            if self.proc.poll() is not None:
                raise servers.ServerError(f"{self.name} exited:\n{self.log_tail()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return time.monotonic() - started
            except OSError:
                time.sleep(0.2)
        raise servers.ServerError(f"{self.name} not listening after {timeout:.0f} s")


def floor_runs(bodies: dict[str, Any], seconds: int, rounds: int, workdir: Path) -> dict[str, Any]:
    """Each transport's floor (bench/floor_servers.py) under the one-row loads: calls/s and
    CPU per call, the medians of ``rounds`` runs."""
    found: dict[str, Any] = {}
    for kind in ("grpc", "http"):
        port = servers.free_port()
        server = FloorServer(kind, port, workdir / f"floor-{kind}.log")
        grpc = kind == "grpc"
        body = bodies["grpc" if grpc else "rest"]
        headers = (
            {"content-type": "application/grpc", "te": "trailers"}
            if grpc
            else {"content-type": body.content_type, **body.headers}
        )
        url = f"http://127.0.0.1:{port}{METHOD}"
        with servers.running(server):
            for concurrency in FLOOR_CONCURRENCY:
                runs = []
                for _ in range(rounds):
                    log = workdir / "h2load.log"
                    log.unlink(missing_ok=True)
                    cpu = server.cpu_seconds()
                    output, _ = h2load(
                        url, body.path, headers, seconds, concurrency, 1, log, h1=not grpc
                    )
                    parsed = parse_h2load(output, log)
                    calls = max(parsed["rps"] * (parsed["seconds"] + 1.0), 1.0)  # + warm-up
                    runs.append(
                        {
                            "requests_per_s": parsed["rps"],
                            "errors": parsed["errors"],
                            "server_cpu_us_per_request": (server.cpu_seconds() - cpu) / calls * 1e6,
                        }
                    )
                found[f"{kind}/c{concurrency}"] = {
                    "transport": kind,
                    "concurrency": concurrency,
                    "runs": runs,
                    "median": {
                        field: statistics.median(r[field] for r in runs) for field in runs[0]
                    },
                }
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=5, help="each run (default 5)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds (default 3)")
    parser.add_argument("--models", default=",".join(monitoring.SPECS), help="comma-separated")
    parser.add_argument("--wrk", action="store_true", help="also REST under wrk")
    parser.add_argument("--json", type=Path, default=OUT)
    args = parser.parse_args()
    if shutil.which("h2load") is None:
        print("h2load is missing: apt-get install nghttp2-client", file=sys.stderr)
        return 2
    names = args.models.split(",")
    model_dirs = {name: monitoring.train(monitoring.STORE, name) for name in names}
    grpc_port = servers.free_port()
    served = {"KILN_SERVE_MODELS": json.dumps(names), "KILN_SERVE_GRPC_PORT": str(grpc_port)}
    server, base = servers.kiln_server(monitoring.STORE, "grpc-vs-rest", served)
    target = f"127.0.0.1:{grpc_port}"
    grpc_url = f"http://{target}{METHOD}"
    results: dict[str, Any] = {}
    floor_bodies: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="kiln-grpc-") as tmp:
        workdir = Path(tmp)
        with servers.running(server):
            for name in names:
                from kiln.artifact import read_metadata

                outputs = [o.name for o in read_metadata(model_dirs[name]).outputs]
                configs = [(1, c, ["grpc", "rest"]) for c in ONE_ROW_CONCURRENCY]
                configs[-1][2].append("grpc-1conn")
                configs.append((BULK_ROWS, BULK_CONCURRENCY, ["grpc", "rest"]))
                if args.wrk:
                    for _, _, protocols in configs:
                        protocols.append("rest-wrk")
                for rows, concurrency, protocols in configs:
                    data = rows_of(name, model_dirs[name], rows)
                    raw, header = workloads.v2_binary(data, outputs)
                    rest = workloads.write(
                        workdir, f"{name}-{rows}-rest", "v2-binary", rows, raw,
                        content_type="application/octet-stream",
                        headers={workloads.HEADER_LENGTH: str(header)},
                    )  # fmt: skip
                    grpc_bytes = grpc_request(name, data, outputs)
                    grpc = workloads.write(workdir, f"{name}-{rows}-grpc", "grpc", rows, grpc_bytes)
                    check_answers(base, target, name, rest, grpc_bytes)
                    if rows == 1 and (name == FLOOR_MODEL or not floor_bodies):
                        floor_bodies = {"model": name, "grpc": grpc, "rest": rest}
                    urls = {"grpc": grpc_url, "grpc-1conn": grpc_url,
                            "rest": f"{base}/v2/models/{name}/infer"}  # fmt: skip
                    urls["rest-wrk"] = urls["rest"]
                    bodies = {p: grpc if p.startswith("grpc") else rest for p in protocols}
                    runs: dict[str, list[Run]] = {p: [] for p in protocols}
                    for protocol in protocols:  # warm-up
                        one_run(server, base, protocol, urls[protocol], bodies[protocol], rows, 1,
                                concurrency, workdir)  # fmt: skip
                    for round_ in range(args.rounds):
                        order = protocols if round_ % 2 == 0 else list(reversed(protocols))
                        for protocol in order:
                            runs[protocol].append(
                                one_run(server, base, protocol, urls[protocol],
                                        bodies[protocol], rows, args.seconds, concurrency,
                                        workdir)
                            )  # fmt: skip
                        said = ", ".join(
                            f"{p} {runs[p][-1].requests_per_s:,.0f}" for p in protocols
                        )
                        print(f"{name} {rows} row(s) c={concurrency} round {round_ + 1}: "
                              f"{said} req/s", flush=True)  # fmt: skip
                    key = f"{name}/{rows}/c{concurrency}"
                    ratios = [
                        g.rows_per_s / r.rows_per_s
                        for g, r in zip(runs["grpc"], runs["rest"], strict=True)
                    ]
                    results[key] = {
                        "model": name,
                        "rows": rows,
                        "concurrency": concurrency,
                        "runs": {p: [asdict(r) for r in rs] for p, rs in runs.items()},
                        "median": {
                            p: {
                                field: statistics.median(getattr(r, field) for r in rs)
                                for field in Run.__dataclass_fields__
                            }
                            for p, rs in runs.items()
                        },
                        "round_ratios": ratios,
                        "ratio": statistics.median(ratios),
                        "goal": GOAL_ONE_ROW if rows == 1 else GOAL_BULK,
                    }
            rss = sum(server.memory().values())
        floors = floor_runs(floor_bodies, args.seconds, args.rounds, workdir)

    report = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{os.cpu_count()} CPUs, {platform.platform()}",
        "load_average": os.getloadavg(),
        "h2load": subprocess.run(
            ["h2load", "--version"], capture_output=True, text=True
        ).stdout.strip(),
        "seconds": args.seconds,
        "rounds": args.rounds,
        "server_rss_bytes": rss,
        "results": results,
        "floor_request_model": floor_bodies["model"],
        "floors": floors,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print("\n| model | rows | conc. | protocol | req/s | rows/s | p50 ms | p99 ms | errors "
          "| server CPU us/req | rows per model call | h2load cores | gRPC/REST "
          "| goal |")  # fmt: skip
    print("|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    missed = []
    for key, r in results.items():
        for protocol, m in r["median"].items():
            ratio = f"{r['ratio']:.2f} x" if protocol == "grpc" else ""
            goal = f"≥ {r['goal']} x" if protocol == "grpc" else ""
            label = {"grpc": "gRPC", "grpc-1conn": "gRPC 1 conn", "rest": "REST binary",
                     "rest-wrk": "REST binary (wrk)"}[protocol]  # fmt: skip
            print(
                f"| {r['model']} | {r['rows']:,} | {r['concurrency']} | {label} "
                f"| {m['requests_per_s']:,.0f} | {m['rows_per_s']:,.0f} | {m['p50_ms']:.1f} "
                f"| {m['p99_ms']:.1f} | {m['errors']:.0f} | {m['server_cpu_us_per_request']:,.0f} "
                f"| {m['rows_per_batch']:.1f} | {m['loadgen_cores']:.2f} | {ratio} | {goal} |"
            )
        if r["ratio"] < r["goal"]:
            missed.append(f"{key}: {r['ratio']:.2f} x < {r['goal']} x")
        if any(run["errors"] for runs in r["runs"].values() for run in runs):
            missed.append(f"{key}: errors")
    print(f"\nThe transports alone (bench/floor_servers.py; {floor_bodies['model']}'s one-row "
          "request):\n")  # fmt: skip
    print("| transport | conc. | calls/s | server CPU us/call | errors |")
    print("|---|---:|---:|---:|---:|")
    for f in floors.values():
        m = f["median"]
        label = "gRPC (grpc.aio)" if f["transport"] == "grpc" else "HTTP/1.1 (uvicorn, httptools)"
        print(f"| {label} | {f['concurrency']} | {m['requests_per_s']:,.0f} "
              f"| {m['server_cpu_us_per_request']:,.0f} | {m['errors']:.0f} |")  # fmt: skip
        if any(run["errors"] for run in f["runs"]):
            missed.append(f"floor {f['transport']}/c{f['concurrency']}: errors")
    for line in missed:
        print(f"missed: {line}")
    print(f"figures: {args.json}")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
