"""The `kiln` command, run as a user runs it: a subprocess with its own model store."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from kiln.artifact import SCHEMA_VERSION
from tests.conftest import REPO, SMS, SPECS, mixed_frame

pytestmark = pytest.mark.integration
KILN = [sys.executable, "-m", "training"]


def kiln(*args: str, home: Path, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "BENTOML_HOME": str(home), "COLUMNS": "200", "NO_COLOR": "1"}
    return subprocess.run(
        [*KILN, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )


def test_help_lists_the_commands(tmp_path: Path) -> None:
    result = kiln("--help", home=tmp_path)
    assert result.returncode == 0
    for command in ("train", "validate", "models"):
        assert command in result.stdout
    models = kiln("models", "--help", home=tmp_path)
    assert "list" in models.stdout and "show" in models.stdout


@pytest.mark.slow
def test_train_then_list_and_show(tmp_path: Path) -> None:
    trained = kiln("train", str(SPECS / "wine.yaml"), home=tmp_path)
    assert trained.returncode == 0, trained.stderr
    assert "registered wine:" in trained.stdout and "candidate" in trained.stdout
    assert "Verifying ONNX Runtime against scikit-learn" in trained.stderr  # progress shown
    assert (tmp_path / "models" / "wine").is_dir()

    listed = kiln("models", "list", home=tmp_path)
    assert listed.returncode == 0 and "wine" in listed.stdout and "RandomForest" in listed.stdout
    as_json = json.loads(kiln("models", "list", "--json", home=tmp_path).stdout)
    assert [m["tag"].split(":")[0] for m in as_json["models"]] == ["wine"]
    assert as_json["models"][0]["metrics"]["accuracy"] >= 0.85

    shown = kiln("models", "show", "wine", home=tmp_path)
    assert shown.returncode == 0
    for text in ("alcohol", "probabilities", "verified on", "sklearn:wine", "class_0"):
        assert text in shown.stdout
    document = json.loads(
        kiln("models", "show", as_json["models"][0]["tag"], "--json", home=tmp_path).stdout
    )
    assert document["schema_version"] == SCHEMA_VERSION and document["name"] == "wine"


def test_unknown_model_exits_3(tmp_path: Path) -> None:
    result = kiln("models", "show", "nope", home=tmp_path)
    assert result.returncode == 3
    assert "'nope' is not in the store" in result.stderr and "Traceback" not in result.stderr


def test_wrong_spec_exits_2_naming_the_field(tmp_path: Path) -> None:
    spec = tmp_path / "bad.yaml"
    spec.write_text((SPECS / "wine.yaml").read_text().replace("RandomForestClassifier", "Forest"))
    result = kiln("train", str(spec), home=tmp_path / "store")
    assert result.returncode == 2
    assert "estimator.type" in result.stderr and "unknown estimator 'Forest'" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "store" / "models" / "wine").exists()


def test_corrupt_data_exits_2_naming_the_file(tmp_path: Path) -> None:
    data = tmp_path / "broken.parquet"
    data.write_bytes(b"PAR1 this is not parquet")
    result = kiln("train", str(SPECS / "churn.yaml"), "--data", str(data), home=tmp_path / "s")
    assert result.returncode == 2
    assert "broken.parquet" in result.stderr and "cannot be read as PARQUET" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "s" / "models" / "churn").exists()


def test_text_spec_without_data_says_how_to_give_it(tmp_path: Path) -> None:
    result = kiln("train", str(SPECS / "sms-spam.yaml"), home=tmp_path)
    assert result.returncode == 2 and "data.paths" in result.stderr and "--data" in result.stderr


def test_validate_checks_without_training(tmp_path: Path) -> None:
    result = kiln("validate", str(SPECS / "churn.yaml"), home=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "valid; 3,000 rows" in result.stdout and "plan (categorical)" in result.stdout
    assert not (tmp_path / "models" / "churn").exists()


@pytest.mark.slow
def test_model_below_gate_exits_4(tmp_path: Path) -> None:
    data = tmp_path / "mixed.csv"
    mixed_frame(rows=300).to_csv(data, index=False)
    spec = tmp_path / "mixed.yaml"
    spec.write_text(
        "name: mixed\ntask: classification\ndata: {paths: [mixed.csv]}\ntarget: target\n"
        "features: {size cm: numeric, weight: numeric, colour: categorical, shop: categorical}\n"
        "estimator: {type: LogisticRegression}\ngate: [accuracy >= 0.999]\n"
    )
    result = kiln("train", str(spec), home=tmp_path / "store")
    assert result.returncode == 4, result.stderr
    assert "rejected" in result.stdout and "FAIL" in result.stdout
    assert (tmp_path / "store" / "models" / "mixed").is_dir()  # kept for inspection


@pytest.mark.slow
@pytest.mark.skipif(not SMS.is_dir(), reason="needs ../shared/data/sms")
def test_text_model_trains_on_files_given_on_the_command_line(tmp_path: Path) -> None:
    result = kiln(
        "train",
        str(SPECS / "sms-spam.yaml"),
        "--data",
        str(SMS / "train-data.tsv"),
        "--data",
        str(SMS / "valid-data.tsv"),
        home=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    shown = json.loads(kiln("models", "show", "sms-spam", "--json", home=tmp_path).stdout)
    assert [d["rows"] for d in shown["data"]] == [4179, 1392]
    assert shown["evaluation"]["metrics"]["roc_auc"] >= 0.97


@pytest.mark.slow
def test_retrain_refuses_respelled_labels_and_promote_a_damaged_model(tmp_path: Path) -> None:
    import pandas as pd

    churn = pd.read_csv(REPO / "training" / "data" / "churn.csv")
    (tmp_path / "data").mkdir()
    spec = tmp_path / "churn.yaml"
    spec.write_text(
        (SPECS / "churn.yaml")
        .read_text()
        .replace("paths: [../data/churn.csv]", "paths: [data/*.csv]")
        .replace("type: GradientBoostingClassifier", "type: LogisticRegression")
        .replace("params: {n_estimators: 200, max_depth: 3, learning_rate: 0.05}", "params: {}")
    )
    home = tmp_path / "store"
    churn.iloc[:1500].to_csv(tmp_path / "data" / "a.csv", index=False)
    first = kiln("retrain", str(spec), home=home)
    assert first.returncode == 0, first.stderr
    promoted = re.match(r"churn:(\w+): promoted", first.stdout)
    assert promoted is not None, first.stdout
    version = promoted.group(1)

    respelled = churn.iloc[1500:].copy()
    respelled["churned"] = respelled["churned"].replace({"yes": "YES"})
    respelled.to_csv(tmp_path / "data" / "b.csv", index=False)
    refused = kiln("retrain", str(spec), home=home)
    assert refused.returncode == 2, refused.stderr  # a data problem
    assert "'YES'" in refused.stderr and "promotion.allow_new_classes" in refused.stderr
    assert "Traceback" not in refused.stderr
    assert len(list((home / "models" / "churn").iterdir())) == 2  # one version, and `latest`

    churn.iloc[1500:].to_csv(tmp_path / "data" / "b.csv", index=False)
    second = kiln("retrain", str(spec), home=home)
    assert second.returncode == 0, second.stderr
    assert "the last run failed" in second.stdout and "'YES'" in second.stdout

    onnx = home / "models" / "churn" / version / "model.onnx"
    onnx.write_bytes(onnx.read_bytes()[:-8] + b"\x00" * 8)
    damaged = kiln("models", "promote", f"churn:{version}", home=home)
    assert damaged.returncode == 1, damaged.stderr
    assert "does not match the sha256 registered" in damaged.stderr
    assert "Traceback" not in damaged.stderr
