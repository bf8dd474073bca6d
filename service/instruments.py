"""BentoML's request metrics with bounded labels, and a guard on the files they live in.

BentoML 1.4's ``RunnerTrafficMetricsMiddleware`` (bentoml/_internal/server/http/
instruments.py; the one ``_bentoml_impl`` builds for a ``@bentoml.service``) labels
``bentoml_service_request_*`` with ``endpoint=scope["path"]``: whatever path a client sends,
answered 401 or 404 or not, is a new series. 10,000 random paths took /metrics from 0.2 to
42 MB and the worker from 160 to 533 MB, and wrote 72 MiB of multiprocess files. Here the
metric families are BentoML's own (same names, labels and placeholders), but ``endpoint`` is
:func:`endpoint_label` of the path: the route it matches, with ``{name}`` filled in only by
a model this worker serves (or failed to load) and ``{version}`` only by that model's served
version, ``_unknown`` for any other value, and ``_other`` for a path that matches no route.
A known route keeps the label it always had (``/v1/models/wine/predict``), which the
recording rules in deploy/monitoring read the model from.

Those metrics live in ``PROMETHEUS_MULTIPROC_DIR`` (a 1 Gi emptyDir in the pod). prometheus_client
grows a file with ``truncate`` and writes it through ``mmap``: on a full filesystem the write
is a SIGBUS, and the worker dies with nothing in its log, again at every restart.
:class:`SpaceGuard` makes that a clear ERROR line and a failing ``/readyz``: it checks the
directory's free space (``os.statvfs``) at start and every ``CHECK_SECONDS`` against
``KILN_SERVE_METRICS_MIN_FREE_BYTES``, and :func:`reserve_file_growth` reserves the blocks
(``posix_fallocate``) before a file grows, so a full disk is ``ENOSPC``, never SIGBUS; the
values that no longer fit are kept in memory (not exported) and the request goes on.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import functools
import logging
import os
import re
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from bentoml._internal.server.http.instruments import RunnerTrafficMetricsMiddleware
from starlette.routing import Mount, compile_path
from starlette.types import ASGIApp, Receive, Scope, Send

from service.metrics import UNKNOWN_LABEL
from service.settings import ServingSettings

__all__ = [
    "CHECK_SECONDS",
    "FILES",
    "OTHER",
    "UNKNOWN",
    "BoundedTrafficMetrics",
    "Routes",
    "SpaceGuard",
    "endpoint_label",
    "install",
]

log = logging.getLogger("kiln.service")

OTHER = "_other"  # the endpoint of a path that matches no route
UNKNOWN = UNKNOWN_LABEL  # a route's {name} or {version} that this worker does not serve
CHECK_SECONDS = 5.0  # how often SpaceGuard looks at the metrics directory's free space
_STILL_FULL = 1 << 20  # after a file could not grow: not ready until this much is free
MODEL_PARAM = "/models/{name}"  # a route whose {name} (and {version}) name a served model
_PARAM = re.compile(r"\{(\w+)(?::\w+)?\}")


class Routes:
    """The route templates of an app, as (pattern, template, parameter names), and the
    templates without parameters, which are their own label."""

    def __init__(self, templates: Iterable[str]) -> None:
        self.fixed: set[str] = set()
        self.patterns: list[tuple[re.Pattern[str], str]] = []
        for template in dict.fromkeys(templates):
            if _PARAM.search(template) is None:
                self.fixed.add(template)
            else:
                self.patterns.append((compile_path(template)[0], _PARAM.sub(r"{\1}", template)))

    @classmethod
    def of(cls, app: Any) -> Routes:
        return cls(_templates(getattr(app, "routes", ())))


def _templates(routes: Iterable[Any], prefix: str = "") -> Iterator[str]:
    """Every route's path template, mounts walked into (files: ``prefix/{path:path}``)."""
    for route in routes:
        included = getattr(route, "original_router", None)  # FastAPI's include_router
        if included is not None:
            inner_prefix = getattr(getattr(route, "include_context", None), "prefix", "")
            yield from _templates(included.routes, prefix + inner_prefix)
            continue
        path = getattr(route, "path", None)
        if not isinstance(path, str):
            continue
        if isinstance(route, Mount):
            inner = getattr(route.app, "routes", None)
            if inner:
                yield from _templates(inner, prefix + path)
            else:
                yield prefix + path + "/{path:path}"
        else:
            yield prefix + path


