"""Every path gives the same answer and the same verdict for the same row.

The JSON route, the V2 REST route, the in-process Predictor and ``kiln predict`` all go
through the shared core (kiln/resolve.py, kiln/values.py, kiln/runtime.py). Here they run
against one store of their own, as a user runs them: the server (`bentoml serve`) and the
Predictor and CLI in their own processes. The store holds a production churn model and a
newer version of it that fell below its gate: by name, every path must use the production
one; named exactly, the rejected one is used with a warning.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.conftest import CHURN_ROW, REPO, SPECS

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

KILN = Path(sys.executable).parent / "kiln"
FEATURES = list(CHURN_ROW)
NUMERIC = ["tenure_months", "monthly_charge", "data_gb", "support_calls", "age"]


def _env(home: Path) -> dict[str, str]:
    return {**os.environ, "BENTOML_HOME": str(home), "KILN_TRAIN_REPORTS_DIR": str(home / "r")}


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A store with churn in production and a newer, rejected churn version."""
    home = tmp_path_factory.mktemp("paths-store")
    spec = yaml.safe_load((SPECS / "churn.yaml").read_text())
    spec["data"]["paths"] = [str(REPO / "training" / "data" / "churn.csv")]
    spec["estimator"]["params"]["n_estimators"] = 40  # quicker; still well past its gate
    good = home / "churn.yaml"
    good.write_text(yaml.safe_dump(spec))
    spec["gate"] = ["roc_auc >= 0.999"]  # out of reach: registered as rejected
    bad = home / "churn-rejected.yaml"
    bad.write_text(yaml.safe_dump(spec))
    env = _env(home)
    first = subprocess.run([KILN, "train", good], env=env, capture_output=True, text=True)
    assert first.returncode == 0, first.stdout + first.stderr
    second = subprocess.run([KILN, "train", bad], env=env, capture_output=True, text=True)
    assert second.returncode == 4, second.stdout + second.stderr  # below its gate
    linear = subprocess.run(  # a linear model, whose answers can overflow: see NONFINITE
        [KILN, "train", SPECS / "breast-cancer.yaml"], env=env, capture_output=True, text=True
    )
    assert linear.returncode == 0, linear.stdout + linear.stderr
    listed = subprocess.run(
        [KILN, "models", "list", "--json"], env=env, capture_output=True, text=True, check=True
    )
    models = json.loads(listed.stdout)["models"]
    by_stage = {m["stage"]: m["tag"] for m in models if m["tag"].startswith("churn:")}
    return {"home": home, "production": by_stage["candidate"], "rejected": by_stage["rejected"]}


@pytest.fixture(scope="module")
def url(store: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    from tests.servers import kiln_server

    log = tmp_path_factory.mktemp("paths-server") / "server.log"
    # KILN_SERVE_MODELS empty: serve every production model, as `make serve` does
    with kiln_server({}, log, BENTOML_HOME=str(store["home"]), KILN_SERVE_MODELS="[]") as u:
        yield u


def _predictor(
    store: dict[str, Any], ref: str, rows: list[dict[str, Any]], **options: str
) -> dict[str, Any]:
    """kiln.Predictor in its own process (the store is per process): answer or error.
    ``options``: the Predictor's keyword arguments."""
    code = (
        "import json, sys, warnings, logging\n"
        "import kiln\n"
        "from kiln.errors import KilnError\n"
        "logging.basicConfig(level=logging.WARNING, stream=sys.stderr)\n"
        "rows = json.load(sys.stdin)\n"
        "try:\n"
        f"    print(json.dumps(kiln.Predictor.from_store({ref!r}, **{options!r}).predict(rows)))\n"
        "except KilnError as exc:\n"
        "    print(json.dumps({'error': exc.message, 'status': exc.status_code}))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        input=json.dumps(rows),
        env=_env(store["home"]),
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    )
    return {**json.loads(done.stdout), "stderr": done.stderr}


def _kiln_predict(
    store: dict[str, Any], ref: str, rows: list[dict[str, Any]], tmp: Path, *options: str
) -> dict[str, Any]:
    """`kiln predict` on a CSV of ``rows`` (None: an empty field): scores, rejects, warnings
    (under warn), output. ``options``: more arguments of the command."""
    source = tmp / "in.csv"
    with source.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["customer_id", *rows[0].keys()])
        writer.writeheader()
        for i, row in enumerate(rows):
            writer.writerow(
                {"customer_id": f"C{i}", **{k: "" if v is None else v for k, v in row.items()}}
            )
    out = tmp / "scores.csv"
    done = subprocess.run(
        [KILN, "predict", ref, "--input", source, "--output", out, *options],
        env=_env(store["home"]),
        capture_output=True,
        text=True,
    )
    result: dict[str, Any] = {"code": done.returncode, "stdout": done.stdout, "stderr": done.stderr}
    if done.returncode == 0:
        with out.open() as fh:
            result["scores"] = list(csv.DictReader(fh))
        with out.with_name("scores.rejects.csv").open() as fh:
            result["rejects"] = list(csv.DictReader(fh))
        warnings = out.with_name("scores.warnings.csv")
        if warnings.exists():
            with warnings.open() as fh:
                result["warnings"] = list(csv.DictReader(fh))
    return result


