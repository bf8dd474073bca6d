"""The whole training chain against a real model store: what is registered, and what is not."""

from __future__ import annotations

import hashlib
import subprocess
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

import bentoml
import numpy as np
import onnxruntime as ort
import pytest
import yaml

import training.register
from kiln.artifact import (
    METADATA_FILE,
    MODEL_FILE,
    SCHEMA_VERSION,
    Stage,
    read_holdout,
    read_metadata,
)
from kiln.errors import RegistrationError, SpecError, VerificationError
from kiln.store import StoredModel, get_model, list_models, store_path
from tests.conftest import REPO, SMS, SPECS
from training.run import train
from training.spec import load_spec, parse_spec

pytestmark = pytest.mark.integration


def _spec(name: str, **changes: Any) -> Any:
    raw = yaml.safe_load((SPECS / "breast-cancer.yaml").read_text())
    raw.update(name=name, **changes)
    return parse_spec(raw)


@pytest.fixture(scope="module")
def breast_cancer() -> StoredModel:
    path = SPECS / "breast-cancer.yaml"
    return train(load_spec(path), spec_path=path)


def test_registered_model_carries_its_provenance(breast_cancer: StoredModel) -> None:
    meta = breast_cancer.metadata
    assert breast_cancer.stage is Stage.candidate
    assert breast_cancer.onnx_path.is_file() and (breast_cancer.path / METADATA_FILE).is_file()
    assert meta.onnx_sha256 == hashlib.sha256(breast_cancer.onnx_path.read_bytes()).hexdigest()
    assert meta.classes == ["benign", "malignant"]
    assert meta.evaluation.positive_class == "malignant"
    assert len(meta.features) == 30
    assert {f.kind.value for f in meta.features} == {"numeric"}
    assert meta.features[0].name == meta.features[0].input  # snake_case names pass unchanged
    assert [o.name for o in meta.outputs] == ["label", "probabilities"]
    assert meta.outputs[1].shape == [-1, 2]
    assert meta.evaluation.train_rows + meta.evaluation.holdout_rows == 569
    assert meta.verification.passed and meta.verification.rows == meta.evaluation.holdout_rows
    assert meta.verification.max_abs_diff <= 1e-4
    assert meta.evaluation.metrics["roc_auc"] > meta.evaluation.baseline["roc_auc"] == 0.5
    assert meta.data[0].source == "sklearn:breast_cancer" and meta.data[0].rows == 569
    stats = meta.feature_stats["mean_radius"]
    assert stats.count == meta.evaluation.train_rows and stats.missing == 0
    assert stats.min is not None and stats.max is not None and stats.min < stats.mean < stats.max  # type: ignore[operator]
    assert sum(stats.histogram["counts"]) == stats.count  # type: ignore[index]
    libs = meta.provenance.libraries
    assert libs["scikit-learn"] == importlib_metadata.version("scikit-learn")
    assert libs["onnxruntime"] == importlib_metadata.version("onnxruntime")
    assert meta.provenance.opset == {"": 18, "ai.onnx.ml": 3}
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True)
    if head.returncode == 0:
        assert meta.provenance.git_commit == head.stdout.strip()
    assert meta.provenance.spec["estimator"]["type"] == "LogisticRegression"


def test_a_feature_label_and_the_evidence_reach_the_store() -> None:
    """The spec's label lands in kiln.json; holdout.json holds the outcome by band of the
    three features that matter most, measured on the training rows."""
    label = {"kind": "numeric", "label": "tumour radius (mean)"}
    stored = train(_spec("labelled", features={"*": "numeric", "mean_radius": label}))
    meta = read_metadata(stored.path)
    assert meta.schema_version == SCHEMA_VERSION == 4
    labels = {f.name: f.label for f in meta.features if f.label}
    assert labels == {"mean_radius": "tumour radius (mean)"}
    holdout = read_holdout(stored.path)
    assert holdout is not None and holdout.importance and holdout.evidence
    top = sorted((f for f in holdout.importance if f.mean > 0), key=lambda f: -f.mean)[:3]
    assert [e.feature for e in holdout.evidence] == [f.feature for f in top]
    for item in holdout.evidence:
        assert sum(b.rows for b in item.bands) == item.rows == meta.evaluation.train_rows
        assert all(b.rows >= 30 and b.shares and len(b.shares) == 2 for b in item.bands)


