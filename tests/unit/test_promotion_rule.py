"""Retraining's rules, without training: who wins (ties keep the champion), which holdout
rows may be compared, which labels are refused."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import numpy as np
import pandas as pd
import pytest

from kiln.artifact import DataFile, FeatureKind
from kiln.errors import DataError
from training.data import Dataset
from training.retrain import beats, check_labels, comparison_rows
from training.run import Split
from training.spec import Spec, parse_spec


@pytest.mark.parametrize(
    ("metric", "challenger", "champion", "margin", "expected"),
    [
        pytest.param("roc_auc", 0.81, 0.80, 0.0, True, id="better"),
        pytest.param("roc_auc", 0.80, 0.80, 0.0, False, id="tie-keeps-champion"),
        pytest.param("roc_auc", 0.79, 0.80, 0.0, False, id="worse"),
        pytest.param("roc_auc", 0.815, 0.80, 0.02, False, id="gain-within-margin"),
        pytest.param("roc_auc", 0.82, 0.80, 0.02, False, id="gain-of-exactly-margin"),
        pytest.param("roc_auc", 0.83, 0.80, 0.02, True, id="gain-past-margin"),
        pytest.param("mae", 4.0, 5.0, 0.0, True, id="lower-is-better"),
        pytest.param("mae", 5.0, 5.0, 0.0, False, id="lower-tie"),
        pytest.param("log_loss", 0.45, 0.40, 0.0, False, id="lower-worse"),
        pytest.param("rmse", 4.5, 5.0, 0.5, False, id="lower-exactly-margin"),
        pytest.param("rmse", 4.4, 5.0, 0.5, True, id="lower-past-margin"),
    ],
)
def test_the_challenger_must_be_strictly_better_by_more_than_the_margin(
    metric: str, challenger: float, champion: float, margin: float, expected: bool
) -> None:
    assert beats(challenger, champion, metric, margin) is expected


def spec(**changes: Any) -> Spec:
    raw: dict[str, Any] = {
        "name": "m",
        "task": "classification",
        "target": "species",
        "features": {"a": "numeric"},
        "estimator": {"type": "LogisticRegression"},
        **changes,
    }
    return parse_spec(raw)


def dataset(parts: list[tuple[str, list[str]]]) -> Dataset:
    """One DataFile per (name, labels); a numeric feature ``a``."""
    labels = [label for _, rows in parts for label in rows]
    files = [DataFile(source=name, sha256=name * 4, rows=len(rows)) for name, rows in parts]
    X = pd.DataFrame({"a": np.arange(len(labels), dtype=np.float32)})
    y = pd.Series(labels, dtype=object)
    return Dataset(X=X, y=y, features=[("a", FeatureKind.numeric)], files=files)


def champion(classes: list[str], files: tuple[str, ...] = ()) -> Any:
    data = [SimpleNamespace(sha256=name * 4) for name in files]
    return SimpleNamespace(tag="m:v1", metadata=SimpleNamespace(classes=classes, data=data))


KNOWN = ["Adelie", "Chinstrap", "Gentoo"]


def test_respelled_labels_are_named_with_their_file() -> None:
    data = dataset([("old.csv", KNOWN * 3), ("new.csv", ["ADELIE", "Gentoo", "ADELIE", "gentoo"])])
    with pytest.raises(DataError) as raised:
        check_labels(spec(), data, champion(KNOWN))
    message = str(raised.value)
    assert message.startswith("new.csv: 'species' holds labels m:v1 was not trained on: ")
    assert "'ADELIE', 'gentoo' (3 rows)" in message
    assert "it knows 'Adelie', 'Chinstrap', 'Gentoo'" in message
    assert "promotion.allow_new_classes: true" in message


def test_known_labels_a_first_run_and_allowed_growth_pass() -> None:
    data = dataset([("old.csv", KNOWN * 3), ("new.csv", ["Gentoo", "Emperor"])])
    check_labels(spec(), dataset([("old.csv", KNOWN * 3)]), champion(KNOWN))
    check_labels(spec(), data, None)  # no champion: nothing to check against
    check_labels(spec(promotion={"allow_new_classes": True}), data, champion(KNOWN))


def test_only_rows_the_champion_never_saw_are_compared() -> None:
    data = dataset([("old.csv", KNOWN * 4), ("new.csv", KNOWN * 4)])  # rows 0-11 old, 12-23 new
    test_rows = [1, 5, 12, 13, 20]
    X_test, y_test = data.X.iloc[test_rows], data.y.iloc[test_rows]
    parts = Split(X_train=None, X_test=X_test, y_train=None, y_test=y_test)
    X, y = comparison_rows(parts, data, champion(KNOWN, files=("old.csv",)))
    assert X.index.tolist() == [12, 13, 20] and y.index.tolist() == [12, 13, 20]
    X_all, _ = comparison_rows(parts, data, None)  # no champion: the whole holdout
    assert X_all.index.tolist() == test_rows
