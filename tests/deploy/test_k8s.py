"""The Kubernetes manifests (deploy/k8s), rendered by `kubectl kustomize` as a user would.

No cluster is involved: these tests read the rendered YAML, and run deploy/validate-k8s.sh
(schemas, custom resources, PromQL, checkov), including on overlays broken on purpose to
show that it fails.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import REPO, SPECS

K8S = REPO / "deploy" / "k8s"
OVERLAYS = ("cpu", "gpu")
GRPC_READINESS = K8S / "components" / "grpc-readiness"
SCRIPT = REPO / "deploy" / "validate-k8s.sh"
RULES = REPO / "deploy" / "monitoring" / "rules" / "kiln-rules.yaml"
DRIFT_ALERTS = ("KilnFeatureDrift", "KilnPredictionDrift", "KilnUnseenCategories")
KUBECTL = os.environ.get("KUBECTL") or shutil.which("kubectl")
VENV_BIN = Path(os.environ.get("VENV_BIN", REPO / ".venv" / "bin"))

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        KUBECTL is None, reason="kubectl not found (set KUBECTL): the overlays cannot be rendered"
    ),
]

Doc = dict[str, Any]
Path_ = tuple[str, ...]


def render(overlay: Path) -> list[Doc]:
    assert KUBECTL is not None
    result = subprocess.run(
        [KUBECTL, "kustomize", str(overlay)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


@pytest.fixture(scope="module")
def rendered() -> dict[str, list[Doc]]:
    return {name: render(K8S / "overlays" / name) for name in OVERLAYS}


def one(docs: list[Doc], kind: str, name: str | None = None) -> Doc:
    found = [
        d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)
    ]
    assert len(found) == 1, f"{len(found)} {kind} {name or ''} in the render"
    return found[0]


def configmap(docs: list[Doc], prefix: str) -> Doc:
    """A generated ConfigMap, named PREFIX-<hash of its content>."""
    found = [
        d
        for d in docs
        if d["kind"] == "ConfigMap" and d["metadata"]["name"].rsplit("-", 1)[0] == prefix
    ]
    assert len(found) == 1, f"ConfigMap {prefix}-<hash>: {len(found)} found"
    return found[0]


def pod_specs(docs: list[Doc]) -> dict[str, Doc]:
    return {
        "Deployment": one(docs, "Deployment", "kiln")["spec"]["template"]["spec"],
        "CronJob": one(docs, "CronJob", "kiln-retrain")["spec"]["jobTemplate"]["spec"]["template"][
            "spec"
        ],
    }


def server(docs: list[Doc]) -> Doc:
    (container,) = one(docs, "Deployment", "kiln")["spec"]["template"]["spec"]["containers"]
    return container


def flatten(value: Any, at: Path_ = ()) -> Iterator[tuple[Path_, Any]]:
    """Every leaf as (path, value); list items with a `name` are keyed by it, not by index."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield from flatten(item, (*at, str(key)))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            key = f"[{item['name']}]" if isinstance(item, dict) and "name" in item else f"[{i}]"
            yield from flatten(item, (*at, key))
    else:
        yield at, value


def grpc_port() -> int:
    """The gRPC port as the service defines it: the one constant the manifests must match."""
    from service.settings import ServingSettings

    port = ServingSettings.model_fields["grpc_port"].default
    assert isinstance(port, int) and port > 0
    return port


def leaves(docs: list[Doc]) -> dict[Path_, Any]:
    out: dict[Path_, Any] = {}
    for doc in docs:
        out.update(flatten(doc, (doc["kind"], doc["metadata"]["name"])))
    return out


# --- what the overlays hold -----------------------------------------------------------


