"""Retraining: champion and challenger, promotion by hand, rollback, data problems, watch;
refused labels, failures that leave nothing behind, ties, too few unseen rows, the primary
metric, and promotions refused for damaged or failed versions."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml

import training.retrain
from kiln.errors import ArtifactError, DataError, InvalidInput, TrainingError
from kiln.production import (
    current,
    last_run,
    production_model,
    promote,
    read_decision,
    rollback,
)
from kiln.store import get_model, list_models
from tests.conftest import REPO, SPECS
from training.retrain import MIN_COMPARISON_ROWS, retrain, watch
from training.spec import Spec, parse_spec

pytestmark = pytest.mark.integration
CHURN = pd.read_csv(REPO / "training" / "data" / "churn.csv")


@pytest.fixture(autouse=True)
def no_reports(monkeypatch: pytest.MonkeyPatch) -> None:
    """Reports are tested elsewhere; writing one per version would double these tests' time."""
    monkeypatch.setenv("KILN_TRAIN_REPORTS_DIR", "none")


def make_spec(tmp_path: Path, name: str, **changes: Any) -> tuple[Spec, Path]:
    raw = yaml.safe_load((SPECS / "churn.yaml").read_text())
    raw.update(
        name=name,
        data={"paths": ["data/*.csv"]},
        estimator={"type": "LogisticRegression", "params": {"C": 1.0}},
        **changes,
    )
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(raw))
    (tmp_path / "data").mkdir(exist_ok=True)
    return parse_spec(raw), path


def versions(name: str) -> list[str]:
    return [m.metadata.version for m in list_models(name)[0]]


def test_first_run_promotes_then_new_data_is_compared_on_unseen_rows(tmp_path: Path) -> None:
    spec, path = make_spec(tmp_path, "rt-flow")
    CHURN.iloc[:1500].to_csv(tmp_path / "data" / "2026-01.csv", index=False)
    first = retrain(spec, spec_path=path)
    assert first.promoted and first.champion is None
    assert first.reasons == ["there is no production model yet"]
    champion = production_model("rt-flow")
    assert champion is not None and champion.tag == first.challenger

    CHURN.iloc[1500:].to_csv(tmp_path / "data" / "2026-02.csv", index=False)
    second = retrain(spec, spec_path=path)
    assert second.champion == champion.tag and second.challenger not in (None, champion.tag)
    assert second.metric == "roc_auc"  # the first gate rule's metric
    assert second.challenger_score is not None and second.champion_score is not None
    compared = re.search(r"on (\d+) holdout rows neither model was trained on$", second.reasons[-1])
    assert compared is not None, second.reasons[-1]
    # the challenger's holdout (20% of 3,000 rows) from the second file only: about 300
    assert MIN_COMPARISON_ROWS <= int(compared.group(1)) < 0.2 * len(CHURN)
    expected = second.challenger_score > second.champion_score  # a tie keeps the champion
    assert second.promoted is expected
    stored = production_model("rt-flow")
    assert stored is not None
    assert stored.tag == (second.challenger if expected else champion.tag)
    decision = read_decision(list_models("rt-flow")[0][0])
    assert decision == second  # recorded beside the challenger, with its reasons
    run = last_run("rt-flow")
    assert run is not None and run.last.status == "succeeded"
    assert run.last.challenger == second.challenger and run.last.promoted is expected

    again = retrain(spec, spec_path=path)
    assert not again.promoted and again.challenger is None  # nothing new: nothing trained
    assert len(versions("rt-flow")) == 2


def test_worse_challenger_is_not_promoted(tmp_path: Path) -> None:
    spec, path = make_spec(tmp_path, "rt-worse")
    CHURN.iloc[:2000].to_csv(tmp_path / "data" / "a.csv", index=False)
    assert retrain(spec, spec_path=path).promoted
    noisy = CHURN.iloc[2000:].copy()
    rng = np.random.default_rng(0)
    noisy["churned"] = rng.permutation(noisy["churned"].to_numpy())  # labels now noise
    noisy = pd.concat([noisy] * 4, ignore_index=True)  # enough of it to spoil a refit
    noisy.to_csv(tmp_path / "data" / "b.csv", index=False)
    before = production_model("rt-worse")
    decision = retrain(spec, spec_path=path)
    assert not decision.promoted
    assert "worse than" in decision.reasons[-1] or "quality gate" in decision.reasons[-1]
    after = production_model("rt-worse")
    assert before is not None and after is not None and after.tag == before.tag


