"""The serving image, built as CI builds it and run as a hardened container.

`deploy/ci-image.sh image` builds the CPU image from a Bento of the test store's models (the
same versions the in-process predictor compares with) on the Debian base that CI makes with
debootstrap; the container runs with a read-only root file system, uid 1000, no capabilities,
on the host network. JSON, V2 REST and V2 gRPC must answer as `Predictor` does, /metrics must
serve, the HEALTHCHECK and the gRPC health service must report healthy, and SIGTERM must let
a request in flight finish.

Needs a container engine (the `engine` fixture of tests/deploy/conftest.py). Without one these
tests skip, loudly; under CI (CI=true) they fail instead, since .ci/run guarantees one.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from kiln import Predictor
from tests.conftest import CHURN_ROW, REPO
from tests.deploy.conftest import SCRIPT, docker

DOCKERFILE = REPO / "deploy" / "docker" / "Dockerfile"
IMAGE = "kiln-test"
GRACE_SECONDS = 30  # docker stop -t; the Kubernetes pod allows 50 s


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# -- no engine needed -------------------------------------------------------------------


def _hadolint() -> str | None:
    for candidate in (
        os.environ.get("HADOLINT"),
        str(REPO / ".venv-tools" / "bin" / "hadolint"),
        str(Path(sys.executable).parent / "hadolint"),
        shutil.which("hadolint"),
    ):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return None


@pytest.mark.parametrize("dockerfile", [DOCKERFILE, DOCKERFILE.with_name("Dockerfile.train")])
def test_dockerfiles_pass_hadolint(dockerfile: Path) -> None:
    hadolint = _hadolint()
    if hadolint is None:
        pytest.skip("hadolint is not installed (make install puts it in .venv-tools)")
    result = subprocess.run(
        [hadolint, "--no-color", str(dockerfile)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    # Every ignored rule says why, in the comment right above it.
    lines = dockerfile.read_text().splitlines()
    for number, line in enumerate(lines):
        if "hadolint ignore=" in line:
            rules = line.split("ignore=", 1)[1].split(",")
            above = "\n".join(lines[max(0, number - 6) : number])
            for rule in rules:
                assert f"{rule.strip()}:" in above, f"line {number + 1}: {rule} ignored without why"


# Variables a developer's environment may set: the test checks the Makefile's defaults.
MAKE_VARIABLES = {"IMAGE", "BASE_IMAGE", "GPU_BASE_IMAGE", "ORT_GPU_PACKAGE", "CONTEXT", "WHEELS"}


def _rendered(target: str) -> str:
    env = {k: v for k, v in os.environ.items() if k not in MAKE_VARIABLES | {"DOCKER_BUILD_ARGS"}}
    result = subprocess.run(
        ["make", "--no-print-directory", "-n", target],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return result.stdout


def test_one_dockerfile_renders_the_cpu_and_the_gpu_builds() -> None:
    cpu, gpu = _rendered("containerize"), _rendered("containerize-gpu")
    for command in (cpu, gpu):
        assert "-m deploy.bento" in command  # the Bento first, from the same source
        assert "--file deploy/docker/Dockerfile" in command
    assert "BASE_IMAGE=python:3.11-slim-bookworm" in cpu
    assert "--build-arg ORT_PACKAGE= " in cpu  # onnxruntime as locked
    assert "--tag kiln:cpu" in cpu
    assert "BASE_IMAGE=nvidia/cuda:" in gpu and "cudnn-runtime" in gpu
    assert "ORT_PACKAGE=onnxruntime-gpu==" in gpu
    assert "--tag kiln:gpu" in gpu


# -- the image, built and run -----------------------------------------------------------


@pytest.fixture(scope="module")
def image(
    engine: None, served_models: dict[str, Any], tmp_path_factory: pytest.TempPathFactory
) -> str:
    """kiln-test:cpu, holding exactly the test store's served models."""
    work = tmp_path_factory.mktemp("image")
    log = work / "build.log"
    env = {
        **os.environ,
        "KILN_SERVE_MODELS": json.dumps([m.tag for m in served_models.values()]),
        "IMAGE": IMAGE,
        "CONTEXT": str(work / "container"),
    }
    start = time.monotonic()
    with log.open("w") as out:
        result = subprocess.run(
            ["bash", str(SCRIPT), "image"],
            cwd=REPO,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            timeout=1200,
            check=False,
        )
    assert result.returncode == 0, f"image build failed:\n{log.read_text()[-4000:]}"
    print(f"\nimage {IMAGE}:cpu built in {time.monotonic() - start:.1f} s", file=sys.stderr)
    return f"{IMAGE}:cpu"


def grpc_default_port() -> int:
    """KILN_SERVE_GRPC_PORT's default: what the image must expose and set."""
    from service.settings import ServingSettings

    port = ServingSettings.model_fields["grpc_port"].default
    assert isinstance(port, int) and port > 0
    return port