def test_both_overlays_hold_the_same_objects(rendered: dict[str, list[Doc]]) -> None:
    expected = {
        ("Namespace", "kiln"),
        ("ServiceAccount", "kiln"),
        ("ConfigMap", "kiln-serve"),
        ("ConfigMap", "kiln-specs"),
        ("Deployment", "kiln"),
        ("Service", "kiln"),
        ("HorizontalPodAutoscaler", "kiln"),
        ("PodDisruptionBudget", "kiln"),
        ("NetworkPolicy", "kiln-server"),
        ("NetworkPolicy", "kiln-retrain"),
        ("ServiceMonitor", "kiln"),
        ("PrometheusRule", "kiln"),
        ("PersistentVolumeClaim", "kiln-models"),
        ("CronJob", "kiln-retrain"),
    }
    for name, docs in rendered.items():
        found = [
            (d["kind"], d["metadata"]["name"].rsplit("-", 1)[0])
            if d["kind"] == "ConfigMap"
            else (d["kind"], d["metadata"]["name"])
            for d in docs
        ]
        assert sorted(found) == sorted(expected), name
        assert {d["metadata"].get("namespace", "kiln") for d in docs} == {"kiln"}, name
        for doc in docs:
            labels = doc["metadata"].get("labels", {})
            assert labels.get("app.kubernetes.io/name") == "kiln", (name, doc["kind"])


def test_gpu_differs_from_cpu_only_where_it_must(rendered: dict[str, list[Doc]]) -> None:
    cpu, gpu = leaves(rendered["cpu"]), leaves(rendered["gpu"])
    differing = {p for p in cpu.keys() | gpu.keys() if cpu.get(p) != gpu.get(p)}
    pod = ("Deployment", "kiln", "spec", "template", "spec")
    container = (*pod, "containers", "[kiln]")
    retrain_pod = ("CronJob", "kiln-retrain", "spec", "jobTemplate", "spec", "template", "spec")
    categories = {
        "serving image": (*container, "image"),
        "training image": (*retrain_pod, "containers", "[retrain]", "image"),
        "resources": (*container, "resources"),
        "providers env": (*container, "env", "[KILN_SERVE_PROVIDERS]"),
        "nodeSelector": (*pod, "nodeSelector"),
        "tolerations": (*pod, "tolerations"),
    }
    seen: dict[str, set[Path_]] = {category: set() for category in categories}
    for path in differing:
        matched = [c for c, prefix in categories.items() if path[: len(prefix)] == prefix]
        assert matched, f"the overlays differ outside the GPU changes: {path}"
        seen[matched[0]].add(path)
    assert all(seen.values()), {c: sorted(p) for c, p in seen.items()}

    assert cpu[categories["serving image"]] == "kiln:cpu"
    assert gpu[categories["serving image"]] == "kiln:gpu"
    assert cpu[categories["training image"]] == "kiln-train:cpu"
    assert gpu[categories["training image"]] == "kiln-train:gpu"
    gpu_limit = (*container, "resources", "limits", "nvidia.com/gpu")
    assert gpu.get(gpu_limit) == 1 and gpu_limit not in cpu
    providers = gpu[(*container, "env", "[KILN_SERVE_PROVIDERS]", "value")]
    assert yaml.safe_load(providers) == ["CUDAExecutionProvider", "CPUExecutionProvider"]
    assert {p for p in seen["nodeSelector"] | seen["tolerations"] if p in cpu} == set()


def test_probes_use_the_service_health_routes_on_port_3000(
    rendered: dict[str, list[Doc]],
) -> None:
    for name, docs in rendered.items():
        container = server(docs)
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        assert ports == {"http": 3000, "grpc": grpc_port()}
        probes = {
            kind: container[kind]["httpGet"]
            for kind in ("startupProbe", "livenessProbe", "readinessProbe")
        }
        paths = {kind: probe["path"] for kind, probe in probes.items()}
        assert paths == {
            "startupProbe": "/livez",
            "livenessProbe": "/livez",
            "readinessProbe": "/readyz",
        }, name
        for probe in probes.values():
            assert ports.get(probe["port"], probe["port"]) == 3000, name
        startup = container["startupProbe"]
        assert startup["periodSeconds"] * startup["failureThreshold"] >= 120  # slow loading


