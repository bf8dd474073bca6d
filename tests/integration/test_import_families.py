"""Every importable family, through both entry points a user has: `kiln.save_model` in a
notebook and `kiln import` of a joblib file, then served in process by `kiln.Predictor` as
the store holds it. Each case is a realistic pipeline (imputing and scaling numbers, imputing
and one-hot encoding categories) fitted on data with missing values and categoricals; every
sample row must answer as the source model does: labels equal, probabilities and
predictions within verification's tolerance, on the sample's numbers or on those numbers
rounded to float32, as they are served (training/export.py, verify).

The conversion itself is covered for every family in tests/integration/test_parity.py; this
file proves the two import paths register and serve what that conversion makes.
"""

from __future__ import annotations

import os
import subprocess
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd
import pytest
from sklearn.model_selection import train_test_split

import kiln
from kiln.artifact import Task
from tests.conftest import REPO, mixed_frame
from tests.integration.test_parity import (
    NUMERIC,
    USER_CASES,
    USER_FAMILIES,
    _user_pipeline,
)
from training.evaluate import scores_of

pytestmark = [pytest.mark.integration, pytest.mark.slow]
ATOL, RTOL = 1e-4, 1e-6  # verification's float32 tolerance (training/spec.py defaults)


@pytest.fixture(autouse=True)
def _quick(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No reports (they are tested elsewhere), one OpenMP thread (two shared cores)."""
    from threadpoolctl import threadpool_limits

    monkeypatch.setenv("KILN_TRAIN_REPORTS_DIR", "none")
    with threadpool_limits(1, user_api="openmp"):
        yield


def _fitted(family: str, classes: int) -> tuple[Any, pd.DataFrame, pd.Series, Task]:
    frame = mixed_frame(rows=400, classes=classes, seed=7)
    X, y = frame.drop(columns="target"), frame["target"]
    if family == "XGBoost" and classes:  # XGBoost's classifier takes only codes 0..n-1
        y = pd.Series(pd.Categorical(y).codes.astype(np.int64), index=y.index)
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.3, random_state=2)
    classifier, regressor = USER_FAMILIES[family]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ConvergenceWarning on tiny data is not the subject
        model = _user_pipeline((classifier if classes else regressor)()).fit(X_train, y_train)
    return model, X_test, y_test, Task.classification if classes else Task.regression


def _assert_served_like(model: Any, tag: str, X: pd.DataFrame, task: Task) -> None:
    answer = kiln.Predictor.from_store(tag).predict(X)
    as_float32 = X.copy()
    as_float32[NUMERIC] = X[NUMERIC].astype(np.float32).astype(np.float64)
    agree = []
    for rows in (X, as_float32):
        if task is Task.classification:
            key = "probabilities" if "probabilities" in answer else "scores"
            classes = [str(c) for c in model.classes_]
            got = np.array([[row[c] for c in classes] for row in answer[key]])
            ok = np.isclose(got, scores_of(model, rows), atol=ATOL, rtol=RTOL).all(axis=1)
            labels = np.asarray(answer["predictions"]) == np.asarray(model.predict(rows))
            agree.append(ok & labels)
        else:
            got = np.asarray(answer["predictions"], dtype=np.float64)
            agree.append(np.isclose(got, model.predict(rows), atol=ATOL, rtol=RTOL))
    both = agree[0] | agree[1]
    assert both.all(), f"{tag}: {(~both).sum()} of {len(X)} rows answer unlike the source model"


@pytest.mark.parametrize(("family", "classes"), USER_CASES)
def test_save_model_then_served(family: str, classes: int) -> None:
    model, X, y, task = _fitted(family, classes)
    name = f"fam-{family.lower()}-{classes}-nb"
    stored = kiln.save_model(model, name, sample=X, y=y)
    assert stored.metadata.task is task and stored.metadata.verification.rows == len(X)
    assert stored.metadata.origin is not None and stored.metadata.origin.kind == "import"
    _assert_served_like(model, stored.tag, X, task)


@pytest.mark.parametrize(("family", "classes"), USER_CASES)
def test_kiln_import_then_served(family: str, classes: int, tmp_path: Path) -> None:
    model, X, y, task = _fitted(family, classes)
    name = f"fam-{family.lower()}-{classes}-cli"
    source = tmp_path / "model.joblib"
    joblib.dump(model, source)
    sample = tmp_path / "sample.parquet"  # Parquet keeps the sample's dtypes exactly
    X.assign(label=y.to_numpy()).to_parquet(sample)
    argv = ["import", str(source), "--name", name, "--sample", str(sample), "--target", "label"]
    done = subprocess.run(
        [sys.executable, "-m", "training", *argv],
        cwd=REPO,
        env={**os.environ, "NO_COLOR": "1"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert name in done.stdout, done.stdout
    _assert_served_like(model, name, X, task)


def test_an_import_is_judged_with_the_fill_value_the_graph_holds() -> None:
    """tests/unit/test_export.py's case, through kiln.save_model: a median of 0.1 is served
    as float32(0.1), on the other side of a split; the import verifies and serves it."""
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline

    f32 = float(np.float32(0.1))
    X = pd.DataFrame({"x": [0.1] * 5 + [f32] * 2 + [0.5] * 2})
    booster = HistGradientBoostingClassifier(max_iter=5, min_samples_leaf=1, random_state=0)
    model = Pipeline([("impute", SimpleImputer(strategy="median")), ("hgb", booster)])
    model.fit(X, ["a"] * 5 + ["b"] * 4)
    sample = pd.DataFrame({"x": [np.nan, 0.5, 0.1]})
    stored = kiln.save_model(model, "fam-imputed-float32", sample=sample)
    answer = kiln.Predictor.from_store(stored.tag).predict(sample)
    assert answer["predictions"] == ["b", "b", "b"]  # 0.1 itself is served as float32(0.1)
