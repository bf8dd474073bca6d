"""schemathesis against the served OpenAPI document: zero 5xx, every answer as documented.

Bounded: a fixed number of generated requests per route (positive and negative: schema-valid
bodies with random features, and bodies that break the schema), plus the document's own
examples, which are valid requests for each served model.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_schema_conformance,
    status_code_conformance,
)

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    negative_data_rejection,
]


@pytest.fixture(scope="module")
def api_schema(server: str) -> Any:
    return schemathesis.openapi.from_url(f"{server}/openapi.json")


schema = schemathesis.pytest.from_fixture("api_schema")


def test_the_document_has_real_schemas_and_names_the_models(server: str) -> None:
    document = httpx.get(f"{server}/openapi.json").json()
    predict = document["paths"]["/v1/models/{name}/predict"]["post"]
    body = predict["requestBody"]["content"]["application/json"]
    assert body["schema"] == {"$ref": "#/components/schemas/RecordsRequest"}
    assert set(body["examples"]) == {"churn", "wine", "diabetes"}
    assert {"200", "400", "404", "413", "415", "503"} <= set(predict["responses"])
    infer = document["paths"]["/v2/models/{name}/infer"]["post"]
    assert "application/octet-stream" in infer["responses"]["200"]["content"]
    for example in body["examples"].values():  # each example is a request the model takes
        name = example["summary"]
        answer = httpx.post(f"{server}/v1/models/{name}/predict", json=example["value"])
        assert answer.status_code == 200, answer.text


@schema.parametrize()
@settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
def test_every_route_answers_as_documented(case: Any) -> None:
    case.call_and_validate(checks=CHECKS)
