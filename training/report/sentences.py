"""Plain-language sentences built from a model's numbers, for a reader who is not technical.

Every function is small and pure: numbers in, one sentence out, so each is unit-tested with
the numbers a reader would check it against. Class names are quoted ('yes'); rows of the data
are called "cases", whatever the model is about.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from training.spec import LOWER_IS_BETTER

__all__ = [
    "ITEMS",
    "METRIC_NAMES",
    "accuracy_sentence",
    "comparison_sentence",
    "count",
    "data_sentence",
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
    "precision_sentence",
    "purpose_sentence",
    "quoted",
    "recall_sentence",
    "spread_sentence",
]

ITEMS = "cases"
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


def quoted(value: Any) -> str:
    """A class name as the reader sees it: 'yes'."""
    return f"'{value}'"


def join_words(words: Sequence[str], last: str = "and") -> str:
    """``a``, ``a and b``, ``a, b and c``."""
    if not words:
        return ""
    if len(words) == 1:
        return words[0]
    return f"{', '.join(words[:-1])} {last} {words[-1]}"


def count(n: int, singular: str, plural: str | None = None) -> str:
    """``1 case``, ``2 cases``, with thousands separators."""
    return f"{n:,} {singular if n == 1 else (plural or singular + 's')}"


def number(value: float) -> str:
    """A measurement as a person reads it: 3 significant digits, no exponent below 1,000."""
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    if value == 0:
        return "0"
    text = f"{value:.3g}"
    return text if "e" not in text else f"{value:.2e}"


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


def accuracy_sentence(accuracy: float, baseline: float, majority: Any) -> str:
    return (
        f"It is right {accuracy:.0%} of the time; always guessing the most common answer "
        f"({quoted(majority)}) would be right {baseline:.0%}."
    )


def precision_sentence(precision: float, positive: Any, items: str = ITEMS) -> str:
    return f"Of 100 {items} it flags as {quoted(positive)}, {precision * 100:.0f} are."


def recall_sentence(recall: float, positive: Any, items: str = ITEMS) -> str:
    return f"It finds {recall * 100:.0f} of every 100 {quoted(positive)} {items}."


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
    return (
        f"{seen}, it made {count(wrong, 'mistake')}; the most common was answering "
        f"{quoted(classes[said])} when the answer was {quoted(classes[true])} "
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
        return f"It was trained on {files}, last changed on {first:%d %B %Y}."
    return f"It was trained on {files}, last changed between {first:%d %B %Y} and {last:%d %B %Y}."


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
