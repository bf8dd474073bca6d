"""The training image (deploy/docker/Dockerfile.train): it holds what training/ needs, and
`kiln` runs in it as it runs on the host.

Read from the source, no engine needed: every first-party package that training/ imports, and
those that they import in turn, is copied by Dockerfile.train and let through by .dockerignore;
among first-party packages training/ imports only kiln/ and itself; every third-party
distribution that this code imports is pinned in requirements-train.lock.

Built and run (the `engine` fixture of tests/deploy/conftest.py): `deploy/ci-image.sh
train-image` builds kiln-test-train:cpu as CI does, on the debootstrap base image with wheels
downloaded on the host. The container runs as the retraining CronJob runs it (uid 1000,
read-only root, /tmp a tmpfs, no capabilities) and without a network; a copy of the test store
is its /models. `kiln predict` there writes what the same command writes on the host, and
`kiln retrain --help` exits 0.
"""

from __future__ import annotations

import ast
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Iterable
from importlib import metadata
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from tests.conftest import REPO
from tests.deploy.conftest import SCRIPT, docker

DOCKERFILE = REPO / "deploy" / "docker" / "Dockerfile.train"
DOCKERIGNORE = REPO / ".dockerignore"
RAY_LOCK = REPO / "requirements-ray.lock"
RAY_ENGINE = "training/rayscore.py"
LOCK = REPO / "requirements-train.lock"
# The one-way rule (STYLE.md 13): training may use the core, never the serving side.
TRAINING_MAY_IMPORT = {"kiln", "training"}
IMAGE = "kiln-test"  # the build tags $IMAGE-train:cpu
UID = 1000  # the image's user, and the CronJob's


# -- reading the source ---------------------------------------------------------------------


def first_party(root: Path) -> dict[str, list[Path]]:
    """This repository's top-level packages and modules, each with its Python files."""
    found: dict[str, list[Path]] = {}
    for path in sorted(root.iterdir()):
        if path.name.startswith(".") or path.name == "build" or not path.stem.isidentifier():
            continue
        if path.is_dir() and ((path / "__init__.py").exists() or any(path.glob("*.py"))):
            found[path.name] = sorted(path.rglob("*.py"))
        elif path.suffix == ".py":
            found[path.stem] = [path]
    return found


