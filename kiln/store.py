"""Kiln models in the BentoML model store (the store under ``$BENTOML_HOME``).

Reading is shared by the CLI and serving; writing goes through :func:`new_model`, which
builds the model in a temporary directory and moves it into the store only when every file is
written, so a failure at any step leaves nothing in the store. BentoML is imported inside the
functions: importing this module costs nothing.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from kiln.artifact import METADATA_FILE, MODEL_FILE, ModelMetadata, Stage, read_metadata
from kiln.errors import ArtifactError, ModelNotFound, RegistrationError

if TYPE_CHECKING:
    import bentoml

__all__ = [
    "OWNER_LABEL",
    "ForeignModel",
    "StoredModel",
    "foreign_models",
    "get_model",
    "list_models",
    "new_model",
    "store_path",
]

OWNER_LABEL = "kiln"


@dataclass(frozen=True)
class StoredModel:
    """One registered version: its tag, its directory in the store and its metadata."""

    tag: str
    path: Path
    metadata: ModelMetadata

    @property
    def onnx_path(self) -> Path:
        return self.path / MODEL_FILE

    @property
    def stage(self) -> Stage:
        return self.metadata.stage

    def read_onnx(self) -> bytes:
        """model.onnx's bytes, checked against the sha256 registered in kiln.json.

        Raises ArtifactError when the file is unreadable or was changed after registration:
        such a version is never served, scored or promoted.
        """
        try:
            model_bytes = self.onnx_path.read_bytes()
        except OSError as exc:
            raise ArtifactError(self.tag, f"model.onnx is unreadable: {exc}") from None
        found = hashlib.sha256(model_bytes).hexdigest()
        if found != self.metadata.onnx_sha256:
            raise ArtifactError(
                self.tag,
                f"model.onnx does not match the sha256 registered in kiln.json (registered "
                f"{self.metadata.onnx_sha256[:12]}..., found {found[:12]}...): the file was "
                "changed or damaged after registration; refusing to use it",
            )
        return model_bytes


@dataclass(frozen=True)
class ForeignModel:
    """A model in the store that Kiln did not make (no kiln.json), e.g. from
    ``bentoml.sklearn.save_model``: never served; ``kiln import bentoml:TAG`` imports it."""

    tag: str
    module: str  # the BentoML framework module that saved it, e.g. bentoml.sklearn
    created_at: datetime

    @property
    def importable(self) -> bool:
        """Saved by ``bentoml.sklearn``: what ``kiln import bentoml:NAME[:VERSION]`` reads."""
        return self.module == "bentoml.sklearn"


def store_path() -> Path:
    """Directory of the model store in use (``$BENTOML_HOME/models``)."""
    from bentoml._internal.configuration.containers import BentoMLContainer

    return Path(BentoMLContainer.model_store_dir.get())


def _is_kiln(model: bentoml.Model) -> bool:
    return (
        model.info.labels.get("owner") == OWNER_LABEL
        or (Path(model.path) / METADATA_FILE).is_file()
    )


def _load(model: bentoml.Model) -> StoredModel:
    tag = str(model.tag)
    path = Path(model.path)
    return StoredModel(tag=tag, path=path, metadata=read_metadata(path, tag))


def list_models(name: str | None = None) -> tuple[list[StoredModel], list[ArtifactError]]:
    """Every Kiln model (or every version of ``name``), newest first, and the unreadable ones."""
    import bentoml
    from bentoml.exceptions import NotFound

    try:
        found = bentoml.models.list(name)
    except NotFound:
        return [], []
    models: list[StoredModel] = []
    problems: list[ArtifactError] = []
    for model in found:
        if not _is_kiln(model):
            continue
        try:
            models.append(_load(model))
        except ArtifactError as exc:
            problems.append(exc)
    models.sort(key=lambda m: (m.metadata.name, -m.metadata.provenance.created_at.timestamp()))
    return models, problems


def foreign_models(name: str | None = None) -> list[ForeignModel]:
    """The models in the store that are not Kiln's (which :func:`list_models` leaves out),
    newest first: what a user saved with BentoML's own ``save_model``."""
    import bentoml
    from bentoml.exceptions import NotFound

    try:
        found = bentoml.models.list(name)
    except NotFound:
        return []
    others = [
        ForeignModel(tag=str(m.tag), module=m.info.module, created_at=m.info.creation_time)
        for m in found
        if not _is_kiln(m)
    ]
    others.sort(key=lambda m: m.created_at, reverse=True)
    return others


def get_model(ref: str) -> StoredModel:
    """Look up ``NAME`` (the newest version) or ``NAME:VERSION``."""
    import bentoml
    from bentoml.exceptions import BentoMLException, NotFound

    try:
        model = bentoml.models.get(ref)
    except NotFound:
        known = {m.metadata.name for m in list_models()[0]}
        raise ModelNotFound(ref, known) from None
    except BentoMLException as exc:  # malformed tag and the like
        raise ModelNotFound(f"{ref} ({exc})") from None
    return _load(model)


@contextmanager
def new_model(name: str, *, labels: dict[str, str]) -> Iterator[tuple[str, Path]]:
    """Yield ``(version, directory)`` to fill; on normal exit the model enters the store.

    Any exception inside the block discards the directory; the store is untouched and the
    error is re-raised as :class:`RegistrationError` (unless it is already a Kiln error).
    """
    import bentoml

    from kiln.errors import KilnError

    try:
        with bentoml.models.create(name, labels={"owner": OWNER_LABEL, **labels}) as model:
            yield model.tag.version or "", Path(model.path)
    except KilnError:
        raise
    except Exception as exc:
        raise RegistrationError(name, exc) from exc
