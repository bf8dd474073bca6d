"""The served models' lifecycle: which versions are served, loading, hot swap and failures.

Which version a name means is decided by the shared core (kiln/resolve.py), the same rule
the in-process Predictor, ``kiln predict`` and ``kiln retrain`` use; this module opens those
versions, warms them up, swaps in a newly promoted one without dropping requests, and keeps
the models that failed to load (each is refused alone; the others serve). Inference itself
is the data plane's (service/dataplane.py).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Literal

from kiln.artifact import CheckMode, FeatureKind, ModelMetadata, Stage
from kiln.checks import InputChecks
from kiln.errors import ArtifactError, KilnError, ModelNotFound, ModelNotReady
from kiln.production import current
from kiln.resolve import parse_ref, production_names, resolve
from kiln.runtime import CUDA, ModelRuntime, default_providers
from kiln.store import StoredModel, list_models
from service.batching import Batcher, Columns, Outputs
from service.codecs.tensors import InputSpec
from service.drift import DriftMonitor, DriftWindow
from service.metrics import Metrics
from service.settings import ServingSettings

__all__ = ["ModelSet", "ServedModel", "select_models", "why_served"]

log = logging.getLogger("kiln.service")


@dataclass
class ServedModel:
    runtime: ModelRuntime
    batcher: Batcher
    # the model's input checks (kiln/checks.py), built once from its kiln.json, and the mode
    # they run under: the one set for the model in the settings, else its own
    checks: InputChecks
    check_mode: CheckMode | Literal["off"]
    # this version's rolling drift window (service/drift.py); None: drift off, or no
    # training reference in its kiln.json
    drift: DriftWindow | None = None

    @property
    def metadata(self) -> ModelMetadata:
        return self.runtime.metadata

    @property
    def name(self) -> str:
        return self.runtime.name

    @cached_property
    def features(self) -> list[tuple[str, FeatureKind]]:
        """(name, kind) of each feature, in the model's order, as the codecs take them."""
        return [(f.name, f.kind) for f in self.metadata.features]

    @cached_property
    def v2_inputs(self) -> list[InputSpec]:
        """The input tensor of each feature, in the model's order (both V2 fronts)."""
        return [InputSpec.of_feature(f.name, f.dtype) for f in self.metadata.features]

    @cached_property
    def output_names(self) -> list[str]:
        """The model's outputs, in its order."""
        return [o.name for o in self.metadata.outputs]

    @property
    def version(self) -> str:
        return self.runtime.version

    def sample_drift(self, columns: Columns, outputs: Outputs, rows: int) -> None:
        """Hand an answered request to this version's drift window (O(1): references)."""
        if self.drift is not None:
            self.drift.offer(columns, outputs, rows)

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


def select_models(
    settings: ServingSettings,
) -> tuple[list[StoredModel], list[ArtifactError]]:
    """The version of each model to serve, and the models whose files cannot be read.

    Every production model (kiln/resolve.py), or the settings' explicit list: `NAME` follows
    production, `NAME:VERSION` is pinned (a rejected version only so, with a warning). A
    name in the explicit list that is not in the store at all is an error: a mistake in the
    settings.
    """
    refs = settings.models or production_names()
    found: list[StoredModel] = []
    unreadable: list[ArtifactError] = []
    for ref in refs:
        try:
            found.append(resolve(ref, warn=log.warning))
        except ArtifactError as exc:
            unreadable.append(exc)
        except ModelNotFound as exc:
            if settings.models:  # named in the settings: a mistake there, stop start-up
                raise
            # production names a version that is gone from the store: this model only
            unreadable.append(ArtifactError(ref, exc.message))
    if not settings.models:  # versions whose kiln.json cannot be read at all
        unreadable += list_models()[1]
    return found, unreadable


def why_served(stored: StoredModel) -> str:
    """Why this version is the one served: its promotion's reason, or the default rule."""
    record = current(stored.metadata.name)
    if record is not None and record.version == stored.metadata.version and record.history:
        return f"promoted: {record.history[-1].reason}"
    if stored.stage is Stage.rejected:
        return "pinned by KILN_SERVE_MODELS (below its quality gate)"
    return "the newest version that passed its quality gate"


