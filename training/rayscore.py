"""Batch scoring past one machine: ``kiln predict ... --engine ray`` on Ray Data.

    from training.rayscore import score_with_ray
    summary = score_with_ray("churn", "s3://bucket/in/", "s3://bucket/scores/", workers=8)

Ray runs it, not Kiln: a stream of the input's units through a pool of actors, with Ray
Data's backpressure (a unit is read only when an actor is free for it), its retries (an
actor that dies is restarted and its unit run again) and its Parquet and CSV writers, on a
local Ray started for the run or on a cluster (``address``, or ``RAY_ADDRESS``; KubeRay sets
it for a RayJob, deploy/k8s/ray). Kiln brings the parts in between:

- **Units**: each part of the input (training/parts.py) is one unit, and a Parquet file of
  many row groups is cut into units of whole row groups (at least ``chunk_rows`` rows each),
  so that one large file still spreads over the actors. Units are planned by the driver from
  the files' metadata, which also numbers every row by its file.
- **Actors**: each opens the model once, from the bytes of its kiln.json and model.onnx that
  the driver ships through Ray's object store (the model's sha256 checked again there), so a
  worker node needs no model store. Each reads its unit with the reader the single-process
  engine uses and scores it chunk by chunk with the same :class:`~training.scoring.ChunkScorer`:
  the same parsing, value rules, input checks and ONNX Runtime calls give the same answers
  and the same rejects, row for row. (Ray Data's own CSV reader types values by its own
  rules, which would make the two engines disagree on rows such as "n/a" in a number column.)
- **Order**: Ray Data keeps the units' order (``preserve_order``), so the output's parts,
  read in name order, hold the rows in the input's order.
- **Rejects and warnings**: each unit's go to a file of their own beside the output,
  written under a temporary name and renamed when the unit is done (a unit run again after
  a lost actor writes the same file again), and are joined into ``<output>.rejects.csv``
  (and ``<output>.warnings.csv`` under ``warn``) at the end, in the input's order, with the
  words and columns of the single-process engine's files.
- **Progress**: actors report rows and finished parts to a small counter actor that the
  driver reads twice a second (``on_progress``).

The output directory is written as ``<output>.partial`` and renamed at the end: a failed
run leaves no output, and no rejects file.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import tempfile
import threading
import time
import uuid
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kiln.artifact import MODEL_FILE, CheckMode, read_metadata
from kiln.errors import InvalidInput, KilnError
from kiln.resolve import Warn, resolve
from kiln.store import StoredModel
from training.batch import (
    ScoreSummary,
    Source,
    _parse_mode,
    csv_rows,
    default_rejects_path,
    default_warnings_path,
    open_parts,
    open_scorer,
    scores_table,
)
from training.parts import Part, open_filesystem

__all__ = ["OUTPUT_FORMATS", "Progress", "score_with_ray"]

OUTPUT_FORMATS = ("parquet", "csv")
METADATA_FILE = "kiln.json"
ACTOR_RESTARTS = 3  # a lost actor is restarted, and its unit run again, this many times
POLL_SECONDS = 0.5
JOIN_TIMEOUT_S = 10  # to reach a cluster's address before Ray is asked to join it
_UNIT = "{:06d}"


@dataclass(frozen=True)
class Progress:
    """What the counter actor has heard so far."""

    rows: int
    parts_done: int
    parts: int


@dataclass(frozen=True)
class _Unit:
    """One actor's share: part ``part`` (its index), its rows from ``first_row`` (1-based),
    only ``row_groups`` of a Parquet file (None: the whole file), ``last``: the part's last
    unit."""

    index: int
    part: int
    name: str
    source: Source
    first_row: int
    row_groups: tuple[int, ...] | None
    last: bool


@dataclass(frozen=True)
class _Job:
    """What every actor of one run is given, beside the model: the run's rules (``mode``,
    ``ident``, ``several`` parts), its units, and ``work``, the directory of the units'
    rejects, warnings and counts."""

    tag: str
    mode: CheckMode | None
    ident: str | None
    several: bool
    units: list[_Unit]
    chunk_rows: int
    work: str


def _plan(parts: list[tuple[Part, Source]], chunk_rows: int) -> list[_Unit]:
    units: list[_Unit] = []
    for number, (part, source) in enumerate(parts):
        groups = source.row_groups
        if source.format != "parquet" or len(groups) < 2:
            units.append(_Unit(len(units), number, part.name, source, 1, None, True))
            continue
        start, first, taken = 0, 1, 0
        for end, rows in enumerate(groups, start=1):
            taken += rows
            if taken >= chunk_rows or end == len(groups):
                chosen = tuple(range(start, end))
                last = end == len(groups)
                units.append(_Unit(len(units), number, part.name, source, first, chosen, last))
                first += taken
                start, taken = end, 0
    return units


# --- the actors -----------------------------------------------------------------------------


class _Counter:
    """The progress counter (a Ray actor): rows scored, parts finished."""

    def __init__(self, parts: int) -> None:
        self.rows = 0
        self.done = 0
        self.parts = parts

    def add(self, rows: int, part_done: bool) -> None:
        self.rows += rows
        self.done += int(part_done)

    def read(self) -> Progress:
        return Progress(self.rows, self.done, self.parts)


class _Scorer:
    """The scoring actor's class: one model, opened once; one unit per call.

    Called by Ray Data with a batch of one row: the unit's number. Yields the unit's scored
    rows as Arrow tables of the output's schema, chunk by chunk, and writes the unit's
    rejects, warnings and counts into ``work`` (a directory, local or a URI).
    """

    def __init__(
        self,
        model: Any,  # a reference to the model's files: {name: bytes}, in the object store
        job: _Job,
        counter: Any,
    ) -> None:
        import ray

        from training.scoring import ChunkScorer

        self._dir = tempfile.TemporaryDirectory(prefix="kiln-ray-model-")
        files: dict[str, bytes] = ray.get(model)
        for name, data in files.items():
            (Path(self._dir.name) / name).write_bytes(data)
        path = Path(self._dir.name)
        stored = StoredModel(job.tag, path, read_metadata(path))
        stored.read_onnx()  # the sha256 registered in kiln.json, checked on this node
        # one thread per actor: Ray's parallelism is the actors (one CPU each)
        self.scorer = ChunkScorer(stored, job.mode, job.ident, parts=job.several, threads=1)
        self.units = job.units
        self.chunk_rows = job.chunk_rows
        self.work = job.work
        self.counter = counter

    def __call__(self, batch: dict[str, Any]) -> Iterator[Any]:
        for index in batch["unit"]:
            yield from self._unit(self.units[int(index)])

    def _unit(self, unit: _Unit) -> Iterator[Any]:

        scorer = self.scorer
        before = dict(scorer.counts)
        rows = scored = rejected = warned = 0
        first = unit.first_row
        groups = list(unit.row_groups) if unit.row_groups is not None else None
        with (
            _PartFile(self.work, "rejects", unit.index, scorer.reject_names) as rejects,
            _PartFile(self.work, "warnings", unit.index, scorer.warning_names) as warnings,
        ):
            source = unit.source
            for frame in source.chunks(
                scorer.wanted, scorer.strings, scorer.ident, self.chunk_rows, groups
            ):
                result = scorer.score(frame, first, unit.name)
                first += len(frame)
                rows, scored = rows + result.rows, scored + result.scored
                rejected, warned = rejected + result.rejected, warned + result.warned
                if result.rejects is not None:
                    rejects.write(result.rejects)
                if result.warnings is not None:
                    warnings.write(result.warnings)
                self.counter.add.remote(result.rows, False)
                if result.scores is not None:
                    yield scores_table(result.scores, scorer.schema)
        found = {
            f"{feature}\t{reason}": n - before.get((feature, reason), 0)
            for (feature, reason), n in scorer.counts.items()
            if n != before.get((feature, reason), 0)
        }
        stats = {
            "rows": rows, "scored": scored, "rejected": rejected, "warned": warned,
            "findings": found,
        }  # fmt: skip
        _write_bytes(self.work, f"stats/{_UNIT.format(unit.index)}.json", json.dumps(stats))
        self.counter.add.remote(0, unit.last)


class _PartFile:
    """One unit's rejects or warnings: CSV rows (no header), streamed to a temporary name
    and renamed when the unit is done (an empty file when it had none); removed if the
    unit fails, so that only whole units are joined."""

    def __init__(self, work: str, kind: str, unit: int, names: list[str]) -> None:
        self.names = names
        self.fs, root = open_filesystem(work)
        self.final = f"{root}/{kind}/{_UNIT.format(unit)}.csv"
        self.temp = f"{root}/{kind}/.{_UNIT.format(unit)}.{uuid.uuid4().hex}.csv"

    def __enter__(self) -> _PartFile:
        self.fs.create_dir(self.temp.rsplit("/", 1)[0], recursive=True)
        self.out = self.fs.open_output_stream(self.temp)
        return self

    def write(self, data: dict[str, Any]) -> None:
        self.out.write(csv_rows(data, self.names).encode())

    def __exit__(self, kind: object, *rest: object) -> None:
        self.out.close()
        if kind is None:
            self.fs.move(self.temp, self.final)
        else:
            self.fs.delete_file(self.temp)


def _write_bytes(work: str, name: str, text: str) -> None:
    fs, root = open_filesystem(work)
    path = f"{root}/{name}"
    fs.create_dir(path.rsplit("/", 1)[0], recursive=True)
    with fs.open_output_stream(path) as out:
        out.write(text.encode())


# --- the driver ------------------------------------------------------------------------------


def _model_bytes(stored: StoredModel) -> dict[str, bytes]:
    return {
        METADATA_FILE: (stored.path / METADATA_FILE).read_bytes(),
        MODEL_FILE: stored.read_onnx(),
    }


def _join(work: str, kind: str, units: int, header: list[str], target: str) -> None:
    """The units' ``kind`` files, in order, as one CSV at ``target`` with ``header``."""
    import csv
    import io

    fs, root = open_filesystem(work)
    out_fs, out_path = open_filesystem(target)
    line = io.StringIO()
    csv.writer(line, lineterminator="\n").writerow(header)
    with out_fs.open_output_stream(out_path) as out:
        out.write(line.getvalue().encode())
        for index in range(units):
            with fs.open_input_stream(f"{root}/{kind}/{_UNIT.format(index)}.csv") as part:
                out.write(part.read())


