"""The KubeRay scoring run (deploy/k8s/ray), rendered by `kubectl kustomize` as a user would.

No cluster and no operator are involved: these tests read the rendered RayJob, and run
deploy/validate-k8s.sh on it (the vendored CRD schema, strict; its pod templates through
kubernetes-validate and checkov), including on copies broken on purpose to show that it fails.
The helpers (render, validate, the tool skips) are test_k8s.py's.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import REPO
from tests.deploy.test_k8s import KUBECTL, broken_overlay, needs_validators, render, validate

RAY = REPO / "deploy" / "k8s" / "ray"
CRD = REPO / "deploy" / "k8s" / "crds" / "ray.io_rayjobs.yaml"
RAY_LOCK = REPO / "requirements-ray.lock"
TRAIN_DOCKERFILE = REPO / "deploy" / "docker" / "Dockerfile.train"

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        KUBECTL is None, reason="kubectl not found (set KUBECTL): the RayJob cannot be rendered"
    ),
]

Doc = dict[str, Any]


@pytest.fixture(scope="module")
def docs() -> list[Doc]:
    return render(RAY)


def one(docs: list[Doc], kind: str) -> Doc:
    found = [d for d in docs if d["kind"] == kind]
    assert len(found) == 1, f"{len(found)} {kind} in the render"
    return found[0]


def rayjob(docs: list[Doc]) -> Doc:
    return one(docs, "RayJob")


def templates(docs: list[Doc]) -> dict[str, Doc]:
    """The three pod templates of the run: what KubeRay turns into pods."""
    spec = rayjob(docs)["spec"]
    (workers,) = spec["rayClusterSpec"]["workerGroupSpecs"]
    return {
        "head": spec["rayClusterSpec"]["headGroupSpec"]["template"],
        "worker": workers["template"],
        "submitter": spec["submitterPodTemplate"],
    }


def image_env(name: str) -> str:
    """An ENV of the image the RayJob runs (`make containerize-ray` builds Dockerfile.train)."""
    match = re.search(rf"\b{name}=(\S+)", TRAIN_DOCKERFILE.read_text())
    assert match, f"{name} not set in {TRAIN_DOCKERFILE}"
    return match.group(1)


# --- what the render holds ------------------------------------------------------------


def test_renders_one_rayjob_its_settings_and_a_network_policy(docs: list[Doc]) -> None:
    found = sorted(
        (d["kind"], d["metadata"]["name"].rsplit("-", 1)[0])
        if d["kind"] == "ConfigMap"
        else (d["kind"], d["metadata"]["name"])
        for d in docs
    )
    assert found == [
        ("ConfigMap", "kiln-predict"),
        ("NetworkPolicy", "kiln-batch-score"),
        ("RayJob", "kiln-score"),
    ]
    job = rayjob(docs)
    assert job["apiVersion"] == "ray.io/v1"
    for doc in docs:
        assert doc["metadata"]["namespace"] == "kiln", doc["kind"]
        assert doc["metadata"]["labels"]["app.kubernetes.io/component"] == "batch-score"


def test_entrypoint_is_kiln_predict_on_ray_with_the_settings(docs: list[Doc]) -> None:
    data = one(docs, "ConfigMap")["data"]
    assert data.keys() == {"model", "input", "output"}
    assert data["input"].startswith("s3://") and data["output"].startswith("s3://")
    # `python -m training` is the `kiln` command of the image (its entrypoint).
    assert rayjob(docs)["spec"]["entrypoint"].split(" ") == [
        "python", "-m", "training", "predict", data["model"],
        "--input", data["input"], "--output", data["output"], "--engine", "ray",
    ]  # fmt: skip
    # Inside a RayJob the driver joins the cluster through RAY_ADDRESS.
    assert "--address" not in rayjob(docs)["spec"]["entrypoint"]


def test_predict_env_is_the_one_place_to_edit(tmp_path: Path) -> None:
    copy = tmp_path / "ray"
    shutil.copytree(RAY, copy)
    (copy / "predict.env").write_text(
        "model=churn:20261201-1\ninput=s3://b/in/*.parquet\noutput=s3://b/out/\n"
    )
    job = rayjob(render(copy))
    assert job["spec"]["entrypoint"] == (
        "python -m training predict churn:20261201-1 "
        "--input s3://b/in/*.parquet --output s3://b/out/ --engine ray"
    )


def test_run_is_bounded_and_cleans_up(docs: list[Doc]) -> None:
    spec = rayjob(docs)["spec"]
    assert spec["submissionMode"] == "K8sJobMode"
    assert spec["shutdownAfterJobFinishes"] is True
    assert spec["ttlSecondsAfterFinished"] > 0
    assert spec["activeDeadlineSeconds"] > 0
    # A retry on a new cluster would write its parts beside the failed run's.
    assert spec["backoffLimit"] == 0
    cluster = spec["rayClusterSpec"]
    assert cluster["enableInTreeAutoscaling"] is False
    assert cluster["headGroupSpec"]["rayStartParams"]["num-cpus"] == "0"  # no actors on the head
    (workers,) = cluster["workerGroupSpecs"]
    assert workers["replicas"] == workers["minReplicas"] == workers["maxReplicas"] >= 1


def test_ray_version_is_the_locked_ray(docs: list[Doc]) -> None:
    """KubeRay picks its probes and `ray start` flags by rayVersion: it must be the image's."""
    pins = re.findall(r"^ray==(\S+)", RAY_LOCK.read_text(), re.MULTILINE)
    assert len(pins) == 1, f"ray pins in {RAY_LOCK.name}: {pins}"
    assert rayjob(docs)["spec"]["rayClusterSpec"]["rayVersion"] == pins[0]