@pytest.mark.parametrize(
    ("bad_file", "error", "phrase"),
    [
        ("copy", DataError, "already seen"),
        ("columns", DataError, "missing 'plan'"),
        ("empty-target", DataError, "is empty in"),
    ],
)
def test_data_problems_change_nothing(
    tmp_path: Path, bad_file: str, error: type[Exception], phrase: str
) -> None:
    name = f"rt-bad-{bad_file}"
    spec, path = make_spec(tmp_path, name)
    first = tmp_path / "data" / "2026-01.csv"
    CHURN.iloc[:1500].to_csv(first, index=False)
    assert retrain(spec, spec_path=path).promoted
    state = (versions(name), current(name))
    new = tmp_path / "data" / "2026-02.csv"
    if bad_file == "copy":
        shutil.copy(first, new)  # same content under a new name
    elif bad_file == "columns":
        CHURN.iloc[1500:].drop(columns=["plan"]).to_csv(new, index=False)
    else:
        part = CHURN.iloc[1500:].copy()
        part.loc[part.index[:5], "churned"] = None
        part.to_csv(new, index=False)
    with pytest.raises(error, match=phrase):
        retrain(spec, spec_path=path)
    assert (versions(name), current(name)) == state


def test_promote_and_rollback_by_hand(tmp_path: Path) -> None:
    spec, path = make_spec(tmp_path, "rt-hand")
    CHURN.iloc[:1000].to_csv(tmp_path / "data" / "a.csv", index=False)
    first = retrain(spec, spec_path=path).challenger
    CHURN.iloc[1000:2000].to_csv(tmp_path / "data" / "b.csv", index=False)
    second = retrain(spec, spec_path=path).challenger
    assert first and second
    promote(second, "by hand")
    assert current("rt-hand").version == second.split(":")[1]  # type: ignore[union-attr]
    promote(first, "back to the first")
    record = rollback("rt-hand")
    assert record.version == second.split(":")[1]
    assert [p.reason for p in record.history][-1] == "rolled back by hand"
    assert len(versions("rt-hand")) == 2  # old versions stay in the store
    with pytest.raises(InvalidInput, match="NAME:VERSION"):
        promote("rt-hand", "no version")


def test_rejected_models_are_not_promoted(tmp_path: Path) -> None:
    spec, path = make_spec(tmp_path, "rt-gate", gate=["roc_auc >= 0.9999"])
    CHURN.iloc[:1000].to_csv(tmp_path / "data" / "a.csv", index=False)
    decision = retrain(spec, spec_path=path)
    assert not decision.promoted and "below its quality gate" in decision.reasons[-1]
    assert current("rt-gate") is None
    with pytest.raises(InvalidInput, match="below its quality gate"):
        promote(decision.challenger or "", "try anyway")


def test_watch_retrains_when_a_new_file_lands(tmp_path: Path) -> None:
    spec, path = make_spec(tmp_path, "rt-watch")
    arrivals = [CHURN.iloc[:1200], CHURN.iloc[1200:2400]]
    decisions: list[Any] = []

    def sleep(_: float) -> None:  # each poll, the next file lands
        if arrivals:
            part = arrivals.pop(0)
            part.to_csv(tmp_path / "data" / f"part-{len(arrivals)}.csv", index=False)

    runs = watch(
        spec, spec_path=path, interval=0, max_runs=2, on_decision=decisions.append, sleep=sleep
    )
    assert runs == 2 and len(decisions) == 2
    assert decisions[0].promoted and decisions[0].reasons == ["there is no production model yet"]
    assert decisions[1].champion == decisions[0].challenger
    assert len(versions("rt-watch")) == 2


def champion_on(tmp_path: Path, name: str, rows: int = 1500, **changes: Any) -> tuple[Spec, Path]:
    """A spec whose first file (``rows`` rows of churn) is already trained and in production."""
    spec, path = make_spec(tmp_path, name, **changes)
    CHURN.iloc[:rows].to_csv(tmp_path / "data" / "2026-01.csv", index=False)
    assert retrain(spec, spec_path=path).promoted
    return spec, path


def respelled() -> pd.DataFrame:
    part = CHURN.iloc[1500:].copy()
    part["churned"] = part["churned"].replace({"yes": "YES"})
    return part


def test_respelled_labels_are_refused_before_training(tmp_path: Path) -> None:
    spec, path = champion_on(tmp_path, "rt-labels")
    state = (versions("rt-labels"), current("rt-labels"))
    respelled().to_csv(tmp_path / "data" / "2026-02.csv", index=False)
    with pytest.raises(DataError) as raised:
        retrain(spec, spec_path=path)
    message = str(raised.value)
    assert "'YES'" in message and "'no', 'yes'" in message  # the new label, the known ones
    assert "2026-02.csv" in message and "promotion.allow_new_classes" in message
    assert (versions("rt-labels"), current("rt-labels")) == state  # nothing trained
    run = last_run("rt-labels")
    assert run is not None and run.last.status == "failed" and "'YES'" in (run.last.error or "")


