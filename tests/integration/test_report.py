"""Client reports: built from the store alone, self-contained, with the right numbers in words.

The sentences are checked against numbers the test works out itself from the metadata (the
confusion matrix) and the holdout document, not against the functions that wrote them. The
browser part opens each report in Debian's Chromium through Playwright, with the network cut
off: every chart loads, the key sentences are visible and the page is not blank.
"""

from __future__ import annotations

import io
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml

from kiln.artifact import HOLDOUT_FILE, Holdout, read_holdout
from kiln.errors import ArtifactError
from kiln.store import StoredModel
from tests.conftest import REPO, SPECS, run_kiln
from training.drift import file_drift
from training.report import (
    REPORT_FILE,
    build_report,
    previous_model,
    render_report,
    write_report,
)
from training.report.render import NO_HOLDOUT
from training.run import train
from training.settings import TrainingSettings
from training.spec import parse_spec

pytestmark = pytest.mark.integration

CHROMIUM = Path("/usr/bin/chromium")
# charts each report holds: confusion, class balance, ROC, precision-recall, calibration,
# importance (classifiers); predicted vs actual, residuals, importance (regressors)
CHARTS = {"churn": 6, "wine": 6, "diabetes": 3}


@pytest.fixture(scope="module")
def reports(
    served_models: dict[str, StoredModel], tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("reports")
    return {name: write_report(stored, out / name) for name, stored in served_models.items()}


def _html(reports: dict[str, Path], name: str) -> str:
    return reports[name].read_text(encoding="utf-8")


def _text(html: str) -> str:
    """The page's text, tags removed and entities decoded (what a reader sees)."""
    import html as html_lib

    return html_lib.unescape(re.sub(r"<[^>]+>", " ", html))


def _holdout(stored: StoredModel) -> Holdout:
    holdout = read_holdout(stored.path)
    assert holdout is not None
    return holdout


def _top_features(holdout: Holdout, n: int = 3) -> list[str]:
    assert holdout.importance
    ranked = sorted(holdout.importance, key=lambda f: -f.mean)
    return [f.feature for f in ranked if f.mean > 0][:n]


# -- what training stores ---------------------------------------------------------------------


def test_training_writes_a_report_for_each_model(served_models: dict[str, StoredModel]) -> None:
    reports_dir = TrainingSettings().reports_dir
    assert reports_dir is not None
    for stored in served_models.values():
        meta = stored.metadata
        path = reports_dir / f"{meta.name}-{meta.version}" / REPORT_FILE
        assert path.is_file(), path
        assert f"<h1>{meta.name}</h1>" in path.read_text(encoding="utf-8")


@pytest.mark.parametrize("name", ["churn", "wine", "diabetes"])
def test_holdout_document_matches_the_metadata(
    served_models: dict[str, StoredModel], name: str
) -> None:
    stored = served_models[name]
    meta, holdout = stored.metadata, _holdout(stored)
    assert (stored.path / HOLDOUT_FILE).is_file()
    assert holdout.rows == holdout.holdout_rows == meta.evaluation.holdout_rows
    assert len(holdout.y_true) == len(holdout.y_pred) == holdout.rows
    assert {f.feature for f in holdout.importance or []} == {f.name for f in meta.features}
    assert holdout.importance_repeats == 5 and holdout.importance_rows <= 2000
    if meta.classes is None:
        assert holdout.scores is None and holdout.importance_scoring == "r2"
        mae = np.mean(np.abs(np.asarray(holdout.y_true) - np.asarray(holdout.y_pred)))
        assert mae == pytest.approx(meta.evaluation.metrics["mae"], rel=1e-9)
        return
    assert holdout.classes == meta.classes
    assert holdout.score_kind == "probabilities"
    assert np.asarray(holdout.scores).shape == (holdout.rows, len(meta.classes))
    assert holdout.importance_scoring == ("roc_auc" if len(meta.classes) == 2 else "accuracy")
    index = {c: i for i, c in enumerate(meta.classes)}
    matrix = np.zeros((len(index), len(index)), dtype=int)
    for true, said in zip(holdout.y_true, holdout.y_pred, strict=True):
        matrix[index[true], index[said]] += 1
    assert matrix.tolist() == meta.evaluation.confusion_matrix
    assert sum(holdout.train_class_counts or []) == meta.evaluation.train_rows


def test_read_holdout_is_none_for_older_models_and_refuses_unknown_versions(
    served_models: dict[str, StoredModel], tmp_path: Path
) -> None:
    assert read_holdout(tmp_path) is None  # a model registered before holdout.json existed
    raw = json.loads((served_models["wine"].path / HOLDOUT_FILE).read_text())
    (tmp_path / HOLDOUT_FILE).write_text(json.dumps({**raw, "schema_version": 99}))
    with pytest.raises(ArtifactError, match=r"holdout schema version 99 .* newer Kiln"):
        read_holdout(tmp_path, "wine:x")
    (tmp_path / HOLDOUT_FILE).write_text("{not json")
    with pytest.raises(ArtifactError, match="unreadable"):
        read_holdout(tmp_path, "wine:x")


# -- the HTML -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["churn", "wine", "diabetes"])
def test_report_is_self_contained(reports: dict[str, Path], name: str) -> None:
    html = _html(reports, name)
    assert html.startswith("<!DOCTYPE html>")
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", html, re.I)
    assert not re.search(r"<(script|link|iframe|object|embed)\b", html, re.I)
    assert not re.search(r"url\(|@import", html, re.I)
    images = re.findall(r"<img\b[^>]*>", html)
    assert len(images) == CHARTS[name]
    for tag in images:
        src = re.search(r'src="([^"]*)"', tag)
        assert src and src.group(1).startswith("data:image/png;base64,"), tag[:80]
    sections = re.findall(r'<section id="([a-z]+)"', html)
    assert sections == ["summary", "comparison", "performance", "drivers", "data", "appendix"]


def test_binary_report_says_the_right_numbers(
    served_models: dict[str, StoredModel], reports: dict[str, Path]
) -> None:
    meta = served_models["churn"].metadata
    text = _text(_html(reports, "churn"))
    classes = meta.classes
    assert classes is not None and meta.evaluation.confusion_matrix is not None
    cm = np.asarray(meta.evaluation.confusion_matrix)
    p = classes.index("yes")
    n = 1 - p
    total = int(cm.sum())
    precision = cm[p, p] / cm[:, p].sum()
    recall = cm[p, p] / cm[p, :].sum()
    accuracy = np.trace(cm) / total
    majority = classes[int(np.argmax(cm.sum(axis=1)))]
    base = cm.sum(axis=1).max() / total
    assert f"Of 100 cases it flags as 'yes', {precision * 100:.0f} are." in text
    assert f"It finds {recall * 100:.0f} of every 100 'yes' cases." in text
    assert (
        f"It is right {accuracy:.0%} of the time; always guessing the most common answer "
        f"('{majority}') would be right {base:.0%}."
    ) in text
    assert f"Tested on {total} cases it had not seen in training" in text
    assert f"it raised {cm[n, p]} false alarms (said 'yes' when the answer was 'no')" in text
    assert f"and missed {cm[p, n]} 'yes' cases." in text
    a, b, c = _top_features(_holdout(served_models["churn"]))
    assert f"Its answers depend most on {a}, then {b} and {c}." in text
    assert f"It learned from {meta.evaluation.train_rows:,} cases" in text
    worst = max(meta.feature_stats, key=lambda f: meta.feature_stats[f].missing)
    assert f"the most is {worst} (" in text  # churn.csv has missing values
    assert "There is no earlier version of this model to compare with." in text


def test_multiclass_report_says_the_right_numbers(
    served_models: dict[str, StoredModel], reports: dict[str, Path]
) -> None:
    meta = served_models["wine"].metadata
    text = _text(_html(reports, "wine"))
    cm = np.asarray(meta.evaluation.confusion_matrix)
    assert meta.classes is not None
    accuracy = np.trace(cm) / cm.sum()
    majority = meta.classes[int(np.argmax(cm.sum(axis=1)))]
    base = cm.sum(axis=1).max() / cm.sum()
    assert (
        f"It is right {accuracy:.0%} of the time; always guessing the most common answer "
        f"('{majority}') would be right {base:.0%}."
    ) in text
    wrong = int(cm.sum() - np.trace(cm))
    assert "it made no mistakes." in text if wrong == 0 else f"it made {wrong} mistake" in text
    for i, c in enumerate(meta.classes):  # the per-answer table
        assert f"'{c}' {cm[i].sum()} {cm[i, i]} of {cm[i].sum()}" in " ".join(text.split())
    a, b, c = _top_features(_holdout(served_models["wine"]))
    assert f"Its answers depend most on {a}, then {b} and {c}." in text
    assert "The data is scikit-learn's bundled wine data set." in text


def test_regression_report_says_the_right_numbers(
    served_models: dict[str, StoredModel], reports: dict[str, Path]
) -> None:
    stored = served_models["diabetes"]
    meta, holdout = stored.metadata, _holdout(stored)
    text = _text(_html(reports, "diabetes"))
    errors = np.abs(np.asarray(holdout.y_true, float) - np.asarray(holdout.y_pred, float))
    base_mae = meta.evaluation.baseline["mae"]
    assert base_mae is not None
    assert (
        f"On average its estimate is {errors.mean():.3g} away from the true value; guessing "
        f"the average every time would be {base_mae:.3g} away."
    ) in text
    assert f"Half of its estimates are within {np.median(errors):.3g} of the true value" in text
    a, b, c = _top_features(holdout)
    assert f"Its answers depend most on {a}, then {b} and {c}." in text
    assert "For each case, it estimates progression, a number." in text


def test_appendix_has_every_metric_parameter_version_and_fingerprint(
    served_models: dict[str, StoredModel], reports: dict[str, Path]
) -> None:
    meta = served_models["churn"].metadata
    text = _text(_html(reports, "churn"))
    for key, value in meta.evaluation.metrics.items():
        assert f"{key}" in text and (value is None or f"{value:.4f}" in text)
    assert meta.onnx_sha256 in text
    assert all(d.sha256 in text for d in meta.data)
    assert all(f"{k} {v}" in text for k, v in meta.provenance.libraries.items() if k != "python")
    assert '"n_estimators": 200' in text
    assert (meta.provenance.git_commit or "unknown") in text


def test_report_without_holdout_document_still_renders(
    served_models: dict[str, StoredModel],
) -> None:
    """Models registered before holdout.json: the charts that need it become a sentence."""
    for name, charts in [("churn", 2), ("diabetes", 0)]:
        html = render_report(served_models[name].metadata, None, None)
        assert NO_HOLDOUT in html
        assert len(re.findall(r"<img\b", html)) == charts
        assert "depend most on" not in html


def test_comparison_with_the_previous_version() -> None:
    raw = yaml.safe_load((SPECS / "wine.yaml").read_text())
    raw.update(name="wine-report-history", gate=[])
    weak_estimator = {
        "estimator": {
            "type": "RandomForestClassifier",
            "params": {"n_estimators": 1, "max_depth": 1},
        }
    }
    first = train(parse_spec({**raw, **weak_estimator}), spec_path=SPECS / "wine.yaml")
    rejected = train(
        parse_spec({**raw, **weak_estimator, "gate": ["roc_auc >= 0.99"]}),
        spec_path=SPECS / "wine.yaml",
    )
    second = train(parse_spec(raw), spec_path=SPECS / "wine.yaml")
    assert previous_model(first) is None
    assert previous_model(second) == first  # the rejected one in between is skipped
    assert rejected.stage.value == "rejected"
    text = _text(build_report(second))  # from the store: previous_model() picks `first`
    new, old = (
        second.metadata.evaluation.metrics["roc_auc"],
        first.metadata.evaluation.metrics["roc_auc"],
    )
    assert new is not None and old is not None and new > old * 1.01
    assert (
        f"This version is better than the previous one ({first.metadata.version}): ROC AUC "
        f"{new:.3f} against {old:.3f}."
    ) in text
    assert f"previous ({first.metadata.version}" in text


def test_the_drift_section_is_written_only_with_new_data(
    served_models: dict[str, StoredModel], tmp_path: Path
) -> None:
    stored = served_models["churn"]
    assert 'id="changes"' not in build_report(stored)  # the store alone knows no new data
    frame = pd.read_csv(REPO / "training" / "data" / "churn.csv")
    frame["tenure_months"] *= 3
    frame.to_csv(tmp_path / "tripled.csv", index=False)
    drift = file_drift(stored, [tmp_path / "tripled.csv"])
    page = build_report(stored, drift=drift)
    assert page.index('id="summary"') < page.index('id="changes"') < page.index('id="comparison"')
    section = page[
        page.index('id="changes"') : page.index("</section>", page.index('id="changes"'))
    ]
    text = " ".join(_text(section).split())
    tenure = next(f for f in drift.features if f.feature == "tenure_months")
    i = int(np.argmax(np.abs(np.subtract(tenure.actual, tenure.expected))))
    assert tenure.labels[i].startswith(">= ")  # tripled: the top decile took the most
    top = tenure.labels[i].removeprefix(">= ")
    assert (
        f"tenure_months has shifted: {tenure.actual[i]:.0%} of new cases are {top} or above, "
        f"against {tenure.expected[i]:.0%} in training."
    ) in text
    drifting = [f.feature for f in drift.features if f.psi >= 0.1]
    assert drifting[0] == "tenure_months"
    answers = drift.prediction is not None and drift.prediction.psi >= 0.1
    assert section.count("<img ") == len(drifting) + answers
    assert "drift score" in text and "population stability index" in text


# -- the command ------------------------------------------------------------------------------


def test_cli_writes_the_report(served_models: dict[str, StoredModel], tmp_path: Path) -> None:
    tag = served_models["diabetes"].tag
    done = run_kiln("report", tag, "--out", str(tmp_path / "out"))
    assert done.returncode == 0, done.stderr
    path = tmp_path / "out" / REPORT_FILE
    assert path.is_file() and str(path) in " ".join(done.stdout.split())
    assert "<h1>diabetes</h1>" in path.read_text(encoding="utf-8")
    missing = run_kiln("report", "no-such-model", "--out", str(tmp_path / "none"))
    assert missing.returncode == 3 and "no-such-model" in missing.stderr


# -- in a real browser ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing: install Debian's chromium (apt-get install chromium)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="Playwright is not installed")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM),
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        try:
            yield browser
        finally:
            browser.close()


@pytest.mark.e2e
@pytest.mark.slow
@pytest.mark.parametrize("name", ["churn", "wine", "diabetes"])
def test_report_renders_in_chromium(
    browser: Any,
    served_models: dict[str, StoredModel],
    reports: dict[str, Path],
    name: str,
    tmp_path: Path,
) -> None:
    from PIL import Image

    context = browser.new_context(viewport={"width": 1000, "height": 1200}, offline=True)
    requested: list[str] = []
    context.on("request", lambda request: requested.append(request.url))
    page = context.new_page()
    try:
        page.goto(reports[name].resolve().as_uri(), wait_until="load")
        images = page.evaluate(
            "[...document.images].map(i => ({ok: i.complete, width: i.naturalWidth}))"
        )
        assert len(images) == CHARTS[name]
        assert all(i["ok"] and i["width"] > 0 for i in images), images
        sentences = page.locator("li.sentence")
        assert sentences.count() >= 3
        for i in range(sentences.count()):
            assert sentences.nth(i).is_visible()
        key = {
            "churn": "Of 100 cases it flags as 'yes'",
            "wine": "It is right",
            "diabetes": "On average its estimate is",
        }[name]
        assert page.get_by_text(key).first.is_visible()
        assert page.locator("h1").inner_text() == name
        png = page.screenshot(full_page=True)
    finally:
        context.close()
    assert {u.split(":", 1)[0] for u in requested} <= {"file", "data"}, requested
    pixels = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))
    assert pixels.shape[0] > 2000  # the whole report, not an empty page
    assert (pixels != pixels[0, 0]).any(axis=2).mean() > 0.05  # not blank: >5% differ from white
    (tmp_path / f"{name}.png").write_bytes(png)


@pytest.mark.e2e
@pytest.mark.slow
def test_cli_prints_a_pdf(served_models: dict[str, StoredModel], tmp_path: Path) -> None:
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing: install Debian's chromium (apt-get install chromium)")
    done = run_kiln("report", served_models["churn"].tag, "--out", str(tmp_path), "--pdf")
    assert done.returncode == 0, done.stderr
    pdf = (tmp_path / "report.pdf").read_bytes()
    assert pdf.startswith(b"%PDF")
    pages = len(re.findall(rb"/Type\s*/Page\b", pdf))
    assert pages > 1 or len(pdf) > 20_000, (pages, len(pdf))


def test_missing_chromium_is_a_clear_error(
    reports: dict[str, Path], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from training.report import ReportError, write_pdf

    monkeypatch.setenv("KILN_CHROMIUM", str(tmp_path / "no-chromium"))
    with pytest.raises(ReportError, match=r"needs Chromium.*apt-get install chromium"):
        write_pdf(reports["churn"], tmp_path / "x.pdf")