def test_pods_are_hardened(docs: list[Doc]) -> None:
    policy = one(docs, "NetworkPolicy")["spec"]
    for role, template in templates(docs).items():
        labels = template["metadata"]["labels"]
        assert policy["podSelector"]["matchLabels"].items() <= labels.items(), role
        pod = template["spec"]
        assert pod["serviceAccountName"] == "kiln", role
        assert pod["automountServiceAccountToken"] is False, role
        assert pod["securityContext"]["runAsNonRoot"] is True, role
        assert pod["securityContext"]["runAsUser"] == 1000, role
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}, role
        volumes = {v["name"]: v for v in pod["volumes"]}
        (container,) = pod["containers"]
        assert container["image"] == "kiln-ray:cpu", role
        assert "command" not in container, role  # KubeRay writes `ray start` / `ray job submit`
        context = container["securityContext"]
        assert context["runAsNonRoot"] is True, role
        assert context["readOnlyRootFilesystem"] is True, role
        assert context["allowPrivilegeEscalation"] is False, role
        assert context["privileged"] is False, role
        assert context["capabilities"] == {"drop": ["ALL"]}, role
        assert context["seccompProfile"] == {"type": "RuntimeDefault"}, role
        mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
        assert "emptyDir" in volumes[mounts["/tmp"]["name"]], role  # /tmp/ray, $HOME
        env = {e["name"]: e["value"] for e in container["env"]}
        assert env["HOME"] == "/tmp", role
        resources = container["resources"]
        assert {"cpu", "memory"} <= resources["requests"].keys() & resources["limits"].keys()
    assert templates(docs)["submitter"]["spec"]["restartPolicy"] == "Never"
    worker = templates(docs)["worker"]["spec"]["containers"][0]["resources"]
    assert worker["requests"]["cpu"] == worker["limits"]["cpu"]  # what Ray advertises


