"""Retraining an imported model: `kiln retrain NAME --data new.csv --target COL`.

The production version of NAME (the champion) must have been imported; its source estimator,
kept beside the store at import (training/keep.py), is loaded by the same trust rules as the
import, and a ``sklearn.base.clone`` of it is fitted on the new data, typed by the same input
contract. Then the same decision as a spec's challenger (training/retrain.py): labels the
champion does not know stop the run before anything is fitted (unless
``allow_new_classes``); the challenger and the champion are scored on a holdout split of the
new data (rows the champion never saw, and the challenger was not fitted on) on the primary
metric (the import's first gate rule's metric, else the task's key metric); a tie keeps the
champion; the comparison runs before the challenger enters the store (through the import
chain, training/importer.py, with its own source kept for the next retrain), so a failure at
any step registers nothing; every run is recorded.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd

from kiln.artifact import DataFile, FeatureKind, Task
from kiln.errors import DataError, ModelNotFound, TrainingError
from kiln.production import Decision, production_model
from kiln.store import StoredModel
from training import keep
from training.contract import SourceView, as_served, checked_labels, read_sample
from training.data import resolve_paths
from training.importer import import_model
from training.retrain import (
    Attempt,
    OnDrift,
    Terms,
    comparer,
    conclude,
    new_files,
    nothing_new,
    opening,
    recorded,
    refuse_unknown_labels,
)
from training.settings import TrainingSettings
from training.sources import loaded_object
from training.spec import key_metric

__all__ = ["retrain_imported"]

ALLOW_FLAG = "give --allow-new-classes"
Step = Callable[[str], None]


def _quiet(_: str) -> None:
    return None


def terms_of(champion: StoredModel, allow_new_classes: bool) -> Terms:
    """The decision's terms for an imported model: its first gate rule's metric, else the
    task's key metric; no margin (a tie keeps the champion)."""
    meta = champion.metadata
    checks = meta.gate.checks
    return Terms(
        name=meta.name,
        task=meta.task,
        metric=checks[0].metric if checks else key_metric(meta.task),
        allow_new_classes=None if allow_new_classes else ALLOW_FLAG,
    )


def retrain_imported(
    name: str,
    *,
    data: list[str],
    target: str,
    allow_new_classes: bool = False,
    holdout: float = 0.2,
    seed: int = 0,
    settings: TrainingSettings | None = None,
    on_step: Step = _quiet,
    on_drift: OnDrift | None = None,
) -> Decision:
    """Refit the imported model ``name`` on ``data``, compare it with the champion on a
    holdout split of that data, promote it or not; the run is recorded. ``on_drift`` is
    shown the new files' drift against the champion's training data before the refit.

    Raises a KilnError when the run fails (recorded as failed; nothing stays in the store).
    """
    champion = production_model(name)
    if champion is None:
        raise ModelNotFound(name)  # neither a spec file nor a model in the store
    return recorded(
        name,
        lambda attempt: _refit(
            champion,
            data,
            target,
            allow_new_classes,
            holdout,
            seed,
            settings or TrainingSettings(),
            on_step,
            attempt,
            on_drift,
        ),
    )


def _read(paths: list[Path], strings: set[str]) -> tuple[pd.DataFrame, list[DataFile]]:
    frames, files = [], []
    for path in paths:
        frame, file = read_sample(path, strings)
        frames.append(frame)
        files.append(file.model_copy(update={"source": str(path)}))
    return pd.concat(frames, ignore_index=True), files


def _labels(
    source: Any, y: pd.Series, terms: Terms, champion: StoredModel, target: str
) -> pd.Series:
    """The labels in the champion's terms (classes it knows, unless new ones are allowed)."""
    if terms.task is Task.regression or terms.allow_new_classes is not None:
        return checked_labels(source, y, terms.task, f"labels ({target})")
    empty = int(y.isna().sum())
    if empty:
        raise DataError(f"{empty} of {len(y)} labels are empty; fill or remove them")
    classes = champion.metadata.classes or []
    return y.astype(str).astype(object) if all(isinstance(c, str) for c in classes) else y


