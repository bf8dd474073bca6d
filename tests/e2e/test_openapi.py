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
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_schema_conformance,
    status_code_conformance,
)

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

EXAMPLES = 30
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    negative_data_rejection,
]


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


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_every_route_answers_as_documented(server: str, mode: GenerationMode) -> None:
    """For each route of the document, ``EXAMPLES`` generated requests (schema-valid ones,
    then ones that break the schema); every check must hold for every answer."""
    schema = schemathesis.openapi.from_url(f"{server}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 13
    fuzzed = []
    for operation in operations:

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def answers_as_documented(case: Any) -> None:
            case.call_and_validate(checks=CHECKS)

        try:
            answers_as_documented()
        except Unsatisfiable:  # a route with no input cannot be sent an invalid one
            assert mode is GenerationMode.NEGATIVE
            continue
        fuzzed.append(operation.label)
    assert len(fuzzed) >= (13 if mode is GenerationMode.POSITIVE else 5), fuzzed
    assert {"POST /v1/models/{name}/predict", "POST /v2/models/{name}/infer"} <= set(fuzzed)
