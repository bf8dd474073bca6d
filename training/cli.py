"""The ``kiln`` command. It only wires arguments to the training and store functions.

Exit codes: 0 success; 1 failure (training, verification, store); 2 a wrong spec, data or
argument; 3 no such model; 4 trained and registered, but below the quality gate.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from kiln.artifact import CheckMode, ModelMetadata, Stage
from kiln.errors import InvalidInput, KilnError

__all__ = ["app", "main"]

EXIT_GATE = 4


class Engine(StrEnum):
    """Where ``kiln predict`` scores: this process (training/batch.py) or Ray actors
    (training/rayscore.py)."""

    local = "local"
    ray = "ray"


app = typer.Typer(
    help="Kiln: train scikit-learn models from a spec, verify them as ONNX, and register them.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
models_app = typer.Typer(
    help="Inspect the models in the store ($BENTOML_HOME).", no_args_is_help=True
)
app.add_typer(models_app, name="models")

# Lines of text are never broken at the terminal's width: scripts grep them. Tables still fit it.
out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)


def _warn(message: str) -> None:
    err.print(f"[yellow]warning:[/] {message}", highlight=False, soft_wrap=True)


@contextmanager
def _errors() -> Iterator[None]:
    """Print a Kiln error as a message (no traceback) and exit with its code."""
    try:
        yield
    except KilnError as exc:
        err.print(f"[bold red]error:[/] {exc}", highlight=False, markup=True, soft_wrap=True)
        raise typer.Exit(exc.exit_code) from None


@contextmanager
def _progress(name: str, live: bool) -> Iterator[Callable[[str], None]]:
    """A live status line on a terminal; plain lines on stderr otherwise (CI logs)."""
    if live and err.is_terminal:
        with err.status(f"{name}: starting") as status:

            def update(text: str) -> None:
                status.update(f"{name}: {text}")

            yield update
    else:

        def line(text: str) -> None:
            err.print(f"{name}: {text}", highlight=False)

        yield line


def _fmt(value: float | None) -> str:
    return "—" if value is None else f"{value:.4f}"


def _metrics_table(meta: ModelMetadata) -> Table:
    rows = "sample" if meta.imported else "holdout"
    table = Table(title=f"{meta.tag} on {meta.evaluation.holdout_rows:,} {rows} rows")
    table.add_column("metric")
    table.add_column("model", justify="right")
    table.add_column("baseline", justify="right")
    for key, value in meta.evaluation.metrics.items():
        table.add_row(key, _fmt(value), _fmt(meta.evaluation.baseline.get(key)))
    return table


def _summary(meta: ModelMetadata) -> None:
    v = meta.verification
    if meta.quality_measured:
        out.print(_metrics_table(meta))
    else:
        out.print(
            "no quality measured: imported without labels, so only parity with the imported "
            "model was verified (import again with --target COLUMN to measure it)",
            highlight=False,
        )
    out.print(
        f"verified on {v.rows:,} rows: max |ONNX - scikit-learn| = {v.max_abs_diff:.2g} "
        f"(tolerance {v.atol:g} + {v.rtol:g}*|value|)"
        + (f", {v.label_mismatches} label mismatches" if v.label_mismatches is not None else "")
    )
    for check in meta.gate.checks:
        mark = "[green]pass[/]" if check.passed else "[red]FAIL[/]"
        out.print(f"gate {check.metric} {check.op} {check.threshold:g}: {_fmt(check.value)} {mark}")
    stage = "[green]candidate[/]" if meta.stage is Stage.candidate else "[red]rejected[/]"
    out.print(f"registered [bold]{meta.tag}[/] as {stage}")


@app.command()
def train(
    specs: Annotated[list[Path], typer.Argument(help="Spec files (YAML).", show_default=False)],
    data: Annotated[
        list[str] | None,
        typer.Option(
            "--data", "-d", help="Data file or glob; replaces the spec's paths. Repeatable."
        ),
    ] = None,
) -> None:
    """Train, verify and register the model each spec describes."""
    from training.run import train as run_train
    from training.settings import TrainingSettings
    from training.spec import load_spec

    if data and len(specs) > 1:
        err.print("[bold red]error:[/] --data applies to one spec at a time")
        raise typer.Exit(2)
    with _errors():
        settings = TrainingSettings()
        loaded = [(path, load_spec(path)) for path in specs]  # every spec checked before training
    gate_failed = False
    for path, spec in loaded:
        with _errors(), _progress(spec.name, settings.progress) as step:
            stored = run_train(spec, spec_path=path, data=data, settings=settings, on_step=step)
        _summary(stored.metadata)
        gate_failed |= stored.stage is Stage.rejected
    if gate_failed:
        err.print("[bold red]a model is below its quality gate[/]: registered as rejected")
        raise typer.Exit(EXIT_GATE)


@app.command()
def validate(
    spec_path: Annotated[Path, typer.Argument(help="Spec file (YAML).", show_default=False)],
    data: Annotated[
        list[str] | None, typer.Option("--data", "-d", help="Data file or glob.")
    ] = None,
) -> None:
    """Check a spec and its data without training anything."""
    from training.pipeline import build_pipeline
    from training.run import load_checked
    from training.spec import load_spec

    with _errors():
        spec = load_spec(spec_path)
        dataset = load_checked(spec, spec_path.parent, data)
        build_pipeline(spec, dataset.features)
    kinds = ", ".join(f"{n} ({k.value})" for n, k in dataset.features)
    out.print(f"{spec_path}: valid; {dataset.rows:,} rows; features: {kinds}", highlight=False)


@app.command("import")
def import_(
    source: Annotated[
        str,
        typer.Argument(
            help="The fitted model: a .joblib/.pkl/.pickle or .skops file, an MLflow model "
            "directory (sklearn flavor), or bentoml:NAME[:VERSION].",
            show_default=False,
        ),
    ],
    name: Annotated[str, typer.Option("--name", "-n", help="Model name in the store.")],
    sample: Annotated[
        Path | None,
        typer.Option(
            "--sample",
            "-s",
            help="CSV, TSV or Parquet rows to verify on (default: an MLflow input example).",
        ),
    ] = None,
    target: Annotated[
        str | None,
        typer.Option(
            "--target", help="The sample's label column: evaluate, baseline and gate on it."
        ),
    ] = None,
    gate: Annotated[
        list[str] | None,
        typer.Option("--gate", help="Quality rule such as 'accuracy >= 0.9'. Repeatable."),
    ] = None,
    features: Annotated[
        str | None,
        typer.Option("--features", help="Kinds that override the inferred: name=kind,..."),
    ] = None,
    label: Annotated[
        list[str] | None,
        typer.Option("--label", help="What reports call a feature: column=text. Repeatable."),
    ] = None,
    trust: Annotated[
        list[str] | None,
        typer.Option("--trust", help="A type a .skops file may hold (reviewed). Repeatable."),
    ] = None,
) -> None:
    """Verify a model fitted elsewhere as ONNX and register it (unpickling runs code: import
    only files you trust)."""
    from training.importer import import_model
    from training.settings import TrainingSettings

    with _errors():
        settings = TrainingSettings()
    with _errors(), _progress(name, settings.progress) as step:
        stored = import_model(
            source,
            name,
            sample=sample,
            target=target,
            gate=gate,
            features=features,
            feature_labels=label,
            trust=trust or (),
            settings=settings,
            on_step=step,
            on_note=lambda text: err.print(f"{name}: note: {text}", highlight=False),
        )
    _summary(stored.metadata)
    if stored.stage is Stage.rejected:
        err.print("[bold red]the model is below its quality gate[/]: registered as rejected")
        raise typer.Exit(EXIT_GATE)


@models_app.command("list")
def list_models(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Every registered model version, newest first, with its headline metrics."""
    from kiln.production import production_model
    from kiln.store import foreign_models
    from kiln.store import list_models as stored_models
    from training.spec import key_metric

    with _errors():
        models, problems = stored_models()
        others = foreign_models()
        production = {
            found.tag
            for name in {m.metadata.name for m in models}
            if (found := production_model(name)) is not None
        }
    if as_json:
        rows = [
            {
                "tag": m.tag,
                "task": m.metadata.task.value,
                "stage": m.stage.value,
                "production": m.tag in production,
                "estimator": m.metadata.estimator,
                "created_at": m.metadata.provenance.created_at.isoformat(),
                "metrics": m.metadata.evaluation.metrics,
            }
            for m in models
        ]
        not_kiln = [{"tag": m.tag, "module": m.module} for m in others]
        out.print_json(
            json.dumps(
                {"models": rows, "unreadable": [str(p) for p in problems], "not_kiln": not_kiln}
            )
        )
        return
    table = Table(title=f"{len(models)} model versions")
    for column in (
        "model",
        "version",
        "task",
        "estimator",
        "stage",
        "score",
        "baseline",
        "created",
    ):
        table.add_column(column)
    for m in models:
        meta = m.metadata
        key = key_metric(meta.task)
        table.add_row(
            meta.name,
            meta.version,
            meta.task.value,
            meta.estimator,
            meta.stage.value + (" [bold green](production)[/]" if m.tag in production else ""),
            f"{key} {_fmt(meta.evaluation.metrics.get(key))}",
            _fmt(meta.evaluation.baseline.get(key)),
            meta.provenance.created_at.strftime("%Y-%m-%d %H:%M"),
        )
    out.print(table)
    for problem in problems:
        err.print(f"[yellow]unreadable:[/] {problem}", highlight=False)
    if others:
        shown = ", ".join(f"{m.tag} ({m.module})" for m in others[:10])
        more = f" and {len(others) - 10} more" if len(others) > 10 else ""
        importable = next((m for m in others if m.importable), None)
        how = (
            f"; import one: kiln import bentoml:{importable.tag} --name NAME --sample FILE"
            if importable
            else "; Kiln imports models saved with bentoml.sklearn.save_model"
        )
        err.print(
            f"not Kiln models, not served: {shown}{more}{how}", highlight=False, soft_wrap=True
        )