def _v2(
    url: str, rows: list[dict[str, Any]], *, version: str = "", drop: str = ""
) -> dict[str, Any]:
    """The V2 route through tritonclient with its default binary tensors (they carry NaN for a
    missing number): {"outputs": {name: array}} or {"status", "error"}."""
    import numpy as np
    import tritonclient.http as triton
    from tritonclient.utils import InferenceServerException

    inputs = []
    for name in FEATURES:
        if name == drop:
            continue
        values = [row[name] for row in rows]
        if name in NUMERIC:
            with np.errstate(over="ignore"):  # beyond float32: inf, which the route refuses
                array = np.array([[np.nan if v is None else v] for v in values], np.float32)
            datatype = "FP32"
        else:
            array = np.array([["" if v is None else v] for v in values], dtype=object)
            datatype = "BYTES"
        tensor = triton.InferInput(name, [len(rows), 1], datatype)
        tensor.set_data_from_numpy(array)
        inputs.append(tensor)
    client = triton.InferenceServerClient(url.removeprefix("http://"))
    try:
        result = client.infer("churn", inputs, model_version=version)
    except InferenceServerException as exc:
        return {"status": int(exc.status() or 0), "error": exc.message()}
    finally:
        client.close()
    response = result.get_response()
    names = [o["name"] for o in response["outputs"]]
    outputs = {name: result.as_numpy(name) for name in names}
    return {"outputs": outputs, "parameters": response.get("parameters", {})}


ROWS = [
    CHURN_ROW,
    {**CHURN_ROW, "plan": "n/a", "region": None, "age": 71},  # "n/a" is a category here
    {**CHURN_ROW, "monthly_charge": None, "support_calls": 0},
]


def test_same_answers_on_every_path(store: dict[str, Any], url: str, tmp_path: Path) -> None:
    records = httpx.post(f"{url}/v1/models/churn/predict", json={"instances": ROWS}, timeout=30)
    assert records.status_code == 200, records.text
    answer = records.json()
    assert f"{answer['model']}:{answer['version']}" == store["production"]

    in_process = _predictor(store, "churn", ROWS)
    assert in_process["version"] == answer["version"]
    assert in_process["predictions"] == answer["predictions"]
    assert in_process["probabilities"] == answer["probabilities"]

    v2 = _v2(url, ROWS)
    assert "error" not in v2, v2
    labels = [v.decode() for v in v2["outputs"]["label"].reshape(-1).tolist()]
    assert labels == answer["predictions"]
    want = [[p[c] for c in ("no", "yes")] for p in answer["probabilities"]]
    assert v2["outputs"]["probabilities"].tolist() == want  # the same float32 values

    scored = _kiln_predict(store, "churn", ROWS, tmp_path)
    assert scored["code"] == 0, scored["stdout"] + scored["stderr"]
    assert store["production"] in scored["stdout"]
    assert [r["prediction"] for r in scored["scores"]] == answer["predictions"]
    for row, want in zip(scored["scores"], answer["probabilities"], strict=True):
        got = {
            k.removeprefix("probability_"): float(v)
            for k, v in row.items()
            if k != "prediction" and k.startswith("probability_")
        }
        assert got == pytest.approx(want, rel=1e-6)
    assert scored["rejects"] == []


