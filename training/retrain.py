"""New data in, better model out: champion/challenger retraining and the watch loop.

`retrain` trains a challenger on all the data the spec names (old files plus new), scores
it and the production model (the champion) on the same holdout, and promotes the challenger
only if it passed its quality gate and is not worse than the champion by more than the
spec's `promotion.margin`. Data problems are caught before anything is trained: a file
whose content was already used (same sha256 under another name), or one that does not fit
the spec, changes nothing. Every decision is written, with its reasons, into the
challenger's directory (`decision.json`) and the production record.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from kiln.artifact import FeatureKind, Stage, Task, file_sha256
from kiln.errors import DataError
from kiln.production import Decision, production_model, promote, write_decision
from kiln.store import StoredModel
from training.data import resolve_paths
from training.evaluate import classification_metrics, regression_metrics
from training.run import load_checked, split, train
from training.settings import TrainingSettings
from training.spec import LOWER_IS_BETTER, Spec

__all__ = ["holdout_score", "new_files", "retrain", "watch"]

Step = Callable[[str], None]


def _quiet(_: str) -> None:
    return None


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


def holdout_score(model: StoredModel, spec: Spec, X: Any, y: Any, metric: str) -> float | None:
    """``metric`` of a stored (ONNX) model on holdout rows ``X``, ``y``."""
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
    if spec.task is Task.regression:
        return regression_metrics(y, outputs["prediction"].ravel())[metric]
    classes = list(meta.classes or [])
    probabilistic = "probabilities" in outputs
    scores = np.asarray(outputs["probabilities" if probabilistic else "scores"], np.float64)
    if probabilistic:  # float32 rows sum to 1 only within rounding; log loss wants exactly 1
        scores = scores / scores.sum(axis=1, keepdims=True)
    positive = (
        spec.evaluation.positive_class
        if spec.evaluation.positive_class is not None
        else classes[-1]
    )
    found, _ = classification_metrics(y, outputs["label"], scores, classes, positive, probabilistic)
    return found[metric]


MIN_COMPARISON_ROWS = 30


def _comparison_rows(parts: Any, dataset: Any, fresh: list[Path]) -> tuple[Any, Any, str]:
    """Holdout rows neither model trained on: those from the new files (the champion never
    saw them). With too few of them, the whole holdout, said so in the reason."""
    new_sources = {str(p) for p in fresh}
    mask = np.zeros(dataset.rows, dtype=bool)
    start = 0
    for file in dataset.files:
        if file.source in new_sources:
            mask[start : start + file.rows] = True
        start += file.rows
    chosen = mask[parts.X_test.index.to_numpy()]
    total = len(parts.X_test)
    if chosen.all():
        return parts.X_test, parts.y_test, f"{total:,} holdout rows"
    if chosen.sum() >= MIN_COMPARISON_ROWS:
        note = f"{int(chosen.sum()):,} holdout rows from the new files"
        return parts.X_test[chosen], parts.y_test[chosen], note
    note = f"all {total:,} holdout rows (too few new ones; includes rows the champion saw)"
    return parts.X_test, parts.y_test, note


def _already_tried(
    name: str, digests: set[str], champion: StoredModel | None
) -> StoredModel | None:
    """A version already trained on exactly these files that is not in production."""
    from kiln.store import list_models

    for model in list_models(name)[0]:
        same = {f.sha256 for f in model.metadata.data} == digests
        if same and (champion is None or model.tag != champion.tag):
            return model
    return None


def _better(challenger: float, champion: float, metric: str, margin: float) -> bool:
    if metric in LOWER_IS_BETTER:
        return challenger <= champion + margin
    return challenger >= champion - margin


def retrain(
    spec: Spec,
    *,
    spec_path: Path | None = None,
    data: list[str] | None = None,
    settings: TrainingSettings | None = None,
    on_step: Step = _quiet,
) -> Decision:
    """Train a challenger on all data, compare it with the champion, promote or not."""
    spec_dir = spec_path.parent if spec_path else Path.cwd()
    paths = resolve_paths(data, Path.cwd()) if data else resolve_paths(spec.data.paths, spec_dir)
    champion = production_model(spec.name)
    metric = spec.promotion.metric_for(spec.task)
    fresh = new_files(paths, champion) if not spec.data.sklearn else paths
    if champion is not None and not fresh:
        return Decision(
            promoted=False,
            challenger=None,
            champion=champion.tag,
            metric=metric,
            reasons=[f"no new data: {champion.tag} was trained on every file given"],
        )
    dataset = load_checked(spec, spec_dir, data)  # every data problem shows before training
    tried = _already_tried(spec.name, {f.sha256 for f in dataset.files}, champion)
    if tried is not None:
        return Decision(
            promoted=False,
            challenger=None,
            champion=champion.tag if champion else None,
            metric=metric,
            reasons=[f"{tried.tag} was already trained on exactly this data and not promoted"],
        )
    challenger = train(spec, spec_path=spec_path, data=data, settings=settings, on_step=on_step)

    on_step("Comparing challenger and champion on the same holdout")
    parts = split(spec, dataset)
    X, y, rows_note = _comparison_rows(parts, dataset, fresh)
    new_score = holdout_score(challenger, spec, X, y, metric)
    old_score = holdout_score(champion, spec, X, y, metric) if champion else None
    reasons: list[str] = [f"new data: {', '.join(p.name for p in fresh)}"] if champion else []
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
    elif new_score is None or old_score is None:
        reasons.append(f"{champion.tag} cannot be scored on the new data's features")
        promoted = True
    else:
        promoted = _better(new_score, old_score, metric, spec.promotion.margin)
        verdict = "not worse than" if promoted else "worse than"
        reasons.append(
            f"{metric} {new_score:.4f} is {verdict} {champion.tag}'s {old_score:.4f} "
            f"(margin {spec.promotion.margin:g}) on {rows_note}"
        )
    decision = Decision(
        promoted=promoted,
        challenger=challenger.tag,
        champion=champion.tag if champion else None,
        metric=metric,
        challenger_score=new_score,
        champion_score=old_score,
        reasons=reasons,
    )
    write_decision(challenger, decision)
    if promoted:
        promote(challenger.tag, "; ".join(reasons))
    return decision


def watch(
    spec: Spec,
    *,
    spec_path: Path,
    interval: float,
    max_runs: int | None = None,
    settings: TrainingSettings | None = None,
    on_decision: Callable[[Decision], None] = lambda _: None,
    on_error: Callable[[Exception], None] = lambda _: None,
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
                decision = retrain(spec, spec_path=spec_path, settings=settings)
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
