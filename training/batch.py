"""Batch scoring: a CSV or Parquet file of any size through one model, chunk by chunk.

    from training.batch import score_file
    summary = score_file("churn", Path("customers.csv"), Path("scores.parquet"))

The file is read ``chunk_rows`` rows at a time and only one chunk is held in memory, whatever
the file's size. Each chunk is checked by the one set of value rules (kiln/values.py) that
the routes and the in-process Predictor apply, vectorised: a row with a value they would
refuse (text such as "n/a" in a numeric column, an infinite or float32-overflowing number, a
non-string in a categorical column) goes to the rejects file with the reason, and so does a
row whose answer is not a finite number (the service's 422 for it); the others are
typed as the service types them (float32 with NaN for missing numbers, strings with "" for
missing categories and text) and scored by ONNX Runtime, one batch per chunk (cut into one
slice per core, which keeps the answers the service's bit for bit: see :class:`_Inference`).
In a CSV file only an empty field is missing; a CSV's numbers are its text.

The rows that pass are then held against the training data by the input checks every path
runs (kiln/checks.py: unseen category, out of range, missing), vectorised per chunk, under
``input_checks`` (default: the model's own mode). Every mode counts the rows per feature and
reason for the summary; ``warn`` also writes each finding to the warnings file (default
:func:`default_warnings_path`) and scores the row; ``reject`` sends the row to the rejects
file, with the reasons the service's 422 gives, instead of scoring it.

Outputs are written to temporary files next to the requested ones and renamed into place at
the end: an error (an unreadable line, a failing model) leaves no half-written output behind.
"""

from __future__ import annotations

import csv
import itertools
import os
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np
import pandas as pd

from kiln.artifact import CheckMode, FeatureKind, ModelMetadata, Task
from kiln.checks import InputChecks, parse_mode
from kiln.errors import DataError, InvalidInput, NonFiniteOutput
from kiln.resolve import Warn, resolve
from kiln.runtime import ModelRuntime, default_providers
from kiln.values import check_columns, check_frame, nonfinite_outputs

__all__ = [
    "ScoreSummary",
    "Source",
    "default_rejects_path",
    "default_warnings_path",
    "estimate_rows",
    "open_source",
    "score_file",
]

_CSV_FORMATS = {".csv": "csv", ".tsv": "tsv", ".tab": "tsv", ".txt": "csv"}
_PARQUET_SUFFIXES = {".parquet", ".pq"}


@dataclass(frozen=True)
class ScoreSummary:
    """What one :func:`score_file` run did."""

    model: str  # NAME:VERSION that scored the file
    rows: int  # data rows read from the input
    scored: int  # rows written to the output
    rejected: int  # rows written to the rejects file instead
    seconds: float  # wall time, model loading included
    output: Path
    rejects: Path
    id_column: str | None  # carried from the input to the output, if any
    unused_columns: tuple[str, ...] = ()  # the input's other columns: not features, not carried
    input_checks: CheckMode = CheckMode.warn  # the mode the rows were checked under
    # (feature, reason) -> rows that failed that input check, in every mode
    findings: dict[tuple[str, str], int] = field(default_factory=dict)
    warnings: Path | None = None  # the warnings file (written under `warn` only)

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else 0.0

    def findings_text(self) -> str:
        """The findings as the summary says them, most rows first:
        ``plan unseen category 12 rows, monthly_charge out of range 3 rows``."""
        ordered = sorted(self.findings.items(), key=lambda item: (-item[1], item[0]))
        return ", ".join(
            f"{feature} {reason.replace('_', ' ')} {rows:,} row{'s' if rows != 1 else ''}"
            for (feature, reason), rows in ordered
        )


def default_rejects_path(output: Path) -> Path:
    """``<output stem>.rejects.csv`` next to the output."""
    return output.with_name(f"{output.stem}.rejects.csv")


def default_warnings_path(output: Path) -> Path:
    """``<output stem>.warnings.csv`` next to the output (beside the rejects file)."""
    return output.with_name(f"{output.stem}.warnings.csv")


def _input_format(path: Path) -> str:
    suffix = path.suffix.lower()
    return "parquet" if suffix in _PARQUET_SUFFIXES else _CSV_FORMATS.get(suffix, "csv")