def test_service_pdb_hpa_and_servicemonitor_find_the_serving_pods(
    rendered: dict[str, list[Doc]],
) -> None:
    for docs in rendered.values():
        deployment = one(docs, "Deployment", "kiln")
        pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
        retrain_labels = one(docs, "CronJob")["spec"]["jobTemplate"]["spec"]["template"][
            "metadata"
        ]["labels"]
        service = one(docs, "Service", "kiln")
        assert service["spec"]["type"] == "ClusterIP"
        assert service["spec"]["ports"] == [
            {"name": "http", "port": 3000, "targetPort": "http", "protocol": "TCP"},
            {
                "name": "grpc",
                "port": grpc_port(),
                "targetPort": "grpc",
                "protocol": "TCP",
                "appProtocol": "grpc",
            },
        ]
        selectors = {
            "Service": service["spec"]["selector"],
            "Deployment": deployment["spec"]["selector"]["matchLabels"],
            "PodDisruptionBudget": one(docs, "PodDisruptionBudget")["spec"]["selector"][
                "matchLabels"
            ],
        }
        for kind, selector in selectors.items():
            assert selector.items() <= pod_labels.items(), kind
            assert not selector.items() <= retrain_labels.items(), f"{kind} selects retraining"
        assert deployment["spec"]["replicas"] == 2
        assert one(docs, "PodDisruptionBudget")["spec"]["minAvailable"] == 1

        hpa = one(docs, "HorizontalPodAutoscaler")["spec"]
        assert hpa["scaleTargetRef"] == {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "name": "kiln",
        }
        assert (hpa["minReplicas"], hpa["maxReplicas"]) == (2, 10)
        (metric,) = hpa["metrics"]
        assert metric["resource"]["name"] == "cpu"
        assert metric["resource"]["target"]["type"] == "Utilization"
        assert hpa["behavior"]["scaleDown"]["stabilizationWindowSeconds"] >= 60

        monitor = one(docs, "ServiceMonitor")["spec"]
        assert monitor["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
        assert monitor["endpoints"] == [
            {"port": "http", "path": "/metrics", "interval": "15s", "scrapeTimeout": "10s"}
        ]
        alerts = {
            rule["alert"]
            for group in one(docs, "PrometheusRule")["spec"]["groups"]
            for rule in group["rules"]
        }
        assert alerts == {
            "KilnDown",
            "KilnHighErrorRatio",
            "KilnModelNotReady",
            "KilnP99LatencyHigh",
            *DRIFT_ALERTS,
        }


def test_grpc_port_reaches_the_container_the_service_and_the_network_policy(
    rendered: dict[str, list[Doc]],
) -> None:
    port = grpc_port()
    for name, docs in rendered.items():
        settings = configmap(docs, "kiln-serve")["data"]
        assert int(settings["KILN_SERVE_GRPC_PORT"]) == port, name  # what the pod listens on
        container = server(docs)
        assert {"name": "grpc", "containerPort": port, "protocol": "TCP"} in container["ports"]
        (service_port,) = [
            p for p in one(docs, "Service", "kiln")["spec"]["ports"] if p["name"] == "grpc"
        ]
        assert (service_port["port"], service_port["targetPort"]) == (port, "grpc"), name
        # One ingress rule, no `from`: gRPC is let in from wherever HTTP is.
        (rule,) = one(docs, "NetworkPolicy", "kiln-server")["spec"]["ingress"]
        assert "from" not in rule, name
        assert {(p["port"], p["protocol"]) for p in rule["ports"]} == {
            ("http", "TCP"),
            ("grpc", "TCP"),
        }, name
        # Prometheus scrapes HTTP only: gRPC has no /metrics, its requests are in kiln_*.
        assert [e["port"] for e in one(docs, "ServiceMonitor")["spec"]["endpoints"]] == ["http"]
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"  # the default


def with_grpc_readiness(tmp_path: Path) -> Path:
    """The cpu overlay with the grpc-readiness component, as a user's overlay would add it."""
    overlay = tmp_path / "grpc-readiness"
    overlay.mkdir()
    (overlay / "kustomization.yaml").write_text(
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n"
        f"resources: [{os.path.relpath(K8S / 'overlays' / 'cpu', overlay)}]\n"
        f"components: [{os.path.relpath(GRPC_READINESS, overlay)}]\n"
    )
    return overlay


def test_grpc_readiness_component_swaps_only_the_readiness_probe(
    rendered: dict[str, list[Doc]], tmp_path: Path
) -> None:
    docs = render(with_grpc_readiness(tmp_path))
    probe = server(docs)["readinessProbe"]
    # Exactly one handler: a strategic merge would have left httpGet beside grpc.
    assert probe == {
        "grpc": {"port": grpc_port(), "service": ""},
        "periodSeconds": 5,
        "timeoutSeconds": 3,
        "failureThreshold": 3,
    }
    before, after = leaves(rendered["cpu"]), leaves(docs)
    changed = {p for p in before.keys() | after.keys() if before.get(p) != after.get(p)}
    container = ("Deployment", "kiln", "spec", "template", "spec", "containers", "[kiln]")
    readiness = (*container, "readinessProbe")
    assert changed and all(p[: len(readiness)] == readiness for p in changed), sorted(changed)


def test_cluster_drift_alerts_are_the_tested_ones(rendered: dict[str, list[Doc]]) -> None:
    """The PrometheusRule's drift alerts are kiln-rules.yaml's, which promtool tests."""
    tested = {
        rule["alert"]: rule
        for group in yaml.safe_load(RULES.read_text(encoding="utf-8"))["groups"]
        for rule in group["rules"]
        if "alert" in rule
    }
    for name, docs in rendered.items():
        shipped = {
            rule["alert"]: rule
            for group in one(docs, "PrometheusRule")["spec"]["groups"]
            for rule in group["rules"]
        }
        for alert in DRIFT_ALERTS:
            assert shipped[alert] == tested[alert], f"{name}: {alert}"


def test_pods_are_hardened(rendered: dict[str, list[Doc]]) -> None:
    for name, docs in rendered.items():
        for kind, pod in pod_specs(docs).items():
            where = f"{name} {kind}"
            assert pod["automountServiceAccountToken"] is False, where
            assert pod["serviceAccountName"] == "kiln", where
            assert pod["securityContext"]["runAsNonRoot"] is True, where
            assert pod["securityContext"]["runAsUser"] == 1000, where
            assert pod["securityContext"]["runAsGroup"] == 1000, where
            assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}, where
            volumes = {v["name"]: v for v in pod["volumes"]}
            for container in pod["containers"]:
                context = container["securityContext"]
                assert context["runAsNonRoot"] is True, where
                assert context["readOnlyRootFilesystem"] is True, where
                assert context["allowPrivilegeEscalation"] is False, where
                assert context["capabilities"] == {"drop": ["ALL"]}, where
                assert context["seccompProfile"] == {"type": "RuntimeDefault"}, where
                mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
                assert "emptyDir" in volumes[mounts["/tmp"]], where  # the writable /tmp
                limits = container["resources"]["limits"]
                requests = container["resources"]["requests"]
                assert {"cpu", "memory"} <= limits.keys() & requests.keys(), where
        account = one(docs, "ServiceAccount", "kiln")
        assert account["automountServiceAccountToken"] is False


