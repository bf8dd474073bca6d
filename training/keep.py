"""The source estimator of an imported model, kept for retraining (`kiln retrain NAME`).

Beside the store, never inside a model's directory (which ``bentoml build`` copies into the
Bento and the serving image): ``$BENTOML_HOME/kiln/sources/<name>/<version>/`` holds

- ``model.joblib``, ``model.pkl`` or ``model.skops``: the source as it was imported. A
  joblib, pickle or ``.skops`` file: its bytes as they were; an MLflow directory: its pickled
  model file (``pickle`` for MLflow's pickle and cloudpickle formats, which joblib reads) or
  its ``.skops`` file; a ``bentoml:`` model or an object handed to :func:`kiln.save_model`:
  dumped here with ``joblib.dump``; a refitted challenger: dumped in its parent's format
  (skops stays skops, anything else becomes joblib).
- ``source.json`` (:class:`KeptSource`): the file's format and sha256, the skops types it
  was imported with, and the input contract (features, kinds, target, task).

Serving never reads it. **Unpickling runs code**: a kept joblib or pickle file is loaded
only because the user imported it; a kept ``.skops`` file is loaded with exactly the types it
was imported with, and anything else it holds is refused.
"""

from __future__ import annotations

import hashlib
import io
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from kiln.artifact import FeatureKind, Task
from kiln.errors import DataError
from kiln.store import StoredModel, store_path
from training.contract import Contract

__all__ = [
    "SOURCE_DOC",
    "Kept",
    "KeptSource",
    "document",
    "dump",
    "kept",
    "read_kept",
    "remove",
    "source_dir",
    "write",
]

SOURCE_DOC = "source.json"
Format = Literal["joblib", "pickle", "skops"]
_FILES = {"joblib": "model.joblib", "pickle": "model.pkl", "skops": "model.skops"}


class KeptSource(BaseModel):
    """``source.json``: how to load the kept file, and the contract it was imported with."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    format: Format
    file: str
    sha256: str
    imported_as: str  # the import's origin format (joblib, pickle, skops, mlflow, bentoml, python)
    trusted: list[str] = []  # skops: the types beyond skops' defaults it was imported with
    features: list[tuple[str, FeatureKind]]
    by_name: bool
    restore: dict[str, str] = {}
    target: str
    task: Task
    refitted_from: str | None = None  # NAME:VERSION a retrain refitted it from

    @property
    def contract(self) -> Contract:
        return Contract(list(self.features), [], self.by_name, dict(self.restore))


@dataclass(frozen=True)
class Kept:
    """A source ready to keep: its bytes, their format, the skops types they hold."""

    data: bytes
    format: Format
    trusted: list[str]
    refitted_from: str | None = None


def source_dir(name: str, version: str) -> Path:
    return store_path().parent / "kiln" / "sources" / name / version


def _untrusted(data: bytes) -> list[str]:
    import skops.io

    return sorted(skops.io.get_untrusted_types(data=data))


def dump(model: Any, fmt: Format, refitted_from: str | None = None) -> Kept:
    """``model`` as bytes to keep: skops (``skops.io.dumps``) or joblib (``joblib.dump``)."""
    if fmt == "skops":
        import skops.io

        data = skops.io.dumps(model)
        return Kept(data, "skops", _untrusted(data), refitted_from)
    import joblib

    buffer = io.BytesIO()
    joblib.dump(model, buffer)
    return Kept(buffer.getvalue(), "joblib", [], refitted_from)


def _mlflow_file(directory: Path) -> tuple[Path, Format]:
    import yaml

    doc = yaml.safe_load((directory / "MLmodel").read_text(encoding="utf-8"))
    flavor = doc["flavors"]["sklearn"]
    fmt = flavor.get("serialization_format", "cloudpickle")
    return directory / str(flavor["pickled_model"]), "skops" if fmt == "skops" else "pickle"


def kept(model: Any, fmt: str, source: str | None, sha256: str | None) -> Kept:
    """What to keep of a source just imported (``fmt``, ``source``, ``sha256``: the
    :class:`training.sources.Loaded` it was loaded as); its file's bytes where there is one."""
    path: Path | None = None
    kind: Format = "joblib"
    if fmt in ("joblib", "pickle", "skops") and source is not None:
        path, kind = Path(source), fmt  # type: ignore[assignment]
    elif fmt == "mlflow" and source is not None:
        path, kind = _mlflow_file(Path(source))
    if path is None:  # bentoml: or an object: dumped here
        return dump(model, "joblib")
    data = path.read_bytes()
    if sha256 is not None and hashlib.sha256(data).hexdigest() != sha256:
        raise DataError("changed while it was imported; import it again", source=source)
    return Kept(data, kind, _untrusted(data) if kind == "skops" else [])


def write(name: str, version: str, source: Kept, doc: KeptSource) -> Path:
    """Write the kept source of ``name:version`` whole (a temporary directory renamed)."""
    final = source_dir(name, version)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{version}."))
    try:
        (tmp / doc.file).write_bytes(source.data)
        (tmp / SOURCE_DOC).write_text(doc.model_dump_json(indent=2) + "\n", encoding="utf-8")
        tmp.rename(final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def document(
    source: Kept, imported_as: str, contract: Contract, target: str, task: Task
) -> KeptSource:
    return KeptSource(
        format=source.format,
        file=_FILES[source.format],
        sha256=hashlib.sha256(source.data).hexdigest(),
        imported_as=imported_as,
        trusted=source.trusted,
        features=contract.features,
        by_name=contract.by_name,
        restore=contract.restore,
        target=target,
        task=task,
        refitted_from=source.refitted_from,
    )


def remove(name: str, version: str) -> None:
    shutil.rmtree(source_dir(name, version), ignore_errors=True)


def read_kept(model: StoredModel) -> tuple[Any, KeptSource]:
    """The source estimator kept for ``model``, loaded, and its document.

    A DataError when there is none (a model trained from a spec, or imported before Kiln
    kept sources), when the file no longer matches its sha256, or when a ``.skops`` file
    holds types it was not imported with.
    """
    from training.sources import _unpickled, check_model

    meta = model.metadata
    directory = source_dir(meta.name, meta.version)
    if meta.origin is None or meta.origin.kind.value != "import":
        raise DataError(
            f"{model.tag} was trained from a spec: retrain it with `kiln retrain SPEC.yaml`",
            source=model.tag,
        )
    try:
        doc = KeptSource.model_validate_json((directory / SOURCE_DOC).read_text("utf-8"))
    except FileNotFoundError:
        raise DataError(
            f"no source estimator is kept for {model.tag} (imported before Kiln kept them): "
            "import the model again to retrain it",
            source=str(directory),
        ) from None
    except (OSError, ValueError) as exc:
        raise DataError(f"{SOURCE_DOC} is unreadable: {exc}", source=str(directory)) from None
    path = directory / doc.file
    data = path.read_bytes()
    if hashlib.sha256(data).hexdigest() != doc.sha256:
        raise DataError(
            f"the kept source of {model.tag} no longer matches its sha256 {doc.sha256[:12]}",
            source=str(path),
        )
    if doc.format == "skops":
        import skops.io

        refused = [t for t in _untrusted(data) if t not in set(doc.trusted)]
        if refused:
            raise DataError(
                f"holds types it was not imported with: {', '.join(refused)}", source=str(path)
            )
        loaded = skops.io.loads(data, trusted=doc.trusted)
    else:  # joblib or pickle: trusted because the user imported it
        loaded = _unpickled(path, doc.format)
    check_model(loaded, str(path))
    return loaded, doc
