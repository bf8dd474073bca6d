"""The data plane both protocols share: checks, batching and inference over the served models.

A protocol front (JSON records, Open Inference Protocol) decodes a request into typed feature
columns and calls :meth:`DataPlane.infer`; everything after decoding is here, written once.
Which models are served, and their loading, hot swap and failures, are service/models.py's.

Admission comes first. Right before a front reads a body it calls :meth:`DataPlane.admit`
with the body's declared size (Content-Length): under overload the request is refused there,
503, before a byte of its body is read or decoded (decoding a 1,000-row JSON body costs more
than running it). The rows a body holds are not in its headers, so ``admit`` estimates them
from the size, with the bytes per row of the model's recent requests of the same protocol,
and reserves that room in the model's queue (:meth:`service.batching.Batcher.reserve`); a
request the estimate admitted is queued with its real row count by :meth:`DataPlane.infer`,
which gives the reservation back first. Reserving, rather than only comparing the estimate
with the queue, keeps the bodies being read and decoded in the count: many requests can be
between ``admit`` and ``infer`` at once, and each would otherwise see the same free room and
be decoded only to be refused. The estimate only matters near a full queue (an idle model
takes any request); the real row count is checked again when the request is queued.

The reservation travels from ``admit`` to ``infer`` in a context variable: both run in the
request's task, and the routes need not carry it. It is given back on every way out:
``infer`` (queued, or failed), :meth:`DataPlane.record_error` (the body was refused), and,
for anything unexpected, when the request's task is gone (the reservation's finalizer).
"""

from __future__ import annotations

import contextvars
import functools
import math
from collections import Counter
from dataclasses import dataclass
from typing import Any

import numpy as np

from kiln.artifact import CheckMode, Task
from kiln.checks import MAX_WARNINGS, Finding, InputChecks
from kiln.errors import (
    InputRejected,
    InvalidInput,
    KilnError,
    ModelNotFound,
    ModelNotReady,
    NonFiniteOutput,
    Overloaded,
)
from kiln.runtime import CPU, ModelRuntime
from kiln.values import check_columns, nonfinite_outputs
from service.batching import Batcher, BatchStats, Columns, Outputs, Reservation
from service.metrics import UNKNOWN_LABEL, Metrics
from service.models import ModelSet, ServedModel
from service.settings import ServingSettings

__all__ = ["PROTOCOLS", "Admission", "DataPlane", "Inference", "error_reason"]

PROTOCOLS = ("json", "v2", "v2-binary", "grpc")
"""Bodies whose bytes per row are learned apart: JSON records, V2 JSON, V2 binary tensors,
and V2 gRPC messages (service/grpc/servicer.py)."""

_LEARN = 0.2  # weight of the newest request in the bytes-per-row average

_FLAGGED = "kiln:flagged"
"""The output a checked batch adds (no model output has a colon in its name): the rows that
failed each input check, as :meth:`kiln.checks.InputChecks.flags` blocks them. The batcher
slices it per request like the model's outputs; :meth:`DataPlane.infer` takes it out before
anything else sees them."""


@dataclass
class Admission:
    """A request admitted by :meth:`DataPlane.admit`, on its way to :meth:`DataPlane.infer`."""

    model: str
    protocol: str
    declared_bytes: int | None
    reservation: Reservation


@dataclass
class Inference:
    """What :meth:`DataPlane.infer` answers: the version that ran, its outputs, and, under the
    ``warn`` input-check mode, the findings to return with them (kiln/checks.py): at most
    ``MAX_WARNINGS`` of them, ``warning_count`` in all (0 when there is nothing to say)."""

    served: ServedModel
    outputs: Outputs
    warnings: list[Finding]
    warning_count: int


_admitted: contextvars.ContextVar[Admission | None] = contextvars.ContextVar(
    "kiln_admitted", default=None
)


def _take_admission() -> Admission | None:
    """The request's admission, given back to the queue: each is used once."""
    admitted = _admitted.get()
    if admitted is not None:
        _admitted.set(None)
        admitted.reservation.release()
    return admitted


def _declared(value: int | str | None) -> int | None:
    if isinstance(value, int):
        return value
    return int(value) if value is not None and value.isdigit() else None


def error_reason(exc: BaseException) -> str:
    """The `reason` label of kiln_request_errors_total for an error."""
    if isinstance(exc, ModelNotFound):
        return "model_not_found"
    if isinstance(exc, Overloaded | ModelNotReady):
        return "overloaded"
    if isinstance(exc, InvalidInput):
        return "invalid_input"
    return "internal"


