"""Generates ``training/data/churn.csv``: synthetic subscribers of a fictional broadband company.

Kiln's own data, made here from a seeded random generator (no real people): numeric and
categorical columns, missing values in several of them, and a churn label drawn from a known
logistic model so that a good classifier has something real to find. Deterministic: the same
seed writes the same bytes. Run ``python -m training.demo_data [PATH]``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd

__all__ = ["DEFAULT_PATH", "generate", "write"]

DEFAULT_PATH = Path(__file__).parent / "data" / "churn.csv"
PLANS = ["basic", "standard", "premium", "fiber"]
CONTRACTS = ["monthly", "annual", "two-year"]
REGIONS = ["north", "south", "east", "west", "central"]
PAYMENTS = ["card", "direct-debit", "bank-transfer", "cash"]


def generate(rows: int = 3000, seed: int = 20261125) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    plan = rng.choice(PLANS, size=rows, p=[0.35, 0.3, 0.15, 0.2])
    contract = rng.choice(CONTRACTS, size=rows, p=[0.55, 0.3, 0.15])
    region = rng.choice(REGIONS, size=rows)
    payment = rng.choice(PAYMENTS, size=rows, p=[0.4, 0.35, 0.15, 0.1])
    tenure = rng.gamma(2.0, 14.0, size=rows).round().clip(1, 120)
    base = {"basic": 25.0, "standard": 40.0, "premium": 65.0, "fiber": 55.0}
    charge = np.array([base[p] for p in plan]) + rng.normal(0, 6, size=rows)
    data_gb = rng.lognormal(4.0, 0.8, size=rows)
    calls = rng.poisson(1.2 + 1.5 * (plan == "fiber"), size=rows)
    age = rng.normal(45, 14, size=rows).round().clip(18, 90)

    logit = (
        -1.2
        + 1.6 * (contract == "monthly")
        - 0.9 * (contract == "two-year")
        - 0.035 * tenure
        + 0.45 * calls
        + 0.025 * (charge - 40)
        + 0.6 * (payment == "cash")
        + 0.5 * (region == "east")
        - 0.01 * (age - 45)
    )
    churned = np.where(rng.random(rows) < 1 / (1 + np.exp(-logit)), "yes", "no")

    frame = pd.DataFrame(
        {
            "customer_id": [f"C{i:05d}" for i in range(1, rows + 1)],
            "tenure_months": tenure,
            "monthly_charge": charge.round(2),
            "data_gb": data_gb.round(1),
            "support_calls": calls.astype(float),
            "age": age,
            "plan": plan,
            "contract": contract,
            "region": region,
            "payment_method": payment,
            "churned": churned,
        }
    )
    for column, share in [
        ("tenure_months", 0.03),
        ("data_gb", 0.08),
        ("age", 0.12),
        ("plan", 0.04),
        ("payment_method", 0.06),
    ]:
        frame.loc[rng.random(rows) < share, column] = np.nan
    for column in ("tenure_months", "support_calls", "age"):
        frame[column] = frame[column].astype("Int64")
    return frame


def write(path: Path = DEFAULT_PATH, rows: int = 3000, seed: int = 20261125) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    generate(rows, seed).to_csv(path, index=False, lineterminator="\n")
    return path


if __name__ == "__main__":
    print(write(Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_PATH))