def _split(
    X: pd.DataFrame, y: pd.Series, task: Task, holdout: float, seed: int
) -> tuple[pd.DataFrame, pd.DataFrame, pd.Series, pd.Series]:
    from sklearn.model_selection import train_test_split

    try:
        parts = train_test_split(
            X,
            y,
            test_size=holdout,
            random_state=seed,
            stratify=y if task is Task.classification else None,
        )
    except ValueError as exc:
        raise DataError(f"cannot split {len(X)} rows for the comparison: {exc}") from None
    return parts[0], parts[1], parts[2], parts[3]


def _refit(
    champion: StoredModel,
    data: list[str],
    target: str,
    allow_new_classes: bool,
    holdout: float,
    seed: int,
    settings: TrainingSettings,
    on_step: Step,
    attempt: Attempt,
    on_drift: OnDrift | None = None,
) -> Decision:
    from sklearn.base import clone

    terms = terms_of(champion, allow_new_classes)
    paths = resolve_paths(data, Path.cwd())
    fresh = new_files(paths, champion)
    if (nothing := nothing_new(terms, champion, attempt, fresh)) is not None:
        return nothing
    on_step(f"Loading the source estimator kept for {champion.tag}")
    source, kept = keep.read_kept(champion)
    contract = kept.contract
    on_step("Loading and checking data")
    strings = {n for n, k in contract.features if k is not FeatureKind.numeric}
    frame, files = _read(fresh, strings)  # only rows the champion never saw
    attempt.digests = [f.sha256 for f in files]
    if target not in frame.columns:
        shown = ", ".join(map(repr, list(frame.columns)[:40]))
        raise DataError(f"has no target column {target!r} (columns: {shown})", source=data[0])
    missing = [n for n in contract.names if n not in frame.columns]
    if missing:
        raise DataError(
            f"has no column {', '.join(map(repr, missing))}, which {champion.tag} takes",
            source=", ".join(f.source for f in files),
        )
    refuse_unknown_labels(terms, target, frame[target], files, champion)
    y = _labels(source, frame[target], terms, champion, target)
    reasons = opening(terms, champion, attempt, fresh, on_step, on_drift)
    if isinstance(reasons, Decision):  # nothing new: nothing to train
        return reasons
    X_train, X_test, y_train, y_test = _split(frame, y, terms.task, holdout, seed)

    on_step(f"Refitting a clone of {champion.tag}'s source estimator on {len(X_train):,} rows")
    model = clone(source)
    inputs = SourceView(source, contract, True).source_input(as_served(X_train, contract))
    try:
        model.fit(inputs, y_train)
    except Exception as exc:
        raise TrainingError(
            f"{champion.metadata.name}: refitting a clone of {champion.tag}'s source "
            f"estimator failed: {type(exc).__name__}: {exc}; nothing was registered"
        ) from exc
    reasons.append(
        f"new data: {', '.join(p.name for p in fresh)}; refitted from {champion.tag} "
        f"on {len(X_train):,} of its {len(frame):,} rows"
    )
    refit = keep.dump(model, "skops" if kept.format == "skops" else "joblib", champion.tag)
    loaded = dataclasses.replace(
        loaded_object(model),
        format=refit.format,
        source=f"refitted from {champion.tag} on {', '.join(f.source for f in files)}",
        sha256=hashlib.sha256(refit.data).hexdigest(),
    )
    X_compare = as_served(X_test, contract)
    checks = champion.metadata.gate.checks
    stored = import_model(
        loaded,
        champion.metadata.name,
        sample=X_test.assign(**{target: y_test}),
        target=target,
        gate=[f"{c.metric} {c.op} {c.threshold!r}" for c in checks],
        features={n: k.value for n, k in contract.features},
        feature_labels={f.name: f.label for f in champion.metadata.features if f.label},
        settings=settings.model_copy(update={"reports_dir": None}),  # written once it stays
        on_step=on_step,
        data=files,
        check=comparer(terms, champion, X_compare, y_test, reasons, attempt, on_step),
        kept=refit,
    )
    return conclude(stored, attempt, settings, on_step)
