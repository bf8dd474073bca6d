"""Retraining an imported model: `kiln retrain NAME --data new.csv --target COL`.

A notebook's pipeline (ColumnTransformer + RandomForest) fitted on ``mixed_frame`` rows and
imported with ``kiln.save_model``; its source estimator is kept beside the store (never in
the model directory a Bento copies). Retraining refits a clone on new rows and goes through
the champion/challenger decision of spec-trained models: a better challenger is promoted, a
tie keeps the champion, respelled labels are refused, a crash registers nothing. Each test
has its own model name (``rti-*``): the session's store is shared.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import RandomForestClassifier
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler
from typer.testing import CliRunner

import kiln
import training.retrain
from kiln.production import current, last_run, production_model, read_decision
from kiln.store import StoredModel, get_model, list_models, store_path
from tests.conftest import REPO, mixed_frame
from training.cli import app
from training.keep import SOURCE_DOC, KeptSource, source_dir

pytestmark = pytest.mark.integration
NUMERIC = ["size cm", "weight", "count"]
CATEGORICAL = ["colour", "shop"]


@pytest.fixture(autouse=True)
def no_reports(monkeypatch: pytest.MonkeyPatch) -> None:
    """Reports are tested elsewhere."""
    monkeypatch.setenv("KILN_TRAIN_REPORTS_DIR", "none")


def pipeline() -> Pipeline:
    numeric = make_pipeline(SimpleImputer(strategy="median"), StandardScaler())
    categorical = make_pipeline(
        SimpleImputer(strategy="most_frequent"), OneHotEncoder(handle_unknown="ignore")
    )
    pre = ColumnTransformer([("num", numeric, NUMERIC), ("cat", categorical, CATEGORICAL)])
    model = RandomForestClassifier(n_estimators=25, max_depth=6, random_state=0)
    return Pipeline([("preprocess", pre), ("model", model)])


def imported(name: str, rows: int = 60) -> StoredModel:
    """A pipeline fitted on a few rows, imported from a notebook and verified on others."""
    fitted_on = mixed_frame(rows=rows, seed=11)
    sample = mixed_frame(rows=120, seed=12)
    model = pipeline().fit(fitted_on.drop(columns="target"), fitted_on["target"])
    return kiln.save_model(model, name, sample=sample.drop(columns="target"), y=sample["target"])


def retrain_cli(name: str, *files: Path, extra: tuple[str, ...] = ()) -> Any:
    args = ["retrain", name, *(a for f in files for a in ("--data", str(f)))]
    return CliRunner().invoke(app, [*args, "--target", "target", *extra])


def versions(name: str) -> list[str]:
    return [m.metadata.version for m in list_models(name)[0]]


def kept_versions(name: str) -> list[str]:
    directory = source_dir(name, "x").parent
    return sorted(p.name for p in directory.iterdir()) if directory.is_dir() else []


def test_the_source_is_kept_beside_the_store_never_in_the_model_directory() -> None:
    champion = imported("rti-kept")
    directory = source_dir("rti-kept", champion.metadata.version)
    doc = KeptSource.model_validate_json((directory / SOURCE_DOC).read_text())
    assert (doc.format, doc.imported_as, doc.target, doc.task.value) == (
        "joblib",
        "python",
        "target",
        "classification",
    )
    assert [n for n, _ in doc.features] == [*NUMERIC, *CATEGORICAL]
    assert (directory / doc.file).is_file()
    # the model directory (what `bentoml build` copies into a Bento) holds none of it
    assert not directory.is_relative_to(store_path())
    inside = {p.name for p in champion.path.rglob("*")}
    assert not inside & {SOURCE_DOC, doc.file}
    # serving and the Bento builder know nothing of kept sources
    for path in [*(REPO / "service").rglob("*.py"), REPO / "deploy" / "bento.py"]:
        text = path.read_text()
        assert "training.keep" not in text and "sources" not in text.replace("resources", "")


def test_a_better_refit_is_promoted_and_keeps_its_own_source(tmp_path: Path) -> None:
    champion = imported("rti-better")
    new = tmp_path / "new.csv"
    mixed_frame(rows=800, seed=21).to_csv(new, index=False)

    result = retrain_cli("rti-better", new)
    assert result.exit_code == 0, result.output
    decision = read_decision(get_model(production_model("rti-better").tag))  # type: ignore[union-attr]
    assert decision is not None and decision.promoted
    assert decision.champion == champion.tag and decision.metric == "roc_auc"
    assert "refitted from " + champion.tag + " on 640 of its 800 rows" in decision.reasons[0]
    assert "on 160 holdout rows neither model was trained on" in decision.reasons[-1]
    assert decision.challenger_score is not None and decision.champion_score is not None
    assert decision.challenger_score > decision.champion_score
    # the new file's drift against the champion's sample: shown before the refit, recorded
    assert decision.drift is not None and decision.drift.against == champion.tag
    assert decision.drift.rows == 800 and set(decision.drift.features) == {
        f.name for f in champion.metadata.features if f.kind.value != "text"
    }
    assert "PSI" in result.output.split("promoted")[0]
    print(
        f"\ncompared on 160 rows: challenger roc_auc {decision.challenger_score:.4f}, "
        f"champion {decision.champion_score:.4f}"
    )

    challenger = get_model(decision.challenger or "")
    assert current("rti-better").version == challenger.metadata.version  # type: ignore[union-attr]
    origin = challenger.metadata.origin
    assert origin is not None and origin.kind.value == "import" and origin.format == "joblib"
    assert f"refitted from {champion.tag}" in (origin.source or "")
    assert [f.rows for f in challenger.metadata.data] == [800]
    doc = KeptSource.model_validate_json(
        (source_dir("rti-better", challenger.metadata.version) / SOURCE_DOC).read_text()
    )
    assert doc.refitted_from == champion.tag
    run = last_run("rti-better")
    assert run is not None and run.last.status == "succeeded" and run.last.promoted

    again = retrain_cli("rti-better", new)  # the same file: nothing new
    assert again.exit_code == 0 and "no new data" in again.output


def test_a_tie_keeps_the_champion(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    champion = imported("rti-tie")
    new = tmp_path / "new.csv"
    mixed_frame(rows=400, seed=22).to_csv(new, index=False)
    monkeypatch.setattr(training.retrain, "holdout_score", lambda *_: 0.8125)

    result = retrain_cli("rti-tie", new)
    assert result.exit_code == 0, result.output
    assert "not promoted" in result.output and "ties with" in result.output
    assert production_model("rti-tie").tag == champion.tag  # type: ignore[union-attr]
    assert len(versions("rti-tie")) == 2  # the challenger stays in the store, not served


def test_respelled_labels_are_refused_and_nothing_is_registered(tmp_path: Path) -> None:
    champion = imported("rti-labels")
    frame = mixed_frame(rows=400, seed=23)
    frame.loc[frame.index[:7], "target"] = frame["target"].iloc[:7].str.upper()
    new = tmp_path / "new.csv"
    frame.to_csv(new, index=False)

    result = retrain_cli("rti-labels", new)
    assert result.exit_code == 2, result.output
    message = " ".join(result.output.split())
    assert "was not trained on" in message and "--allow-new-classes" in message
    assert "new.csv" in message
    assert versions("rti-labels") == [champion.metadata.version]
    assert kept_versions("rti-labels") == [champion.metadata.version]
    run = last_run("rti-labels")
    assert run is not None and run.last.status == "failed"


def test_a_crash_mid_run_registers_nothing_and_is_recorded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    champion = imported("rti-crash")
    new = tmp_path / "new.csv"
    mixed_frame(rows=400, seed=24).to_csv(new, index=False)

    def crash(*_: Any) -> float:
        raise ValueError("injected")

    with monkeypatch.context() as patch:
        patch.setattr(training.retrain, "holdout_score", crash)
        result = retrain_cli("rti-crash", new)
    assert result.exit_code == 1, result.output
    assert "nothing was registered" in " ".join(result.output.split())
    assert versions("rti-crash") == [champion.metadata.version]
    assert kept_versions("rti-crash") == [champion.metadata.version]
    run = last_run("rti-crash")
    assert run is not None and run.last.status == "failed" and "injected" in (run.last.error or "")

    again = retrain_cli("rti-crash", new)  # the rerun tries again, and says why
    assert again.exit_code == 0, again.output
    assert "the last run on this data failed" in " ".join(again.output.split())


def test_a_spec_trained_model_or_an_unknown_name_is_refused(tmp_path: Path) -> None:
    new = tmp_path / "new.csv"
    pd.DataFrame({"a": [1]}).to_csv(new, index=False)
    result = retrain_cli("rti-nothing", new)
    assert result.exit_code != 0 and "rti-nothing" in result.output


def test_a_skops_import_is_refitted_with_the_types_it_was_imported_with(tmp_path: Path) -> None:
    import skops.io

    fitted_on = mixed_frame(rows=60, seed=11)
    model = pipeline().fit(fitted_on.drop(columns="target"), fitted_on["target"])
    skops.io.dump(model, tmp_path / "model.skops")
    untrusted = skops.io.get_untrusted_types(file=tmp_path / "model.skops")
    mixed_frame(rows=120, seed=12).to_csv(tmp_path / "sample.csv", index=False)
    trust = [a for t in untrusted for a in ("--trust", t)]
    args = ["import", str(tmp_path / "model.skops"), "--name", "rti-skops"]
    args += ["--sample", str(tmp_path / "sample.csv"), "--target", "target", *trust]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    champion = production_model("rti-skops")
    assert champion is not None
    doc = KeptSource.model_validate_json(
        (source_dir("rti-skops", champion.metadata.version) / SOURCE_DOC).read_text()
    )
    assert (doc.format, doc.imported_as, doc.trusted) == ("skops", "skops", sorted(untrusted))
    assert (source_dir("rti-skops", champion.metadata.version) / doc.file).read_bytes() == (
        tmp_path / "model.skops"
    ).read_bytes()  # the file as it was imported

    new = tmp_path / "new.csv"
    mixed_frame(rows=400, seed=25).to_csv(new, index=False)
    result = retrain_cli("rti-skops", new)
    assert result.exit_code == 0, result.output
    challenger = next(m for m in list_models("rti-skops")[0] if m.tag != champion.tag)
    assert challenger.metadata.origin is not None
    assert challenger.metadata.origin.format == "skops"
    refit = KeptSource.model_validate_json(
        (source_dir("rti-skops", challenger.metadata.version) / SOURCE_DOC).read_text()
    )
    assert (refit.format, refit.trusted, refit.refitted_from) == (
        "skops",
        doc.trusted,
        champion.tag,
    )


def test_an_import_whose_source_cannot_be_written_registers_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import training.keep

    def full_disk(*_: Any) -> Path:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(training.keep, "write", full_disk)
    with pytest.raises(Exception, match="No space left on device"):
        imported("rti-atomic")
    assert versions("rti-atomic") == [] and kept_versions("rti-atomic") == []
