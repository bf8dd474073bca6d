"""Holdout metrics beside a trivial baseline, and the quality gate."""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn import metrics as skm
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.model_selection import train_test_split
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

from kiln.artifact import Evaluation, Task
from tests.conftest import mixed_frame
from training.estimators import make_estimator
from training.evaluate import check_gate, evaluate
from training.spec import GateRule

NUMERIC = ["size cm", "weight", "count"]
CLASSIFICATION_KEYS = {
    "accuracy", "balanced_accuracy", "precision", "recall", "f1", "roc_auc", "log_loss",
}  # fmt: skip

Split = tuple[pd.DataFrame, pd.DataFrame, pd.Series, pd.Series]


def split(frame: pd.DataFrame, stratify: bool = True) -> Split:
    X, y = frame[NUMERIC], frame["target"]
    parts = train_test_split(X, y, test_size=0.25, random_state=0, stratify=y if stratify else None)
    X_train, X_test, y_train, y_test = parts
    return X_train, X_test, y_train, y_test


def imbalanced(rows: int = 600, classes: int = 2) -> pd.DataFrame:
    """Keep every row of the first class, a third of the others: a clear majority class."""
    frame = mixed_frame(rows=rows, classes=classes, seed=1)
    first = frame["target"].sort_values().iloc[0]
    keep = (frame["target"] == first) | (np.arange(len(frame)) % 3 == 0)
    return frame[keep].reset_index(drop=True)


def fitted(estimator: Any, X: pd.DataFrame, y: pd.Series) -> Pipeline:
    return make_pipeline(SimpleImputer(strategy="median"), StandardScaler(), estimator).fit(X, y)


def run(model: Pipeline, task: Task, parts: Split, **kw: Any) -> Evaluation:
    X_train, X_test, y_train, y_test = parts
    return evaluate(model, task, X_train, y_train, X_test, y_test, holdout=0.25, seed=0, **kw)


@pytest.fixture(scope="module")
def binary() -> tuple[Pipeline, Split, Evaluation]:
    parts = split(imbalanced())
    model = fitted(LogisticRegression(), parts[0], parts[2])
    return model, parts, run(model, Task.classification, parts)


def test_binary_metrics_match_sklearn(binary: tuple[Pipeline, Split, Evaluation]) -> None:
    model, (X_train, X_test, _, y_test), ev = binary
    assert set(ev.metrics) == set(ev.baseline) == CLASSIFICATION_KEYS
    assert (ev.train_rows, ev.holdout_rows) == (len(X_train), len(X_test))
    assert ev.positive_class == "yes"  # the last class, when the spec names none
    predicted = model.predict(X_test)
    proba = model.predict_proba(X_test)
    assert list(model.classes_) == ["no", "yes"]
    assert ev.metrics["accuracy"] == pytest.approx(np.mean(predicted == y_test.to_numpy()))
    assert ev.metrics["recall"] == pytest.approx(
        np.sum((predicted == "yes") & (y_test == "yes")) / np.sum(y_test == "yes")
    )
    assert ev.metrics["roc_auc"] == pytest.approx(skm.roc_auc_score(y_test == "yes", proba[:, 1]))
    assert ev.metrics["log_loss"] == pytest.approx(skm.log_loss(y_test, proba))
    assert ev.metrics["roc_auc"] > 0.7  # the data has signal; the model found some


def test_binary_baseline_is_the_majority_class(binary: tuple[Pipeline, Split, Evaluation]) -> None:
    _, (_, _, y_train, y_test), ev = binary
    majority, _ = Counter(y_train).most_common(1)[0]
    assert majority == "no" and (y_train == "no").mean() > 0.6
    assert ev.baseline["accuracy"] == pytest.approx(np.mean(y_test.to_numpy() == majority))
    assert ev.baseline["balanced_accuracy"] == pytest.approx(0.5)
    assert ev.baseline["roc_auc"] == 0.5
    assert ev.baseline["recall"] == 0.0  # never predicts "yes"
    prior = y_train.value_counts(normalize=True)
    expected_loss = -np.mean(np.log(prior[y_test].to_numpy()))
    assert ev.baseline["log_loss"] == pytest.approx(expected_loss)
    assert ev.metrics["accuracy"] > ev.baseline["accuracy"]


def test_binary_confusion_matrix(binary: tuple[Pipeline, Split, Evaluation]) -> None:
    model, (_, X_test, _, y_test), ev = binary
    assert ev.confusion_matrix is not None
    assert sum(map(sum, ev.confusion_matrix)) == len(y_test)
    expected = skm.confusion_matrix(y_test, model.predict(X_test), labels=["no", "yes"])
    assert ev.confusion_matrix == expected.tolist()
    assert [sum(row) for row in ev.confusion_matrix] == [
        int((y_test == "no").sum()), int((y_test == "yes").sum())
    ]  # fmt: skip