def endpoint_label(path: str, routes: Routes, versions: Callable[[str], str | None] | None) -> str:
    """The ``endpoint`` label of a request path: a value from a set the service owns.

    ``versions(name)`` is the version served under a model name, ``""`` for a model that
    failed to load, None for a name that is no model here.
    """
    if path in routes.fixed:
        return path
    for pattern, template in routes.patterns:
        match = pattern.match(path)
        if match is None:
            continue
        if MODEL_PARAM not in template:
            return template  # e.g. the try page's /try/{name}: its files are no model
        values = match.groupdict()
        served = versions(values["name"]) if versions is not None else None
        label = template.replace("{name}", values["name"] if served is not None else UNKNOWN)
        if "version" in values:
            version = values["version"] if served and values["version"] == served else UNKNOWN
            label = label.replace("{version}", version)
        return label
    return OTHER


def _plane_versions(plane: Any) -> Callable[[str], str | None] | None:
    if plane is None:
        return None

    def versions(name: str) -> str | None:
        served = plane.models.get(name)
        if served is not None:
            return str(served.version)
        return "" if name in plane.failed else None

    return versions


class BoundedTrafficMetrics(RunnerTrafficMetricsMiddleware):
    """BentoML's ``RunnerTrafficMetricsMiddleware`` whose ``endpoint`` is
    :func:`endpoint_label`; installed in its place by :func:`install`.

    ``plane()`` is the data plane (None while starting); ``guard`` watches the metrics
    directory for as long as the app runs (its lifespan). Only HTTP requests are measured:
    Kiln serves no WebSocket route, and BentoML's WebSocket metrics would label any path.
    """

    def __init__(
        self, app: ASGIApp, plane: Callable[[], Any], min_free_bytes: int = 0, **options: Any
    ) -> None:
        super().__init__(app, **options)
        self.plane = plane
        self.routes: Routes | None = None
        self._labels: dict[str, str] = {}  # paths that are their own label (a bounded set)
        self._endpoint_children: dict[str, tuple[Any, Any]] = {}
        self._status_children: dict[tuple[str, int], tuple[Any, Any]] = {}
        # Built with the app, in the worker, where prometheus_client's mode is settled (its
        # directory is BentoML's, the PROMETHEUS_MULTIPROC_DIR it gives each worker).
        from bentoml._internal.configuration.containers import BentoMLContainer

        self.guard = SpaceGuard(BentoMLContainer.prometheus_multiproc_dir.get(), min_free_bytes)
        reserve_file_growth()

    def endpoint(self, scope: Scope) -> str:
        path: str = scope["path"]
        known = self._labels.get(path)
        if known is not None:
            return known
        if self.routes is None:
            self.routes = Routes.of(scope.get("app"))
        label = endpoint_label(path, self.routes, _plane_versions(self.plane()))
        if label == path and len(self._labels) < 4096:
            self._labels[path] = label
        return label

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            watcher = asyncio.create_task(self.guard.watch(self.plane), name="kiln-metrics-dir")
            try:
                await self.app(scope, receive, send)
            finally:
                watcher.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await watcher
            return
        if scope["type"] != "http" or scope["path"] == "/metrics":
            await self.app(scope, receive, send)
            return
        if not self._is_setup:
            self._setup()
        # The rest is BentoML's __call__ for HTTP, with the bounded label.
        from timeit import default_timer

        from bentoml._internal.context import server_context

        endpoint = self.endpoint(scope)
        timestamp, in_progress = self._children(endpoint, server_context)
        if timestamp is not None:
            timestamp.set_to_current_time()
        start = default_timer()
        status = 0

        async def measured_send(message: Any) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body" and not message.get("more_body"):
                total, duration = self._answered(endpoint, status, server_context)
                total.inc()
                duration.observe(max(default_timer() - start, 0))
            await send(message)

        with in_progress.track_inprogress():
            await self.app(scope, receive, measured_send)

    # The metric children of an endpoint (and status), looked up once: prometheus_client's
    # labels() with keywords costs more than the update itself, four times per request. The
    # endpoints are a bounded set (endpoint()), and so are the statuses.
    def _names(self, context: Any) -> dict[str, str]:
        return {
            "service_name": context.bento_name,
            "service_version": context.bento_version,
            "runner_name": context.service_name,
        }

    def _children(self, endpoint: str, context: Any) -> tuple[Any, Any]:
        found = self._endpoint_children.get(endpoint)
        if found is None:
            names = self._names(context)
            skipped = endpoint.startswith(tuple(self.skip_paths))
            timestamp = None if skipped else self.metrics_last_request_timestamp.labels(**names)
            in_progress = self.metrics_request_in_progress.labels(endpoint=endpoint, **names)
            found = self._endpoint_children[endpoint] = (timestamp, in_progress)
        return found

    def _answered(self, endpoint: str, status: int, context: Any) -> tuple[Any, Any]:
        key = (endpoint, status)
        found = self._status_children.get(key)
        if found is None:
            labels = {**self._names(context), "endpoint": endpoint, "http_response_code": status}
            found = self._status_children[key] = (
                self.metrics_request_total.labels(**labels),
                self.metrics_request_duration.labels(**labels),
            )
        return found


