"""The training chain: load data, build, fit, evaluate, export, verify, register.

Each step is a plain function from the modules beside this one; this module only runs them in
order and reports progress through a callback. Everything that can be checked without fitting
(the spec, the data, the estimator's parameters) is checked before the first fit.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sklearn.model_selection import train_test_split
from threadpoolctl import threadpool_limits

from kiln.artifact import Feature, Task
from kiln.errors import DataError, KilnError, SpecError, TrainingError
from kiln.store import StoredModel
from training.data import Dataset, load_dataset, resolve_paths
from training.estimators import ESTIMATORS, score_kind
from training.evaluate import check_gate, evaluate
from training.evidence import evidence
from training.export import export_onnx, verify
from training.holdout import holdout_document
from training.pipeline import build_pipeline, categories_seen, estimator_params
from training.register import Check, register
from training.settings import TrainingSettings
from training.spec import Spec
from training.stats import feature_stats, reference

__all__ = [
    "Split",
    "check_positive_class",
    "load_checked",
    "split",
    "train",
    "write_training_report",
]

Step = Callable[[str], None]


def _quiet(_: str) -> None:
    return None


@dataclass(frozen=True)
class Split:
    X_train: Any
    X_test: Any
    y_train: Any
    y_test: Any


def load_checked(spec: Spec, spec_dir: Path, data: list[str] | None = None) -> Dataset:
    """Load the spec's data (or ``data``, paths relative to the working directory) and check it."""
    paths = resolve_paths(data, Path.cwd()) if data else resolve_paths(spec.data.paths, spec_dir)
    dataset = load_dataset(spec, paths)
    check_positive_class(spec, dataset)
    return dataset


def check_positive_class(spec: Spec, dataset: Dataset) -> None:
    """``evaluation.positive_class`` must be one of the two classes of the data."""
    positive = spec.evaluation.positive_class
    if spec.task is Task.classification and positive is not None:
        classes = set(dataset.y.unique().tolist())
        if positive not in classes:
            raise SpecError(
                [
                    (
                        "evaluation.positive_class",
                        f"{positive!r} is not a class; classes: {sorted(map(str, classes))}",
                    )
                ]
            )
        if len(classes) != 2:
            raise SpecError([("evaluation.positive_class", "only for binary classification")])


def split(spec: Spec, dataset: Dataset) -> Split:
    stratify = dataset.y if spec.task is Task.classification else None
    try:
        X_train, X_test, y_train, y_test = train_test_split(
            dataset.X,
            dataset.y,
            test_size=spec.evaluation.holdout,
            random_state=spec.evaluation.seed,
            stratify=stratify,
        )
    except ValueError as exc:  # e.g. a holdout too small to hold every class
        raise DataError(f"cannot split {dataset.rows} rows for evaluation.holdout: {exc}") from None
    return Split(X_train, X_test, y_train, y_test)


