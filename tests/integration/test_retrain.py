"""Retraining: champion and challenger, promotion by hand, rollback, data problems, watch."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml

from kiln.errors import DataError, InvalidInput
from kiln.production import current, production_model, promote, read_decision, rollback
from kiln.store import list_models
from tests.conftest import REPO, SPECS
from training.retrain import retrain, watch
from training.spec import Spec, parse_spec

pytestmark = pytest.mark.integration
CHURN = pd.read_csv(REPO / "training" / "data" / "churn.csv")


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
    assert second.metric == "roc_auc"
    assert second.challenger_score is not None and second.champion_score is not None
    assert "holdout rows from the new files" in second.reasons[-1]
    expected = second.challenger_score >= second.champion_score
    assert second.promoted is expected
    stored = production_model("rt-flow")
    assert stored is not None
    assert stored.tag == (second.challenger if expected else champion.tag)
    decision = read_decision(list_models("rt-flow")[0][0])
    assert decision == second  # recorded beside the challenger, with its reasons

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
