"""Batch scoring in one process: an input of any size through one model, chunk by chunk.

    from training.batch import score_file
    summary = score_file("churn", Path("customers.csv"), Path("scores.parquet"))

The input is a CSV, TSV or Parquet file, a directory of them or a glob (training/parts.py),
local or in an object store; every part must have the same columns. It is read
``chunk_rows`` rows at a time and only one chunk is held in memory, whatever its size. Each
chunk goes through training/scoring.py's :class:`~training.scoring.ChunkScorer` (the value
rules, the input checks and ONNX Runtime, as the service applies them); this module reads
the parts (:class:`Source`: in a CSV file only an empty field is missing, and a CSV's
numbers are its text) and writes the files: the scores, the rejects with their reasons and,
under ``warn``, the warnings. training/rayscore.py runs the same scorer on Ray actors.

Outputs are written to temporary files next to the requested ones and renamed into place at
the end: an error (an unreadable line, a failing model) leaves no half-written output behind.
"""

from __future__ import annotations

import contextlib
import csv
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import pandas as pd

from kiln.artifact import CheckMode
from kiln.checks import InputChecks, parse_mode
from kiln.errors import DataError, InvalidInput
from kiln.resolve import Warn, resolve
from kiln.store import StoredModel
from training.parts import Part, is_uri, list_parts, open_filesystem
from training.scoring import ChunkScorer, reserved_names

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
    parts: int = 1  # the input's files (training/parts.py)
    warned: int = 0  # scored rows that failed an input check (warn and accept)
    engine: str = "local"  # "local" (this module) or "ray" (training/rayscore.py)

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


def estimate_rows(location: Path | str) -> int | None:
    """Rows in an input (training/parts.py): exact for Parquet, estimated from each file's
    first MiB for CSV; None when it cannot say (a URI, an unreadable part)."""
    try:
        total = 0
        for part in list_parts(location):
            if is_uri(part.location):
                return None
            found = _estimate_file(Path(part.location))
            if found is None:
                return None
            total += found
        return total
    except Exception:  # only a hint for a progress bar; score_file reports real errors
        return None


def _estimate_file(path: Path) -> int | None:
    if _input_format(path) == "parquet":
        import pyarrow.parquet as pq

        return int(pq.ParquetFile(path).metadata.num_rows)
    size = path.stat().st_size
    with path.open("rb") as fh:
        head = fh.read(1 << 20)
    lines = head.count(b"\n") + (0 if head.endswith(b"\n") or not head else 1)
    if len(head) >= size:
        return max(lines - 1, 0)
    return max(round(size / len(head) * lines) - 1, 0) if lines else None


# --- reading ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Source:
    """A CSV, TSV or Parquet file to read in chunks (``kiln predict``, ``kiln drift``): a
    local path, or a URI opened through pyarrow's filesystems (training/parts.py)."""

    path: str
    format: str
    columns: list[str]  # every column of the file, in file order
    types: tuple[str, ...] = ()  # Parquet: each column's Arrow type, in the same order
    row_groups: tuple[int, ...] = ()  # Parquet: rows in each row group

    @contextlib.contextmanager
    def opened(self) -> Iterator[Any]:
        """What pandas and pyarrow read: the local path itself, or an open pyarrow file."""
        if not is_uri(self.path):
            yield self.path
            return
        fs, inner = open_filesystem(self.path)
        opener = fs.open_input_file if self.format == "parquet" else fs.open_input_stream
        with opener(inner) as handle:
            yield handle

    def chunks(
        self,
        wanted: list[str],
        strings: set[str],
        ident: str | None,
        rows: int,
        row_groups: list[int] | None = None,
    ) -> Iterator[pd.DataFrame]:
        """The wanted columns, ``rows`` rows at a time; read errors become DataError.

        ``strings``: categorical and text features, read as written; ``ident``: the id
        column, read as strings whatever its type; ``row_groups``: only these row groups of
        a Parquet file (the Ray engine's units), else the whole file.
        """
        try:
            if self.format == "parquet":
                yield from self._parquet(wanted, strings, ident, rows, row_groups)
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
        with (
            self.opened() as handle,
            pd.read_csv(
                handle,
                dtype={c: str for c in self.columns if c not in numeric},
                chunksize=rows,
                **self._csv_options(),
            ) as reader,
        ):
            for frame in reader:
                yield frame[wanted]

    def _parquet(
        self,
        wanted: list[str],
        strings: set[str],
        ident: str | None,
        rows: int,
        row_groups: list[int] | None,
    ) -> Iterator[pd.DataFrame]:
        import pyarrow as pa
        import pyarrow.compute as pc
        import pyarrow.parquet as pq

        with self.opened() as handle, pq.ParquetFile(handle) as parquet:
            batches = parquet.iter_batches(batch_size=rows, columns=wanted, row_groups=row_groups)
            for batch in batches:
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


