"""Plain-language sentences built from a model's numbers, for a reader who is not technical.

Every sentence function is small and pure: numbers in, one sentence out, so each is
unit-tested with the numbers a reader would check it against. Class names are quoted ('yes');
rows of the data are called "cases", whatever the model is about; features are called by
their labels (training/report/words.py). No metric name (ROC AUC, F1) reaches the client's
document: rates are said as "right 99% of the time", with their 95% interval and the number
of cases they rest on.

The client document's sections, as ``(key, text)`` pairs (the keys are for templates and
tests), come from three functions:

- :func:`plain_words` (*In plain words*): what it predicts, how often it is right and how sure
  that is, its mistakes, what its answers depend on; a warning when the test set is small.
- :func:`training.report.datawords.data_says` (*What the data says*, in its own module): one
  sentence per feature of the holdout document's ``evidence``, said as an association in the
  training data, never as a cause.
- :func:`comparison_words` (*Compared with the previous version*): whether the new version was
  put into service or kept out of it, and why (the decision `kiln retrain` wrote), then how
  the two compare.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

import numpy as np

from training.report.words import (
    day,
    feature_label,
    join_words,
    number,
    percent,
    plural,
    quoted,
    rate_interval,
    readable_name,
)
from training.spec import LOWER_IS_BETTER

if TYPE_CHECKING:
    from kiln.artifact import Holdout, ModelMetadata
    from kiln.production import Decision

__all__ = [
    "ITEMS",
    "METRIC_NAMES",
    "SMALL_TEST",
    "accuracy_sentence",
    "comparison_sentence",
    "comparison_words",
    "count",
    "data_sentence",
    "decision_sentence",
    "drift_sentence",
    "drivers_sentence",
    "error_sentence",
    "files_sentence",
    "join_words",
    "majority_class",
    "missing_sentence",
    "mistakes_sentence",
    "no_drift_sentence",
    "number",
    "per_class_counts",
    "plain_words",
    "precision_sentence",
    "purpose_sentence",
    "quoted",
    "recall_sentence",
    "small_test_sentence",
    "spread_sentence",
    "versions_sentence",
]

ITEMS = "cases"
SMALL_TEST = 100  # fewer test cases than this, and the report says its rates are rough
METRIC_NAMES = {
    "accuracy": "accuracy",
    "balanced_accuracy": "balanced accuracy",
    "precision": "precision",
    "recall": "recall",
    "f1": "F1",
    "roc_auc": "ROC AUC",
    "log_loss": "log loss",
    "mae": "mean absolute error",
    "rmse": "root mean squared error",
    "r2": "R²",
}


count = plural  # the name the sections have used: ``count(2, "case")`` -> "2 cases"


def _hundred(share: float) -> str:
    """A share as "of every 100": 98, or 99.6 (never 100 unless it is all)."""
    return percent(share).removesuffix("%")


def _between(share: float, cases: int) -> str:
    """The 95% interval of a rate measured on ``cases`` cases, per 100: "between 69 and 80"."""
    low, high = rate_interval(round(share * cases), cases)
    return f"between {_hundred(low)} and {_hundred(high)}"


def majority_class(classes: Sequence[Any], counts: Sequence[int]) -> Any:
    """The most common class (the first one on a tie, as scikit-learn's DummyClassifier)."""
    return classes[max(range(len(classes)), key=lambda i: (counts[i], -i))]


def per_class_counts(matrix: Sequence[Sequence[int]]) -> list[int]:
    """Cases of each true class: the row sums of a confusion matrix."""
    return [int(sum(row)) for row in matrix]


def purpose_sentence(task: str, target: str, classes: Sequence[Any] | None) -> str:
    if task == "regression" or not classes:
        return f"For each case, it estimates {target}, a number."
    answers = join_words([quoted(c) for c in classes], last="or")
    return f"For each case, it predicts {target}: {answers}."


def _tested_on(n: int, imported: bool) -> str:
    return (
        f"the {plural(n, 'sample case')} given at import"
        if imported
        else (f"{plural(n, 'case')} kept aside")
    )


def accuracy_sentence(
    accuracy: float,
    baseline: float,
    majority: Any,
    right: int | None = None,
    total: int | None = None,
    imported: bool = False,
) -> str:
    """How often it is right, against always guessing the most common answer; with ``right``
    of ``total`` test cases, also the 95% interval and the number of cases."""
    guess = (
        f"always guessing the most common answer ({quoted(majority)}) would be right "
        f"{percent(baseline)}"
    )
    if right is None or not total:
        return f"It is right {percent(accuracy)} of the time; {guess}."
    low, high = rate_interval(right, total)
    return (
        f"It is right {percent(right / total)} of the time, between {percent(low)} and "
        f"{percent(high)}, on {_tested_on(total, imported)}; {guess}."
    )


def precision_sentence(
    precision: float, positive: Any, items: str = ITEMS, flagged: int | None = None
) -> str:
    """Of 100 cases it flags, how many are; with ``flagged`` (the cases it flagged in the
    test), the 95% interval."""
    said = f"Of 100 {items} it flags as {quoted(positive)}, {_hundred(precision)} are"
    if not flagged:
        return said + "."
    return f"{said} ({_between(precision, flagged)}; it flagged {plural(flagged, 'test case')})."


def recall_sentence(
    recall: float, positive: Any, items: str = ITEMS, actual: int | None = None
) -> str:
    """How many of every 100 ``positive`` cases it finds; with ``actual`` (the positive test
    cases), the 95% interval."""
    said = f"It finds {_hundred(recall)} of every 100 {quoted(positive)} {items}"
    if not actual:
        return said + "."
    return f"{said} ({_between(recall, actual)}; the test held {plural(actual, 'such case')})."


def small_test_sentence(cases: int, interval: tuple[float, float] | None = None) -> str | None:
    """A warning when fewer than ``SMALL_TEST`` cases were kept aside: what that means."""
    if cases >= SMALL_TEST:
        return None
    if interval is not None:
        width = round((interval[1] - interval[0]) * 100)
        spread = f"the true rate on new cases could lie anywhere in a range {width} points wide"
    else:
        spread = "its errors on new cases could well be larger or smaller than these"
    return (
        f"Only {plural(cases, 'case')} {'was' if cases == 1 else 'were'} kept aside to test "
        f"it, which is few: {spread}. "
        "Read these figures as a rough guide; more data would make them surer."
    )


def mistakes_sentence(
    matrix: Sequence[Sequence[int]],
    classes: Sequence[Any],
    positive: Any = None,
    imported: bool = False,
) -> str:
    """What its mistakes on the holdout are, in counts: false alarms and misses (binary), or
    the most frequent confusion (several classes).

    ``imported``: the model was fitted elsewhere and measured on the sample given at import,
    which it may have learned from; the sentence says so instead of claiming a holdout.
    """
    total = sum(sum(row) for row in matrix)
    seen = (
        f"Checked on the {count(total, 'sample case')} given at import (Kiln does not know "
        "whether the model saw them in training)"
        if imported
        else f"Tested on {count(total, 'case')} it had not seen in training"
    )
    if len(classes) == 2 and positive is not None:
        p = classes.index(positive)
        n = 1 - p
        alarms, misses = int(matrix[n][p]), int(matrix[p][n])
        return (
            f"{seen}, it raised {count(alarms, 'false alarm')} (said {quoted(positive)} when "
            f"the answer was {quoted(classes[n])}) and missed "
            f"{count(misses, f'{quoted(positive)} case')}."
        )
    wrong = total - sum(int(matrix[i][i]) for i in range(len(classes)))
    if wrong == 0:
        return f"{seen}, it made no mistakes."
    k = len(classes)
    times, true, said = max((int(matrix[i][j]), i, j) for i in range(k) for j in range(k) if i != j)
    mix_up = f"answering {quoted(classes[said])} when the answer was {quoted(classes[true])}"
    if wrong == 1:
        return f"{seen}, it made 1 mistake: {mix_up}."
    if times == 1:  # no mix-up happened twice: none is "the most common"
        return f"{seen}, it made {count(wrong, 'mistake')}, each a different mix-up."
    return (
        f"{seen}, it made {count(wrong, 'mistake')}; the most common was {mix_up} "
        f"({count(times, 'time')})."
    )


def error_sentence(mae: float, baseline_mae: float) -> str:
    return (
        f"On average its estimate is {number(mae)} away from the true value; guessing the "
        f"average every time would be {number(baseline_mae)} away."
    )


def spread_sentence(median_error: float, p90_error: float) -> str:
    return (
        f"Half of its estimates are within {number(median_error)} of the true value, "
        f"and 9 in 10 within {number(p90_error)}."
    )


def drivers_sentence(importance: Sequence[tuple[str, float]]) -> str:
    """The top three features by (permutation) importance; only those that matter at all."""
    top = [name for name, value in sorted(importance, key=lambda f: -f[1]) if value > 0][:3]
    if not top:
        return "No single feature changes its answers much on its own."
    if len(top) == 1:
        return f"Its answers depend mostly on {top[0]}."
    return f"Its answers depend most on {top[0]}, then {join_words(top[1:])}."


def comparison_sentence(metric: str, new: float, old: float, previous_version: str) -> str:
    """Whether this version beats the previous one on ``metric`` (within 1%: as good)."""
    name = METRIC_NAMES.get(metric, metric)
    figures = f"{name} {new:.3f} against {old:.3f}"
    if abs(new - old) <= 0.01 * abs(old):
        verdict = "about as good as"
    elif (new < old) == (metric in LOWER_IS_BETTER):
        verdict = "better than"
    else:
        verdict = "worse than"
    return f"This version is {verdict} the previous one ({previous_version}): {figures}."


def data_sentence(train_rows: int, holdout_rows: int, items: str = ITEMS) -> str:
    return (
        f"It learned from {train_rows:,} {items} and was tested on {holdout_rows:,} other "
        f"{items} it had not seen."
    )


def files_sentence(sources: Sequence[str], modified: Sequence[datetime]) -> str:
    """The data used and the time span of its files (their modification times)."""
    bundled = [s.removeprefix("sklearn:") for s in sources if s.startswith("sklearn:")]
    if bundled and len(bundled) == len(sources):
        return f"The data is scikit-learn's bundled {join_words(bundled)} data set."
    files = count(len(sources), "data file")
    if not modified:
        return f"It was trained on {files}."
    first, last = min(modified), max(modified)
    if first.date() == last.date():
        return f"It was trained on {files}, last changed on {day(first)}."
    return f"It was trained on {files}, last changed between {day(first)} and {day(last)}."


def missing_sentence(missing: dict[str, tuple[int, int]], data: str = "training data") -> str:
    """``missing`` maps each feature to (missing count, rows) in ``data`` (for an imported
    model: "sample", the rows given at import)."""
    gaps = {name: m / rows for name, (m, rows) in missing.items() if m and rows}
    if not gaps:
        return f"No values are missing in the {data}."
    worst = max(gaps, key=lambda name: gaps[name])
    have = "has" if len(gaps) == 1 else "have"
    return (
        f"{len(gaps)} of {len(missing)} features {have} missing values, which the model fills "
        f"in; the most is {worst} ({gaps[worst]:.0%} of {ITEMS} missing)."
    )


def drift_sentence(feature: str, shifted: bool, change: str) -> str:
    """One feature that changed since training; ``change`` says its biggest change in words
    ("41% of new cases are below 7, against 8% in training")."""
    how = "has shifted" if shifted else "has changed somewhat"
    return f"{feature} {how}: {change}."


def no_drift_sentence(features: int, rows: int, files: int, items: str = ITEMS) -> str:
    """Nothing changed: the new rows look like the training rows, feature by feature."""
    where = "the new file" if files == 1 else f"the {files} new files"
    every = "its only feature" if features == 1 else f"every one of its {features} features"
    return (
        f"The {rows:,} {items} in {where} look like the {items} it learned from: "
        f"{every} is spread as it was in training."
    )


# -- in plain words ---------------------------------------------------------------------------

INTERVALS = (
    "Each range says how sure this is: with this many test cases, the true rate on new cases "
    "lies inside it 95 times in 100."
)
UNMEASURED = (
    "No quality was measured: it was imported without the right answers for its sample cases, "
    "so nothing here says how often it is right."
)


def plain_words(meta: ModelMetadata, holdout: Holdout | None) -> list[tuple[str, str]]:
    """*In plain words*, as ``(key, text)``: ``purpose``; for classifiers ``accuracy``
    (with its interval), ``precision`` and ``recall`` (binary), ``mistakes``; for regressors
    ``error`` and ``spread``; then ``intervals``, ``small-test`` (under ``SMALL_TEST`` test
    cases), ``drivers``, or ``unmeasured`` for a model imported without labels."""
    ev = meta.evaluation
    found = [
        ("purpose", purpose_sentence(meta.task.value, readable_name(meta.target), meta.classes))
    ]
    if not meta.quality_measured:
        found.append(("unmeasured", UNMEASURED))
        return found
    interval = None
    if meta.classes and ev.confusion_matrix:
        classes, matrix = meta.classes, ev.confusion_matrix
        total = sum(sum(row) for row in matrix)
        right = sum(int(matrix[i][i]) for i in range(len(classes)))
        counts = (holdout.train_class_counts if holdout else None) or per_class_counts(matrix)
        base = ev.baseline.get("accuracy")
        if total and base is not None:
            majority = majority_class(classes, counts)
            text = accuracy_sentence(right / total, base, majority, right, total, meta.imported)
            found.append(("accuracy", text))
            interval = rate_interval(right, total)
        positive = ev.positive_class
        if len(classes) == 2 and positive is not None and positive in classes:
            p = classes.index(positive)
            flagged = sum(int(row[p]) for row in matrix)
            actual = sum(int(v) for v in matrix[p])
            hit = int(matrix[p][p])
            if flagged:
                found.append(
                    ("precision", precision_sentence(hit / flagged, positive, flagged=flagged))
                )
            if actual:
                found.append(("recall", recall_sentence(hit / actual, positive, actual=actual)))
        found.append(("mistakes", mistakes_sentence(matrix, classes, positive, meta.imported)))
        found.append(("intervals", INTERVALS))
        cases = total
    else:
        mae, base_mae = ev.metrics.get("mae"), ev.baseline.get("mae")
        if mae is not None and base_mae is not None:
            found.append(("error", error_sentence(mae, base_mae)))
        if holdout is not None:
            errors = np.abs(np.asarray(holdout.y_true, float) - np.asarray(holdout.y_pred, float))
            median, p90 = np.quantile(errors, [0.5, 0.9])
            found.append(("spread", spread_sentence(float(median), float(p90))))
        cases = ev.holdout_rows
    if (warning := small_test_sentence(cases, interval)) is not None:
        found.append(("small-test", warning))
    if holdout is not None and holdout.importance:
        ranked = [(feature_label(meta, f.feature), f.mean) for f in holdout.importance]
        found.append(("drivers", drivers_sentence(ranked)))
    return found


# -- compared with the previous version -------------------------------------------------------

# What being better on each metric means, said without its name, and how its figures read.
BETTER_WORDS: dict[str, str] = {
    "accuracy": "it was right more often",
    "balanced_accuracy": "it was right more often, every answer counting alike",
    "precision": "it was right more often when it flagged a case",
    "recall": "it found more of the cases it is meant to find",
    "f1": "it found more of the cases it is meant to find for the false alarms it raised",
    "roc_auc": "it told the answers apart better",
    "log_loss": "its confidence matched what happened more closely",
    "mae": "its estimates were closer to the true values",
    "rmse": "its estimates were closer to the true values, large misses counting most",
    "r2": "it explained more of the differences between cases",
}
RATES = frozenset({"accuracy", "balanced_accuracy", "precision", "recall"})
SCORES_TO_ONE = frozenset({"f1", "roc_auc", "r2"})  # 1 is perfect


def _figures(metric: str, new: float, old: float) -> str:
    if metric in RATES:
        return f"{percent(new)} against {percent(old)} for the one in service"
    if metric in SCORES_TO_ONE:
        return f"a score of {new:.3f} against {old:.3f}, where 1 is perfect"
    if metric == "log_loss":
        return f"a score of {new:.3f} against {old:.3f}, where lower is better"
    return f"{number(new)} against {number(old)} away on average"


def decision_sentence(decision: Decision, rejected: bool = False) -> str:
    """Why `kiln retrain` put the new version into service or kept it out (its decision
    record), in words: ``rejected``, the new version is below its quality gate."""
    new, old = decision.challenger_score, decision.champion_score
    compared = new is not None and old is not None
    where = "on cases neither version had learned from"
    if decision.promoted:
        head = "The new version was put into service because"
        if decision.champion is None:
            return f"{head} no version was in service yet."
        if not compared:
            return (
                f"{head} the version in service could not be measured on the new data (it "
                "cannot answer for all of it), and the new one passed its quality checks."
            )
        assert new is not None and old is not None
        better = BETTER_WORDS.get(decision.metric, "it did better")
        return f"{head}, {where}, {better} ({_figures(decision.metric, new, old)})."
    head = "The new version was kept out of service because"
    if rejected:
        return f"{head} it did not pass its quality checks."
    if decision.challenger is None:
        return "No new version was trained: there was no new data to learn from."
    if not compared:
        return (
            f"{head} there were too few new cases to tell whether it is better; the version "
            "in service stays."
        )
    assert new is not None and old is not None
    worse = (new > old) if decision.metric in LOWER_IS_BETTER else (new < old)
    how = "it did worse than" if worse else "it did not do clearly better than"
    return f"{head}, {where}, {how} the one in service ({_figures(decision.metric, new, old)})."


def versions_sentence(
    task: str, new: dict[str, float | None], old: dict[str, float | None], previous: str
) -> str | None:
    """How the two versions compare, each on its own test cases, in words: how often each
    is right (classifiers), how far off each is on average (regressors)."""
    metric = "accuracy" if task == "classification" else "mae"
    a, b = new.get(metric), old.get(metric)
    if a is None or b is None:
        return None
    if metric == "accuracy":
        verdict = (
            "about as often right as"
            if abs(a - b) < 0.01
            else ("right more often than" if a > b else "right less often than")
        )
        figures = f"{percent(a)} against {percent(b)}"
    else:
        verdict = (
            "about as close as"
            if abs(a - b) <= 0.01 * abs(b)
            else (
                "closer to the true values than" if a < b else "further from the true values than"
            )
        )
        figures = f"on average {number(a)} away against {number(b)}"
    return (
        f"Each measured on its own test cases, this version is {verdict} the previous one "
        f"({previous}): {figures}."
    )


def comparison_words(
    meta: ModelMetadata,
    previous: ModelMetadata | None,
    decision: Decision | None = None,
    *,
    in_service: bool | None = None,
) -> list[tuple[str, str]]:
    """*Compared with the previous version*, words first: ``decision`` (why it was put into
    service or kept out, from the decision `kiln retrain` wrote for ``meta``, else from its
    stage and ``in_service``: whether the production record serves it now), then
    ``versions`` (how they compare), or ``no-previous``."""
    found: list[tuple[str, str]] = []
    rejected = meta.stage.value == "rejected"
    if decision is not None and decision.challenger == meta.tag:
        found.append(("decision", decision_sentence(decision, rejected)))
    elif rejected:
        found.append(
            ("decision", "The new version did not pass its quality checks: it is not used.")
        )
    elif in_service:
        found.append(("decision", "The new version is the one in service."))
    if previous is None:
        found.append(("no-previous", "There is no earlier version of this model to compare with."))
        return found
    text = versions_sentence(
        meta.task.value, meta.evaluation.metrics, previous.evaluation.metrics, previous.version
    )
    found.append(("versions", text or f"The previous version is {previous.version}."))
    return found
