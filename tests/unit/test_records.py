"""The JSON records codec: typing, every refusal, and the shape of the answer."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kiln.artifact import FeatureKind
from kiln.errors import InvalidInput, PayloadTooLarge
from kiln.records import decode_instances, encode_predictions
from kiln.values import typed_value

NUM, CAT, TXT = FeatureKind.numeric, FeatureKind.categorical, FeatureKind.text
FEATURES = [("age", NUM), ("plan", CAT), ("note", TXT)]
GOOD = {"age": 41, "plan": "fiber", "note": "called twice"}


def decode(payload: Any, **kwargs: Any) -> tuple[dict[str, np.ndarray], int]:
    return decode_instances(payload, FEATURES, max_rows=kwargs.pop("max_rows", 100), **kwargs)


def test_values_are_typed_as_the_model_takes_them() -> None:
    columns, rows = decode(
        {"instances": [GOOD, {"age": None, "plan": None, "note": None}, {**GOOD, "plan": 7}]}
    )
    assert rows == 3
    assert columns["age"].dtype == np.float32
    assert columns["age"][0] == 41 and math.isnan(columns["age"][1])
    assert columns["plan"].dtype == object
    assert columns["plan"].tolist() == ["fiber", "", "7"]  # null -> "", integer code -> "7"
    assert columns["note"].tolist() == ["called twice", "", "called twice"]


def test_unknown_features_can_be_ignored() -> None:
    columns, _ = decode({"instances": [{**GOOD, "extra": 1}]}, unknown="ignore")
    assert set(columns) == {"age", "plan", "note"}


@pytest.mark.parametrize(
    ("payload", "phrase"),
    [
        ([GOOD], "body must be a JSON object"),
        ({"rows": [GOOD]}, "unknown top-level field 'rows'"),
        ({"instances": GOOD}, "'instances' must be a list"),
        ({"instances": []}, "'instances' is empty"),
        ({"instances": [1]}, "instances[0] must be an object, got number"),
        ({"instances": [GOOD, {"plan": "x", "note": ""}]}, "instances[1]: missing feature 'age'"),
        ({"instances": [{**GOOD, "agee": 1}]}, "instances[0]: unknown feature 'agee'"),
        (
            {"instances": [{**GOOD, "age": "41"}]},
            "instances[0].age: expected a number or null, got string",
        ),
        (
            {"instances": [{**GOOD, "age": True}]},
            "instances[0].age: expected a number or null, got boolean",
        ),
        ({"instances": [{**GOOD, "age": [1]}]}, "got array"),
        ({"instances": [{**GOOD, "age": 1e39}]}, "is not a finite float32 number"),
        ({"instances": [{**GOOD, "age": float("inf")}]}, "is not a finite float32 number"),
        (
            {"instances": [{**GOOD, "plan": 1.5}]},
            "instances[0].plan: expected a string (or an integer code)",
        ),
        ({"instances": [{**GOOD, "plan": True}]}, "instances[0].plan: expected a string"),
        (
            {"instances": [{**GOOD, "note": 3}]},
            "instances[0].note: expected a string or null, got number",
        ),
        ({"instances": [{**GOOD, "note": {"a": 1}}]}, "got object"),
    ],
)
def test_bad_records_are_refused_naming_the_field(payload: Any, phrase: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        decode(payload)
    assert phrase in str(caught.value)
    assert caught.value.status_code == 400


def test_too_many_rows_is_413() -> None:
    with pytest.raises(PayloadTooLarge, match="has 3 rows; the limit is 2") as caught:
        decode({"instances": [GOOD] * 3}, max_rows=2)
    assert caught.value.status_code == 413


def test_long_unknown_names_are_shortened_in_messages() -> None:
    with pytest.raises(InvalidInput) as caught:
        decode({"instances": [{**GOOD, "x" * 500: 1}]})
    assert len(str(caught.value)) < 200


def test_classifier_answer_maps_probabilities_to_class_names() -> None:
    answer = encode_predictions(
        model="m",
        version="v1",
        outputs={
            "label": np.array([1, 0], dtype=np.int64),
            "probabilities": np.array([[0.25, 0.75], [0.9, 0.1]], dtype=np.float32),
        },
        classes=[0, 1],
    )
    assert answer["predictions"] == [1, 0] and type(answer["predictions"][0]) is int
    assert answer["probabilities"] == [
        {"0": 0.25, "1": 0.75},
        {"0": 0.8999999761581421, "1": 0.10000000149011612},
    ]


def test_scores_and_regression_answers() -> None:
    scores = encode_predictions(
        model="svc",
        version="1",
        outputs={
            "label": np.array(["b"], dtype=object),
            "scores": np.array([[-1.5, 1.5]], np.float32),
        },
        classes=["a", "b"],
    )
    assert scores["scores"] == [{"a": -1.5, "b": 1.5}] and "probabilities" not in scores
    regression = encode_predictions(
        model="r",
        version="1",
        outputs={"prediction": np.array([[1.5], [2.0]], np.float32)},
        classes=None,
    )
    assert regression == {"model": "r", "version": "1", "predictions": [1.5, 2.0]}


_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**40), max_value=10**40),
    st.floats(allow_nan=True, allow_infinity=True, width=64),
    st.text(max_size=3),
    st.lists(st.integers(), max_size=1),
)


def _one_by_one(
    rows: list[dict[str, Any]], features: list[tuple[str, Any]]
) -> tuple[dict[str, list[Any]] | None, str | None]:
    """The reference: every value through the per-value rules, row by row."""
    out: dict[str, list[Any]] = {name: [] for name, _ in features}
    try:
        for i, row in enumerate(rows):
            for name, kind in features:
                out[name].append(typed_value(row[name], kind, f"instances[{i}].{name}"))
    except InvalidInput as exc:
        return None, str(exc)
    return out, None


@settings(max_examples=400, deadline=None)
@given(
    values=st.lists(st.tuples(_VALUES, _VALUES), min_size=1, max_size=6),
    kind=st.sampled_from([NUM, CAT, TXT]),
)
def test_fast_column_paths_agree_with_the_per_value_rules(
    values: list[tuple[Any, Any]], kind: Any
) -> None:
    features = [("f", kind), ("g", NUM)]
    rows = [{"f": f, "g": g} for f, g in values]
    expected, error = _one_by_one(rows, features)
    if error is not None:
        with pytest.raises(InvalidInput) as raised:
            decode_instances({"instances": rows}, features, max_rows=100)
        assert str(raised.value) == error
        return
    columns, _ = decode_instances({"instances": rows}, features, max_rows=100)
    assert expected is not None
    for name, column_kind in features:
        if column_kind is NUM:
            assert columns[name].dtype == np.float32 and columns[name].flags.c_contiguous
            want = np.array(expected[name], dtype=np.float32)
            np.testing.assert_array_equal(columns[name], want)  # NaN equals NaN here
        else:
            assert columns[name].tolist() == expected[name]


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=6),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(
            st.sampled_from(["age", "plan", "note", "x", ""]) | st.text(max_size=4),
            inner,
            max_size=5,
        )
    ),
    max_leaves=25,
)


@settings(max_examples=500, deadline=None)
@given(
    payload=_JSON | st.fixed_dictionaries({"instances": st.lists(_JSON, max_size=4)}),
    unknown=st.sampled_from(["reject", "ignore"]),
)
def test_fuzz_any_json_document_is_typed_or_refused_with_invalid_input(
    payload: Any, unknown: Any
) -> None:
    """Whatever JSON arrives, the decoder answers columns or ``InvalidInput``: never another
    exception (which the service would turn into a 500)."""
    try:
        columns, rows = decode(payload, unknown=unknown, max_rows=3)
    except InvalidInput as exc:
        assert exc.message
        return
    assert rows >= 1 and set(columns) == {"age", "plan", "note"}
    assert all(len(column) == rows for column in columns.values())
