"""service/drift.py: the rolling drift window, its queue, its PSI and its gauges, in-process."""

from __future__ import annotations

import math
import shutil
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from kiln.artifact import METADATA_FILE, Bins, ModelMetadata, Task, read_metadata
from kiln.drift import SHIFTED, bin_counts, bin_index, prediction_output, psi
from service.drift import MAX_PENDING_REQUESTS, DriftMonitor, DriftWindow
from service.metrics import Metrics
from service.settings import ServingSettings

TESTDATA = Path(__file__).resolve().parents[2] / "testdata"


@pytest.fixture
def meta(tmp_path: Path) -> ModelMetadata:
    """The schema-3 fixture: churn-like, five numbers and four categoricals, a classifier."""
    shutil.copy(TESTDATA / "metadata-v3.json", tmp_path / METADATA_FILE)
    return read_metadata(tmp_path)


def _draw(bins: Bins, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` values distributed as ``bins`` says the training data was."""
    shares = np.asarray(bins.shares) / sum(bins.shares)
    which = rng.choice(len(shares), size=n, p=shares)
    if bins.edges is None:
        values = [*(bins.categories or []), "some other value", ""]
        return np.asarray([values[i] for i in which], dtype=object)
    edges = [bins.edges[0] - 1.0, *bins.edges, bins.edges[-1] + 1.0]
    low, high = np.asarray(edges[:-1]), np.asarray(edges[1:])
    inner = np.minimum(which, len(low) - 1)
    drawn = low[inner] + rng.random(n) * (high[inner] - low[inner])
    drawn[which == len(shares) - 1] = np.nan  # the missing bin
    return drawn.astype(np.float32)


def _request(
    meta: ModelMetadata, n: int, rng: np.random.Generator, shift: float = 0.0
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Typed columns and outputs of one ``n``-row request, drawn like the training data;
    ``shift`` adds that many spans of the training range to every number."""
    assert meta.reference is not None and meta.reference.prediction is not None
    columns = {}
    for name, ref in meta.reference.features.items():
        column = _draw(ref.bins, n, rng)
        if ref.bins.edges is not None and shift:
            span = (ref.high or 1.0) - (ref.low or 0.0)
            column = column + np.float32(shift * span)
        columns[name] = column
    outputs = {"label": _draw(meta.reference.prediction, n, rng)}
    return columns, outputs


def _window(meta: ModelMetadata, size: int, min_rows: int = 1, **kw: object) -> DriftWindow:
    return DriftWindow(meta, size=size, min_rows=min_rows, **kw)  # type: ignore[arg-type]


def test_the_ring_wraps_around_and_keeps_the_last_rows_in_order(meta: ModelMetadata) -> None:
    rng = np.random.default_rng(1)
    window = _window(meta, size=100)
    sent = []
    for n in (60, 30, 45, 70):  # 205 rows: the ring wraps twice
        columns, outputs = _request(meta, n, rng)
        window.offer(columns, outputs, n)
        assert window.update()
        sent.append(columns["age"])
    last = np.concatenate(sent)[-100:]
    (age,) = [i for i, (name, _) in enumerate(window.features) if name == "age"]
    oldest_first = (window._next + np.arange(window.size)) % window.size
    bins = meta.reference.features["age"].bins  # type: ignore[union-attr]
    assert window.filled == 100
    assert window.ring[age, oldest_first].tolist() == bin_index(bins, last).tolist()
    assert window.counts(age).tolist() == bin_counts(bins, last).tolist()


def test_psi_is_kiln_drift_psi_over_the_same_rows(meta: ModelMetadata) -> None:
    assert meta.reference is not None and meta.reference.prediction is not None
    rng = np.random.default_rng(2)
    window = _window(meta, size=500)
    parts = [_request(meta, n, rng, shift=0.3 if i % 2 else 0.0) for i, n in enumerate((400, 300))]
    for columns, outputs in parts:
        window.offer(columns, outputs, len(outputs["label"]))
        window.update()
    for name, ref in meta.reference.features.items():
        rows = np.concatenate([columns[name] for columns, _ in parts])[-500:]
        assert window.feature_psi[name] == pytest.approx(psi(ref.bins, rows), abs=1e-12), name
    labels = np.concatenate([outputs["label"] for _, outputs in parts])[-500:]
    assert window.prediction_psi == pytest.approx(psi(meta.reference.prediction, labels))
    # the shifted half moved the numbers, not the categories
    assert window.feature_psi["age"] > SHIFTED > window.feature_psi["plan"]


def test_training_like_rows_read_low_and_shifted_ones_high(meta: ModelMetadata) -> None:
    rng = np.random.default_rng(3)
    window = _window(meta, size=10_000)
    columns, outputs = _request(meta, 10_000, rng)
    window.offer(columns, outputs, 10_000)
    window.update()
    assert max(window.feature_psi.values()) < 0.02
    assert window.prediction_psi is not None and window.prediction_psi < 0.02
    columns, outputs = _request(meta, 10_000, rng, shift=2.0)
    columns["plan"] = np.full(10_000, "quantum", dtype=object)  # a category never seen
    window.offer(columns, outputs, 10_000)
    window.update()
    numbers = [n for n, ref in meta.reference.features.items() if ref.bins.edges]  # type: ignore[union-attr]
    assert min(window.feature_psi[n] for n in numbers) > 1.0
    assert window.feature_psi["plan"] > 1.0


def test_a_full_queue_skips_requests_and_counts_their_rows(meta: ModelMetadata) -> None:
    registry = CollectorRegistry()
    window = _window(meta, size=100, metrics=Metrics(registry))
    rng = np.random.default_rng(4)
    first, second, third = (_request(meta, 60, rng) for _ in range(3))
    window.offer(*first, 60)
    window.offer(*second, 60)  # 60 waiting + 60 > 100: not sampled
    assert (window.pending_rows, window.skipped) == (60, 60)
    assert registry.get_sample_value("kiln_drift_rows_skipped_total", {"model": "churn"}) == 0
    window.update()  # the counter is updated off the request path
    assert registry.get_sample_value("kiln_drift_rows_skipped_total", {"model": "churn"}) == 60
    window.offer(*third, 60)  # the queue is empty again
    assert window.pending_rows == 60 and window.skipped == 60
    # a request larger than the window is taken when nothing waits; its last rows are kept
    window.update()
    big = _request(meta, 250, rng)
    window.offer(*big, 250)
    window.update()
    assert window.filled == 100 and window.pending_rows == 0
    (age,) = [i for i, (name, _) in enumerate(window.features) if name == "age"]
    bins = meta.reference.features["age"].bins  # type: ignore[union-attr]
    assert window.counts(age).tolist() == bin_counts(bins, big[0]["age"][-100:]).tolist()


def test_memory_is_bounded_by_the_window_and_the_features(meta: ModelMetadata) -> None:
    window = _window(meta, size=10_000)
    tracked = len(window.features) + 1  # and the prediction
    assert window.nbytes == tracked * 10_000  # one byte per feature and row
    assert window.ring.dtype == np.uint8
    rng = np.random.default_rng(5)
    columns, outputs = _request(meta, 1000, rng)
    for _ in range(50):  # 50,000 rows offered, in 1,000-row requests
        for _ in range(15):
            window.offer(columns, outputs, 1000)
        assert window.pending_rows <= window.size  # 10 of the 15 queued, 5 skipped
        window.update()
        assert window.nbytes == tracked * 10_000
    assert window.skipped == 50 * 5 * 1000


def test_gauges_wait_for_min_rows_and_say_nan_once_swapped_out(meta: ModelMetadata) -> None:
    registry = CollectorRegistry()
    window = _window(meta, size=1000, min_rows=300, metrics=Metrics(registry))
    rng = np.random.default_rng(6)

    def gauge(feature: str | None = None) -> float | None:
        if feature is None:
            return registry.get_sample_value("kiln_prediction_drift_psi", {"model": "churn"})
        labels = {"model": "churn", "feature": feature}
        return registry.get_sample_value("kiln_feature_drift_psi", labels)

    window.offer(*_request(meta, 200, rng), 200)
    window.update()
    assert window.feature_psi["age"] > 0  # computed, but not shown: 200 < 300 rows
    assert gauge("age") is None and gauge() is None
    assert registry.get_sample_value("kiln_drift_window_rows", {"model": "churn"}) == 200
    window.offer(*_request(meta, 200, rng), 200)
    window.update()
    assert gauge("age") == window.feature_psi["age"]
    assert gauge() == window.prediction_psi
    assert {gauge(name) for name, _ in window.features} == set(window.feature_psi.values())
    window.retire()
    assert math.isnan(gauge("age") or 0.0) and math.isnan(gauge() or 0.0)
    window.offer(*_request(meta, 200, rng), 200)  # an in-flight request of the old version
    assert not window.update() and window.pending_rows == 0


def test_no_window_when_drift_is_off_or_the_model_has_no_reference(
    meta: ModelMetadata, tmp_path: Path
) -> None:
    assert DriftMonitor(ServingSettings(drift_window=0)).window(meta) is None
    old = tmp_path / "v2"
    old.mkdir()
    shutil.copy(TESTDATA / "metadata-v2.json", old / METADATA_FILE)
    assert DriftMonitor(ServingSettings()).window(read_metadata(old)) is None
    assert DriftMonitor(ServingSettings()).window(meta) is not None


def test_the_prediction_is_the_label_or_the_predicted_value(meta: ModelMetadata) -> None:
    assert prediction_output(meta) == "label"
    assert prediction_output(meta.model_copy(update={"task": Task.regression})) == "prediction"


def test_the_monitor_thread_starts_on_the_first_request_and_stops_on_close(
    meta: ModelMetadata,
) -> None:
    monitor = DriftMonitor(ServingSettings(drift_interval=0.05, drift_min_rows=1))
    window = monitor.window(meta)
    assert window is not None and not monitor.running
    window.offer(*_request(meta, 50, np.random.default_rng(7)), 50)
    assert monitor.running
    deadline = time.monotonic() + 10
    while window.filled < 50 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert window.filled == 50 and window.pending_rows == 0
    monitor.retire(window)
    assert monitor.windows == []
    monitor.close()
    assert monitor._thread is not None and not monitor._thread.is_alive()


def test_a_hot_swap_gives_the_new_version_a_fresh_window(meta: ModelMetadata) -> None:
    from service.models import ModelSet

    models = ModelSet(ServingSettings(), make_batcher=lambda runtime, checks: None)  # type: ignore[arg-type,return-value]
    old = models.serve(SimpleNamespace(name="churn", version="v1", metadata=meta))  # type: ignore[arg-type]
    assert old.drift is not None and models.drift.windows == [old.drift]
    old.sample_drift(*_request(meta, 10, np.random.default_rng(8)), 10)
    new = models.serve(SimpleNamespace(name="churn", version="v2", metadata=meta))  # type: ignore[arg-type]
    assert new.drift is not None and new.drift is not old.drift
    assert old.drift.closed and models.drift.windows == [new.drift]
    assert new.drift.pending_rows == 0 and new.drift.filled == 0
    models.drift.close()


def test_many_small_requests_are_capped_by_count(meta: ModelMetadata) -> None:
    window = _window(meta, size=10_000)
    columns, outputs = _request(meta, 1, np.random.default_rng(9))
    for _ in range(MAX_PENDING_REQUESTS + 500):
        window.offer(columns, outputs, 1)
    assert window.pending_rows == MAX_PENDING_REQUESTS and window.skipped == 500
    window.update()
    assert window.filled == MAX_PENDING_REQUESTS and window.pending_rows == 0
