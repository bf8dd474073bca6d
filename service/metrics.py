"""Kiln's Prometheus metrics, all under the ``kiln_`` prefix, labelled by model and version.

``prometheus_client`` is imported when :class:`Metrics` is created, not when this module is:
BentoML workers set ``PROMETHEUS_MULTIPROC_DIR`` at start-up, and the client chooses between
single- and multi-process storage when it is first imported.
"""

from __future__ import annotations

from typing import Any

from kiln.checks import REASONS

__all__ = ["ERROR_REASONS", "UNKNOWN_LABEL", "Metrics"]

# The model label of a name (from a URL) that this worker neither serves nor failed to load.
UNKNOWN_LABEL = "_unknown"
ERROR_REASONS = ("invalid_input", "model_not_found", "overloaded", "internal")
_LATENCY = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
# What each input-check reason counts, in the metric's help text.
_FOUND = {
    "unseen_category": "a category never seen in training",
    "out_of_range": "a number outside the range accepted from training",
    "missing": "a missing value in a feature never missing in training",
}
_ROWS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096)


class Metrics:
    """The metric families; ``registry=None`` uses the default (BentoML's /metrics) registry."""

    def __init__(self, registry: Any = None) -> None:
        from prometheus_client import REGISTRY, Counter, Gauge, Histogram

        reg = registry if registry is not None else REGISTRY
        model = ["model", "version"]
        self.inference_seconds = Histogram(
            "kiln_inference_duration_seconds",
            "Time of one ONNX Runtime call (one batch).",
            model,
            buckets=_LATENCY,
            registry=reg,
        )
        self.batch_rows = Histogram(
            "kiln_batch_rows", "Rows per ONNX Runtime call.", model, buckets=_ROWS, registry=reg
        )
        self.batch_wait_seconds = Histogram(
            "kiln_batch_wait_seconds",
            "Time a request waited in the queue before its batch ran.",
            model,
            buckets=_LATENCY,
            registry=reg,
        )
        self.predictions = Counter(
            "kiln_predictions_total",
            "Predictions made, by predicted class.",
            [*model, "class"],
            registry=reg,
        )
        self.rows = Counter(
            "kiln_rows_received_total", "Rows received in valid requests.", model, registry=reg
        )
        self.errors = Counter(
            "kiln_request_errors_total",
            "Requests answered with an error, by reason.",
            ["model", "reason"],
            registry=reg,
        )
        self.info = Gauge(
            "kiln_model_info",
            "A served model version (value 1), with its opset and execution provider.",
            [*model, "opset", "provider", "task"],
            registry=reg,
            multiprocess_mode="max",
        )
        self.load_failures = Counter(
            "kiln_model_load_failures_total",
            "Model versions that could not be loaded (missing or damaged files), by model.",
            ["model"],
            registry=reg,
        )
        self.ready = Gauge(
            "kiln_model_ready",
            "1 when the model is loaded and warm, else 0.",
            ["model"],
            registry=reg,
            multiprocess_mode="min",
        )
        self.nonfinite = Counter(
            "kiln_nonfinite_outputs_total",
            "Rows whose model answer was not a finite number (answered 422), by model.",
            ["model"],
            registry=reg,
        )
        self.client_disconnects = Counter(
            "kiln_client_disconnects_total",
            "Requests whose client disconnected before its body was complete.",
            registry=reg,
        )
        # Drift over each worker's window of recent rows (service/drift.py). "mostrecent":
        # with several workers, the value the last worker to compute one wrote (each an
        # estimate over its own window); "max" would report the noisiest worker's.
        self.feature_drift = Gauge(
            "kiln_feature_drift_psi",
            "PSI of a feature over the last KILN_SERVE_DRIFT_WINDOW rows against its training "
            "bins; set once the window holds KILN_SERVE_DRIFT_MIN_ROWS rows, NaN once its "
            "version is swapped out.",
            ["model", "feature"],
            registry=reg,
            multiprocess_mode="mostrecent",
        )
        self.prediction_drift = Gauge(
            "kiln_prediction_drift_psi",
            "PSI of the predicted classes (or predicted values) over the last "
            "KILN_SERVE_DRIFT_WINDOW rows against the holdout's; set once the window holds "
            "KILN_SERVE_DRIFT_MIN_ROWS rows.",
            ["model"],
            registry=reg,
            multiprocess_mode="mostrecent",
        )
        self.drift_window_rows = Gauge(
            "kiln_drift_window_rows",
            "Rows in the drift window the PSI gauges were computed over (one worker's).",
            ["model"],
            registry=reg,
            multiprocess_mode="mostrecent",
        )
        self.drift_skipped = Counter(
            "kiln_drift_rows_skipped_total",
            "Rows answered but not sampled into the drift window (its queue was full).",
            ["model"],
            registry=reg,
        )
        # Input checks (kiln/checks.py): rows unlike the training data, by model and feature
        # (the model's own names), in every mode; one counter per kiln.checks.REASONS.
        self.input_checks = {
            reason: Counter(
                f"kiln_input_{reason}_total",
                f"Rows with {_FOUND[reason]}, by model and feature (in every input-check mode).",
                ["model", "feature"],
                registry=reg,
            )
            for reason in REASONS
        }
