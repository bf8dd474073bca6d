"""New data in, better model out: champion/challenger retraining and the watch loop.

`retrain` trains a challenger on all the data the spec names (old files plus new), scores
it and the production model (the champion) on the holdout rows neither was trained on, and
promotes the challenger only if it passed its quality gate and beats the champion on the
spec's primary metric by more than ``promotion.margin`` (a tie keeps the champion).

Data problems are caught before anything is trained and change nothing: a file whose
content was already used (same sha256 under another name), one that does not fit the spec,
labels the champion does not know (a new class, or a respelling), unless the spec allows
the class set to grow. The comparison runs before the challenger enters the store, so a
failure at any step (train, evaluate, export, verify, compare) registers nothing; a failure
after it (promotion) takes it out again. Every run's outcome is kept in the model's run
record (:func:`kiln.production.record_run`): a rerun after a failure tries again and says
why the last one failed. Every decision is written, with its reasons, into the challenger's
directory (``decision.json``) and the production record. Before training, the new files are
compared with the champion's training data (training/drift.py: PSI per feature and of its
answers); the drift is shown (``on_drift``) and kept with the decision (``drift``). It
informs, it does not decide: the champion and challenger are compared on the metric alone.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from kiln.artifact import DataFile, FeatureKind, Stage, Task, file_sha256
from kiln.errors import DataError, KilnError, TrainingError
from kiln.production import (
    Decision,
    DriftRecord,
    Run,
    RunRecord,
    current,
    last_run,
    production_model,
    promote,
    read_decision,
    record_run,
    write_decision,
)
from kiln.store import StoredModel
from training.data import Dataset, load_dataset, resolve_paths
from training.drift import DriftResult, drift_record
from training.evaluate import classification_metrics, regression_metrics
from training.register import unregister
from training.run import Split, check_positive_class, split, train, write_training_report
from training.settings import TrainingSettings
from training.spec import LOWER_IS_BETTER, Spec

__all__ = [
    "MIN_COMPARISON_ROWS",
    "Attempt",
    "OnDrift",
    "Terms",
    "beats",
    "check_labels",
    "comparer",
    "comparison_rows",
    "conclude",
    "earlier_failure",
    "holdout_score",
    "new_files",
    "nothing_new",
    "opening",
    "recorded",
    "refuse_unknown_labels",
    "retrain",
    "watch",
]

Step = Callable[[str], None]
OnDrift = Callable[[DriftResult], None]

MIN_COMPARISON_ROWS = 30  # fewer unseen holdout rows than this: the champion stays


def _quiet(_: str) -> None:
    return None


@dataclass(frozen=True)
class Terms:
    """What the champion/challenger decision needs to know, whoever made the challenger
    (a spec, or a refit of an imported model: training/refit.py)."""

    name: str
    task: Task
    metric: str  # the primary metric
    margin: float = 0.0
    positive_class: str | int | None = None
    allow_new_classes: str | None = None  # how to allow new classes, named in the refusal

    @classmethod
    def of(cls, spec: Spec) -> Terms:
        return cls(
            name=spec.name,
            task=spec.task,
            metric=spec.primary_metric,
            margin=spec.promotion.margin,
            positive_class=spec.evaluation.positive_class,
            allow_new_classes="set `promotion.allow_new_classes: true` in the spec",
        )


def new_files(paths: list[Path], champion: StoredModel | None) -> list[Path]:
    """The files the champion was not trained on; refuse content it already saw elsewhere."""
    seen = {f.sha256: f.source for f in champion.metadata.data} if champion else {}
    used = {f.source for f in champion.metadata.data} if champion else set()
    fresh: list[Path] = []
    digests: dict[str, Path] = {}
    for path in paths:
        if not path.is_file():
            raise DataError("file not found", source=str(path))
        digest = file_sha256(path)
        if digest in digests:
            raise DataError(
                f"already seen: same content as {digests[digest]} (sha256 {digest[:12]})",
                source=str(path),
            )
        digests[digest] = path
        if digest in seen and str(path) not in used and seen[digest] != str(path):
            raise DataError(
                f"already seen: same content (sha256 {digest[:12]}) as {seen[digest]}, "
                f"which {champion.tag if champion else ''} was trained on; nothing changed",
                source=str(path),
            )
        if digest not in seen:
            fresh.append(path)
    return fresh


def _sources(files: list[DataFile], rows: np.ndarray) -> list[str]:
    """The files that hold the rows where ``rows`` (a boolean mask) is true."""
    found: list[str] = []
    start = 0
    for file in files:
        if rows[start : start + file.rows].any():
            found.append(file.source)
        start += file.rows
    return found


def check_labels(spec: Spec, dataset: Dataset, champion: StoredModel | None) -> None:
    """Refuse labels the champion was not trained on, before anything is trained.

    A new class, or a known one spelled differently ('ADELIE' for 'Adelie'), would become a
    class of its own; the DataError names the labels, their rows and files, and the classes
    the champion knows. ``promotion.allow_new_classes: true`` accepts them.
    """
    if spec.promotion.allow_new_classes:
        return
    refuse_unknown_labels(Terms.of(spec), spec.target, dataset.y, dataset.files, champion)


def refuse_unknown_labels(
    terms: Terms, target: str, y: Any, files: list[DataFile], champion: StoredModel | None
) -> None:
    """The rule of :func:`check_labels`: labels ``y`` (the rows of ``files``, in order) that
    are not classes of ``champion`` are a DataError naming them and how to allow them."""
    if terms.task is not Task.classification or champion is None:
        return
    known = list(champion.metadata.classes or [])
    if not known:
        return
    unknown = ~y.isin(known).to_numpy()
    if not unknown.any():
        return
    labels = sorted({v.item() if hasattr(v, "item") else v for v in y[unknown]}, key=str)
    shown = ", ".join(repr(v) for v in labels[:10]) + (" …" if len(labels) > 10 else "")
    raise DataError(
        f"{target!r} holds labels {champion.tag} was not trained on: {shown} "
        f"({int(unknown.sum()):,} rows); it knows {', '.join(map(repr, known))}. Fix their "
        f"spelling, or {terms.allow_new_classes or 'allow new classes'} if the class set "
        "may grow; nothing was trained",
        source=", ".join(_sources(files, unknown)),
    )


def holdout_score(model: StoredModel, terms: Terms, X: Any, y: Any, metric: str) -> float | None:
    """``metric`` of a stored (ONNX) model on holdout rows ``X``, ``y``.

    None when the model takes features ``X`` lacks, or the metric is not defined for it
    (log_loss of a model without probabilities).
    """
    from kiln.runtime import ModelRuntime, default_providers

    meta = model.metadata
    missing = [f.name for f in meta.features if f.name not in X.columns]
    if missing:
        return None  # the champion takes features the new data no longer has
    columns = {
        f.name: X[f.name].to_numpy(np.float32 if f.kind is FeatureKind.numeric else object)
        for f in meta.features
    }
    outputs = ModelRuntime(model, default_providers()).run(columns)
    if terms.task is Task.regression:
        return regression_metrics(y, outputs["prediction"].ravel())[metric]
    classes = list(meta.classes or [])
    probabilistic = "probabilities" in outputs
    scores = np.asarray(outputs["probabilities" if probabilistic else "scores"], np.float64)
    if probabilistic:  # float32 rows sum to 1 only within rounding; log loss wants exactly 1
        scores = np.clip(scores, 0.0, 1.0)  # a tree ensemble's 0 may come back as -1e-7
        scores = scores / scores.sum(axis=1, keepdims=True)
    positive = terms.positive_class if terms.positive_class is not None else classes[-1]
    found, _ = classification_metrics(y, outputs["label"], scores, classes, positive, probabilistic)
    return found[metric]


def comparison_rows(
    parts: Split, dataset: Dataset, champion: StoredModel | None
) -> tuple[Any, Any]:
    """The holdout rows neither model trained on: the challenger's holdout rows from files
    (by content) the champion was not trained on. Never a row the champion saw."""
    seen = {f.sha256 for f in champion.metadata.data} if champion else set()
    mask = np.zeros(dataset.rows, dtype=bool)
    start = 0
    for file in dataset.files:
        if file.sha256 not in seen:
            mask[start : start + file.rows] = True
        start += file.rows
    chosen = mask[parts.X_test.index.to_numpy()]
    return parts.X_test[chosen], parts.y_test[chosen]


def beats(challenger: float, champion: float, metric: str, margin: float) -> bool:
    """Whether the challenger is better than the champion by more than ``margin``.

    A tie (or a gain of exactly ``margin``) is not enough: the champion stays.
    """
    if metric in LOWER_IS_BETTER:
        return challenger < champion - margin
    return challenger > champion + margin


def _verdict(new: float, old: float, metric: str, margin: float) -> str:
    if beats(new, old, metric, margin):
        return "beats"
    if new == old:
        return "ties with"
    if beats(new, old, metric, 0.0):
        return "is better, by no more than the margin, than"
    return "is worse than"


def _already_tried(
    name: str, digests: set[str], champion: StoredModel | None, failed: set[str]
) -> StoredModel | None:
    """A version retraining already judged on exactly these files and did not promote."""
    from kiln.store import list_models

    for model in list_models(name)[0]:
        if champion is not None and model.tag == champion.tag:
            continue
        if model.metadata.version in failed or read_decision(model) is None:
            continue  # left by a failed run, or never compared: not a verdict
        if {f.sha256 for f in model.metadata.data} == digests:
            return model
    return None


def _compare(
    terms: Terms, challenger: StoredModel, champion: StoredModel, X: Any, y: Any
) -> tuple[bool, str, float | None, float | None]:
    """(promote?, the reason, challenger's score, champion's score)."""
    metric, margin = terms.metric, terms.margin
    rows = f"{len(X):,} holdout rows neither model was trained on"
    if terms.task is Task.classification:
        grown = set(challenger.metadata.classes or []) - set(champion.metadata.classes or [])
        if grown:  # only with promotion.allow_new_classes (check_labels)
            shown = ", ".join(repr(c) for c in sorted(grown, key=str))
            return (
                True,
                f"new classes {shown} (allowed): {champion.tag} cannot "
                f"answer them, so {metric} is not compared; promoted on its quality gate",
                None,
                None,
            )
    missing = [f.name for f in champion.metadata.features if f.name not in X.columns]
    if missing:
        return (
            True,
            f"{champion.tag} cannot be scored: the data no longer has {', '.join(missing)}",
            None,
            None,
        )
    if len(X) < MIN_COMPARISON_ROWS:
        return (
            False,
            f"only {rows} (at least {MIN_COMPARISON_ROWS} are needed to compare them on "
            f"{metric}); {champion.tag} stays",
            None,
            None,
        )
    if terms.task is Task.classification and y.nunique() < 2:
        return (
            False,
            f"the {rows} hold a single class ({y.iloc[0]!r}): {metric} cannot compare them; "
            f"{champion.tag} stays",
            None,
            None,
        )
    new = holdout_score(challenger, terms, X, y, metric)
    old = holdout_score(champion, terms, X, y, metric)
    if new is None or old is None:
        who = challenger.tag if new is None else champion.tag
        return False, f"{who} has no {metric} on the {rows}; {champion.tag} stays", new, old
    verdict = _verdict(new, old, metric, margin)
    return (
        verdict == "beats",
        f"{metric} {new:.4f} {verdict} {champion.tag}'s {old:.4f} (margin {margin:g}; a tie "
        f"keeps the champion) on {rows}",
        new,
        old,
    )


def _decide(
    terms: Terms,
    challenger: StoredModel,
    champion: StoredModel | None,
    X: Any,
    y: Any,
    reasons: list[str],
) -> Decision:
    new_score = old_score = None
    if challenger.stage is Stage.rejected:
        failed = [
            f"{c.metric} {c.op} {c.threshold:g}"
            for c in challenger.metadata.gate.checks
            if not c.passed
        ]
        reasons.append(f"{challenger.tag} is below its quality gate ({'; '.join(failed)})")
        promoted = False
    elif champion is None:
        reasons.append("there is no production model yet")
        promoted = True
    else:
        promoted, reason, new_score, old_score = _compare(terms, challenger, champion, X, y)
        reasons.append(reason)
    return Decision(
        promoted=promoted,
        challenger=challenger.tag,
        champion=champion.tag if champion else None,
        metric=terms.metric,
        challenger_score=new_score,
        champion_score=old_score,
        reasons=reasons,
    )


def _failure(exc: BaseException) -> str:
    return str(exc) if isinstance(exc, KilnError) else f"{type(exc).__name__}: {exc}"


def earlier_failure(record: RunRecord | None, digests: list[str]) -> str | None:
    """The reason line saying the last run failed (on this data or other), or None."""
    if record is None or record.last.status != "failed":
        return None
    data = "on this data " if sorted(record.last.data) == sorted(digests) else ""
    return (
        f"the last run {data}failed ({record.last.at:%Y-%m-%d %H:%M:%S} UTC): "
        f"{record.last.error}; trying again"
    )


@dataclass
class Attempt:
    """How far a run got: the data it read, the version it put in the store."""

    earlier: RunRecord | None
    digests: list[str] = field(default_factory=list)
    registered: str | None = None
    decided: list[Decision] = field(default_factory=list)
    drift: DriftRecord | None = None  # the new files against the champion's training data


def recorded(name: str, run: Callable[[Attempt], Decision]) -> Decision:
    """``run(attempt)``, its outcome kept in the run record of ``name``.

    A run that fails is recorded as failed, and a version it registered is taken out again;
    a KilnError is raised as it is, anything else as a TrainingError.
    """
    attempt = Attempt(earlier=last_run(name))
    try:
        decision = run(attempt)
    except Exception as exc:
        left = None
        if attempt.registered:  # registered, then a later step failed: take it out again
            try:
                unregister(attempt.registered)
            except Exception:
                left = attempt.registered.partition(":")[2]
        error = _failure(exc)
        failed = Run(
            status="failed",
            at=datetime.now(UTC),
            data=attempt.digests,
            challenger=attempt.registered if left else None,
            error=error,
        )
        record_run(name, failed, left_behind=left)
        if isinstance(exc, KilnError):
            raise
        raise TrainingError(f"{name}: retraining failed: {error}") from exc
    if decision.challenger is not None:
        done = Run(
            status="succeeded",
            at=decision.at,
            data=attempt.digests,
            challenger=decision.challenger,
            promoted=decision.promoted,
        )
        record_run(name, done)
    return decision


def nothing_new(
    terms: Terms, champion: StoredModel | None, attempt: Attempt, fresh: list[Path] | None
) -> Decision | None:
    """The decision not to train when there is nothing new: no file the champion was not
    trained on (``fresh`` empty), or a version already judged on exactly this data."""
    if champion is not None and fresh is not None and not fresh:
        return Decision(
            promoted=False,
            challenger=None,
            champion=champion.tag,
            metric=terms.metric,
            reasons=[f"no new data: {champion.tag} was trained on every file given"],
        )
    if fresh is None or not attempt.digests:
        return None
    failed = set(attempt.earlier.failed_versions) if attempt.earlier else set()
    tried = _already_tried(terms.name, set(attempt.digests), champion, failed)
    if tried is None:
        return None
    return Decision(
        promoted=False,
        challenger=None,
        champion=champion.tag if champion else None,
        metric=terms.metric,
        reasons=[f"{tried.tag} was already trained on exactly this data and not promoted"],
    )


def opening(
    terms: Terms,
    champion: StoredModel | None,
    attempt: Attempt,
    fresh: list[Path] | None,
    on_step: Step,
    on_drift: OnDrift | None = None,
) -> Decision | list[str]:
    """What a run says before it trains: the decision not to (:func:`nothing_new`), or the
    reasons its decision starts with (that the last run failed, if it did). The new files'
    drift against the champion is measured here, into ``attempt.drift``."""
    if (nothing := nothing_new(terms, champion, attempt, fresh)) is not None:
        return nothing
    files = [p for p in fresh or [] if p.is_file()]
    if champion is not None and files:
        on_step(f"Comparing the new data with {champion.tag}'s training data")
        attempt.drift = drift_record(champion, files, on_drift)
    reasons: list[str] = []
    if (note := earlier_failure(attempt.earlier, attempt.digests)) is not None:
        on_step(note)
        reasons.append(note)
    return reasons


def comparer(
    terms: Terms,
    champion: StoredModel | None,
    X: Any,
    y: Any,
    reasons: list[str],
    attempt: Attempt,
    on_step: Step,
) -> Callable[[StoredModel], None]:
    """The registration check (:func:`training.register.register`) that decides, on the
    rows ``X``, ``y``, before the challenger enters the store: a failure registers nothing.
    The decision is written beside the challenger and kept in ``attempt.decided``."""

    def compare(challenger: StoredModel) -> None:
        on_step(f"Comparing with {champion.tag if champion else 'nothing (first version)'}")
        try:
            decision = _decide(terms, challenger, champion, X, y, reasons)
        except KilnError:
            raise
        except Exception as exc:
            raise TrainingError(
                f"{terms.name}: comparing {challenger.tag} with "
                f"{champion.tag if champion else 'nothing'} failed: {_failure(exc)}; "
                "nothing was registered"
            ) from exc
        if attempt.drift is not None:
            decision = decision.model_copy(update={"drift": attempt.drift})
        write_decision(challenger, decision)
        attempt.decided.append(decision)

    return compare


def conclude(
    stored: StoredModel, attempt: Attempt, settings: TrainingSettings, on_step: Step
) -> Decision:
    """After registration: promote when the comparison said so, then write the report.

    A champion kept that was never promoted (production by the newest-candidate rule) is
    promoted now: else the challenger, newer, would be served without having won.
    """
    attempt.registered = stored.tag
    decision = attempt.decided[0]
    if decision.promoted:
        promote(stored.tag, "; ".join(decision.reasons))
    elif decision.champion is not None and current(stored.metadata.name) is None:
        promote(
            decision.champion,
            f"kept by retraining: {stored.tag} was not promoted ({'; '.join(decision.reasons)})",
        )
    if settings.reports_dir is not None:
        on_step("Writing the report")
        write_training_report(stored, settings.reports_dir)  # reports its own failure
    return decision


def retrain(
    spec: Spec,
    *,
    spec_path: Path | None = None,
    data: list[str] | None = None,
    settings: TrainingSettings | None = None,
    on_step: Step = _quiet,
    on_drift: OnDrift | None = None,
) -> Decision:
    """Train a challenger on all data, compare it with the champion, promote or not.
    ``on_drift`` is shown the new files' drift against the champion before training.

    Raises a KilnError when the run fails (it is then recorded as failed, and nothing it
    trained stays in the store); an unexpected error is raised as a TrainingError.
    """
    return recorded(
        spec.name,
        lambda attempt: _retrain(spec, spec_path, data, settings, on_step, attempt, on_drift),
    )


def _retrain(
    spec: Spec,
    spec_path: Path | None,
    data: list[str] | None,
    settings: TrainingSettings | None,
    on_step: Step,
    attempt: Attempt,
    on_drift: OnDrift | None = None,
) -> Decision:
    terms = Terms.of(spec)
    spec_dir = spec_path.parent if spec_path else Path.cwd()
    paths = resolve_paths(data, Path.cwd()) if data else resolve_paths(spec.data.paths, spec_dir)
    champion = production_model(spec.name)
    fresh = new_files(paths, champion) if not spec.data.sklearn else paths
    if (nothing := nothing_new(terms, champion, attempt, fresh)) is not None:
        return nothing
    on_step("Loading and checking data")
    dataset = load_dataset(spec, paths)  # every data problem shows before training
    attempt.digests = [f.sha256 for f in dataset.files]
    check_labels(spec, dataset, champion)
    check_positive_class(spec, dataset)
    reasons = opening(terms, champion, attempt, fresh, on_step, on_drift)
    if isinstance(reasons, Decision):  # nothing new: nothing to train
        return reasons
    if champion is not None:
        reasons.append(f"new data: {', '.join(p.name for p in fresh)}")
    X, y = comparison_rows(split(spec, dataset), dataset, champion)
    settings = settings or TrainingSettings()
    stored = train(
        spec,
        spec_path=spec_path,
        data=data,
        settings=settings.model_copy(update={"reports_dir": None}),  # written once it stays
        on_step=on_step,
        dataset=dataset,
        check=comparer(terms, champion, X, y, reasons, attempt, on_step),
    )
    return conclude(stored, attempt, settings, on_step)


def watch(
    spec: Spec,
    *,
    spec_path: Path,
    interval: float,
    max_runs: int | None = None,
    settings: TrainingSettings | None = None,
    on_decision: Callable[[Decision], None] = lambda _: None,
    on_error: Callable[[Exception], None] = lambda _: None,
    on_drift: OnDrift | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> int:
    """Poll the spec's data paths; retrain whenever a file with new content lands.

    A file that fails its checks is reported once and not retried until it changes.
    Returns the number of retraining runs (stops after ``max_runs`` if given).
    """
    runs = 0
    tried: set[frozenset[str]] = set()
    while max_runs is None or runs < max_runs:
        try:
            paths = resolve_paths(spec.data.paths, spec_path.parent)
        except DataError:  # nothing there yet
            paths = []
        digests = frozenset(file_sha256(p) for p in paths if p.is_file())
        if digests and digests not in tried:
            tried.add(digests)
            try:
                decision = retrain(spec, spec_path=spec_path, settings=settings, on_drift=on_drift)
            except Exception as exc:  # reported; the loop goes on with the next change
                on_error(exc)
            else:
                if decision.challenger is not None:
                    runs += 1
                on_decision(decision)
        if max_runs is not None and runs >= max_runs:
            break
        sleep(interval)
    return runs
