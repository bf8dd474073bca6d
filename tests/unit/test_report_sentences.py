"""The report's plain-language sentences: the right numbers, in words a client reads."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest

from kiln.artifact import (
    METADATA_FILE,
    EvidenceBand,
    FeatureEvidence,
    FeatureKind,
    Holdout,
    ModelMetadata,
    Stage,
    read_metadata,
)
from kiln.production import Decision
from training.report.datawords import ASSOCIATION, data_says, evidence_sentence
from training.report.sentences import (
    METRIC_NAMES,
    SMALL_TEST,
    accuracy_sentence,
    comparison_sentence,
    comparison_words,
    count,
    data_sentence,
    decision_sentence,
    drivers_sentence,
    error_sentence,
    files_sentence,
    join_words,
    majority_class,
    missing_sentence,
    mistakes_sentence,
    number,
    per_class_counts,
    plain_words,
    precision_sentence,
    purpose_sentence,
    recall_sentence,
    small_test_sentence,
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
    assert dict(plain_words(meta, None))["mistakes"].startswith(start)


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
        "It was trained on 2 data files, last changed between 1 March 2024 and 30 June 2024."
    )
    assert files_sentence(["a.csv"], [day1]) == (
        "It was trained on 1 data file, last changed on 1 March 2024."
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


# -- how sure we are ---------------------------------------------------------------------------

TESTDATA = Path(__file__).resolve().parents[1] / "testdata"


def _meta(version: int = 4, **changes: object) -> ModelMetadata:
    meta = ModelMetadata.model_validate_json((TESTDATA / f"metadata-v{version}.json").read_text())
    return meta.model_copy(update=changes) if changes else meta


def _holdout(version: int = 2) -> Holdout:
    return Holdout.model_validate_json((TESTDATA / f"holdout-v{version}.json").read_text())


def test_a_headline_rate_comes_with_its_interval_and_its_cases() -> None:
    """The penguins' case: 68 right of 69 is "99%", between 92% and 99.7% (never 100%)."""
    assert accuracy_sentence(68 / 69, 0.44, "Adelie", right=68, total=69) == (
        "It is right 99% of the time, between 92% and 99.7%, on 69 cases kept aside; always "
        "guessing the most common answer ('Adelie') would be right 44%."
    )
    assert "on the 69 sample cases given at import" in accuracy_sentence(
        1.0, 0.44, "Adelie", right=69, total=69, imported=True
    )
    assert precision_sentence(0.75, "yes", flagged=224) == (
        "Of 100 cases it flags as 'yes', 75 are (between 69 and 80; it flagged 224 test cases)."
    )
    assert recall_sentence(168 / 249, "yes", actual=249) == (
        "It finds 67 of every 100 'yes' cases (between 61 and 73; the test held 249 such cases)."
    )
    assert precision_sentence(0.996, "yes") == "Of 100 cases it flags as 'yes', 99.6 are."


def test_plain_words_of_the_churn_model() -> None:
    words = dict(plain_words(_meta(), _holdout()))
    assert list(words)[:6] == [
        "purpose",
        "accuracy",
        "precision",
        "recall",
        "mistakes",
        "intervals",
    ]
    # 463 right of 600: 77%, and the interval worked out here by Wilson's formula
    assert words["accuracy"].startswith(
        "It is right 77% of the time, between 74% and 80%, on 600 cases kept aside;"
    )
    assert "small-test" not in words  # 600 cases: no warning
    assert words["drivers"] == (
        "Its answers depend most on contract, then months as a subscriber."  # the spec's label
    )


def test_a_small_test_set_is_said_to_be_small() -> None:
    matrix = [[30, 0, 0], [0, 24, 1], [0, 0, 14]]  # 69 cases, one mistake
    meta = _meta(classes=["Adelie", "Chinstrap", "Gentoo"])
    meta = meta.model_copy(
        update={
            "evaluation": meta.evaluation.model_copy(
                update={"confusion_matrix": matrix, "positive_class": None, "holdout_rows": 69}
            )
        }
    )
    words = dict(plain_words(meta, None))
    assert words["mistakes"] == (
        "Tested on 69 cases it had not seen in training, it made 1 mistake: answering "
        "'Gentoo' when the answer was 'Chinstrap'."
    )
    assert words["small-test"].startswith("Only 69 cases were kept aside to test it, which is few")
    assert "range 8 points wide" in words["small-test"]  # 92% to 99.7%
    assert "precision" not in words and "recall" not in words  # several classes
    assert small_test_sentence(SMALL_TEST) is None
    assert small_test_sentence(40).startswith("Only 40 cases were kept aside")  # type: ignore[union-attr]


