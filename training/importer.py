"""The import chain: a model fitted elsewhere, verified as ONNX and registered like any other.

load (training/sources.py) -> the input contract and the sample typed as served
(training/contract.py) -> export to ONNX -> verify on every sample row -> with labels:
evaluate, baseline and gate; without: parity only -> register with its origin -> report.

The steps after loading are those of ``kiln train`` (training/run.py), called, not copied.
Everything that can be refused (the source, the name, the sample, the labels, the gate, a
step that cannot be converted) is refused before anything is written to the store.

**Unpickling runs code**: a joblib or pickle source is loaded here, on the training side,
and nowhere else; serving only ever opens the verified ONNX export.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from kiln.artifact import (
    DataFile,
    Evaluation,
    Feature,
    FeatureKind,
    Gate,
    Origin,
    OriginKind,
    Task,
)
from kiln.errors import DataError, SpecError, TrainingError, VerificationError
from kiln.store import StoredModel, foreign_models
from training import keep
from training.contract import (
    Contract,
    SourceView,
    as_served,
    checked_labels,
    frame_file,
    input_contract,
    parse_features,
    read_sample,
    task_of,
    text_columns,
)
from training.evaluate import check_gate, evaluate
from training.evidence import evidence
from training.export import export_model, final_estimator, verify
from training.holdout import holdout_document
from training.register import Check, register
from training.run import write_training_report
from training.settings import TrainingSettings
from training.sources import Loaded, load_source, loaded_object
from training.spec import DEFAULT_ATOL, DEFAULT_RTOL, MODEL_NAME, GateRule, metrics_for
from training.stats import feature_stats, reference

__all__ = ["import_model"]

Step = Callable[[str], None]
NO_LABELS = "none: imported without labels, so no quality was measured (parity with the model only)"
_ENCODERS = ("OneHotEncoder", "OrdinalEncoder")


def _quiet(_: str) -> None:
    return None


def _check_name(name: str) -> None:
    if not MODEL_NAME.match(name):
        raise SpecError(
            [
                (
                    "--name",
                    f"{name!r} is not a valid model name: use 1-63 lower-case letters, digits, "
                    "'.', '_' or '-', starting and ending with a letter or digit",
                )
            ],
            source="kiln import",
        )
    others = foreign_models(name)
    if others:
        raise SpecError(
            [
                (
                    "--name",
                    f"the store holds {others[0].tag}, a model of that name not made by Kiln; "
                    "give the import another name",
                )
            ],
            source="kiln import",
        )


def _gate_rules(rules: Sequence[str] | str | None) -> list[GateRule]:
    if rules is None:
        return []
    texts = [rules] if isinstance(rules, str) else list(rules)
    parsed, problems = [], []
    for i, text in enumerate(texts):
        try:
            parsed.append(GateRule.parse(text))
        except ValueError as exc:
            problems.append((f"--gate {i + 1}", str(exc)))
    if problems:
        raise SpecError(problems, source="kiln import")
    return parsed


def _check_gate_metrics(rules: list[GateRule], task: Task, labelled: bool) -> None:
    if rules and not labelled:
        raise SpecError(
            [("--gate", "a quality gate needs labels: give --target COLUMN (or y=)")],
            source="kiln import",
        )
    known = metrics_for(task)
    problems = [
        (
            f"--gate {i + 1}",
            f"{r.metric!r} is not a {task.value} metric; known: {', '.join(known)}",
        )
        for i, r in enumerate(rules)
        if r.metric not in known
    ]
    if problems:
        raise SpecError(problems, source="kiln import")


def _sample(
    loaded: Loaded,
    sample: Path | str | pd.DataFrame | None,
    strings: set[str],
    on_note: Step,
) -> tuple[pd.DataFrame, DataFile]:
    if isinstance(sample, pd.DataFrame):
        frame = sample.copy()
        frame.columns = [str(c) for c in frame.columns]
        return frame, frame_file(frame)
    if sample is not None:
        return read_sample(Path(sample), strings)
    if loaded.sample is not None and loaded.sample_file is not None:
        on_note(
            f"no --sample: verifying on the {len(loaded.sample):,} rows of the MLflow input "
            f"example ({loaded.sample_file.source})"
        )
        return loaded.sample.copy(), loaded.sample_file
    raise DataError(
        "no sample: give --sample FILE (rows the model is verified on; with --target COLUMN "
        "it is also evaluated on them), or sample= in kiln.save_model"
    )


def _split_labels(
    frame: pd.DataFrame, target: str | None, y: Any, source: str
) -> tuple[pd.DataFrame, pd.Series | None, str]:
    if target is not None and y is not None:
        raise DataError("give the labels once: a target column or y, not both")
    if target is not None:
        if target not in frame.columns:
            shown = ", ".join(map(repr, list(frame.columns)[:40]))
            raise DataError(f"has no target column {target!r} (columns: {shown})", source=source)
        return frame.drop(columns=[target]), frame[target], target
    if y is None:
        return frame, None, "target"
    labels = y.copy() if isinstance(y, pd.Series) else pd.Series(np.asarray(y, dtype=object))
    if labels.ndim != 1 or len(labels) != len(frame):
        raise DataError(f"y has {len(labels)} labels for {len(frame)} sample rows")
    labels.index = frame.index
    name = str(labels.name) if labels.name is not None else "target"
    if pd.api.types.is_object_dtype(labels.dtype):
        labels = labels.infer_objects()
    return frame, labels, name


def _categories(model: Any, contract: Contract) -> dict[str, list[str]]:
    """Categories the model's encoders learned, per categorical feature (for the try-it page)."""
    wanted = {n for n, k in contract.features if k is FeatureKind.categorical}
    found: dict[str, list[str]] = {}

    def visit(step: Any, columns: Any) -> None:
        for _, inner in getattr(step, "steps", None) or []:
            visit(inner, columns)
        for _, transformer, cols in getattr(step, "transformers_", None) or []:
            visit(transformer, cols)
        cats = getattr(step, "categories_", None)
        if type(step).__name__ in _ENCODERS and cats is not None:
            names = getattr(step, "feature_names_in_", None)
            names = list(names) if names is not None else columns
            if isinstance(names, list | tuple) and len(names) == len(cats):
                for col, values in zip(names, cats, strict=True):
                    if str(col) in wanted:
                        found[str(col)] = [str(v) for v in values if not _is_nan(v)]

    visit(model, contract.names)
    return found


