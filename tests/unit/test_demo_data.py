"""The synthetic churn data: deterministic, and the shipped file is exactly what the code writes."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from tests.conftest import REPO, SPECS
from training.data import load_dataset, resolve_paths
from training.demo_data import DEFAULT_PATH, generate, write
from training.spec import load_spec

SHIPPED = REPO / "training" / "data" / "churn.csv"
WITH_MISSING = {"tenure_months", "data_gb", "age", "plan", "payment_method"}  # module docstring


def test_generate_is_deterministic() -> None:
    pd.testing.assert_frame_equal(generate(), generate())
    pd.testing.assert_frame_equal(generate(rows=50, seed=7), generate(rows=50, seed=7))
    assert not generate(rows=50, seed=7).equals(generate(rows=50, seed=8))


def test_shipped_file_is_what_write_produces(tmp_path: Path) -> None:
    assert DEFAULT_PATH.resolve() == SHIPPED
    written = write(tmp_path / "sub" / "churn.csv")
    assert written == tmp_path / "sub" / "churn.csv"
    assert written.read_bytes() == SHIPPED.read_bytes()


@pytest.fixture(scope="module")
def shipped() -> pd.DataFrame:
    return pd.read_csv(SHIPPED, dtype={"customer_id": str})


def test_shipped_file_has_missing_values_where_documented(shipped: pd.DataFrame) -> None:
    assert len(shipped) == 3000
    missing = shipped.isna().sum()
    assert set(missing[missing > 0].index) == WITH_MISSING
    assert (missing[list(WITH_MISSING)] / len(shipped)).between(0.01, 0.2).all()


def test_shipped_file_has_both_classes(shipped: pd.DataFrame) -> None:
    shares = shipped["churned"].value_counts(normalize=True)
    assert set(shares.index) == {"yes", "no"}
    assert shares.min() > 0.1  # both classes are well represented
    assert shipped["customer_id"].is_unique
    assert shipped["customer_id"].iloc[0] == "C00001"


def test_churn_spec_fits_the_shipped_data(shipped: pd.DataFrame) -> None:
    spec_path = SPECS / "churn.yaml"
    spec = load_spec(spec_path)
    [path] = resolve_paths(spec.data.paths, spec_path.parent)
    assert path.resolve() == SHIPPED
    ds = load_dataset(spec, [path])
    assert ds.rows == 3000
    assert set(ds.y) == {"yes", "no"}
    assert ds.X["age"].isna().sum() == shipped["age"].isna().sum() > 0
    assert (ds.X["plan"] == "").sum() == shipped["plan"].isna().sum() > 0  # missing: ""