def _kiln_error(exc: BaseException) -> KilnError | None:
    """The Kiln error behind a failed Ray run, if one is (Ray wraps a task's exception)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, KilnError):
            return current
        cause = getattr(current, "cause", None)
        current = cause if isinstance(cause, BaseException) else current.__cause__
    return None


def _reachable(address: str) -> None:
    """KilnError at once when nothing listens at a ``host:port`` address: ray.init would
    wait for minutes, retrying. Other forms (``ray://``, ``auto``) are left to Ray."""
    host, _, port = address.rpartition(":")
    if "://" in address or not host or not port.isdigit():
        return
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=JOIN_TIMEOUT_S).close()
    except OSError as exc:
        raise KilnError(
            f"cannot join the Ray cluster at {address}: nothing answers there ({exc})"
        ) from None


def _start_ray(address: str | None, workers: int | None) -> int:
    """Join ``address`` (or RAY_ADDRESS), else start a local Ray; the actors to run."""
    import ray

    joined = address or os.environ.get("RAY_ADDRESS")
    quiet: dict[str, Any] = {"logging_level": "WARNING", "log_to_driver": False}
    if joined:
        _reachable(joined)
        try:
            ray.init(address=joined, **quiet)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise KilnError(f"cannot join the Ray cluster at {joined}: {exc}") from None
        cpus = int(ray.cluster_resources().get("CPU", 1))
        return workers or max(1, cpus)
    cores = os.cpu_count() or 1
    actors = workers or cores
    # "local": a new Ray for this run (without it ray.init joins any Ray started on this
    # machine by `ray start`). An actor takes one CPU; reading happens inside it, and Ray's
    # write tasks need a slot too.
    ray.init(address="local", num_cpus=max(cores, actors + 1), include_dashboard=False, **quiet)
    return actors