def open_source(path: Path | str) -> Source:
    """The file at ``path`` (a local path or a URI), its format and columns checked;
    DataError names what is wrong."""
    location = str(path)
    fmt = _input_format(Path(location))
    if not is_uri(location) and not Path(location).is_file():
        raise DataError("file not found", source=location)
    source = Source(location, fmt, [])
    try:
        with source.opened() as handle:
            if fmt == "parquet":
                import pyarrow.parquet as pq

                meta = pq.ParquetFile(handle).metadata
                schema = meta.schema.to_arrow_schema()
                groups = tuple(meta.row_group(i).num_rows for i in range(meta.num_row_groups))
                return Source(
                    location, fmt, list(schema.names), tuple(map(str, schema.types)), groups
                )
            header = pd.read_csv(handle, nrows=0, **source._csv_options())
    except pd.errors.EmptyDataError:
        raise DataError("is empty: expected a header row", source=location) from None
    except FileNotFoundError:
        raise DataError("file not found", source=location) from None
    except OSError as exc:
        raise DataError(f"cannot be read: {exc.strerror or exc}", source=location) from None
    except Exception as exc:  # pandas and pyarrow raise many types for corrupt files
        raise DataError(f"cannot be read as {fmt.upper()}: {exc}", source=location) from None
    return Source(location, fmt, [str(c) for c in header.columns])


def open_parts(location: Path | str) -> list[tuple[Part, Source]]:
    """Every part of ``location`` (training/parts.py) opened, in order, each with the first
    part's columns (and Parquet types): DataError names a part that differs, and how."""
    found = [(part, open_source(part.location)) for part in list_parts(location)]
    first_part, first = found[0]
    for part, source in found[1:]:
        if source.columns != first.columns:
            gone = [c for c in first.columns if c not in source.columns]
            extra = [c for c in source.columns if c not in first.columns]
            what = "; ".join(
                text
                for text in (
                    f"no {', '.join(map(repr, gone))}" if gone else "",
                    f"{', '.join(map(repr, extra))} as well" if extra else "",
                    "" if gone or extra else "the same columns in another order",
                )
                if text
            )
            raise DataError(
                f"its columns differ from the first part's ({first_part.name}): {what}",
                source=part.location,
            )
        if source.format != first.format or source.types != first.types:
            changed = next(
                (
                    f"{c!r} is {t} here, {u} in {first_part.name}"
                    for c, t, u in zip(source.columns, source.types, first.types, strict=False)
                    if t != u
                ),
                f"it is {source.format.upper()}, {first_part.name} is {first.format.upper()}",
            )
            raise DataError(
                f"its schema differs from the first part's: {changed}", source=part.location
            )
    return found


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
        self._writer.write_table(scores_table(data, self.schema))

    def _close(self) -> None:
        self._writer.close()


def scores_table(data: dict[str, Any], schema: Any) -> Any:
    """A chunk's scores (:class:`~training.scoring.ChunkResult` ``scores``) as an Arrow
    table of the output's ``schema``."""
    import pyarrow as pa

    arrays = [pa.array(data[f.name], type=f.type, from_pandas=True) for f in schema]
    return pa.Table.from_arrays(arrays, schema=schema)


def csv_rows(data: dict[str, Any], names: list[str]) -> str:
    """Rows of the rejects or warnings file (raw values of any type), as CSV lines."""
    frame = pd.DataFrame(data, columns=names)
    return str(frame.to_csv(header=False, index=False, lineterminator="\n"))