class DataPlane:
    """The one inference path over the served models (:class:`service.models.ModelSet`)."""

    def __init__(self, settings: ServingSettings, metrics: Metrics | None = None) -> None:
        self.settings = settings
        self.metrics = metrics
        self._children: dict[tuple[int, tuple[str, ...]], Any] = {}
        self._bytes_per_row: dict[tuple[str, str], float] = {}  # (model, protocol) -> average
        self.served = ModelSet(settings, self._batcher, metrics)

    @classmethod
    def load(cls, settings: ServingSettings, metrics: Metrics | None = None) -> DataPlane:
        """Open and warm up every model to serve; raise if ``require_gpu`` cannot be met."""
        plane = cls(settings, metrics)
        plane.served.load()
        return plane

    # The lifecycle's state and operations, as the fronts and the service use them.
    @property
    def models(self) -> dict[str, ServedModel]:
        return self.served.models

    @property
    def failed(self) -> dict[str, str]:
        return self.served.failed

    @property
    def problems(self) -> dict[str, str]:
        """What else keeps this worker out of service (a full metrics directory)."""
        return self.served.problems

    @property
    def ready(self) -> bool:
        return self.served.ready

    def get(self, name: str, version: str | None = None) -> ServedModel:
        return self.served.get(name, version)

    async def refresh(self) -> list[str]:
        return await self.served.refresh()

    async def watch(self) -> None:
        await self.served.watch()

    async def close(self) -> None:
        await self.served.close()

    def _batcher(self, runtime: ModelRuntime, checks: InputChecks | None) -> Batcher:
        limits = self.settings.limits_for(runtime.name)
        run = runtime.run if checks is None else functools.partial(self._run, runtime, checks)
        return Batcher(
            runtime.name,
            run,
            max_batch_rows=limits.max_batch_rows,
            max_wait_ms=limits.max_wait_ms,
            merge=limits.enabled,
            # CPU time cannot see a call that waits for a device (service/batching.py)
            inline_max_ms=limits.inline_max_ms if runtime.providers.provider == CPU else 0.0,
            max_queue_rows=self.settings.max_queue_rows,
            on_batch=functools.partial(self._observe_batch, runtime),
        )

    def _child(self, family: Any, *labels: str) -> Any:
        """``family.labels(*labels)``, looked up once: the lookup costs more than the update."""
        key = (id(family), labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = family.labels(*labels)
        return child

    def _observe_batch(self, runtime: ModelRuntime, stats: BatchStats) -> None:
        if not self.metrics:
            return
        labels = (runtime.name, runtime.version)
        self._child(self.metrics.inference_seconds, *labels).observe(stats.seconds)
        self._child(self.metrics.batch_rows, *labels).observe(stats.rows)
        waits = self._child(self.metrics.batch_wait_seconds, *labels)
        for wait in stats.waits:
            waits.observe(wait)

    def record_error(self, model: str, exc: BaseException) -> None:
        """Count an error answer; a front calls this for what it refuses itself (a bad body),
        which also gives back the room its admission held."""
        _take_admission()
        if self.metrics:
            # The name comes from the URL: a label only when it is a model this worker knows,
            # else every name a client invents would be a new series.
            known = model in self.served.models or model in self.served.failed
            label = model if known else UNKNOWN_LABEL
            self.metrics.errors.labels(label, error_reason(exc)).inc()

    def estimate_rows(self, name: str, protocol: str, declared_bytes: int | None) -> int:
        """Rows a body of ``declared_bytes`` likely holds: its size over the bytes per row of
        the model's recent requests of ``protocol``; 1 when either is unknown."""
        per_row = self._bytes_per_row.get((name, protocol))
        if declared_bytes is None or per_row is None:
            return 1
        rows = math.ceil(declared_bytes / per_row)
        return max(1, min(rows, self.settings.max_rows_per_request))

    async def admit(
        self,
        name: str,
        version: str | None,
        declared_bytes: int | str | None,
        protocol: str = "json",
    ) -> Admission:
        """Admit a request before its body is read, or raise ``Overloaded`` (503): room for
        its estimated rows (:meth:`estimate_rows`) is reserved in the model's queue until
        :meth:`infer` queues it, waiting up to ``admission_wait`` (a setting) for room.
        ``declared_bytes``: the Content-Length, as sent or parsed."""
        _take_admission()  # one per request: a stale one (a pipelined request's) goes back
        served = self.served.get(name, version)
        size = _declared(declared_bytes)
        rows = self.estimate_rows(name, protocol, size)
        reservation = await served.batcher.reserve_within(rows, self.settings.admission_wait)
        admission = Admission(name, protocol, size, reservation)
        _admitted.set(admission)
        return admission

    def _learn(self, admitted: Admission | None, name: str, rows: int) -> None:
        if admitted is None or admitted.model != name or not admitted.declared_bytes:
            return
        key = (name, admitted.protocol)
        per_row = admitted.declared_bytes / rows
        known = self._bytes_per_row.get(key)
        self._bytes_per_row[key] = per_row if known is None else known + _LEARN * (per_row - known)

    def _check_finite(self, served: ServedModel, outputs: Outputs) -> None:
        bad = nonfinite_outputs(outputs)
        if bad:
            if self.metrics:
                self._child(self.metrics.nonfinite, served.name).inc(len(bad))
            raise NonFiniteOutput(bad)

    # The input checks (kiln/checks.py) run where they cost least. Under ``accept`` and
    # ``warn`` a batch is checked once, on the inference thread beside the model (:meth:`_run`):
    # checked one request at a time on the event loop, a one-row request paid about 10 us of
    # the loop's time, a tenth of all it costs there (bench/RESULTS.md), where a batch of 30
    # merged rows pays about the same once. The findings are counted there, per batch; a
    # request that holds a flagged row gets its own rows of the batch's masks and words the
    # findings from them (:meth:`_warnings`), which only rows that failed a check cost (it
    # used to check its rows again on the loop: 67 us of a flagged 1,000-row request's time
    # there, 45 us now). ``reject`` must refuse
    # before the model runs, so it checks each request before queueing it (:meth:`_reject`).
    def _run(self, runtime: ModelRuntime, checks: InputChecks, columns: Columns) -> Outputs:
        """Run the model on a batch, and the input checks on the same rows (worker thread):
        the findings are counted, and the rows that failed one flagged in ``_FLAGGED``."""
        outputs = runtime.run(columns)
        masks = checks.masks(columns)
        if masks:
            self._count_findings(runtime.name, checks.counts(masks))
        outputs[_FLAGGED] = checks.flags(masks, len(next(iter(columns.values()))))
        return outputs

    def _reject(self, served: ServedModel, columns: Columns) -> None:
        """``reject``: refuse a request with a row that fails a check (counted too)."""
        try:
            served.checks.inspect(columns, CheckMode.reject)
        except InputRejected as exc:
            self._count_findings(served.name, exc.counts)
            raise

    @staticmethod
    def _warnings(
        served: ServedModel, columns: Columns, flagged: np.ndarray | None
    ) -> tuple[list[Finding], int]:
        """``warn``: the findings of a request whose batch flagged some of its rows (already
        counted), the first ``MAX_WARNINGS`` of them and how many there were."""
        # count_nonzero: a quarter of the time of .any() on a one-row slice
        if served.check_mode is not CheckMode.warn or flagged is None:
            return [], 0
        total = int(np.count_nonzero(flagged))  # a finding per flagged cell
        if not total:
            return [], 0
        masks = served.checks.from_flags(flagged)
        return served.checks.findings(columns, masks, limit=MAX_WARNINGS), total

    def _count_findings(self, name: str, counts: dict[tuple[str, str], int]) -> None:
        if self.metrics:
            # the feature label is one of the model's own names (InputChecks'), never the client's
            for (feature, reason), rows in counts.items():
                self._child(self.metrics.input_checks[reason], name, feature).inc(rows)

    async def infer(
        self, name: str, columns: Columns, rows: int, version: str | None = None
    ) -> Inference:
        """Check, batch and run ``rows`` rows of typed columns; errors are counted. The whole
        request is queued or none of it (``Overloaded``); its rows are counted as received
        once it is queued. Rows unlike the training data are counted by feature and reason,
        and returned as warnings or refused (``InputRejected``, 422) by the input-check mode.
        A row whose answer is not a finite number fails the request with ``NonFiniteOutput``
        (422), naming the row."""
        admitted = _take_admission()
        try:
            served = self.served.get(name, version)
            check_columns(served.metadata, columns)
            if served.check_mode is CheckMode.reject:
                self._reject(served, columns)
            self._learn(admitted, name, rows)
            chunks = served.batcher.submit(columns, rows)
            if self.metrics:
                self._child(self.metrics.rows, name, served.version).inc(rows)
            outputs = await Batcher.gather(chunks)
            flagged = outputs.pop(_FLAGGED, None)
            self._check_finite(served, outputs)
            served.sample_drift(columns, outputs, rows)  # service/drift.py
            warnings, warning_count = self._warnings(served, columns, flagged)
        except KilnError as exc:
            self.record_error(name, exc)
            raise
        except Exception as exc:
            self.record_error(name, exc)
            raise KilnError(f"model {name!r}: inference failed: {exc}") from exc
        if self.metrics and served.metadata.task is Task.classification:
            for label, count in _label_counts(outputs["label"], served.metadata.classes):
                self._child(self.metrics.predictions, name, served.version, str(label)).inc(count)
        return Inference(served, outputs, warnings, warning_count)


_COUNT_BY_CLASS = 64  # rows from which labels are counted class by class (_label_counts)
_FEW_CLASSES = 16  # and the most classes they are counted for that way


def _label_counts(labels: np.ndarray, classes: list[Any] | None) -> list[tuple[Any, int]]:
    """(label, rows) for each label answered. Many rows of a model with a few classes are
    counted one class at a time (``list.count``, C-level equality): a third of the time of a
    Counter for 1,000 rows of two classes, which hashes every label. Labels that are not the
    model's classes as listed (an integer label of classes listed as strings) fall back to
    the Counter."""
    values = labels.tolist()
    if classes and len(values) >= _COUNT_BY_CLASS and len(classes) <= _FEW_CLASSES:
        counts = [(c, values.count(c)) for c in classes]
        if sum(n for _, n in counts) == len(values):
            return [(c, n) for c, n in counts if n]
    return list(Counter(values).items())
