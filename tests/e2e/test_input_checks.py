"""Input checks in the real server: each mode on the JSON route and V2 REST (JSON and binary
tensors), with the same reasons and words on each, and the counters on /metrics.

One server per mode (`KILN_SERVE_INPUT_CHECKS=churn=MODE,wine=MODE`; `off` too); diabetes is not
named, so it keeps its own default from kiln.json (`warn`) in every one of them. The rows
exactly at the training min and max of every number pass in every mode; the first float32
past each accepted bound does not.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from kiln.artifact import FeatureKind, ModelMetadata
from kiln.checks import REASONS, InputChecks
from tests.conftest import CHURN_ROW
from tests.e2e import test_try_page as try_page

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

browser = try_page.browser  # the Chromium fixture of the try-it page's tests

GOOD = {**CHURN_ROW, "data_gb": 12.5}  # no missing number: V2 JSON tensors cannot carry NaN
BAD = [
    GOOD,
    {**GOOD, "plan": "gold"},
    {**GOOD, "age": 500},
    {**GOOD, "contract": None},
    {**GOOD, "support_calls": -99_999_999, "region": "Mars"},
]
# (row, feature, reason) of BAD, by row then feature order
FOUND = [
    (1, "plan", "unseen_category"),
    (2, "age", "out_of_range"),
    (3, "contract", "missing"),
    (4, "support_calls", "out_of_range"),
    (4, "region", "unseen_category"),
]
PROTOCOLS = ["json", "v2-json", "v2-binary"]


@pytest.fixture(scope="module", params=["accept", "warn", "reject", "off"])
def mode_server(
    request: pytest.FixtureRequest,
    served_models: dict[str, Any],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[str, str]]:
    from tests.servers import kiln_server

    mode = request.param
    log = tmp_path_factory.mktemp(f"checks-{mode}") / "server.log"
    with kiln_server(
        served_models, log, KILN_SERVE_INPUT_CHECKS=f"churn={mode},wine={mode}"
    ) as url:
        yield url, mode


def _metadata(served_models: dict[str, Any], name: str) -> ModelMetadata:
    meta: ModelMetadata = served_models[name].metadata
    return meta


def _send(url: str, model: str, rows: list[dict[str, Any]], protocol: str) -> dict[str, Any]:
    """One request; {"status", "error"} or {"status", "warnings", "warning_count"} as the
    route carries them (V2: decoded from the response's parameters)."""
    if protocol == "json":
        answer = httpx.post(f"{url}/v1/models/{model}/predict", json={"instances": rows})
        body = answer.json()
        if answer.status_code != 200:
            return {"status": answer.status_code, "error": body["error"]}
        return {"status": 200, **{k: body[k] for k in ("warnings", "warning_count") if k in body}}
    import tritonclient.http as triton
    from tritonclient.utils import InferenceServerException

    client = triton.InferenceServerClient(url.removeprefix("http://"))
    try:
        inputs = []
        for spec in client.get_model_metadata(model)["inputs"]:
            values = [rows[i][spec["name"]] for i in range(len(rows))]
            if spec["datatype"] == "FP32":
                array = np.array([[np.nan if v is None else v] for v in values], np.float32)
            else:
                array = np.array([["" if v is None else v] for v in values], dtype=object)
            tensor = triton.InferInput(spec["name"], [len(rows), 1], spec["datatype"])
            tensor.set_data_from_numpy(array, binary_data=protocol == "v2-binary")
            inputs.append(tensor)
        try:
            result = client.infer(model, inputs)
        except InferenceServerException as exc:
            return {"status": int(exc.status() or 0), "error": exc.message()}
    finally:
        client.close()
    parameters = result.get_response().get("parameters", {})
    found: dict[str, Any] = {"status": 200}
    if "warnings" in parameters:
        assert isinstance(parameters["warnings"], str)  # a JSON string: parameters are scalars
        found["warnings"] = json.loads(parameters["warnings"])
        found["warning_count"] = parameters["warning_count"]
    return found


def _counters(url: str) -> dict[tuple[str, str, str], float]:
    """(reason, model, feature) -> the kiln_input_*_total counter."""
    text = httpx.get(f"{url}/metrics").text
    counts: dict[tuple[str, str, str], float] = {}
    for family in text_string_to_metric_families(text):
        for reason in REASONS:
            if family.name == f"kiln_input_{reason}":
                for sample in family.samples:
                    if sample.name.endswith("_total"):
                        key = (reason, sample.labels["model"], sample.labels["feature"])
                        counts[key] = sample.value
    return counts


def _errors(url: str) -> float:
    """kiln_request_errors_total{model="churn",reason="invalid_input"}."""
    for family in text_string_to_metric_families(httpx.get(f"{url}/metrics").text):
        if family.name == "kiln_request_errors":
            for sample in family.samples:
                labels = sample.labels
                if sample.name.endswith("_total") and labels == {
                    "model": "churn",
                    "reason": "invalid_input",
                }:
                    return sample.value
    return 0.0


def _moved(
    before: dict[tuple[str, str, str], float], after: dict[tuple[str, str, str], float]
) -> dict[tuple[str, str, str], float]:
    return {k: v - before.get(k, 0.0) for k, v in after.items() if v != before.get(k, 0.0)}


def test_each_mode_on_both_protocols_with_the_same_words(mode_server: tuple[str, str]) -> None:
    url, mode = mode_server
    before, errors = _counters(url), _errors(url)
    answers = {protocol: _send(url, "churn", BAD, protocol) for protocol in PROTOCOLS}
    if mode == "reject":
        first = answers["json"]
        assert first["status"] == 422
        assert first["error"] == (
            "feature 'plan', row 1: 'gold' was never seen in training (seen: 'basic', "
            "'fiber', 'premium', 'standard') (and 4 more)"
        )
        for protocol in PROTOCOLS:
            assert answers[protocol] == first, protocol
        assert _errors(url) - errors == 3  # kiln_request_errors_total, reason invalid_input
    elif mode in ("accept", "off"):
        for protocol in PROTOCOLS:
            assert answers[protocol] == {"status": 200}, protocol  # accept: counted, not said
    else:
        warned = answers["json"]
        assert warned["status"] == 200 and warned["warning_count"] == len(FOUND)
        got = [(w["row"], w["feature"], w["reason"]) for w in warned["warnings"]]
        assert got == FOUND
        by_cell = {(w["row"], w["feature"]): w for w in warned["warnings"]}
        assert by_cell[(2, "age")]["value"] == 500
        assert by_cell[(2, "age")]["message"].startswith(
            "500.0 is above the range seen in training"
        )
        assert by_cell[(3, "contract")]["value"] is None
        assert by_cell[(4, "region")]["message"] == (
            "'Mars' was never seen in training (seen: 'central', 'east', 'north', 'south', 'west')"
        )
        assert by_cell[(4, "support_calls")]["value"] == -1e8  # float32(-99,999,999): the model's
        for protocol in PROTOCOLS:
            assert answers[protocol] == warned, protocol
    # counted in every mode, reject included: one row per finding, per request; off: not checked
    moved = _moved(before, _counters(url))
    counted = {(reason, "churn", feature): 3.0 for _, feature, reason in FOUND}
    assert moved == ({} if mode == "off" else counted)


def test_a_missing_number_that_training_never_missed(mode_server: tuple[str, str]) -> None:
    """monthly_charge was never missing in training (data_gb often was): JSON null, or NaN in
    a binary tensor."""
    url, mode = mode_server
    rows = [{**GOOD, "data_gb": None}, {**GOOD, "monthly_charge": None}]
    before = _counters(url)
    for protocol in ("json", "v2-binary"):
        answer = _send(url, "churn", rows, protocol)
        if mode == "reject":
            assert answer == {
                "status": 422,
                "error": "feature 'monthly_charge', row 1: is missing, and was never missing "
                "in training",
            }
        elif mode == "warn":
            (warning,) = answer["warnings"]
            assert (warning["row"], warning["feature"], warning["reason"]) == (
                1,
                "monthly_charge",
                "missing",
            )
            assert warning["value"] is None
        else:
            assert answer == {"status": 200}
    counted = {("missing", "churn", "monthly_charge"): 2.0}
    assert _moved(before, _counters(url)) == ({} if mode == "off" else counted)


@pytest.mark.parametrize("model", ["churn", "wine"])
def test_the_training_min_and_max_pass_and_the_next_float32_out_does_not(
    mode_server: tuple[str, str], served_models: dict[str, Any], model: str
) -> None:
    url, mode = mode_server
    meta = _metadata(served_models, model)
    numeric = [f.name for f in meta.features if f.kind is FeatureKind.numeric]
    base = GOOD if model == "churn" else {n: meta.feature_stats[n].min for n in numeric}
    extremes = [
        {**base, **{n: meta.feature_stats[n].min for n in numeric}},
        {**base, **{n: meta.feature_stats[n].max for n in numeric}},
    ]
    for protocol in PROTOCOLS:
        assert _send(url, model, extremes, protocol) == {"status": 200}, protocol

    outside: list[dict[str, Any]] = []
    expected = []
    up, down = np.float32(np.inf), np.float32(-np.inf)
    for name, (low, high) in InputChecks(meta).ranges().items():
        first, last = np.float32(low), np.float32(high)
        inside_low = first if first >= np.float64(low) else np.nextafter(first, up)
        inside_high = last if last <= np.float64(high) else np.nextafter(last, down)
        for value in (np.nextafter(inside_low, down), np.nextafter(inside_high, up)):
            expected.append((len(outside), name, "out_of_range"))
            outside.append({**base, name: float(value)})
    answer = _send(url, model, outside, "json")
    if mode == "reject":
        assert answer["status"] == 422
        assert answer["error"].startswith(f"feature {expected[0][1]!r}, row 0: ")
    elif mode == "warn":
        assert answer["warning_count"] == len(expected)
        assert sorted((w["row"], w["feature"], w["reason"]) for w in answer["warnings"]) == sorted(
            expected
        )
    else:
        assert answer == {"status": 200}


def test_a_model_not_named_keeps_its_own_default(
    mode_server: tuple[str, str], served_models: dict[str, Any]
) -> None:
    """diabetes is not in KILN_SERVE_INPUT_CHECKS: its kiln.json says warn, in every server."""
    url, _ = mode_server
    meta = _metadata(served_models, "diabetes")
    assert meta.reference is not None and meta.reference.checks.value == "warn"
    row = {f.name: meta.feature_stats[f.name].min for f in meta.features}
    name = meta.features[0].name
    low, _ = InputChecks(meta).ranges()[name]
    row[name] = low - 1
    for protocol in PROTOCOLS:
        answer = _send(url, "diabetes", [row], protocol)
        assert answer["status"] == 200 and answer["warning_count"] == 1, protocol
        assert answer["warnings"][0]["feature"] == name


def test_the_try_page_shows_the_warnings_next_to_the_answer(browser: Any, server: str) -> None:
    """The try-it page, against the server with each model's own default (warn)."""
    context = browser.new_context(viewport={"width": 1100, "height": 900}, locale="en-US")
    context.set_default_timeout(try_page.TIMEOUT_MS)
    errors: list[str] = []
    page = context.new_page()
    page.on("pageerror", lambda error: errors.append(str(error)))
    try:
        page.goto(f"{server}/try")
        page.locator("#model:enabled").wait_for()
        try_page._choose(page, "churn")
        try_page._fill(page, {**try_page.CHURN_FORM, "age": 500, "contract": None})
        page.get_by_role("button", name="Predict").click()
        page.locator("#prediction").wait_for()
        table = page.locator("#warnings-table tbody tr")
        table.first.wait_for()
        shown = table.evaluate_all(
            "rows => rows.map(r => [r.dataset.feature, r.dataset.reason,"
            " ...Array.from(r.cells, c => c.textContent)])"
        )
        assert shown[0][:5] == ["age", "out_of_range", "0", "age", "500"]
        assert shown[0][5].startswith("500.0 is above the range seen in training")
        assert shown[1] == [
            "contract",
            "missing",
            "0",
            "contract",
            "(missing)",
            "is missing, and was never missing in training",
        ]
        box = page.locator("#warnings").inner_text()
        assert "unlike the examples the model learned from" in box
        # a case like the training data: the answer alone
        try_page._fill(page, try_page.CHURN_FORM)
        page.get_by_role("button", name="Predict").click()
        page.locator("#warnings").wait_for(state="detached")
        assert not errors
    finally:
        context.close()
