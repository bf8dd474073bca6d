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


# --- the import direction: kiln/ is the core both sides use; neither side imports the other


def _first_party_imports(package: str) -> dict[str, set[str]]:
    """Module path -> first-party top-level packages it imports (anywhere in the file, inside
    functions too: a lazy import is still a dependency)."""
    import ast

    first_party = {"kiln", "training", "service", "deploy", "bench", "examples", "tests"}
    found: dict[str, set[str]] = {}
    for path in sorted((REPO / package).rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        names: set[str] = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
        found[str(path.relative_to(REPO))] = names & first_party
    return found


ALLOWED = {
    "kiln": {"kiln"},
    "training": {"kiln", "training"},
    "service": {"kiln", "service"},
}
# The one exception: the public facade loads the training side on first use of
# kiln.save_model (inside the function), so that `import kiln` stays cheap.
FACADE = {"kiln/__init__.py": {"training"}}


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_import_direction(package: str) -> None:
    modules = _first_party_imports(package)
    assert modules, f"no modules found under {package}/"
    wrong = {
        module: sorted(names - ALLOWED[package] - FACADE.get(module, set()))
        for module, names in modules.items()
        if names - ALLOWED[package] - FACADE.get(module, set())
    }
    assert not wrong, f"{package}/ may import only {sorted(ALLOWED[package])}: {wrong}"


def test_the_facade_loads_training_only_when_save_model_is_called() -> None:
    loaded = _loaded_after("import kiln; kiln.save_model")
    assert not {"training", "sklearn", "skl2onnx", "bentoml"} & loaded


def test_the_core_imports_no_side_when_used() -> None:
    """Opening the Predictor's modules loads neither side nor scikit-learn or BentoML."""
    loaded = _loaded_after(
        "import kiln; kiln.Predictor; import kiln.resolve, kiln.runtime, kiln.values, kiln.records"
    )
    assert not {"training", "service", "sklearn", "bentoml", "skl2onnx"} & loaded
