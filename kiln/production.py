"""Which version of each model is in production, and how it got there.

One small JSON document per model name, ``$BENTOML_HOME/kiln/production/<name>.json``, beside
BentoML's own store (whose model directories stay immutable):

    {"name": "churn", "version": "abc", "history": [{"version": ..., "at": ..., "reason": ...}]}

Written atomically (a temporary file renamed over the old one), so a reader such as a
running service sees the old document or the new one, never half of either. Models never
promoted have no document: until a first promotion, production is the newest version that
passed its quality gate (the rule serving has always used).
"""

from __future__ import annotations

import os
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from kiln.artifact import Stage
from kiln.errors import ArtifactError, InvalidInput, ModelNotFound
from kiln.store import StoredModel, get_model, list_models, store_path

__all__ = [
    "DECISION_FILE",
    "Decision",
    "ProductionRecord",
    "Promotion",
    "current",
    "production_model",
    "promote",
    "read_decision",
    "record_path",
    "rollback",
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


def current(name: str) -> ProductionRecord | None:
    """The production record of ``name``, or None when it was never promoted."""
    path = record_path(name)
    try:
        return ProductionRecord.model_validate_json(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, ValidationError) as exc:
        raise ArtifactError(name, f"production record {path} is unreadable: {exc}") from None


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
    return next((m for m in models if m.stage is Stage.candidate), None)


def promote(ref: str, reason: str, *, allow_rejected: bool = False) -> ProductionRecord:
    """Make ``NAME:VERSION`` the production version of NAME; the old one stays in the store."""
    if ":" not in ref:
        raise InvalidInput(f"give NAME:VERSION to promote, got {ref!r}")
    stored = get_model(ref)
    meta = stored.metadata
    if stored.stage is Stage.rejected and not allow_rejected:
        raise InvalidInput(
            f"{stored.tag} is below its quality gate (stage rejected); refusing to promote it"
        )
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
    get_model(f"{name}:{previous}")  # it must still be in the store
    entry = Promotion(version=previous, at=datetime.now(UTC), reason=reason)
    updated = ProductionRecord(name=name, version=previous, history=[*record.history, entry])
    _write(updated)
    return updated
