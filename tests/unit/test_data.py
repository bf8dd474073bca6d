"""Loading data for a spec: types, several files, formats, fingerprints, and every refusal."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_breast_cancer

from kiln.artifact import FeatureKind
from kiln.errors import DataError, SpecError
from tests.conftest import mixed_frame
from training.data import Dataset, load_dataset, resolve_paths
from training.spec import Spec, parse_spec

NUM, CAT = FeatureKind.numeric, FeatureKind.categorical
FEATURES = {
    "size cm": "numeric",
    "weight": "numeric",
    "count": "numeric",
    "colour": "categorical",
    "shop": "categorical",
}


def spec(**changes: Any) -> Spec:
    raw = {
        "name": "m",
        "task": "classification",
        "target": "target",
        "features": FEATURES,
        "estimator": {"type": "LogisticRegression"},
    }
    return parse_spec({**raw, **changes})


def csv(path: Path, frame: pd.DataFrame) -> Path:
    frame.to_csv(path, index=False)
    return path


def test_types_and_missing_values(tmp_path: Path) -> None:
    frame = mixed_frame(rows=80)
    ds = load_dataset(spec(), [csv(tmp_path / "d.csv", frame)])
    assert isinstance(ds, Dataset) and ds.rows == 80
    assert ds.features == [(n, FeatureKind(k)) for n, k in FEATURES.items()]
    for name in ("size cm", "weight", "count"):
        assert ds.X[name].dtype == np.float32
        expected = frame[name].to_numpy(dtype=np.float32)
        np.testing.assert_array_equal(ds.X[name].to_numpy(), expected)  # NaN == NaN here
    assert ds.X["size cm"].isna().sum() == frame["size cm"].isna().sum() > 0
    for name in ("colour", "shop"):
        values = ds.X[name].tolist()
        assert all(type(v) is str for v in values)
        assert values == frame[name].fillna("").tolist()
    assert "" in ds.X["colour"].tolist()
    assert ds.y.tolist() == frame["target"].tolist()


def test_categorical_and_text_values_kept_as_written(tmp_path: Path) -> None:
    path = tmp_path / "d.csv"
    path.write_text(
        'code,note,n,target\n007,"a, b",1,x\n7,  spaced ,2,x\n7.0,,3,y\n1e3,"say ""hi""",4,y\n'
    )
    s = spec(features={"code": "categorical", "note": "text", "n": "numeric"})
    ds = load_dataset(s, [path])
    assert ds.X["code"].tolist() == ["007", "7", "7.0", "1e3"]
    assert ds.X["note"].tolist() == ["a, b", "  spaced ", "", 'say "hi"']
    assert ds.X["n"].tolist() == [1.0, 2.0, 3.0, 4.0]


def test_only_an_empty_field_is_missing(tmp_path: Path) -> None:
    """The rule every served path applies (kiln/values.py): "NA" and "n/a" are categories
    in a categorical column, and refused in a numeric one, never read as missing."""
    path = tmp_path / "d.csv"
    path.write_text("plan,n,target\nNA,1,x\nn/a,,x\n,3,y\nnull,4,y\n")
    ds = load_dataset(spec(features={"plan": "categorical", "n": "numeric"}), [path])
    assert ds.X["plan"].tolist() == ["NA", "n/a", "", "null"]
    assert np.isnan(ds.X["n"].iloc[1]) and ds.X["n"].iloc[2] == 3.0
    path.write_text("plan,n,target\na,1,x\nb,n/a,x\nc,NA,y\n")
    with pytest.raises(SpecError) as caught:
        load_dataset(spec(features={"plan": "categorical", "n": "numeric"}), [path])
    message = str(caught.value)
    assert (
        "features.n" in message and "'n/a'" in message and "leave a missing value empty" in message
    )


def test_star_categorical_values_kept_as_written(tmp_path: Path) -> None:
    path = tmp_path / "d.csv"
    path.write_text("code,target\n007,x\n008,x\n1,y\n2,y\n")
    ds = load_dataset(spec(features={"*": "categorical"}), [path])
    assert ds.X["code"].tolist() == ["007", "008", "1", "2"]


def test_several_files_concatenated_and_fingerprinted(tmp_path: Path) -> None:
    frame = mixed_frame(rows=90)
    parts = [frame.iloc[:20], frame.iloc[20:55], frame.iloc[55:]]
    paths = [csv(tmp_path / f"{name}.csv", p) for name, p in zip("cab", parts, strict=True)]
    ds = load_dataset(spec(), paths)
    assert ds.rows == 90
    assert ds.y.tolist() == frame["target"].tolist()  # in the order given, not by name
    assert list(ds.X.index) == list(range(90))
    np.testing.assert_array_equal(ds.X["weight"], frame["weight"].to_numpy(np.float32))
    assert [f.source for f in ds.files] == [str(p) for p in paths]
    assert [f.rows for f in ds.files] == [20, 35, 35]
    for f, p in zip(ds.files, paths, strict=True):
        assert f.sha256 == hashlib.sha256(p.read_bytes()).hexdigest()
        assert f.modified is not None