def train(
    spec: Spec,
    *,
    spec_path: Path | None = None,
    data: list[str] | None = None,
    settings: TrainingSettings | None = None,
    on_step: Step = _quiet,
    dataset: Dataset | None = None,
    check: Check | None = None,
) -> StoredModel:
    """Train, verify and register the model ``spec`` describes; return the stored version.

    ``dataset``: data already loaded and checked by the caller (else loaded here).
    ``check``: called with the model just before it enters the store (see
    :func:`training.register.register`); if it raises, nothing is registered.
    """
    settings = settings or TrainingSettings()
    spec_dir = spec_path.parent if spec_path else Path.cwd()

    if dataset is None:
        on_step("Loading and checking data")
        dataset = load_checked(spec, spec_dir, data)
    pipeline = build_pipeline(spec, dataset.features)  # checks estimator parameters
    parts = split(spec, dataset)

    # HistGradientBoosting's OpenMP threads (it fits, predicts and is permuted below): one by
    # default, see TrainingSettings.openmp_threads
    with threadpool_limits(settings.openmp_threads, user_api="openmp"):
        on_step(f"Fitting {spec.estimator.type} on {len(parts.X_train):,} rows")
        try:
            pipeline.fit(parts.X_train, parts.y_train)
        except KilnError:
            raise
        except Exception as exc:
            raise TrainingError(f"{spec.name}: fitting failed: {exc}") from exc

        on_step(f"Evaluating on {len(parts.X_test):,} holdout rows")
        evaluation = evaluate(
            pipeline,
            spec.task,
            parts.X_train,
            parts.y_train,
            parts.X_test,
            parts.y_test,
            holdout=spec.evaluation.holdout,
            seed=spec.evaluation.seed,
            positive_class=spec.evaluation.positive_class,
        )
        gate = check_gate(spec.gate, evaluation.metrics)
        on_step("Measuring which features drive its answers")
        holdout = holdout_document(
            pipeline,
            spec.task,
            parts.y_train,
            parts.X_test,
            parts.y_test,
            seed=spec.evaluation.seed,
        )
        holdout = holdout.model_copy(
            update={
                "evidence": evidence(
                    parts.X_train,
                    parts.y_train,
                    dataset.features,
                    spec.task,
                    holdout.classes,
                    holdout.importance,
                )
            }
        )

        on_step("Exporting to ONNX")
        kind = score_kind(ESTIMATORS[spec.estimator.type], spec.estimator.probabilities)
        exported = export_onnx(pipeline, dataset.features, spec.task, kind, settings.target_opset)

        on_step("Verifying ONNX Runtime against scikit-learn")
        verification = verify(
            spec.name,
            pipeline,
            exported,
            parts.X_test,
            dataset.features,
            spec.task,
            atol=spec.tolerance.atol,
            rtol=spec.tolerance.rtol,
            reason=spec.tolerance.reason,
            worst=settings.worst_rows,
        )

    on_step("Registering in the model store")
    categories = categories_seen(pipeline)
    features = [
        Feature(
            name=n,
            kind=k,
            dtype=k.dtype,
            input=exported.inputs[n],
            categories=categories.get(n),
            label=spec.labels.get(n),
        )
        for n, k in dataset.features
    ]
    classes = (
        [c.item() if hasattr(c, "item") else c for c in pipeline.classes_]
        if spec.task is Task.classification
        else None
    )
    resolved = spec.model_dump(mode="json")
    resolved["data"]["paths"] = [f.source for f in dataset.files if not spec.data.sklearn]
    stored = register(
        name=spec.name,
        task=spec.task,
        target=spec.target,
        estimator=spec.estimator.type,
        estimator_params=estimator_params(spec),
        classes=classes,
        features=features,
        onnx=exported.onnx,
        onnx_nodes=exported.nodes,
        outputs=exported.outputs,
        evaluation=evaluation,
        gate=gate,
        verification=verification,
        data=dataset.files,
        feature_stats=feature_stats(parts.X_train, dataset.features),
        reference=reference(
            parts.X_train,
            dataset.features,
            task=spec.task,
            predicted=holdout.y_pred,
            checks=spec.monitoring.input_checks,
            margin=spec.monitoring.range_margin,
        ),
        spec=resolved,
        spec_path=str(spec_path) if spec_path else None,
        opset=settings.target_opset,
        holdout=holdout,
        check=check,
    )
    if settings.reports_dir is not None:
        on_step("Writing the report")
        write_training_report(stored, settings.reports_dir)
    return stored


def write_training_report(stored: StoredModel, reports_dir: Path) -> Path | None:
    """Write ``<reports_dir>/<name>-<version>/report.html`` (the client's) and
    ``technical.html`` beside it, print their paths on stderr, return the client's.

    The model is registered by then, so a report that fails is reported, not raised: the
    run still succeeds, and ``kiln report`` can write it again from the store.
    """
    meta = stored.metadata
    try:
        from training.report import write_report

        written = write_report(stored, reports_dir / f"{meta.name}-{meta.version}")
    except Exception as exc:
        print(f"{meta.name}: no report written: {exc}", file=sys.stderr)
        return None
    print(f"{meta.name}: report {written.client} (technical: {written.technical})", file=sys.stderr)
    return written.client
