"""Deploying a model fitted elsewhere: each source imported as a user imports it, served by a
real server, answering as the source model does on every sample row; every bad input refused
with its message and exit code 2, the store unchanged.

The models are fitted here on ``mixed_frame`` (missing values, categoricals, a spaced column
name) and saved by each source's own library: joblib.dump, skops.io.dump,
mlflow.sklearn.save_model (with an input example) and bentoml.sklearn.save_model; then
``kiln import`` (a subprocess) or ``kiln.save_model`` registers them in the session's store
under names of their own (``imp-*``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import joblib
import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import OneHotEncoder, SplineTransformer, StandardScaler

import kiln
from kiln.artifact import SCHEMA_VERSION, file_sha256
from kiln.errors import DataError
from tests.conftest import REPO, mixed_frame
from tests.servers import kiln_server

pytestmark = [pytest.mark.integration, pytest.mark.slow]
KILN = [sys.executable, "-m", "training"]
NUMERIC = ["size cm", "weight", "count"]
CATEGORICAL = ["colour", "shop"]
ATOL, RTOL = 1e-4, 1e-6  # verification's float32 tolerance


def kiln_cli(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    """`kiln ARGS` on the session's store, as a user runs it."""
    env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1"}
    return subprocess.run(
        [*KILN, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )


def pipeline(estimator: Any, numeric_steps: list[Any] | None = None) -> Pipeline:
    """A notebook's pipeline: impute and scale numbers, impute and one-hot encode categories."""
    numeric = make_pipeline(
        *(numeric_steps or [SimpleImputer(strategy="median")]), StandardScaler()
    )
    categorical = make_pipeline(
        SimpleImputer(strategy="most_frequent"), OneHotEncoder(handle_unknown="ignore")
    )
    pre = ColumnTransformer([("num", numeric, NUMERIC), ("cat", categorical, CATEGORICAL)])
    return Pipeline([("preprocess", pre), ("model", estimator)])


class Fitted:
    """The two source models, their data, and the files each library saved them as."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.clf_frame = mixed_frame(rows=300, seed=3)
        self.reg_frame = mixed_frame(rows=300, classes=0, seed=4)
        self.classifier = pipeline(RandomForestClassifier(n_estimators=25, random_state=0)).fit(
            self.clf_frame.drop(columns="target"), self.clf_frame["target"]
        )
        self.regressor = pipeline(RandomForestRegressor(n_estimators=25, random_state=0)).fit(
            self.reg_frame.drop(columns="target"), self.reg_frame["target"]
        )
        self.clf_csv = directory / "clf-holdout.csv"
        self.reg_csv = directory / "reg-holdout.csv"
        self.clf_frame.to_csv(self.clf_csv, index=False)
        self.reg_frame.to_csv(self.reg_csv, index=False)

    def features(self, which: str) -> pd.DataFrame:
        frame = self.clf_frame if which == "clf" else self.reg_frame
        return frame.drop(columns="target")


@pytest.fixture(scope="module")
def fitted(tmp_path_factory: pytest.TempPathFactory) -> Fitted:
    return Fitted(tmp_path_factory.mktemp("import"))


@contextmanager
def _mlflow() -> Iterator[Any]:
    """MLflow, quiet: its own warnings (type hints, pandas 3 deprecations) are not ours."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import mlflow.pyfunc
        import mlflow.sklearn

        yield mlflow


def _untrusted(model: Any) -> list[str]:
    import skops.io

    return skops.io.get_untrusted_types(data=skops.io.dumps(model))


@pytest.fixture(scope="module")
def imported(fitted: Fitted) -> dict[str, dict[str, Any]]:
    """Every source saved by its library and imported; name -> what it is and how long."""
    import bentoml
    import skops.io

    d = fitted.directory
    joblib.dump(fitted.classifier, d / "clf.joblib")
    skops.io.dump(fitted.regressor, d / "reg.skops")
    trust = [f"--trust={t}" for t in _untrusted(fitted.classifier)]
    with _mlflow() as mlflow:
        mlflow.sklearn.save_model(
            fitted.classifier,
            str(d / "mlflow-clf"),
            input_example=fitted.features("clf"),
            skops_trusted_types=_untrusted(fitted.classifier),
        )
    bentoml.sklearn.save_model("imp-bento-src", fitted.regressor)
    gate = ["--gate", "accuracy >= 0.6", "--gate", "roc_auc >= 0.6"]
    reg_trust = [f"--trust={t}" for t in _untrusted(fitted.regressor)]
    commands = {
        "imp-joblib": (
            "clf",
            ["clf.joblib", "--sample", "clf-holdout.csv", "--target", "target", *gate],
        ),
        "imp-skops": (
            "reg",
            ["reg.skops", "--sample", "reg-holdout.csv", "--target", "target", *reg_trust],
        ),
        "imp-mlflow": ("clf", ["mlflow-clf", *trust]),  # its input example is the sample
        "imp-bento": (
            "reg",
            ["bentoml:imp-bento-src", "--sample", "reg-holdout.csv", "--target", "target"],
        ),
    }
    found: dict[str, dict[str, Any]] = {}
    for name, (which, args) in commands.items():
        started = time.monotonic()
        result = kiln_cli("import", *args, "--name", name, cwd=d)
        assert result.returncode == 0, f"{name}: {result.stdout}\n{result.stderr}"
        found[name] = {"which": which, "seconds": time.monotonic() - started, "cli": result}
    started = time.monotonic()
    kiln.save_model(
        fitted.classifier,
        "imp-py-clf",
        sample=fitted.features("clf"),
        y=fitted.clf_frame["target"],
        gate="accuracy >= 0.6",
    )
    found["imp-py-clf"] = {"which": "clf", "seconds": time.monotonic() - started}
    started = time.monotonic()
    kiln.save_model(fitted.regressor, "imp-py-reg", sample=fitted.features("reg"))  # no labels
    found["imp-py-reg"] = {"which": "reg", "seconds": time.monotonic() - started}
    return found


@pytest.fixture(scope="module")
def server(
    imported: dict[str, dict[str, Any]], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    log = tmp_path_factory.mktemp("import-server") / "server.log"
    with kiln_server({}, log, KILN_SERVE_MODELS=json.dumps(sorted(imported))) as url:
        yield url


def _records(X: pd.DataFrame) -> list[dict[str, Any]]:
    return [
        {k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in row.items()}
        for row in X.to_dict(orient="records")
    ]


def _shown(name: str) -> dict[str, Any]:
    result = kiln_cli("models", "show", name, "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@pytest.mark.parametrize(
    "name", ["imp-joblib", "imp-skops", "imp-mlflow", "imp-bento", "imp-py-clf", "imp-py-reg"]
)
def test_served_answers_equal_the_source_model_on_every_sample_row(
    name: str, imported: dict[str, dict[str, Any]], fitted: Fitted, server: str
) -> None:
    which = imported[name]["which"]
    X = fitted.features(which)
    response = httpx.post(
        f"{server}/v1/models/{name}/predict", json={"instances": _records(X)}, timeout=60
    )
    assert response.status_code == 200, response.text
    answer = response.json()
    assert len(answer["predictions"]) == len(X)
    source = fitted.classifier if which == "clf" else fitted.regressor
    if which == "clf":
        labels = np.asarray(answer["predictions"], dtype=object)
        got = np.asarray(
            [[row[str(c)] for c in source.classes_] for row in answer["probabilities"]]
        )
    else:
        labels, got = None, np.asarray(answer["predictions"]).reshape(-1, 1)
    # Every row answers as the source model does on the values the server receives: the
    # sample's numbers, or (where float32 rounding alone changes the source model's own
    # answer) those numbers as float32, which is all a served request can carry.
    as_float32 = X.astype({n: np.float32 for n in NUMERIC}).astype({n: np.float64 for n in NUMERIC})
    agree = np.zeros(len(X), dtype=bool)
    for values in (X, as_float32):
        if labels is not None:
            ref = source.predict_proba(values)
            same = labels == source.predict(values).astype(object)
        else:
            ref = source.predict(values).reshape(-1, 1)
            same = np.ones(len(X), dtype=bool)
        agree |= same & (np.abs(got - ref) <= ATOL + RTOL * np.abs(ref)).all(axis=1)
    assert agree.all(), f"rows {np.flatnonzero(~agree).tolist()} answer otherwise"


@pytest.mark.parametrize("name", ["imp-joblib", "imp-py-reg"])
def test_v2_kiln_predict_and_the_try_page_data_work_on_an_import(
    name: str, imported: dict[str, dict[str, Any]], fitted: Fitted, server: str, tmp_path: Path
) -> None:
    """Both protocols and `kiln predict` give an imported model's answers alike, and the
    try-it page's data (the model list, the model's features) describe it."""
    import tritonclient.http as triton

    which = imported[name]["which"]
    X = fitted.features(which).head(20)
    records = httpx.post(
        f"{server}/v1/models/{name}/predict", json={"instances": _records(X)}, timeout=60
    ).json()
    described = httpx.get(f"{server}/v1/models/{name}").json()
    assert name in {m["name"] for m in httpx.get(f"{server}/v1/models").json()["models"]}
    client = triton.InferenceServerClient(server.removeprefix("http://"))
    inputs = []
    for feature in described["features"]:
        column = X[feature["name"]]
        if feature["kind"] == "numeric":
            array = column.to_numpy(np.float32).reshape(-1, 1)
            tensor = triton.InferInput(feature["name"], [len(X), 1], "FP32")
        else:
            array = column.astype(object).where(column.notna(), "").to_numpy().reshape(-1, 1)
            tensor = triton.InferInput(feature["name"], [len(X), 1], "BYTES")
        tensor.set_data_from_numpy(array)
        inputs.append(tensor)
    result = client.infer(name, inputs)
    client.close()
    csv = tmp_path / "rows.csv"
    X.to_csv(csv, index=False)
    scored = kiln_cli("predict", name, "--input", str(csv), "--output", str(tmp_path / "out.csv"))
    assert scored.returncode == 0, scored.stdout + scored.stderr
    out = pd.read_csv(tmp_path / "out.csv")
    if which == "clf":
        labels = [v.decode() for v in result.as_numpy("label").reshape(-1)]
        assert labels == [str(v) for v in records["predictions"]]
        assert [str(v) for v in out["prediction"]] == [str(v) for v in records["predictions"]]
        want = [[row[c] for c in row] for row in records["probabilities"]]
        np.testing.assert_allclose(result.as_numpy("probabilities"), want, rtol=1e-6)
    else:
        want = np.asarray(records["predictions"], dtype=np.float32)
        np.testing.assert_array_equal(result.as_numpy("prediction").reshape(-1), want)
        np.testing.assert_allclose(out["prediction"].to_numpy(), want, rtol=1e-6)


def test_each_import_records_where_it_came_from(
    imported: dict[str, dict[str, Any]], fitted: Fitted
) -> None:
    d = fitted.directory
    expected = {  # sources as given, relative to the directory the import ran in
        "imp-joblib": ("joblib", "clf.joblib", file_sha256(d / "clf.joblib")),
        "imp-skops": ("skops", "reg.skops", file_sha256(d / "reg.skops")),
        "imp-mlflow": ("mlflow", "mlflow-clf", file_sha256(d / "mlflow-clf" / "model.skops")),
        "imp-py-clf": ("python", None, None),
    }
    for name, (fmt, source, sha256) in expected.items():
        doc = _shown(name)
        origin = doc["origin"]
        assert doc["schema_version"] == SCHEMA_VERSION
        assert doc["reference"]["prediction"] is not None  # the sample's own predictions
        assert (origin["kind"], origin["format"]) == ("import", fmt)
        assert (origin["source"], origin["sha256"]) == (source, sha256)
        assert origin["loaded_with"]["scikit-learn"]
        assert origin["model_class"] == "sklearn.pipeline.Pipeline"
        assert doc["estimator"] == (
            "RandomForestRegressor" if "skops" in name else "RandomForestClassifier"
        )
        assert set(doc["feature_stats"]) == set(NUMERIC + CATEGORICAL)
    bento = _shown("imp-bento")
    assert bento["origin"]["format"] == "bentoml"
    assert bento["origin"]["source"].startswith("bentoml:imp-bento-src:")
    assert "bentoml" in bento["origin"]["loaded_with"]
    joblib_doc = _shown("imp-joblib")
    assert joblib_doc["data"][0]["sha256"] == file_sha256(fitted.clf_csv)  # the sample
    assert joblib_doc["data"][0]["rows"] == joblib_doc["verification"]["rows"] == 300
    assert joblib_doc["verification"]["label_mismatches"] == 0
    assert [c["metric"] for c in joblib_doc["gate"]["checks"]] == ["accuracy", "roc_auc"]
    assert joblib_doc["evaluation"]["measured"] and joblib_doc["stage"] == "candidate"
    assert joblib_doc["origin"]["loaded_with"]["joblib"]
    colour = next(f for f in joblib_doc["features"] if f["name"] == "colour")
    assert colour["categories"] == ["blue", "dark red", "green", "red"]
    assert _shown("imp-py-clf")["data"][0]["source"] == "python:DataFrame"


@pytest.mark.parametrize("name", ["imp-mlflow", "imp-py-reg"])
def test_without_labels_only_parity_is_checked_and_said(
    name: str, imported: dict[str, dict[str, Any]], fitted: Fitted
) -> None:
    doc = _shown(name)
    assert doc["stage"] == "candidate" and doc["gate"]["checks"] == []
    assert not doc["evaluation"]["measured"] and doc["evaluation"]["metrics"] == {}
    assert doc["verification"]["passed"] and doc["verification"]["rows"] == 300
    shown = kiln_cli("models", "show", name)
    assert "no quality measured: imported without labels" in shown.stdout
    assert "imported from" in shown.stdout
    out = fitted.directory / f"report-{name}"
    report = kiln_cli("report", name, "--out", str(out))
    assert report.returncode == 0, report.stderr
    html = (out / "report.html").read_text()
    assert "No quality was measured" in html


def test_the_mlflow_input_example_is_the_sample(imported: dict[str, dict[str, Any]]) -> None:
    result = imported["imp-mlflow"]["cli"]
    assert "input example" in result.stderr
    doc = _shown("imp-mlflow")
    assert doc["data"][0]["source"].endswith("input_example.json")


def test_models_list_names_the_models_it_does_not_serve(
    imported: dict[str, dict[str, Any]],
) -> None:
    listed = kiln_cli("models", "list")
    assert listed.returncode == 0, listed.stderr
    assert "not Kiln models, not served: imp-bento-src:" in listed.stderr
    assert "kiln import bentoml:" in listed.stderr
    as_json = json.loads(kiln_cli("models", "list", "--json").stdout)
    others = {m["tag"].split(":")[0]: m["module"] for m in as_json["not_kiln"]}
    assert others["imp-bento-src"] == "bentoml.sklearn"
    assert "imp-bento-src" not in {m["tag"].split(":")[0] for m in as_json["models"]}


# --- refusals: each its own message, exit code 2, nothing written ---------------------------


def _bad_inputs(d: Path, fitted: Fitted) -> dict[str, tuple[list[str], str]]:
    import skops.io

    joblib.dump(clone(fitted.classifier), d / "unfitted.joblib")
    (d / "notes.joblib").write_text("these are my notes, not a model\n")
    joblib.dump({"model": "forest"}, d / "dict.joblib")
    fitted.clf_frame.drop(columns="shop").to_csv(d / "no-shop.csv", index=False)
    relabelled = fitted.clf_frame.assign(
        target=fitted.clf_frame["target"].replace({"yes": "maybe"})
    )
    relabelled.to_csv(d / "relabelled.csv", index=False)
    skops.io.dump(fitted.classifier, d / "clf.skops")
    if not (d / "pyfunc").exists():  # a python_function model only (a loader module, a file)
        (d / "pyfunc-data.json").write_text("{}")
        with _mlflow() as mlflow:
            mlflow.pyfunc.save_model(
                str(d / "pyfunc"),
                loader_module="json",
                data_path=str(d / "pyfunc-data.json"),
                pip_requirements=[],
            )
    spline = pipeline(
        RandomForestClassifier(n_estimators=3, random_state=0),
        [SimpleImputer(), SplineTransformer()],
    ).fit(fitted.features("clf"), fitted.clf_frame["target"])
    joblib.dump(spline, d / "spline.joblib")
    joblib.dump(fitted.classifier, d / "clf.joblib")
    sample = ["--sample", "clf-holdout.csv"]
    return {
        "unfitted model": (["unfitted.joblib", *sample], "that was never fitted; fit it"),
        "not a model file": (["notes.joblib", *sample], "cannot be loaded as a joblib file"),
        "not a model": (["dict.joblib", *sample], "holds a builtins.dict, not a scikit-learn"),
        "sample missing a column": (
            ["clf.joblib", "--sample", "no-shop.csv"],
            "no-shop.csv: has no column 'shop', which the model needs",
        ),
        "unknown classes": (
            ["clf.joblib", "--sample", "relabelled.csv", "--target", "target"],
            "labels 'maybe' are not classes the model knows ('no', 'yes')",
        ),
        "untrusted skops type": (
            ["clf.skops", *sample],
            "holds types skops does not trust by default: ",
        ),
        "mlflow without sklearn": (
            ["pyfunc", *sample],
            "is an MLflow model without the sklearn flavor (flavors: python_function)",
        ),
        "unsupported step": (["spline.joblib", *sample], "SplineTransformer"),
        "gate without labels": (
            ["clf.joblib", *sample, "--gate", "accuracy >= 0.9"],
            "a quality gate needs labels",
        ),
        "gate on a wrong metric": (
            ["clf.joblib", *sample, "--target", "target", "--gate", "r2 >= 0.5"],
            "'r2' is not a classification metric",
        ),
        "no sample": (["clf.joblib"], "no sample: give --sample FILE"),
        "no such bentoml model": (
            ["bentoml:imp-nowhere", *sample],
            "bentoml:imp-nowhere: no such model in the BentoML store",
        ),
        "no such file": (["missing.joblib", *sample], "missing.joblib: file not found"),
    }


def _store() -> dict[str, Any]:
    listed = kiln_cli("models", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    return json.loads(listed.stdout)


def test_bad_inputs_are_refused_with_their_message_and_nothing_written(
    imported: dict[str, dict[str, Any]], fitted: Fitted
) -> None:
    d = fitted.directory
    cases = _bad_inputs(d, fitted)
    before = _store()
    for i, (case, (args, message)) in enumerate(cases.items()):
        name = f"imp-bad-{i}"
        result = kiln_cli("import", *args, "--name", name, cwd=d)
        assert result.returncode == 2, f"{case}: {result.returncode}\n{result.stderr}"
        assert message in result.stderr, f"{case}: {result.stderr}"
        assert "Traceback" not in result.stderr, case
        assert not (Path(os.environ["BENTOML_HOME"]) / "models" / name).exists(), case
    assert _store() == before


def test_the_skops_refusal_names_every_untrusted_type_and_how_to_admit_it(
    fitted: Fitted, imported: dict[str, dict[str, Any]]
) -> None:
    import skops.io

    path = fitted.directory / "clf.skops"
    skops.io.dump(fitted.classifier, path)
    result = kiln_cli("import", str(path), "--name", "imp-bad-skops", "--sample", "x.csv")
    assert result.returncode == 2
    for untrusted in _untrusted(fitted.classifier):
        assert untrusted in result.stderr and f"--trust {untrusted}" in result.stderr


def test_save_model_refuses_as_the_cli_does(fitted: Fitted) -> None:
    X = fitted.features("clf")
    with pytest.raises(DataError, match="that was never fitted"):
        kiln.save_model(clone(fitted.classifier), "imp-bad-py", sample=X)
    with pytest.raises(DataError, match="takes the fitted model itself"):
        kiln.save_model("model.joblib", "imp-bad-py", sample=X)
    with pytest.raises(DataError, match="labels 'maybe' are not classes the model knows"):
        kiln.save_model(fitted.classifier, "imp-bad-py", sample=X, y=["maybe"] * len(X))
    with pytest.raises(DataError, match="has no column 'shop', which the model needs"):
        kiln.save_model(fitted.classifier, "imp-bad-py", sample=X.drop(columns="shop"))
    assert not (Path(os.environ["BENTOML_HOME"]) / "models" / "imp-bad-py").exists()


def test_feature_labels_of_an_import_reach_the_store_with_its_evidence(fitted: Fitted) -> None:
    """``labels=`` (``--label``) lands in kiln.json; with labels the sample's outcome by band
    is kept as evidence (the sample stands in for the training rows)."""
    from kiln.artifact import read_holdout

    X, y = fitted.features("clf"), fitted.clf_frame["target"]
    stored = kiln.save_model(
        fitted.classifier, "imp-labels", sample=X, y=y, labels={"size cm": "parcel size"}
    )
    assert {f.name: f.label for f in stored.metadata.features if f.label} == {
        "size cm": "parcel size"
    }
    holdout = read_holdout(stored.path)
    assert holdout is not None and holdout.evidence
    assert all(item.rows <= len(X) and len(item.bands) >= 2 for item in holdout.evidence)
    with pytest.raises(DataError, match="--label: 'size' is not a feature"):
        kiln.save_model(fitted.classifier, "imp-bad-label", sample=X, y=y, labels={"size": "x"})
    path = fitted.directory / "labels.joblib"
    joblib.dump(fitted.classifier, path)
    result = kiln_cli(
        "import",
        str(path),
        "--name",
        "imp-bad-label",
        "--sample",
        str(fitted.clf_csv),
        "--label",
        "weight",
    )
    assert result.returncode == 2 and "'weight' is not of the form column=text" in result.stderr
    assert not (Path(os.environ["BENTOML_HOME"]) / "models" / "imp-bad-label").exists()


def test_import_times(imported: dict[str, dict[str, Any]]) -> None:
    """Each import (load, convert, verify on 300 rows, evaluate, register, report) is quick."""
    for name, found in imported.items():
        print(f"{name}: {found['seconds']:.1f} s")  # shown with -s; the numbers in docs
        assert found["seconds"] < 120, name