def test_positive_class_changes_precision_and_recall(
    binary: tuple[Pipeline, Split, Evaluation],
) -> None:
    model, parts, ev_yes = binary
    ev_no = run(model, Task.classification, parts, positive_class="no")
    predicted, y_test = model.predict(parts[1]), parts[3]
    assert ev_no.positive_class == "no"
    assert ev_no.metrics["precision"] == pytest.approx(
        skm.precision_score(y_test, predicted, pos_label="no")
    )
    assert ev_no.metrics["precision"] != ev_yes.metrics["precision"]
    assert ev_no.metrics["accuracy"] == ev_yes.metrics["accuracy"]
    assert ev_no.metrics["roc_auc"] == pytest.approx(ev_yes.metrics["roc_auc"])


def test_three_classes() -> None:
    parts = split(imbalanced(rows=900, classes=3))
    X_train, X_test, y_train, y_test = parts
    model = fitted(LogisticRegression(), X_train, y_train)
    ev = run(model, Task.classification, parts)
    classes = list(model.classes_)
    assert len(classes) == 3 and ev.positive_class is None
    assert set(ev.metrics) == CLASSIFICATION_KEYS
    proba = model.predict_proba(X_test)
    expected = skm.roc_auc_score(y_test, proba, multi_class="ovr", labels=classes)
    assert ev.metrics["roc_auc"] == pytest.approx(expected)
    assert ev.metrics["f1"] == pytest.approx(
        skm.f1_score(y_test, model.predict(X_test), average="macro")
    )
    assert ev.baseline["roc_auc"] == 0.5
    majority, _ = Counter(y_train).most_common(1)[0]
    assert ev.baseline["accuracy"] == pytest.approx(np.mean(y_test.to_numpy() == majority))
    assert (
        ev.confusion_matrix
        == skm.confusion_matrix(y_test, model.predict(X_test), labels=classes).tolist()
    )
    assert np.array(ev.confusion_matrix).shape == (3, 3)


def test_scores_only_model_has_no_log_loss() -> None:
    parts = split(imbalanced())
    svc = make_estimator("LinearSVC", {"random_state": 0}, "scores")
    model = fitted(svc, parts[0], parts[2])
    assert not hasattr(model, "predict_proba")
    ev = run(model, Task.classification, parts)
    assert ev.metrics["log_loss"] is None and ev.baseline["log_loss"] is None
    scores = model.decision_function(parts[1])
    assert ev.metrics["roc_auc"] == pytest.approx(skm.roc_auc_score(parts[3] == "yes", scores))
    rules = [GateRule.parse("log_loss <= 0.5"), GateRule.parse("roc_auc >= 0.5")]
    gate = check_gate(rules, ev.metrics)
    assert not gate.passed
    loss, auc = gate.checks
    assert (loss.metric, loss.value, loss.passed) == ("log_loss", None, False)
    assert auc.passed


def test_regression() -> None:
    parts = split(mixed_frame(rows=400, classes=0), stratify=False)
    X_train, X_test, y_train, y_test = parts
    model = fitted(Ridge(), X_train, y_train)
    ev = run(model, Task.regression, parts)
    assert set(ev.metrics) == set(ev.baseline) == {"mae", "rmse", "r2"}
    assert ev.confusion_matrix is None and ev.positive_class is None
    predicted = model.predict(X_test)
    errors = y_test.to_numpy() - predicted
    assert ev.metrics["mae"] == pytest.approx(np.mean(np.abs(errors)))
    assert ev.metrics["rmse"] == pytest.approx(np.sqrt(np.mean(errors**2)))
    assert ev.metrics["rmse"] >= ev.metrics["mae"]
    assert ev.baseline["rmse"] >= ev.baseline["mae"]
    assert ev.baseline["mae"] == pytest.approx(np.mean(np.abs(y_test - y_train.mean())))
    assert ev.baseline["r2"] <= 0.01
    assert ev.metrics["r2"] > ev.baseline["r2"]


# --- the gate ------------------------------------------------------------------------------

METRICS: dict[str, float | None] = {"accuracy": 0.9, "roc_auc": 0.8, "log_loss": None}


@pytest.mark.parametrize(
    ("rules", "passed", "checks"),
    [
        (["accuracy >= 0.9"], True, [True]),
        (["accuracy > 0.9"], False, [False]),
        (["accuracy >= 0.85", "roc_auc >= 0.85"], False, [True, False]),
        (["roc_auc < 0.81", "accuracy <= 0.9"], True, [True, True]),
        (["log_loss <= 0.5"], False, [False]),  # value None: not computed for this model
        (["f1 >= 0.1"], False, [False]),  # absent from the metrics altogether
        ([], True, []),
    ],
)
def test_check_gate(rules: list[str], passed: bool, checks: list[bool]) -> None:
    gate = check_gate([GateRule.parse(r) for r in rules], METRICS)
    assert gate.passed is passed
    assert [c.passed for c in gate.checks] == checks
    for check, text in zip(gate.checks, rules, strict=True):
        assert str(GateRule(metric=check.metric, op=check.op, threshold=check.threshold)) == (
            str(GateRule.parse(text))
        )
        assert check.value == METRICS.get(check.metric)