@models_app.command("show")
def show(
    ref: Annotated[str, typer.Argument(help="NAME or NAME:VERSION.", show_default=False)],
    as_json: Annotated[bool, typer.Option("--json", help="Print the metadata document.")] = False,
) -> None:
    """Everything recorded about one model version (NAME: the production version)."""
    from kiln.production import production_model, read_decision
    from kiln.resolve import resolve

    with _errors():
        stored = resolve(ref, warn=lambda _: None)  # its stage is shown below
        meta = stored.metadata
        decision = read_decision(stored)
        live = production_model(meta.name)
    if as_json:
        out.print_json(meta.model_dump_json())
        return
    out.print(
        f"[bold]{meta.tag}[/]  {meta.task.value}, {meta.estimator}, stage {meta.stage.value}, "
        f"target {meta.target!r}"
        + (f", classes {', '.join(map(str, meta.classes))}" if meta.classes else "")
    )
    features = Table(title="features (ONNX inputs, shape [-1, 1])")
    for column in ("name", "kind", "dtype", "missing in training", "categories"):
        features.add_column(column)
    for f in meta.features:
        stats = meta.feature_stats[f.name]
        cats = (
            ", ".join(f.categories[:8]) + (" …" if len(f.categories) > 8 else "")
            if f.categories
            else ""
        )
        features.add_row(f.name, f.kind.value, f.dtype, f"{stats.missing}/{stats.count}", cats)
    out.print(features)
    outputs = Table(title="outputs")
    for column in ("name", "dtype", "shape", "meaning"):
        outputs.add_column(column)
    for o in meta.outputs:
        outputs.add_row(o.name, o.dtype, str(o.shape), o.description)
    out.print(outputs)
    _summary(meta)
    prov = meta.provenance
    origin = meta.origin
    if origin is not None and meta.imported:
        out.print(
            f"imported from {origin.source or 'an object in Python'} ({origin.format}"
            + (f", sha256 {origin.sha256[:12]}" if origin.sha256 else "")
            + f"), a {origin.model_class}, loaded with "
            + ", ".join(f"{k} {v}" for k, v in sorted(origin.loaded_with.items())),
            highlight=False,
        )
    out.print(
        ("sample: " if meta.imported else "data: ")
        + "; ".join(f"{d.source} ({d.rows:,} rows, sha256 {d.sha256[:12]})" for d in meta.data),
        highlight=False,
    )
    out.print(
        f"code {prov.git_commit or 'unknown'}{' (modified)' if prov.git_dirty else ''}; "
        f"opset {prov.opset}; onnx sha256 {meta.onnx_sha256[:12]}; "
        f"created {prov.created_at:%Y-%m-%d %H:%M:%S} UTC",
        highlight=False,
    )
    out.print(
        "libraries: " + ", ".join(f"{k} {v}" for k, v in sorted(prov.libraries.items())),
        highlight=False,
    )
    in_production = live is not None and live.tag == meta.tag
    out.print(f"production: {'yes' if in_production else 'no'}", highlight=False)
    if decision is not None:
        _print_decision(decision)