# Rows unlike the training data (input checks, kiln/checks.py), under churn's own mode: warn.
WARNED = [
    CHURN_ROW,
    {**CHURN_ROW, "plan": "Fiber", "age": 500},
    {**CHURN_ROW, "contract": None},  # contract was never missing in training
]


def test_same_warnings_on_every_path(store: dict[str, Any], url: str, tmp_path: Path) -> None:
    """The JSON route's warnings, V2's response parameters, the Predictor's answer and the
    lines of `kiln predict`'s warnings file name the same rows, features, reasons and words."""
    records = httpx.post(f"{url}/v1/models/churn/predict", json={"instances": WARNED}, timeout=30)
    assert records.status_code == 200, records.text
    answer = records.json()
    warnings = answer["warnings"]
    found = [(w["row"], w["feature"], w["reason"]) for w in warnings]
    assert found == [(1, "age", "out_of_range"), (1, "plan", "unseen_category"),
                     (2, "contract", "missing")]  # fmt: skip
    assert answer["warning_count"] == 3

    v2 = _v2(url, WARNED)
    assert json.loads(v2["parameters"]["warnings"]) == warnings
    assert v2["parameters"]["warning_count"] == 3

    in_process = _predictor(store, "churn", WARNED)
    assert (in_process["warnings"], in_process["warning_count"]) == (warnings, 3)

    scored = _kiln_predict(store, "churn", WARNED, tmp_path)
    assert scored["code"] == 0, scored["stdout"] + scored["stderr"]
    assert len(scored["scores"]) == 3  # warned rows are scored
    with (tmp_path / "scores.warnings.csv").open() as fh:
        lines = list(csv.DictReader(fh))
    assert [(int(w["row"]) - 1, w["feature"], w["reason"], w["message"]) for w in lines] == [
        (w["row"], w["feature"], w["reason"], w["message"]) for w in warnings
    ]  # the file counts rows from 1


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"age": "n/a"}, ["age", "'n/a'"]),
        ({"tenure_months": "NA"}, ["tenure_months", "'NA'"]),
        ({"monthly_charge": "1e39"}, ["monthly_charge", "not a finite float32 number"]),
    ],
    ids=["n/a", "NA", "beyond-float32"],
)
def test_same_verdict_on_a_bad_value(
    store: dict[str, Any], url: str, tmp_path: Path, change: dict[str, Any], words: list[str]
) -> None:
    """A value every path refuses: 400 from the routes and the Predictor, a reject from
    `kiln predict` (the other rows still scored), each naming the feature and the value."""
    ((name, value),) = change.items()
    json_value: Any = float(value) if value == "1e39" else value
    bad = {**CHURN_ROW, name: json_value}
    records = httpx.post(f"{url}/v1/models/churn/predict", json={"instances": [bad]}, timeout=30)
    assert records.status_code == 400, records.text
    in_process = _predictor(store, "churn", [bad])
    assert in_process["status"] == 400
    assert in_process["error"] == records.json()["error"]
    if not isinstance(json_value, str):  # a string cannot travel in an FP32 tensor
        v2 = _v2(url, [bad])
        assert v2.get("status") == 400, v2
    scored = _kiln_predict(store, "churn", [CHURN_ROW, {**CHURN_ROW, name: value}], tmp_path)
    assert scored["code"] == 0, scored["stdout"] + scored["stderr"]
    assert len(scored["scores"]) == 1 and len(scored["rejects"]) == 1
    reason = scored["rejects"][0]["reason"]
    for text in (records.json()["error"], reason):
        for word in words:
            assert word in text, (word, text)


def test_same_verdict_on_a_missing_column(store: dict[str, Any], url: str, tmp_path: Path) -> None:
    row = {k: v for k, v in CHURN_ROW.items() if k != "age"}
    records = httpx.post(f"{url}/v1/models/churn/predict", json={"instances": [row]}, timeout=30)
    assert records.status_code == 400 and "'age'" in records.json()["error"]
    in_process = _predictor(store, "churn", [row])
    assert (in_process["status"], in_process["error"]) == (400, records.json()["error"])
    v2 = _v2(url, [CHURN_ROW], drop="age")
    assert v2.get("status") == 400 and "'age'" in v2["error"], v2
    scored = _kiln_predict(store, "churn", [row], tmp_path)
    assert scored["code"] == 2 and "'age'" in scored["stdout"] + scored["stderr"]


