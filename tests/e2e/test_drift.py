"""Drift on a real server, seen by a real Prometheus with the repository's rules.

The server (`bentoml serve`, tests/servers.py) serves the test store's churn with a small
drift window updated every half second. A real ``prometheus`` scrapes it every second and
evaluates deploy/monitoring/rules every second. First rows drawn from churn's own training
file (training/data/churn.csv, the file its spec reads) fill the window: every gauge stays
low. Then a stream of shifted rows (every number moved by several standard deviations, a
plan never seen in training) replaces the window: the feature gauges rise above 0.2 and the
input-check counters count, and the drift and unseen-category alerts go pending in
Prometheus' own evaluation (their ``for`` of 30 and 10 minutes is promtool's to test:
deploy/monitoring/tests). Loopback only; bounded in rows and time.
"""

from __future__ import annotations

import math
import shutil
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pandas as pd
import pytest

from kiln.drift import SHIFTED, bin_count, psi_of_counts
from tests.conftest import REPO, SPECS
from tests.servers import kiln_server, prometheus_query, prometheus_server, wait_for
from training.data import read_file, resolve_paths
from training.spec import load_spec

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

PROMETHEUS = shutil.which("prometheus")
RULES = REPO / "deploy" / "monitoring" / "rules" / "kiln-rules.yaml"
WINDOW = 2000  # rows in the drift window
REQUEST_ROWS = 100
NEW_PLAN = "quantum"  # a plan churn never saw


def training_rows() -> pd.DataFrame:
    """churn's training file, as its spec reads it, without the target and dropped columns."""
    spec = load_spec(SPECS / "churn.yaml")
    paths = resolve_paths(spec.data.paths, SPECS)
    frame = pd.concat([read_file(path, spec, set()) for path in paths], ignore_index=True)
    return frame[list(spec.features)]