@app.command()
def retrain(
    spec_path: Annotated[
        Path,
        typer.Argument(
            help="Spec file (YAML), or the name of an imported model.", show_default=False
        ),
    ],
    data: Annotated[
        list[str] | None,
        typer.Option(
            "--data",
            "-d",
            help="All the data, old and new (default: the spec's); for an imported model, "
            "the new data.",
        ),
    ] = None,
    target: Annotated[
        str | None, typer.Option(help="An imported model: the label column of --data.")
    ] = None,
    allow_new_classes: Annotated[
        bool,
        typer.Option("--allow-new-classes", help="An imported model: labels may add classes."),
    ] = False,
    watch: Annotated[
        bool, typer.Option("--watch", help="Poll the spec's data paths; retrain on new files.")
    ] = False,
    interval: Annotated[float, typer.Option(help="Seconds between polls (--watch).")] = 60.0,
    max_runs: Annotated[
        int | None, typer.Option(help="Stop --watch after this many retraining runs.")
    ] = None,
) -> None:
    """Train a challenger on all data; promote it if it beats production (a tie keeps it).

    Labels the production model does not know stop the run before training (exit 2) unless
    the spec sets promotion.allow_new_classes; a run that fails registers nothing, is
    recorded as failed, and the next run tries again (exit 1). NAME (not a file): refit the
    imported model's kept source estimator on --data (docs/importing.md).
    """
    from training.retrain import retrain as run_retrain
    from training.retrain import watch as run_watch
    from training.settings import TrainingSettings
    from training.spec import load_spec

    if not spec_path.exists() and spec_path.suffix not in (".yaml", ".yml"):
        _retrain_imported(str(spec_path), data, target, allow_new_classes, watch)
        return
    if target is not None or allow_new_classes:
        err.print("[bold red]error:[/] --target and --allow-new-classes are for an imported model")
        raise typer.Exit(2)
    with _errors():
        settings = TrainingSettings()
        spec = load_spec(spec_path)
    if watch:
        if data:
            err.print("[bold red]error:[/] --watch polls the spec's data paths; drop --data")
            raise typer.Exit(2)
        err.print(f"watching {', '.join(spec.data.paths)} every {interval:g} s", highlight=False)
        run_watch(
            spec,
            spec_path=spec_path,
            interval=interval,
            max_runs=max_runs,
            settings=settings,
            on_decision=_print_decision,
            on_error=lambda exc: err.print(f"[bold red]error:[/] {exc}", highlight=False),
            on_drift=_print_retrain_drift,
        )
        return
    with _errors(), _progress(spec.name, settings.progress) as step:
        decision = run_retrain(
            spec,
            spec_path=spec_path,
            data=data,
            settings=settings,
            on_step=step,
            on_drift=_print_retrain_drift,
        )
    _print_decision(decision)