@dataclass
class Container:
    name: str
    url: str
    grpc_target: str  # host:port of its gRPC server
    started: float  # time.monotonic() of `docker run`
    ready_after: float


@pytest.fixture(scope="module")
def run_container(image: str) -> Iterator[Callable[..., Container]]:
    """Start the image hardened as in production; every container is removed afterwards."""
    names: list[str] = []

    def start(**env: str) -> Container:
        port, grpc_port = free_port(), free_port()
        name = f"kiln-test-{uuid.uuid4().hex[:8]}"
        names.append(name)
        # On the host network every container needs ports of its own: with the image's 8001
        # a second container (uid 1000 too) would share the first's through SO_REUSEPORT.
        settings = {
            "BENTOML_HOST": "127.0.0.1",
            "BENTOML_PORT": str(port),
            "KILN_SERVE_GRPC_PORT": str(grpc_port),
            **env,
        }
        started = time.monotonic()
        docker(
            "run", "--detach", "--name", name,
            "--read-only", "--tmpfs", "/tmp",
            "--user", "1000:1000", "--cap-drop", "ALL",
            "--security-opt", "no-new-privileges",
            "--network", "host",
            # The image's HEALTHCHECK command, checked more often than its 10 s.
            "--health-interval", "2s",
            *(arg for key, value in settings.items() for arg in ("--env", f"{key}={value}")),
            image,
        )  # fmt: skip
        url = f"http://127.0.0.1:{port}"
        deadline = started + 120
        while True:
            state = docker("inspect", "--format", "{{.State.Status}}", name)
            if state not in ("created", "running"):
                logs = docker("logs", name, check=False)
                pytest.fail(f"container {state}:\n{logs[-3000:]}")
            try:
                if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"not ready in 120 s:\n{docker('logs', name, check=False)[-3000:]}")
            time.sleep(0.2)
        ready_after = time.monotonic() - started
        print(f"\n{name}: /readyz 200 {ready_after:.2f} s after docker run", file=sys.stderr)
        return Container(name, url, f"127.0.0.1:{grpc_port}", started, ready_after)

    yield start
    for name in names:
        docker("rm", "--force", "--volumes", name, check=False)


@pytest.fixture(scope="module")
def server(run_container: Callable[..., Container]) -> Container:
    return run_container()


TWO_ROWS = [
    {**CHURN_ROW, "data_gb": 2.5},
    {**CHURN_ROW, "tenure_months": 50, "contract": "two-year", "data_gb": 0.0, "plan": "basic"},
]


@pytest.mark.e2e
@pytest.mark.slow
def test_image_config_non_root_tini_port_healthcheck(image: str) -> None:
    config = json.loads(docker("image", "inspect", "--format", "{{json .Config}}", image))
    assert config["User"] == "1000:1000"
    assert config["Entrypoint"] == ["tini", "--"]
    grpc_port = grpc_default_port()
    assert set(config["ExposedPorts"]) == {"3000/tcp", f"{grpc_port}/tcp"}
    assert "/readyz" in " ".join(config["Healthcheck"]["Test"])
    env = dict(item.split("=", 1) for item in config["Env"])
    assert env["BENTOML_HOME"].startswith("/tmp/") and env["BENTOML_PORT"] == "3000"
    # gRPC listens on the HTTP server's host: every address in the container, as HTTP does.
    assert env["BENTOML_HOST"] == "0.0.0.0" and env["KILN_SERVE_GRPC_PORT"] == str(grpc_port)


@pytest.mark.e2e
@pytest.mark.slow
def test_json_and_v2_answers_match_the_in_process_predictor(
    server: Container, served_models: dict[str, Any]
) -> None:
    url = server.url
    listed = httpx.get(f"{url}/v1/models").json()["models"]
    assert {m["name"]: m["version"] for m in listed} == {
        name: stored.metadata.version for name, stored in served_models.items()
    }
    expected = Predictor.from_store(served_models["churn"].tag).predict(TWO_ROWS)

    records = httpx.post(f"{url}/v1/models/churn/predict", json={"instances": TWO_ROWS})
    assert records.status_code == 200, records.text
    assert records.json() == expected

    meta = httpx.get(f"{url}/v2/models/churn").json()
    inputs = [
        {
            "name": spec["name"],
            "datatype": spec["datatype"],
            "shape": [len(TWO_ROWS), 1],
            "data": [row[spec["name"]] for row in TWO_ROWS],
        }
        for spec in meta["inputs"]  # built from the metadata alone
    ]
    v2 = httpx.post(f"{url}/v2/models/churn/infer", json={"id": "c1", "inputs": inputs})
    assert v2.status_code == 200, v2.text
    body = v2.json()
    assert body["id"] == "c1" and body["model_name"] == "churn"
    outputs = {o["name"]: o for o in body["outputs"]}
    assert outputs["label"]["data"] == expected["predictions"]
    classes = list(expected["probabilities"][0])
    np.testing.assert_allclose(
        np.reshape(outputs["probabilities"]["data"], outputs["probabilities"]["shape"]),
        [[p[c] for c in classes] for p in expected["probabilities"]],
        rtol=1e-6,
    )


