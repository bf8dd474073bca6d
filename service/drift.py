"""Drift in the service: each served version's last rows against its training distribution.

Per served model version (kiln.json schema 3, which stores a ``reference``), a
:class:`DriftWindow` keeps the last ``KILN_SERVE_DRIFT_WINDOW`` rows it answered, each row
reduced to the bin (kiln/drift.py :func:`~kiln.drift.bin_index`) of every feature that has a
reference and of its prediction (the predicted class of a classifier, its ``label`` output;
the predicted value of a regressor, its ``prediction`` output). The bins live in one numpy
ring of small integers, ``(features + 1) x window`` bytes: memory is bounded by the window
and the feature count, whatever the traffic. Models without a reference (schema 1 and 2)
get no window, and no drift gauges.

The request path only hands over references: :meth:`DriftWindow.offer` appends the
request's typed columns and its prediction array to a pending queue, O(1) and no numpy work,
unless the queue already holds a window's worth of rows (or :data:`MAX_PENDING_REQUESTS`
requests); then the request is not sampled
(``kiln_drift_rows_skipped_total``): under load the window sees a sample of the traffic,
which is all a distribution needs. More than a window's rows per interval would be
overwritten before anyone read them anyway.

:class:`DriftMonitor` runs one thread per worker (started on the first request, so that an
idle data plane built in a test starts none) that every ``KILN_SERVE_DRIFT_INTERVAL`` seconds
drains each queue: it concatenates the pending columns per feature, bins them, writes them
into the ring, counts the rows per bin and sets ``kiln_feature_drift_psi{model,feature}`` and
``kiln_prediction_drift_psi{model}`` to the PSI against the reference's shares
(:func:`kiln.drift.psi_of_counts`), once the window holds ``KILN_SERVE_DRIFT_MIN_ROWS`` rows
(PSI over a few rows is noise). A thread rather than a task on the event loop: the binning of
categorical values is Python work, and a thread lets the loop run between the GIL's switches.

Several workers: each has its own window over the requests it answered (a share of the same
traffic), and the gauges are ``multiprocess_mode="mostrecent"``: ``/metrics`` shows the value
the last worker to compute one wrote, an estimate over that worker's window. ``max`` would
report the noisiest worker's (PSI over a sample is biased upwards, the more so the smaller
the sample), and ``all`` a series per process id that changes with every restart.

A hot swap gives the new version a fresh window (its own reference); the old window is
retired and sets its gauges to NaN: the old version's drift is not the new one's, and NaN
is neither above nor below a threshold, so an alert's ``for`` starts again.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from typing import Any

import numpy as np

from kiln.artifact import Bins, ModelMetadata
from kiln.drift import bin_count, bin_index, prediction_output, psi_of_counts
from service.metrics import Metrics
from service.settings import ServingSettings

__all__ = ["MAX_PENDING_REQUESTS", "DriftMonitor", "DriftWindow"]

log = logging.getLogger("kiln.service")

_JOIN_SECONDS = 2.0  # how long close() waits for a drain in progress

MAX_PENDING_REQUESTS = 1000
"""Most requests the queue holds between two updates, whatever their rows. Measured here on
churn: a queue of 10,000 one-row requests kept 14.5 MB of their arrays alive (as 100
100-row requests: 3.4 MB) and took 140 ms to bin; 1,000 keep about 1.5 MB and take 14 ms,
and still sample 200 requests a second at the default 5 s interval."""


class DriftWindow:
    """The last ``size`` rows of one served model version, binned, and their PSI.

    ``offer`` is called on the request path (the event loop's thread) and only appends;
    ``update`` is called by the monitor's thread and does the work. The two share the
    pending deque (whose append and popleft are thread-safe) and two counters each written
    by one side only: rows offered (request path) and rows taken (monitor).
    """

    def __init__(
        self,
        metadata: ModelMetadata,
        *,
        size: int,
        min_rows: int,
        metrics: Metrics | None = None,
        monitor: DriftMonitor | None = None,
    ) -> None:
        reference = metadata.reference
        if reference is None:
            raise ValueError(f"{metadata.name}: kiln.json has no reference to compare with")
        if size < 1:
            raise ValueError("a drift window holds at least one row")
        self.name = metadata.name
        self.size = size
        self.min_rows = min(min_rows, size)
        self.output = prediction_output(metadata)
        # (feature name, its bins), in the model's feature order; text features have none
        self.features: list[tuple[str, Bins]] = [
            (f.name, reference.features[f.name].bins)
            for f in metadata.features
            if f.name in reference.features
        ]
        self.prediction: Bins | None = reference.prediction
        tracked = [bins for _, bins in self.features]
        if self.prediction is not None:
            tracked.append(self.prediction)
        self._tracked = tracked
        most = max((bin_count(b) for b in tracked), default=1)
        self.ring = np.zeros((len(tracked), size), dtype=np.min_scalar_type(most))
        self.filled = 0  # rows in the ring (at most size)
        self._next = 0  # where the next row goes
        self._pending: deque[tuple[dict[str, np.ndarray], np.ndarray, int]] = deque()
        self._offered = 0  # rows appended to _pending (written by offer only)
        self._taken = 0  # rows taken out of _pending (written by update only)
        self.skipped = 0  # rows not sampled because the queue was full (offer only)
        self._skipped_counted = 0  # of which already added to the counter (update only)
        self.feature_psi: dict[str, float] = {}
        self.prediction_psi: float | None = None
        self.closed = False
        self._lock = threading.Lock()  # update against retire
        self._monitor = monitor
        self._metrics = metrics
        # Gauge children are made when first set: a child exists, as 0, from .labels() on,
        # and 0 would read "no drift" where nothing was measured yet.
        self._gauges: dict[str, Any] = {}
        self._prediction_gauge: Any = None
        self._rows_gauge: Any = None
        self._skipped_counter: Any = None
        if metrics is not None:
            self._skipped_counter = metrics.drift_skipped.labels(self.name)  # 0 from the start

    # -- the request path ----------------------------------------------------------------

    def offer(
        self, columns: dict[str, np.ndarray], outputs: dict[str, np.ndarray], rows: int
    ) -> None:
        """Queue one answered request's rows for the window, or count them not sampled when
        a window's worth of rows (or :data:`MAX_PENDING_REQUESTS` requests) already waits.
        O(1): references only."""
        if self.closed:  # swapped out: its last requests are the old version's
            return
        monitor = self._monitor
        if monitor is not None and not monitor.running:
            monitor.start()
        pending = self._offered - self._taken
        # A request larger than the window is taken when nothing waits (its last rows are
        # kept): the queue holds at most max(window, one request) rows.
        if pending and (pending + rows > self.size or len(self._pending) >= MAX_PENDING_REQUESTS):
            self.skipped += rows
            return
        predicted = outputs.get(self.output)
        if predicted is None:  # not a Kiln export's outputs: nothing to sample
            return
        self._pending.append((columns, predicted, rows))
        self._offered += rows

    # -- the monitor's thread ------------------------------------------------------------

    @property
    def pending_rows(self) -> int:
        return self._offered - self._taken

    @property
    def nbytes(self) -> int:
        """Bytes of the window's own arrays (the ring), whatever the traffic."""
        return int(self.ring.nbytes)

    def _drain(self) -> list[tuple[dict[str, np.ndarray], np.ndarray, int]]:
        items = []
        while True:
            try:
                items.append(self._pending.popleft())
            except IndexError:
                break
        self._taken += sum(rows for _, _, rows in items)
        return items

    def _write(self, bins: np.ndarray) -> None:
        """Write ``bins`` (tracked x new rows) into the ring, the oldest rows overwritten."""
        new = bins.shape[1]
        if new >= self.size:
            self.ring[:, :] = bins[:, -self.size :]
            self._next, self.filled = 0, self.size
            return
        where = (self._next + np.arange(new)) % self.size
        self.ring[:, where] = bins
        self._next = (self._next + new) % self.size
        self.filled = min(self.filled + new, self.size)

    def update(self) -> bool:
        """Take the pending rows into the window and recompute the PSI; set the gauges once
        the window holds ``min_rows`` rows. False when nothing new came (or it is retired)."""
        with self._lock:
            if self.closed:
                return False
            skipped = self.skipped - self._skipped_counted
            if skipped and self._skipped_counter is not None:
                self._skipped_counter.inc(skipped)
            self._skipped_counted += skipped
            items = self._drain()
            if not items:
                return False
            columns = [
                np.concatenate([np.asarray(c[name]).reshape(-1) for c, _, _ in items])
                for name, _ in self.features
            ]
            if self.prediction is not None:
                columns.append(np.concatenate([np.asarray(p).reshape(-1) for _, p, _ in items]))
            keep = min(len(columns[0]) if columns else 0, self.size)
            binned = np.empty((len(self._tracked), keep), dtype=self.ring.dtype)
            for i, (bins, column) in enumerate(zip(self._tracked, columns, strict=True)):
                binned[i] = bin_index(bins, column[len(column) - keep :])
            self._write(binned)
            self._compute()
            return True

    def counts(self, i: int) -> np.ndarray:
        """Rows of the window in each bin of tracked column ``i``."""
        return np.bincount(self.ring[i, : self.filled], minlength=bin_count(self._tracked[i]))

    def _compute(self) -> None:
        psis = [psi_of_counts(bins.shares, self.counts(i)) for i, bins in enumerate(self._tracked)]
        self.feature_psi = {name: psis[i] for i, (name, _) in enumerate(self.features)}
        self.prediction_psi = psis[-1] if self.prediction is not None else None
        metrics = self._metrics
        if metrics is None:
            return
        if self._rows_gauge is None:
            self._rows_gauge = metrics.drift_window_rows.labels(self.name)
        self._rows_gauge.set(self.filled)
        if self.filled < self.min_rows:
            return
        if not self._gauges:
            self._gauges = {
                name: metrics.feature_drift.labels(self.name, name) for name, _ in self.features
            }
            if self.prediction is not None:
                self._prediction_gauge = metrics.prediction_drift.labels(self.name)
        for name, gauge in self._gauges.items():
            gauge.set(self.feature_psi[name])
        if self._prediction_gauge is not None and self.prediction_psi is not None:
            self._prediction_gauge.set(self.prediction_psi)

    def retire(self) -> None:
        """Stop updating (a hot swap replaced this version): the gauges say NaN, unknown,
        until the new version's window has its rows."""
        with self._lock:
            self.closed = True
            self._pending.clear()
            if self._gauges:
                for gauge in self._gauges.values():
                    gauge.set(float("nan"))
                if self._prediction_gauge is not None:
                    self._prediction_gauge.set(float("nan"))
            if self._rows_gauge is not None:
                self._rows_gauge.set(0)


class DriftMonitor:
    """The windows of one worker's served versions and the thread that updates them."""

    def __init__(self, settings: ServingSettings, metrics: Metrics | None = None) -> None:
        self.size = settings.drift_window
        self.min_rows = settings.drift_min_rows
        self.interval = settings.drift_interval
        self.metrics = metrics
        self.windows: list[DriftWindow] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()

    def window(self, metadata: ModelMetadata) -> DriftWindow | None:
        """A fresh window for a newly served version; None when drift is off or the model
        has no reference (kiln.json schema 1 and 2)."""
        if self.size <= 0 or metadata.reference is None:
            return None
        window = DriftWindow(
            metadata, size=self.size, min_rows=self.min_rows, metrics=self.metrics, monitor=self
        )
        self.windows.append(window)
        return window

    def retire(self, window: DriftWindow | None) -> None:
        """Forget a swapped-out version's window (its gauges become NaN)."""
        if window is None:
            return
        window.retire()
        if window in self.windows:
            self.windows.remove(window)

    @property
    def running(self) -> bool:
        return self._thread is not None

    def start(self) -> None:
        """Start the updating thread (once; the first request does)."""
        with self._start_lock:
            if self._thread is not None or self._stop.is_set():
                return
            self._thread = threading.Thread(target=self._run, name="kiln-drift", daemon=True)
            self._thread.start()

    def update(self) -> None:
        """Update every window once (the thread does this every ``interval`` seconds)."""
        for window in list(self.windows):
            try:
                window.update()
            except Exception:  # one model's bad batch must not stop the others' drift
                log.exception("drift window of %s could not be updated", window.name)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.update()

    def close(self) -> None:
        self._stop.set()
        thread = self._thread
        if thread is not None:
            thread.join(_JOIN_SECONDS)
