"""An input's parts (training/parts.py) and the check that they agree (training/batch.py)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from kiln.errors import DataError
from training.batch import open_parts
from training.parts import list_parts
from training.rayscore import _plan

FRAME = pd.DataFrame({"a": [1.0, 2.0, 3.0], "b": ["x", "y", "z"]})


def _write(path: Path, frame: pd.DataFrame = FRAME) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".parquet":
        frame.to_parquet(path)
    else:
        frame.to_csv(path, index=False)
    return path


def test_a_directory_is_its_data_files_at_any_depth_in_name_order(tmp_path: Path) -> None:
    for name in ("b.csv", "a.csv", "2026/01/c.csv", ".hidden.csv", "_SUCCESS", "notes.md"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("a,b\n1,x\n")
    parts = list_parts(tmp_path)
    assert [p.name for p in parts] == ["2026/01/c.csv", "a.csv", "b.csv"]
    assert parts[1].location == f"{tmp_path}/a.csv"


def test_a_glob_and_a_file_and_a_file_uri(tmp_path: Path) -> None:
    _write(tmp_path / "x1.parquet")
    _write(tmp_path / "x2.parquet")
    _write(tmp_path / "y.parquet")
    assert [p.name for p in list_parts(str(tmp_path / "x*.parquet"))] == [
        str(tmp_path / "x1.parquet"),
        str(tmp_path / "x2.parquet"),
    ]
    assert [p.location for p in list_parts(tmp_path / "y.parquet")] == [str(tmp_path / "y.parquet")]
    uri = f"file://{tmp_path}"
    assert list_parts(uri)[0].location == f"{uri}/x1.parquet"
    sources = open_parts(uri)  # read through pyarrow's filesystem, as an object store is
    assert sources[0][1].columns == ["a", "b"] and sources[0][1].row_groups == (3,)


@pytest.mark.parametrize(
    ("make", "words"),
    [
        (lambda d: d / "missing.csv", "file not found"),
        (lambda d: d, "holds no CSV, TSV or Parquet file"),
        (lambda d: d / "*.csv", "matches no CSV, TSV or Parquet file"),
    ],
)
def test_nothing_to_read_is_named(tmp_path: Path, make: object, words: str) -> None:
    with pytest.raises(DataError, match=words):
        list_parts(make(tmp_path))  # type: ignore[operator]


def test_a_part_with_other_columns_is_named_with_the_difference(tmp_path: Path) -> None:
    _write(tmp_path / "a.csv")
    _write(tmp_path / "b.csv", FRAME.rename(columns={"b": "c"}))
    with pytest.raises(DataError) as caught:
        open_parts(tmp_path)
    assert str(caught.value) == (
        f"{tmp_path}/b.csv: its columns differ from the first part's (a.csv): no 'b'; 'c' as well"
    )


def test_a_parquet_part_with_another_type_is_named(tmp_path: Path) -> None:
    _write(tmp_path / "a.parquet")
    _write(tmp_path / "b.parquet", FRAME.assign(a=["1", "2", "3"]))
    with pytest.raises(DataError, match=r"b\.parquet: its schema differs .*'a' is (large_)?str"):
        open_parts(tmp_path)


def test_a_corrupt_part_is_named(tmp_path: Path) -> None:
    _write(tmp_path / "a.parquet")
    (tmp_path / "b.parquet").write_bytes(b"PAR1 not really")
    with pytest.raises(DataError, match=r"b\.parquet: cannot be read as PARQUET"):
        open_parts(tmp_path)


def test_units_are_whole_row_groups_numbered_by_their_file(tmp_path: Path) -> None:
    big = pd.DataFrame({"a": [float(i) for i in range(10)], "b": ["x"] * 10})
    big.to_parquet(tmp_path / "a.parquet", row_group_size=3)  # groups of 3, 3, 3, 1
    _write(tmp_path / "b.parquet")  # one row group: the whole file
    units = _plan(open_parts(tmp_path), chunk_rows=5)
    assert [(u.name, u.first_row, u.row_groups, u.last) for u in units] == [
        ("a.parquet", 1, (0, 1), False),
        ("a.parquet", 7, (2, 3), True),
        ("b.parquet", 1, None, True),
    ]


def test_csv_and_parquet_parts_do_not_mix(tmp_path: Path) -> None:
    _write(tmp_path / "a.parquet")
    _write(tmp_path / "b.csv")  # the same values, typed by another reader
    with pytest.raises(DataError, match=r"b\.csv: its schema differs .*it is CSV, a\.parquet is"):
        open_parts(tmp_path)