def test_model_is_in_the_bentoml_store_under_bentoml_home(
    breast_cancer: StoredModel, bentoml_home: Path
) -> None:
    assert store_path() == bentoml_home / "models"
    assert breast_cancer.path.is_relative_to(bentoml_home)
    model = bentoml.models.get(breast_cancer.tag)
    assert model.info.labels == {"owner": "kiln", "stage": "candidate", "task": "classification"}
    assert get_model("breast-cancer").tag == breast_cancer.tag
    assert read_metadata(breast_cancer.path) == breast_cancer.metadata


def test_stored_onnx_model_answers_from_raw_values(breast_cancer: StoredModel) -> None:
    from sklearn.datasets import load_breast_cancer

    data = load_breast_cancer()
    session = ort.InferenceSession(str(breast_cancer.onnx_path), providers=["CPUExecutionProvider"])
    feeds = {
        f.input: data.data[:, [i]].astype(np.float32)
        for i, f in enumerate(breast_cancer.metadata.features)
    }
    labels, probabilities = session.run(None, feeds)
    assert probabilities.shape == (569, 2)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)
    classes = np.array(breast_cancer.metadata.classes)
    assert (labels == classes[probabilities.argmax(axis=1)]).all()
    truth = data.target_names[data.target]
    assert (labels == truth).mean() > 0.95


def test_model_below_its_gate_is_registered_as_rejected() -> None:
    stored = train(_spec("gate-too-high", gate=["roc_auc >= 0.99999", "recall >= 0.5"]))
    assert stored.stage is Stage.rejected
    assert not stored.metadata.gate.passed
    assert [c.passed for c in stored.metadata.gate.checks] == [False, True]
    assert bentoml.models.get(stored.tag).info.labels["stage"] == "rejected"


def test_model_failing_verification_is_not_registered() -> None:
    # With zero tolerance float32 rounding (about 1e-7) is enough to fail: a real disagreement.
    spec = _spec("zero-tolerance", tolerance={"atol": 0.0, "rtol": 0.0})
    with pytest.raises(VerificationError) as caught:
        train(spec)
    assert "Worst rows" in str(caught.value) and "not registered" in str(caught.value)
    assert list_models("zero-tolerance") == ([], [])


def test_registration_is_atomic(monkeypatch: pytest.MonkeyPatch) -> None:
    """A failure after export, between writing model.onnx and the metadata, leaves nothing."""
    written: list[Path] = []

    def fail(meta: Any, directory: Path) -> Path:
        written.append(directory)
        assert (directory / MODEL_FILE).is_file()  # the export had been written
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(training.register, "write_metadata", fail)
    with pytest.raises(RegistrationError, match="No space left on device"):
        train(_spec("atomic"))
    assert written and not written[0].exists()  # the temporary directory is gone
    assert list_models("atomic") == ([], [])
    assert not (store_path() / "atomic").exists() or not any(
        p.is_dir() for p in (store_path() / "atomic").iterdir()
    )


def test_wrong_spec_fails_before_training_and_registers_nothing() -> None:
    with pytest.raises(SpecError) as caught:
        train(_spec("bad-params", estimator={"type": "LogisticRegression", "params": {"C": -1}}))
    assert caught.value.problems[0][0] == "estimator.params"
    with pytest.raises(SpecError) as missing:
        train(_spec("bad-feature", features={"no_such_column": "numeric"}))
    assert missing.value.problems[0][0] == "features.no_such_column"
    assert list_models("bad-params") == ([], []) and list_models("bad-feature") == ([], [])


@pytest.mark.slow
@pytest.mark.skipif(not SMS.is_dir(), reason="needs ../shared/data/sms")
def test_text_classifier_trains_on_data_given_at_run_time() -> None:
    path = SPECS / "sms-spam.yaml"
    stored = train(load_spec(path), spec_path=path, data=[str(SMS / "train-data.tsv")])
    meta = stored.metadata
    assert meta.classes == ["ham", "spam"] and meta.stage is Stage.candidate
    assert meta.features[0].kind.value == "text" and meta.features[0].dtype == "string"
    assert meta.data[0].rows == 4179 and meta.data[0].source.endswith("train-data.tsv")
    session = ort.InferenceSession(str(stored.onnx_path), providers=["CPUExecutionProvider"])
    texts = np.array(
        [
            ["WINNER! You have won a free prize, call 09061701461 now to claim"],
            ["are we still meeting for lunch tomorrow?"],
        ],
        dtype=object,
    )
    labels, _ = session.run(None, {meta.features[0].input: texts})
    assert labels.tolist() == ["spam", "ham"]