def _is_nan(value: Any) -> bool:
    return isinstance(value, float) and value != value


def _params(model: Any) -> dict[str, Any]:
    """The final estimator's parameters that JSON holds as they are (others by their repr)."""
    estimator = final_estimator(model)
    try:
        params = estimator.get_params(deep=False)
    except Exception:
        return {}
    plain = (str, int, float, bool, type(None))
    return {
        k: v if isinstance(v, plain) and not _is_nan(v) else repr(v)
        for k, v in sorted(params.items())
    }


def _native(values: Any) -> list[Any]:
    return [v.item() if hasattr(v, "item") else v for v in values]


def parse_labels(
    given: Mapping[str, str] | Sequence[str] | None, contract: Contract
) -> dict[str, str]:
    """Feature labels for reports: a mapping, or ``col=text`` items (``--label``), each
    naming one of the model's features."""
    if not given:
        return {}
    pairs: list[tuple[str, str]] = []
    if isinstance(given, Mapping):
        pairs = [(str(k), str(v)) for k, v in given.items()]
    else:
        for item in given:
            column, sep, text = item.partition("=")
            if not sep or not column.strip() or not text.strip():
                raise DataError(f"--label: {item!r} is not of the form column=text")
            pairs.append((column.strip(), text))
    names = [n for n, _ in contract.features]
    labels: dict[str, str] = {}
    for column, text in pairs:
        if column not in names:
            raise DataError(f"--label: {column!r} is not a feature (features: {', '.join(names)})")
        if not text.strip():
            raise DataError(f"--label: the label of {column!r} is empty")
        labels[column] = text.strip()
    return labels


