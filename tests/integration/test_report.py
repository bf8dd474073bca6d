"""Reports: two documents built from the store alone, self-contained, autoescaped, with the
right numbers in words in the client's and every technical fact in the technical one.

The sentences are checked against numbers the test works out itself from the metadata (the
confusion matrix) and the holdout document, not against the functions that wrote them. The
browser part opens each client report in Debian's Chromium through Playwright, with the
network cut off: every chart loads, the key sentences are visible and the page is not blank.
The printed pages (count, ink) are tests/e2e/test_report_pages.py's.
"""

from __future__ import annotations

import io
import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml

from kiln.artifact import HOLDOUT_FILE, Holdout, read_holdout
from kiln.errors import ArtifactError
from kiln.production import Decision, write_decision
from kiln.store import StoredModel
from tests.conftest import REPO, SPECS, run_kiln
from training.drift import file_drift
from training.report import (
    REPORT_FILE,
    TECHNICAL_FILE,
    Written,
    build_report,
    previous_model,
    render,
    write_report,
)
from training.report.blocks import Figure
from training.report.context import NO_HOLDOUT, Sources, client_document
from training.run import train
from training.settings import TrainingSettings
from training.spec import parse_spec

pytestmark = pytest.mark.integration

CHROMIUM = Path("/usr/bin/chromium")
# charts each client report holds: three "what the data says" band charts, then churn
# (binary, 600 test cases): confusion, ROC, precision-recall, calibration, importance; wine
# (3 classes, 54 test cases: no calibration): confusion, per-answer bars, importance;
# diabetes: estimates against truth, error sizes, importance
CHARTS = {"churn": 3 + 5, "wine": 3 + 3, "diabetes": 3 + 3}
# Names a client is not expected to know; the technical document has them all.
METRIC_WORDS = re.compile(r"ROC|AUC|\bF1\b|R²|log loss|precision|recall|PSI|sha256|\{\s*\"")


@pytest.fixture(scope="module")
def reports(
    served_models: dict[str, StoredModel], tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Written]:
    out = tmp_path_factory.mktemp("reports")
    return {name: write_report(stored, out / name) for name, stored in served_models.items()}


def _html(reports: dict[str, Written], name: str) -> str:
    return reports[name].client.read_text(encoding="utf-8")


def _technical(reports: dict[str, Written], name: str) -> str:
    return reports[name].technical.read_text(encoding="utf-8")


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
        for name in (REPORT_FILE, TECHNICAL_FILE):
            path = reports_dir / f"{meta.name}-{meta.version}" / name
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


def _wilson(successes: int, n: int) -> tuple[float, float]:
    """The 95% Wilson interval, worked out here (not with the report's function)."""
    z = 1.959963984540054
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return centre - half, centre + half


def _percents(text: str, pattern: str) -> tuple[float, ...]:
    found = re.search(pattern, text)
    assert found, pattern
    return tuple(float(g.replace(",", "")) for g in found.groups())


@pytest.mark.parametrize("name", ["churn", "wine", "diabetes"])
def test_reports_are_self_contained(reports: dict[str, Written], name: str) -> None:
    for html, charts in [(_html(reports, name), CHARTS[name]), (_technical(reports, name), 0)]:
        assert html.startswith("<!DOCTYPE html>")
        assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", html, re.I)
        assert not re.search(r"<(script|link|iframe|object|embed)\b", html, re.I)
        assert not re.search(r"url\(|@import", html, re.I)
        images = re.findall(r"<img\b[^>]*>", html)
        assert len(images) == charts
        for tag in images:
            src = re.search(r'src="([^"]*)"', tag)
            assert src and src.group(1).startswith("data:image/png;base64,"), tag[:80]
    client = _html(reports, name)
    assert re.findall(r'<section id="([a-z-]+)"', client) == [
        "summary",
        "evidence",
        "performance",
        "comparison",
    ]
    assert f'href="{TECHNICAL_FILE}"' in client  # relative: works wherever the folder goes
    technical = _technical(reports, name)
    assert f'href="{REPORT_FILE}"' in technical
    sections = re.findall(r'<section id="([a-z-]+)"', technical)
    assert sections[:2] == ["metrics", "gate"] and sections[-3:] == ["data", "model", "spec"]


