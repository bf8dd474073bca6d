"""Scoring one chunk of rows: the rules both batch engines apply, in one place.

``kiln predict`` reads its input in chunks, one process (training/batch.py) or many Ray
actors (training/rayscore.py); each chunk goes through :class:`ChunkScorer`, which answers
with what to write: the scored rows (the output's columns), the refused rows with their
reasons, and under ``warn`` the findings. So both engines refuse, warn and score the same
rows with the same words, and answer bit for bit alike.

- Each chunk is checked by the one set of value rules (kiln/values.py) that the routes and
  the in-process Predictor apply, vectorised: a row with a value they would refuse (text
  such as "n/a" in a numeric column, an infinite or float32-overflowing number, a
  non-string in a categorical column) is refused with the reason, and so is a row whose
  answer is not a finite number (the service's 422 for it).
- The rows that pass are held against the training data by the input checks every path
  runs (kiln/checks.py: unseen category, out of range, missing) under the run's mode:
  every mode counts them per feature and reason; ``warn`` also lists each finding and
  scores the row; ``reject`` refuses it with the words of the service's 422.
- The others are typed as the service types them and scored by ONNX Runtime, a chunk cut
  into one slice per core (:class:`_Inference` says why the answers stay the service's).

Rows are numbered by their file: ``row`` 1 is a part's first data row, and with an input of
several parts a ``part`` column names the file (training/parts.py).
"""

from __future__ import annotations

import itertools
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from kiln.artifact import CheckMode, FeatureKind, ModelMetadata, Task
from kiln.checks import InputChecks
from kiln.errors import NonFiniteOutput
from kiln.runtime import ModelRuntime, default_providers
from kiln.store import StoredModel
from kiln.values import check_columns, check_frame, nonfinite_outputs

__all__ = ["PART_COLUMN", "WARNING_COLUMNS", "ChunkResult", "ChunkScorer", "reserved_names"]

WARNING_COLUMNS = ["row", "feature", "value", "reason", "message"]
"""The warnings file's columns, after the id column (and ``part``) when there are some."""
PART_COLUMN = "part"
"""Names the file of a row in the rejects and warnings of an input of several parts."""


def reserved_names(meta: ModelMetadata, warn: bool) -> list[str]:
    """Columns the output and the rejects (and warnings) files write themselves: an id
    column of one of these names would be ambiguous."""
    names = ["prediction", "row", "reason", PART_COLUMN] + [
        f"{p}_{c}" for p in ("probability", "score") for c in meta.classes or []
    ]
    return names + (WARNING_COLUMNS if warn else [])


@dataclass
class ChunkResult:
    """What one chunk comes to: columns to write (None: nothing), and its counts."""

    scores: dict[str, Any] | None
    rejects: dict[str, Any] | None
    warnings: dict[str, Any] | None
    rows: int
    scored: int
    rejected: int
    warned: int = 0  # scored rows that failed an input check (every mode but reject)


def _output_schema(runtime: ModelRuntime, id_column: str | None) -> tuple[Any, str | None]:
    """(the output's Arrow schema, the runtime output behind the per-class columns)."""
    import pyarrow as pa

    meta: ModelMetadata = runtime.metadata
    example = runtime.run(runtime.example_columns())  # the real output dtypes
    fields = [(id_column, pa.string())] if id_column else []
    per_class: str | None = None
    if meta.task is Task.classification and meta.classes is not None:
        per_class = "probabilities" if "probabilities" in example else "scores"
        label = example["label"]
        fields.append(
            (
                "prediction",
                pa.string() if label.dtype == object else pa.from_numpy_dtype(label.dtype),
            )
        )
        prefix = "probability" if per_class == "probabilities" else "score"
        fields += [(f"{prefix}_{c}", pa.float32()) for c in meta.classes]
    else:
        fields.append(("prediction", pa.from_numpy_dtype(example["prediction"].dtype)))
    return pa.schema(fields), per_class


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


