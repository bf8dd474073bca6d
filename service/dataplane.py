"""The data plane both protocols share: which models are served, checks, batching, inference.

A protocol front (JSON records, Open Inference Protocol) decodes a request into typed feature
columns and calls :meth:`DataPlane.infer`; everything after decoding is here, written once.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections import Counter
from dataclasses import dataclass
from typing import Any

from kiln.artifact import FeatureKind, ModelMetadata, Stage, Task
from kiln.errors import (
    ArtifactError,
    InvalidInput,
    KilnError,
    ModelNotFound,
    ModelNotReady,
    Overloaded,
)
from kiln.production import production_model
from kiln.runtime import CUDA, ModelRuntime, default_providers
from kiln.store import StoredModel, get_model, list_models
from kiln.values import check_columns
from service.batching import Batcher, BatchStats, Columns, Outputs
from service.metrics import Metrics
from service.settings import ServingSettings

__all__ = ["DataPlane", "ServedModel", "error_reason", "select_models"]

log = logging.getLogger("kiln.service")


def _production(name: str) -> StoredModel:
    found = production_model(name)
    if found is None:
        raise ModelNotFound(f"{name} (no version passed its quality gate)")
    return found


def select_models(
    settings: ServingSettings,
) -> tuple[list[StoredModel], list[ArtifactError]]:
    """The production version of each model (the promoted one, else the newest that passed
    its gate), or the settings' explicit list: `NAME` follows production, `NAME:VERSION` is
    pinned. Also the models whose files cannot be read (a name in the explicit list that is
    not in the store at all is an error: a mistake in the settings)."""
    if settings.models:
        found: list[StoredModel] = []
        unreadable: list[ArtifactError] = []
        for ref in settings.models:
            try:
                found.append(get_model(ref) if ":" in ref else _production(ref))
            except ArtifactError as exc:
                unreadable.append(exc)
        return found, unreadable
    models, problems = list_models()
    names = sorted({m.metadata.name for m in models if m.stage is Stage.candidate})
    return [_production(name) for name in names], problems


def error_reason(exc: BaseException) -> str:
    """The `reason` label of kiln_request_errors_total for an error."""
    if isinstance(exc, ModelNotFound):
        return "model_not_found"
    if isinstance(exc, Overloaded | ModelNotReady):
        return "overloaded"
    if isinstance(exc, InvalidInput):
        return "invalid_input"
    return "internal"


@dataclass
class ServedModel:
    runtime: ModelRuntime
    batcher: Batcher

    @property
    def metadata(self) -> ModelMetadata:
        return self.runtime.metadata

    @property
    def name(self) -> str:
        return self.runtime.name

    @functools.cached_property
    def features(self) -> list[tuple[str, FeatureKind]]:
        """(name, kind) of each feature, in the model's order, as the codecs take them."""
        return [(f.name, f.kind) for f in self.metadata.features]

    @property
    def version(self) -> str:
        return self.runtime.version

    def describe(self) -> dict[str, Any]:
        """What `GET /v1/models/{name}` shows."""
        meta = self.metadata
        report = self.runtime.providers
        return {
            "name": meta.name,
            "version": meta.version,
            "task": meta.task.value,
            "description": (meta.provenance.spec or {}).get("description", ""),
            "estimator": meta.estimator,
            "target": meta.target,
            "classes": meta.classes,
            "features": [
                {"name": f.name, "kind": f.kind.value, "dtype": f.dtype, "categories": f.categories}
                for f in meta.features
            ],
            "outputs": [o.model_dump() for o in meta.outputs],
            "metrics": meta.evaluation.metrics,
            "baseline": meta.evaluation.baseline,
            "created_at": meta.provenance.created_at.isoformat(),
            "execution": {
                "provider": report.provider,
                "providers": report.active,
                "graph_nodes": report.nodes,
                "cpu_nodes": report.cpu_nodes,
            },
        }