def _measured(
    view: SourceView,
    task: Task,
    X: pd.DataFrame,
    y: pd.Series,
    rules: list[GateRule],
    on_step: Step,
) -> tuple[Evaluation, Gate, Any]:
    """Holdout metrics on the sample (every row is a test row), the baseline, the gate."""
    on_step(f"Evaluating on {len(X):,} sample rows")
    found = evaluate(view, task, X, y, X, y, holdout=1.0, seed=0)
    evaluation = found.model_copy(
        update={
            "train_rows": 0,
            "baseline_strategy": found.baseline_strategy + ", measured on the sample's labels",
        }
    )
    gate = check_gate(rules, evaluation.metrics)
    on_step("Measuring which features drive its answers")
    holdout = holdout_document(view, task, y, X, y, seed=0).model_copy(
        update={"train_class_counts": None}  # the rows it was fitted on are not known
    )
    return evaluation, gate, holdout


def _kept(loaded: Loaded, on_note: Step) -> keep.Kept | None:
    """The source to keep for retraining; None, with a note, when it cannot be kept."""
    try:
        return keep.kept(loaded.model, loaded.format, loaded.source, loaded.sha256)
    except DataError:
        raise
    except Exception as exc:  # e.g. an object holding a lambda: joblib cannot dump it
        on_note(
            "the source estimator cannot be kept for `kiln retrain` "
            f"({type(exc).__name__}: {exc}); it is served, but cannot be refitted by Kiln"
        )
        return None