def test_new_classes_are_accepted_when_the_spec_allows_them(tmp_path: Path) -> None:
    changes: dict[str, Any] = {
        "promotion": {"allow_new_classes": True},
        "evaluation": {"seed": 3},  # no positive_class: the class set may outgrow two
        "gate": ["accuracy >= 0.3"],
    }
    spec, path = champion_on(tmp_path, "rt-grow", **changes)
    respelled().to_csv(tmp_path / "data" / "2026-02.csv", index=False)
    decision = retrain(spec, spec_path=path)
    assert "new classes 'YES'" in decision.reasons[-1]
    challenger = get_model(decision.challenger or "")
    assert challenger.metadata.classes == ["YES", "no", "yes"]
    assert decision.promoted is (challenger.stage.value == "candidate")


def test_a_failed_comparison_registers_nothing_and_the_rerun_tries_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec, path = champion_on(tmp_path, "rt-crash")
    state = (versions("rt-crash"), current("rt-crash"))
    CHURN.iloc[1500:].to_csv(tmp_path / "data" / "2026-02.csv", index=False)

    def crash(*_: Any) -> float:
        raise ValueError("'y_true' contains labels not in parameter 'labels'")

    with monkeypatch.context() as patch:
        patch.setattr(training.retrain, "holdout_score", crash)
        with pytest.raises(TrainingError, match="nothing was registered"):
            retrain(spec, spec_path=path)
    assert (versions("rt-crash"), current("rt-crash")) == state  # nothing half-registered
    run = last_run("rt-crash")
    assert run is not None and run.last.status == "failed" and len(run.last.data) == 2
    assert "contains labels not in parameter" in (run.last.error or "")

    again = retrain(spec, spec_path=path)  # not "already trained on exactly this data"
    assert again.challenger is not None and again.challenger not in state[0]
    assert again.reasons[0].startswith("the last run on this data failed (")
    assert "contains labels not in parameter" in again.reasons[0]
    assert len(versions("rt-crash")) == 2


def test_a_failure_after_registration_takes_the_challenger_out_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec, path = make_spec(tmp_path, "rt-late")  # a fresh store: the first run would promote
    CHURN.iloc[:1500].to_csv(tmp_path / "data" / "2026-01.csv", index=False)

    def no_disk(*_: Any) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(training.retrain, "promote", no_disk)
    with pytest.raises(TrainingError, match="No space left"):
        retrain(spec, spec_path=path)
    assert versions("rt-late") == [] and production_model("rt-late") is None
    run = last_run("rt-late")
    assert run is not None and run.last.status == "failed" and run.failed_versions == []