def score_with_ray(
    ref: str,
    input: Path | str,
    output: Path | str,
    *,
    rejects: Path | str | None = None,
    warnings: Path | str | None = None,
    input_checks: CheckMode | str | None = None,
    id_column: str | None = None,
    chunk_rows: int = 50_000,
    on_progress: Callable[[int], None] | None = None,
    on_warning: Warn | None = None,
    address: str | None = None,
    workers: int | None = None,
    output_format: str = "parquet",
    on_parts: Callable[[Progress], None] | None = None,
) -> ScoreSummary:
    """Score every row of ``input`` with model ``ref`` on Ray; ``output`` is a directory of
    Parquet (``output_format="csv"``: CSV) parts, in the input's order.

    The arguments and the summary are :func:`training.batch.score_file`'s, and so are the
    output's columns, the rejects and warnings files (beside the output:
    ``<output>.rejects.csv``) and the rules. ``address`` joins a running cluster (default
    ``RAY_ADDRESS``); without one a local Ray is started for the run and stopped after it.
    ``workers``: scoring actors (default: one per CPU of the cluster). ``on_parts`` is told
    the progress (rows, parts done) twice a second.

    Raises what score_file raises, before Ray starts; DataError naming the part that cannot
    be read; KilnError when Ray cannot be joined or a unit fails past its retries.
    """
    started = time.perf_counter()
    if chunk_rows < 1:
        raise InvalidInput(f"chunk_rows must be at least 1, got {chunk_rows}")
    if workers is not None and workers < 1:
        raise InvalidInput(f"workers must be at least 1, got {workers}")
    if output_format not in OUTPUT_FORMATS:
        raise InvalidInput(f"the output format must be parquet or csv, got {output_format!r}")
    mode = _parse_mode(input_checks)
    target = str(output).rstrip("/")
    if Path(target).suffix.lower() in {".csv", ".parquet", ".pq"}:
        raise InvalidInput(
            f"{target}: with --engine ray the output is a directory of parts "
            "(--format csv for CSV parts)"
        )
    rejects_at = str(rejects) if rejects is not None else str(default_rejects_path(Path(target)))
    import pyarrow.fs as pafs

    out_fs, out_path = open_filesystem(target)
    if out_fs.get_file_info(out_path).type != pafs.FileType.NotFound:
        raise InvalidInput(f"{target} already exists: give a new directory for the output")
    parts = open_parts(input)
    stored = resolve(ref, warn=on_warning)
    scorer, ident = open_scorer(stored, mode, [s for _, s in parts], id_column)
    scorer.close()
    warned = None
    if scorer.mode is CheckMode.warn:
        warned = str(warnings) if warnings is not None else str(default_warnings_path(Path(target)))
    units = _plan(parts, chunk_rows)

    actors = _start_ray(address, workers)
    partial = f"{target}.partial-{uuid.uuid4().hex[:8]}"
    work = f"{target}.work-{uuid.uuid4().hex[:8]}"
    try:
        job = _Job(stored.tag, mode, ident, len(parts) > 1, units, chunk_rows, work)
        _run(stored, job, partial, output_format, actors, on_progress, on_parts, len(parts))
        stats = [_read_stats(work, unit.index) for unit in units]
        _join(work, "rejects", len(units), scorer.reject_names, rejects_at)
        if warned is not None:
            _join(work, "warnings", len(units), scorer.warning_names, warned)
        out_fs.move(open_filesystem(partial)[1], out_path)
    except Exception as exc:
        _remove(partial)
        found = _kiln_error(exc)
        if found is not None:
            raise found from None
        raise KilnError(f"the Ray run failed: {str(exc).strip().splitlines()[-1]}") from exc
    finally:
        _remove(work)
        import ray

        ray.shutdown()  # disconnects; stops the local Ray when it was started here
    findings: dict[tuple[str, str], int] = {}
    for stat in stats:
        for key, n in stat["findings"].items():
            feature, reason = key.split("\t")
            findings[(feature, reason)] = findings.get((feature, reason), 0) + n
    return ScoreSummary(
        model=stored.tag,
        rows=sum(s["rows"] for s in stats),
        scored=sum(s["scored"] for s in stats),
        rejected=sum(s["rejected"] for s in stats),
        seconds=time.perf_counter() - started,
        output=Path(target),
        rejects=Path(rejects_at),
        id_column=ident,
        unused_columns=tuple(c for c in parts[0][1].columns if c not in scorer.wanted),
        input_checks=scorer.mode,
        findings=findings,
        warnings=Path(warned) if warned is not None else None,
        parts=len(parts),
        engine="ray",
        warned=sum(s["warned"] for s in stats),
    )