def instances(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows as a client sends them: NaN is null."""
    return [
        {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in row.items()}
        for row in frame.to_dict(orient="records")
    ]


def shifted(frame: pd.DataFrame) -> pd.DataFrame:
    """Every number moved up by three of its standard deviations; a plan never seen."""
    out = frame.copy()
    for name in out.select_dtypes("number"):
        out[name] = out[name] + 3 * out[name].std()
    out["plan"] = NEW_PLAN
    return out


def moved() -> set[str]:
    """The features :func:`shifted` changes: the numbers and the plan."""
    frame = training_rows()
    return {*frame.select_dtypes("number").columns, "plan"}


def metrics(server: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """``/metrics`` as {(name, labels): value}, for the kiln_ families."""
    found = {}
    for line in httpx.get(f"{server}/metrics", timeout=10).text.splitlines():
        if not line.startswith("kiln_"):
            continue
        series, value = line.rsplit(" ", 1)
        name, _, labels = series.partition("{")
        pairs = [p.split("=", 1) for p in labels.rstrip("}").split(",") if "=" in p]
        found[(name, frozenset((k, v.strip('"')) for k, v in pairs))] = float(value)
    return found


def of(found: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str) -> dict[str, float]:
    """churn's series of ``name``, by feature (or "" for series without one)."""
    return {
        dict(labels).get("feature", ""): value
        for (metric, labels), value in found.items()
        if metric == name and dict(labels).get("model") == "churn"
    }


@pytest.fixture(scope="module")
def server(
    served_models: dict[str, Any], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    log = tmp_path_factory.mktemp("drift") / "server.log"
    settings = {
        "KILN_SERVE_MODELS": f'["{served_models["churn"].tag}"]',
        "KILN_SERVE_DRIFT_WINDOW": str(WINDOW),
        "KILN_SERVE_DRIFT_INTERVAL": "0.5",
        "KILN_SERVE_DRIFT_MIN_ROWS": "1000",
    }
    with kiln_server(served_models, log, **settings) as url:
        yield url


@pytest.fixture(scope="module")
def prometheus(server: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str | None]:
    """A real Prometheus scraping ``server`` with the repository's rules (None: not
    installed; only the alert test needs it)."""
    if PROMETHEUS is None:
        yield None
        return
    home = tmp_path_factory.mktemp("prometheus")
    with prometheus_server(PROMETHEUS, server, [RULES], home) as url:
        # Its first scrape comes seconds after it is ready: the rates need scrapes before
        # and during the streams.
        wait_for("a first scrape", lambda: prometheus_query(url, 'up{job="kiln"} == 1') or None)
        yield url


def send(server: str, frame: pd.DataFrame) -> None:
    rows = instances(frame)
    with httpx.Client(base_url=server, timeout=30) as client:
        for start_at in range(0, len(rows), REQUEST_ROWS):
            body = {"instances": rows[start_at : start_at + REQUEST_ROWS]}
            response = client.post("/v1/models/churn/predict", json=body)
            assert response.status_code == 200, response.text
            # 4 requests a second: a few per drift interval (none is skipped), and the
            # stream spans 5 of Prometheus' scrapes (its rates see the counters grow)
            time.sleep(0.25)


def window_holds(server: str, rows: int, gauge_ok: Callable[[dict[str, float]], bool]) -> Any:
    def check() -> dict[tuple[str, frozenset[tuple[str, str]]], float] | None:
        found = metrics(server)
        full = of(found, "kiln_drift_window_rows").get("") == rows
        return found if full and gauge_ok(of(found, "kiln_feature_drift_psi")) else None

    return check


@pytest.fixture(scope="module")
def like_training(server: str, prometheus: str | None) -> dict[str, Any]:
    """The gauges after a window of rows from churn's training file."""
    frame = training_rows().sample(WINDOW, random_state=0)
    before = metrics(server)
    assert not of(before, "kiln_feature_drift_psi")  # nothing shown before min rows
    send(server, frame)
    return wait_for("a full window", window_holds(server, WINDOW, bool))


def all_unseen(served_models: dict[str, Any]) -> float:
    """The PSI of churn's plan when every row of the window has a plan never seen: all in
    the "other" bin, computed from its kiln.json apart from the service."""
    bins = served_models["churn"].metadata.reference.features["plan"].bins
    counts = [0] * bin_count(bins)
    counts[len(bins.categories)] = WINDOW  # "other" follows the categories
    return psi_of_counts(bins.shares, counts)


@pytest.fixture(scope="module")
def drifted(
    server: str, like_training: dict[str, Any], served_models: dict[str, Any]
) -> dict[str, Any]:
    """The gauges once the window holds only shifted rows (sent after the training-like
    ones): the plan's PSI is then the one of a window of unseen plans."""
    frame = shifted(training_rows().sample(WINDOW, random_state=1))
    send(server, frame)
    expected = all_unseen(served_models)
    return wait_for(
        "a window of shifted rows",
        window_holds(server, WINDOW, lambda psi: psi.get("plan") == pytest.approx(expected)),
    )


def test_rows_like_the_training_data_keep_the_gauges_low(like_training: dict[str, Any]) -> None:
    features = of(like_training, "kiln_feature_drift_psi")
    assert set(features) == set(training_rows().columns)
    assert max(features.values()) < 0.1, features
    (prediction,) = of(like_training, "kiln_prediction_drift_psi").values()
    assert prediction < 0.1
    assert of(like_training, "kiln_drift_rows_skipped_total") == {"": 0}


def test_shifted_rows_move_the_gauges_and_the_counters(
    like_training: dict[str, Any], drifted: dict[str, Any]
) -> None:
    features = of(drifted, "kiln_feature_drift_psi")
    assert min(features[f] for f in moved()) > SHIFTED, features
    assert features["plan"] > 1  # every row in the "other" bin
    assert max(v for f, v in features.items() if f not in moved()) < 0.1, features
    # the window was replaced by shifted rows: predictions moved too
    before = of(like_training, "kiln_prediction_drift_psi")[""]
    assert of(drifted, "kiln_prediction_drift_psi")[""] > before
    unseen = of(drifted, "kiln_input_unseen_category_total")
    assert unseen.get("plan") == WINDOW, unseen
    out_of_range = of(drifted, "kiln_input_out_of_range_total")
    assert out_of_range and max(out_of_range.values()) > 0


def _alerts(prometheus: str) -> list[dict[str, Any]]:
    body = httpx.get(f"{prometheus}/api/v1/alerts", timeout=10).json()
    return list(body["data"]["alerts"])


def test_the_drift_and_unseen_category_alerts_go_pending_in_prometheus(
    drifted: dict[str, Any], prometheus: str | None
) -> None:
    if prometheus is None:
        pytest.skip("prometheus is not installed (apt-get install prometheus)")

    def pending(name: str) -> Callable[[], list[dict[str, Any]] | None]:
        def check() -> list[dict[str, Any]] | None:
            found = [
                a
                for a in _alerts(prometheus)
                if a["labels"]["alertname"] == name and a["labels"].get("model") == "churn"
            ]
            return found or None

        return check

    drifting = wait_for("KilnFeatureDrift pending", pending("KilnFeatureDrift"))
    assert {a["state"] for a in drifting} == {"pending"}  # its `for` is 30 minutes
    assert {a["labels"]["feature"] for a in drifting} == moved()
    assert all(a["labels"]["severity"] == "warning" for a in drifting)
    unseen = wait_for("KilnUnseenCategories pending", pending("KilnUnseenCategories"))
    assert [a["state"] for a in unseen] == ["pending"]
    assert float(unseen[0]["value"]) > 0.01
    rules = httpx.get(f"{prometheus}/api/v1/rules", timeout=10).json()["data"]["groups"]
    broken = {
        r["name"]: r.get("lastError") for g in rules for r in g["rules"] if r["health"] == "err"
    }
    assert not broken
    # Prometheus' own query of the gauge agrees with what the server exported
    exported = of(drifted, "kiln_feature_drift_psi")["plan"]
    plan = 'kiln_feature_drift_psi{job="kiln", model="churn", feature="plan"}'
    wait_for(
        f"{plan} == {exported}",
        lambda: (
            [
                r
                for r in prometheus_query(prometheus, plan)
                if math.isclose(float(r["value"][1]), exported)
            ]
            or None
        ),
    )