def test_shutdown_outlasts_the_request_timeout(rendered: dict[str, list[Doc]]) -> None:
    for name, docs in rendered.items():
        settings = configmap(docs, "kiln-serve")["data"]
        timeout = float(settings["KILN_SERVE_TIMEOUT"])
        grpc_grace = float(settings["KILN_SERVE_GRPC_GRACE_SECONDS"])
        pod = one(docs, "Deployment", "kiln")["spec"]["template"]["spec"]
        container = server(docs)
        pre_stop = container["lifecycle"]["preStop"]["sleep"]["seconds"]
        assert pre_stop > 0
        # Drained from the endpoints first, then every HTTP request in flight may take the
        # whole timeout, and only then is the gRPC server stopped (BentoML's shutdown hook
        # runs after uvicorn's drain), its calls given their grace, before SIGKILL.
        assert pod["terminationGracePeriodSeconds"] > pre_stop + timeout + grpc_grace, name
        assert container["envFrom"] == [
            {"configMapRef": {"name": configmap(docs, "kiln-serve")["metadata"]["name"]}}
        ]


def test_settings_configmap_holds_serving_settings_that_parse(
    rendered: dict[str, list[Doc]], monkeypatch: pytest.MonkeyPatch
) -> None:
    from service.settings import ServingSettings, load_settings

    settings = {f"KILN_SERVE_{field.upper()}" for field in ServingSettings.model_fields}
    data = configmap(rendered["cpu"], "kiln-serve")["data"]
    assert data.keys() <= settings | {"BENTOML_DO_NOT_TRACK"}
    assert {"KILN_SERVE_WORKERS", "KILN_SERVE_TIMEOUT"} <= data.keys()
    # The service would start with these values: it reads them as load_settings does.
    for name in os.environ:
        if name.startswith("KILN_SERVE_"):
            monkeypatch.delenv(name)
    for name, value in data.items():
        monkeypatch.setenv(name, value)
    loaded = load_settings()
    assert loaded.workers >= 1 and loaded.timeout > 0


