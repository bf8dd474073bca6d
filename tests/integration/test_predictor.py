"""The in-process Predictor: records and DataFrames, the same checks as the service."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pandas as pd
import pytest

from kiln import Predictor
from kiln.artifact import CheckMode, FeatureKind
from kiln.errors import InputRejected, InvalidInput, ModelNotFound
from tests.conftest import CHURN_ROW, REPO

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


# --- input checks: rows unlike the training data (kiln/checks.py) --------------------------

DRIFTED = {**CHURN_ROW, "plan": "Atlantis", "monthly_charge": -5200.0}  # a new plan, a -ve fee


def test_warn_answers_with_warnings_as_the_json_route(churn: Predictor) -> None:
    assert churn.input_checks is CheckMode.warn  # the spec's default
    clean = churn.predict([CHURN_ROW])
    assert "warnings" not in clean and "warning_count" not in clean
    answer = churn.predict([CHURN_ROW, DRIFTED])
    assert answer["predictions"][0] == clean["predictions"][0]
    assert len(answer["predictions"]) == 2  # the drifted row is answered too
    assert answer["warning_count"] == 2
    low = churn._checks.ranges()["monthly_charge"][0]
    assert answer["warnings"] == [
        {
            "row": 1,
            "feature": "monthly_charge",
            "value": -5200.0,
            "reason": "out_of_range",
            "message": f"-5200.0 is below the range seen in training (9.18 to 86.99, "
            f"accepted down to {low:g})",
        },
        {
            "row": 1,
            "feature": "plan",
            "value": "Atlantis",
            "reason": "unseen_category",
            "message": "'Atlantis' was never seen in training "
            "(seen: 'basic', 'fiber', 'premium', 'standard')",
        },
    ]
    frame = pd.DataFrame([CHURN_ROW, DRIFTED])  # a DataFrame: the same findings
    assert churn.predict(frame)["warnings"] == answer["warnings"]


def test_reject_raises_the_services_422(churn: Predictor) -> None:
    strict = Predictor(churn.runtime.stored, input_checks="reject")
    assert strict.predict([CHURN_ROW])["predictions"] == churn.predict([CHURN_ROW])["predictions"]
    with pytest.raises(InputRejected) as caught:
        strict.predict([CHURN_ROW, CHURN_ROW, DRIFTED])
    error = caught.value
    assert error.status_code == 422
    assert error.message.startswith("feature 'monthly_charge', row 2: -5200.0 is below")
    assert error.message.endswith(" (and 1 more)")
    assert error.total == 2
    assert error.counts == {("monthly_charge", "out_of_range"): 1, ("plan", "unseen_category"): 1}
    assert [f.feature for f in error.findings] == ["monthly_charge", "plan"]
    assert isinstance(error, InvalidInput)  # an app's one Kiln error handler answers it


def test_accept_answers_as_if_nothing_was_checked(churn: Predictor) -> None:
    lenient = Predictor(churn.runtime.stored, input_checks=CheckMode.accept)
    answer = lenient.predict([CHURN_ROW, DRIFTED])
    assert "warnings" not in answer and "warning_count" not in answer
    warned = churn.predict([CHURN_ROW, DRIFTED])
    assert answer["predictions"] == warned["predictions"]
    assert answer["probabilities"] == warned["probabilities"]


def test_the_models_own_mode_is_the_default(churn: Predictor) -> None:
    stored = churn.runtime.stored
    assert stored.metadata.reference is not None
    reference = stored.metadata.reference.model_copy(update={"checks": CheckMode.reject})
    strict = dataclasses.replace(
        stored, metadata=stored.metadata.model_copy(update={"reference": reference})
    )
    assert Predictor(strict).input_checks is CheckMode.reject
    with pytest.raises(InputRejected):
        Predictor(strict).predict([DRIFTED])
    assert "warnings" in Predictor(strict, input_checks="warn").predict([DRIFTED])


@pytest.mark.parametrize("name", ["churn", "wine", "diabetes"])
def test_rows_at_the_training_min_and_max_pass(served_models: dict[str, Any], name: str) -> None:
    strict = Predictor.from_store(served_models[name].tag, input_checks="reject")
    meta = strict.metadata
    numeric = [f.name for f in meta.features if f.kind is FeatureKind.numeric]
    base = CHURN_ROW if name == "churn" else {n: meta.feature_stats[n].min for n in numeric}
    rows = [
        {**base, **{n: getattr(meta.feature_stats[n], end) for n in numeric}}
        for end in ("min", "max")
    ]
    rows += [
        {**base, n: getattr(meta.feature_stats[n], end)} for n in numeric for end in ("min", "max")
    ]
    answer = strict.predict(rows)  # no InputRejected
    assert len(answer["predictions"]) == len(rows)
    # just past them (beyond the margin): found
    for n in numeric:
        low, high = strict._checks.ranges()[n]
        for value in (low - abs(low) * 0.01 - 1, high + abs(high) * 0.01 + 1):
            with pytest.raises(InputRejected, match=f"feature '{n}', row 0"):
                strict.predict([{**base, n: value}])


def test_an_unknown_mode_is_refused(churn: Predictor) -> None:
    with pytest.raises(InvalidInput, match="input_checks: 'rejct' is not an input-check mode"):
        Predictor(churn.runtime.stored, input_checks="rejct")  # type: ignore[arg-type]