def test_a_version_a_failed_run_could_not_remove_is_never_production(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec, path = make_spec(tmp_path, "rt-stuck")
    CHURN.iloc[:1500].to_csv(tmp_path / "data" / "2026-01.csv", index=False)

    def broken(*_: Any) -> None:
        raise OSError("store unavailable")

    monkeypatch.setattr(training.retrain, "promote", broken)
    monkeypatch.setattr(training.retrain, "unregister", broken)
    with pytest.raises(TrainingError):
        retrain(spec, spec_path=path)
    [left] = versions("rt-stuck")  # a candidate, in a store with no production record
    run = last_run("rt-stuck")
    assert run is not None and run.failed_versions == [left]
    assert production_model("rt-stuck") is None  # not the newest candidate: it failed
    with pytest.raises(InvalidInput, match="failed"):
        promote(f"rt-stuck:{left}", "by hand")
    monkeypatch.undo()
    decision = retrain(spec, spec_path=path)  # tried again, not "already trained"
    assert decision.promoted and decision.challenger != f"rt-stuck:{left}"


def test_a_tie_keeps_the_champion(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spec, path = champion_on(tmp_path, "rt-tie")
    champion = production_model("rt-tie")
    CHURN.iloc[1500:].to_csv(tmp_path / "data" / "2026-02.csv", index=False)
    monkeypatch.setattr(training.retrain, "holdout_score", lambda *_: 0.8125)
    decision = retrain(spec, spec_path=path)
    assert not decision.promoted
    assert decision.challenger_score == decision.champion_score == 0.8125
    assert (
        "ties with" in decision.reasons[-1] and "a tie keeps the champion" in decision.reasons[-1]
    )
    after = production_model("rt-tie")
    assert champion is not None and after is not None and after.tag == champion.tag


def test_too_few_unseen_rows_keep_the_champion(tmp_path: Path) -> None:
    spec, path = champion_on(tmp_path, "rt-few")
    champion = production_model("rt-few")
    CHURN.iloc[1500:1600].to_csv(tmp_path / "data" / "2026-02.csv", index=False)
    decision = retrain(spec, spec_path=path)
    assert not decision.promoted and decision.challenger_score is None
    found = re.match(r"only (\d+) holdout rows neither model was trained on", decision.reasons[-1])
    assert found is not None, decision.reasons[-1]
    assert 0 < int(found.group(1)) < MIN_COMPARISON_ROWS  # about 20 of the 100 new rows
    assert f"at least {MIN_COMPARISON_ROWS}" in decision.reasons[-1]
    after = production_model("rt-few")
    assert champion is not None and after is not None and after.tag == champion.tag


@pytest.mark.parametrize(
    ("changes", "metric"),
    [
        ({"gate": ["accuracy >= 0.5", "roc_auc >= 0.5"]}, "accuracy"),
        ({"gate": ["accuracy >= 0.5"], "evaluation": {"seed": 3, "primary": "f1"}}, "f1"),
    ],
)
def test_the_comparison_uses_the_primary_metric(
    tmp_path: Path, changes: dict[str, Any], metric: str
) -> None:
    name = f"rt-primary-{metric}"
    spec, path = champion_on(tmp_path, name, **changes)
    CHURN.iloc[1500:].to_csv(tmp_path / "data" / "2026-02.csv", index=False)
    decision = retrain(spec, spec_path=path)
    assert decision.metric == metric and decision.reasons[-1].startswith(f"{metric} ")
    assert decision.challenger_score is not None and decision.champion_score is not None


def damage(ref: str) -> None:
    """Overwrite the last bytes of a stored model.onnx, as a disk error or an edit would."""
    onnx = get_model(ref).onnx_path
    onnx.write_bytes(onnx.read_bytes()[:-8] + b"\x00" * 8)


def test_promote_and_rollback_refuse_a_damaged_model(tmp_path: Path) -> None:
    spec, path = champion_on(tmp_path, "rt-damaged", rows=1000)
    first = production_model("rt-damaged")
    CHURN.iloc[1000:2000].to_csv(tmp_path / "data" / "b.csv", index=False)
    second = retrain(spec, spec_path=path).challenger
    assert first is not None and second is not None
    promote(first.tag, "first")
    record = current("rt-damaged")
    damage(second)
    with pytest.raises(ArtifactError, match="does not match the sha256 registered"):
        promote(second, "by hand")
    assert current("rt-damaged") == record

    third_file = tmp_path / "data" / "c.csv"
    CHURN.iloc[2000:].to_csv(third_file, index=False)
    third = retrain(spec, spec_path=path).challenger
    assert third is not None
    promote(third, "third")  # history: ..., first, third: a rollback would go to first
    damage(first.tag)
    before = current("rt-damaged")
    with pytest.raises(ArtifactError, match="does not match the sha256 registered"):
        rollback("rt-damaged")
    assert current("rt-damaged") == before


def test_the_new_files_drift_is_shown_before_training_and_recorded(tmp_path: Path) -> None:
    spec, path = make_spec(tmp_path, "rt-drift")
    CHURN.iloc[:1500].to_csv(tmp_path / "data" / "a.csv", index=False)
    first = retrain(spec, spec_path=path)
    assert first.drift is None  # no champion: nothing to compare with
    champion = production_model("rt-drift")
    assert champion is not None
    moved = CHURN.iloc[1500:].copy()
    moved["tenure_months"] *= 3
    moved.loc[moved.index % 4 == 0, "plan"] = "satellite"
    moved.to_csv(tmp_path / "data" / "b.csv", index=False)
    shown: list[Any] = []
    steps: list[str] = []

    def on_step(text: str) -> None:
        steps.append(text)

    def on_drift(result: Any) -> None:
        shown.append((result, len(steps)))

    decision = retrain(spec, spec_path=path, on_step=on_step, on_drift=on_drift)
    assert len(shown) == 1
    result, at = shown[0]
    assert not any(s.startswith("Fitting") for s in steps[:at])  # shown before training
    assert result.model == champion.tag and result.files == [str(tmp_path / "data" / "b.csv")]
    drift = decision.drift
    assert drift is not None and drift.against == champion.tag and drift.rows == 1_500
    assert drift.note is None and drift.basis == "reference"
    assert drift.features["tenure_months"] > 0.2 and drift.features["plan"] > 0.2
    assert list(drift.features)[:2] in (["plan", "tenure_months"], ["tenure_months", "plan"])
    assert all(v < 0.1 for k, v in drift.features.items() if k not in ("plan", "tenure_months"))
    assert drift.prediction is not None
    challenger = get_model(decision.challenger or "")
    assert read_decision(challenger) == decision  # kept in decision.json

    # a record written before drift was kept still reads, with no drift
    raw = json.loads((challenger.path / "decision.json").read_text())
    del raw["drift"]
    (challenger.path / "decision.json").write_text(json.dumps(raw))
    older = read_decision(challenger)
    assert older is not None and older.drift is None and older.reasons == decision.reasons