def test_mistakes_that_are_each_different_have_no_most_common() -> None:
    matrix = [[10, 1, 0], [0, 10, 1], [1, 0, 10]]
    assert mistakes_sentence(matrix, ["a", "b", "c"]).endswith(
        "it made 3 mistakes, each a different mix-up."
    )


@pytest.mark.parametrize(("right", "total"), [(68, 69), (69, 69), (463, 600), (3, 40)])
def test_every_interval_holds_its_estimate(right: int, total: int) -> None:
    """The figures in the sentence: low <= estimate <= high, as the reader reads them."""
    text = accuracy_sentence(right / total, 0.5, "x", right=right, total=total)
    shown = [float(t.rstrip("%,;")) for t in text.split() if t.rstrip(",;").endswith("%")]
    estimate, low, high = shown[:3]
    assert low <= estimate <= high


def test_an_import_without_labels_says_no_quality_was_measured() -> None:
    meta = _meta(2)
    meta = meta.model_copy(
        update={"evaluation": meta.evaluation.model_copy(update={"measured": False})}
    )
    keys = [k for k, _ in plain_words(meta, None)]
    assert keys == ["purpose", "unmeasured"]


# -- what the data says ------------------------------------------------------------------------


def test_what_the_data_says_of_the_churn_model() -> None:
    said = data_says(_meta(), _holdout())
    assert said[0] == ("association", ASSOCIATION) and "not what causes" in ASSOCIATION
    words = dict(said)
    assert words["evidence:tenure_months"] == (
        "In the training data, churned was 'yes' 6 times as often for cases with months as a "
        "subscriber under 6 as for those with months as a subscriber of 24 or more (75% against "
        "12%)."
    )
    assert words["evidence:contract"] == (
        "In the training data, churned was 'yes' 6 times as often for cases with contract "
        "'monthly' as for those with another contract (57% against 10%)."
    )
    assert data_says(_meta(), _holdout(1)) == []  # registered before evidence was kept


def _bands(*shares: list[float], labels: tuple[str, ...] = ()) -> FeatureEvidence:
    names = labels or tuple(f"band{i}" for i in range(len(shares)))
    return FeatureEvidence(
        feature="f",
        kind=FeatureKind.categorical,
        rows=100 * len(shares),
        bands=[
            EvidenceBand(label=n, categories=[n], rows=100, shares=s)
            for n, s in zip(names, shares, strict=True)
        ],
    )


def test_several_classes_name_the_class_whose_share_differs_most() -> None:
    # Adelie differs by 5 points between the islands, Gentoo by 35, Chinstrap by 40
    found = _bands([0.4, 0.5, 0.1], [0.45, 0.1, 0.45], labels=("Biscoe", "Dream"))
    text = evidence_sentence(found, "island", "species", ["Adelie", "Chinstrap", "Gentoo"])
    assert text == (
        "In the training data, species was 'Chinstrap' 5 times as often for cases with island "
        "'Biscoe' as for those with island 'Dream' (50% against 10%)."
    )
    none = _bands([0.0, 1.0], [0.97, 0.03], labels=("Torgersen", "Biscoe"))
    assert evidence_sentence(none, "island", "species", ["Adelie", "Gentoo"]) == (
        "In the training data, species was 'Adelie' for 97% of cases with island 'Biscoe', "
        "against 0% of those with island 'Torgersen'."
    )


def test_a_flat_feature_and_a_regression_feature() -> None:
    flat = _bands([0.59, 0.41], [0.6, 0.4])
    assert "about as often whatever the f (between 40% and 41% of cases)" in evidence_sentence(
        flat, "f", "churned", ["no", "yes"], "yes"
    )
    numbers = FeatureEvidence(
        feature="bmi",
        kind=FeatureKind.numeric,
        rows=300,
        bands=[
            EvidenceBand(label="under 25", high=25, rows=100, mean=98.2),
            EvidenceBand(label="25 to 30", low=25, high=30, rows=100, mean=150.0),
            EvidenceBand(label="30 or more", low=30, rows=100, mean=213.3),
            EvidenceBand(label="missing", missing=True, rows=40, mean=120.0),
        ],
    )
    assert evidence_sentence(numbers, "body mass index", "progression") == (
        "In the training data, the average progression was 213 for cases with body mass index "
        "of 30 or more, against 98.2 for those with body mass index under 25."
    )


