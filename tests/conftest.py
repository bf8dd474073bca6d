"""Shared fixtures: an isolated model store, and small data sets made in the test."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[1]
SPECS = REPO / "training" / "specs"
SMS = REPO.parent / "shared" / "data" / "sms"
# One row of the churn demo model, as a client sends it (null: missing, imputed).
CHURN_ROW = {
    "tenure_months": 3,
    "monthly_charge": 70.5,
    "data_gb": None,
    "support_calls": 4,
    "age": 30,
    "plan": "fiber",
    "contract": "monthly",
    "region": "east",
    "payment_method": "cash",
}


@pytest.fixture(scope="session", autouse=True)
def bentoml_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every test run gets its own model store; the user's ~/bentoml is never touched."""
    home = tmp_path_factory.mktemp("bentoml")
    os.environ["BENTOML_HOME"] = str(home)
    os.environ["KILN_TRAIN_REPORTS_DIR"] = str(tmp_path_factory.mktemp("reports"))
    return home


def run_kiln(*args: str) -> subprocess.CompletedProcess[str]:
    """``kiln ARGS`` as a user runs it, in a child process over this session's store (its
    BENTOML_HOME), uncoloured and wide, so that tests read its output as plain text."""
    env = {**os.environ, "NO_COLOR": "1", "COLUMNS": "200"}
    return subprocess.run(
        [sys.executable, "-m", "training", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def mixed_frame(rows: int = 400, classes: int = 2, seed: int = 0) -> pd.DataFrame:
    """Numeric and categorical columns with missing values, a spaced column name, a target.

    ``classes=0`` makes a regression target.
    """
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "size cm": rng.normal(10, 3, rows).round(3),
            "weight": rng.gamma(2, 5, rows).round(2),
            "count": rng.poisson(3, rows).astype(float),
            "colour": rng.choice(["red", "green", "blue", "dark red"], rows),
            "shop": rng.choice(["north", "south", "online"], rows),
        }
    )
    signal = (
        0.4 * (frame["size cm"] - 10)
        + 0.1 * frame["weight"]
        + 1.2 * (frame["colour"] == "red")
        - 0.8 * (frame["shop"] == "online")
        + rng.normal(0, 0.7, rows)
    )
    if classes == 0:
        frame["target"] = (signal * 30 + 150).round(2)
    else:
        edges = np.quantile(signal, np.linspace(0, 1, classes + 1)[1:-1])
        names = np.array(["low", "mid", "high", "top"][:classes] if classes > 2 else ["no", "yes"])
        frame["target"] = names[np.searchsorted(edges, signal)]
    for column, share in [("size cm", 0.1), ("weight", 0.05), ("colour", 0.08)]:
        frame.loc[rng.random(rows) < share, column] = np.nan
    return frame


@pytest.fixture(scope="session")
def served_models(bentoml_home: Path) -> dict[str, Any]:
    """churn (mixed types), wine (3 classes) and diabetes (regression), trained once."""
    from training.run import train
    from training.spec import load_spec

    return {
        name: train(load_spec(SPECS / f"{name}.yaml"), spec_path=SPECS / f"{name}.yaml")
        for name in ("churn", "wine", "diabetes")
    }


@pytest.fixture(scope="module")
def server(
    served_models: dict[str, Any], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """The real server (`bentoml serve`, tests/servers.py) serving ``served_models``."""
    from tests.servers import kiln_server

    log = tmp_path_factory.mktemp("server") / "server.log"
    with kiln_server(served_models, log) as url:
        yield url


# Keys of `keyed_server`: one from the environment, two from a secret file (a rotation).
API_KEYS = ("env-key-1", "file-key-old", "file-key-new")


def keyed_settings(directory: Path) -> dict[str, str]:
    """A server's settings with API keys: one from the environment, two from a key file
    written in ``directory`` (as a mounted secret), and the access log on."""
    secret = directory / "api-keys"
    secret.write_text(f"# mounted secret\n{API_KEYS[1]}\n{API_KEYS[2]}\n")
    return {
        "KILN_SERVE_API_KEYS": API_KEYS[0],
        "KILN_SERVE_API_KEYS_FILE": str(secret),
        "KILN_SERVE_ACCESS_LOG": "true",
    }


@pytest.fixture(scope="module")
def keyed_server(
    served_models: dict[str, Any], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, Path]]:
    """The real server with API keys set, and its log (with the access log on)."""
    from tests.servers import kiln_server

    directory = tmp_path_factory.mktemp("keyed")
    log = directory / "server.log"
    with kiln_server(served_models, log, **keyed_settings(directory)) as url:
        yield url, log