@dataclass
class ModelSet:
    """The models being served, those that failed to load, and the swap of new versions.

    ``make_batcher`` builds the batcher a newly opened version answers through (the data
    plane's, with its metrics), given the input checks its batches run, if any: under
    ``accept`` and ``warn`` the checks run once per batch, beside the model (``reject``
    checks each request before it is queued, and ``off`` nothing).
    """

    settings: ServingSettings
    make_batcher: Callable[[ModelRuntime, InputChecks | None], Batcher]
    metrics: Metrics | None = None
    providers: list[str] = field(default_factory=list)
    models: dict[str, ServedModel] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)
    # what else keeps this worker from being ready, by what it concerns, e.g. "metrics": a
    # full metrics directory (service/instruments.py); /readyz names each.
    problems: dict[str, str] = field(default_factory=dict)
    # name -> the tag of a newer version that failed to open (logged once, not every poll)
    _unopenable: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # name -> the NAME:VERSION it is pinned to (never swapped; retried while it fails)
        self.pinned = {parse_ref(ref)[0]: ref for ref in self.settings.models if ":" in ref}
        self.drift = DriftMonitor(self.settings, self.metrics)

    def choose_providers(self) -> list[str]:
        """The execution providers to open models with; raise if the settings can't be met."""
        settings = self.settings
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
        self.providers = providers
        return providers

    def load(self) -> None:
        """Open and warm up every model to serve; a model that fails is refused alone."""
        self.choose_providers()
        stored_models, problems = select_models(self.settings)
        for stored in stored_models:
            try:
                self.serve(self.open(stored))
            except ArtifactError as exc:  # this model only: the others still serve
                self.fail(stored.metadata.name, exc)
                continue
            log.info("serving %s: %s", stored.tag, why_served(stored))
        for problem in problems:  # unreadable versions: a failure unless another serves
            name = parse_ref(problem.tag)[0]
            if name in self.models or name in self.failed:
                log.error("skipping an unreadable model: %s", problem)
            else:
                self.fail(name, problem)
        if not self.models and not self.failed:
            log.warning("no model to serve: train one (make train) or set KILN_SERVE_MODELS")

    def open(self, stored: StoredModel) -> ModelRuntime:
        runtime = ModelRuntime(stored, self.providers, self.settings.intra_op_threads)
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

    def serve(self, runtime: ModelRuntime) -> ServedModel:
        """Route new requests for the runtime's name to it (the old version, if any, is the
        caller's to drain)."""
        previous = self.models.get(runtime.name)
        if previous is not None:  # a hot swap: the new version gets a fresh window
            self.drift.retire(previous.drift)
        window = self.drift.window(runtime.metadata)
        checks = InputChecks(runtime.metadata)
        mode = self.settings.input_checks_for(runtime.name) or checks.mode
        in_batch = checks if mode in (CheckMode.accept, CheckMode.warn) else None
        served = ServedModel(runtime, self.make_batcher(runtime, in_batch), checks, mode, window)
        self.models[runtime.name] = served  # new requests go to the new version from here on
        self.failed.pop(runtime.name, None)  # a model that failed before is ready now
        if self.metrics:
            if previous is not None:
                self._info(previous.runtime).set(0)
            self._info(runtime).set(1)
            self.metrics.ready.labels(runtime.name).set(1)
        return served

    def _info(self, runtime: ModelRuntime) -> Any:
        assert self.metrics is not None
        meta = runtime.metadata
        return self.metrics.info.labels(
            runtime.name,
            runtime.version,
            str(meta.provenance.opset.get("", "")),
            runtime.providers.provider,
            meta.task.value,
        )

    @property
    def ready(self) -> bool:
        return bool(self.models) and not self.failed and not self.problems

    def get(self, name: str, version: str | None = None) -> ServedModel:
        served = self.models.get(name)
        if served is None:
            if name in self.failed:
                raise ModelNotReady(name, self.failed[name])
            raise ModelNotFound(name, self.models)
        if version is not None and version != served.version:
            raise ModelNotFound(f"{name}:{version}", [f"{name}:{served.version}"])
        return served

    def _targets(self) -> list[tuple[str, StoredModel | None, str | None]]:
        """(name, the version it should serve, or None, and why not) for each name that
        follows production, and for each pinned name that failed (its files may have been
        restored since). Reads the store: run off the event loop."""
        failed_pins = {name for name in self.failed if name in self.pinned}
        names = ((set(self.models) | set(self.failed)) - set(self.pinned)) | failed_pins
        if not self.settings.models:  # serving everything: models promoted since start too
            names |= set(production_names())
        targets: list[tuple[str, StoredModel | None, str | None]] = []
        for name in sorted(names):
            try:
                targets.append((name, resolve(self.pinned.get(name, name)), None))
            except KilnError as exc:
                targets.append((name, None, exc.message))
        return targets

    async def refresh(self) -> list[str]:
        """Swap in any newly promoted production version; return the tags swapped in.

        The store is read and the new version opened and warmed up on a thread while the
        old one keeps serving; then new requests go to the new version, and the old one
        finishes what it had queued before it is closed. Nothing in flight is dropped. A
        version that cannot be opened is logged once and the old one keeps serving.
        """
        swapped: list[str] = []
        for name, target, _ in await asyncio.to_thread(self._targets):
            served = self.models.get(name)
            if target is None or (served and served.version == target.metadata.version):
                continue
            try:
                runtime = await asyncio.to_thread(self.open, target)
            except ArtifactError as exc:
                if served is None:
                    if self.failed.get(name) != exc.message:
                        self.fail(name, exc)
                elif self._unopenable.get(name) != target.tag:  # once per bad version
                    self._unopenable[name] = target.tag
                    if self.metrics:
                        self.metrics.load_failures.labels(name).inc()
                    log.error(
                        "cannot swap in %s, still serving %s:%s: %s",
                        target.tag,
                        name,
                        served.version,
                        exc.message,
                    )
                continue
            self._unopenable.pop(name, None)
            self.serve(runtime)
            swapped.append(target.tag)
            log.info(
                "hot swap %s: now serving %s, was %s (%s)",
                name,
                target.metadata.version,
                served.version if served else "none",
                await asyncio.to_thread(why_served, target),
            )
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
        self.drift.close()
        for served in self.models.values():
            await served.batcher.close()
