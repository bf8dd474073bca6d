"""The Django example (examples/django_app) answers like the Predictor and like the Flask one.

Django's settings are process-wide: the ``django_client`` fixture points
``DJANGO_SETTINGS_MODULE`` at the example only while this module runs, and unconfigures
``django.conf.settings`` afterwards, so no other test sees them.
"""

from __future__ import annotations

import html
import json
import re
import threading
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlencode

import django
import pytest
from django.conf import settings
from django.test import Client, override_settings
from django.test.utils import setup_test_environment, teardown_test_environment
from django.utils.functional import empty
from flask.testing import FlaskClient

from examples.django_app import views
from examples.django_app.views import PREDICTORS, Predictors
from examples.flask_app.app import create_app
from examples.forms import default_value, from_form
from kiln import Predictor
from kiln.errors import InvalidInput, ModelNotFound
from tests.integration.test_flask_example import RECORDS

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def django_client(served_models: dict[str, Any]) -> Iterator[Client]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DJANGO_SETTINGS_MODULE", "examples.django_app.settings")
        django.setup()
        setup_test_environment()  # lets the test client's host, "testserver", in
        PREDICTORS.clear()  # load from this test store, after every model in it was trained
        try:
            with override_settings(KILN_MODEL="churn"):
                yield Client()
        finally:
            PREDICTORS.clear()
            teardown_test_environment()
            settings._wrapped = empty  # unconfigured again: the next access raises


@pytest.fixture(scope="module")
def flask_client(served_models: dict[str, Any]) -> FlaskClient:
    return create_app("churn").test_client()


def _median_row(predictor: Predictor) -> dict[str, Any]:
    """A valid row of any model: each feature's training median or most frequent category."""
    return {f.name: from_form(f, default_value(predictor, f)) for f in predictor.metadata.features}


def _json(response: Any) -> Any:
    assert response["Content-Type"] == "application/json"
    return response.json()


@pytest.mark.parametrize("name", ["churn", "wine", "diabetes"])
def test_each_model_answers_like_its_predictor(django_client: Client, name: str) -> None:
    predictor = Predictor.from_store(name)
    rows = [_median_row(predictor)] * 3
    response = django_client.post(
        f"/models/{name}/predict", {"instances": rows}, content_type="application/json"
    )
    assert response.status_code == 200
    assert _json(response) == predictor.predict(rows)


def test_the_default_model_answers_like_its_predictor(django_client: Client) -> None:
    expected = Predictor.from_store("churn").predict(RECORDS)
    for path in ("/predict", "/models/churn/predict"):
        response = django_client.post(path, {"instances": RECORDS}, content_type="application/json")
        assert response.status_code == 200
        assert _json(response) == expected
    one = django_client.post("/predict", RECORDS[1], content_type="application/json")
    assert _json(one) == Predictor.from_store("churn").predict([RECORDS[1]])


def test_a_bad_row_is_a_400_with_the_predictors_message(django_client: Client) -> None:
    rows = [RECORDS[0], {**RECORDS[1], "age": "forty"}]
    with pytest.raises(InvalidInput) as raised:
        Predictor.from_store("churn").predict(rows)
    response = django_client.post(
        "/models/churn/predict", {"instances": rows}, content_type="application/json"
    )
    assert response.status_code == 400
    assert _json(response) == {"error": raised.value.message}
    assert "instances[1].age" in raised.value.message


def test_an_unknown_model_is_a_404_with_the_stores_message(django_client: Client) -> None:
    with pytest.raises(ModelNotFound) as raised:
        Predictor.from_store("no-such-model")
    response = django_client.post(
        "/models/no-such-model/predict", {"instances": RECORDS}, content_type="application/json"
    )
    assert response.status_code == 404
    assert _json(response) == {"error": raised.value.message}
    assert "no-such-model" not in PREDICTORS.loaded()


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        ("tenure_months=3", "text/plain"),
        ("tenure_months=3", "application/x-www-form-urlencoded"),
        ('{"instances": [', "application/json"),
        ("[]", "application/json"),
        ('"a string"', "application/json"),
    ],
    ids=["text", "form", "broken-json", "a-list", "a-string"],
)
def test_a_body_that_is_not_a_json_object_is_a_400(
    django_client: Client, body: str, content_type: str
) -> None:
    response = django_client.post("/models/churn/predict", body, content_type=content_type)
    assert response.status_code == 400
    assert _json(response) == {"error": views.NOT_AN_OBJECT}


def test_an_object_without_instances_is_one_record_and_a_400(django_client: Client) -> None:
    response = django_client.post(
        "/models/churn/predict", {"rows": RECORDS}, content_type="application/json"
    )
    assert response.status_code == 400
    assert "instances[0]" in _json(response)["error"]


def test_predict_takes_only_post(django_client: Client) -> None:
    assert django_client.get("/models/churn/predict").status_code == 405
    assert django_client.get("/predict").status_code == 405


def test_healthz_names_the_loaded_versions(django_client: Client) -> None:
    django_client.post("/predict", RECORDS[0], content_type="application/json")
    response = django_client.get("/healthz")
    assert response.status_code == 200
    answer = _json(response)
    assert answer["status"] == "ok"
    assert answer["loaded"]["churn"] == Predictor.from_store("churn").version


def test_the_form_lists_plan_categories(django_client: Client) -> None:
    response = django_client.get("/")
    assert response.status_code == 200
    page = response.content.decode()
    select = re.search(r'<select name="plan">(.*?)</select>', page, re.S)
    assert select is not None
    options = re.findall(r'<option value="([^"]*)"', select.group(1))
    (plan,) = (f for f in Predictor.from_store("churn").metadata.features if f.name == "plan")
    assert options == plan.categories
    assert 'type="number" step="any" name="tenure_months"' in page


