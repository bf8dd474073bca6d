"""The OpenAPI document of the service (``GET /openapi.json``, browsable at ``/docs``), with
the real request and response schemas of every route.

The routes read their bodies themselves (decoding into typed columns is the fast path, see
service/codecs/), so FastAPI cannot derive their schemas from type hints. They are written
here once, as JSON Schema, and merged into what FastAPI generates: the request body of each
POST route, and for every route each status it can answer with its body (``{"error": ...}``
for every 4xx and 5xx). Once models are loaded the document also names them: the ``name``
path parameter lists the served models as examples, and each inference route carries a valid
example request per model, which is what a client generator or a fuzzer (schemathesis, in the
tests) starts from.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from kiln.checks import MAX_WARNINGS, REASONS
from service.codecs.v2 import FEATURE_DATATYPES

__all__ = ["SCHEMAS", "build_openapi", "install"]

_REF = "#/components/schemas/"


def _ref(name: str) -> dict[str, str]:
    return {"$ref": _REF + name}


_VALUE = {"anyOf": [{"type": "number"}, {"type": "string"}, {"type": "null"}]}
_LABEL = {"anyOf": [{"type": "string"}, {"type": "number"}, {"type": "boolean"}]}
_BY_CLASS = {
    "type": "array",
    "items": {"type": "object", "additionalProperties": {"type": ["number", "null"]}},
}
_OBJECT = {"type": "object"}
_WARNING = {
    "type": "object",
    "required": ["row", "feature", "value", "reason", "message"],
    "properties": {
        "row": {"type": "integer", "description": "The row, from 0."},
        "feature": {"type": "string"},
        "value": {**_VALUE, "description": "The value sent (null: missing)."},
        "reason": {"type": "string", "enum": list(REASONS)},
        "message": {"type": "string", "description": "What is unusual about it, in words."},
    },
}
_WARNING_COUNT = {
    "type": "integer",
    "minimum": 1,
    "description": "How many values failed an input check (`warnings` holds the first "
    f"{MAX_WARNINGS}).",
}
_TENSOR_IN = {
    "type": "object",
    "required": ["name", "shape", "datatype"],
    "properties": {
        "name": {"type": "string"},
        "shape": {"type": "array", "items": {"type": "integer"}},
        "datatype": {"type": "string", "examples": list(FEATURE_DATATYPES.values())},
        "parameters": _OBJECT,
        "data": {"type": "array", "description": "Row-major values, flat or nested."},
    },
}
_TENSOR_OUT = {
    "type": "object",
    "required": ["name", "shape", "datatype"],
    "properties": {
        "name": {"type": "string"},
        "shape": {"type": "array", "items": {"type": "integer"}},
        "datatype": {"type": "string"},
        "parameters": _OBJECT,
        "data": {"type": "array"},
    },
}

SCHEMAS: dict[str, dict[str, Any]] = {
    "Error": {
        "type": "object",
        "required": ["error"],
        "properties": {"error": {"type": "string", "description": "What was wrong, in words."}},
    },
    "RecordsRequest": {
        "type": "object",
        "required": ["instances"],
        "additionalProperties": False,
        "properties": {
            "instances": {
                "type": "array",
                "minItems": 1,
                "description": "One object per row: every feature of the model by name; "
                "numbers for numeric features, strings for categorical and text ones, null "
                "where a value is missing.",
                "items": {"type": "object", "additionalProperties": _VALUE},
            },
            "parameters": _OBJECT,
        },
    },
    "RecordsResponse": {
        "type": "object",
        "required": ["model", "version", "predictions"],
        "additionalProperties": False,
        "properties": {
            "model": {"type": "string"},
            "version": {"type": "string"},
            "predictions": {
                "type": "array",
                "items": _LABEL,
                "description": "The predicted class (classifiers) or value (regressors), "
                "one per row, in order.",
            },
            "probabilities": {**_BY_CLASS, "description": "Per row: probability by class."},
            "scores": {**_BY_CLASS, "description": "Per row: decision score by class."},
            "warnings": {
                "type": "array",
                "items": _WARNING,
                "maxItems": MAX_WARNINGS,
                "description": "Under the `warn` input-check mode, and only when a value is "
                "unlike the training data: each such value, by row then feature.",
            },
            "warning_count": _WARNING_COUNT,
        },
    },
    "ModelList": {
        "type": "object",
        "required": ["models"],
        "properties": {
            "models": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["name", "version", "task"],
                    "properties": {
                        "name": {"type": "string"},
                        "version": {"type": "string"},
                        "task": {"type": "string", "enum": ["classification", "regression"]},
                    },
                },
            }
        },
    },
    "ModelDescription": {
        "type": "object",
        "required": ["name", "version", "task", "features", "outputs", "execution"],
        "properties": {
            "name": {"type": "string"},
            "version": {"type": "string"},
            "task": {"type": "string", "enum": ["classification", "regression"]},
            "description": {"type": "string"},
            "estimator": {"type": "string"},
            "target": {"type": "string"},
            "classes": {"type": ["array", "null"], "items": _LABEL},
            "features": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["name", "kind", "dtype"],
                    "properties": {
                        "name": {"type": "string"},
                        "kind": {"type": "string", "enum": ["numeric", "categorical", "text"]},
                        "dtype": {"type": "string"},
                        "categories": {"type": ["array", "null"]},
                    },
                },
            },
            "outputs": {"type": "array", "items": _OBJECT},
            "metrics": _OBJECT,
            "baseline": _OBJECT,
            "created_at": {"type": "string"},
            "execution": {
                "type": "object",
                "required": ["provider"],
                "properties": {
                    "provider": {"type": "string"},
                    "providers": {"type": "array", "items": {"type": "string"}},
                    "graph_nodes": {"type": "integer"},
                    "cpu_nodes": {"type": "integer"},
                },
            },
        },
    },
    "NoopResponse": {
        "type": "object",
        "required": ["ok"],
        "properties": {"ok": {"type": "boolean"}},
    },
    "V2InferenceRequest": {
        "type": "object",
        "required": ["inputs"],
        "properties": {
            "id": {"type": "string"},
            "parameters": _OBJECT,
            "inputs": {"type": "array", "minItems": 1, "items": _TENSOR_IN},
            "outputs": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["name"],
                    "properties": {"name": {"type": "string"}, "parameters": _OBJECT},
                },
            },
        },
    },
    "V2InferenceResponse": {
        "type": "object",
        "required": ["model_name", "outputs"],
        "properties": {
            "model_name": {"type": "string"},
            "model_version": {"type": "string"},
            "id": {"type": "string"},
            "parameters": {
                "type": "object",
                "description": "Under the `warn` input-check mode, and only when a value is "
                "unlike the training data: `warnings` and `warning_count`.",
                "properties": {
                    "warnings": {
                        "type": "string",
                        "description": "The warnings as a JSON string (parameters hold only "
                        "booleans, numbers and strings): a list of objects as the JSON "
                        "route's `warnings` (row, feature, value, reason, message).",
                    },
                    "warning_count": _WARNING_COUNT,
                },
            },
            "outputs": {"type": "array", "items": _TENSOR_OUT},
        },
    },
    "V2ServerMetadata": {
        "type": "object",
        "required": ["name", "version", "extensions"],
        "properties": {
            "name": {"type": "string"},
            "version": {"type": "string"},
            "extensions": {"type": "array", "items": {"type": "string"}},
        },
    },
    "V2ModelMetadata": {
        "type": "object",
        "required": ["name", "platform", "inputs", "outputs"],
        "properties": {
            "name": {"type": "string"},
            "versions": {"type": "array", "items": {"type": "string"}},
            "platform": {"type": "string"},
            "inputs": {"type": "array", "items": _OBJECT},
            "outputs": {"type": "array", "items": _OBJECT},
        },
    },
    "V2Live": {"type": "object", "required": ["live"], "properties": {"live": {"type": "boolean"}}},
    "V2Ready": {
        "type": "object",
        "required": ["ready"],
        "properties": {"ready": {"type": "boolean"}},
    },
    "V2ModelReady": {
        "type": "object",
        "required": ["name", "ready"],
        "properties": {"name": {"type": "string"}, "ready": {"type": "boolean"}},
    },
}

_WHY = {
    "400": "Malformed request: bad JSON, a wrong type, an unknown or missing feature or input.",
    "401": "An API key is configured and the request has none, or a wrong one.",
    "404": "No such model (or version).",
    "413": "Body over the size limit, or more rows than one request may carry.",
    "415": "A content type (or content encoding) the route does not read.",
    "422": "A row unlike the training data under the `reject` input-check mode (a category "
    "never seen, a number outside the accepted range, a missing value where training had "
    "none), or the model's answer for a row is not a finite number; the error names the row "
    "(and feature).",
    "503": "Not ready (starting, or the model failed to load), or overloaded: retry after "
    "Retry-After seconds.",
    "504": "Not answered within the request timeout.",
}


def _json(schema: str, description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": _ref(schema)}}}


def _errors(*codes: str) -> dict[str, Any]:
    return {code: _json("Error", _WHY[code]) for code in codes}


_READ = ("401", "503")
_MODEL = ("401", "404", "503")
_POST = ("400", "401", "404", "413", "415", "422", "503", "504")

# (method, path) -> (request body schema or None, {status: response}).
_OPERATIONS: dict[tuple[str, str], tuple[str | None, dict[str, Any]]] = {
    ("get", "/v1/models"): (
        None,
        {"200": _json("ModelList", "The served models.")} | _errors(*_READ),
    ),
    ("get", "/v1/models/{name}"): (
        None,
        {"200": _json("ModelDescription", "The model: features, outputs, quality.")}
        | _errors(*_MODEL),
    ),
    ("post", "/v1/models/{name}/predict"): (
        "RecordsRequest",
        {"200": _json("RecordsResponse", "One prediction per row.")} | _errors(*_POST),
    ),
    ("post", "/v1/noop"): (
        None,
        {"200": _json("NoopResponse", "The body was read.")} | _errors("401", "413", "504"),
    ),
    ("get", "/v2"): (None, {"200": _json("V2ServerMetadata", "Server metadata.")} | _errors("401")),
    ("get", "/v2/health/live"): (None, {"200": _json("V2Live", "The server is live.")}),
    ("get", "/v2/health/ready"): (
        None,
        {"200": _json("V2Ready", "Every model is ready."), "503": _json("V2Ready", "Not ready.")}
        | _errors("401"),
    ),
    ("get", "/v2/models/{name}"): (
        None,
        {"200": _json("V2ModelMetadata", "Model metadata.")} | _errors(*_MODEL),
    ),
    ("get", "/v2/models/{name}/versions/{version}"): (
        None,
        {"200": _json("V2ModelMetadata", "Model metadata.")} | _errors(*_MODEL),
    ),
    ("get", "/v2/models/{name}/ready"): (
        None,
        {"200": _json("V2ModelReady", "The model is ready.")} | _errors(*_MODEL),
    ),
    ("get", "/v2/models/{name}/versions/{version}/ready"): (
        None,
        {"200": _json("V2ModelReady", "The model is ready.")} | _errors(*_MODEL),
    ),
}
for _path in ("/v2/models/{name}/infer", "/v2/models/{name}/versions/{version}/infer"):
    _OPERATIONS[("post", _path)] = (
        "V2InferenceRequest",
        {
            "200": {
                "description": "The outputs: all JSON, or a JSON header followed by binary "
                "tensors (Inference-Header-Content-Length says where the header ends).",
                "content": {
                    "application/json": {"schema": _ref("V2InferenceResponse")},
                    "application/octet-stream": {},
                },
            }
        }
        | _errors(*_POST),
    )


def _examples(plane: Any) -> tuple[list[str], dict[str, dict[str, Any]], dict[str, Any]]:
    """(model names, a records example per model, a V2 example per model) of ``plane``."""
    names = sorted(plane.models)
    records: dict[str, dict[str, Any]] = {}
    v2: dict[str, dict[str, Any]] = {}
    for name in names:
        runtime = plane.models[name].runtime
        columns = runtime.example_columns()
        row = {feature: columns[feature].tolist()[0] for feature, _, _ in runtime.features}
        records[name] = {"summary": name, "value": {"instances": [row]}}
        inputs = [
            {
                "name": f.name,
                "shape": [1],
                "datatype": FEATURE_DATATYPES[f.dtype],
                "data": [row[f.name]],
            }
            for f in runtime.metadata.features
        ]
        v2[name] = {"summary": name, "value": {"inputs": inputs}}
    return names, records, v2


def build_openapi(app: FastAPI) -> dict[str, Any]:
    """FastAPI's document with Kiln's schemas merged in, and the served models' examples."""
    plane = getattr(app.state, "dataplane", None)
    key = tuple(sorted((n, m.version) for n, m in plane.models.items())) if plane else ()
    cached = getattr(app.state, "openapi_cache", None)
    if cached is not None and cached[0] == key:
        document: dict[str, Any] = cached[1]
        return document
    document = get_openapi(
        title=app.title, version=app.version, summary=app.summary, routes=app.routes
    )
    document.setdefault("components", {}).setdefault("schemas", {}).update(SCHEMAS)
    for name in ("HTTPValidationError", "ValidationError"):  # FastAPI's own 422; never sent
        document["components"]["schemas"].pop(name, None)
    names, records, v2 = _examples(plane) if plane else ([], {}, {})
    for path, item in document.get("paths", {}).items():
        for method, operation in item.items():
            found = _OPERATIONS.get((method, path))
            if found is None:
                continue
            body, responses = found
            operation["responses"] = responses
            if body is not None:
                media: dict[str, Any] = {"schema": _ref(body)}
                examples = records if body == "RecordsRequest" else v2
                if examples:
                    media["examples"] = examples
                content = {"application/json": media}
                if body == "V2InferenceRequest":
                    content["application/octet-stream"] = {
                        "schema": {"type": "string", "format": "binary"}
                    }
                operation["requestBody"] = {"required": True, "content": content}
            for parameter in operation.get("parameters", []):
                if parameter.get("name") == "name" and names:
                    parameter["examples"] = {n: {"value": n} for n in names}
    app.state.openapi_cache = (key, document)
    return document


def install(app: FastAPI) -> None:
    """Serve :func:`build_openapi` as the app's OpenAPI document."""
    app.openapi = lambda: build_openapi(app)  # type: ignore[method-assign]