class SpaceGuard:
    """Watches the free space of the metrics directory; below ``min_free`` bytes (or when a
    file could not grow) the worker is not ready, and says why once in the log."""

    def __init__(self, directory: str | None, min_free: int) -> None:
        self.directory = directory
        self.min_free = min_free
        self.problem: str | None = None

    def check(self) -> str | None:
        """The problem with the directory now (None: none), logged when it changes."""
        problem = None
        if self.directory and (self.min_free > 0 or FILES.refused):
            try:
                stat = os.statvfs(self.directory)
            except OSError as exc:
                problem = f"metrics directory {self.directory} cannot be read: {exc.strerror}"
            else:
                free = stat.f_bavail * stat.f_frsize
                if FILES.refused and free < max(self.min_free, _STILL_FULL):
                    problem = FILES.refused
                elif free < self.min_free:
                    problem = (
                        f"metrics directory {self.directory} has {free / 2**20:.1f} MiB free, "
                        f"below KILN_SERVE_METRICS_MIN_FREE_BYTES ({self.min_free / 2**20:.1f} "
                        "MiB); when it is full new metric series are lost: free space there "
                        "or give the volume more"
                    )
        if problem != self.problem:
            if problem is not None:
                log.error("not ready: %s", problem)
            else:
                log.warning("metrics directory %s has space again: ready", self.directory)
            self.problem = problem
        return problem

    def apply(self, plane: Any) -> None:
        """Put the current problem on the served models' set, which /readyz reads."""
        served = getattr(plane, "served", None)
        if served is None:
            return
        if self.problem is None:
            served.problems.pop("metrics", None)
        else:
            served.problems["metrics"] = self.problem

    async def watch(self, plane: Callable[[], Any]) -> None:
        """Check now and every ``CHECK_SECONDS``, for as long as the service runs."""
        while True:
            try:
                self.check()
                self.apply(plane())
            except Exception:  # the watch must outlive anything one check meets
                log.exception("could not check the metrics directory")
            await asyncio.sleep(CHECK_SECONDS)


# -- prometheus_client's files: reserve before growing -------------------------------------


class _Files:
    """What became of this process's metric files: ``refused`` says why a value could not
    get space (the first time), else None. One per process, as prometheus_client's files."""

    refused: str | None = None


