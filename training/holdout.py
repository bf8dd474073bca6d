"""What a report needs from the holdout, measured once at training time and kept in the store.

The fitted pipeline is not stored (only its ONNX export), so the holdout predictions, the
per-class scores and the permutation feature importance are computed here, right after
evaluation, and registered as ``holdout.json`` beside ``kiln.json``: a report can then be
rebuilt from the store alone.

Permutation importance shuffles one raw feature (a column of the data file) at a time and
measures how much the score drops, so it speaks of the features a client knows, not of
one-hot or TF-IDF columns. It is capped to keep training fast: at most
``IMPORTANCE_ROWS`` holdout rows, ``IMPORTANCE_REPEATS`` shuffles per feature.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from sklearn.inspection import permutation_importance

from kiln.artifact import FeatureImportance, Holdout, Task
from training.evaluate import scores_of

__all__ = [
    "IMPORTANCE_REPEATS",
    "IMPORTANCE_ROWS",
    "MAX_ROWS",
    "holdout_document",
    "importance_scoring",
]

IMPORTANCE_ROWS = 2_000
IMPORTANCE_REPEATS = 5
MAX_ROWS = 20_000  # rows of predictions kept; a larger holdout is sampled (seeded)
DIGITS = 6  # probabilities and scores are rounded: the charts need no more


def _native(values: Any) -> list[Any]:
    return [v.item() if hasattr(v, "item") else v for v in np.asarray(values, dtype=object)]


def importance_scoring(task: Task, n_classes: int) -> str:
    """The score permutation importance measures: ROC AUC (binary), accuracy, R²."""
    if task is Task.regression:
        return "r2"
    return "roc_auc" if n_classes == 2 else "accuracy"


def _sample(rows: int, cap: int, seed: int) -> np.ndarray | None:
    if rows <= cap:
        return None
    return np.sort(np.random.default_rng(seed).choice(rows, size=cap, replace=False))


def _importance(
    model: Any, X: pd.DataFrame, y: pd.Series, scoring: str, seed: int
) -> list[FeatureImportance] | None:
    picked = _sample(len(X), IMPORTANCE_ROWS, seed)
    if picked is not None:
        X, y = X.iloc[picked], y.iloc[picked]
    try:
        result = permutation_importance(
            model, X, y, n_repeats=IMPORTANCE_REPEATS, random_state=seed, scoring=scoring
        )
    except ValueError:  # e.g. a sample that holds a single class: no ROC AUC to measure
        return None
    return [
        FeatureImportance(feature=str(name), mean=float(mean), std=float(std))
        for name, mean, std in zip(
            X.columns, result.importances_mean, result.importances_std, strict=True
        )
    ]


def holdout_document(
    model: Any,
    task: Task,
    y_train: pd.Series,
    X_test: pd.DataFrame,
    y_test: pd.Series,
    *,
    seed: int,
) -> Holdout:
    """Predictions, scores and permutation importance of the fitted ``model`` on the holdout."""
    classes = _native(model.classes_) if task is Task.classification else None
    scoring = importance_scoring(task, len(classes or ()))
    importance = _importance(model, X_test, y_test, scoring, seed)
    picked = _sample(len(X_test), MAX_ROWS, seed)
    X, y = (X_test, y_test) if picked is None else (X_test.iloc[picked], y_test.iloc[picked])
    predicted = model.predict(X)
    scores = scores_of(model, X) if classes is not None else None
    counts = None
    if classes is not None:
        seen = y_train.value_counts()
        counts = [int(seen.get(c, 0)) for c in classes]
    return Holdout(
        holdout_rows=len(X_test),
        rows=len(X),
        classes=classes,
        y_true=_native(y),
        y_pred=_native(predicted),
        scores=None if scores is None else np.round(scores.astype(float), DIGITS).tolist(),
        score_kind=None
        if scores is None
        else ("probabilities" if hasattr(model, "predict_proba") else "scores"),
        train_class_counts=counts,
        importance=importance,
        importance_scoring=scoring if importance is not None else None,
        importance_rows=min(len(X_test), IMPORTANCE_ROWS) if importance is not None else 0,
        importance_repeats=IMPORTANCE_REPEATS if importance is not None else 0,
    )