@pytest.mark.parametrize("name", ["churn", "wine", "diabetes"])
def test_no_chart_in_a_client_report_has_a_legend_over_its_data_or_text_past_its_edge(
    served_models: dict[str, StoredModel], name: str
) -> None:
    """Checked on the charts as drawn for the real models (chartkit.Chart), not only on the
    chart functions' test data."""
    stored = served_models[name]
    doc = client_document(Sources(stored.metadata, _holdout(stored)), datetime.now(UTC))
    figures = [b for b in doc.performance if isinstance(b, Figure)]
    figures += [f.figure for f in doc.evidence if f.figure is not None]
    assert len(figures) == CHARTS[name]
    for shown in figures:
        assert (shown.key, shown.overlaps, shown.cut_off) == (shown.key, (), ())


@pytest.mark.parametrize("name", ["churn", "wine", "diabetes"])
def test_client_report_has_no_metric_names_json_or_appendix(
    reports: dict[str, Written], name: str
) -> None:
    text = _text(_html(reports, name))
    assert not METRIC_WORDS.search(text), METRIC_WORDS.search(text)
    assert "appendix" not in text.lower()
    assert METRIC_WORDS.search(_text(_technical(reports, name)))  # the pattern does find them


def test_binary_report_says_the_right_numbers(
    served_models: dict[str, StoredModel], reports: dict[str, Written]
) -> None:
    meta = served_models["churn"].metadata
    text = " ".join(_text(_html(reports, "churn")).split())
    classes = meta.classes
    assert classes is not None and meta.evaluation.confusion_matrix is not None
    cm = np.asarray(meta.evaluation.confusion_matrix)
    p = classes.index("yes")
    n = 1 - p
    total = int(cm.sum())
    right = int(np.trace(cm))
    point, low, high, cases = _percents(
        text, r"It is right (\d+)% of the time, between (\d+)% and (\d+)%, on ([\d,]+) cases"
    )
    assert cases == total and point == round(right / total * 100)
    assert low <= point <= high
    wl, wh = _wilson(right, total)
    assert (low, high) == (round(wl * 100), round(wh * 100))
    flagged, hit = int(cm[:, p].sum()), int(cm[p, p])
    point, low, high, said = _percents(
        text,
        r"Of 100 cases it flags as 'yes', (\d+) are \(between (\d+) and (\d+); it flagged "
        r"([\d,]+) test cases\)",
    )
    assert said == flagged and point == round(hit / flagged * 100) and low <= point <= high
    actual = int(cm[p, :].sum())
    point, low, high, held = _percents(
        text,
        r"It finds (\d+) of every 100 'yes' cases \(between (\d+) and (\d+); the test "
        r"held ([\d,]+) such cases\)",
    )
    assert held == actual and point == round(hit / actual * 100) and low <= point <= high
    assert f"it raised {cm[n, p]} false alarms (said 'yes' when the answer was 'no')" in text
    assert f"and missed {cm[p, n]} 'yes' cases." in text
    assert f"It learned from {meta.evaluation.train_rows:,} cases" in text
    assert "Only " not in text  # 600 test cases: no small-test warning
    assert "There is no earlier version of this model to compare with." in text
    # what the data says: a sentence and a chart for each evidence feature, as association
    holdout = _holdout(served_models["churn"])
    assert holdout.evidence
    for item in holdout.evidence:
        assert f'data-feature="{item.feature}"' in _html(reports, "churn")
    assert "not what causes what" in text
    assert "tenure (months)" in text and "tenure_months" not in text  # labels, not columns


