"""Import costs and boundaries: nothing heavy or side-effecting happens at import time."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

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


def _imports(package: str) -> dict[str, set[str]]:
    """Module path -> top-level packages it imports (anywhere in the file, inside functions
    too: a lazy import is still a dependency)."""
    import ast

    found: dict[str, set[str]] = {}
    for path in sorted((REPO / package).rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        names: set[str] = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
        found[str(path.relative_to(REPO))] = names
    return found


def _first_party_imports(package: str) -> dict[str, set[str]]:
    first_party = {"kiln", "training", "service", "deploy", "bench", "examples", "tests"}
    return {module: names & first_party for module, names in _imports(package).items()}


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


# --- Ray: an optional extra for batch scoring (training/rayscore.py); the core and the serving
# side never import it, so the serving image (requirements-serve.lock) can leave it out.

# Every module of the core and of the serving side (the BentoML service, service.app, the gRPC
# front and its generated stubs), and each name of the kiln facade.
_IMPORT_ALL = """
import importlib, pkgutil
import kiln, service
for package in (kiln, service):
    for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
        importlib.import_module(info.name)
for name in kiln.__all__:
    getattr(kiln, name)
"""


def test_the_core_and_serving_never_load_ray() -> None:
    loaded = _loaded_after(_IMPORT_ALL)
    assert {"kiln.store", "service.bento", "service.app", "service.grpc.server"} <= loaded
    assert not {name for name in loaded if name.split(".")[0] == "ray"}


@pytest.mark.parametrize("package", ["kiln", "service"])
def test_no_module_of_the_core_or_serving_imports_ray(package: str) -> None:
    """Not even lazily, inside a function: only training/ may use Ray."""
    wrong = sorted(module for module, names in _imports(package).items() if "ray" in names)
    assert not wrong, f"{package}/ must not import ray: {wrong}"


def test_ray_is_in_the_ray_extra_only(tmp_path: Path) -> None:
    """The metadata `pip install kiln[ray]` reads, built from pyproject.toml by its build
    backend: every requirement on ray (or on kiln[ray]) is conditional on the ray extra."""
    import shutil
    from importlib.metadata import PathDistribution

    from packaging.requirements import Requirement

    # A copy of pyproject.toml alone: the backend writes egg-info beside what it builds, and
    # the requirements come from pyproject.toml, not from the packages.
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, tmp_path / name)
    (tmp_path / "out").mkdir()
    built = subprocess.run(
        [
            sys.executable,
            "-c",
            "from setuptools import build_meta; build_meta.prepare_metadata_for_build_wheel('out')",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert built.returncode == 0, built.stdout + built.stderr
    (dist_info,) = (tmp_path / "out").glob("*.dist-info")
    metadata = PathDistribution(dist_info).metadata
    extras = set(metadata.get_all("Provides-Extra") or [])
    assert {"ray", "train"} <= extras
    pulls_in_ray = [
        req
        for req in map(Requirement, metadata.get_all("Requires-Dist") or [])
        if req.name == "ray" or (req.name == "kiln" and "ray" in req.extras)
    ]
    assert [(r.name, r.extras) for r in pulls_in_ray] == [("ray", {"data"})]
    marker = pulls_in_ray[0].marker
    assert marker is not None, "ray is a dependency of every install"
    assert marker.evaluate({"extra": "ray"})
    assert not [e for e in extras - {"ray"} | {""} if marker.evaluate({"extra": e})]


def test_only_the_dev_and_ray_locks_pin_ray() -> None:
    """The serving and training images install their locks: neither may hold Ray."""
    import re

    pinning = {
        lock.name
        for lock in REPO.glob("requirements*.lock")
        if re.search(r"^ray(\[[^\]]*\])?==", lock.read_text(encoding="utf-8"), re.M)
    }
    assert pinning == {"requirements.lock", "requirements-ray.lock"}
