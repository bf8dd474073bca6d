"""What the container tests share: a container engine and a `docker` helper.

`deploy/ci-image.sh engine` uses DOCKER_HOST or the default engine, or starts Debian's dockerd
(installed by .ci/run). Without one the container tests skip, loudly; under CI (CI=true) they
fail instead, since .ci/run guarantees one. One engine serves the whole session: the serving
image (test_container.py) and the training image (test_train_image.py) build on the same
debootstrap base image in it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from typing import NoReturn

import pytest

from tests.conftest import REPO

SCRIPT = REPO / "deploy" / "ci-image.sh"


def docker(*args: str, check: bool = True, timeout: float = 120) -> str:
    """`docker ARGS` on the engine of ``engine``; its stdout, stripped."""
    result = subprocess.run(
        ["docker", *args], capture_output=True, text=True, timeout=timeout, check=False
    )
    if check and result.returncode != 0:
        raise AssertionError(f"docker {' '.join(args)}: {result.stdout}{result.stderr}")
    return result.stdout.strip()


def no_engine(reason: str) -> NoReturn:
    message = f"NO CONTAINER ENGINE: the container tests cannot run: {reason}"
    print(f"\n{'!' * 20} {message}\n", file=sys.stderr)
    if os.environ.get("CI"):
        pytest.fail(f"{message} (CI must have one: .ci/run installs docker.io)")
    pytest.skip(message)


@pytest.fixture(scope="session")
def engine() -> Iterator[None]:
    """A container engine that answers, as DOCKER_HOST in this process's environment."""
    try:
        result = subprocess.run(
            ["bash", str(SCRIPT), "engine"],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        no_engine(str(exc))
    if result.returncode != 0:
        no_engine(result.stderr.strip()[-1000:])
    if shutil.which("docker") is None:
        no_engine("no docker client on PATH")
    found = dict(line.split("=", 1) for line in result.stdout.splitlines() if "=" in line)
    before = os.environ.get("DOCKER_HOST")
    if found.get("DOCKER_HOST"):
        os.environ["DOCKER_HOST"] = found["DOCKER_HOST"]
    try:
        yield
    finally:
        if found.get("STARTED") == "1":  # a daemon this session started: stop it again
            subprocess.run(["bash", str(SCRIPT), "stop-engine"], cwd=REPO, check=False)
        if before is None:
            os.environ.pop("DOCKER_HOST", None)
        else:
            os.environ["DOCKER_HOST"] = before