def test_multiclass_report_says_the_right_numbers(
    served_models: dict[str, StoredModel], reports: dict[str, Written]
) -> None:
    meta = served_models["wine"].metadata
    text = " ".join(_text(_html(reports, "wine")).split())
    cm = np.asarray(meta.evaluation.confusion_matrix)
    assert meta.classes is not None
    total, right = int(cm.sum()), int(np.trace(cm))
    point, low, high, cases = _percents(
        text, r"It is right (\d+)% of the time, between (\d+)% and (\d+)%, on ([\d,]+) cases"
    )
    assert cases == total and low <= point <= high and low == round(_wilson(right, total)[0] * 100)
    wrong = total - right
    assert "it made no mistakes." in text if wrong == 0 else f"it made {wrong} mistake" in text
    assert f"Only {total} cases were kept aside to test it, which is few" in text  # 54 cases
    assert "that needs at least 300 test cases, and there are 54" in text  # no calibration
    assert 'data-chart="class-rates"' in _html(reports, "wine")
    assert 'data-chart="roc"' not in _html(reports, "wine")  # bars instead of curves
    assert "The data is scikit-learn's bundled wine data set." in text
    technical = " ".join(_text(_technical(reports, "wine")).split())
    for i, c in enumerate(meta.classes):  # the per-answer table, with training cases
        assert f"'{c}' " in technical and f"{cm[i, i]} of {cm[i].sum()}" in technical