def import_model(
    model: Any,
    name: str,
    *,
    sample: Path | str | pd.DataFrame | None = None,
    target: str | None = None,
    y: Any = None,
    gate: Sequence[str] | str | None = None,
    features: str | Mapping[str, Any] | None = None,
    feature_labels: Mapping[str, str] | Sequence[str] | None = None,
    trust: Sequence[str] = (),
    settings: TrainingSettings | None = None,
    on_step: Step = _quiet,
    on_note: Step = _quiet,
    data: list[DataFile] | None = None,
    check: Check | None = None,
    kept: keep.Kept | None = None,
) -> StoredModel:
    """Verify and register a model fitted elsewhere as ``name``; return the stored version.

    ``model``: a source (a file or directory path, or ``bentoml:NAME[:VERSION]``) as
    ``kiln import`` takes it, or a fitted estimator or Pipeline. ``sample``: a CSV, TSV or
    Parquet file, or a DataFrame (default: an MLflow model's input example). Labels:
    ``target`` (a column of the sample) or ``y``; without them only parity is verified.
    ``gate``: rules such as ``"accuracy >= 0.9"``; ``features``: kinds that override the
    inferred ones (``"name=kind,..."`` or a mapping); ``feature_labels``: what reports call
    features (a mapping, or ``"column=text"`` items); ``trust``: types a ``.skops`` file may
    hold beyond skops' defaults.

    The source estimator is kept beside the store (training/keep.py) for `kiln retrain NAME`,
    written with the registration: a failed import leaves neither. For retraining
    (training/refit.py), ``model`` may be a :class:`~training.sources.Loaded` refit, with
    ``data``: the files it was fitted on (default: the sample), ``check``: the comparison
    before it enters the store, ``kept``: the refit as it is kept.
    """
    settings = settings or TrainingSettings()
    _check_name(name)
    rules = _gate_rules(gate)
    overrides = parse_features(features)

    if isinstance(model, Loaded):
        loaded = model
    elif isinstance(model, str | Path):
        on_step(f"Loading {model}")
        loaded = load_source(str(model), trust=trust)
    else:
        loaded = loaded_object(model)
    task = task_of(loaded.model, loaded.source or "the model")
    kinds = {**loaded.declared, **overrides}
    strings = {n for n, k in kinds.items() if k is not FeatureKind.numeric}
    frame, sample_file = _sample(loaded, sample, strings | text_columns(loaded.model), on_note)
    X_raw, labels, target_name = _split_labels(frame, target, y, sample_file.source)
    _check_gate_metrics(rules, task, labels is not None)

    on_step("Reading the input contract")
    contract = input_contract(
        loaded.model,
        X_raw,
        overrides=overrides,
        declared=loaded.declared,
        source=sample_file.source,
    )
    for note in contract.notes():
        on_note(note)
    named = parse_labels(feature_labels, contract)
    X = as_served(X_raw, contract)
    if labels is not None:
        labels = checked_labels(loaded.model, labels, task, f"labels ({target_name})")

    on_step("Exporting to ONNX")
    try:
        exported = export_model(loaded.model, contract.features, task, settings.target_opset)
    except VerificationError:
        raise
    except TrainingError as exc:  # a step the converter refuses: the input's fault, exit 2
        raise DataError(str(exc), source=loaded.source) from exc

    view = SourceView(loaded.model, contract, exported.missing_as_nan)
    on_step(f"Verifying ONNX Runtime against the model on {len(X):,} sample rows")
    verification = verify(
        name,
        view,
        exported,
        X,
        contract.features,
        task,
        atol=DEFAULT_ATOL,
        rtol=DEFAULT_RTOL,
        worst=settings.worst_rows,
    )

    if labels is not None:
        evaluation, checked, holdout = _measured(view, task, X, labels, rules, on_step)
        # the sample stands in for the training rows, which Kiln never saw
        found = evidence(X, labels, contract.features, task, holdout.classes, holdout.importance)
        holdout = holdout.model_copy(update={"evidence": found})
    else:
        on_note("no labels: parity only, no quality measured (give --target COLUMN, or y=)")
        evaluation = Evaluation(
            holdout_fraction=1.0,
            seed=0,
            train_rows=0,
            holdout_rows=0,
            metrics={},
            baseline={},
            baseline_strategy=NO_LABELS,
            measured=False,
        )
        checked, holdout = Gate(passed=True, checks=[]), None

    on_step("Registering in the model store")
    source = kept or _kept(loaded, on_note)
    written: list[str] = []

    def keep_source(model: StoredModel) -> None:
        """Last before the model enters the store: the caller's check, then the source."""
        if check is not None:
            check(model)
        if source is not None:
            document = keep.document(source, loaded.format, contract, target_name, task)
            keep.write(name, model.metadata.version, source, document)
            written.append(model.metadata.version)

    categories = _categories(loaded.model, contract)
    registered_features = [
        Feature(
            name=n,
            kind=k,
            dtype=k.dtype,
            input=exported.inputs[n],
            categories=categories.get(n),
            label=named.get(n),
        )
        for n, k in contract.features
    ]
    try:
        stored = register(
            name=name,
            task=task,
            target=target_name,
            estimator=type(final_estimator(loaded.model)).__name__,
            estimator_params=_params(loaded.model),
            classes=_native(loaded.model.classes_) if task is Task.classification else None,
            features=registered_features,
            onnx=exported.onnx,
            onnx_nodes=exported.nodes,
            outputs=exported.outputs,
            evaluation=evaluation,
            gate=checked,
            verification=verification,
            data=data or [sample_file],
            feature_stats=feature_stats(X, contract.features),
            # without labels there is no holdout: the sample's own predictions stand in
            reference=reference(
                X,
                contract.features,
                task=task,
                predicted=holdout.y_pred if holdout is not None else view.predict(X),
            ),
            spec={},
            spec_path=None,
            opset=settings.target_opset,
            holdout=holdout,
            origin=Origin(
                kind=OriginKind.import_,
                format=loaded.format,  # type: ignore[arg-type]
                source=loaded.source,
                sha256=loaded.sha256,
                loaded_with=loaded.loaded_with,
                model_class=loaded.model_class,
            ),
            check=keep_source,
        )
    except BaseException:
        for version in written:  # the model did not enter the store: nor does its source
            keep.remove(name, version)
        raise
    if settings.reports_dir is not None:
        on_step("Writing the report")
        write_training_report(stored, settings.reports_dir)
    return stored
