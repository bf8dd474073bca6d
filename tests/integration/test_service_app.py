"""Both protocols in-process (FastAPI test client over the real data plane and real models).

Every bad input named by the serving issue gets a 4xx JSON error naming the field, and the
service keeps answering afterwards.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from kiln import Predictor
from service.app import create_app
from service.dataplane import DataPlane
from service.settings import ServingSettings
from tests.conftest import CHURN_ROW

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def plane(served_models: dict[str, Any]) -> DataPlane:
    settings = ServingSettings(
        models=[m.tag for m in served_models.values()],
        max_rows_per_request=50,
        max_body_bytes=64 * 1024,
    )
    return DataPlane.load(settings)


@pytest.fixture(scope="module")
def client(plane: DataPlane) -> Iterator[TestClient]:
    app = create_app()
    app.state.dataplane = plane
    with TestClient(app, raise_server_exceptions=False) as test_client:
        yield test_client


def predict(client: TestClient, name: str, body: Any, **kwargs: Any) -> Any:
    data = body if isinstance(body, bytes | str) else json.dumps(body)
    return client.post(f"/v1/models/{name}/predict", content=data, **kwargs)


def test_models_are_listed_with_version_and_task(client: TestClient, served_models: dict) -> None:
    listed = client.get("/v1/models").json()["models"]
    assert {(m["name"], m["version"], m["task"]) for m in listed} == {
        (s.metadata.name, s.metadata.version, s.metadata.task.value) for s in served_models.values()
    }
    churn = client.get("/v1/models/churn").json()
    assert churn["classes"] == ["no", "yes"]
    plan = next(f for f in churn["features"] if f["name"] == "plan")
    assert (
        plan["kind"] == "categorical"
        and plan["dtype"] == "string"
        and "fiber" in plan["categories"]
    )
    assert (
        churn["metrics"]["roc_auc"] > 0.7
        and churn["execution"]["provider"] == "CPUExecutionProvider"
    )


def test_json_predictions_match_the_in_process_predictor(
    client: TestClient, served_models: dict
) -> None:
    rows = [CHURN_ROW, {**CHURN_ROW, "contract": "two-year", "tenure_months": 60, "plan": None}]
    answer = predict(client, "churn", {"instances": rows}).json()
    expected = Predictor.from_store(served_models["churn"].tag).predict(rows)
    assert answer == expected
    assert answer["predictions"][0] in ("yes", "no")
    assert sum(answer["probabilities"][1].values()) == pytest.approx(1.0, abs=1e-6)


def test_regression_and_multiclass_answers(client: TestClient) -> None:
    from sklearn.datasets import load_diabetes, load_wine

    wine = load_wine(as_frame=True).frame
    features = [f["name"] for f in client.get("/v1/models/wine").json()["features"]]
    row = dict(zip(features, wine.iloc[0, :13].tolist(), strict=True))
    answer = predict(client, "wine", {"instances": [row]}).json()
    assert answer["predictions"] == ["class_0"]
    assert set(answer["probabilities"][0]) == {"class_0", "class_1", "class_2"}
    diabetes = load_diabetes(as_frame=True).frame
    names = [f["name"] for f in client.get("/v1/models/diabetes").json()["features"]]
    row = dict(zip(names, diabetes.iloc[0, :10].tolist(), strict=True))
    value = predict(client, "diabetes", {"instances": [row]}).json()["predictions"][0]
    assert isinstance(value, float) and 25 < value < 346


def v2_body(inputs: list[dict[str, Any]], **extra: Any) -> bytes:
    return json.dumps({"inputs": inputs, **extra}).encode()


def churn_v2_inputs(rows: int = 1) -> list[dict[str, Any]]:
    values = {k: v for k, v in CHURN_ROW.items()}
    out = []
    for name, value in values.items():
        if isinstance(value, str) or name in ("plan", "contract", "region", "payment_method"):
            out.append(
                {"name": name, "datatype": "BYTES", "shape": [rows, 1], "data": [value] * rows}
            )
        else:
            out.append(
                {
                    "name": name,
                    "datatype": "FP32",
                    "shape": [rows, 1],
                    "data": [value if value is not None else 0.0] * rows,
                }
            )
    return out


def test_v2_metadata_lets_a_client_build_a_request(client: TestClient) -> None:
    meta = client.get("/v2/models/churn").json()
    inputs = {i["name"]: i for i in meta["inputs"]}
    assert inputs["plan"] == {"name": "plan", "datatype": "BYTES", "shape": [-1, 1]}
    assert inputs["age"]["datatype"] == "FP32"
    assert [o["name"] for o in meta["outputs"]] == ["label", "probabilities"]
    version = meta["versions"][0]
    assert client.get(f"/v2/models/churn/versions/{version}").json() == meta
    assert client.get("/v2/models/churn/ready").json()["ready"] is True
    assert client.get("/v2/health/ready").status_code == 200
    assert client.get("/v2/health/live").json() == {"live": True}
    assert "binary_tensor_data" in client.get("/v2").json()["extensions"]


def test_v2_json_infer_matches_the_records_answer(client: TestClient) -> None:
    response = client.post("/v2/models/churn/infer", content=v2_body(churn_v2_inputs(2), id="r1"))
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model_name"] == "churn" and body["id"] == "r1"
    outputs = {o["name"]: o for o in body["outputs"]}
    row = {**CHURN_ROW, "data_gb": 0.0}
    expected = predict(client, "churn", {"instances": [row, row]}).json()
    assert outputs["label"]["data"] == expected["predictions"]
    assert outputs["probabilities"]["shape"] == [2, 2]
    np.testing.assert_allclose(
        outputs["probabilities"]["data"][:2], list(expected["probabilities"][0].values()), rtol=1e-6
    )


# -- bad input: each case of the serving issue ------------------------------------------

BAD_RECORDS = [
    (
        "missing feature",
        {"instances": [{k: v for k, v in CHURN_ROW.items() if k != "age"}]},
        400,
        "missing feature 'age'",
    ),
    (
        "unknown feature",
        {"instances": [{**CHURN_ROW, "colour": "red"}]},
        400,
        "unknown feature 'colour'",
    ),
    (
        "string for number",
        {"instances": [{**CHURN_ROW, "age": "thirty"}]},
        400,
        "instances[0].age: expected a number",
    ),
    (
        "infinity",
        b'{"instances": ['
        + json.dumps({**CHURN_ROW}).encode().replace(b'"age": 30', b'"age": 1e999')
        + b"]}",
        400,
        "number is infinity",
    ),
    ("float32 overflow", {"instances": [{**CHURN_ROW, "age": 1e39}]}, 400, "not a finite float32"),
    ("empty list", {"instances": []}, 400, "'instances' is empty"),
    ("too many rows", {"instances": [CHURN_ROW] * 51}, 413, "the limit is 50"),
    ("malformed JSON", b'{"instances": [', 400, "not valid JSON"),
    ("empty body", b"", 400, "body is empty"),
    ("not an object", b"[1, 2]", 400, "must be a JSON object"),
]


@pytest.mark.parametrize(
    ("case", "body", "status", "phrase"), BAD_RECORDS, ids=[c[0] for c in BAD_RECORDS]
)
def test_bad_records_get_4xx_json(
    client: TestClient, case: str, body: Any, status: int, phrase: str
) -> None:
    response = predict(client, "churn", body)
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    assert phrase in response.json()["error"]
    assert predict(client, "churn", {"instances": [CHURN_ROW]}).status_code == 200  # still serving


def test_unknown_model_is_404_on_both_protocols(client: TestClient) -> None:
    for response in (
        predict(client, "nope", {"instances": [CHURN_ROW]}),
        client.get("/v1/models/nope"),
        client.get("/v2/models/nope"),
        client.post("/v2/models/nope/infer", content=v2_body(churn_v2_inputs())),
        client.get("/v2/models/churn/versions/0000/ready"),
    ):
        assert response.status_code == 404 and "not in the store" in response.json()["error"]


def test_body_over_the_size_limit_is_413(client: TestClient) -> None:
    big = json.dumps({"instances": [{**CHURN_ROW, "plan": "x" * 70_000}]})
    response = predict(client, "churn", big)
    assert response.status_code == 413 and "over the limit" in response.json()["error"]


def _binary_request(header: dict[str, Any], blobs: list[bytes]) -> tuple[bytes, dict[str, str]]:
    head = json.dumps(header).encode()
    return head + b"".join(blobs), {"Inference-Header-Content-Length": str(len(head))}


BAD_V2 = [
    ("wrong shape", [{**churn_v2_inputs()[0], "shape": [1, 2]}, *churn_v2_inputs()[1:]], "shape"),
    (
        "mismatched rows",
        [{**churn_v2_inputs(2)[0]}, *churn_v2_inputs(1)[1:]],
        "has 1 rows, earlier inputs have 2",
    ),
    (
        "wrong datatype",
        [{**churn_v2_inputs()[0], "datatype": "BYTES", "data": ["3"]}, *churn_v2_inputs()[1:]],
        "tenure_months",
    ),
    ("missing input", churn_v2_inputs()[1:], "tenure_months"),
    (
        "unknown input",
        [
            *churn_v2_inputs(),
            {"name": "colour", "datatype": "BYTES", "shape": [1, 1], "data": ["red"]},
        ],
        "colour",
    ),
]


@pytest.mark.parametrize(("case", "inputs", "field"), BAD_V2, ids=[c[0] for c in BAD_V2])
def test_bad_v2_tensors_get_4xx_naming_the_input(
    client: TestClient, case: str, inputs: list, field: str
) -> None:
    response = client.post("/v2/models/churn/infer", content=v2_body(inputs))
    assert 400 <= response.status_code < 500, response.text
    assert field in response.json()["error"]


def test_v2_binary_payload_shorter_than_its_header_says(client: TestClient) -> None:
    inputs = churn_v2_inputs()
    first = {k: v for k, v in inputs[0].items() if k != "data"}
    first["parameters"] = {"binary_data_size": 4}
    body, headers = _binary_request({"inputs": [first, *inputs[1:]]}, [struct.pack("<f", 3.0)[:2]])
    response = client.post("/v2/models/churn/infer", content=body, headers=headers)
    assert response.status_code == 400 and "tenure_months" in response.json()["error"]


def test_v2_binary_infinity_is_refused_but_nan_means_missing(client: TestClient) -> None:
    inputs = churn_v2_inputs()
    data_gb = next(i for i in inputs if i["name"] == "data_gb")
    for value, status in ((float("inf"), 400), (float("nan"), 200)):
        tensor = {k: v for k, v in data_gb.items() if k != "data"}
        tensor["parameters"] = {"binary_data_size": 4}
        others = [i for i in inputs if i["name"] != "data_gb"]
        body, headers = _binary_request({"inputs": [*others, tensor]}, [struct.pack("<f", value)])
        response = client.post("/v2/models/churn/infer", content=body, headers=headers)
        assert response.status_code == status, response.text
    assert (
        "infinite"
        in client.post(
            "/v2/models/churn/infer",
            content=_binary_request(
                {"inputs": [*others, tensor]}, [struct.pack("<f", float("inf"))]
            )[0],
            headers=headers,
        ).json()["error"]
    )


def test_unknown_features_are_ignored_when_the_setting_says_so(served_models: dict) -> None:
    plane = DataPlane.load(ServingSettings(models=["churn"], unknown_features="ignore"))
    app = create_app()
    app.state.dataplane = plane
    with TestClient(app) as lenient:
        response = predict(lenient, "churn", {"instances": [{**CHURN_ROW, "colour": "red"}]})
    assert response.status_code == 200


@pytest.mark.parametrize(
    "content_type",
    [None, "application/json", "application/json; charset=utf-8", "application/vnd.x+json"],
)
def test_json_content_types_are_read(client: TestClient, content_type: str | None) -> None:
    headers = {} if content_type is None else {"Content-Type": content_type}
    answer = predict(client, "churn", {"instances": [CHURN_ROW]}, headers=headers)
    assert answer.status_code == 200, answer.text


@pytest.mark.parametrize(
    "content_type", ["text/plain", "application/x-www-form-urlencoded", "application/xml"]
)
def test_other_content_types_are_415_before_the_body_is_read(
    client: TestClient, content_type: str
) -> None:
    answer = predict(
        client, "churn", {"instances": [CHURN_ROW]}, headers={"Content-Type": content_type}
    )
    assert answer.status_code == 415
    assert content_type in answer.json()["error"] and "application/json" in answer.json()["error"]
    if content_type.endswith("urlencoded"):
        assert "curl -d" in answer.json()["error"]


def test_colons_inside_strings_are_fine_and_duplicates_are_named(client: TestClient) -> None:
    row = {**CHURN_ROW, "region": "east:north", "plan": "a:b:c"}
    assert predict(client, "churn", {"instances": [row]}).status_code == 200
    body = json.dumps({"instances": [row]}).replace('"age": 30', '"age": 30, "age": 31')
    answer = predict(client, "churn", body)
    assert answer.status_code == 400 and "'age' appears twice" in answer.json()["error"]
