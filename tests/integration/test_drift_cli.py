"""`kiln drift`: a file against a model's training data, in the terminal, as JSON and in the
report; the same numbers for a model that has no stored reference (schema 1 and 2).

The shifted file is the churn training file with every tenure tripled and a quarter of the
plans a category training never saw ("satellite"): those two features must be "shifted",
every other one "stable", and the counts of the input checks exact.
"""

from __future__ import annotations

import html
import json
import re
from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest

from kiln.store import StoredModel
from tests.conftest import REPO, run_kiln
from training.drift import file_drift

pytestmark = pytest.mark.integration

CHURN_CSV = REPO / "training" / "data" / "churn.csv"
SHIFTED_FEATURES = {"tenure_months", "plan"}


@pytest.fixture(scope="module")
def shifted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    frame = pd.read_csv(CHURN_CSV)
    frame["tenure_months"] *= 3
    frame.loc[frame.index % 4 == 0, "plan"] = "satellite"
    path = tmp_path_factory.mktemp("drift") / "churn-shifted.csv"
    frame.to_csv(path, index=False)
    return path


def _section(report: Path) -> str:
    text = report.read_text(encoding="utf-8")
    start = text.index('<section id="changes">')
    return text[start : text.index("</section>", start)]


def _words(fragment: str) -> str:
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", fragment)).split())


def test_the_training_file_itself_is_stable(
    served_models: dict[str, StoredModel], tmp_path: Path
) -> None:
    tag = served_models["churn"].tag
    done = run_kiln("drift", tag, "--data", str(CHURN_CSV), "--report", str(tmp_path))
    assert done.returncode == 0, done.stderr
    rows = [line for line in done.stdout.splitlines() if line.startswith("│")]
    assert len(rows) == 10  # nine features and the answers
    assert all("stable" in line for line in rows), done.stdout
    assert "input checks: every row like the training data" in done.stdout
    section = _section(tmp_path / "report.html")
    assert 'data-key="no-drift"' in section and "<img" not in section
    assert "every one of its 9 features is spread as it was in training" in _words(section)

    body = json.loads(run_kiln("drift", tag, "--data", str(CHURN_CSV), "--json").stdout)
    assert body["rows"] == 3_000 and body["refused"] == 0 and body["basis"] == "reference"
    assert all(f["psi"] < 0.01 for f in body["features"]), body["features"]
    assert body["prediction"]["psi"] < 0.01 and body["checks"] == []


def test_a_shifted_file_names_the_shifted_features(
    served_models: dict[str, StoredModel], shifted: Path, tmp_path: Path
) -> None:
    tag = served_models["churn"].tag
    done = run_kiln("drift", tag, "--data", str(shifted), "--report", str(tmp_path))
    assert done.returncode == 0, done.stderr  # drift is a finding, not an error
    table = {
        cells[0]: cells[1:]
        for line in done.stdout.splitlines()
        if line.startswith("│") and (cells := [c.strip() for c in line.strip("│").split("│")])[0]
    }
    assert {name for name, cells in table.items() if cells[1] == "shifted"} >= SHIFTED_FEATURES
    for name in ("monthly_charge", "data_gb", "support_calls", "age", "contract", "region"):
        assert table[name][1] == "stable", (name, table[name])
    assert "hold a category never seen in training, against 0% in training" in table["plan"][2]
    assert re.search(r"of new rows are \S+ or above, against 10% in training", done.stdout)
    assert "plan unseen category 750 rows" in done.stdout  # every fourth of 3,000 rows

    body = json.loads(run_kiln("drift", tag, "--data", str(shifted), "--json").stdout)
    ranked = [f["feature"] for f in body["features"]]
    assert set(ranked[:2]) == SHIFTED_FEATURES  # ordered by PSI
    psi = [f["psi"] for f in body["features"]]
    assert psi == sorted(psi, reverse=True)
    plan = next(f for f in body["features"] if f["feature"] == "plan")
    other = next(b for b in plan["bins"] if b["bin"] == "other")
    assert other["training"] == 0 and other["new"] == pytest.approx(0.25)
    assert {"feature": "plan", "reason": "unseen_category", "rows": 750} in body["checks"]

    section = _section(tmp_path / "report.html")
    words = _words(section)
    assert "Has the data changed since training?" in words
    for name in SHIFTED_FEATURES:
        assert f'data-key="drift-{name}"' in section
        assert f"{name} has shifted:" in words
    charts = re.findall(r'<img src="data:image/png;base64,', section)
    answers = body["prediction"]["verdict"] in ("shifted", "some change")
    assert len(charts) == len(SHIFTED_FEATURES) + answers  # one per drifting feature


def test_bad_files_and_models_are_clear_errors(
    served_models: dict[str, StoredModel], tmp_path: Path
) -> None:
    tag = served_models["churn"].tag
    missing = run_kiln("drift", tag, "--data", str(tmp_path / "none.csv"))
    assert missing.returncode == 2 and "file not found" in missing.stderr
    other = tmp_path / "other.csv"
    other.write_text("a,b\n1,2\n")
    wrong = run_kiln("drift", tag, "--data", str(other))
    assert wrong.returncode == 2 and "no columns 'tenure_months'" in wrong.stderr
    unknown = run_kiln("drift", "no-such-model", "--data", str(CHURN_CSV))
    assert unknown.returncode == 3 and "no-such-model" in unknown.stderr
    assert "Traceback" not in missing.stderr + wrong.stderr + unknown.stderr


def test_rows_the_value_rules_refuse_are_counted_not_binned(
    served_models: dict[str, StoredModel], tmp_path: Path
) -> None:
    frame = pd.read_csv(CHURN_CSV, dtype={"age": str})
    frame.loc[:9, "age"] = "n/a"
    path = tmp_path / "bad-ages.parquet"
    frame.to_parquet(path)
    result = file_drift(served_models["churn"], [path, CHURN_CSV])
    assert result.rows == 6_000 and result.refused == 10
    assert all(f.rows == 5_990 for f in result.features)


def test_a_model_without_a_stored_reference_uses_its_training_statistics(
    served_models: dict[str, StoredModel], shifted: Path
) -> None:
    stored = served_models["churn"]
    older = replace(stored, metadata=stored.metadata.model_copy(update={"reference": None}))
    same = file_drift(older, [CHURN_CSV])
    assert same.basis == "statistics"
    assert all(f.verdict == "stable" for f in same.features), [f.as_dict() for f in same.features]
    moved = file_drift(older, [shifted])
    assert {f.feature for f in moved.features if f.verdict == "shifted"} == SHIFTED_FEATURES
    assert moved.prediction is not None  # from holdout.json