FILES = _Files()


def _reserved_class(base: type[Any]) -> type[Any]:
    """prometheus_client's ``MmapedDict`` whose file's blocks are reserved
    (``posix_fallocate``) before it is created or grown, so a full filesystem raises ENOSPC
    here instead of SIGBUS at the first write through the map. A value that cannot get
    space is kept in memory only (not exported) and ``FILES.refused`` says so; nothing else
    changes."""
    initial = 1 << 16  # prometheus_client's _INITIAL_MMAP_SIZE

    def refuse(filename: str, exc: OSError) -> None:
        if FILES.refused is None:
            FILES.refused = (
                f"metrics directory {Path(filename).parent} is full "
                f"({exc.strerror}): new metric series are not exported"
            )  # SpaceGuard logs it and takes the worker out of service

    class ReservedMmapedDict(base):
        def __init__(self, filename: str, read_mode: bool = False) -> None:
            self._spilled: dict[str, tuple[float, float]] = {}
            if not read_mode:
                try:
                    with Path(filename).open("a+b") as f:
                        if os.fstat(f.fileno()).st_size == 0:
                            os.posix_fallocate(f.fileno(), 0, initial)
                except OSError as exc:
                    if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
                        raise
                    with contextlib.suppress(OSError):
                        if Path(filename).stat().st_size == 0:  # it would break /metrics
                            Path(filename).unlink()
                    refuse(filename, exc)
                    self._f = self._m = None
                    self._positions: dict[str, int] = {}
                    self._fname, self._used, self._capacity = filename, 8, 0
                    return
            super().__init__(filename, read_mode)

        def _init_value(self, key: str) -> None:
            encoded = len(key.encode("utf-8"))
            size = 4 + encoded + (8 - (encoded + 4) % 8) + 16
            capacity = self._capacity
            while capacity and self._used + size > capacity:
                capacity *= 2
            try:
                if self._f is None:
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
                if capacity > self._capacity:
                    os.posix_fallocate(self._f.fileno(), 0, capacity)
            except OSError as exc:
                if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
                    raise
                refuse(self._fname, exc)
                self._spilled[key] = (0.0, 0.0)
                return
            super()._init_value(key)

        def read_value(self, key: str) -> tuple[float, float]:
            if key not in self._positions and key not in self._spilled:
                self._init_value(key)
            if key in self._spilled:
                return self._spilled[key]
            return super().read_value(key)

        def write_value(self, key: str, value: float, timestamp: float) -> None:
            if key not in self._positions and key not in self._spilled:
                self._init_value(key)
            if key in self._spilled:
                self._spilled[key] = (value, timestamp)
                return
            super().write_value(key, value, timestamp)

    return ReservedMmapedDict


_EXPECTED = ("_init_value", "read_value", "write_value")


def reserve_file_growth() -> bool:
    """Make prometheus_client's multiprocess files reserve space before they grow (once per
    process; False where its ``MmapedDict`` is not the one this was written against)."""
    from prometheus_client import mmap_dict, values

    current = values.MmapedDict
    if getattr(current, "__name__", "") == "ReservedMmapedDict":
        return True
    if not all(hasattr(current, name) for name in _EXPECTED) or not hasattr(os, "posix_fallocate"):
        log.warning("prometheus_client's files are not guarded: a full disk is a SIGBUS")
        return False
    values.MmapedDict = mmap_dict.MmapedDict = _reserved_class(current)  # type: ignore[misc]
    return True


def install(settings: ServingSettings, plane: Callable[[], Any]) -> None:
    """Make BentoML build its request metrics with bounded labels (call before serving)."""
    from bentoml._internal.server.http import instruments

    instruments.RunnerTrafficMetricsMiddleware = functools.partial(  # type: ignore[misc,assignment]
        BoundedTrafficMetrics, plane=plane, min_free_bytes=settings.metrics_min_free_bytes
    )