def test_regression_report_says_the_right_numbers(
    served_models: dict[str, StoredModel], reports: dict[str, Written]
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
    assert "For each case, it estimates progression, a number." in text
    assert 'data-chart="errors"' in _html(reports, "diabetes")


@pytest.mark.parametrize("name", ["churn", "wine", "diabetes"])
def test_technical_document_holds_everything_the_client_dropped(
    served_models: dict[str, StoredModel], reports: dict[str, Written], name: str
) -> None:
    """The old appendix and data tables, fact by fact, in technical.html."""
    stored = served_models[name]
    meta, holdout = stored.metadata, _holdout(stored)
    text = " ".join(_text(_technical(reports, name)).split())
    ev, v, prov = meta.evaluation, meta.verification, meta.provenance
    for key, value in ev.metrics.items():  # every metric, beside the baseline
        assert f"({key})" in text and (value is None or f"{value:.4f}" in text)
        base = ev.baseline.get(key)
        assert base is None or f"{base:.4f}" in text
    for check in meta.gate.checks:
        assert f"{check.metric} {check.op} {check.threshold:g}" in text
    assert meta.onnx_sha256 in text and meta.estimator in text
    assert all(d.sha256 in text and f"{d.rows:,}" in text for d in meta.data)
    assert all(f"{k} {val}" in text for k, val in prov.libraries.items() if k != "python")
    assert f"python {prov.python}" in text
    assert (prov.git_commit or "unknown") in text
    assert f"{v.rows:,} rows, largest difference {v.max_abs_diff:.2g}" in text
    assert json.dumps(meta.estimator_params, sort_keys=True) in _text(_technical(reports, name))
    assert json.dumps(prov.spec, indent=2) in _text(_technical(reports, name))
    assert f"seed {ev.seed}" in text
    for feature in meta.features:  # the features table, with its missing counts
        stats = meta.feature_stats[feature.name]
        assert f"{feature.name} " in text and f"{stats.missing:,} (" in text
    for item in holdout.importance or []:  # importance in numbers
        assert f"{item.feature} {item.mean:.4f} {item.std:.4f}" in text
    if holdout.train_class_counts:
        assert all(f"{c:,}" in text for c in holdout.train_class_counts)


def test_templates_escape_every_value(served_models: dict[str, StoredModel]) -> None:
    """Autoescape: text from the spec or the data cannot become markup in either document."""
    meta = served_models["churn"].metadata
    spec = {**meta.provenance.spec, "description": "<script>alert(1)</script> & <b>co</b>"}
    hostile = meta.model_copy(
        update={"provenance": meta.provenance.model_copy(update={"spec": spec})}
    )
    documents = render(hostile, None, None)
    for html in (documents.client, documents.technical):
        assert "<script>" not in html and "<b>co</b>" not in html
        assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; &lt;b&gt;co&lt;/b&gt;" in html


def test_report_without_holdout_document_still_renders(
    served_models: dict[str, StoredModel],
) -> None:
    """Models registered before holdout.json: the charts that need it become a sentence."""
    for name, charts in [("churn", 1), ("diabetes", 0)]:  # churn: its confusion picture
        documents = render(served_models[name].metadata, None, None)
        assert NO_HOLDOUT in documents.client
        assert len(re.findall(r"<img\b", documents.client)) == charts
        assert 'id="evidence"' not in documents.client  # says nothing without evidence
        assert "depend most on" not in documents.client


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
    documents = build_report(second)  # from the store: previous_model() picks `first`
    client = " ".join(_text(documents.client).split())
    technical = " ".join(_text(documents.technical).split())
    new, old = (
        second.metadata.evaluation.metrics["roc_auc"],
        first.metadata.evaluation.metrics["roc_auc"],
    )
    assert new is not None and old is not None and new > old * 1.01
    assert (
        f"This version is better than the previous one ({first.metadata.version}): ROC AUC "
        f"{new:.3f} against {old:.3f}."
    ) in technical
    assert f"previous ({first.metadata.version}" in client
    assert first.metadata.version in client and "ROC" not in client
    accuracy = second.metadata.evaluation.metrics["accuracy"]
    assert accuracy is not None and f"right answers {accuracy:.0%}" in client
    assert "service" not in client  # no retraining decision yet: nothing said about it
    # the decision `kiln retrain` keeps beside the version reaches its report, in words first
    write_decision(
        second,
        Decision(
            promoted=False,
            challenger=second.tag,
            champion=first.tag,
            metric="accuracy",
            challenger_score=0.5,
            champion_score=0.9,
            reasons=["accuracy 0.500 is not above the champion's 0.900"],
        ),
    )
    client = " ".join(_text(build_report(second).client).split())
    section = client[client.index("Compared with the previous version") :]
    assert section.index("The new version was kept out of service because") < section.index(
        "right answers"
    )


def test_the_drift_section_is_written_only_with_new_data(
    served_models: dict[str, StoredModel], tmp_path: Path
) -> None:
    stored = served_models["churn"]
    assert 'id="changes"' not in build_report(stored).client  # the store knows no new data
    frame = pd.read_csv(REPO / "training" / "data" / "churn.csv")
    frame["tenure_months"] *= 3
    frame.to_csv(tmp_path / "tripled.csv", index=False)
    drift = file_drift(stored, [tmp_path / "tripled.csv"])
    documents = build_report(stored, drift=drift)
    page = documents.client
    assert page.index('id="comparison"') < page.index('id="changes"')  # after the four
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
    technical = " ".join(_text(documents.technical).split())
    assert "drift score" in technical and "population stability index" in technical
    assert f"tenure_months {tenure.psi:.3f} shifted" in technical


# -- the command ------------------------------------------------------------------------------


def test_cli_writes_the_report(served_models: dict[str, StoredModel], tmp_path: Path) -> None:
    tag = served_models["diabetes"].tag
    done = run_kiln("report", tag, "--out", str(tmp_path / "out"))
    assert done.returncode == 0, done.stderr
    printed = " ".join(done.stdout.split())
    for name in (REPORT_FILE, TECHNICAL_FILE):
        path = tmp_path / "out" / name
        assert path.is_file() and str(path) in printed
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
    reports: dict[str, Written],
    name: str,
    tmp_path: Path,
) -> None:
    from PIL import Image

    context = browser.new_context(viewport={"width": 1000, "height": 1200}, offline=True)
    requested: list[str] = []
    context.on("request", lambda request: requested.append(request.url))
    page = context.new_page()
    try:
        page.goto(reports[name].client.resolve().as_uri(), wait_until="load")
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
    for name in ("report.pdf", "technical.pdf"):
        pdf = (tmp_path / name).read_bytes()
        assert pdf.startswith(b"%PDF")
        pages = len(re.findall(rb"/Type\s*/Page\b", pdf))
        assert pages > 1 or len(pdf) > 20_000, (pages, len(pdf))
    assert not list(tmp_path.glob(".*.print.html"))  # the copies printed from are gone


def test_missing_chromium_is_a_clear_error(
    reports: dict[str, Written], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from training.report import ReportError, write_pdf

    monkeypatch.setenv("KILN_CHROMIUM", str(tmp_path / "no-chromium"))
    with pytest.raises(ReportError, match=r"needs Chromium.*apt-get install chromium"):
        write_pdf(reports["churn"].client, tmp_path / "x.pdf")