@pytest.mark.e2e
@pytest.mark.slow
def test_grpc_health_and_infer_match_the_in_process_predictor(
    server: Container, served_models: dict[str, Any]
) -> None:
    """The image carries the gRPC front (grpcio, the generated stubs) and serves it."""
    import grpc
    import tritonclient.grpc as triton
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    with grpc.insecure_channel(server.grpc_target) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for service in ("", "churn"):  # the whole server, one model
            answer = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=10)
            assert answer.status == health_pb2.HealthCheckResponse.SERVING, service

    expected = Predictor.from_store(served_models["churn"].tag).predict(TWO_ROWS)
    client = triton.InferenceServerClient(server.grpc_target)
    try:
        assert client.is_server_ready()
        meta = client.get_model_metadata("churn", as_json=True)
        inputs = []
        for spec in meta["inputs"]:  # built from the metadata alone
            column = [row[spec["name"]] for row in TWO_ROWS]
            dtype = object if spec["datatype"] == "BYTES" else np.float32
            tensor = triton.InferInput(spec["name"], [len(TWO_ROWS), 1], spec["datatype"])
            tensor.set_data_from_numpy(np.array(column, dtype=dtype).reshape(-1, 1))
            inputs.append(tensor)
        result = client.infer("churn", inputs, request_id="g1")
    finally:
        client.close()
    assert result.get_response().id == "g1"
    labels = [v.decode() if isinstance(v, bytes) else v for v in result.as_numpy("label").ravel()]
    assert labels == expected["predictions"]
    classes = list(expected["probabilities"][0])
    np.testing.assert_allclose(
        result.as_numpy("probabilities"),
        [[p[c] for c in classes] for p in expected["probabilities"]],
        rtol=1e-6,
    )


@pytest.mark.e2e
@pytest.mark.slow
def test_metrics_health_and_read_only_root(server: Container) -> None:
    url = server.url
    assert httpx.get(f"{url}/livez").status_code == 200
    httpx.post(f"{url}/v1/models/churn/predict", json={"instances": TWO_ROWS})
    metrics = httpx.get(f"{url}/metrics")
    assert metrics.status_code == 200
    for family in ("kiln_model_info", "kiln_model_ready", "kiln_inference_duration_seconds"):
        assert family in metrics.text, family
    assert 'kiln_rows_received_total{model="churn"' in metrics.text
    assert "bentoml_" in metrics.text

    deadline = time.monotonic() + 60
    while (status := docker("inspect", "--format", "{{.State.Health.Status}}", server.name)) != (
        "healthy"
    ):
        assert status in ("starting", "healthy"), status
        assert time.monotonic() < deadline, "HEALTHCHECK not healthy in 60 s"
        time.sleep(1)

    probe = "import os; print(os.getuid()); open('/opt/kiln/bento/x', 'w')"
    result = subprocess.run(
        ["docker", "exec", server.name, "python3", "-c", probe],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.stdout.strip() == "1000"
    assert "Read-only file system" in result.stderr


@pytest.mark.e2e
@pytest.mark.slow
def test_sigterm_lets_the_request_in_flight_finish_then_exits_cleanly(
    run_container: Callable[..., Container],
) -> None:
    # The body arrives in two parts a second apart: a request that is surely still in flight
    # when SIGTERM comes.
    container = run_container()
    answer: dict[str, Any] = {}
    body = json.dumps({"instances": TWO_ROWS[:1]}).encode()

    def slow_body() -> Iterator[bytes]:
        yield body[:10]
        time.sleep(1.0)
        yield body[10:]

    def request() -> None:
        response = httpx.post(
            f"{container.url}/v1/models/churn/predict",
            content=slow_body(),
            headers={"Content-Type": "application/json", "Content-Length": str(len(body))},
            timeout=GRACE_SECONDS,
        )
        answer.update(status=response.status_code, done=time.monotonic())

    client = threading.Thread(target=request)
    client.start()
    time.sleep(0.3)
    stop_start = time.monotonic()
    docker("stop", "--time", str(GRACE_SECONDS), container.name, timeout=GRACE_SECONDS + 30)
    stopped_after = time.monotonic() - stop_start
    client.join(GRACE_SECONDS)
    print(f"\n{container.name}: stopped {stopped_after:.2f} s after SIGTERM", file=sys.stderr)

    assert answer.get("status") == 200, answer
    assert answer["done"] > stop_start  # it was in flight when the stop began
    assert stopped_after < GRACE_SECONDS  # by itself, not by SIGKILL at the deadline
    state = json.loads(docker("inspect", "--format", "{{json .State}}", container.name))
    # tini passes on the exit status of `bentoml serve`, which exits 0 after a SIGTERM it
    # handled (143 would mean it died of the signal; 137 that SIGKILL came).
    assert state["ExitCode"] == 0, state
    assert state["OOMKilled"] is False