def imports_of(root: Path, files: Iterable[Path]) -> dict[str, set[str]]:
    """Top-level module name -> the files (relative to ``root``) that import it: absolute
    imports, and importlib.import_module with a literal name. Relative imports stay inside
    their package."""
    found: dict[str, set[str]] = defaultdict(set)
    for file in files:
        for node in ast.walk(ast.parse(file.read_text(), filename=str(file))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            elif (
                isinstance(node, ast.Call)
                and getattr(node.func, "attr", getattr(node.func, "id", None)) == "import_module"
                and node.args
                and isinstance(node.args[0], ast.Constant)
                and isinstance(node.args[0].value, str)
            ):
                names = [node.args[0].value]
            else:
                continue
            for name in names:
                found[name.split(".")[0]].add(file.relative_to(root).as_posix())
    return found


def needed_by(package: str, root: Path) -> tuple[set[str], dict[str, set[str]]]:
    """The first-party packages ``package`` needs (itself, what it imports, and so on), and
    every import in their files: name -> the files that import it."""
    packages = first_party(root)
    needed, todo = {package}, [package]
    imports: dict[str, set[str]] = defaultdict(set)
    while todo:
        for name, importers in imports_of(root, packages[todo.pop()]).items():
            imports[name] |= importers
            if name in packages and name not in needed:
                needed.add(name)
                todo.append(name)
    return needed, imports


def copied_from_context(dockerfile: Path) -> set[str]:
    """The top-level paths of the build context that the Dockerfile's COPY lines copy."""
    instructions = re.sub(r"\\\n", " ", dockerfile.read_text())
    copied = set()
    for line in instructions.splitlines():
        words = line.split(None, 1)
        if len(words) < 2 or words[0].upper() != "COPY":
            continue
        args = json.loads(words[1]) if words[1].lstrip().startswith("[") else shlex.split(words[1])
        flags = [a for a in args if a.startswith("--")]
        if any(flag.startswith("--from") for flag in flags):
            continue  # from another stage, not from the context
        sources = [a for a in args if not a.startswith("--")][:-1]
        copied |= {Path(source).parts[0] for source in sources}
    return copied


def let_through(dockerignore: Path) -> set[str]:
    """The top-level paths that .dockerignore re-includes (`!name` after its `*`)."""
    return {
        Path(line[1:].strip()).parts[0]
        for line in dockerignore.read_text().splitlines()
        if line.startswith("!")
    }


def locked(lock: Path) -> set[str]:
    return {
        normalise(m.group(1))
        for m in re.finditer(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==", lock.read_text(), re.M)
    }


def normalise(distribution: str) -> str:
    return re.sub(r"[-_.]+", "-", distribution).lower()


# -- no engine needed -------------------------------------------------------------------


def test_training_imports_only_kiln_and_itself() -> None:
    needed, imports = needed_by("training", REPO)
    wrong = {
        name: sorted(f for f in imports[name] if not f.startswith(f"{name}/"))
        for name in needed - TRAINING_MAY_IMPORT
    }
    assert not wrong, f"training/ needs first-party packages beside kiln/, imported by {wrong}"
    assert needed == TRAINING_MAY_IMPORT


def test_dockerfile_train_copies_exactly_the_packages_training_needs() -> None:
    needed, _ = needed_by("training", REPO)
    copied = copied_from_context(DOCKERFILE) & set(first_party(REPO))
    assert needed <= copied, f"Dockerfile.train does not copy {sorted(needed - copied)}"
    assert copied <= needed, f"Dockerfile.train copies what training/ never imports: {copied}"
    ignored = needed - let_through(DOCKERIGNORE)
    assert not ignored, f".dockerignore keeps {sorted(ignored)} out of the build context"


def test_every_distribution_training_imports_is_in_requirements_train_lock() -> None:
    from training.estimators import ESTIMATORS  # the estimators' modules, imported by name

    _, imports = needed_by("training", REPO)
    for info in ESTIMATORS.values():
        imports[re.split(r"[.:]", info.import_path)[0]].add("training/estimators.py (ESTIMATORS)")
    third_party = {
        name: files
        for name, files in imports.items()
        if name not in first_party(REPO)
        and name not in sys.stdlib_module_names
        and name != "__future__"
    }
    assert {"bentoml", "onnxruntime", "sklearn", "skl2onnx"} <= set(third_party)  # it reads

    # Ray is the ray extra's (requirements-ray.lock, the kiln-ray image), never the training
    # image's: only the Ray engine imports it, inside its functions
    assert third_party.pop("ray", {RAY_ENGINE}) == {RAY_ENGINE}
    assert "ray" in locked(RAY_LOCK) and "ray" not in locked(LOCK)
    distributions = metadata.packages_distributions()
    pins = locked(LOCK)
    missing = {}
    for name, files in sorted(third_party.items()):
        provided_by = {normalise(d) for d in distributions.get(name, [])}
        if not provided_by & pins:
            missing[name] = (sorted(provided_by) or "not installed here", sorted(files))
    assert not missing, f"imported but not pinned in requirements-train.lock: {missing}"


def test_the_checks_catch_a_training_module_that_imports_service(tmp_path: Path) -> None:
    for package in ("kiln", "training", "service"):
        (tmp_path / package).mkdir()
        (tmp_path / package / "__init__.py").write_text("")
    (tmp_path / "training" / "batch.py").write_text(
        "from kiln import errors\n\ndef score():\n    import service.dataplane\n"
    )
    needed, imports = needed_by("training", tmp_path)
    assert needed == {"kiln", "training", "service"}
    assert imports["service"] == {"training/batch.py"}
    assert "service" not in copied_from_context(DOCKERFILE)


# -- the image, built and run -----------------------------------------------------------


@pytest.fixture(scope="module")
def train_image(engine: None, tmp_path_factory: pytest.TempPathFactory) -> str:
    """kiln-test-train:cpu, built by `deploy/ci-image.sh train-image` as CI builds it."""
    log = tmp_path_factory.mktemp("train-image") / "build.log"
    start = time.monotonic()
    with log.open("w") as out:
        result = subprocess.run(
            ["bash", str(SCRIPT), "train-image"],
            cwd=REPO,
            env={**os.environ, "IMAGE": IMAGE},
            stdout=out,
            stderr=subprocess.STDOUT,
            timeout=1800,
            check=False,
        )
    assert result.returncode == 0, f"image build failed:\n{log.read_text()[-4000:]}"
    image = f"{IMAGE}-train:cpu"
    size = int(docker("image", "inspect", "--format", "{{.Size}}", image)) / 1e6
    took = time.monotonic() - start
    print(f"\nimage {image} built in {took:.1f} s, {size:.0f} MB", file=sys.stderr)
    return image


def _hand_to_uid_1000(directory: Path) -> None:
    for path in [directory, *directory.rglob("*")]:
        if os.geteuid() == 0:
            os.chown(path, UID, UID, follow_symlinks=False)
        elif not path.is_symlink():  # a rootless engine: open it to everyone instead
            path.chmod(path.stat().st_mode | (0o777 if path.is_dir() else 0o666))


@pytest.fixture(scope="module")
def store(
    served_models: dict[str, Any], bentoml_home: Path, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """A copy of the test store (the demo models), which uid 1000 may read and write."""
    copy = tmp_path_factory.mktemp("train-store") / "models"
    shutil.copytree(bentoml_home, copy, symlinks=True)
    _hand_to_uid_1000(copy)
    return copy


def kiln_in_container(
    image: str, store: Path, work: Path, *args: str
) -> subprocess.CompletedProcess[str]:
    """`kiln ARGS` in the image, run as the CronJob runs it, in ``work`` (mounted on /work)."""
    command = [
        "docker", "run", "--rm",
        "--network", "none",
        "--read-only", "--tmpfs", "/tmp",
        "--user", f"{UID}:{UID}", "--cap-drop", "ALL",
        "--security-opt", "no-new-privileges",
        "--env", "HOME=/tmp", "--env", "KILN_TRAIN_PROGRESS=false",
        "--volume", f"{store}:/models",
        "--volume", f"{work}:/work", "--workdir", "/work",
        image, *args,
    ]  # fmt: skip
    return subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)


def kiln_on_host(work: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`kiln ARGS` here, on the test store (BENTOML_HOME), in ``work``."""
    env = {**os.environ, "KILN_TRAIN_PROGRESS": "false"}
    return subprocess.run(
        [sys.executable, "-m", "training", *args],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


@pytest.mark.e2e
@pytest.mark.slow
def test_image_runs_kiln_as_uid_1000_with_the_store_on_models(train_image: str) -> None:
    config = json.loads(docker("image", "inspect", "--format", "{{json .Config}}", train_image))
    assert config["User"] == f"{UID}:{UID}"
    assert config["Entrypoint"] == ["tini", "--", "python", "-m", "training"]
    env = dict(item.split("=", 1) for item in config["Env"])
    assert env["BENTOML_HOME"] == "/models"


@pytest.mark.e2e
@pytest.mark.slow
def test_every_module_imports_in_the_image_and_service_is_absent(train_image: str) -> None:
    probe = (
        "import importlib, importlib.util, pkgutil, kiln, training\n"
        "names = [m.name for p in (kiln, training)"
        " for m in pkgutil.walk_packages(p.__path__, p.__name__ + '.')]\n"
        "for name in names:\n"
        "    if not name.endswith('__main__'):\n"
        "        importlib.import_module(name)\n"
        "print(len(names), importlib.util.find_spec('service'))\n"
    )
    result = subprocess.run(
        ["docker", "run", "--rm", "--network", "none", "--read-only", "--tmpfs", "/tmp",
         "--entrypoint", "python", train_image, "-c", probe],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    count, service = result.stdout.split()
    assert int(count) > 10 and service == "None", result.stdout


@pytest.mark.e2e
@pytest.mark.slow
def test_kiln_predict_in_the_image_writes_what_it_writes_on_the_host(
    train_image: str, store: Path, tmp_path: Path
) -> None:
    rows = pd.read_csv(REPO / "training" / "data" / "churn.csv", nrows=60)
    rows = rows.drop(columns="churned")  # what a client scores: ids and features
    host, container = tmp_path / "host", tmp_path / "container"
    for work in (host, container):
        work.mkdir()
        rows.to_csv(work / "input.csv", index=False)
    _hand_to_uid_1000(container)
    args = ("predict", "churn", "--input", "input.csv", "--output", "scores.csv")

    start = time.monotonic()
    inside = kiln_in_container(train_image, store, container, *args)
    took = time.monotonic() - start
    outside = kiln_on_host(host, *args)
    print(f"\nkiln predict in the container: {took:.1f} s (docker run included)", file=sys.stderr)

    assert outside.returncode == 0, outside.stdout + outside.stderr
    assert inside.returncode == outside.returncode, inside.stdout + inside.stderr
    written = sorted(p.name for p in host.iterdir())
    assert "scores.csv" in written
    assert sorted(p.name for p in container.iterdir()) == written
    for name in written:
        if name.endswith(".csv"):
            pd.testing.assert_frame_equal(
                pd.read_csv(container / name), pd.read_csv(host / name), rtol=1e-6
            )
        else:
            assert (container / name).read_bytes() == (host / name).read_bytes(), name
    scores = pd.read_csv(host / "scores.csv")
    assert len(scores) == len(rows)
    assert scores["customer_id"].tolist() == rows["customer_id"].tolist()


@pytest.mark.e2e
@pytest.mark.slow
def test_kiln_retrain_help_exits_0_in_the_image(
    train_image: str, store: Path, tmp_path: Path
) -> None:
    _hand_to_uid_1000(tmp_path)
    result = kiln_in_container(train_image, store, tmp_path, "retrain", "--help")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "retrain" in result.stdout and "--data" in result.stdout
