"""Which version of each model is in production, and how it got there.

One small JSON document per model name, ``$BENTOML_HOME/kiln/production/<name>.json``, beside
BentoML's own store (whose model directories stay immutable):

    {"name": "churn", "version": "abc", "history": [{"version": ..., "at": ..., "reason": ...}]}

Written atomically (a temporary file renamed over the old one), so a reader such as a
running service sees the old document or the new one, never half of either. Models never
promoted have no document: until a first promotion, production is the newest version that
passed its quality gate (the rule serving has always used).

Beside them, ``$BENTOML_HOME/kiln/runs/<name>.json`` records how the last `kiln retrain` run
of each model ended (succeeded, or failed and why, on which data), so a rerun on the same
data tries again and says why the last one failed. A version that a failed run could not
take out of the store again is listed there as failed: it is never promoted, and never
chosen as production by the newest-candidate rule.
"""

from __future__ import annotations

import os
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from kiln.artifact import Stage
from kiln.errors import ArtifactError, InvalidInput, ModelNotFound
from kiln.store import StoredModel, get_model, list_models, store_path

__all__ = [
    "DECISION_FILE",
    "Decision",
    "DriftRecord",
    "ProductionRecord",
    "Promotion",
    "Run",
    "RunRecord",
    "current",
    "last_run",
    "production_model",
    "promote",
    "read_decision",
    "record_path",
    "record_run",
    "rollback",
    "run_path",
    "write_decision",
]