def test_posting_the_form_shows_the_prediction(django_client: Client) -> None:
    form = {k: "" if v is None else str(v) for k, v in RECORDS[1].items()}
    response = django_client.post("/predict-form", form)
    assert response.status_code == 200
    expected = Predictor.from_store("churn").predict([RECORDS[1]])
    label = expected["predictions"][0]
    probability = expected["probabilities"][0][label]
    assert f"Predicted {label}, with probability {probability:.1%}." in response.content.decode()


def test_a_bad_form_value_is_shown_with_a_400(django_client: Client) -> None:
    form = {k: "" if v is None else str(v) for k, v in RECORDS[0].items()}
    response = django_client.post("/predict-form", {**form, "age": "forty"})
    assert response.status_code == 400
    assert "instances[0].age: expected a number or null, got string" in response.content.decode()


def test_concurrent_first_requests_load_a_model_once(monkeypatch: pytest.MonkeyPatch) -> None:
    loads: list[str] = []

    def slow_load(ref: str) -> object:
        loads.append(ref)
        time.sleep(0.05)
        return object()

    monkeypatch.setattr(views.Predictor, "from_store", slow_load)
    predictors = Predictors()
    got: list[object] = []
    threads = [threading.Thread(target=lambda: got.append(predictors.get("m"))) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert loads == ["m"]
    assert len(got) == 8
    assert all(g is got[0] for g in got)


# Parity: the same request to both examples gets the same status and the same body.
RAW = "application/json"
PARITY = {
    "instances": ({"instances": RECORDS}, RAW),
    "one-record": (RECORDS[1], RAW),
    "bad-value": ({"instances": [{**RECORDS[0], "age": "forty"}]}, RAW),
    "unknown-feature": ({**RECORDS[0], "shoe_size": 42}, RAW),
    "missing-feature": ({"instances": [{"age": 30}]}, RAW),
    "no-instances": ({"rows": RECORDS}, RAW),
    "empty-instances": ({"instances": []}, RAW),
    "instances-not-a-list": ({"instances": "all"}, RAW),
    "a-list": ([RECORDS[0]], RAW),
    "broken-json": ('{"instances": [', RAW),
    "text-body": ("tenure_months=3", "text/plain"),
    "charset": ({"instances": RECORDS}, "application/json; charset=utf-8"),
    "suffix-json": ({"instances": RECORDS}, "application/vnd.kiln+json"),
}


@pytest.mark.parametrize("path", ["/predict", "/models/churn/predict"])
@pytest.mark.parametrize("case", PARITY)
def test_django_and_flask_answer_predict_alike(
    django_client: Client, flask_client: FlaskClient, case: str, path: str
) -> None:
    payload, content_type = PARITY[case]
    body = payload if isinstance(payload, str) else json.dumps(payload)
    ours = django_client.post(path, body, content_type=content_type)
    theirs = flask_client.post("/predict", data=body, content_type=content_type)
    assert (ours.status_code, _json(ours)) == (theirs.status_code, theirs.get_json())
    assert theirs.mimetype == "application/json"


def _form_fields(page: str) -> list[tuple[str, ...]]:
    """(name, value or selected option, options...) of each field of the form page."""
    page = html.unescape(page)  # Django writes ' as &#x27;, Jinja as &#39;
    fields: list[tuple[str, ...]] = []
    for match in re.finditer(r'<input [^>]*name="([^"]*)" value="([^"]*)"', page):
        fields.append(match.groups())
    for name, body in re.findall(r'<select name="([^"]*)">(.*?)</select>', page, re.S):
        options = re.findall(r'<option value="([^"]*)"', body)
        selected = re.findall(r'<option value="([^"]*)" selected', body)
        fields.append((name, *selected, *options))
    for match in re.finditer(r'<textarea name="([^"]*)"[^>]*>(.*?)</textarea>', page, re.S):
        fields.append(match.groups())
    return sorted(fields)


def _outcome(page: str) -> list[str]:
    """The prediction in words, or the error, that the form page shows."""
    page = html.unescape(page)
    return re.findall(r"<p>(?:<strong>Error:</strong> )?(Predicted [^<]*|instances[^<]*)</p>", page)


@pytest.mark.parametrize(
    "change", [{}, {"age": "forty"}, {"plan": ""}, {"tenure_months": " "}, {"region": "mars"}]
)
def test_django_and_flask_answer_the_form_alike(
    django_client: Client, flask_client: FlaskClient, change: dict[str, str]
) -> None:
    ours, theirs = django_client.get("/"), flask_client.get("/")
    assert ours.status_code == theirs.status_code == 200
    assert _form_fields(ours.content.decode()) == _form_fields(theirs.get_data(as_text=True))

    form = {**{k: "" if v is None else str(v) for k, v in RECORDS[1].items()}, **change}
    body, content_type = urlencode(form), "application/x-www-form-urlencoded"
    ours = django_client.post("/predict-form", body, content_type=content_type)
    theirs = flask_client.post("/predict-form", data=body, content_type=content_type)
    assert ours.status_code == theirs.status_code
    ours_page, theirs_page = ours.content.decode(), theirs.get_data(as_text=True)
    assert _outcome(ours_page) == _outcome(theirs_page) != []
    assert _form_fields(ours_page) == _form_fields(theirs_page)
