"""Holdout evaluation of a fitted pipeline, beside a trivial baseline, and the quality gate."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from sklearn import metrics as skm
from sklearn.dummy import DummyClassifier, DummyRegressor

from kiln.artifact import Evaluation, Gate, GateCheck, Task
from training.spec import GateRule

__all__ = ["check_gate", "classification_metrics", "evaluate", "regression_metrics", "scores_of"]


def scores_of(model: Any, X: pd.DataFrame) -> np.ndarray | None:
    """Per-class probabilities, or decision scores shaped (n, n_classes); None for regressors."""
    if hasattr(model, "predict_proba"):
        return np.asarray(model.predict_proba(X))
    if hasattr(model, "decision_function"):
        scores = np.asarray(model.decision_function(X))
        return np.column_stack([-scores, scores]) if scores.ndim == 1 else scores
    return None


def _f(value: Any) -> float:
    return float(value)


def classification_metrics(
    y_true: pd.Series,
    y_pred: np.ndarray,
    scores: np.ndarray,
    classes: list[Any],
    positive: Any,
    probabilistic: bool,
) -> tuple[dict[str, float | None], list[list[int]]]:
    binary = len(classes) == 2
    average: dict[str, Any] = (
        {"average": "binary", "pos_label": positive} if binary else {"average": "macro"}
    )
    out: dict[str, float | None] = {
        "accuracy": _f(skm.accuracy_score(y_true, y_pred)),
        "balanced_accuracy": _f(skm.balanced_accuracy_score(y_true, y_pred)),
        "precision": _f(skm.precision_score(y_true, y_pred, zero_division=0, **average)),
        "recall": _f(skm.recall_score(y_true, y_pred, zero_division=0, **average)),
        "f1": _f(skm.f1_score(y_true, y_pred, zero_division=0, **average)),
    }
    if binary:
        column = classes.index(positive)
        out["roc_auc"] = _f(skm.roc_auc_score(y_true == positive, scores[:, column]))
    elif probabilistic:
        out["roc_auc"] = _f(
            skm.roc_auc_score(y_true, scores, multi_class="ovr", average="macro", labels=classes)
        )
    else:  # one-vs-rest on decision scores: macro mean of per-class AUCs
        out["roc_auc"] = _f(
            np.mean([skm.roc_auc_score(y_true == c, scores[:, i]) for i, c in enumerate(classes)])
        )
    out["log_loss"] = _f(skm.log_loss(y_true, scores, labels=classes)) if probabilistic else None
    matrix = skm.confusion_matrix(y_true, y_pred, labels=classes)
    return out, matrix.astype(int).tolist()


def regression_metrics(y_true: pd.Series, y_pred: np.ndarray) -> dict[str, float | None]:
    return {
        "mae": _f(skm.mean_absolute_error(y_true, y_pred)),
        "rmse": _f(np.sqrt(skm.mean_squared_error(y_true, y_pred))),
        "r2": _f(skm.r2_score(y_true, y_pred)),
    }


def evaluate(
    model: Any,
    task: Task,
    X_train: pd.DataFrame,
    y_train: pd.Series,
    X_test: pd.DataFrame,
    y_test: pd.Series,
    *,
    holdout: float,
    seed: int,
    positive_class: Any = None,
) -> Evaluation:
    """Score ``model`` on the holdout, and a Dummy baseline fitted on the same training rows."""
    common: dict[str, Any] = {
        "holdout_fraction": holdout,
        "seed": seed,
        "train_rows": len(X_train),
        "holdout_rows": len(X_test),
    }
    if task is Task.regression:
        dummy_r = DummyRegressor(strategy="mean").fit(X_train, y_train)
        return Evaluation(
            **common,
            metrics=regression_metrics(y_test, model.predict(X_test)),
            baseline=regression_metrics(y_test, dummy_r.predict(X_test)),
            baseline_strategy="predict the mean of the training target",
        )
    classes = [c.item() if hasattr(c, "item") else c for c in model.classes_]
    positive = positive_class if positive_class is not None else classes[-1]
    scores = scores_of(model, X_test)
    assert scores is not None
    probabilistic = hasattr(model, "predict_proba")
    found, matrix = classification_metrics(
        y_test, model.predict(X_test), scores, classes, positive, probabilistic
    )
    dummy_c = DummyClassifier(strategy="prior").fit(X_train, y_train)
    base, _ = classification_metrics(
        y_test, dummy_c.predict(X_test), dummy_c.predict_proba(X_test), classes, positive, True
    )
    if not probabilistic:
        base["log_loss"] = None
    return Evaluation(
        **common,
        metrics=found,
        baseline=base,
        baseline_strategy="always predict the most frequent class (class shares as probabilities)",
        positive_class=positive if len(classes) == 2 else None,
        confusion_matrix=matrix,
    )


def check_gate(rules: list[GateRule], metrics: dict[str, float | None]) -> Gate:
    checks = [
        GateCheck(
            metric=r.metric,
            op=r.op,
            threshold=r.threshold,
            value=metrics.get(r.metric),
            passed=r.holds(metrics.get(r.metric)),
        )
        for r in rules
    ]
    return Gate(passed=all(c.passed for c in checks), checks=checks)