class DataPlane:
    """The served models and the one inference path."""

    def __init__(self, settings: ServingSettings, metrics: Metrics | None = None) -> None:
        self.settings = settings
        self.metrics = metrics
        self._children: dict[tuple[int, tuple[str, ...]], Any] = {}
        self.models: dict[str, ServedModel] = {}
        self.failed: dict[str, str] = {}
        self.pinned = {ref.split(":")[0] for ref in settings.models if ":" in ref}
        self.providers: list[str] = []

    @classmethod
    def load(cls, settings: ServingSettings, metrics: Metrics | None = None) -> DataPlane:
        """Open and warm up every model to serve; raise if ``require_gpu`` cannot be met."""
        plane = cls(settings, metrics)
        providers = settings.providers or default_providers()
        available = default_providers(every=True)
        missing = [p for p in providers if p not in available]
        if missing:
            raise KilnError(
                f"execution provider {missing[0]} is not available in this onnxruntime "
                f"(available: {', '.join(available)}); check KILN_SERVE_PROVIDERS"
            )
        if settings.require_gpu and CUDA not in providers:
            raise KilnError(
                "require_gpu is set but the CUDA execution provider is not available "
                f"(available: {', '.join(default_providers())})"
            )
        plane.providers = providers
        stored_models, problems = select_models(settings)
        for stored in stored_models:
            try:
                plane.add(stored, providers)
            except ArtifactError as exc:  # this model only: the others still serve
                plane.fail(stored.metadata.name, exc)
        for problem in problems:  # unreadable versions: a failure unless another serves
            name = problem.tag.split(":")[0]
            if name in plane.models or name in plane.failed:
                log.error("skipping an unreadable model: %s", problem)
            else:
                plane.fail(name, problem)
        if not plane.models and not plane.failed:
            log.warning("no model to serve: train one (make train) or set KILN_SERVE_MODELS")
        return plane

    def _open(self, stored: StoredModel, providers: list[str]) -> ModelRuntime:
        runtime = ModelRuntime(stored, providers, self.settings.intra_op_threads)
        if self.settings.require_gpu and runtime.providers.provider != CUDA:
            raise KilnError(
                f"require_gpu is set but {stored.tag} runs on {runtime.providers.provider}"
            )
        runtime.warm_up()
        return runtime

    def fail(self, name: str, exc: KilnError) -> None:
        """Mark ``name`` not ready: it cannot be loaded. The other models keep serving; its
        requests get 503 and ``/readyz`` names it."""
        self.failed[name] = exc.message
        log.error("model %s cannot be served: %s", name, exc.message)
        if self.metrics:
            self.metrics.load_failures.labels(name).inc()
            self.metrics.ready.labels(name).set(0)

    def add(self, stored: StoredModel, providers: list[str]) -> ServedModel:
        return self._serve(self._open(stored, providers))

    def _serve(self, runtime: ModelRuntime) -> ServedModel:
        limits = self.settings.limits_for(runtime.name)
        batcher = Batcher(
            runtime.name,
            runtime.run,
            max_batch_rows=limits.max_batch_rows,
            max_wait_ms=limits.max_wait_ms,
            merge=limits.enabled,
            max_queue_rows=self.settings.max_queue_rows,
            on_batch=functools.partial(self._observe_batch, runtime),
        )
        served = ServedModel(runtime, batcher)
        previous = self.models.get(runtime.name)
        self.models[runtime.name] = served  # new requests go to the new version from here on
        if self.metrics:
            meta = runtime.metadata
            if previous is not None:
                old = previous.metadata
                self.metrics.info.labels(
                    old.name,
                    old.version,
                    str(old.provenance.opset.get("", "")),
                    previous.runtime.providers.provider,
                    old.task.value,
                ).set(0)
            self.metrics.info.labels(
                runtime.name,
                runtime.version,
                str(meta.provenance.opset.get("", "")),
                runtime.providers.provider,
                meta.task.value,
            ).set(1)
            self.metrics.ready.labels(runtime.name).set(1)
        return served

    @property
    def ready(self) -> bool:
        return bool(self.models) and not self.failed

    def get(self, name: str, version: str | None = None) -> ServedModel:
        served = self.models.get(name)
        if served is None:
            if name in self.failed:
                raise ModelNotReady(name, self.failed[name])
            raise ModelNotFound(name, self.models)
        if version is not None and version != served.version:
            raise ModelNotFound(f"{name}:{version}", [f"{name}:{served.version}"])
        return served

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
            served = self.get(name, version)
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

    async def refresh(self) -> list[str]:
        """Swap in any newly promoted production version; return the tags swapped in.

        The new version is opened and warmed up on a thread while the old one keeps
        serving; then new requests go to the new version, and the old one finishes what it
        had queued before it is closed. Nothing in flight is dropped.
        """
        names = set(self.models) - self.pinned
        if not self.settings.models:  # serving everything: models promoted since start too
            names |= {m.metadata.name for m in list_models()[0] if m.stage is Stage.candidate}
        swapped: list[str] = []
        for name in sorted(names):
            target = production_model(name)
            served = self.models.get(name)
            if target is None or (served and served.version == target.metadata.version):
                continue
            runtime = await asyncio.to_thread(self._open, target, self.providers)
            self._serve(runtime)
            swapped.append(target.tag)
            log.info("now serving %s (was %s)", target.tag, served.version if served else "none")
            if served is not None:
                await served.batcher.drain()
                await served.batcher.close()
        return swapped

    async def watch(self) -> None:
        """Poll for production changes every `poll_seconds`, for as long as the service runs."""
        while True:
            await asyncio.sleep(self.settings.poll_seconds)
            try:
                await self.refresh()
            except Exception:  # a bad new version must not stop the old one serving
                log.exception("could not swap in a new production version")

    async def close(self) -> None:
        for served in self.models.values():
            await served.batcher.close()
