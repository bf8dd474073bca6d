"""Writing a verified model into the BentoML model store, with its provenance.

The ONNX file and the metadata document are written into BentoML's temporary model
directory; only when both are written and read back (and the caller's last check, such as
retraining's comparison with the production model, has passed) does the model enter the
store. A failure at any step leaves the store as it was; :func:`unregister` takes a version
out again when a step after registration fails.
"""

from __future__ import annotations

import hashlib
import platform
import subprocess
from collections.abc import Callable
from datetime import UTC, datetime
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

from kiln.artifact import (
    MODEL_FILE,
    DataFile,
    Evaluation,
    Feature,
    FeatureStats,
    Gate,
    Holdout,
    ModelMetadata,
    Origin,
    OriginKind,
    Output,
    Provenance,
    Reference,
    Stage,
    Task,
    Verification,
    read_holdout,
    read_metadata,
    write_holdout,
    write_metadata,
)
from kiln.store import StoredModel, get_model, new_model

__all__ = ["LIBRARIES", "Check", "git_state", "library_versions", "register", "unregister"]

Check = Callable[[StoredModel], None]

LIBRARIES = (
    "scikit-learn",
    "skl2onnx",
    "onnx",
    "onnxruntime",
    "numpy",
    "pandas",
    "bentoml",
    "kiln",
)


def git_state(directory: Path) -> tuple[str | None, bool | None]:
    """The commit checked out in ``directory`` and whether the tree has changes; None if no git."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=directory,
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=directory,
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None, None
    return commit, bool(status.strip())


def library_versions() -> dict[str, str]:
    found = {"python": platform.python_version()}
    for name in LIBRARIES:
        try:
            found[name] = importlib_metadata.version(name)
        except importlib_metadata.PackageNotFoundError:
            continue
    return found


def register(
    *,
    name: str,
    task: Task,
    target: str,
    estimator: str,
    estimator_params: dict[str, Any],
    classes: list[Any] | None,
    features: list[Feature],
    onnx: bytes,
    onnx_nodes: dict[str, int],
    outputs: list[Output],
    evaluation: Evaluation,
    gate: Gate,
    verification: Verification,
    data: list[DataFile],
    feature_stats: dict[str, FeatureStats],
    spec: dict[str, Any],
    spec_path: str | None,
    opset: dict[str, int],
    holdout: Holdout | None = None,
    check: Check | None = None,
    origin: Origin | None = None,
    reference: Reference | None = None,
) -> StoredModel:
    """Store ``onnx`` and its metadata as a new version of ``name``; return what was stored.

    ``origin``: where the model came from (an import's source); by default a spec.
    ``reference``: the training distribution for input checks and drift (training/stats.py).

    ``holdout`` (predictions and feature importance, for reports) is written beside them.
    ``check`` is called last with the model as it will be stored (its files already in the
    temporary directory, where it may add its own, such as decision.json); if it raises, the
    model never enters the store and the error is raised.
    """
    commit, dirty = git_state(Path(__file__).resolve().parent)
    stage = Stage.candidate if gate.passed else Stage.rejected
    with new_model(name, labels={"stage": stage.value, "task": task.value}) as (version, directory):
        (directory / MODEL_FILE).write_bytes(onnx)
        meta = ModelMetadata(
            name=name,
            version=version,
            task=task,
            target=target,
            estimator=estimator,
            estimator_params=estimator_params,
            classes=classes,
            features=features,
            outputs=outputs,
            evaluation=evaluation,
            gate=gate,
            verification=verification,
            data=data,
            feature_stats=feature_stats,
            provenance=Provenance(
                created_at=datetime.now(UTC),
                git_commit=commit,
                git_dirty=dirty,
                python=platform.python_version(),
                libraries=library_versions(),
                opset=opset,
                spec=spec,
                spec_path=spec_path,
            ),
            onnx_sha256=hashlib.sha256(onnx).hexdigest(),
            onnx_nodes=onnx_nodes,
            stage=stage,
            origin=origin or Origin(kind=OriginKind.spec),
            reference=reference,
        )
        write_metadata(meta, directory)
        read_metadata(directory, f"{name}:{version}")  # what serving will read must read back
        if holdout is not None:
            write_holdout(holdout, directory)
            read_holdout(directory, f"{name}:{version}")
        if check is not None:
            check(StoredModel(tag=f"{name}:{version}", path=directory, metadata=meta))
    return get_model(f"{name}:{version}")


def unregister(tag: str) -> None:
    """Delete ``NAME:VERSION`` from the store (a step after its registration failed)."""
    import bentoml

    bentoml.models.delete(tag)
