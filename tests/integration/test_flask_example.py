"""The Flask example (examples/flask_app) answers like the in-process Predictor it embeds."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from examples.flask_app.app import create_app
from kiln import Predictor
from tests.conftest import SPECS
from training.run import train
from training.spec import load_spec

pytestmark = pytest.mark.integration

RECORDS: list[dict[str, Any]] = [
    {
        "tenure_months": 34,
        "monthly_charge": 43.14,
        "data_gb": None,
        "support_calls": 1,
        "age": 45,
        "plan": "standard",
        "contract": "monthly",
        "region": "south",
        "payment_method": None,
    },
    {
        "tenure_months": 2,
        "monthly_charge": 71.5,
        "data_gb": 310.0,
        "support_calls": 5,
        "age": 24,
        "plan": "fiber",
        "contract": "annual",
        "region": "north",
        "payment_method": "card",
    },
]


@pytest.fixture(scope="module")
def app() -> Iterator[Flask]:
    spec_path = SPECS / "churn.yaml"
    train(load_spec(spec_path), spec_path=spec_path)
    yield create_app("churn")


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture(scope="module")
def predictor(app: Flask) -> Predictor:
    return Predictor.from_store("churn")


def test_json_predict_matches_the_predictor(client: FlaskClient, predictor: Predictor) -> None:
    response = client.post("/predict", json={"instances": RECORDS})
    assert response.status_code == 200
    answer = response.get_json()
    assert len(answer["predictions"]) == 2
    assert set(answer["predictions"]) <= set(predictor.metadata.classes or [])
    for label, probabilities in zip(answer["predictions"], answer["probabilities"], strict=True):
        assert sum(probabilities.values()) == pytest.approx(1.0, abs=1e-5)
        assert probabilities[label] == max(probabilities.values())
    assert answer == predictor.predict(RECORDS)


def test_a_single_record_object_is_one_row(client: FlaskClient, predictor: Predictor) -> None:
    response = client.post("/predict", json=RECORDS[1])
    assert response.status_code == 200
    assert response.get_json() == predictor.predict([RECORDS[1]])


def test_a_string_for_a_number_is_a_400_naming_the_feature(client: FlaskClient) -> None:
    response = client.post("/predict", json={"instances": [{**RECORDS[0], "age": "forty"}]})
    assert response.status_code == 400
    assert response.is_json
    assert "instances[0].age" in response.get_json()["error"]


def test_an_unknown_feature_is_a_400(client: FlaskClient) -> None:
    response = client.post("/predict", json={**RECORDS[0], "shoe_size": 42})
    assert response.status_code == 400
    assert "unknown feature 'shoe_size'" in response.get_json()["error"]


def test_a_body_that_is_not_a_json_object_is_a_400(client: FlaskClient) -> None:
    for response in (
        client.post("/predict", data="tenure_months=3", content_type="text/plain"),
        client.post("/predict", json=[RECORDS[0]]),
    ):
        assert response.status_code == 400
        assert "error" in response.get_json()


def test_the_form_lists_plan_categories(client: FlaskClient, predictor: Predictor) -> None:
    response = client.get("/")
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    select = re.search(r'<select name="plan">(.*?)</select>', page, re.S)
    assert select is not None
    options = re.findall(r'<option value="([^"]*)"', select.group(1))
    (plan,) = (f for f in predictor.metadata.features if f.name == "plan")
    assert options == plan.categories
    assert 'action="/predict-form"' in page
    assert 'type="number" step="any" name="tenure_months"' in page


def test_posting_the_form_shows_the_prediction(client: FlaskClient, predictor: Predictor) -> None:
    form = {k: "" if v is None else str(v) for k, v in RECORDS[1].items()}
    response = client.post("/predict-form", data=form)
    assert response.status_code == 200
    expected = predictor.predict([RECORDS[1]])
    label = expected["predictions"][0]
    probability = expected["probabilities"][0][label]
    assert f"Predicted {label}, with probability {probability:.1%}." in response.get_data(
        as_text=True
    )


def test_a_bad_form_value_is_shown_with_a_400(client: FlaskClient) -> None:
    form = {k: "" if v is None else str(v) for k, v in RECORDS[0].items()}
    response = client.post("/predict-form", data={**form, "age": "forty"})
    assert response.status_code == 400
    assert "instances[0].age: expected a number or null, got string" in response.get_data(
        as_text=True
    )
