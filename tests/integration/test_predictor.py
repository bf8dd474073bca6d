"""The in-process Predictor: records and DataFrames, the same checks as the service."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest

from kiln import Predictor
from kiln.errors import InvalidInput, ModelNotFound
from tests.conftest import REPO

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def churn(served_models: dict[str, Any]) -> Predictor:
    return Predictor.from_store(served_models["churn"].tag)


def test_dataframe_rows_as_in_the_data_file(churn: Predictor) -> None:
    frame = pd.read_csv(REPO / "training" / "data" / "churn.csv").head(40)
    features = frame[[f.name for f in churn.metadata.features]]
    assert features.isna().any().any()  # missing numbers and categories among them
    answer = churn.predict(features)
    assert len(answer["predictions"]) == 40
    records = features.astype(object).where(features.notna(), None).to_dict(orient="records")
    assert churn.predict(records) == answer
    probabilities = np.array([[p["no"], p["yes"]] for p in answer["probabilities"]])
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-6)
    picked = np.where(probabilities[:, 1] > probabilities[:, 0], "yes", "no")
    assert answer["predictions"] == picked.tolist()


def test_predictions_beat_the_baseline_on_the_file(churn: Predictor) -> None:
    frame = pd.read_csv(REPO / "training" / "data" / "churn.csv")
    answer = churn.predict(frame[[f.name for f in churn.metadata.features]])
    accuracy = float(np.mean(np.array(answer["predictions"]) == frame["churned"].to_numpy()))
    majority = float(frame["churned"].value_counts(normalize=True).max())
    assert accuracy > majority + 0.1


def test_bad_input_raises_invalid_input(churn: Predictor) -> None:
    with pytest.raises(InvalidInput, match=r"instances\[0\]: missing feature"):
        churn.predict([{"age": 3}])
    with pytest.raises(InvalidInput, match=r"instances\[0\].age: inf is not a finite"):
        frame = pd.read_csv(REPO / "training" / "data" / "churn.csv").head(2)
        frame = frame[[f.name for f in churn.metadata.features]].copy()
        frame["age"] = [np.inf, 3.0]
        churn.predict(frame)


def test_unknown_model() -> None:
    with pytest.raises(ModelNotFound):
        Predictor.from_store("no-such-model")