def test_glob_resolves_sorted(tmp_path: Path) -> None:
    for name in ("part-2.csv", "part-10.csv", "part-1.csv", "other.csv"):
        (tmp_path / name).write_text("x\n")
    expected = [tmp_path / n for n in ("part-1.csv", "part-10.csv", "part-2.csv")]
    assert resolve_paths(["part-*.csv"], tmp_path) == expected
    assert resolve_paths([str(tmp_path / "part-*.csv")], Path("/elsewhere")) == expected
    both = resolve_paths(["other.csv", "part-1*.csv"], tmp_path)  # patterns keep their order
    assert both == [tmp_path / "other.csv", tmp_path / "part-1.csv", tmp_path / "part-10.csv"]


def test_glob_matching_nothing_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(DataError) as info:
        resolve_paths(["missing-*.csv"], tmp_path)
    assert info.value.source == "missing-*.csv"
    assert "no file matches" in str(info.value)


def test_parquet_reads_like_csv(tmp_path: Path) -> None:
    frame = mixed_frame(rows=60)
    from_csv = load_dataset(spec(), [csv(tmp_path / "d.csv", frame)])
    frame.to_parquet(tmp_path / "d.parquet", index=False)
    from_parquet = load_dataset(spec(), [tmp_path / "d.parquet"])
    pd.testing.assert_frame_equal(from_parquet.X, from_csv.X)
    pd.testing.assert_series_equal(from_parquet.y, from_csv.y)


@pytest.mark.parametrize(("name", "data"), [("sms.tsv", {}), ("sms.txt", {"format": "tsv"})])
def test_tsv_without_header(tmp_path: Path, name: str, data: dict[str, Any]) -> None:
    path = tmp_path / name
    path.write_text('ham\tsee you at 5, ok?\nspam\t"FREE" prize\nham\t\nspam\tcall now\n')
    s = spec(
        target="label",
        features={"text": "text"},
        data={"header": False, "columns": ["label", "text"], **data},
    )
    ds = load_dataset(s, [path])
    assert ds.X["text"].tolist() == ["see you at 5, ok?", '"FREE" prize', "", "call now"]
    assert ds.y.tolist() == ["ham", "spam", "ham", "spam"]


def test_tsv_with_more_fields_than_columns_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "sms.tsv"
    path.write_text("1\tham\thello\n2\tspam\tbuy\n3\tham\tyo\n4\tspam\tno\n")
    data = {"header": False, "columns": ["label", "text"]}
    s = spec(target="label", features={"text": "text"}, data=data)
    with pytest.raises(DataError):
        load_dataset(s, [path])


def test_star_takes_every_other_column(tmp_path: Path) -> None:
    frame = mixed_frame(rows=40)[["size cm", "target", "colour", "weight", "shop", "count"]]
    s = spec(features={"colour": "categorical", "*": "numeric"}, drop=["shop"])
    ds = load_dataset(s, [csv(tmp_path / "d.csv", frame)])
    assert ds.features == [("colour", CAT), ("size cm", NUM), ("weight", NUM), ("count", NUM)]
    assert list(ds.X.columns) == ["colour", "size cm", "weight", "count"]


def test_no_paths_is_a_spec_error() -> None:
    with pytest.raises(SpecError) as info:
        load_dataset(spec(), [])
    assert info.value.problems[0][0] == "data.paths"


def test_bundled_breast_cancer() -> None:
    s = spec(target="diagnosis", features={"*": "numeric"}, data={"sklearn": "breast_cancer"})
    ds = load_dataset(s, [])
    bunch = load_breast_cancer()
    assert "mean_radius" in ds.X.columns and "worst_fractal_dimension" in ds.X.columns
    assert len(ds.features) == 30
    assert all(name.replace("_", "").isalnum() and name.islower() for name in ds.X.columns)
    assert set(ds.y) == {"benign", "malignant"}
    assert (ds.y == "malignant").sum() == (bunch.target == 0).sum()  # 0 is malignant
    np.testing.assert_array_equal(ds.X.to_numpy(), bunch.data.astype(np.float32))
    [file] = ds.files
    assert (file.source, file.rows, file.modified) == ("sklearn:breast_cancer", 569, None)
    assert len(file.sha256) == 64 and load_dataset(s, []).files[0].sha256 == file.sha256


# --- refusals: the spec does not fit the data -------------------------------------------------


def _drop(column: str) -> Callable[[pd.DataFrame], pd.DataFrame]:
    return lambda f: f.drop(columns=column)


def _set(column: str, values: list[Any]) -> Callable[[pd.DataFrame], pd.DataFrame]:
    def change(frame: pd.DataFrame) -> pd.DataFrame:
        frame = frame.head(len(values)).copy()
        frame[column] = values
        return frame

    return change


def _set_at(column: str, row: int, value: Any) -> Callable[[pd.DataFrame], pd.DataFrame]:
    def change(frame: pd.DataFrame) -> pd.DataFrame:
        frame = frame.copy()
        frame[column] = frame[column].astype(object)
        frame.loc[row, column] = value
        return frame

    return change