def _output_format(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix in _PARQUET_SUFFIXES:
        return "parquet"
    if suffix == ".csv":
        return "csv"
    raise InvalidInput(f"{path}: the output must end in .csv or .parquet")


def estimate_rows(path: Path) -> int | None:
    """Rows in a data file: exact for Parquet, estimated from the first MiB for CSV."""
    try:
        if _input_format(path) == "parquet":
            import pyarrow.parquet as pq

            return int(pq.ParquetFile(path).metadata.num_rows)
        size = path.stat().st_size
        with path.open("rb") as fh:
            head = fh.read(1 << 20)
    except Exception:  # only a hint for a progress bar; score_file reports real errors
        return None
    lines = head.count(b"\n") + (0 if head.endswith(b"\n") or not head else 1)
    if len(head) >= size:
        return max(lines - 1, 0)
    return max(round(size / len(head) * lines) - 1, 0) if lines else None


# --- reading ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Source:
    """A CSV, TSV or Parquet file to read in chunks (``kiln predict``, ``kiln drift``)."""

    path: Path
    format: str
    columns: list[str]  # every column of the file, in file order

    def chunks(
        self, wanted: list[str], strings: set[str], ident: str | None, rows: int
    ) -> Iterator[pd.DataFrame]:
        """The wanted columns, ``rows`` rows at a time; read errors become DataError.

        ``strings``: categorical and text features, read as written; ``ident``: the id
        column, read as strings whatever its type.
        """
        try:
            if self.format == "parquet":
                yield from self._parquet(wanted, strings, ident, rows)
            else:
                yield from self._csv(wanted, strings | ({ident} if ident else set()), rows)
        except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as exc:
            raise DataError(
                f"cannot be read as {self.format.upper()}: {str(exc).strip()}",
                source=str(self.path),
            ) from None
        except OSError as exc:
            raise DataError(
                f"cannot be read: {exc.strerror or exc}", source=str(self.path)
            ) from None

    def _csv_options(self) -> dict[str, Any]:
        tsv = self.format == "tsv"
        return {
            "sep": "\t" if tsv else ",",
            "index_col": False,  # an extra field is an error, never a silent index
            # Only an empty field is missing (kiln/values.py): "n/a" or "NA" in a numeric
            # column is refused as not a number, and is a category in a categorical one,
            # exactly as the routes and the Predictor take the same row.
            "keep_default_na": False,
            "na_values": [""],
            "quoting": 3 if tsv else 0,  # TSV: quotes are text, not delimiters
            "on_bad_lines": "error",
        }

    def _csv(self, wanted: list[str], strings: set[str], rows: int) -> Iterator[pd.DataFrame]:
        # Numeric features are parsed by the C parser (as in training); a column holding
        # something else arrives as strings and is checked row by row. Every other column is
        # read as written. All columns are read (no `usecols`), so that a line with an extra
        # field is an error, as in training, and never a row of shifted values.
        numeric = set(wanted) - strings
        with pd.read_csv(
            self.path,
            dtype={c: str for c in self.columns if c not in numeric},
            chunksize=rows,
            **self._csv_options(),
        ) as reader:
            for frame in reader:
                yield frame[wanted]

    def _parquet(
        self, wanted: list[str], strings: set[str], ident: str | None, rows: int
    ) -> Iterator[pd.DataFrame]:
        import pyarrow as pa
        import pyarrow.compute as pc
        import pyarrow.parquet as pq

        with pq.ParquetFile(self.path) as parquet:
            for batch in parquet.iter_batches(batch_size=rows, columns=wanted):
                arrays = []
                for name, array in zip(batch.schema.names, batch.columns, strict=True):
                    if pa.types.is_dictionary(array.type):
                        array = array.dictionary_decode()
                    if name == ident and not pa.types.is_string(array.type):
                        array = pc.cast(array, pa.string())
                    elif name in strings and pa.types.is_integer(array.type):
                        # an integer category code reads as its decimal string, as in the
                        # service; done here so that a null does not turn the column to floats
                        array = pc.cast(array, pa.string())
                    elif name not in strings and pa.types.is_decimal(array.type):
                        array = pc.cast(array, pa.float64())  # pandas would make objects
                    arrays.append(array)
                table = pa.Table.from_arrays(arrays, names=batch.schema.names)
                yield table.to_pandas()


def open_source(path: Path) -> Source:
    """The file at ``path``, its format and columns checked; DataError names what is wrong."""
    fmt = _input_format(path)
    if not path.is_file():
        raise DataError("file not found", source=str(path))
    try:
        if fmt == "parquet":
            import pyarrow.parquet as pq

            columns = list(pq.read_schema(path).names)
        else:
            header = pd.read_csv(path, nrows=0, **Source(path, fmt, [])._csv_options())
            columns = [str(c) for c in header.columns]
    except pd.errors.EmptyDataError:
        raise DataError("is empty: expected a header row", source=str(path)) from None
    except OSError as exc:
        raise DataError(f"cannot be read: {exc.strerror or exc}", source=str(path)) from None
    except Exception as exc:  # pandas and pyarrow raise many types for corrupt files
        raise DataError(f"cannot be read as {fmt.upper()}: {exc}", source=str(path)) from None
    return Source(path, fmt, columns)


def _pick_id_column(
    source: Source, features: list[str], requested: str | None, reserved: list[str]
) -> str | None:
    if requested is not None:
        if requested not in source.columns:
            raise DataError(
                f"no id column {requested!r}; columns are: {', '.join(source.columns[:40])}",
                source=str(source.path),
            )
        chosen: str | None = requested
    else:
        chosen = next(
            (
                c
                for c in source.columns
                if c not in features and (c.lower() == "id" or c.lower().endswith("_id"))
            ),
            None,
        )
    if chosen is not None and chosen in reserved:
        raise DataError(
            f"the id column {chosen!r} has the name of an output column; "
            "name another one with --id-column",
            source=str(source.path),
        )
    return chosen


# --- checking and typing ------------------------------------------------------------------


WARNING_COLUMNS = ["row", "feature", "value", "reason", "message"]
"""The warnings file's columns, after the id column when there is one."""


class _InputChecks:
    """The input checks of one run: counts for the summary, and per chunk what the mode does
    with the rows that fail (the reasons of rejected rows, the lines of the warnings file)."""

    def __init__(self, checks: InputChecks, mode: CheckMode, warnings: _Rows | None) -> None:
        self.checks = checks
        self.mode = mode
        self.warnings = warnings
        self.counts: dict[tuple[str, str], int] = {}

    def chunk(
        self,
        columns: dict[str, np.ndarray],
        at: np.ndarray,
        frame: pd.DataFrame,
        first_row: int,
        ident: str | None,
        reasons: dict[int, list[str]],
    ) -> np.ndarray | None:
        """Check ``columns`` (the chunk's rows at frame positions ``at``); under ``reject``,
        the mask of those rows to refuse, with their reasons added to ``reasons`` (by frame
        position). ``first_row``: the file row (1-based) of the frame's first row."""
        masks = self.checks.masks(columns)  # one vectorised pass per feature; rows only on a hit
        if not masks:
            return None
        for key, rows in self.checks.counts(masks).items():
            self.counts[key] = self.counts.get(key, 0) + rows
        if self.mode is CheckMode.accept:
            return None
        found = self.checks.findings(columns, masks)
        if self.mode is CheckMode.reject:
            for finding in found:  # as the rejects file words a refused value
                reasons.setdefault(int(at[finding.row]), []).append(
                    f"{finding.feature}: {finding.message}"
                )
            return np.logical_or.reduce(list(masks.values()))
        assert self.warnings is not None
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
        if ident:
            data[ident] = frame[ident].iloc[positions].to_numpy()
        self.warnings.write(data)
        return None


# --- writing ------------------------------------------------------------------------------


class _File:
    """A file written under a temporary name next to ``path``, renamed into place at the end."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.temp = path.with_name(f".{path.name}.partial")

    def _close(self) -> None:
        raise NotImplementedError

    def close(self, keep: bool) -> None:
        try:
            self._close()
        finally:
            if keep:
                self.temp.replace(self.path)
            else:
                self.temp.unlink(missing_ok=True)


class _Scores(_File):
    """The output: Arrow tables of a fixed schema, written as Parquet or CSV.

    CSV goes through Arrow's writer (ten times pandas' speed here); it quotes every string
    value and the header, which every CSV reader accepts.
    """

    def __init__(self, path: Path, fmt: str, schema: Any) -> None:
        import pyarrow.csv as pa_csv
        import pyarrow.parquet as pq

        super().__init__(path)
        self.schema = schema
        if fmt == "parquet":
            self._writer: Any = pq.ParquetWriter(self.temp, schema)
        else:
            self._writer = pa_csv.CSVWriter(
                self.temp, schema, write_options=pa_csv.WriteOptions(quoting_style="needed")
            )

    def write(self, data: dict[str, Any]) -> None:
        import pyarrow as pa

        arrays = [pa.array(data[f.name], type=f.type, from_pandas=True) for f in self.schema]
        self._writer.write_table(pa.Table.from_arrays(arrays, schema=self.schema))

    def _close(self) -> None:
        self._writer.close()


class _Rows(_File):
    """The rejects or the warnings file: CSV of raw values (any type), written by pandas."""

    def __init__(self, path: Path, names: list[str]) -> None:
        super().__init__(path)
        self.names = names
        self._fh: IO[str] = self.temp.open("w", encoding="utf-8", newline="")
        csv.writer(self._fh, lineterminator="\n").writerow(names)

    def write(self, data: dict[str, Any]) -> None:
        frame = pd.DataFrame(data, columns=self.names)
        frame.to_csv(self._fh, header=False, index=False, lineterminator="\n")

    def _close(self) -> None:
        self._fh.close()


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


# --- inference ----------------------------------------------------------------------------


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


# --- the whole run ------------------------------------------------------------------------


def score_file(
    ref: str,
    input: Path,
    output: Path,
    *,
    rejects: Path | None = None,
    warnings: Path | None = None,
    input_checks: CheckMode | str | None = None,
    id_column: str | None = None,
    chunk_rows: int = 50_000,
    on_progress: Callable[[int], None] | None = None,
    on_warning: Warn | None = None,
) -> ScoreSummary:
    """Score every row of ``input`` with model ``ref`` (``NAME`` or ``NAME:VERSION``).

    Writes ``output`` (``.csv`` or ``.parquet``): the id column (``id_column``, else a column
    named ``id`` or ending in ``_id`` that is not a feature, if any), ``prediction``, and for
    classifiers one ``probability_<class>`` (or ``score_<class>``) column per class. Rows the
    service would refuse go to ``rejects`` (default :func:`default_rejects_path`, always
    written, header only when nothing was refused): the id, ``row`` (1 = the first data row),
    ``reason`` and the row's feature values as read. ``on_progress`` is called after each
    chunk with the number of rows it held.

    The rows that pass the value rules are held against the training data under
    ``input_checks`` (``accept``, ``warn``, ``reject``; default: the model's own mode), and
    the summary counts their findings per feature and reason (``findings``) in every mode.
    ``warn`` scores them and writes ``warnings`` (default :func:`default_warnings_path`,
    always written under ``warn``): the id, ``row``, ``feature``, ``value`` (as checked),
    ``reason`` and ``message``, one line per finding, in file order. ``reject`` sends those
    rows to the rejects file instead (``reason``: ``plan: 'x' was never seen in training
    ...``, the words of the service's 422). ``accept`` only counts them.

    ``ref`` is resolved as everywhere (kiln/resolve.py): ``NAME`` is the production version;
    a rejected version is used only when named exactly, and ``on_warning`` (else the
    ``kiln`` logger) is told. The input's columns that are neither features nor the id are
    named in the summary (``unused_columns``), never dropped silently.

    Raises DataError (a missing or unreadable input, a missing feature column),
    InvalidInput (an output that is not .csv or .parquet, an unknown input-check mode),
    ModelNotFound.
    """
    started = time.perf_counter()
    input, output = Path(input), Path(output)
    if chunk_rows < 1:
        raise InvalidInput(f"chunk_rows must be at least 1, got {chunk_rows}")
    try:
        mode = parse_mode(input_checks) if input_checks is not None else None
    except ValueError as exc:
        raise InvalidInput(f"input checks: {exc}") from None
    out_format = _output_format(output)
    rejects = Path(rejects) if rejects is not None else default_rejects_path(output)
    if len({input.resolve(), output.resolve(), rejects.resolve()}) < 3:
        raise InvalidInput("the input, output and rejects files must be three different files")
    source = open_source(input)
    stored = resolve(ref, warn=on_warning)
    meta = stored.metadata
    checks = InputChecks(meta, mode)
    warned: Path | None = None
    if checks.mode is CheckMode.warn:
        warned = Path(warnings) if warnings is not None else default_warnings_path(output)
        paths = {input.resolve(), output.resolve(), rejects.resolve(), warned.resolve()}
        if len(paths) < 4:
            raise InvalidInput(
                "the input, output, rejects and warnings files must be four different files"
            )
    features = [(f.name, f.kind) for f in meta.features]
    feature_names = [name for name, _ in features]
    missing = [name for name in feature_names if name not in source.columns]
    if missing:
        shown = ", ".join(source.columns[:40]) + (" ..." if len(source.columns) > 40 else "")
        raise DataError(
            f"no column{'s' if len(missing) > 1 else ''} {', '.join(map(repr, missing))} "
            f"for model {stored.tag}, which takes "
            f"{', '.join(feature_names)}; the file's columns are: {shown}",
            source=str(input),
        )

    runtime = ModelRuntime(stored, default_providers(), intra_op_threads=1)
    runtime.warm_up()
    reserved = ["prediction", "row", "reason"] + [
        f"{p}_{c}" for p in ("probability", "score") for c in meta.classes or []
    ]
    if warned is not None:
        reserved += WARNING_COLUMNS
    ident = _pick_id_column(source, feature_names, id_column, reserved)
    schema, per_class = _output_schema(runtime, ident)
    class_columns = schema.names[len(schema.names) - len(meta.classes or []) :] if per_class else []
    wanted = list(dict.fromkeys([*([ident] if ident else []), *feature_names]))
    strings = {n for n, k in features if k is not FeatureKind.numeric}

    output.parent.mkdir(parents=True, exist_ok=True)
    rejects.parent.mkdir(parents=True, exist_ok=True)
    if warned is not None:
        warned.parent.mkdir(parents=True, exist_ok=True)
    reject_names = ([ident] if ident else []) + ["row", "reason"]
    reject_names += [n for n in feature_names if n != ident]
    files: list[_File] = []
    done = False
    rows = scored = rejected = 0
    inference = _Inference(runtime)
    try:
        scores = _Scores(output, out_format, schema)
        files.append(scores)
        refused = _Rows(rejects, reject_names)
        files.append(refused)
        warning_rows = None
        if warned is not None:
            warning_rows = _Rows(warned, ([ident] if ident else []) + WARNING_COLUMNS)
            files.append(warning_rows)
        inspected = _InputChecks(checks, checks.mode, warning_rows)
        for frame in source.chunks(wanted, strings, ident, chunk_rows):
            checked = check_frame(frame, features)
            good = ~checked.bad
            n_good = int(good.sum())
            outputs: dict[str, np.ndarray] = {}
            if n_good:
                columns = (
                    checked.columns
                    if n_good == len(frame)
                    else {n: v[good] for n, v in checked.columns.items()}
                )
                check_columns(meta, columns)
                scored_at = np.flatnonzero(good)
                refuse = inspected.chunk(
                    columns, scored_at, frame, rows + 1, ident, checked.reasons
                )
                if refuse is not None:  # reject: unlike the training data, not scored
                    good[scored_at[refuse]] = False
                    columns = {n: v[~refuse] for n, v in columns.items()}
                    scored_at = scored_at[~refuse]
                    n_good = len(scored_at)
            if n_good:
                outputs = inference.run(columns, n_good)
                nonfinite = nonfinite_outputs(outputs)
                if nonfinite:  # no answer for these rows: rejects, as the service's 422
                    for i, detail in nonfinite.items():
                        checked.reasons[int(scored_at[i])] = [NonFiniteOutput.reason(detail)]
                    keep = np.ones(n_good, dtype=bool)
                    keep[list(nonfinite)] = False
                    outputs = {n: v[keep] for n, v in outputs.items()}
                    good[scored_at[~keep]] = False
                    n_good = int(keep.sum())
            if n_good < len(frame):
                positions = np.flatnonzero(~good)
                block = frame.iloc[positions]
                refused.write(
                    {
                        **{n: block[n].to_numpy() for n in wanted},
                        "row": positions + rows + 1,
                        "reason": ["; ".join(checked.reasons[int(i)]) for i in positions],
                    }
                )
            if n_good:
                data: dict[str, Any] = {}
                if ident:
                    ids = frame[ident]
                    data[ident] = (ids if n_good == len(frame) else ids[good]).to_numpy()
                if per_class:
                    data["prediction"] = outputs["label"].reshape(-1)
                    for j, name in enumerate(class_columns):
                        data[name] = outputs[per_class][:, j]
                else:
                    data["prediction"] = outputs["prediction"].reshape(-1)
                scores.write(data)
            rows += len(frame)
            scored += n_good
            rejected += len(frame) - n_good
            if on_progress is not None:
                on_progress(len(frame))
        done = True
    finally:
        inference.close()
        for file in files:
            file.close(keep=done)
    return ScoreSummary(
        model=stored.tag,
        rows=rows,
        scored=scored,
        rejected=rejected,
        seconds=time.perf_counter() - started,
        output=output,
        rejects=rejects,
        id_column=ident,
        unused_columns=tuple(c for c in source.columns if c not in wanted),
        input_checks=checks.mode,
        findings=dict(inspected.counts),
        warnings=warned,
    )
