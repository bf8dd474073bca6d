"""The report's plain-language sentences: the right numbers, in words a client reads."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest

from kiln.artifact import METADATA_FILE, read_metadata
from training.report.render import summary
from training.report.sentences import (
    accuracy_sentence,
    comparison_sentence,
    count,
    data_sentence,
    drivers_sentence,
    error_sentence,
    files_sentence,
    join_words,
    majority_class,
    missing_sentence,
    mistakes_sentence,
    number,
    per_class_counts,
    precision_sentence,
    purpose_sentence,
    recall_sentence,
    spread_sentence,
)


def test_precision_in_counts_a_person_can_picture() -> None:
    assert precision_sentence(0.98, "spam") == "Of 100 cases it flags as 'spam', 98 are."
    assert precision_sentence(0.7534, "yes") == "Of 100 cases it flags as 'yes', 75 are."


def test_recall_in_counts() -> None:
    assert recall_sentence(0.6747, "yes") == "It finds 67 of every 100 'yes' cases."
    assert recall_sentence(1.0, 1) == "It finds 100 of every 100 '1' cases."


def test_accuracy_against_guessing_the_most_common_answer() -> None:
    assert accuracy_sentence(0.7717, 0.585, "no") == (
        "It is right 77% of the time; always guessing the most common answer ('no') would be "
        "right 58%."
    )


def test_regression_error_against_guessing_the_average() -> None:
    assert error_sentence(45.6192, 61.6319) == (
        "On average its estimate is 45.6 away from the true value; guessing the average every "
        "time would be 61.6 away."
    )
    assert spread_sentence(37.71, 96.7) == (
        "Half of its estimates are within 37.7 of the true value, and 9 in 10 within 96.7."
    )


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (45.6192, "45.6"),
        (1234.5, "1,234"),
        (0.012345, "0.0123"),
        (0.0, "0"),
        (-3.0, "-3"),
        (150.0, "150"),
        (2e-7, "2.00e-07"),
    ],
)
def test_numbers_read_plainly(value: float, text: str) -> None:
    assert number(value) == text


def test_binary_mistakes_as_false_alarms_and_misses() -> None:
    matrix = [[295, 56], [81, 168]]  # rows true no/yes, columns predicted no/yes
    assert mistakes_sentence(matrix, ["no", "yes"], "yes") == (
        "Tested on 600 cases it had not seen in training, it raised 56 false alarms (said 'yes' "
        "when the answer was 'no') and missed 81 'yes' cases."
    )
    # the positive class decides which cell is a miss, whatever its position
    assert mistakes_sentence([[10, 1], [2, 7]], ["spam", "ham"], "spam").endswith(
        "it raised 2 false alarms (said 'spam' when the answer was 'ham') and missed 1 'spam' case."
    )


def test_multiclass_mistakes_name_the_most_common_confusion() -> None:
    matrix = [[18, 0, 0], [1, 19, 3], [0, 0, 15]]
    assert mistakes_sentence(matrix, ["a", "b", "c"]) == (
        "Tested on 56 cases it had not seen in training, it made 4 mistakes; the most common "
        "was answering 'c' when the answer was 'b' (3 times)."
    )
    assert mistakes_sentence([[5, 0], [0, 5]], ["x", "y"], "y").endswith("0 'y' cases.")
    assert mistakes_sentence([[3, 0, 0], [0, 3, 0], [0, 0, 3]], [1, 2, 3]).endswith(
        "it made no mistakes."
    )


def test_mistakes_of_an_imported_model_are_on_its_sample_not_a_holdout() -> None:
    """Kiln measured an imported model on the sample given at import, which the model may
    have been fitted on: the sentence claims no unseen cases."""
    text = mistakes_sentence([[295, 56], [81, 168]], ["no", "yes"], "yes", imported=True)
    assert text == (
        "Checked on the 600 sample cases given at import (Kiln does not know whether the model "
        "saw them in training), it raised 56 false alarms (said 'yes' when the answer was 'no') "
        "and missed 81 'yes' cases."
    )
    assert mistakes_sentence([[1, 0], [0, 0]], ["a", "b"], imported=True).startswith(
        "Checked on the 1 sample case given at import"
    )


@pytest.mark.parametrize(
    ("version", "start"),
    [
        (1, "Tested on 600 cases it had not seen in training, "),  # trained from a spec
        (2, "Checked on the 400 sample cases given at import "),  # kiln import
    ],
)
def test_the_report_says_where_the_mistakes_were_counted(
    version: int, start: str, tmp_path: Path
) -> None:
    testdata = Path(__file__).resolve().parents[1] / "testdata"
    shutil.copy(testdata / f"metadata-v{version}.json", tmp_path / METADATA_FILE)
    meta = read_metadata(tmp_path)
    assert meta.imported is (version == 2)
    assert dict(summary(meta, None))["mistakes"].startswith(start)


def test_drivers_are_the_top_three_that_matter() -> None:
    ranked = [("age", 0.01), ("contract", 0.17), ("tenure", 0.05), ("plan", -0.001), ("fee", 0.04)]
    assert drivers_sentence(ranked) == "Its answers depend most on contract, then tenure and fee."
    assert drivers_sentence([("a", 0.2), ("b", 0.0)]) == "Its answers depend mostly on a."
    assert drivers_sentence([("a", 0.2), ("b", 0.1)]) == "Its answers depend most on a, then b."
    assert drivers_sentence([("a", 0.0), ("b", -0.1)]).startswith("No single feature")


@pytest.mark.parametrize(
    ("metric", "new", "old", "verdict"),
    [
        ("roc_auc", 0.93, 0.85, "better than"),
        ("roc_auc", 0.80, 0.85, "worse than"),
        ("roc_auc", 0.852, 0.85, "about as good as"),
        ("mae", 40.0, 45.0, "better than"),
        ("mae", 50.0, 45.0, "worse than"),
        ("r2", 0.62, 0.48, "better than"),  # the regressors' key metric: higher is better
        ("log_loss", 0.30, 0.45, "better than"),  # LOWER_IS_BETTER, from training.spec
    ],
)
def test_comparison_says_which_is_better(metric: str, new: float, old: float, verdict: str) -> None:
    sentence = comparison_sentence(metric, new, old, "abc123")
    assert sentence.startswith(f"This version is {verdict} the previous one (abc123): ")
    assert f"{new:.3f} against {old:.3f}" in sentence


def test_purpose() -> None:
    assert purpose_sentence("classification", "churned", ["no", "yes"]) == (
        "For each case, it predicts churned: 'no' or 'yes'."
    )
    assert purpose_sentence("classification", "cultivar", ["a", "b", "c"]).endswith(
        "'a', 'b' or 'c'."
    )
    assert purpose_sentence("regression", "progression", None) == (
        "For each case, it estimates progression, a number."
    )


def test_majority_class_breaks_ties_like_the_dummy_baseline() -> None:
    assert majority_class(["no", "yes"], [1404, 996]) == "no"
    assert majority_class(["a", "b", "c"], [5, 9, 9]) == "b"
    assert per_class_counts([[295, 56], [81, 168]]) == [351, 249]


def test_data_sentences() -> None:
    assert data_sentence(2400, 600) == (
        "It learned from 2,400 cases and was tested on 600 other cases it had not seen."
    )
    assert (
        files_sentence(["sklearn:wine"], []) == "The data is scikit-learn's bundled wine data set."
    )
    day1 = datetime(2024, 3, 1, 9, tzinfo=UTC)
    day2 = datetime(2024, 6, 30, 18, tzinfo=UTC)
    assert files_sentence(["a.csv", "b.csv"], [day2, day1]) == (
        "It was trained on 2 data files, last changed between 01 March 2024 and 30 June 2024."
    )
    assert files_sentence(["a.csv"], [day1]) == (
        "It was trained on 1 data file, last changed on 01 March 2024."
    )
    assert missing_sentence({"a": (0, 100), "b": (0, 100)}) == (
        "No values are missing in the training data."
    )
    assert missing_sentence({"a": (0, 100)}, "sample") == "No values are missing in the sample."
    assert missing_sentence({"a": (12, 100), "b": (3, 100), "c": (0, 100)}) == (
        "2 of 3 features have missing values, which the model fills in; the most is a "
        "(12% of cases missing)."
    )


def test_small_words() -> None:
    assert join_words(["a"]) == "a"
    assert join_words(["a", "b", "c"], last="or") == "a, b or c"
    assert count(1, "case") == "1 case"
    assert count(1200, "case") == "1,200 cases"