def test_retraining_cronjob(rendered: dict[str, list[Doc]]) -> None:
    for name, docs in rendered.items():
        cron = one(docs, "CronJob", "kiln-retrain")["spec"]
        assert cron["concurrencyPolicy"] == "Forbid"
        job = cron["jobTemplate"]["spec"]
        assert job["backoffLimit"] == 1
        pod = job["template"]["spec"]
        (container,) = pod["containers"]
        assert "command" not in container  # the image's entrypoint is the kiln command
        assert container["args"] == ["retrain", "/specs/breast-cancer.yaml"]
        env = {e["name"]: e.get("value") for e in container["env"]}
        assert env["BENTOML_HOME"] == "/models"
        mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
        volumes = {v["name"]: v for v in pod["volumes"]}
        assert volumes[mounts["/models"]]["persistentVolumeClaim"] == {"claimName": "kiln-models"}
        specs = configmap(docs, "kiln-specs")
        assert volumes[mounts["/specs"]]["configMap"]["name"] == specs["metadata"]["name"], name
        claim = one(docs, "PersistentVolumeClaim", "kiln-models")["spec"]
        assert claim["accessModes"] == ["ReadWriteOnce"]
        assert claim["resources"]["requests"]["storage"] == "5Gi"


def test_spec_configmap_is_the_training_spec(rendered: dict[str, list[Doc]]) -> None:
    """deploy/k8s/base/specs/ is a copy (kustomize reads no file outside its folder)."""
    data = configmap(rendered["cpu"], "kiln-specs")["data"]
    assert "breast-cancer.yaml" in data
    for name, text in data.items():
        assert text == (SPECS / name).read_text(), f"{name} differs from training/specs/{name}"


# --- deploy/validate-k8s.sh -----------------------------------------------------------


def tool(variable: str, name: str) -> str | None:
    if os.environ.get(variable):
        return os.environ[variable]
    local = VENV_BIN / name
    return str(local) if local.exists() else shutil.which(name)


KUBERNETES_VALIDATE = tool("KUBERNETES_VALIDATE", "kubernetes-validate")
CHECKOV = tool("CHECKOV", "checkov")
MISSING = [
    name
    for name, found in (("kubernetes-validate", KUBERNETES_VALIDATE), ("checkov", CHECKOV))
    if found is None
]
needs_validators = pytest.mark.skipif(
    bool(MISSING),
    reason=f"{' and '.join(MISSING)} not found in {VENV_BIN} or on PATH (or set "
    "KUBERNETES_VALIDATE / CHECKOV; checkov needs a virtual environment of its own: "
    "it pins packaging<24)",
)


