"""The artifact that crosses from training to serving: ``model.onnx`` plus ``kiln.json``.

This module is the one definition of the metadata document. Training writes it, serving and
the CLI read it. It imports neither scikit-learn nor BentoML so that the serving image needs
neither to read a model.

Schema versions: ``SCHEMA_VERSION`` is what this code writes; ``READABLE_VERSIONS`` lists what
it reads. A document of a newer version is refused with a message, never half-read.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from kiln.errors import ArtifactError

__all__ = [
    "HOLDOUT_FILE",
    "HOLDOUT_READABLE_VERSIONS",
    "HOLDOUT_SCHEMA_VERSION",
    "METADATA_FILE",
    "MODEL_FILE",
    "READABLE_VERSIONS",
    "SCHEMA_VERSION",
    "DataFile",
    "Evaluation",
    "Feature",
    "FeatureImportance",
    "FeatureKind",
    "FeatureStats",
    "Gate",
    "GateCheck",
    "Holdout",
    "ModelMetadata",
    "Output",
    "Provenance",
    "Stage",
    "Task",
    "Verification",
    "file_sha256",
    "read_holdout",
    "read_metadata",
    "write_holdout",
    "write_metadata",
]

SCHEMA_VERSION = 1
READABLE_VERSIONS: tuple[int, ...] = (1,)
METADATA_FILE = "kiln.json"
MODEL_FILE = "model.onnx"
# holdout.json: predictions on the holdout and feature importance, for reports (versioned on
# its own; models registered before it existed have none). Serving never reads it.
HOLDOUT_FILE = "holdout.json"
HOLDOUT_SCHEMA_VERSION = 1
HOLDOUT_READABLE_VERSIONS: tuple[int, ...] = (1,)

Label = str | int | float | bool


class Task(StrEnum):
    classification = "classification"
    regression = "regression"


class FeatureKind(StrEnum):
    numeric = "numeric"
    categorical = "categorical"
    text = "text"

    @property
    def dtype(self) -> str:
        """Element type of the ONNX input tensor: float32 for numbers, string otherwise."""
        return "float32" if self is FeatureKind.numeric else "string"


class Stage(StrEnum):
    """Where a registered version stands. Only candidates may be served."""

    candidate = "candidate"  # passed verification and the quality gate
    rejected = "rejected"  # verified, but below the quality gate


class _Doc(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Feature(_Doc):
    name: str = Field(description="Column name, as in the data file.")
    kind: FeatureKind
    dtype: str = Field(description="Element type of the input tensor: float32 or string.")
    input: str = Field(description="Name of the ONNX input tensor that takes this feature.")
    categories: list[str] | None = Field(
        default=None, description="Categories seen in training (categorical features only)."
    )


class Output(_Doc):
    name: str
    dtype: str
    shape: list[int] = Field(description="-1 for the batch dimension.")
    description: str


class Evaluation(_Doc):
    holdout_fraction: float
    seed: int
    train_rows: int
    holdout_rows: int
    metrics: dict[str, float | None]
    baseline: dict[str, float | None] = Field(
        description="The same metrics for a trivial model (DummyClassifier/DummyRegressor)."
    )
    baseline_strategy: str
    positive_class: Label | None = None
    confusion_matrix: list[list[int]] | None = Field(
        default=None, description="Rows are true classes, columns predicted, in `classes` order."
    )


class GateCheck(_Doc):
    metric: str
    op: Literal[">=", "<=", ">", "<"]
    threshold: float
    value: float | None
    passed: bool


class Gate(_Doc):
    passed: bool
    checks: list[GateCheck]


class Verification(_Doc):
    rows: int
    label_mismatches: int | None = Field(description="Rows whose ONNX label differs (classifiers).")
    max_abs_diff: float = Field(description="Largest |ONNX - scikit-learn| over scores/outputs.")
    atol: float
    rtol: float
    tolerance_reason: str | None = None
    passed: bool


class DataFile(_Doc):
    source: str = Field(description="Path of the file, or `sklearn:<name>` for a bundled set.")
    sha256: str
    rows: int
    modified: datetime | None = None


class FeatureStats(_Doc):
    """Training-data statistics of one feature, kept for drift monitoring and reports."""

    kind: FeatureKind
    count: int
    missing: int
    mean: float | None = None
    std: float | None = None
    min: float | None = None
    max: float | None = None
    quantiles: dict[str, float] | None = None
    histogram: dict[str, list[float]] | None = Field(
        default=None, description="`edges` (n+1) and `counts` (n) of a histogram."
    )
    unique: int | None = None
    top: dict[str, int] | None = Field(default=None, description="Most frequent values.")
    length_mean: float | None = Field(default=None, description="Mean text length (characters).")


class Provenance(_Doc):
    created_at: datetime
    git_commit: str | None
    git_dirty: bool | None
    python: str
    libraries: dict[str, str]
    opset: dict[str, int]
    spec: dict[str, Any] = Field(description="The spec as it was resolved for this run.")
    spec_path: str | None = None


class ModelMetadata(_Doc):
    schema_version: int = SCHEMA_VERSION
    name: str
    version: str
    task: Task
    target: str
    estimator: str
    estimator_params: dict[str, Any]
    classes: list[Label] | None = None
    features: list[Feature]
    outputs: list[Output]
    evaluation: Evaluation
    gate: Gate
    verification: Verification
    data: list[DataFile]
    feature_stats: dict[str, FeatureStats]
    provenance: Provenance
    onnx_sha256: str
    onnx_nodes: dict[str, int] | None = Field(
        default=None,
        description="Graph nodes per operator domain (`ai.onnx`, `ai.onnx.ml`); ai.onnx.ml "
        "operators have no CUDA kernels and run on the CPU under any provider.",
    )
    stage: Stage

    @property
    def tag(self) -> str:
        return f"{self.name}:{self.version}"


class FeatureImportance(_Doc):
    feature: str = Field(description="Raw feature (column), as in the data file.")
    mean: float = Field(description="Mean drop of the score when the feature is shuffled.")
    std: float


class Holdout(_Doc):
    """Predictions on the holdout and permutation feature importance, kept for reports.

    Written next to ``kiln.json`` at registration so a report can be rebuilt from the store
    alone; serving never reads it. Row lists are aligned: row ``i`` of ``y_true``, ``y_pred``
    and ``scores`` is the same holdout row.
    """

    schema_version: int = HOLDOUT_SCHEMA_VERSION
    holdout_rows: int = Field(description="Rows in the holdout split.")
    rows: int = Field(description="Rows stored here: the holdout, or a seeded sample of it.")
    classes: list[Label] | None = Field(default=None, description="Column order of `scores`.")
    y_true: list[Label]
    y_pred: list[Label] = Field(description="Predicted class, or predicted value (regressors).")
    scores: list[list[float]] | None = Field(
        default=None, description="Per-class probabilities or decision scores (classifiers)."
    )
    score_kind: Literal["probabilities", "scores"] | None = None
    train_class_counts: list[int] | None = Field(
        default=None, description="Training rows per class, in `classes` order."
    )
    importance: list[FeatureImportance] | None = Field(
        default=None, description="Permutation importance on raw features; None if not measured."
    )
    importance_scoring: str | None = None
    importance_rows: int = 0
    importance_repeats: int = 0


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_metadata(meta: ModelMetadata, directory: Path) -> Path:
    path = directory / METADATA_FILE
    path.write_text(meta.model_dump_json(indent=2) + "\n", encoding="utf-8")
    return path


def _read_versioned(
    path: Path, tag: str, what: str, readable: tuple[int, ...]
) -> tuple[dict[str, Any], int]:
    """A JSON object with a ``schema_version`` this code reads (FileNotFoundError passes)."""
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ArtifactError(tag, f"{path.name} is unreadable: {exc}") from None
    if not isinstance(raw, dict):
        raise ArtifactError(tag, f"{path.name} is not a JSON object")
    version = raw.get("schema_version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise ArtifactError(tag, f"{path.name} has no integer schema_version")
    if version not in readable:
        newer = version > max(readable)
        hint = "written by a newer Kiln; upgrade Kiln to read it" if newer else "no longer read"
        raise ArtifactError(
            tag,
            f"{what} schema version {version} is not readable by this Kiln "
            f"(reads {', '.join(map(str, readable))}): {hint}",
        )
    return raw, version


def read_metadata(directory: Path, tag: str | None = None) -> ModelMetadata:
    """Read and check ``kiln.json`` in ``directory``; refuse unknown schema versions."""
    tag = tag or directory.name
    try:
        raw, version = _read_versioned(
            directory / METADATA_FILE, tag, "metadata", READABLE_VERSIONS
        )
    except FileNotFoundError:
        raise ArtifactError(tag, f"{METADATA_FILE} is missing (not a Kiln model?)") from None
    try:
        return ModelMetadata.model_validate(raw)
    except ValidationError as exc:
        raise ArtifactError(
            tag, f"{METADATA_FILE} does not match schema {version}: {exc}"
        ) from None


def write_holdout(doc: Holdout, directory: Path) -> Path:
    path = directory / HOLDOUT_FILE
    path.write_text(doc.model_dump_json() + "\n", encoding="utf-8")
    return path


def read_holdout(directory: Path, tag: str | None = None) -> Holdout | None:
    """Read ``holdout.json`` in ``directory``; None when absent (models registered before it)."""
    tag = tag or directory.name
    try:
        raw, version = _read_versioned(
            directory / HOLDOUT_FILE, tag, "holdout", HOLDOUT_READABLE_VERSIONS
        )
    except FileNotFoundError:
        return None
    try:
        return Holdout.model_validate(raw)
    except ValidationError as exc:
        raise ArtifactError(tag, f"{HOLDOUT_FILE} does not match schema {version}: {exc}") from None
