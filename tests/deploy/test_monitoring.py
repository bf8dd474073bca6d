"""deploy/monitoring: promtool checks and unit tests of the rules, the dashboard, compose.

check.sh (promtool check config / check rules / test rules, and every Grafana panel query
parsed and evaluated by promtool) needs promtool and skips without it; the structural
checks of the files need nothing but PyYAML and run everywhere.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import REPO

pytestmark = pytest.mark.integration

MONITORING = REPO / "deploy" / "monitoring"
RULES = MONITORING / "rules" / "kiln-rules.yaml"
RULE_TESTS = MONITORING / "tests" / "kiln-rules.test.yaml"
DASHBOARD = MONITORING / "grafana" / "kiln-dashboard.json"
COMPOSE = MONITORING / "compose.yaml"
PROVISIONING = MONITORING / "grafana" / "provisioning"

ALERTS = {
    "KilnDown",
    "KilnHighErrorRatio",
    "KilnP99LatencyOverBudget",
    "KilnModelNotReady",
    "KilnBatchesQueuingPastWaitLimit",
    "KilnFeatureDrift",
    "KilnPredictionDrift",
    "KilnUnseenCategories",
}
PANEL_TITLES = {
    "Throughput per model",
    "Latency quantiles (p50/p99)",
    "Errors by reason",
    "Mean rows per batch",
    "Batch size distribution",
    "Predictions by class",
    "gRPC calls by method and code",
    "Model versions",
    "Ready state",
    "Top drifting features",
    "Prediction drift",
    "Input-check findings by reason and feature",
    "Drift window",
}
KILN_IMAGE = "${KILN_IMAGE:?set KILN_IMAGE, e.g. kiln:cpu}"

needs_promtool = pytest.mark.skipif(
    shutil.which("promtool") is None,
    reason="promtool is not installed (apt-get install prometheus)",
)


def _yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def _rules() -> list[dict[str, Any]]:
    return [rule for group in _yaml(RULES)["groups"] for rule in group["rules"]]


def _panels() -> list[dict[str, Any]]:
    def walk(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        found = []
        for panel in items:
            if panel.get("type") != "row":
                found.append(panel)
            found += walk(panel.get("panels", []))
        return found

    return walk(json.loads(DASHBOARD.read_text())["panels"])


@needs_promtool
def test_check_sh_passes() -> None:
    done = subprocess.run(
        ["bash", str(MONITORING / "check.sh")],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    assert "all monitoring checks passed" in output
    assert "Unit Testing:  tests/kiln-rules.test.yaml\n  SUCCESS" in output
    # every panel target went through the parser and the evaluator
    targets = sum(len(panel["targets"]) for panel in _panels())
    assert f"SUCCESS: {targets} rules found" in output


def test_every_alert_is_tested_firing_and_not_firing() -> None:
    alerts = {rule["alert"]: rule for rule in _rules() if "alert" in rule}
    assert set(alerts) == ALERTS
    for name, rule in alerts.items():
        assert rule["labels"]["severity"] in {"critical", "warning"}, name
        assert rule["annotations"]["summary"] and rule["annotations"]["description"], name
        assert rule.get("for"), name
    spec = _yaml(RULE_TESTS)
    assert [(RULE_TESTS.parent / f).resolve() for f in spec["rule_files"]] == [RULES.resolve()]
    cases = [case for test in spec["tests"] for case in test.get("alert_rule_test", [])]
    for name in ALERTS:
        mine = [case for case in cases if case["alertname"] == name]
        assert any(case.get("exp_alerts") for case in mine), f"{name}: no firing case"
        assert any(not case.get("exp_alerts") for case in mine), f"{name}: no silent case"


def test_recording_rules_have_value_tests() -> None:
    recorded = {rule["record"] for rule in _rules() if "record" in rule}
    spec = _yaml(RULE_TESTS)
    tested = {
        name
        for test in spec["tests"]
        for case in test.get("promql_expr_test", [])
        for name in recorded
        if name in case["expr"] and case["exp_samples"]
    }
    assert len(tested) >= 2, tested
    for name in recorded:
        assert re.fullmatch(r"model:[a-z_]+:[a-z0-9_]+", name), name


def test_dashboard_panels_targets_and_datasource() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert 36 <= dashboard["schemaVersion"] <= 41
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["DS_PROMETHEUS"]["type"] == "datasource"
    assert variables["DS_PROMETHEUS"]["query"] == "prometheus"
    panels = _panels()
    assert {panel["title"] for panel in panels} >= PANEL_TITLES
    assert len({panel["id"] for panel in panels}) == len(panels)
    recorded = {rule["record"] for rule in _rules() if "record" in rule}
    for panel in panels:
        assert panel["datasource"]["uid"] == "${DS_PROMETHEUS}", panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target.get("expr", "").strip(), (panel["title"], target.get("refId"))
            assert target["datasource"]["uid"] == "${DS_PROMETHEUS}", panel["title"]
            # a recording rule the dashboard reads must exist in the rules
            for name in re.findall(r"model:[a-z_]+:[a-z0-9_]+", target["expr"]):
                assert name in recorded, (panel["title"], name)
    versions = next(p for p in panels if p["title"] == "Model versions")
    assert versions["type"] == "table" and "kiln_model_info" in versions["targets"][0]["expr"]


def test_drift_alerts_use_the_shift_threshold_and_the_drift_panels_repeat_per_model() -> None:
    from kiln.drift import SHIFTED

    alerts = {rule["alert"]: rule for rule in _rules() if "alert" in rule}
    for name in ("KilnFeatureDrift", "KilnPredictionDrift"):
        assert alerts[name]["expr"].strip().endswith(f"> {SHIFTED}"), name
        assert alerts[name]["for"] == "30m", name
    assert alerts["KilnUnseenCategories"]["expr"].strip().endswith("> 0.01")
    dashboard = json.loads(DASHBOARD.read_text())
    (row,) = [p for p in dashboard["panels"] if p["type"] == "row"]
    assert row["repeat"] == "model" and "$model" in row["title"]
    below = [p for p in dashboard["panels"] if p["gridPos"]["y"] > row["gridPos"]["y"]]
    assert {p["title"] for p in below} == {
        "Top drifting features",
        "Prediction drift",
        "Input-check findings by reason and feature",
        "Drift window",
    }
    exprs = " ".join(t["expr"] for p in below for t in p["targets"])
    for metric in (
        "kiln_feature_drift_psi",
        "kiln_prediction_drift_psi",
        "kiln_input_unseen_category_total",
        "kiln_input_out_of_range_total",
        "kiln_input_missing_total",
    ):
        assert metric in exprs, metric


def test_prometheus_config_scrapes_kiln_and_loads_the_rules() -> None:
    config = _yaml(MONITORING / "prometheus.yml")
    (job,) = [job for job in config["scrape_configs"] if job["job_name"] == "kiln"]
    assert job["scrape_interval"] == "15s"
    matched = {
        path.resolve() for pattern in config["rule_files"] for path in MONITORING.glob(pattern)
    }
    assert RULES.resolve() in matched


def test_compose_parses_and_wires_the_files() -> None:
    compose = _yaml(COMPOSE)
    services = compose["services"]
    assert set(services) == {"kiln", "prometheus", "grafana"}
    kiln = services["kiln"]
    assert kiln["image"] == KILN_IMAGE
    assert kiln["read_only"] is True
    assert "/tmp" in kiln["tmpfs"]
    assert services["prometheus"]["image"].startswith("prom/prometheus")
    assert services["grafana"]["image"].startswith("grafana/grafana")
    for name, service in services.items():
        for port in service.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), (name, port)
    # HTTP (the API and /metrics) and gRPC, each on the same port as inside the container.
    from service.settings import ServingSettings

    grpc_port = ServingSettings.model_fields["grpc_port"].default
    assert kiln["ports"] == ["127.0.0.1:3000:3000", f"127.0.0.1:{grpc_port}:{grpc_port}"]
    mounts: dict[str, str] = {}
    for service in services.values():
        for volume in service.get("volumes", []):
            source, target = volume.split(":")[:2]
            if source.startswith("."):
                assert (MONITORING / source).exists(), volume
                mounts[target] = source
    assert mounts["/etc/prometheus/prometheus.yml"] == "./prometheus.yml"
    assert mounts["/etc/prometheus/rules"] == "./rules"
    assert mounts["/etc/grafana/provisioning"] == "./grafana/provisioning"
    # the dashboard lands where the provider looks for it
    (provider,) = _yaml(PROVISIONING / "dashboards" / "kiln.yaml")["providers"]
    dashboard_mount = next(t for t, s in mounts.items() if s == "./grafana/kiln-dashboard.json")
    assert Path(dashboard_mount).parent == Path(provider["options"]["path"])
    (datasource,) = _yaml(PROVISIONING / "datasources" / "prometheus.yaml")["datasources"]
    assert datasource["type"] == "prometheus"
    assert datasource["url"] == "http://prometheus:9090"
