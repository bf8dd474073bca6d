"""One model in ONNX Runtime: its session, its inputs, the provider it runs on.

Opened once, warmed up with one prediction, then called with typed feature columns. Nothing
here knows about HTTP, batching or BentoML; the service, the in-process Predictor, batch
scoring and retraining all open models through this class.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from kiln.artifact import FeatureKind, ModelMetadata
from kiln.errors import ArtifactError, KilnError
from kiln.store import StoredModel

__all__ = ["CPU", "CUDA", "ModelRuntime", "ProviderReport", "default_providers"]

log = logging.getLogger("kiln")
CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"


def default_providers(every: bool = False) -> list[str]:
    """CUDA then CPU where onnxruntime-gpu is installed, else CPU (``every``: all available)."""
    import onnxruntime as ort

    available: list[str] = ort.get_available_providers()
    if every:
        return available
    return [p for p in (CUDA, CPU) if p in available] or [CPU]


@dataclass(frozen=True)
class ProviderReport:
    """Where a model's graph runs."""

    requested: list[str]
    active: list[str]  # what the session actually uses, in priority order
    nodes: int  # nodes in the optimised graph
    cpu_nodes: int  # of which run on the CPU provider (e.g. ai.onnx.ml trees under CUDA)

    @property
    def provider(self) -> str:
        return self.active[0]

    @property
    def cpu_share(self) -> float:
        return self.cpu_nodes / self.nodes if self.nodes else 1.0


def _cpu_nodes(metadata: ModelMetadata, active: list[str]) -> tuple[int, int]:
    """(nodes, nodes on the CPU provider). Under CUDA, ai.onnx.ml operators (trees, linear
    classifiers, scalers, encoders) have no CUDA kernels and fall back to the CPU."""
    counts = metadata.onnx_nodes or {}
    nodes = sum(counts.values())
    if active[0] != CUDA:
        return nodes, nodes
    return nodes, counts.get("ai.onnx.ml", 0)


class ModelRuntime:
    """An opened, warmed-up ONNX Runtime session for one registered model version."""

    def __init__(self, stored: StoredModel, providers: list[str], intra_op_threads: int = 1):
        import onnxruntime as ort

        self.stored = stored
        self.metadata: ModelMetadata = stored.metadata
        self.name = self.metadata.name
        self.version = self.metadata.version
        model_bytes = stored.read_onnx()
        options = ort.SessionOptions()
        options.intra_op_num_threads = intra_op_threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(model_bytes, options, providers=providers)
        except Exception as exc:  # ORT raises its own exception types
            raise ArtifactError(stored.tag, f"ONNX Runtime cannot load model.onnx: {exc}") from None
        active = self.session.get_providers()
        nodes, cpu_nodes = _cpu_nodes(self.metadata, active)
        self.providers = ProviderReport(providers, active, nodes, cpu_nodes)
        self.features = [(f.name, f.kind, f.input) for f in self.metadata.features]
        self.output_names = [o.name for o in self.metadata.outputs]

    def run(self, columns: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Predict on typed columns (float32 / object str, 1-D, equal length)."""
        feeds = {onnx_input: columns[name].reshape(-1, 1) for name, _, onnx_input in self.features}
        try:
            results = self.session.run(self.output_names, feeds)
        except Exception as exc:
            raise KilnError(f"model {self.name!r}: ONNX Runtime failed: {exc}") from exc
        return dict(zip(self.output_names, results, strict=True))

    def example_columns(self, rows: int = 1) -> dict[str, np.ndarray]:
        """A valid input built from the training statistics (medians, most common values)."""
        columns: dict[str, np.ndarray] = {}
        for name, kind, _ in self.features:
            stats = self.metadata.feature_stats.get(name)
            if kind is FeatureKind.numeric:
                value = (stats.quantiles or {}).get("p50", 0.0) if stats else 0.0
                columns[name] = np.full(rows, value, dtype=np.float32)
            else:
                top = next(iter(stats.top or {}), "") if stats and stats.top else "example"
                columns[name] = np.array([top] * rows, dtype=object)
        return columns

    def warm_up(self) -> None:
        self.run(self.example_columns())
        log.info(
            "model %s loaded on %s (%d of %d graph nodes on CPU)",
            self.stored.tag,
            self.providers.provider,
            self.providers.cpu_nodes,
            self.providers.nodes,
        )