def test_ray_pods_read_the_model_store_and_the_credentials_secret(docs: list[Doc]) -> None:
    store = image_env("BENTOML_HOME")  # where `kiln predict` looks for models in the image
    for role in ("head", "worker"):
        pod = templates(docs)[role]["spec"]
        volumes = {v["name"]: v for v in pod["volumes"]}
        (container,) = pod["containers"]
        mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
        if role == "head":  # the driver: the retraining CronJob's store, read-only here
            assert mounts[store]["readOnly"] is True, role
            assert volumes[mounts[store]["name"]]["persistentVolumeClaim"] == {
                "claimName": "kiln-models",
                "readOnly": True,
            }, role
        else:  # the actors get the model's bytes from the driver (training/rayscore.py)
            assert store not in mounts and not any(
                "persistentVolumeClaim" in v for v in volumes.values()
            ), role
        env = {e["name"]: e for e in container["env"]}
        credentials = Path(env["AWS_SHARED_CREDENTIALS_FILE"]["value"])
        secret_mount = mounts[str(credentials.parent)]
        assert secret_mount["readOnly"] is True, role
        assert volumes[secret_mount["name"]]["secret"]["secretName"] == "kiln-s3", role
        # Referenced, never inlined: no credential in the manifest.
        assert not {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"} & env.keys()
    assert not any(d["kind"] == "Secret" for d in docs)


def test_vendored_crd_is_kuberays_rayjob_v1() -> None:
    crd = yaml.safe_load(CRD.read_text())
    assert crd["kind"] == "CustomResourceDefinition"
    assert crd["metadata"]["name"] == "rayjobs.ray.io"
    assert [v["name"] for v in crd["spec"]["versions"]] == ["v1"]
    readme = (CRD.parent / "README.md").read_text()
    assert "ray-project/kuberay" in readme and "ray-operator/config/crd/bases/" in readme
    assert re.search(r"commit `[0-9a-f]{40}`", readme)


# --- deploy/validate-k8s.sh -----------------------------------------------------------


@needs_validators
def test_validate_script_passes_on_the_rayjob() -> None:
    result = validate(RAY)
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "custom resources: 1 checked (RayJob/kiln-score)" in out
    assert "RayJob: CRD schema (deploy/k8s/crds/ray.io_rayjobs.yaml, strict): ok" in out
    assert "kiln-score-head, kiln-score-worker-score, kiln-score-submitter" in out
    assert "kubernetes-validate 1.31 (strict): ok" in out
    assert "kubernetes-validate 1.37 (strict): ok" in out
    assert "checkov: passed" in out and "failed 0" in out
    assert "FAILED" not in out


def broken(tmp_path: Path, patch: str) -> Path:
    """deploy/k8s/ray with a JSON patch on the RayJob."""
    target = "    target: {kind: RayJob, name: kiln-score}\n"
    return broken_overlay(tmp_path, patch, target=target, base=RAY)


@needs_validators
def test_validate_script_rejects_an_unknown_rayjob_field(tmp_path: Path) -> None:
    patch = "- op: add\n  path: /spec/shutdownAfterJobFinish\n  value: true\n"
    result = validate(broken(tmp_path, patch))
    assert result.returncode == 1, result.stdout
    assert (
        "RayJob/kiln-score: CRD schema (deploy/k8s/crds/ray.io_rayjobs.yaml): .spec: "
        "Additional properties are not allowed ('shutdownAfterJobFinish' was unexpected)"
    ) in result.stdout
    assert "validate-k8s: FAILED" in result.stdout


@needs_validators
def test_validate_script_rejects_an_unknown_field_in_a_pod_template(tmp_path: Path) -> None:
    path = "/spec/rayClusterSpec/workerGroupSpecs/0/template/spec/containers/0/securityContext"
    patch = f"- op: add\n  path: {path}/readOnlyRootFilesystm\n  value: true\n"
    result = validate(broken(tmp_path, patch))
    assert result.returncode == 1, result.stdout
    assert (
        ".spec.rayClusterSpec.workerGroupSpecs[0].template.spec.containers[0].securityContext: "
        "Additional properties are not allowed ('readOnlyRootFilesystm' was unexpected)"
    ) in result.stdout


@needs_validators
def test_validate_script_rejects_a_wrong_type(tmp_path: Path) -> None:
    patch = (
        "- op: replace\n  path: /spec/rayClusterSpec/workerGroupSpecs/0/replicas\n  value: two\n"
    )
    result = validate(broken(tmp_path, patch))
    assert result.returncode == 1, result.stdout
    assert (
        ".spec.rayClusterSpec.workerGroupSpecs[0].replicas: 'two' is not of type 'integer'"
    ) in result.stdout


@needs_validators
def test_validate_script_runs_checkov_on_the_pod_templates(tmp_path: Path) -> None:
    """Schema-valid, but a writable root filesystem: only checkov, on the head as a Pod, sees it."""
    path = "/spec/rayClusterSpec/headGroupSpec/template/spec/containers/0/securityContext"
    patch = f"- op: replace\n  path: {path}/readOnlyRootFilesystem\n  value: false\n"
    result = validate(broken(tmp_path, patch))
    assert result.returncode == 1, result.stdout
    assert "RayJob: CRD schema (deploy/k8s/crds/ray.io_rayjobs.yaml, strict): ok" in result.stdout
    assert "FAILED CKV_K8S_22" in result.stdout and "Pod.kiln.kiln-score-head" in result.stdout


def test_validate_script_says_when_the_crd_is_missing(tmp_path: Path) -> None:
    # Stand-ins for the validators: the CRD is looked for before any of them runs.
    tools = {"KUBERNETES_VALIDATE": "/bin/true", "CHECKOV": "/bin/true"}
    result = validate(RAY, RAYJOB_CRD=str(tmp_path / "none.yaml"), **tools)
    assert result.returncode == 2
    assert "none.yaml not found: the vendored RayJob CRD" in result.stderr