# -- compared with the previous version ----------------------------------------------------


def _decision(**fields: object) -> Decision:
    base: dict[str, object] = {
        "promoted": True,
        "challenger": "churn:d5o4mixnuwtygax4",
        "champion": "churn:older",
        "metric": "roc_auc",
        "challenger_score": 0.8412,
        "champion_score": 0.8123,
        "reasons": ["roc_auc 0.8412 beats churn:older's 0.8123 (margin 0.005; ...)"],
    }
    return Decision.model_validate({**base, **fields})


@pytest.mark.parametrize(
    ("fields", "rejected", "text"),
    [
        (
            {},
            False,
            "The new version was put into service because, on cases neither version had "
            "learned from, it told the answers apart better (a score of 0.841 against 0.812, "
            "where 1 is perfect).",
        ),
        (
            {"champion": None, "challenger_score": None, "champion_score": None},
            False,
            "The new version was put into service because no version was in service yet.",
        ),
        (
            {"promoted": False, "challenger_score": 0.80},
            False,
            "The new version was kept out of service because, on cases neither version had "
            "learned from, it did worse than the one in service (a score of 0.800 against "
            "0.812, where 1 is perfect).",
        ),
        (
            {"promoted": False, "metric": "accuracy", "challenger_score": 0.8141},
            False,
            "The new version was kept out of service because, on cases neither version had "
            "learned from, it did not do clearly better than the one in service (81% against "
            "81% for the one in service).",
        ),
        (
            {"promoted": False, "metric": "mae", "challenger_score": 40.0, "champion_score": 38},
            False,
            "The new version was kept out of service because, on cases neither version had "
            "learned from, it did worse than the one in service (40 against 38 away on "
            "average).",
        ),
        (
            {"promoted": False, "challenger_score": None, "champion_score": None},
            True,
            "The new version was kept out of service because it did not pass its quality checks.",
        ),
        (
            {"promoted": False, "challenger_score": None, "champion_score": None},
            False,
            "The new version was kept out of service because there were too few new cases to "
            "tell whether it is better; the version in service stays.",
        ),
    ],
)
def test_the_decision_in_words(fields: dict[str, object], rejected: bool, text: str) -> None:
    assert decision_sentence(_decision(**fields), rejected) == text


def test_comparison_words_first_the_decision_then_the_versions() -> None:
    meta, previous = _meta(), _meta(3)
    previous = previous.model_copy(
        update={
            "version": "older",
            "evaluation": previous.evaluation.model_copy(
                update={"metrics": {**previous.evaluation.metrics, "accuracy": 0.74}}
            ),
        }
    )
    said = comparison_words(meta, previous, _decision())
    assert [k for k, _ in said] == ["decision", "versions"]
    assert said[1][1] == (
        "Each measured on its own test cases, this version is right more often than the "
        "previous one (older): 77% against 74%."
    )
    # a decision about another version says nothing of this one: only how they compare
    other = _decision(challenger="churn:someone-else")
    assert [k for k, _ in comparison_words(meta, previous, other)] == ["versions"]
    rejected = comparison_words(meta.model_copy(update={"stage": Stage.rejected}), None)
    assert rejected == [
        ("decision", "The new version did not pass its quality checks: it is not used."),
        ("no-previous", "There is no earlier version of this model to compare with."),
    ]
    assert comparison_words(meta, None, in_service=True)[0] == (
        "decision",
        "The new version is the one in service.",
    )


def test_no_metric_name_reaches_the_client() -> None:
    meta, holdout = _meta(), _holdout()
    texts = [t for _, t in plain_words(meta, holdout) + data_says(meta, holdout)]
    for metric in ("roc_auc", "accuracy", "f1", "mae", "r2", "log_loss"):
        decision = _decision(metric=metric, challenger_score=0.9, champion_score=0.8)
        texts += [t for _, t in comparison_words(meta, meta, decision)]
        texts.append(decision_sentence(decision.model_copy(update={"promoted": False})))
    names = {n for m, n in METRIC_NAMES.items() if m != "accuracy"} | {"AUC", "roc_auc"}
    for text in texts:
        assert not [n for n in names if n in text], text
