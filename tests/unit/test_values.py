"""The value rules on frames (kiln/values.py: the routes' rules, vectorised, one reason per
bad value), and batch scoring's file helpers."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from kiln.artifact import FeatureKind
from kiln.errors import InvalidInput
from kiln.records import decode_instances
from kiln.values import check_frame
from training.batch import _output_format, default_rejects_path, estimate_rows

NUM, CAT, TXT = FeatureKind.numeric, FeatureKind.categorical, FeatureKind.text


def test_numbers_read_as_text_are_parsed_and_bad_ones_refused() -> None:
    frame = pd.DataFrame({"age": pd.Series(["1.5", "abc", None, "inf", "1e39", "-2"], dtype=str)})
    checked = check_frame(frame, [("age", NUM)])
    assert checked.bad.tolist() == [False, True, False, True, True, False]
    assert checked.reasons == {
        1: ["age: 'abc' is not a number"],
        3: ["age: inf is not a finite float32 number"],
        4: ["age: 1e+39 is not a finite float32 number"],
    }
    values = checked.columns["age"]
    assert values.dtype == np.float32
    assert values[0] == 1.5 and values[5] == -2 and math.isnan(values[2])


def test_typed_columns_follow_the_service() -> None:
    frame = pd.DataFrame(
        {
            "n": [1.0, np.nan, np.inf, -np.inf, 3.0],
            "flag": [True, False, True, False, True],
            "plan": pd.Series(["a", None, "b", "c", "d"], dtype=str),
            "code": [1.5, np.nan, 2.0, 3.0, 4.0],
            "note": [1, 2, 3, 4, 5],
        }
    )
    features = [("n", NUM), ("plan", CAT), ("code", CAT), ("note", TXT)]
    checked = check_frame(frame, features)
    assert checked.reasons[0] == [
        "code: expected a string (or an integer code), got number 1.5",
        "note: expected a string, got number 1",
    ]
    assert checked.reasons[2][0] == "n: inf is not a finite float32 number"
    assert checked.reasons[3][0] == "n: -inf is not a finite float32 number"
    assert 1 in checked.reasons and checked.reasons[1] == ["note: expected a string, got number 2"]
    assert checked.bad.all()
    assert checked.columns["plan"].tolist() == ["a", "", "b", "c", "d"]
    assert checked.columns["code"].dtype == object

    booleans = check_frame(frame, [("flag", NUM)])
    assert booleans.bad.all() and booleans.reasons[0] == [
        "flag: expected a number, got boolean True"
    ]


def test_accepted_rows_are_typed_exactly_like_decode_instances() -> None:
    features = [("age", NUM), ("plan", CAT), ("note", TXT)]
    records = [
        {"age": 41.25, "plan": "fiber", "note": "called twice"},
        {"age": None, "plan": None, "note": None},
        {"age": 1e-8, "plan": "basic", "note": ""},
        {"age": -3.4e38, "plan": "x y", "note": "ünïcode"},
    ]
    want, _ = decode_instances({"instances": records}, features, max_rows=10)
    frame = pd.DataFrame(records).astype({"plan": str, "note": str})
    frame[["plan", "note"]] = frame[["plan", "note"]].where(frame[["plan", "note"]] != "None")
    checked = check_frame(frame, features)
    assert not checked.bad.any()
    for name, _ in features:
        got = checked.columns[name]
        assert got.dtype == want[name].dtype
        np.testing.assert_array_equal(got, want[name])


def test_estimate_rows(tmp_path: Path) -> None:
    small = tmp_path / "small.csv"
    small.write_text("a,b\n1,2\n3,4\n")
    assert estimate_rows(small) == 2
    big = tmp_path / "big.csv"
    pd.DataFrame({"a": np.arange(200_000), "b": "x"}).to_csv(big, index=False)
    estimate = estimate_rows(big)
    assert estimate is not None and abs(estimate - 200_000) < 20_000
    parquet = tmp_path / "p.parquet"
    pd.DataFrame({"a": np.arange(1234)}).to_parquet(parquet)
    assert estimate_rows(parquet) == 1234
    assert estimate_rows(tmp_path / "missing.csv") is None


def test_output_paths() -> None:
    assert default_rejects_path(Path("out/scores.parquet")) == Path("out/scores.rejects.csv")
    assert _output_format(Path("a.PARQUET")) == "parquet" and _output_format(Path("a.csv")) == "csv"
    with pytest.raises(InvalidInput, match=r"must end in \.csv or \.parquet"):
        _output_format(Path("a.json"))


def test_rows_whose_float_answers_are_not_finite_are_found_and_named() -> None:
    from kiln.errors import NonFiniteOutput
    from kiln.values import nonfinite_outputs

    outputs = {
        "label": np.array(["a", "b", "a", "b"], dtype=object),  # not floats: never checked
        "probabilities": np.array(
            [[0.1, 0.9], [np.nan, np.nan], [0.5, 0.5], [0.2, np.inf]], dtype=np.float32
        ),
        "prediction": np.array([[1.0], [2.0], [-np.inf], [np.nan]], dtype=np.float32),
    }
    found = nonfinite_outputs(outputs)
    assert found == {1: "probabilities = nan", 3: "probabilities = inf", 2: "prediction = -inf"}
    assert nonfinite_outputs({"p": np.ones((3, 2), np.float32)}) == {}
    error = NonFiniteOutput(found)
    assert error.status_code == 422
    assert error.message == (
        "row 1: the model's answer is not a finite number (probabilities = nan); its inputs "
        "are probably far outside the training data (also rows 2, 3)"
    )
    many = NonFiniteOutput({i: "prediction = nan" for i in range(20)}, shown=3)
    assert many.message.endswith("(also rows 1, 2, 3 and 16 more)")
