"""A corpus of malformed and hostile requests against the real server, both protocols.

Each one must get its documented 4xx status with a JSON ``{"error": ...}`` body, and the
server must keep answering good requests afterwards.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.conftest import CHURN_ROW

pytestmark = [pytest.mark.e2e]

MAX_ROWS = 20
MAX_BODY = 64 * 1024
RECORDS = "/v1/models/churn/predict"
V2 = "/v2/models/churn/infer"
JSON = {"Content-Type": "application/json"}


def records(*rows: Any) -> bytes:
    return json.dumps({"instances": list(rows)}).encode()


def v2_input(name: str, value: Any, **changes: Any) -> dict[str, Any]:
    datatype = "BYTES" if isinstance(value, str) else "FP32"
    return {"name": name, "shape": [1], "datatype": datatype, "data": [value], **changes}


def v2(*inputs: dict[str, Any], **request: Any) -> bytes:
    return json.dumps({"inputs": list(inputs), **request}).encode()


def good_inputs(**replace: dict[str, Any]) -> list[dict[str, Any]]:
    row = {k: (0.0 if v is None else v) for k, v in CHURN_ROW.items()}
    return [replace.get(k, v2_input(k, v)) for k, v in row.items()]


def binary(*, truncate: int = 0, extra: bytes = b"") -> tuple[bytes, dict[str, str]]:
    """tenure_months as a binary FP32 tensor, the rest as JSON."""
    raw = struct.pack("<f", 3.0)
    inputs = good_inputs(
        tenure_months={
            "name": "tenure_months",
            "shape": [1],
            "datatype": "FP32",
            "parameters": {"binary_data_size": len(raw)},
        }
    )
    header = json.dumps({"inputs": inputs}).encode()
    body = header + raw[: len(raw) - truncate] + extra
    return body, {**JSON, "Inference-Header-Content-Length": str(len(header))}


def _duplicate(body: bytes, key: str, value: str) -> bytes:
    """``body`` with ``"key": value`` added again inside the first object that has ``key``."""
    marker = json.dumps(key).encode() + b": "
    at = body.index(marker)
    return body[:at] + marker + value.encode() + b", " + body[at:]


def _deep(levels: int) -> bytes:
    return b'{"instances": ' + b"[" * levels + b"]" * levels + b"}"


BIN_TRUNCATED = binary(truncate=3)
BIN_LEFTOVER = binary(extra=b"\x00" * 8)
BIN_GOOD_BODY = binary()[0]

# (id, path, body, headers, expected status)
# fmt: off
CORPUS: list[tuple[str, str, bytes, dict[str, str], int]] = [
    # -- JSON records --------------------------------------------------------------------
    ("records-empty-body", RECORDS, b"", JSON, 400),
    ("records-not-json", RECORDS, b"{instances: [", JSON, 400),
    ("records-top-level-array", RECORDS, b"[]", JSON, 400),
    ("records-top-level-string", RECORDS, b'"hello"', JSON, 400),
    ("records-top-level-null", RECORDS, b"null", JSON, 400),
    ("records-instances-object", RECORDS, b'{"instances": {}}', JSON, 400),
    ("records-instances-empty", RECORDS, b'{"instances": []}', JSON, 400),
    ("records-row-not-object", RECORDS, b'{"instances": [1]}', JSON, 400),
    ("records-missing-feature", RECORDS,
     records({k: v for k, v in CHURN_ROW.items() if k != "age"}), JSON, 400),
    ("records-unknown-feature", RECORDS, records({**CHURN_ROW, "colour": "red"}), JSON, 400),
    ("records-unicode-feature-name", RECORDS, records({**CHURN_ROW, "ñämé ☃": 1}), JSON, 400),
    ("records-nul-in-feature-name", RECORDS, records({**CHURN_ROW, "a\u0000b": 1}), JSON, 400),
    ("records-string-for-number", RECORDS, records({**CHURN_ROW, "age": "thirty"}), JSON, 400),
    ("records-bool-for-number", RECORDS, records({**CHURN_ROW, "age": True}), JSON, 400),
    ("records-number-past-float32", RECORDS, records({**CHURN_ROW, "age": 1e39}), JSON, 400),
    ("records-huge-integer", RECORDS,
     b'{"instances": [' + json.dumps(CHURN_ROW).encode()[:-1] + b', "age": 1' + b"0" * 400
     + b"}]}", JSON, 400),
    ("records-infinity-literal", RECORDS,
     json.dumps({"instances": [{**CHURN_ROW, "age": float("inf")}]}).encode(), JSON, 400),
    ("records-nan-literal", RECORDS,
     json.dumps({"instances": [{**CHURN_ROW, "age": float("nan")}]}).encode(), JSON, 400),
    ("records-float-overflow", RECORDS,
     json.dumps({"instances": [CHURN_ROW]}).encode().replace(b'"age": 30', b'"age": 1e400'),
     JSON, 400),
    ("records-object-for-number", RECORDS, records({**CHURN_ROW, "age": {"v": 1}}), JSON, 400),
    ("records-list-for-category", RECORDS, records({**CHURN_ROW, "plan": ["fiber"]}), JSON, 400),
    ("records-float-for-category", RECORDS, records({**CHURN_ROW, "plan": 1.5}), JSON, 400),
    ("records-deeply-nested", RECORDS, _deep(5000), JSON, 400),
    ("records-unknown-top-level-field", RECORDS,
     json.dumps({"instances": [CHURN_ROW], "extra": 1}).encode(), JSON, 400),
    ("records-invalid-utf8", RECORDS, b'{"instances": [{"plan": "\xff\xfe"}]}', JSON, 400),
    ("records-too-many-rows", RECORDS, records(*[CHURN_ROW] * (MAX_ROWS + 1)), JSON, 413),
    ("records-body-too-large", RECORDS, b" " * (MAX_BODY + 1) + records(CHURN_ROW), JSON, 413),
    ("records-unknown-model", "/v1/models/nope/predict", records(CHURN_ROW), JSON, 404),
    ("records-model-name-unicode", "/v1/models/%E2%98%83/predict", records(CHURN_ROW), JSON, 404),
    ("records-duplicate-feature", RECORDS, _duplicate(records(CHURN_ROW), "age", "99"), JSON, 400),
    ("records-duplicate-feature-with-colons", RECORDS,
     _duplicate(records({**CHURN_ROW, "region": "east:1"}), "plan", '"dsl"'), JSON, 400),
    ("records-duplicate-instances", RECORDS,
     _duplicate(records(CHURN_ROW), "instances", "[]"), JSON, 400),
    ("records-content-type-text", RECORDS, records(CHURN_ROW), {"Content-Type": "text/plain"},
     415),
    ("records-content-type-form", RECORDS, records(CHURN_ROW),
     {"Content-Type": "application/x-www-form-urlencoded"}, 415),
    ("records-content-type-xml", RECORDS, records(CHURN_ROW),
     {"Content-Type": "application/xml"}, 415),
    ("records-content-type-binary", RECORDS, records(CHURN_ROW),
     {"Content-Type": "application/octet-stream"}, 415),
    # -- Open Inference Protocol (V2) ----------------------------------------------------
    ("v2-empty-body", V2, b"", JSON, 400),
    ("v2-not-json", V2, b"{inputs", JSON, 400),
    ("v2-top-level-array", V2, b"[]", JSON, 400),
    ("v2-no-inputs", V2, b"{}", JSON, 400),
    ("v2-inputs-empty", V2, v2(), JSON, 400),
    ("v2-input-without-name", V2, json.dumps({"inputs": [{"shape": [1]}]}).encode(), JSON, 400),
    ("v2-negative-shape", V2,
     v2(*good_inputs(age=v2_input("age", 30.0, shape=[-1]))), JSON, 400),
    ("v2-shape-and-data-disagree", V2,
     v2(*good_inputs(age=v2_input("age", 30.0, shape=[2]))), JSON, 400),
    ("v2-rows-disagree-across-inputs", V2,
     v2(*good_inputs(age={"name": "age", "shape": [2], "datatype": "FP32", "data": [1, 2]})),
     JSON, 400),
    ("v2-three-dimensional-shape", V2,
     v2(*good_inputs(age=v2_input("age", 30.0, shape=[1, 1, 1]))), JSON, 400),
    ("v2-unknown-datatype", V2,
     v2(*good_inputs(age=v2_input("age", 30.0, datatype="FP128"))), JSON, 400),
    ("v2-string-in-fp32", V2,
     v2(*good_inputs(age=v2_input("age", "x", datatype="FP32"))), JSON, 400),
    ("v2-bytes-for-numeric-feature", V2, v2(*good_inputs(age=v2_input("age", "30"))), JSON, 400),
    ("v2-missing-input", V2, v2(*good_inputs()[1:]), JSON, 400),
    ("v2-unknown-input", V2, v2(*good_inputs(), v2_input("colour", "red")), JSON, 400),
    ("v2-duplicate-input", V2, v2(*good_inputs(), good_inputs()[0]), JSON, 400),
    ("v2-unknown-output", V2, v2(*good_inputs(), outputs=[{"name": "nope"}]), JSON, 400),
    ("v2-parameters-not-object", V2, v2(*good_inputs(), parameters=[1]), JSON, 400),
    ("v2-id-not-string", V2, v2(*good_inputs(), id=7), JSON, 400),
    ("v2-binary-size-negative", V2,
     v2(*good_inputs(age={"name": "age", "shape": [1], "datatype": "FP32",
                          "parameters": {"binary_data_size": -4}})), JSON, 400),
    ("v2-binary-truncated", V2, BIN_TRUNCATED[0], BIN_TRUNCATED[1], 400),
    ("v2-binary-leftover-bytes", V2, BIN_LEFTOVER[0], BIN_LEFTOVER[1], 400),
    ("v2-header-length-not-a-number", V2, BIN_GOOD_BODY,
     {**JSON, "Inference-Header-Content-Length": "twelve"}, 400),
    ("v2-header-length-past-the-body", V2, BIN_GOOD_BODY,
     {**JSON, "Inference-Header-Content-Length": str(len(BIN_GOOD_BODY) + 10)}, 400),
    ("v2-binary-without-header-length", V2, BIN_GOOD_BODY, JSON, 400),
    ("v2-too-many-rows", V2,
     v2(*[{"name": k, "shape": [MAX_ROWS + 1], "datatype": "BYTES" if isinstance(v, str)
           else "FP32", "data": [v if v is not None else 0.0] * (MAX_ROWS + 1)}
          for k, v in CHURN_ROW.items()]), JSON, 413),
    ("v2-body-too-large", V2, b" " * (MAX_BODY + 1) + v2(*good_inputs()), JSON, 413),
    ("v2-unknown-model", "/v2/models/nope/infer", v2(*good_inputs()), JSON, 404),
    ("v2-unknown-version", "/v2/models/churn/versions/nope/infer", v2(*good_inputs()), JSON,
     404),
    ("v2-duplicate-inputs-key", V2, _duplicate(v2(*good_inputs()), "inputs", "[]"), JSON, 400),
    ("v2-duplicate-tensor-data", V2, _duplicate(v2(*good_inputs()), "data", "[99.0]"), JSON,
     400),
    ("v2-duplicate-key-in-binary-header", V2,
     _duplicate(BIN_GOOD_BODY, "datatype", '"FP32"'),
     {**BIN_LEFTOVER[1], "Inference-Header-Content-Length": str(
         int(binary()[1]["Inference-Header-Content-Length"]) + len(b'"datatype": "FP32", '))},
     400),
    ("v2-content-type-text", V2, v2(*good_inputs()), {"Content-Type": "text/plain"}, 415),
    ("v2-content-type-multipart", V2, v2(*good_inputs()),
     {"Content-Type": "multipart/form-data; boundary=x"}, 415),
]
# fmt: on


@pytest.fixture(scope="module")
def strict_server(
    served_models: dict[str, Any], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    from tests.servers import kiln_server

    log = tmp_path_factory.mktemp("bad-input") / "server.log"
    limits = {
        "KILN_SERVE_MAX_ROWS_PER_REQUEST": str(MAX_ROWS),
        "KILN_SERVE_MAX_BODY_BYTES": str(MAX_BODY),
    }
    with kiln_server(served_models, log, **limits) as url:
        yield url


def test_the_corpus_is_large_and_covers_both_protocols() -> None:
    ids = [case[0] for case in CORPUS]
    assert len(ids) == len(set(ids)) and len(ids) >= 40
    assert sum(i.startswith("records-") for i in ids) >= 20
    assert sum(i.startswith("v2-") for i in ids) >= 20


@pytest.mark.parametrize(
    ("path", "body", "headers", "status"),
    [pytest.param(*case[1:], id=case[0]) for case in CORPUS],
)
def test_bad_request_gets_its_4xx_and_a_json_error(
    strict_server: str, path: str, body: bytes, headers: dict[str, str], status: int
) -> None:
    response = httpx.post(strict_server + path, content=body, headers=headers, timeout=30)
    assert response.status_code == status, response.text[:300]
    assert response.headers["content-type"].startswith("application/json")
    error = response.json()["error"]
    assert isinstance(error, str) and error.strip()


def test_the_server_still_answers_after_the_corpus(strict_server: str) -> None:
    for _, path, body, headers, _ in CORPUS:
        httpx.post(strict_server + path, content=body, headers=headers, timeout=30)
    good = httpx.post(strict_server + RECORDS, json={"instances": [CHURN_ROW]}, timeout=30)
    assert good.status_code == 200 and len(good.json()["predictions"]) == 1
    assert httpx.get(strict_server + "/livez", timeout=10).status_code == 200
    assert httpx.get(strict_server + "/readyz", timeout=10).status_code == 200