class _Inference:
    """``ModelRuntime.run`` on a chunk, spread over the cores without changing one bit.

    ONNX Runtime's own threads (``intra_op_num_threads`` > 1) change the order in which a
    tree ensemble sums its trees, and with it the last bit of a probability, depending on the
    batch size: the answers would differ from the service's (one thread per call) and from
    one chunk size to another. So the session keeps one thread, as the service's does, and a
    chunk is cut into one slice per core, run side by side (ONNX Runtime releases the GIL); a
    row's answer does not depend on the rows run with it.
    """

    MIN_SLICE = 2_000  # smaller slices cost more in calls than they gain

    def __init__(self, runtime: ModelRuntime, workers: int | None = None) -> None:
        self.runtime = runtime
        self.workers = max(1, workers or _cores())
        self._pool = ThreadPoolExecutor(self.workers) if self.workers > 1 else None

    def run(self, columns: dict[str, np.ndarray], rows: int) -> dict[str, np.ndarray]:
        parts = min(self.workers, rows // self.MIN_SLICE)
        if self._pool is None or parts < 2:
            return self.runtime.run(columns)
        bounds = np.linspace(0, rows, parts + 1).astype(int)
        futures = [
            self._pool.submit(self.runtime.run, {n: v[a:b] for n, v in columns.items()})
            for a, b in itertools.pairwise(bounds)
        ]
        results = [f.result() for f in futures]
        return {n: np.concatenate([r[n] for r in results]) for n in results[0]}

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown()


class ChunkScorer:
    """One model, opened once, and the rules of one run; :meth:`score` takes a chunk.

    ``mode``: the input-check mode (None: the model's own); ``ident``: the id column carried
    to every file, or None; ``parts``: the input has several parts (a ``part`` column in the
    rejects and warnings); ``threads``: slices run side by side (None: one per core).
    """

    def __init__(
        self,
        stored: StoredModel,
        mode: CheckMode | None,
        ident: str | None,
        *,
        parts: bool = False,
        threads: int | None = None,
    ) -> None:
        meta = stored.metadata
        self.meta = meta
        self.ident = ident
        self.parts = parts
        self.checks = InputChecks(meta, mode)
        self.mode: CheckMode = self.checks.mode
        self.runtime = ModelRuntime(stored, default_providers(), intra_op_threads=1)
        self.runtime.warm_up()
        self.schema, self.per_class = _output_schema(self.runtime, ident)
        n_classes = len(meta.classes or []) if self.per_class else 0
        self.class_columns = self.schema.names[len(self.schema.names) - n_classes :]
        self.features = [(f.name, f.kind) for f in meta.features]
        self.feature_names = [name for name, _ in self.features]
        self.strings = {n for n, k in self.features if k is not FeatureKind.numeric}
        self.wanted = list(dict.fromkeys([*([ident] if ident else []), *self.feature_names]))
        where = ([ident] if ident else []) + ([PART_COLUMN] if parts else [])
        self.reject_names = [*where, "row", "reason"]
        self.reject_names += [n for n in self.feature_names if n != ident]
        self.warning_names = where + WARNING_COLUMNS
        # (feature, reason) -> rows that failed that input check, in every mode
        self.counts: dict[tuple[str, str], int] = {}
        self._inference = _Inference(self.runtime, threads)

    def close(self) -> None:
        self._inference.close()

    def score(self, frame: pd.DataFrame, first_row: int, part: str | None = None) -> ChunkResult:
        """Score ``frame`` (the ``wanted`` columns of rows ``first_row``, ``first_row + 1``,
        ... of ``part``; 1 is a file's first data row)."""
        checked = check_frame(frame, self.features)
        good = ~checked.bad
        n_good = int(good.sum())
        outputs: dict[str, np.ndarray] = {}
        warnings = None
        columns: dict[str, np.ndarray] = {}
        scored_at = np.flatnonzero(good)
        flagged: np.ndarray | None = None  # of the rows to score, those that failed a check
        if n_good:
            columns = (
                checked.columns
                if n_good == len(frame)
                else {n: v[good] for n, v in checked.columns.items()}
            )
            check_columns(self.meta, columns)
            refuse, warnings, flagged = self._checks(
                columns, scored_at, frame, first_row, checked.reasons
            )
            if refuse is not None:  # reject: unlike the training data, not scored
                good[scored_at[refuse]] = False
                columns = {n: v[~refuse] for n, v in columns.items()}
                scored_at = scored_at[~refuse]
                n_good = len(scored_at)
        if n_good:
            outputs = self._inference.run(columns, n_good)
            nonfinite = nonfinite_outputs(outputs)
            if nonfinite:  # no answer for these rows: rejects, as the service's 422
                for i, detail in nonfinite.items():
                    checked.reasons[int(scored_at[i])] = [NonFiniteOutput.reason(detail)]
                keep = np.ones(n_good, dtype=bool)
                keep[list(nonfinite)] = False
                outputs = {n: v[keep] for n, v in outputs.items()}
                good[scored_at[~keep]] = False
                n_good = int(keep.sum())
                flagged = flagged[keep] if flagged is not None else None
        warned = int(np.count_nonzero(flagged)) if flagged is not None and n_good else 0
        rejects = None
        if n_good < len(frame):
            positions = np.flatnonzero(~good)
            block = frame.iloc[positions]
            rejects = {
                **{n: block[n].to_numpy() for n in self.wanted},
                "row": positions + first_row,
                "reason": ["; ".join(checked.reasons[int(i)]) for i in positions],
            }
            if self.parts:
                rejects[PART_COLUMN] = [part] * len(positions)
        scores = None
        if n_good:
            scores = {}
            if self.ident:
                ids = frame[self.ident]
                scores[self.ident] = (ids if n_good == len(frame) else ids[good]).to_numpy()
            if self.per_class:
                scores["prediction"] = outputs["label"].reshape(-1)
                for j, name in enumerate(self.class_columns):
                    scores[name] = outputs[self.per_class][:, j]
            else:
                scores["prediction"] = outputs["prediction"].reshape(-1)
        if warnings is not None and self.parts:
            warnings[PART_COLUMN] = [part] * len(warnings["row"])
        return ChunkResult(
            scores, rejects, warnings, len(frame), n_good, len(frame) - n_good, warned
        )

    def _checks(
        self,
        columns: dict[str, np.ndarray],
        at: np.ndarray,
        frame: pd.DataFrame,
        first_row: int,
        reasons: dict[int, list[str]],
    ) -> tuple[np.ndarray | None, dict[str, Any] | None, np.ndarray | None]:
        """The input checks on ``columns`` (the chunk's rows at frame positions ``at``):
        (under ``reject``, the mask of those rows to refuse, their reasons added to
        ``reasons`` by frame position; under ``warn``, the warnings' columns; the mask of
        the rows that failed a check and are still to be scored)."""
        masks = self.checks.masks(columns)  # one vectorised pass per feature; rows only on a hit
        if not masks:
            return None, None, None
        for key, rows in self.checks.counts(masks).items():
            self.counts[key] = self.counts.get(key, 0) + rows
        failed = np.logical_or.reduce(list(masks.values()))
        if self.mode is CheckMode.accept:
            return None, None, failed
        found = self.checks.findings(columns, masks)
        if self.mode is CheckMode.reject:
            for finding in found:  # as the rejects file words a refused value
                reasons.setdefault(int(at[finding.row]), []).append(
                    f"{finding.feature}: {finding.message}"
                )
            return failed, None, None
        positions = at[[f.row for f in found]]
        # The value as checked (what the JSON route's warning carries: 87.1 for a float32,
        # empty when missing), not as read: pandas reads a CSV column by chunk, so the text
        # of a number would depend on the chunk size (500 or 500.0).
        data: dict[str, Any] = {
            "row": positions + first_row,
            "feature": [f.feature for f in found],
            "value": [None if f.reason == "missing" else f.value for f in found],
            "reason": [f.reason for f in found],
            "message": [f.message for f in found],
        }
        if self.ident:
            data[self.ident] = frame[self.ident].iloc[positions].to_numpy()
        return None, data, failed