def _retrain_imported(
    name: str, data: list[str] | None, target: str | None, allow_new_classes: bool, watch: bool
) -> None:
    from training.refit import retrain_imported
    from training.settings import TrainingSettings

    if watch or not data or target is None:
        err.print(
            f"[bold red]error:[/] {name} is not a spec file; to retrain an imported model "
            "give --data FILE and --target COLUMN (no --watch)",
            highlight=False,
        )
        raise typer.Exit(2)
    with _errors():
        settings = TrainingSettings()
    with _errors(), _progress(name, settings.progress) as step:
        decision = retrain_imported(
            name,
            data=data,
            target=target,
            allow_new_classes=allow_new_classes,
            settings=settings,
            on_step=step,
            on_drift=_print_retrain_drift,
        )
    _print_decision(decision)


RETRAIN_DRIFT_ROWS = 5  # features `kiln retrain` shows (`kiln drift` shows every one)


def _print_retrain_drift(result: Any) -> None:
    out.print(_drift_table(result, limit=RETRAIN_DRIFT_ROWS))


def _print_decision(decision: Any) -> None:
    verdict = "[green]promoted[/]" if decision.promoted else "[yellow]not promoted[/]"
    who = decision.challenger or "no challenger"
    out.print(f"{who}: {verdict}", highlight=False)
    for reason in decision.reasons:
        out.print(f"  - {reason}", highlight=False)
    drift = decision.drift
    if drift is not None:
        top = list(drift.features.items())[:RETRAIN_DRIFT_ROWS]
        psi = ", ".join(f"{name} {'—' if v is None else f'{v:.3f}'}" for name, v in top)
        answers = "" if drift.prediction is None else f"; its answers {drift.prediction:.3f}"
        out.print(
            f"  - drift of the new data against {drift.against} (PSI): "
            + (drift.note or (psi + answers)),
            highlight=False,
            soft_wrap=True,
        )