class Promotion(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    version: str
    at: datetime
    reason: str


class ProductionRecord(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    version: str
    history: list[Promotion]


DECISION_FILE = "decision.json"


class DriftRecord(BaseModel):
    """How a retraining run's new files differ from the champion's training data (the PSI
    of training/drift.py), kept with the decision."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    against: str = Field(description="The champion (NAME:VERSION) they were compared with.")
    files: list[str]
    rows: int = Field(description="Rows binned (the rows the value rules accept).")
    features: dict[str, float | None] = Field(
        description="PSI per feature, largest first (None: no rows)."
    )
    prediction: float | None = Field(
        default=None, description="PSI of the champion's answers against its holdout answers."
    )
    basis: Literal["reference", "statistics"] = Field(
        default="reference",
        description="statistics: a model without stored bins, compared over its histogram.",
    )
    note: str | None = Field(default=None, description="Why no drift was measured, if not.")


class Decision(BaseModel):
    """What `kiln retrain` decided about a challenger, and why."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    promoted: bool
    challenger: str | None
    champion: str | None
    metric: str
    challenger_score: float | None = None
    champion_score: float | None = None
    reasons: list[str]
    at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    drift: DriftRecord | None = Field(
        default=None, description="The new files against the champion; None in older records."
    )


def write_decision(model: StoredModel, decision: Decision) -> Path:
    """Keep the decision beside the challenger's files (its kiln.json is never rewritten)."""
    path = model.path / DECISION_FILE
    _atomic_write(path, decision.model_dump_json(indent=2) + "\n")
    return path


def read_decision(model: StoredModel) -> Decision | None:
    try:
        return Decision.model_validate_json((model.path / DECISION_FILE).read_text("utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, ValidationError) as exc:
        raise ArtifactError(model.tag, f"{DECISION_FILE} is unreadable: {exc}") from None


def record_path(name: str) -> Path:
    return store_path().parent / "kiln" / "production" / f"{name}.json"


class Run(BaseModel):
    """How one `kiln retrain` run ended."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    status: Literal["succeeded", "failed"]
    at: datetime
    data: list[str] = Field(description="sha256 of each data file the run was given.")
    challenger: str | None = Field(default=None, description="The version it trained, if any.")
    promoted: bool | None = None
    error: str | None = Field(default=None, description="Why it failed.")


class RunRecord(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    last: Run
    failed_versions: list[str] = Field(
        default_factory=list,
        description="Versions a failed run left in the store: never promoted, never served "
        "by the newest-candidate rule.",
    )


def run_path(name: str) -> Path:
    return store_path().parent / "kiln" / "runs" / f"{name}.json"


def last_run(name: str) -> RunRecord | None:
    """The run record of ``name``, or None when `kiln retrain` never ran for it."""
    return _read(RunRecord, run_path(name), name, "run record")


def record_run(name: str, run: Run, *, left_behind: str | None = None) -> RunRecord:
    """Replace the last run of ``name`` by ``run``; ``left_behind``: a version (VERSION) a
    failed run could not remove from the store, listed as failed from now on."""
    earlier = last_run(name)
    failed = list(earlier.failed_versions) if earlier else []
    if left_behind is not None and left_behind not in failed:
        failed.append(left_behind)
    record = RunRecord(name=name, last=run, failed_versions=failed)
    _atomic_write(run_path(name), record.model_dump_json(indent=2) + "\n")
    return record


def _failed_versions(name: str) -> set[str]:
    record = last_run(name)
    return set(record.failed_versions) if record else set()


def current(name: str) -> ProductionRecord | None:
    """The production record of ``name``, or None when it was never promoted."""
    return _read(ProductionRecord, record_path(name), name, "production record")


_Record = TypeVar("_Record", ProductionRecord, RunRecord)


def _read(kind: type[_Record], path: Path, name: str, what: str) -> _Record | None:
    """The document at ``path``, or None when there is none; ArtifactError when unreadable."""
    try:
        return kind.model_validate_json(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, ValidationError) as exc:
        raise ArtifactError(name, f"{what} {path} is unreadable: {exc}") from None


def _write(record: ProductionRecord) -> None:
    _atomic_write(record_path(record.name), record.model_dump_json(indent=2) + "\n")


def _atomic_write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        Path(tmp).replace(path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def production_model(name: str) -> StoredModel | None:
    """The version of ``name`` to serve: the promoted one, else the newest candidate."""
    record = current(name)
    if record is not None:
        return get_model(f"{name}:{record.version}")
    models, _ = list_models(name)
    failed = _failed_versions(name) if models else set()
    return next(
        (m for m in models if m.stage is Stage.candidate and m.metadata.version not in failed),
        None,
    )


def promote(ref: str, reason: str, *, allow_rejected: bool = False) -> ProductionRecord:
    """Make ``NAME:VERSION`` the production version of NAME; the old one stays in the store.

    Refused (InvalidInput) for a version below its quality gate (unless ``allow_rejected``)
    or left behind by a failed retraining run; refused (ArtifactError) when its model.onnx
    no longer matches the sha256 it was registered with.
    """
    if ":" not in ref:
        raise InvalidInput(f"give NAME:VERSION to promote, got {ref!r}")
    stored = get_model(ref)
    meta = stored.metadata
    if meta.version in _failed_versions(meta.name):
        raise InvalidInput(
            f"{stored.tag} was trained by a retraining run that failed before it was "
            "evaluated against production; refusing to promote it"
        )
    if stored.stage is Stage.rejected and not allow_rejected:
        raise InvalidInput(
            f"{stored.tag} is below its quality gate (stage rejected); refusing to promote it"
        )
    stored.read_onnx()  # ArtifactError when model.onnx was changed or damaged since
    record = current(meta.name) or ProductionRecord(name=meta.name, version="", history=[])
    if record.version == meta.version:
        return record
    entry = Promotion(version=meta.version, at=datetime.now(UTC), reason=reason)
    updated = ProductionRecord(
        name=meta.name, version=meta.version, history=[*record.history, entry]
    )
    _write(updated)
    return updated


def rollback(name: str, reason: str = "rolled back by hand") -> ProductionRecord:
    """Put back the version that was in production before the current one."""
    record = current(name)
    if record is None:
        raise ModelNotFound(f"{name} (never promoted: nothing to roll back to)")
    # the version in production just before the current one's promotion
    earlier = [p.version for p in record.history[:-1] if p.version != record.version]
    if not earlier:
        raise InvalidInput(f"{name}:{record.version} is the only version ever promoted")
    previous = earlier[-1]
    get_model(f"{name}:{previous}").read_onnx()  # still in the store, and intact
    entry = Promotion(version=previous, at=datetime.now(UTC), reason=reason)
    updated = ProductionRecord(name=name, version=previous, history=[*record.history, entry])
    _write(updated)
    return updated