def test_an_unknown_key_is_an_error_but_a_file_column_is_named(
    store: dict[str, Any], url: str, tmp_path: Path
) -> None:
    """A JSON record's unknown key catches typos; a file's other columns (ids, notes) are
    carried or named in the summary, never dropped silently."""
    row = {**CHURN_ROW, "notes": "called twice"}
    records = httpx.post(f"{url}/v1/models/churn/predict", json={"instances": [row]}, timeout=30)
    assert records.status_code == 400 and "unknown feature 'notes'" in records.json()["error"]
    in_process = _predictor(store, "churn", [row])
    assert (in_process["status"], in_process["error"]) == (400, records.json()["error"])
    scored = _kiln_predict(store, "churn", [row], tmp_path)
    assert scored["code"] == 0
    assert "notes" in scored["stdout"] and "carried: customer_id" in scored["stdout"]
    assert next(iter(scored["scores"][0])) == "customer_id"


def test_a_rejected_version_only_when_named(
    store: dict[str, Any], url: str, tmp_path: Path
) -> None:
    rejected = store["rejected"]
    named = _predictor(store, rejected, [CHURN_ROW])
    assert f"{named['model']}:{named['version']}" == rejected
    assert "below its quality gate" in named["stderr"]
    scored = _kiln_predict(store, rejected, [CHURN_ROW], tmp_path)
    assert scored["code"] == 0 and rejected in scored["stdout"]
    assert "below its quality gate" in scored["stderr"]
    # the server, serving by name, never serves it: asking for it by version is a 404
    version = rejected.split(":")[1]
    assert _v2(url, [CHURN_ROW], version=version).get("status") == 404


NONFINITE = 1e37  # finite, accepted; the logistic regression's score overflows float32: NaN


