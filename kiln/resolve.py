"""Which stored version a model reference means: one rule for every entry point.

The service, the in-process Predictor, ``kiln predict`` and ``kiln retrain`` all resolve
references here:

- ``NAME`` means the production version: the promoted one (kiln/production.py), else the
  newest version that passed its quality gate. A rejected version is never chosen this way,
  however new it is.
- ``NAME:VERSION`` means exactly that version. A rejected one is used (the user asked for
  it by name) with a warning saying so.
- Wherever it is named, a version whose ``model.onnx`` no longer matches its registered
  sha256 is refused when it is opened (:meth:`kiln.store.StoredModel.read_onnx`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from kiln.artifact import Stage
from kiln.errors import ModelNotFound
from kiln.production import production_model
from kiln.store import StoredModel, get_model, list_models

__all__ = ["parse_ref", "production_names", "resolve", "warn_if_rejected"]

log = logging.getLogger("kiln")

Warn = Callable[[str], None]


def parse_ref(ref: str) -> tuple[str, str | None]:
    """``NAME`` -> (NAME, None); ``NAME:VERSION`` -> (NAME, VERSION)."""
    name, _, version = ref.partition(":")
    return name, version or None


def warn_if_rejected(stored: StoredModel, warn: Warn | None = None) -> None:
    """Say so when a version below its quality gate is used because it was named."""
    if stored.stage is Stage.rejected:
        failed = "; ".join(
            f"{c.metric} {c.op} {c.threshold:g}"
            for c in stored.metadata.gate.checks
            if not c.passed
        )
        message = (
            f"{stored.tag} is below its quality gate ({failed or 'stage rejected'}); "
            "using it only because it was named exactly"
        )
        (warn or log.warning)(message)


def resolve(ref: str, *, warn: Warn | None = None) -> StoredModel:
    """The stored version ``ref`` means (see the module's docstring).

    Raises ModelNotFound for an unknown name or version, or a name with no version that
    passed its gate; ArtifactError when the version's files cannot be read.
    """
    name, version = parse_ref(ref)
    if version is not None:
        stored = get_model(ref)
        warn_if_rejected(stored, warn)
        return stored
    found = production_model(name)
    if found is None:
        models, _ = list_models(name)
        if not models:
            raise ModelNotFound(name, {m.metadata.name for m in list_models()[0]})
        raise ModelNotFound(
            f"{name} (no version passed its quality gate; name one as {name}:VERSION to use it)"
        )
    return found


def production_names() -> list[str]:
    """Names with at least one version that passed its gate: what serving serves."""
    models, _ = list_models()
    return sorted({m.metadata.name for m in models if m.stage is Stage.candidate})