class _Rows(_File):
    """The rejects or the warnings file: CSV of raw values (any type), written by pandas."""

    def __init__(self, path: Path, names: list[str]) -> None:
        super().__init__(path)
        self.names = names
        self._fh: IO[str] = self.temp.open("w", encoding="utf-8", newline="")
        csv.writer(self._fh, lineterminator="\n").writerow(names)

    def write(self, data: dict[str, Any]) -> None:
        self._fh.write(csv_rows(data, self.names))

    def _close(self) -> None:
        self._fh.close()


# --- the whole run ------------------------------------------------------------------------


def score_file(
    ref: str,
    input: Path | str,
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
    output = Path(output)
    if chunk_rows < 1:
        raise InvalidInput(f"chunk_rows must be at least 1, got {chunk_rows}")
    mode = _parse_mode(input_checks)
    out_format = _output_format(output)
    rejects = Path(rejects) if rejects is not None else default_rejects_path(output)
    parts = open_parts(input)
    local = [Path(part.location).resolve() for part, _ in parts if not is_uri(part.location)]
    if output.resolve() in local or rejects.resolve() in local or output == rejects:
        raise InvalidInput("the input, output and rejects files must be three different files")
    stored = resolve(ref, warn=on_warning)
    scorer, ident = open_scorer(stored, mode, [s for _, s in parts], id_column)
    warned: Path | None = None
    if scorer.mode is CheckMode.warn:
        warned = Path(warnings) if warnings is not None else default_warnings_path(output)
        if warned.resolve() in {*local, output.resolve(), rejects.resolve()}:
            raise InvalidInput(
                "the input, output, rejects and warnings files must be four different files"
            )
    output.parent.mkdir(parents=True, exist_ok=True)
    rejects.parent.mkdir(parents=True, exist_ok=True)
    if warned is not None:
        warned.parent.mkdir(parents=True, exist_ok=True)
    files: list[_File] = []
    done = False
    rows = scored = rejected = warned_rows = 0
    try:
        scores = _Scores(output, out_format, scorer.schema)
        files.append(scores)
        refused = _Rows(rejects, scorer.reject_names)
        files.append(refused)
        warning_rows = None
        if warned is not None:
            warning_rows = _Rows(warned, scorer.warning_names)
            files.append(warning_rows)
        for part, source in parts:
            first = 1
            chunks = source.chunks(scorer.wanted, scorer.strings, ident, chunk_rows)
            for frame in chunks:
                result = scorer.score(frame, first, part.name)
                first += len(frame)
                if result.rejects is not None:
                    refused.write(result.rejects)
                if result.warnings is not None and warning_rows is not None:
                    warning_rows.write(result.warnings)
                if result.scores is not None:
                    scores.write(result.scores)
                rows += result.rows
                scored += result.scored
                rejected += result.rejected
                warned_rows += result.warned
                if on_progress is not None:
                    on_progress(len(frame))
        done = True
    finally:
        scorer.close()
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
        unused_columns=tuple(c for c in parts[0][1].columns if c not in scorer.wanted),
        input_checks=scorer.mode,
        findings=dict(scorer.counts),
        warnings=warned,
        parts=len(parts),
        warned=warned_rows,
    )


def _parse_mode(input_checks: CheckMode | str | None) -> CheckMode | None:
    try:
        return parse_mode(input_checks) if input_checks is not None else None
    except ValueError as exc:
        raise InvalidInput(f"input checks: {exc}") from None


def open_scorer(
    stored: StoredModel, mode: CheckMode | None, sources: list[Source], id_column: str | None
) -> tuple[ChunkScorer, str | None]:
    """The model opened for scoring ``sources`` (the parts of one input, same columns), and
    the id column carried: DataError when a feature column or the named id is missing."""
    meta = stored.metadata
    source = sources[0]
    feature_names = [f.name for f in meta.features]
    missing = [name for name in feature_names if name not in source.columns]
    if missing:
        shown = ", ".join(source.columns[:40]) + (" ..." if len(source.columns) > 40 else "")
        raise DataError(
            f"no column{'s' if len(missing) > 1 else ''} {', '.join(map(repr, missing))} "
            f"for model {stored.tag}, which takes "
            f"{', '.join(feature_names)}; the file's columns are: {shown}",
            source=source.path,
        )
    warn = InputChecks(meta, mode).mode is CheckMode.warn
    ident = _pick_id_column(source, feature_names, id_column, reserved_names(meta, warn))
    return ChunkScorer(stored, mode, ident, parts=len(sources) > 1), ident