def test_same_verdict_on_an_answer_that_is_not_finite(
    store: dict[str, Any], url: str, tmp_path: Path
) -> None:
    """Every path refuses the row whose answer is NaN, with the same words: 422 from both
    routes and the Predictor's error, a reject from `kiln predict` (the other row scored)."""
    listed = httpx.get(f"{url}/v1/models/breast-cancer", timeout=30).json()
    names = [f["name"] for f in listed["features"]]
    sane = {n: 1.0 for n in names}
    huge = {n: NONFINITE for n in names}
    records = httpx.post(
        f"{url}/v1/models/breast-cancer/predict", json={"instances": [sane, huge]}, timeout=30
    )
    assert records.status_code == 422, records.text
    error = records.json()["error"]
    assert error.startswith("row 1: the model's answer is not a finite number (probabilities")
    v2 = httpx.post(
        f"{url}/v2/models/breast-cancer/infer",
        json={
            "inputs": [
                {"name": n, "shape": [2, 1], "datatype": "FP32", "data": [1.0, NONFINITE]}
                for n in names
            ]
        },
        timeout=30,
    )
    assert (v2.status_code, v2.json()["error"]) == (422, error)
    in_process = _predictor(store, "breast-cancer", [sane, huge])
    assert (in_process["status"], in_process["error"]) == (422, error)

    source = tmp_path / "tumours.csv"
    with source.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=names)
        writer.writeheader()
        writer.writerows([sane, huge])
    out = tmp_path / "scores.csv"
    done = subprocess.run(
        [KILN, "predict", "breast-cancer", "--input", source, "--output", out],
        env=_env(store["home"]),
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    with out.open() as fh:
        assert len(list(csv.DictReader(fh))) == 1
    with out.with_name("scores.rejects.csv").open() as fh:
        (reject,) = list(csv.DictReader(fh))
    assert reject["row"] == "2"  # the file's second data row
    assert f"row 1: {reject['reason']}" == error
    metrics = httpx.get(f"{url}/metrics", timeout=30).text
    assert 'kiln_nonfinite_outputs_total{model="breast-cancer"} 2.0' in metrics


# --- input checks: a row unlike the training data (kiln/checks.py) ------------------------

DRIFTED = {**CHURN_ROW, "plan": "Atlantis", "monthly_charge": -5200.0}  # a new plan, a -ve fee


@pytest.fixture(scope="module")
def strict_url(store: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The same store served with every model under `reject` input checks."""
    from tests.servers import kiln_server

    log = tmp_path_factory.mktemp("paths-strict") / "server.log"
    with kiln_server(
        {},
        log,
        BENTOML_HOME=str(store["home"]),
        KILN_SERVE_MODELS="[]",
        KILN_SERVE_INPUT_CHECKS="reject",
    ) as u:
        yield u


def test_same_warnings_on_a_drifted_row(store: dict[str, Any], url: str, tmp_path: Path) -> None:
    """warn (the model's own mode): the JSON route and the Predictor answer with the same
    warnings; `kiln predict` scores the row and writes the same findings to its warnings file."""
    rows = [CHURN_ROW, DRIFTED]
    records = httpx.post(f"{url}/v1/models/churn/predict", json={"instances": rows}, timeout=30)
    assert records.status_code == 200, records.text
    answer = records.json()
    assert answer["warning_count"] == 2
    assert [(w["row"], w["feature"], w["reason"]) for w in answer["warnings"]] == [
        (1, "monthly_charge", "out_of_range"),
        (1, "plan", "unseen_category"),
    ]
    in_process = _predictor(store, "churn", rows)
    assert in_process["warnings"] == answer["warnings"]
    assert in_process["warning_count"] == 2
    assert in_process["predictions"] == answer["predictions"]

    scored = _kiln_predict(store, "churn", rows, tmp_path)
    assert scored["code"] == 0, scored["stdout"] + scored["stderr"]
    assert [r["prediction"] for r in scored["scores"]] == answer["predictions"]  # both scored
    assert scored["rejects"] == []
    assert "monthly_charge out of range 1 row, plan unseen category 1 row" in scored["stdout"]
    assert [
        (int(w["row"]) - 1, w["feature"], w["reason"], w["message"]) for w in scored["warnings"]
    ] == [(w["row"], w["feature"], w["reason"], w["message"]) for w in answer["warnings"]]
    assert [w["customer_id"] for w in scored["warnings"]] == ["C1", "C1"]
    assert float(scored["warnings"][0]["value"]) == answer["warnings"][0]["value"] == -5200.0
    assert scored["warnings"][1]["value"] == answer["warnings"][1]["value"] == "Atlantis"


def test_same_verdict_on_a_drifted_row_under_reject(
    store: dict[str, Any], strict_url: str, tmp_path: Path
) -> None:
    """reject: 422 from both routes and the Predictor, in the same words; `kiln predict`
    sends the row to its rejects file with those words and scores the other."""
    rows = [CHURN_ROW, DRIFTED]
    records = httpx.post(
        f"{strict_url}/v1/models/churn/predict", json={"instances": rows}, timeout=30
    )
    assert records.status_code == 422, records.text
    error = records.json()["error"]
    assert error.startswith("feature 'monthly_charge', row 1: -5200.0 is below the range")
    assert error.endswith(" (and 1 more)")
    v2 = _v2(strict_url, rows)
    assert (v2.get("status"), v2.get("error")) == (422, error)
    in_process = _predictor(store, "churn", rows, input_checks="reject")
    assert (in_process["status"], in_process["error"]) == (422, error)

    scored = _kiln_predict(store, "churn", rows, tmp_path, "--input-checks", "reject")
    assert scored["code"] == 0, scored["stdout"] + scored["stderr"]
    assert len(scored["scores"]) == 1 and "warnings" not in scored
    (reject,) = scored["rejects"]
    assert (reject["customer_id"], reject["row"]) == ("C1", "2")
    # the row's findings, each as "feature: message", joined by "; "
    first, second = reject["reason"].split("; ")
    message = first.removeprefix("monthly_charge: ")
    second = second.removeprefix("plan: ")
    assert f"feature 'monthly_charge', row 1: {message} (and 1 more)" == error
    assert second.startswith("'Atlantis' was never seen in training (seen: ")