@models_app.command("promote")
def promote(
    ref: Annotated[str, typer.Argument(help="NAME:VERSION.", show_default=False)],
    reason: Annotated[str, typer.Option(help="Why, for the record.")] = "promoted by hand",
) -> None:
    """Make NAME:VERSION the production version (the old one stays in the store)."""
    from kiln.production import promote as do_promote

    with _errors():
        record = do_promote(ref, reason)
    out.print(f"{record.name}: production is now {record.version}", highlight=False)


@models_app.command("rollback")
def rollback(
    name: Annotated[str, typer.Argument(help="Model name.", show_default=False)],
) -> None:
    """Put back the version that was in production before the current one."""
    from kiln.production import rollback as do_rollback

    with _errors():
        record = do_rollback(name)
    out.print(f"{record.name}: production is back to {record.version}", highlight=False)


@app.command()
def predict(
    ref: Annotated[str, typer.Argument(help="NAME or NAME:VERSION.", show_default=False)],
    input_path: Annotated[
        str,
        typer.Option(
            "--input",
            "-i",
            help="CSV, TSV or Parquet to score: a file, a directory of them or a glob; local, "
            "or a URI (s3://, gs://, file://).",
            show_default=False,
        ),
    ],
    output: Annotated[
        str,
        typer.Option(
            "--output",
            "-o",
            help="Scores to write: a .csv or .parquet file; with --engine ray, a new "
            "directory of parts.",
            show_default=False,
        ),
    ],
    rejects: Annotated[
        Path | None,
        typer.Option(
            "--rejects", help="Refused rows and why (default: <output stem>.rejects.csv)."
        ),
    ] = None,
    id_column: Annotated[
        str | None,
        typer.Option(
            "--id-column",
            help="Column to carry to the output (default: id, or a column ending in _id).",
        ),
    ] = None,
    chunk_rows: Annotated[
        int, typer.Option("--chunk-rows", min=1, help="Rows read and scored at a time.")
    ] = 50_000,
    input_checks: Annotated[
        CheckMode | None,
        typer.Option(
            "--input-checks",
            help="Rows unlike the training data: count them (accept), also list them in the "
            "warnings file (warn) or reject them (default: the model's own mode).",
            show_default=False,
        ),
    ] = None,
    warnings: Annotated[
        Path | None,
        typer.Option(
            "--warnings",
            help="Under warn, each finding (default: <output stem>.warnings.csv).",
        ),
    ] = None,
    engine: Annotated[
        Engine,
        typer.Option(help="local: this process; ray: Ray actors, on this machine or a cluster."),
    ] = Engine.local,
    address: Annotated[
        str | None,
        typer.Option(
            help="With --engine ray: the Ray cluster to join (default RAY_ADDRESS; neither: "
            "a local Ray is started for the run).",
            show_default=False,
        ),
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="With --engine ray: scoring actors (default: one per CPU).",
            show_default=False,
        ),
    ] = None,
    output_format: Annotated[
        str,
        typer.Option("--format", help="With --engine ray: the parts' format, parquet or csv."),
    ] = "parquet",
) -> None:
    """Score CSV or Parquet data of any size, in chunks: id, prediction, class probabilities."""
    import time

    from rich.progress import (
        BarColumn,
        Progress,
        TaskProgressColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    from training.batch import ScoreSummary, estimate_rows, score_file

    if engine is Engine.local and (address is not None or workers is not None):
        with _errors():
            raise InvalidInput("--address and --workers are for --engine ray")

    parts_done = ""  # the Ray engine's "parts 3/10", said with each progress line

    def parts(progress: Any) -> None:
        nonlocal parts_done
        parts_done = f", parts {progress.parts_done}/{progress.parts} done"

    def run(on_progress: Callable[[int], None]) -> ScoreSummary:
        common: dict[str, Any] = {
            "rejects": rejects, "warnings": warnings, "input_checks": input_checks,
            "id_column": id_column, "chunk_rows": chunk_rows, "on_progress": on_progress,
            "on_warning": _warn,
        }  # fmt: skip
        if engine is Engine.ray:
            from training.rayscore import score_with_ray

            return score_with_ray(
                ref, input_path, output, **common, address=address, workers=workers,
                output_format=output_format, on_parts=parts,
            )  # fmt: skip
        return score_file(ref, input_path, Path(output), **common)

    with _errors():
        if err.is_terminal:
            columns = (
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                TaskProgressColumn(),
                TextColumn("{task.completed:,.0f} rows"),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
            )
            with Progress(*columns, console=err) as bar:
                task = bar.add_task(ref, total=estimate_rows(input_path))  # CSV: an estimate

                def advance(rows: int) -> None:
                    bar.update(task, advance=rows, description=f"{ref}{parts_done}")
                    state = bar.tasks[0]
                    if state.total is not None and state.completed > state.total:
                        bar.update(task, total=state.completed)

                summary = run(advance)
                bar.update(task, total=summary.rows, completed=summary.rows)
        else:  # CI logs: a line every few seconds
            started = last = time.monotonic()
            done = 0

            def line(rows: int) -> None:
                nonlocal done, last
                done += rows
                now = time.monotonic()
                if now - last >= 5:
                    last = now
                    rate = done / (now - started)
                    err.print(
                        f"{ref}: {done:,} rows read ({rate:,.0f} rows/s{parts_done})",
                        highlight=False,
                    )

            summary = run(line)
    out.print(
        f"scored {summary.scored:,} of {summary.rows:,} rows with {summary.model} in "
        f"{summary.seconds:.1f} s ({summary.rows_per_second:,.0f} rows/s) -> {summary.output}",
        highlight=False,
        soft_wrap=True,
    )
    if summary.unused_columns:
        shown = ", ".join(summary.unused_columns[:20])
        more = len(summary.unused_columns) - 20
        out.print(
            f"not features of {summary.model}, not in the output: {shown}"
            + (f" and {more} more" if more > 0 else "")
            + (f" (carried: {summary.id_column})" if summary.id_column else ""),
            highlight=False,
            soft_wrap=True,
        )
    checked = f"input checks ({summary.input_checks}): "
    if summary.findings:
        where = f" (each finding in {summary.warnings})" if summary.warnings else ""
        out.print(
            f"[yellow]{checked}{summary.findings_text()}[/]{where}",
            highlight=False,
            soft_wrap=True,
        )
        if summary.warned:
            rows = f"{summary.warned:,} scored row{'s' if summary.warned != 1 else ''}"
            out.print(f"{rows} failed an input check", highlight=False)
    else:
        out.print(checked + "every row like the training data", highlight=False)
    if summary.rejected:
        out.print(
            f"[yellow]{summary.rejected:,} rows rejected[/] (reasons in {summary.rejects})",
            highlight=False,
            soft_wrap=True,
        )
    else:
        out.print("no row rejected", highlight=False)


@app.command()
def report(
    ref: Annotated[str, typer.Argument(help="NAME or NAME:VERSION.", show_default=False)],
    out_dir: Annotated[
        Path | None,
        typer.Option(
            "--out",
            "-o",
            help="Directory to write report.html and technical.html into (default: "
            "<reports dir>/<name>-<version>, the reports dir from KILN_TRAIN_REPORTS_DIR, "
            "default reports).",
            show_default=False,
        ),
    ] = None,
    pdf: Annotated[
        bool,
        typer.Option(
            "--pdf", help="Also print both to report.pdf and technical.pdf (needs Chromium)."
        ),
    ] = False,
) -> None:
    """Write a model's report: the client's (report.html) and the data team's technical
    document (technical.html), self-contained HTML pages (and PDFs with --pdf).

    NAME reports on the production version; NAME:VERSION on that one (warned if rejected)."""
    from kiln.resolve import resolve
    from training.report import write_report
    from training.settings import TrainingSettings

    with _errors():
        stored = resolve(ref, warn=_warn)
        meta = stored.metadata
        directory = out_dir or (
            (TrainingSettings().reports_dir or Path("reports")) / f"{meta.name}-{meta.version}"
        )
        written = write_report(stored, directory, pdf=pdf)
        out.print(f"report for {meta.tag}: {written.client}", highlight=False, soft_wrap=True)
        out.print(f"technical: {written.technical}", highlight=False, soft_wrap=True)
        if written.client_pdf and written.technical_pdf:
            out.print(
                f"pdf: {written.client_pdf}, {written.technical_pdf}",
                highlight=False,
                soft_wrap=True,
            )


def _drift_table(drift: Any, limit: int | None = None) -> Table:
    """Features by PSI (the first ``limit``), then the model's answers."""
    shown = drift.features[:limit] if limit else drift.features
    left = len(drift.features) - len(shown)
    table = Table(
        title=f"drift of {drift.rows - drift.refused:,} new rows against {drift.model}'s "
        "training data" + (f" (top {len(shown)}; {left} more)" if left else "")
    )
    table.add_column("feature")
    table.add_column("PSI", justify="right")
    table.add_column("verdict")
    table.add_column("biggest change")
    colours = {"shifted": "red", "some change": "yellow"}
    for f in [*shown, *([drift.prediction] if drift.prediction else [])]:
        psi = "—" if f.psi != f.psi else f"{f.psi:.3f}"
        colour = colours.get(f.verdict)
        verdict = f"[{colour}]{f.verdict}[/]" if colour else f.verdict
        name = "(its answers)" if f.kind is None else f.feature
        table.add_row(name, psi, verdict, f.change)
    return table


@app.command()
def drift(
    ref: Annotated[str, typer.Argument(help="NAME or NAME:VERSION.", show_default=False)],
    data: Annotated[
        list[str],
        typer.Option(
            "--data",
            "-d",
            help="CSV, TSV or Parquet file (or glob). Repeatable.",
            show_default=False,
        ),
    ],
    report_dir: Annotated[
        Path | None,
        typer.Option(
            "--report",
            help="Also write the model's report into this directory, with the section "
            '"Has the data changed since training?".',
            show_default=False,
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """How new data differs from a model's training data: PSI per feature, its answers too.

    Drift is a finding, not an error: the exit code is 0 whatever the PSI (2 for a bad file,
    3 for no such model)."""
    from kiln.resolve import resolve
    from training.data import resolve_paths
    from training.drift import file_drift

    with _errors():
        stored = resolve(ref, warn=_warn)
        result = file_drift(stored, resolve_paths(data, Path.cwd()))
        html_path = None
        if report_dir is not None:
            from training.report import write_report

            html_path = write_report(stored, report_dir, drift=result).client
    if as_json:
        body = result.as_dict()
        body["report"] = str(html_path) if html_path else None
        out.print_json(json.dumps(body))
        return
    out.print(_drift_table(result))
    if result.basis == "statistics":
        out.print(
            f"{result.model} has no stored training bins (kiln.json schema "
            f"{stored.metadata.schema_version}): compared over its training histogram "
            "(10 equal-width bins) and top categories instead; retrain it for decile bins",
            highlight=False,
        )
    counts = sorted(result.checks.items(), key=lambda item: (-item[1], item[0]))
    out.print(
        "input checks: "
        + (
            ", ".join(f"{f} {r.replace('_', ' ')} {n:,} rows" for (f, r), n in counts)
            if counts
            else "every row like the training data"
        ),
        highlight=False,
        soft_wrap=True,
    )
    refused = (
        f"; {result.refused:,} refused by the value rules, not binned" if result.refused else ""
    )
    out.print(
        f"{result.rows:,} rows read from {len(result.files)} "
        f"file{'s' if len(result.files) > 1 else ''} in {result.seconds:.1f} s{refused}",
        highlight=False,
        soft_wrap=True,
    )
    if html_path is not None:
        out.print(f"report for {result.model}: {html_path}", highlight=False, soft_wrap=True)


def main() -> None:
    """Entry point of the ``kiln`` console script."""
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
