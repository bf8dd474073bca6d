"""Words and numbers for people (training/report/words.py): labels, whole numbers, plurals,
percentages that never round to a perfect record, and Wilson intervals."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from kiln.artifact import ModelMetadata
from training.report.words import (
    day,
    feature_label,
    percent,
    plural,
    rate_interval,
    readable_name,
    value_text,
    whole_number,
)

TESTDATA = Path(__file__).resolve().parents[1] / "testdata"


@pytest.mark.parametrize(
    ("column", "label"),
    [
        ("bill_length_mm", "bill length (mm)"),
        ("tenure_months", "tenure (months)"),
        ("data_gb", "data (GB)"),
        ("monthly_charge", "monthly charge"),
        ("monthlyCharges", "monthly charges"),
        ("flipper-length-mm", "flipper length (mm)"),
        ("customer_id", "customer ID"),
        ("CPU_load_pct", "CPU load (%)"),
        ("days", "days"),  # a unit alone is the name, not a unit
        ("age", "age"),
    ],
)
def test_a_column_name_made_readable(column: str, label: str) -> None:
    assert readable_name(column) == label


def test_the_spec_label_wins_over_the_column_name() -> None:
    meta = ModelMetadata.model_validate_json((TESTDATA / "metadata-v4.json").read_text())
    assert feature_label(meta, "tenure_months") == "months as a subscriber"
    assert feature_label(meta, "data_gb") == "data (GB)"  # no label: made readable
    assert feature_label({"plan": "price plan"}, "plan") == "price plan"
    assert feature_label({}, "support_calls") == "support calls"
    assert feature_label(None, "bill_length_mm") == "bill length (mm)"


@pytest.mark.parametrize(
    ("value", "name", "values", "text"),
    [
        (2007, "year", None, "2007"),
        (2009, "model_yr", None, "2009"),
        (2008, "sale_date", None, "2008"),
        (2008, "season", (2007, 2009), "2008"),  # every value a year: a year
        (2008, "rows", (12, 50_000), "2,008"),  # not every value a year: a count
        (2007, "count", None, "2,007"),
        (10115, "zip", None, "10115"),
        (4711, "customerId", None, "4711"),
        (12345, "area_code", None, "12345"),
        (12345, "income", None, "12,345"),
        (1850, "year", None, "1,850"),  # outside 1900-2100: not a year
    ],
)
def test_whole_numbers_years_and_identifiers(
    value: int, name: str, values: tuple[int, int] | None, text: str
) -> None:
    assert whole_number(value, name, values) == text


def test_a_value_is_a_whole_number_or_a_measurement() -> None:
    assert value_text(2007.0, "year") == "2007"
    assert value_text(41.37, "bill_length_mm") == "41.4"
    assert value_text(1234.0, "income") == "1,234"


@pytest.mark.parametrize(
    ("n", "singular", "text"),
    [
        (1, "mistake", "1 mistake"),
        (2, "mistake", "2 mistakes"),
        (0, "case", "0 cases"),
        (1234, "case", "1,234 cases"),
        (3, "class", "3 classes"),
        (2, "category", "2 categories"),
        (2, "day", "2 days"),
    ],
)
def test_plurals(n: int, singular: str, text: str) -> None:
    assert plural(n, singular) == text


def test_an_irregular_plural_is_given() -> None:
    assert plural(2, "person", "people") == "2 people"
    assert plural(1, "person", "people") == "1 person"


@pytest.mark.parametrize(
    ("share", "text"),
    [
        (1.0, "100%"),
        (0.0, "0%"),
        (0.41, "41%"),
        (0.996, "99.6%"),  # never "100%" for a record that is not perfect
        (0.9996, "99.96%"),
        (0.99999, "99.99%"),
        (0.004, "0.4%"),  # nor "0%" for something that happened
        (0.00001, "0.01%"),
        (0.9855, "99%"),
    ],
)
def test_percentages_never_round_to_a_perfect_record(share: float, text: str) -> None:
    assert percent(share) == text


def test_wilson_interval_on_a_small_test_set() -> None:
    """68 right of 69 (the penguins' test set): 92% to 99.7%, and the estimate inside."""
    low, high = rate_interval(68, 69)
    assert low == pytest.approx(0.92237, abs=1e-4) and high == pytest.approx(0.99744, abs=1e-4)
    assert low <= 68 / 69 <= high


def test_wilson_interval_at_the_edges_does_not_collapse() -> None:
    """All right is not 100% to 100%: the normal interval's failure at the edge."""
    low, high = rate_interval(69, 69)
    assert high == 1.0 and low == pytest.approx(0.94726, abs=1e-4)
    low, high = rate_interval(0, 5)
    assert low == 0.0 and high == pytest.approx(0.43448, abs=1e-4)


@pytest.mark.parametrize(("k", "n"), [(1, 2), (30, 600), (599, 600), (5000, 10000)])
def test_wilson_interval_holds_its_estimate_and_narrows_with_cases(k: int, n: int) -> None:
    low, high = rate_interval(k, n)
    assert 0 <= low <= k / n <= high <= 1
    wider = rate_interval(k, n, confidence=0.99)
    assert wider[0] <= low and wider[1] >= high
    if n >= 10:
        small = rate_interval(round(k / 10), n // 10)
        assert small[1] - small[0] > high - low


@pytest.mark.parametrize(("k", "n"), [(1, 0), (-1, 5), (6, 5)])
def test_an_impossible_rate_is_refused(k: int, n: int) -> None:
    with pytest.raises(ValueError):
        rate_interval(k, n)


def test_the_v4_fixture_carries_one_label() -> None:
    raw = json.loads((TESTDATA / "metadata-v4.json").read_text())
    assert [f["label"] for f in raw["features"] if f["label"]] == ["months as a subscriber"]


def test_a_date_reads_as_people_write_it() -> None:
    when = datetime(2026, 12, 1, 9, 5, tzinfo=UTC)
    assert day(when) == "1 December 2026"  # no leading zero
    assert day(when, time=True) == "1 December 2026, 09:05 UTC"
