"""The model spec: one YAML file that says what to train, on what, and how good it must be.

Checks that need only the file happen here, when it is loaded; checks that need the data
(columns present, types, classes) happen in :mod:`training.data` before any fitting. Both
report every problem with the field it belongs to.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from kiln.artifact import CheckMode, FeatureKind, Task
from kiln.errors import SpecError
from training.estimators import ESTIMATORS
from training.steps import TFIDF_OPTIONS, unfaithful_tfidf

__all__ = [
    "BUNDLED_DATASETS",
    "CLASSIFICATION_METRICS",
    "LOWER_IS_BETTER",
    "MODEL_NAME",
    "REGRESSION_METRICS",
    "DataSpec",
    "EstimatorSpec",
    "EvaluationSpec",
    "GateRule",
    "MonitoringSpec",
    "PromotionSpec",
    "Spec",
    "TextSpec",
    "ToleranceSpec",
    "key_metric",
    "load_spec",
    "metrics_for",
    "parse_spec",
]

CLASSIFICATION_METRICS = (
    "accuracy",
    "balanced_accuracy",
    "precision",
    "recall",
    "f1",
    "roc_auc",
    "log_loss",
)
REGRESSION_METRICS = ("mae", "rmse", "r2")
LOWER_IS_BETTER = frozenset({"log_loss", "mae", "rmse"})  # every other metric: higher is better
_KEY_METRIC = {Task.classification: "roc_auc", Task.regression: "r2"}
BUNDLED_DATASETS = ("breast_cancer", "diabetes", "iris", "wine")
DEFAULT_ATOL = 1e-4
DEFAULT_RTOL = 1e-6
MODEL_NAME = re.compile(r"^[a-z0-9]([a-z0-9._-]{0,61}[a-z0-9])?$")
"""A valid model name: 1-63 lower-case letters, digits, '.', '_' or '-', starting and ending
with a letter or digit (a spec's ``name``, ``kiln import --name``)."""
_GATE = re.compile(r"^\s*([a-z_][a-z0-9_]*)\s*(>=|<=|>|<)\s*([-+0-9.eE]+)\s*$")


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DataSpec(_Spec):
    paths: list[str] = Field(
        default_factory=list,
        description="CSV/TSV/Parquet files or glob patterns, relative to the spec file; "
        "several are concatenated in order. `kiln train --data` replaces them.",
    )
    sklearn: Literal["breast_cancer", "diabetes", "iris", "wine"] | None = Field(
        default=None, description="A data set bundled with scikit-learn (no network)."
    )
    format: Literal["csv", "tsv", "parquet"] | None = Field(
        default=None, description="File format; by default taken from each file's extension."
    )
    header: bool = Field(default=True, description="Whether CSV/TSV files start with a header.")
    columns: list[str] | None = Field(
        default=None, description="Column names, for CSV/TSV files without a header."
    )

    @model_validator(mode="after")
    def _one_source(self) -> DataSpec:
        if self.paths and self.sklearn:
            raise ValueError("give either `paths` or `sklearn`, not both")
        if not self.header and not self.columns:
            raise ValueError("`header: false` needs `columns` to name the columns")
        return self


class EstimatorSpec(_Spec):
    type: str = Field(description="Estimator class name, e.g. LogisticRegression.")
    params: dict[str, Any] = Field(default_factory=dict, description="Constructor parameters.")
    probabilities: Literal["calibrated", "scores"] | None = Field(
        default=None,
        description="LinearSVC only: `calibrated` (sigmoid calibration, per-class "
        "probabilities; the default) or `scores` (raw decision scores, no probabilities).",
    )

    @field_validator("type")
    @classmethod
    def _known(cls, value: str) -> str:
        if value not in ESTIMATORS:
            raise ValueError(f"unknown estimator {value!r}; known: {', '.join(ESTIMATORS)}")
        return value

    @model_validator(mode="after")
    def _probabilities_only_for_svc(self) -> EstimatorSpec:
        if self.probabilities is not None and self.type != "LinearSVC":
            raise ValueError("`probabilities` applies to LinearSVC only")
        return self


class TextSpec(_Spec):
    """TF-IDF settings for text features: only those skl2onnx converts faithfully.

    The options it converts into different answers (:data:`training.steps.TFIDF_OPTIONS`,
    measured there) are refused unless set to scikit-learn's default, instead of registering
    a model that answers differently when served.
    """

    max_features: int | None = Field(default=None, gt=0)
    min_df: int = Field(default=1, ge=1)
    max_df: float = Field(default=1.0, gt=0, le=1)
    lowercase: bool = True
    stop_words: Literal["english"] | None = None
    binary: bool = False

    @model_validator(mode="before")
    @classmethod
    def _unfaithful(cls, value: Any) -> Any:
        if not isinstance(value, dict):
            return value
        found = unfaithful_tfidf(value)
        if found is not None:
            key, _ = found
            raise ValueError(f"{key}: {TFIDF_OPTIONS[key].why}; remove it")
        return {k: v for k, v in value.items() if k not in TFIDF_OPTIONS}


def metrics_for(task: Task) -> tuple[str, ...]:
    """The metrics Kiln measures for ``task``: what a gate or ``evaluation.primary`` may name."""
    return CLASSIFICATION_METRICS if task is Task.classification else REGRESSION_METRICS


def key_metric(task: Task) -> str:
    """The task's headline metric: ROC AUC (classification), R² (regression).

    The primary metric of a spec with no gate and no ``evaluation.primary``, the score column
    of ``kiln models list`` and the metric a report compares versions on.
    """
    return _KEY_METRIC[task]


class EvaluationSpec(_Spec):
    holdout: float = Field(default=0.2, gt=0, lt=1, description="Fraction held out for tests.")
    seed: int = Field(default=0, description="Random seed of the split and the estimator.")
    positive_class: str | int | None = Field(
        default=None, description="Binary classification: the class precision/recall refer to."
    )
    primary: str | None = Field(
        default=None,
        description="The metric that decides between two versions of the model: `kiln "
        "retrain` compares challenger and champion on it. Default: the first gate rule's "
        "metric, else roc_auc (classification) or r2 (regression). One of the task's metrics.",
    )


class ToleranceSpec(_Spec):
    """How closely ONNX Runtime must match scikit-learn: |a - b| <= atol + rtol * |b|."""

    atol: float = Field(default=DEFAULT_ATOL, ge=0)
    rtol: float = Field(default=DEFAULT_RTOL, ge=0)
    reason: str | None = Field(default=None, description="Required when loosening the defaults.")

    @model_validator(mode="after")
    def _reason_when_loosened(self) -> ToleranceSpec:
        loosened = self.atol > DEFAULT_ATOL or self.rtol > DEFAULT_RTOL
        if loosened and not (self.reason and self.reason.strip()):
            raise ValueError(
                f"loosening the tolerance past atol={DEFAULT_ATOL}, rtol={DEFAULT_RTOL} "
                "needs a `reason`"
            )
        return self


class GateRule(_Spec):
    metric: str
    op: Literal[">=", "<=", ">", "<"]
    threshold: float

    @classmethod
    def parse(cls, text: str) -> GateRule:
        match = _GATE.match(text)
        if not match:
            raise ValueError(f"{text!r} is not of the form `metric >= number`")
        metric, op, number = match.groups()
        try:
            threshold = float(number)
        except ValueError:
            raise ValueError(f"{number!r} in {text!r} is not a number") from None
        return cls(metric=metric, op=op, threshold=threshold)  # type: ignore[arg-type]

    def holds(self, value: float | None) -> bool:
        if value is None:
            return False
        return {
            ">=": value >= self.threshold,
            "<=": value <= self.threshold,
            ">": value > self.threshold,
            "<": value < self.threshold,
        }[self.op]

    def __str__(self) -> str:
        return f"{self.metric} {self.op} {self.threshold:g}"


class PromotionSpec(_Spec):
    """When `kiln retrain` replaces the production model (the champion) by a new one.

    Both are scored on the spec's primary metric (:attr:`Spec.primary_metric`), on the
    holdout rows neither was trained on.
    """

    margin: float = Field(
        default=0.0,
        ge=0,
        description="How much better than the champion a challenger must be, on the primary "
        "metric, to replace it: promoted only when challenger > champion + margin (for mae, "
        "rmse and log_loss, lower is better: challenger < champion - margin). A tie, or a "
        "gain of exactly `margin`, keeps the champion; with the default 0 the challenger must "
        "be strictly better.",
    )
    allow_new_classes: bool = Field(
        default=False,
        description="Classification: whether retraining may add classes the champion does "
        "not know. By default a label the champion never saw (a new class, or a respelling "
        "such as 'ADELIE' for 'Adelie') stops the run before training, naming the labels; "
        "true accepts them, and the challenger (which the champion cannot be compared with "
        "on classes it does not know) is promoted if it passes its quality gate.",
    )

    @model_validator(mode="before")
    @classmethod
    def _moved(cls, value: Any) -> Any:
        if isinstance(value, dict) and "metric" in value:
            raise ValueError(
                "`promotion.metric` was replaced by `evaluation.primary` (default: the first "
                "gate rule's metric); move it there"
            )
        return value


class MonitoringSpec(_Spec):
    """How served inputs are checked against the training data (kiln/checks.py)."""

    input_checks: CheckMode = Field(
        default=CheckMode.warn,
        description="A row unlike the training data: `accept` (count it), `warn` (count it "
        "and answer with `warnings`), `reject` (count it and refuse the request, 422). "
        "KILN_SERVE_INPUT_CHECKS overrides it when serving.",
    )
    range_margin: float = Field(
        default=0.1,
        ge=0,
        description="A number is out of range below p0.1 or above p99.9 of the training "
        "rows, widened by this share of the span between them (never inside min/max).",
    )


class Spec(_Spec):
    name: str = Field(description="Model name in the store: lower case, digits, . _ -")
    description: str = ""
    task: Task
    data: DataSpec = Field(default_factory=DataSpec)
    target: str
    features: dict[str, FeatureKind] = Field(
        description="Column name -> numeric | categorical | text, or `{kind: ..., label: "
        "...}` to name it for reports. The key `*` gives a kind to every other column "
        "(except the target and `drop`)."
    )
    labels: dict[str, str] = Field(
        default_factory=dict,
        description="Column name -> what a report calls it (from `features`' `label`; "
        "default: the column name made readable).",
    )
    drop: list[str] = Field(default_factory=list, description="Columns never used.")
    estimator: EstimatorSpec
    text: TextSpec = Field(default_factory=TextSpec)
    evaluation: EvaluationSpec = Field(default_factory=EvaluationSpec)
    tolerance: ToleranceSpec = Field(default_factory=ToleranceSpec)
    gate: Annotated[list[GateRule], Field(default_factory=list)]
    promotion: PromotionSpec = Field(default_factory=lambda: PromotionSpec())
    monitoring: MonitoringSpec = Field(default_factory=MonitoringSpec)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not MODEL_NAME.match(value):
            raise ValueError(
                f"{value!r} is not a valid model name: use 1-63 lower-case letters, digits, "
                "'.', '_' or '-', starting and ending with a letter or digit"
            )
        return value

    @field_validator("gate", mode="before")
    @classmethod
    def _parse_gate(cls, value: Any) -> Any:
        if isinstance(value, dict):  # {metric: ">= 0.9"} or {metric: 0.9} (a minimum)
            value = [f"{k} {v}" if isinstance(v, str) else f"{k} >= {v}" for k, v in value.items()]
        if isinstance(value, list):
            return [GateRule.parse(v) if isinstance(v, str) else v for v in value]
        return value

    @model_validator(mode="before")
    @classmethod
    def _feature_labels(cls, raw: Any) -> Any:
        """``features: {col: {kind: ..., label: ...}}``: the kind stays, the label moves to
        ``labels`` (so every reader of ``features`` still sees a kind)."""
        if not isinstance(raw, dict) or not isinstance(raw.get("features"), dict):
            return raw
        kinds: dict[str, Any] = {}
        labels = dict(raw.get("labels") or {})
        for column, given in raw["features"].items():
            if not isinstance(given, dict):
                kinds[column] = given
                continue
            unknown = sorted(set(given) - {"kind", "label"})
            if unknown or "kind" not in given:
                raise ValueError(
                    f"features.{column}: give a kind, or {{kind: ..., label: ...}}"
                    + (f" (unknown: {', '.join(map(str, unknown))})" if unknown else "")
                )
            label = given.get("label")
            if label is not None and (not isinstance(label, str) or not label.strip()):
                raise ValueError(f"features.{column}.label: a non-empty text")
            if label is not None and column == "*":
                raise ValueError("features.*: a label names one column, not every other one")
            kinds[column] = given["kind"]
            if label is not None:
                labels[column] = label.strip()
        return {**raw, "features": kinds, "labels": labels}

    @field_validator("features")
    @classmethod
    def _features(cls, value: dict[str, FeatureKind]) -> dict[str, FeatureKind]:
        if not value:
            raise ValueError("name at least one feature")
        return value

    @property
    def has_text(self) -> bool:
        return FeatureKind.text in self.features.values()

    @property
    def primary_metric(self) -> str:
        """``evaluation.primary``, else the first gate rule's metric, else the task's key one."""
        if self.evaluation.primary is not None:
            return self.evaluation.primary
        return self.gate[0].metric if self.gate else key_metric(self.task)


def _problems(exc: ValidationError) -> list[tuple[str, str]]:
    return [
        (
            ".".join(str(p) for p in err["loc"]) or "(spec)",
            str(err["msg"]).removeprefix("Value error, "),
        )
        for err in exc.errors()
    ]


def _cross_field_problems(spec: Spec) -> list[tuple[str, str]]:
    """Checks between fields that are each valid on their own."""
    problems: list[tuple[str, str]] = []
    info = ESTIMATORS[spec.estimator.type]
    if info.task is not spec.task:
        problems.append(
            (
                "estimator.type",
                f"{info.name} is a {info.task.value} estimator but task is {spec.task.value}",
            )
        )
    if spec.target in spec.features:
        problems.append((f"features.{spec.target}", "the target cannot also be a feature"))
    for column in sorted(set(spec.labels) - set(spec.features)):
        problems.append((f"labels.{column}", "a label for a column that is not a named feature"))
    for column in sorted(set(spec.drop) & set(spec.features)):
        problems.append(("drop", f"{column!r} is both dropped and a feature"))
    known = metrics_for(spec.task)
    for i, rule in enumerate(spec.gate):
        if rule.metric not in known:
            problems.append(
                (
                    f"gate.{i}",
                    f"{rule.metric!r} is not a {spec.task.value} metric; known: {', '.join(known)}",
                )
            )
    primary = spec.evaluation.primary
    if primary is not None and primary not in known:
        problems.append(
            (
                "evaluation.primary",
                f"{primary!r} is not a {spec.task.value} metric; known: {', '.join(known)}",
            )
        )
    if spec.task is Task.regression and spec.evaluation.positive_class is not None:
        problems.append(("evaluation.positive_class", "only for classification"))
    if spec.task is Task.regression and spec.promotion.allow_new_classes:
        problems.append(("promotion.allow_new_classes", "only for classification"))
    return problems


def parse_spec(raw: Any, source: str = "spec") -> Spec:
    """Validate a spec given as a mapping (already parsed YAML)."""
    if not isinstance(raw, dict):
        raise SpecError([("(spec)", "must be a YAML mapping of fields")], source)
    try:
        spec = Spec.model_validate(raw)
    except ValidationError as exc:
        raise SpecError(_problems(exc), source) from None
    problems = _cross_field_problems(spec)
    if problems:
        raise SpecError(problems, source)
    return spec


def load_spec(path: Path) -> Spec:
    """Read and validate a spec file. Relative data paths stay relative to the file."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        problem = f"{path} is not UTF-8 text: {exc.reason} at byte {exc.start}"
        raise SpecError([("(file)", problem)], str(path)) from None
    except OSError as exc:
        problem = f"cannot read {path}: {exc.strerror or exc}"
        raise SpecError([("(file)", problem)], str(path)) from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise SpecError([("(file)", f"not valid YAML: {exc}")], str(path)) from None
    return parse_spec(raw, str(path))
