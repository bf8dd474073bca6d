"""The data plane both protocols share: checks, batching and inference over the served models.

A protocol front (JSON records, Open Inference Protocol) decodes a request into typed feature
columns and calls :meth:`DataPlane.infer`; everything after decoding is here, written once.
Which models are served, and their loading, hot swap and failures, are service/models.py's.
"""

from __future__ import annotations

import functools
from collections import Counter
from typing import Any

from kiln.artifact import Task
from kiln.errors import InvalidInput, KilnError, ModelNotFound, ModelNotReady, Overloaded
from kiln.runtime import ModelRuntime
from kiln.values import check_columns
from service.batching import Batcher, BatchStats, Columns, Outputs
from service.metrics import Metrics
from service.models import ModelSet, ServedModel
from service.settings import ServingSettings

__all__ = ["DataPlane", "error_reason"]


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

    def _batcher(self, runtime: ModelRuntime) -> Batcher:
        limits = self.settings.limits_for(runtime.name)
        return Batcher(
            runtime.name,
            runtime.run,
            max_batch_rows=limits.max_batch_rows,
            max_wait_ms=limits.max_wait_ms,
            merge=limits.enabled,
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
        if self.metrics:
            self.metrics.errors.labels(model, error_reason(exc)).inc()

    async def infer(
        self, name: str, columns: Columns, rows: int, version: str | None = None
    ) -> tuple[ServedModel, Outputs]:
        """Check, batch and run ``rows`` rows of typed columns; errors are counted."""
        try:
            served = self.served.get(name, version)
            check_columns(served.metadata, columns)
            if self.metrics:
                self._child(self.metrics.rows, name, served.version).inc(rows)
            outputs = await served.batcher.predict(columns, rows)
        except KilnError as exc:
            self.record_error(name, exc)
            raise
        except Exception as exc:
            self.record_error(name, exc)
            raise KilnError(f"model {name!r}: inference failed: {exc}") from exc
        if self.metrics and served.metadata.task is Task.classification:
            for label, count in Counter(outputs["label"].tolist()).items():
                self._child(self.metrics.predictions, name, served.version, str(label)).inc(count)
        return served, outputs
