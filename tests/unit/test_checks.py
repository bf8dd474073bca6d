"""Input checks (kiln/checks.py) on the churn model's kiln.json, as schema 3 writes it and as
schema 1 did (no training quantiles): the three reasons, the margin rule, the modes, the cap
on the warnings an answer carries, and the words every entry point shares."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from kiln.artifact import CheckMode, FeatureKind, ModelMetadata
from kiln.checks import MAX_WARNINGS, REASONS, InputChecks, parse_mode, warnings_body
from kiln.errors import InputRejected
from tests.conftest import CHURN_ROW

TESTDATA = Path(__file__).resolve().parents[1] / "testdata"


def metadata(schema: int) -> ModelMetadata:
    return ModelMetadata.model_validate_json((TESTDATA / f"metadata-v{schema}.json").read_text())


@pytest.fixture(scope="module")
def v3() -> ModelMetadata:
    return metadata(3)


def columns(meta: ModelMetadata, rows: list[dict[str, Any]]) -> dict[str, np.ndarray]:
    """Typed columns as the codecs make them: float32 with NaN, strings with "" missing."""
    typed: dict[str, np.ndarray] = {}
    for feature in meta.features:
        values = [row[feature.name] for row in rows]
        if feature.kind is FeatureKind.numeric:
            typed[feature.name] = np.array(
                [np.nan if v is None else v for v in values], dtype=np.float32
            )
        else:
            typed[feature.name] = np.array(["" if v is None else v for v in values], dtype=object)
    return typed


def found(checks: InputChecks, meta: ModelMetadata, rows: list[dict[str, Any]]) -> set[Any]:
    return {(f.row, f.feature, f.reason) for f in checks.findings(columns(meta, rows))}


@pytest.mark.parametrize("schema", [1, 3])
def test_the_training_min_and_max_of_every_number_pass(schema: int) -> None:
    meta = metadata(schema)
    checks = InputChecks(meta)
    numeric = [f.name for f in meta.features if f.kind is FeatureKind.numeric]
    lows = {n: meta.feature_stats[n].min for n in numeric}
    highs = {n: meta.feature_stats[n].max for n in numeric}
    rows = [{**CHURN_ROW, **lows}, {**CHURN_ROW, **highs}]
    assert checks.inspect(columns(meta, rows)) == ({}, [], 0)


@pytest.mark.parametrize("schema", [1, 3])
def test_the_next_float32_past_an_accepted_bound_fails(schema: int) -> None:
    """The bounds are compared in float32 (the columns' type): the last float32 inside is
    accepted and the first outside is not, on both sides of every number."""
    meta = metadata(schema)
    checks = InputChecks(meta)
    up, down = np.float32(np.inf), np.float32(-np.inf)
    for name, (low, high) in checks.ranges().items():
        # np.float64: a Python float would be compared in float32 (NEP 50)
        first, last = np.float32(low), np.float32(high)
        inside_low = first if first >= np.float64(low) else np.nextafter(first, up)
        inside_high = last if last <= np.float64(high) else np.nextafter(last, down)
        below, above = np.nextafter(inside_low, down), np.nextafter(inside_high, up)
        rows = [{**CHURN_ROW, name: float(v)} for v in (inside_low, inside_high, below, above)]
        assert found(checks, meta, rows) == {(2, name, "out_of_range"), (3, name, "out_of_range")}


def test_schema_1_uses_the_training_min_and_max_and_says_so() -> None:
    meta = metadata(1)
    assert meta.reference is None
    checks = InputChecks(meta)
    assert checks.mode is CheckMode.warn  # no reference: the default
    assert checks.ranges()["monthly_charge"] == (9.180000305175781, 86.98999786376953)
    (finding,) = checks.findings(columns(meta, [{**CHURN_ROW, "monthly_charge": 87.5}]))
    assert finding.message == "87.5 is above the range seen in training: 9.18 to 86.99"
    assert str(finding) == (
        "feature 'monthly_charge', row 0: 87.5 is above the range seen in training: 9.18 to 86.99"
    )


def test_the_margin_widens_p0_1_and_p99_9_but_never_inside_min_and_max(
    v3: ModelMetadata,
) -> None:
    assert v3.reference is not None
    checks = InputChecks(v3)
    ref = v3.reference.features["monthly_charge"]
    stats = v3.feature_stats["monthly_charge"]
    assert ref.low is not None and ref.high is not None
    widen = v3.reference.margin * (ref.high - ref.low)
    low, high = checks.ranges()["monthly_charge"]
    # p0.1 - margin is below the training min here, and p99.9 + margin above the max
    assert low == pytest.approx(ref.low - widen) and low < stats.min  # type: ignore[operator]
    assert high == pytest.approx(ref.high + widen) and high > stats.max  # type: ignore[operator]
    # support_calls: p99.9 (7) plus the margin (0.7) is inside the max (10): the max counts
    assert checks.ranges()["support_calls"] == (pytest.approx(-0.7), 10.0)
    rows = [
        {**CHURN_ROW, "monthly_charge": 87.0},  # above the max, inside the margin
        {**CHURN_ROW, "monthly_charge": 87.1},
        {**CHURN_ROW, "support_calls": 10},
        {**CHURN_ROW, "support_calls": 10.5},
    ]
    findings = checks.findings(columns(v3, rows))
    assert [(f.row, f.feature) for f in findings] == [(1, "monthly_charge"), (3, "support_calls")]
    assert findings[0].message == (
        "87.1 is above the range seen in training (9.18 to 86.99, accepted up to 87.0332)"
    )
    assert findings[1].message == (
        "10.5 is above the range seen in training (0 to 10, accepted up to 10)"
    )
    margin_zero = v3.model_copy(
        update={"reference": v3.reference.model_copy(update={"margin": 0.0})}
    )
    assert InputChecks(margin_zero).ranges()["monthly_charge"] == (stats.min, stats.max)


def test_an_unseen_category_names_the_categories_seen(v3: ModelMetadata) -> None:
    checks = InputChecks(v3)
    (finding,) = checks.findings(columns(v3, [{**CHURN_ROW, "plan": "Fiber"}]))
    assert (finding.feature, finding.reason, finding.value) == ("plan", "unseen_category", "Fiber")
    assert finding.message == (
        "'Fiber' was never seen in training (seen: 'basic', 'fiber', 'premium', 'standard')"
    )


def test_missing_only_where_training_never_had_one(v3: ModelMetadata) -> None:
    checks = InputChecks(v3)
    never = {n for n, s in v3.feature_stats.items() if s.missing == 0}
    assert never == {"monthly_charge", "support_calls", "contract", "region"}
    everything_missing = {name: None for name in CHURN_ROW}
    findings = checks.findings(columns(v3, [CHURN_ROW, everything_missing]))
    assert {(f.row, f.feature, f.reason) for f in findings} == {(1, n, "missing") for n in never}
    assert [f.feature for f in findings] == [
        "monthly_charge",
        "support_calls",
        "contract",
        "region",
    ]
    assert findings[0].message == "is missing, and was never missing in training"
    assert findings[0].as_dict()["value"] is None  # NaN: JSON has none
    assert findings[2].as_dict()["value"] is None  # "": missing, as a client sends it


def test_findings_come_by_row_then_feature_order_with_counts_by_reason(
    v3: ModelMetadata,
) -> None:
    checks = InputChecks(v3)
    rows = [
        CHURN_ROW,
        {**CHURN_ROW, "region": "mars", "age": 500, "contract": None},
        {**CHURN_ROW, "age": -3},
    ]
    counts, shown, total = checks.inspect(columns(v3, rows))
    assert counts == {("age", "out_of_range"): 2, ("region", "unseen_category"): 1,
                      ("contract", "missing"): 1}  # fmt: skip
    assert total == 4
    assert [(f.row, f.feature) for f in shown] == [(1, "age"), (1, "contract"), (1, "region"),
                                                    (2, "age")]  # fmt: skip
    assert shown[0].as_dict() == {
        "row": 1,
        "feature": "age",
        "value": 500.0,
        "reason": "out_of_range",
        "message": shown[0].message,
    }
    assert {f.reason for f in shown} <= set(REASONS)


def test_flags_hold_every_mask_and_slice_like_the_rows(v3: ModelMetadata) -> None:
    checks = InputChecks(v3)
    everything_missing = {name: None for name in CHURN_ROW}
    rows = [
        CHURN_ROW,
        {**CHURN_ROW, "region": "mars", "age": 500, "contract": None},
        everything_missing,
        {**CHURN_ROW, "age": -3, "plan": "gold"},
    ]
    typed = columns(v3, rows)
    masks = checks.masks(typed)
    assert set(masks) <= set(checks.keys) and len(set(checks.keys)) == len(checks.keys)
    block = checks.flags(masks, len(rows))
    assert block.shape == (len(rows), len(checks.keys))
    assert int(np.count_nonzero(block)) == sum(checks.counts(masks).values())
    back = checks.from_flags(block)
    assert back.keys() == masks.keys()
    assert all(back[key].tolist() == masks[key].tolist() for key in masks)
    # a request's rows of a batch's block are the masks of that request's own rows
    for start, stop in [(0, 1), (1, 3), (3, 4)]:
        own = checks.masks({name: column[start:stop] for name, column in typed.items()})
        sliced = checks.from_flags(block[start:stop])
        assert {k: v.tolist() for k, v in sliced.items()} == {k: v.tolist() for k, v in own.items()}
    assert checks.from_flags(checks.flags({}, 2)) == {}


def test_the_modes(v3: ModelMetadata) -> None:
    checks = InputChecks(v3)
    assert checks.mode is CheckMode.warn  # the spec's default, stored in kiln.json
    assert InputChecks(v3, CheckMode.reject).mode is CheckMode.reject
    bad = columns(v3, [CHURN_ROW, {**CHURN_ROW, "plan": "gold"}])
    counts = {("plan", "unseen_category"): 1}
    assert checks.inspect(bad, CheckMode.accept) == (counts, [], 1)  # counted, not returned
    warned = checks.inspect(bad, CheckMode.warn)
    assert warned[0] == counts and warned[2] == 1 and [f.row for f in warned[1]] == [1]
    with pytest.raises(InputRejected) as caught:
        checks.inspect(bad, CheckMode.reject)
    assert caught.value.status_code == 422
    assert caught.value.counts == counts and caught.value.total == 1
    assert caught.value.message == (
        "feature 'plan', row 1: 'gold' was never seen in training "
        "(seen: 'basic', 'fiber', 'premium', 'standard')"
    )
    good = columns(v3, [CHURN_ROW])
    for mode in CheckMode:  # nothing found: nothing counted, nothing refused
        assert checks.inspect(good, mode) == ({}, [], 0)


def test_at_most_max_warnings_come_back_and_warning_count_says_how_many(
    v3: ModelMetadata,
) -> None:
    checks = InputChecks(v3)
    rows = [{**CHURN_ROW, "plan": "gold", "region": "mars"}] * 80  # 160 findings
    counts, shown, total = checks.inspect(columns(v3, rows))
    assert counts == {("plan", "unseen_category"): 80, ("region", "unseen_category"): 80}
    assert total == 160 and len(shown) == MAX_WARNINGS
    assert [(f.row, f.feature) for f in shown[:3]] == [(0, "plan"), (0, "region"), (1, "plan")]
    body = warnings_body(shown, total)
    assert body["warning_count"] == 160 and len(body["warnings"]) == MAX_WARNINGS
    json.dumps(body)  # plain JSON values
    assert warnings_body([], 0) == {}
    with pytest.raises(InputRejected) as caught:
        checks.inspect(columns(v3, rows), CheckMode.reject)
    assert caught.value.message.endswith("(and 159 more)")
    assert len(caught.value.findings) == MAX_WARNINGS


def test_parse_mode() -> None:
    assert parse_mode("reject") is CheckMode.reject
    assert parse_mode(CheckMode.accept) is CheckMode.accept
    with pytest.raises(ValueError, match=r"'block' is not an input-check mode \(use accept, warn"):
        parse_mode("block")
    with pytest.raises(ValueError, match="is not an input-check mode"):
        parse_mode("Reject")  # the names are lower case, as in the spec
