"""Load generators for the serving benchmark: wrk (default) or hey, run and parsed.

Both are compiled (Debian packages ``wrk`` and ``hey``) and hold ``concurrency`` connections
open, each sending the next request as soon as the previous answer arrives (closed loop).
wrk posts the body with ``bench/post_body.lua``, which reads the body file, its content type
and extra headers from the environment.
"""

from __future__ import annotations

import os
import re
import resource
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from workloads import Body

LUA_SCRIPT = Path(__file__).resolve().parent / "post_body.lua"


class LoadError(RuntimeError):
    """The load generator failed or printed something unexpected."""


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
        raise LoadError(f"cannot find {what} in the load generator's output:\n{text}")
    return match


def parse_wrk(output: str) -> Load:
    """Parse ``wrk --latency`` output."""
    done = _search(r"(\d+) requests in ([\d.]+)(us|ms|s|m|h)", output, "the request count")
    percentiles = {
        p: _ms(v, u)
        for p, v, u in re.findall(r"^\s+(\d+)%\s+([\d.]+)(us|ms|s|m|h)\s*$", output, re.M)
    }
    if "50" not in percentiles or "99" not in percentiles:
        raise LoadError(f"no latency distribution in wrk's output (--latency?):\n{output}")
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
        raise LoadError(f"no latency distribution in hey's output:\n{output}")
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
    tool: str,
    url: str,
    body: Body,
    seconds: int,
    concurrency: int,
    threads: int,
    rate: float | None = None,
) -> list[str]:
    """The command line of one load run; ``rate`` (hey only) caps the requests per second."""
    if rate is not None and tool != "hey":
        raise LoadError("a request rate needs hey (wrk has no rate limit)")
    if tool == "wrk":
        return [
            "wrk", "-s", str(LUA_SCRIPT), f"-t{min(threads, concurrency)}", f"-c{concurrency}",
            f"-d{seconds}s", "--timeout", "10s", "--latency", url,
        ]  # fmt: skip
    headers = [arg for name, value in body.headers.items() for arg in ("-H", f"{name}: {value}")]
    paced = ["-q", f"{rate / concurrency:.2f}"] if rate is not None else []
    return [
        "hey", "-c", str(concurrency), "-z", f"{seconds}s", *paced, "-m", "POST",
        "-T", body.content_type, *headers, "-D", str(body.path), "-t", "10", url,
    ]  # fmt: skip


def load_env(body: Body) -> dict[str, str]:
    """What post_body.lua reads: the body file, its content type, extra headers."""
    return {
        **os.environ,
        "WRK_BODY_FILE": str(body.path),
        "WRK_CONTENT_TYPE": body.content_type,
        "WRK_HEADERS": "\n".join(f"{k}: {v}" for k, v in body.headers.items()),
    }


def run_load(
    tool: str,
    url: str,
    body: Body,
    seconds: int,
    concurrency: int,
    threads: int,
    rate: float | None = None,
) -> tuple[Load, float]:
    """Run the load generator: (its measurement, the CPU seconds it used itself)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    try:
        done = subprocess.run(
            load_argv(tool, url, body, seconds, concurrency, threads, rate),
            env=load_env(body),
            capture_output=True,
            text=True,
            timeout=seconds + 60,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise LoadError(f"{tool} did not finish within {seconds + 60} s on {url}") from None
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise LoadError(f"{tool} failed ({done.returncode}) on {url}:\n{done.stderr}{done.stdout}")
    used = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    parse = parse_wrk if tool == "wrk" else parse_hey
    return parse(done.stdout), used