REG = {"task": "regression", "estimator": {"type": "Ridge"}}

# fmt: off
SPEC_ERRORS = [
    pytest.param(_drop("colour"), {}, "features.colour", "no column 'colour'", id="no-feature"),
    pytest.param(_drop("target"), {}, "target", "no column 'target'", id="no-target"),
    pytest.param(lambda f: f, {"drop": ["id"]}, "drop", "no column 'id'", id="no-drop-column"),
    pytest.param(lambda f: f, {"features": {**FEATURES, "colour": "numeric"}}, "features.colour",
                 "declare it categorical", id="categorical-as-numeric"),
    pytest.param(_set_at("weight", 3, "inf"), {}, "features.weight", "holds 1 infinite",
                 id="infinite"),
    pytest.param(_set("target", ["no"] * 6), {}, "target", "has one class ('no')",
                 id="one-class"),
    pytest.param(_set("target", ["a", "a", "b", "b", "c"]), {}, "target",
                 "class 'c' has a single row", id="single-row-class"),
    pytest.param(_set("target", [1.5, 2.0, "lots", 3.0]), REG, "target",
                 "task is regression but 'target' holds 'lots'", id="regression-text"),
    pytest.param(_set_at("weight", 3, "1e40"), {}, "features.weight", "float32-overflowing",
                 id="float32-overflow"),
    pytest.param(_set_at("target", 3, "inf"), REG, "target", "infinite", id="regression-inf"),
]
# fmt: on


@pytest.mark.parametrize(("change", "changes", "field", "message"), SPEC_ERRORS)
def test_spec_does_not_fit_data(
    tmp_path: Path,
    change: Callable[[pd.DataFrame], pd.DataFrame],
    changes: dict[str, Any],
    field: str,
    message: str,
) -> None:
    frame = change(mixed_frame(rows=40, classes=0 if changes is REG else 2))
    with pytest.raises(SpecError) as info:
        load_dataset(spec(**changes), [csv(tmp_path / "d.csv", frame)])
    fields = [f for f, _ in info.value.problems]
    assert field in fields, info.value.problems
    assert message in dict(info.value.problems)[field]


def test_empty_target_cells(tmp_path: Path) -> None:
    frame = mixed_frame(rows=40)
    frame.loc[[3, 7], "target"] = np.nan
    path = csv(tmp_path / "d.csv", frame)
    with pytest.raises(DataError) as info:
        load_dataset(spec(), [path])
    assert info.value.source == str(path)
    assert "target 'target' is empty in 2 of 40 rows" in str(info.value)


# --- refusals: the file cannot be read ---------------------------------------------------------

GOOD = b"size cm,weight,count,colour,shop,target\n1,2,3,red,north,no\n2,3,4,blue,south,yes\n"

# fmt: off
FILE_ERRORS = [
    pytest.param("d.csv", b"", "cannot be read as CSV", id="empty-file"),
    pytest.param("d.csv", GOOD.split(b"\n")[0] + b"\n", "has no data rows", id="header-only"),
    pytest.param("d.parquet", os.urandom(256), "cannot be read as PARQUET", id="corrupt-parquet"),
    pytest.param("d.csv", GOOD + b"3,4,5,caf\xe9,north,no\n", "cannot be read as CSV",
                 id="bad-encoding"),
    pytest.param("d.csv", GOOD + b"3,4,5,red,north,no,extra\n", "Expected 6 fields",
                 id="ragged-row"),
    pytest.param("d.csv", GOOD.replace(b"north,no\n", b"north,no,extra\n", 1), "cannot be read",
                 id="ragged-first-row"),
]
# fmt: on


@pytest.mark.parametrize(("name", "content", "message"), FILE_ERRORS)
def test_unreadable_file(tmp_path: Path, name: str, content: bytes, message: str) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(DataError) as info:
        load_dataset(spec(), [path])
    assert info.value.source == str(path)
    assert message in str(info.value)


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.csv"
    with pytest.raises(DataError) as info:
        load_dataset(spec(), [path])
    assert (info.value.source, info.value.message) == (str(path), f"{path}: file not found")


def test_second_file_missing_a_column(tmp_path: Path) -> None:
    frame = mixed_frame(rows=40)
    first = csv(tmp_path / "a.csv", frame.iloc[:20])
    second = csv(tmp_path / "b.csv", frame.iloc[20:].drop(columns=["shop", "count"]))
    with pytest.raises(DataError) as info:
        load_dataset(spec(), [first, second])
    assert info.value.source == str(second)
    assert "columns differ from a.csv: missing 'count', 'shop'" in str(info.value)


def test_first_file_missing_a_column(tmp_path: Path) -> None:
    frame = mixed_frame(rows=40)
    first = csv(tmp_path / "a.csv", frame.iloc[:20].drop(columns=["shop"]))
    second = csv(tmp_path / "b.csv", frame.iloc[20:])
    with pytest.raises(DataError):
        load_dataset(spec(), [first, second])