def _run(
    stored: StoredModel,
    job: _Job,
    partial: str,
    output_format: str,
    actors: int,
    on_progress: Callable[[int], None] | None,
    on_parts: Callable[[Progress], None] | None,
    parts: int,
) -> None:
    import ray
    import ray.data

    logging.getLogger("ray.data").setLevel(logging.WARNING)  # its plan, not Kiln's words
    counter = ray.remote(num_cpus=0)(_Counter).remote(parts)
    context = ray.data.DataContext.get_current()
    context.execution_options.preserve_order = True  # the output in the input's order
    context.enable_progress_bars = False  # Kiln's own progress instead (on_progress)
    dataset = ray.data.from_items(
        [{"unit": u.index} for u in job.units], override_num_blocks=len(job.units)
    )
    # The model goes by reference: held by this driver, so a restarted actor finds it again
    # (constructor arguments Ray stores itself are not kept for restarts).
    model = ray.put(_model_bytes(stored))
    with warnings.catch_warnings():
        # Ray 2.60 has no named parameter for an actor's restarts yet, only these keyword
        # arguments, which it calls deprecated (its default is to retry without end, and a
        # unit that kills its actor every time must end the run with a message)
        warnings.filterwarnings("ignore", message=".*ray_remote_args.* is deprecated")
        scored = dataset.map_batches(
            _Scorer,
            batch_size=1,
            fn_constructor_kwargs={"model": model, "job": job, "counter": counter},
            compute=ray.data.ActorPoolStrategy(size=actors),
            num_cpus=1,
            max_restarts=ACTOR_RESTARTS,
            max_task_retries=ACTOR_RESTARTS,
        )  # fmt: skip
    writer = scored.write_parquet if output_format == "parquet" else scored.write_csv
    done = threading.Event()
    failure: list[BaseException] = []

    def write() -> None:
        try:
            writer(partial, ray_remote_args={"num_cpus": 0.25})
        except BaseException as exc:  # handed to the driver's thread
            failure.append(exc)
        finally:
            done.set()

    thread = threading.Thread(target=write, name="kiln-ray-write", daemon=True)
    thread.start()
    seen = 0
    while not done.wait(POLL_SECONDS):
        seen = _report(counter, seen, on_progress, on_parts)
    thread.join()
    seen = _report(counter, seen, on_progress, on_parts)
    if failure:
        raise failure[0]


def _report(
    counter: Any,
    seen: int,
    on_progress: Callable[[int], None] | None,
    on_parts: Callable[[Progress], None] | None,
) -> int:
    import ray

    progress: Progress = ray.get(counter.read.remote())
    if on_progress is not None and progress.rows > seen:
        on_progress(progress.rows - seen)
    if on_parts is not None:
        on_parts(progress)
    return progress.rows


def _read_stats(work: str, unit: int) -> dict[str, Any]:
    fs, root = open_filesystem(work)
    with fs.open_input_stream(f"{root}/stats/{_UNIT.format(unit)}.json") as stream:
        found: dict[str, Any] = json.loads(stream.read())
    return found


def _remove(location: str) -> None:
    import pyarrow.fs as pafs

    fs, path = open_filesystem(location)
    if fs.get_file_info(path).type == pafs.FileType.Directory:
        fs.delete_dir(path)