def validate(*overlays: Path, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {**os.environ, "KUBECTL": str(KUBECTL), **env}
    if KUBERNETES_VALIDATE and "KUBERNETES_VALIDATE" not in env:
        environment["KUBERNETES_VALIDATE"] = KUBERNETES_VALIDATE
    if CHECKOV and "CHECKOV" not in env:
        environment["CHECKOV"] = CHECKOV
    return subprocess.run(
        ["bash", str(SCRIPT), *map(str, overlays)],
        cwd=REPO,
        env=environment,
        capture_output=True,
        text=True,
        timeout=600,
    )


@needs_validators
def test_validate_script_passes_on_both_overlays() -> None:
    result = validate()
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    for overlay in OVERLAYS:
        assert f"== deploy/k8s/overlays/{overlay}" in out
    assert out.count("kubernetes-validate 1.31 (strict): ok") == 2
    assert out.count("custom resources: 2 checked") == 2
    assert "checkov: passed" in out and "failed 0" in out
    assert "FAILED" not in out


@needs_validators
def test_validate_script_passes_with_the_grpc_readiness_probe(tmp_path: Path) -> None:
    result = validate(with_grpc_readiness(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "kubernetes-validate 1.37 (strict): ok" in result.stdout
    assert "FAILED" not in result.stdout


def broken_overlay(
    tmp_path: Path, patch: str, *, target: str = "", base: Path = K8S / "overlays" / "cpu"
) -> Path:
    """``base`` (the cpu overlay) with one patch (kustomize takes only relative paths to a
    base); ``target``: the patch's target lines, if any."""
    overlay = tmp_path / "broken"
    overlay.mkdir()
    (overlay / "patch.yaml").write_text(patch)
    (overlay / "kustomization.yaml").write_text(
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n"
        f"resources: [{os.path.relpath(base, overlay)}]\n"
        f"patches:\n  - path: patch.yaml\n{target}"
    )
    return overlay


DEPLOYMENT_PATCH = """apiVersion: apps/v1
kind: Deployment
metadata: {{name: kiln}}
spec:
  template:
    spec:
      containers:
        - name: kiln
{}
"""


@needs_validators
def test_validate_script_rejects_an_unknown_field(tmp_path: Path) -> None:
    patch = DEPLOYMENT_PATCH.format("          livenessProbe: {httpGet: {pathh: /livez}}")
    result = validate(broken_overlay(tmp_path, patch))
    assert result.returncode == 1, result.stdout
    assert "kubernetes-validate 1.31 (strict): FAILED" in result.stdout
    assert "pathh" in result.stdout


@needs_validators
def test_validate_script_rejects_a_writable_root_filesystem(tmp_path: Path) -> None:
    patch = DEPLOYMENT_PATCH.format("          securityContext: {readOnlyRootFilesystem: false}")
    result = validate(broken_overlay(tmp_path, patch))
    assert result.returncode == 1, result.stdout
    assert "FAILED CKV_K8S_22" in result.stdout


@needs_validators
def test_validate_script_checks_the_servicemonitor(tmp_path: Path) -> None:
    patch = "- op: replace\n  path: /spec/endpoints/0/port\n  value: metrics\n"
    target = "    target: {kind: ServiceMonitor, name: kiln}\n"
    result = validate(broken_overlay(tmp_path, patch, target=target))
    assert result.returncode == 1, result.stdout
    assert "port 'metrics' is not a named port of the Service" in result.stdout


def test_validate_script_says_when_kubectl_is_missing(tmp_path: Path) -> None:
    result = validate(KUBECTL=str(tmp_path / "no-kubectl"))
    assert result.returncode == 2
    assert "kubectl not found" in result.stderr
