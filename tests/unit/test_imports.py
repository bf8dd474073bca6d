"""Import costs and boundaries: nothing heavy or side-effecting happens at import time."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import REPO


def _loaded_after(statement: str) -> set[str]:
    code = f"{statement}\nimport sys\nprint(' '.join(sorted(sys.modules)))"
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True
    )
    return set(result.stdout.split())


@pytest.mark.parametrize(
    "statement",
    ["import kiln.artifact, kiln.errors, kiln.store", "import training.cli"],
)
def test_import_loads_neither_sklearn_nor_bentoml(statement: str) -> None:
    loaded = _loaded_after(statement)
    assert not {"sklearn", "bentoml", "skl2onnx", "onnxruntime"} & loaded


def test_artifact_format_does_not_import_sklearn_or_bentoml_even_when_used() -> None:
    loaded = _loaded_after("from kiln.artifact import read_metadata, write_metadata, ModelMetadata")
    assert "sklearn" not in loaded and "bentoml" not in loaded
