"""The artifact that crosses from training to serving: ``model.onnx`` plus ``kiln.json``.

This module is the one definition of the metadata document. Training writes it, serving and
the CLI read it. It imports neither scikit-learn nor BentoML so that the serving image needs
neither to read a model.

Schema versions: ``SCHEMA_VERSION`` is what this code writes; ``READABLE_VERSIONS`` lists what
it reads. A document of a newer version is refused with a message, never half-read.

- 1: a model trained from a spec (``kiln train``).
- 2: adds ``origin`` (where the model came from: ``spec``, or ``import`` with the source's
  format, file sha256 and the library versions that loaded it) and ``evaluation.measured``
  (false for a model imported without labels: no metrics, no baseline, no quality measured).
  A version-1 document still loads: it has neither, and means a spec-trained model whose
  quality was measured. A version-1 document that carries a version-2 field is refused.
- 3: adds ``reference``: the training distribution serving compares live inputs with (per
  feature the p0.1/p99.9 bounds and PSI bins: decile edges for numbers, the top categories
  plus "other" for categoricals; the holdout's predicted classes or prediction deciles) and
  the model's default input-check mode. A document without it (schemas 1 and 2) still loads:
  its inputs are checked against the training min/max and categories only, and no drift is
  computed for it. A version-2 document that carries ``reference`` is refused.
- 4: adds ``features[].label``: what a reader calls the feature (the spec's ``label``, or the
  import's); without it a report makes the column name readable. A version-3 document whose
  features carry a label is refused.

``holdout.json`` is versioned on its own (``HOLDOUT_SCHEMA_VERSION``), with the same rule:

- 1: holdout predictions, scores and permutation importance.
- 2: adds ``evidence``: for the features the answers depend on most, the outcome observed in
  the training rows by value band or category (training/evidence.py). A version-1 document
  loads with ``evidence`` None; one that carries it is refused.
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
    "Bins",
    "CheckMode",
    "DataFile",
    "Evaluation",
    "EvidenceBand",
    "Feature",
    "FeatureEvidence",
    "FeatureImportance",
    "FeatureKind",
    "FeatureReference",
    "FeatureStats",
    "Gate",
    "GateCheck",
    "Holdout",
    "ModelMetadata",
    "Origin",
    "OriginKind",
    "Output",
    "Provenance",
    "Reference",
    "Stage",
    "Task",
    "Verification",
    "file_sha256",
    "parse_mode",
    "read_holdout",
    "read_metadata",
    "write_holdout",
    "write_metadata",
]

SCHEMA_VERSION = 4
READABLE_VERSIONS: tuple[int, ...] = (1, 2, 3, 4)
# Fields a document may carry only from the schema version given (top level, or "a.b": a
# field of the object ``a``, or of every item of the list ``a``).
_SINCE: dict[str, int] = {
    "origin": 2,
    "evaluation.measured": 2,
    "reference": 3,
    "features.label": 4,
}
METADATA_FILE = "kiln.json"
MODEL_FILE = "model.onnx"
# holdout.json: predictions on the holdout and feature importance, for reports (versioned on
# its own; models registered before it existed have none). Serving never reads it.
HOLDOUT_FILE = "holdout.json"
HOLDOUT_SCHEMA_VERSION = 2
HOLDOUT_READABLE_VERSIONS: tuple[int, ...] = (1, 2)
_HOLDOUT_SINCE: dict[str, int] = {"evidence": 2}

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
    # defer_build: each model's validator is built on its first use, not at import; a
    # process that imports the format without reading a kiln.json (BentoML's supervisor, via
    # the serving settings) saves about 30 ms (issue 18).
    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)


class Feature(_Doc):
    name: str = Field(description="Column name, as in the data file.")
    kind: FeatureKind
    dtype: str = Field(description="Element type of the input tensor: float32 or string.")
    input: str = Field(description="Name of the ONNX input tensor that takes this feature.")
    categories: list[str] | None = Field(
        default=None, description="Categories seen in training (categorical features only)."
    )
    label: str | None = Field(
        default=None,
        description="What a reader calls it (the spec's or the import's `label`); None: the "
        "column name made readable (schema 4).",
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
    measured: bool = Field(
        default=True,
        description="False: imported without labels; `metrics` and `baseline` are empty and "
        "no quality was measured (schema 2; absent in schema 1, where it is always true).",
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
    source: str = Field(
        description="Path of the file, `sklearn:<name>` for a bundled set, or `python:DataFrame` "
        "for a sample given in-process (`kiln.save_model`)."
    )
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


class CheckMode(StrEnum):
    """What serving does with a row that fails an input check (kiln/checks.py)."""

    accept = "accept"  # count it, answer as usual
    warn = "warn"  # count it, answer with `warnings` naming row, feature, value and reason
    reject = "reject"  # count it, refuse the request (422) naming row and feature


def parse_mode(value: str | CheckMode) -> CheckMode:
    """A check mode from its name, or ValueError naming the choices.

    Here, beside the modes, rather than with the checks (kiln/checks.py re-exports it): the
    serving settings parse modes in BentoML's supervisor, which would otherwise import numpy
    with the checks only for this (issue 18: start-up time and memory).
    """
    try:
        return CheckMode(value)
    except ValueError:
        choices = ", ".join(m.value for m in CheckMode)
        raise ValueError(f"{value!r} is not an input-check mode (use {choices})") from None


class Bins(_Doc):
    """A distribution as the population stability index compares it (kiln/drift.py).

    Numbers: ``edges`` are the inner bin edges, ascending (bin ``i`` holds
    ``edges[i-1] <= x < edges[i]``). Categories: one bin per value of ``categories``, then one
    for every other value. Either way the last bin holds the missing values. ``shares`` are
    the reference's fraction of rows in each bin, in that order (they sum to 1).
    """

    edges: list[float] | None = None
    categories: list[str] | None = None
    shares: list[float]
    rows: int = Field(description="Rows the shares were measured on.")


class FeatureReference(_Doc):
    bins: Bins
    low: float | None = Field(default=None, description="Numbers: p0.1 of the training rows.")
    high: float | None = Field(default=None, description="Numbers: p99.9 of the training rows.")


class Reference(_Doc):
    """What live inputs are compared with (schema 3): input checks and drift."""

    checks: CheckMode = Field(
        default=CheckMode.warn, description="Default input-check mode (the spec's)."
    )
    margin: float = Field(
        default=0.1,
        ge=0,
        description="Numbers are out of range below p0.1 or above p99.9 widened by this share "
        "of the p0.1-p99.9 span, and never inside the training min/max.",
    )
    features: dict[str, FeatureReference] = Field(
        description="Training distribution of each numeric and categorical feature."
    )
    prediction: Bins | None = Field(
        default=None,
        description="Predicted classes (categories), or prediction deciles (regressors), on "
        "the holdout; None when the model was imported without one.",
    )


class Provenance(_Doc):
    created_at: datetime
    git_commit: str | None
    git_dirty: bool | None
    python: str
    libraries: dict[str, str]
    opset: dict[str, int]
    spec: dict[str, Any] = Field(description="The spec as it was resolved for this run.")
    spec_path: str | None = None


class OriginKind(StrEnum):
    spec = "spec"  # trained by Kiln from a spec (`kiln train`, `kiln retrain`)
    import_ = "import"  # a model fitted elsewhere (`kiln import`, `kiln.save_model`)


class Origin(_Doc):
    """Where a model came from (schema 2; absent in schema 1 documents: a spec-trained model)."""

    kind: OriginKind
    format: Literal["joblib", "pickle", "skops", "mlflow", "bentoml", "python"] | None = Field(
        default=None,
        description="Imports: how the model was stored (`python`: an object handed to "
        "`kiln.save_model`).",
    )
    source: str | None = Field(
        default=None,
        description="Imports: the file or directory read, or `bentoml:NAME:VERSION`.",
    )
    sha256: str | None = Field(
        default=None,
        description="Imports: sha256 of the file the model was loaded from (None for an object "
        "handed over in-process).",
    )
    loaded_with: dict[str, str] = Field(
        default_factory=dict,
        description="Imports: versions of the libraries that loaded the model (scikit-learn, "
        "the loader, and xgboost or lightgbm when the model uses them).",
    )
    model_class: str | None = Field(
        default=None, description="Imports: the class of the object loaded, module-qualified."
    )


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
    origin: Origin | None = Field(
        default=None, description="Where the model came from; None (schema 1): from a spec."
    )
    reference: Reference | None = Field(
        default=None,
        description="Training distribution for input checks and drift; None before schema 3.",
    )

    @property
    def tag(self) -> str:
        return f"{self.name}:{self.version}"

    @property
    def imported(self) -> bool:
        """Fitted elsewhere and imported (`kiln import`, `kiln.save_model`)."""
        return self.origin is not None and self.origin.kind is OriginKind.import_

    @property
    def quality_measured(self) -> bool:
        """Whether metrics were measured (false for a model imported without labels)."""
        return self.evaluation.measured


class FeatureImportance(_Doc):
    feature: str = Field(description="Raw feature (column), as in the data file.")
    mean: float = Field(description="Mean drop of the score when the feature is shuffled.")
    std: float


class EvidenceBand(_Doc):
    """One value band (numbers) or category group of a feature, and the outcome in it."""

    label: str = Field(description='As a reader sees it: "under 6", "6 to 24", "missing".')
    low: float | None = Field(
        default=None, description="Numbers: the band holds low <= value < high (None: open)."
    )
    high: float | None = Field(
        default=None, description="Numbers: the band's upper edge, excluded (None: open)."
    )
    categories: list[str] | None = Field(
        default=None, description="Categories: the values in the band (None: every other one)."
    )
    missing: bool = Field(default=False, description="The band of the missing values.")
    rows: int = Field(description="Training rows in the band.")
    shares: list[float] | None = Field(
        default=None, description="Classification: share of each class, in `classes` order."
    )
    mean: float | None = Field(default=None, description="Regression: mean target.")


class FeatureEvidence(_Doc):
    """What the training data says about one feature: the outcome by band (schema 2)."""

    feature: str = Field(description="Raw feature (column), as in the data file.")
    kind: FeatureKind
    importance: float | None = Field(
        default=None,
        description="The permutation importance it was chosen by; None: no "
        "importance was measured and it is one of the first features.",
    )
    rows: int = Field(description="Rows the bands were measured on.")
    bands: list[EvidenceBand]


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
    evidence: list[FeatureEvidence] | None = Field(
        default=None,
        description="The outcome in the training rows by band of the features the answers "
        "depend on most (schema 2; None before, or when there were no labels).",
    )


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_metadata(meta: ModelMetadata, directory: Path) -> Path:
    """Write ``kiln.json``: the fields of ``meta.schema_version``, none of a later schema."""
    exclude: dict[str, Any] = {}
    for field, since in _SINCE.items():
        if meta.schema_version < since:
            head, _, rest = field.partition(".")
            if not rest:
                exclude[head] = True
            elif isinstance(getattr(meta, head), list):
                exclude.setdefault(head, {}).setdefault("__all__", {})[rest] = True
            else:
                exclude.setdefault(head, {})[rest] = True
    path = directory / METADATA_FILE
    text = meta.model_dump_json(indent=2, exclude=exclude or None)
    path.write_text(text + "\n", encoding="utf-8")
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


def _too_new(raw: dict[str, Any], version: int, since_table: dict[str, int] = _SINCE) -> list[str]:
    """The fields of ``raw`` that its schema ``version`` does not have yet."""
    found = []
    for field, since in since_table.items():
        head, _, rest = field.partition(".")
        value = raw.get(head)
        if not rest:
            present = head in raw
        elif isinstance(value, list):
            present = any(isinstance(item, dict) and rest in item for item in value)
        else:
            present = isinstance(value, dict) and rest in value
        if present and version < since:
            found.append(f"{field} (schema {since})")
    return found


def read_metadata(directory: Path, tag: str | None = None) -> ModelMetadata:
    """Read and check ``kiln.json`` in ``directory``; refuse unknown schema versions."""
    tag = tag or directory.name
    try:
        raw, version = _read_versioned(
            directory / METADATA_FILE, tag, "metadata", READABLE_VERSIONS
        )
    except FileNotFoundError:
        raise ArtifactError(tag, f"{METADATA_FILE} is missing (not a Kiln model?)") from None
    newer = _too_new(raw, version)
    if newer:
        raise ArtifactError(
            tag,
            f"{METADATA_FILE} does not match schema {version}: it holds fields of a later "
            f"schema: {', '.join(newer)}",
        )
    try:
        return ModelMetadata.model_validate(raw)
    except ValidationError as exc:
        raise ArtifactError(
            tag, f"{METADATA_FILE} does not match schema {version}: {exc}"
        ) from None


def write_holdout(doc: Holdout, directory: Path) -> Path:
    """Write ``holdout.json``: the fields of ``doc.schema_version``, none of a later schema."""
    later = {field for field, since in _HOLDOUT_SINCE.items() if doc.schema_version < since}
    path = directory / HOLDOUT_FILE
    path.write_text(doc.model_dump_json(exclude=later or None) + "\n", encoding="utf-8")
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
    newer = _too_new(raw, version, _HOLDOUT_SINCE)
    if newer:
        raise ArtifactError(
            tag,
            f"{HOLDOUT_FILE} does not match schema {version}: it holds fields of a later "
            f"schema: {', '.join(newer)}",
        )
    try:
        return Holdout.model_validate(raw)
    except ValidationError as exc:
        raise ArtifactError(tag, f"{HOLDOUT_FILE} does not match schema {version}: {exc}") from None
