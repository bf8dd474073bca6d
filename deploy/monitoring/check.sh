#!/usr/bin/env bash
# Checks everything in deploy/monitoring with promtool; exits non-zero on the first failure.
#
#   deploy/monitoring/check.sh            (from anywhere; needs promtool and python3)
#
# 1. promtool check config prometheus.yml: the configuration, and the rule files it names
#    (resolved relative to prometheus.yml, as Prometheus itself resolves them).
# 2. promtool check rules rules/*.yaml: PromQL of every rule, names, duplicates.
# 3. promtool test rules tests/*.test.yaml: the unit tests of the rules.
# 4. Every PromQL expression of every Grafana panel, checked twice by Prometheus' own code:
#    a. parsed: the Debian/Ubuntu promtool (2.42) has no `check query` or `promql format`
#       command, so each expression becomes a recording rule in a generated rule file that
#       `promtool check rules` parses with the real PromQL parser (syntax, function
#       signatures, argument types: e.g. rate() of an instant vector is refused);
#    b. evaluated: a generated `promtool test rules` file runs each expression once as a
#       promql_expr_test against an empty TSDB (expecting no samples), which catches what
#       only evaluation sees, e.g. an invalid regular expression in label_replace().
#    Grafana's variables are replaced first: $__rate_interval, $__interval, $__range by
#    5m (their _ms/_s forms by the number), any other variable ($model, ${model},
#    ${model:regex}, [[model]]) by .* — dashboard variables are only used inside =~ "..."
#    matchers here. Every panel expression must therefore return nothing on an empty TSDB
#    (true of any query over metrics; not of vector(1) or absent()).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$here"
PROMTOOL="${PROMTOOL:-promtool}"
PYTHON="${PYTHON:-python3}"

command -v "$PROMTOOL" >/dev/null || { echo "check.sh: promtool not found (apt-get install prometheus)" >&2; exit 2; }
command -v "$PYTHON" >/dev/null || { echo "check.sh: $PYTHON not found" >&2; exit 2; }
"$PROMTOOL" --version 2>&1 | head -n 1

shopt -s nullglob
rule_files=(rules/*.yaml)
test_files=(tests/*.test.yaml)
dashboards=(grafana/*.json)
shopt -u nullglob
((${#rule_files[@]})) || { echo "check.sh: no rules/*.yaml" >&2; exit 1; }
((${#test_files[@]})) || { echo "check.sh: no tests/*.test.yaml" >&2; exit 1; }
((${#dashboards[@]})) || { echo "check.sh: no grafana/*.json" >&2; exit 1; }

echo "== promtool check config"
"$PROMTOOL" check config prometheus.yml

echo "== promtool check rules"
"$PROMTOOL" check rules "${rule_files[@]}"

echo "== promtool test rules"
"$PROMTOOL" test rules "${test_files[@]}"

echo "== Grafana panel queries"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
# Both generated files are JSON, which is YAML, so no YAML library is needed.
"$PYTHON" - "$work" "${dashboards[@]}" <<'PY'
import json
import re
import sys
from pathlib import Path

work, dashboards = Path(sys.argv[1]), sys.argv[2:]
SECONDS = 300  # what the interval variables become: 5m
BUILTIN = re.compile(r"\$\{?__(rate_interval|interval|range)(_ms|_s)?\}?")
VARIABLE = re.compile(r"\$\{[^}]+\}|\[\[[^\]]+\]\]|\$[A-Za-z_][A-Za-z0-9_]*")


def builtin(match: re.Match[str]) -> str:
    suffix = match.group(2)
    if suffix == "_ms":
        return str(SECONDS * 1000)
    if suffix == "_s":
        return str(SECONDS)
    return f"{SECONDS // 60}m"


def panels(items):
    for panel in items:
        yield panel
        yield from panels(panel.get("panels", []))  # rows hold their panels when collapsed


rules, tests, problems = [], [], []
for path in dashboards:
    dashboard = json.loads(Path(path).read_text())
    for panel in panels(dashboard.get("panels", [])):
        if panel.get("type") == "row":
            continue
        for target in panel.get("targets", []):
            where = f"{path}: panel {panel.get('id')} {panel.get('title')!r} target {target.get('refId')}"
            expr = (target.get("expr") or "").strip()
            if not expr:
                problems.append(f"{where}: no expr")
                continue
            concrete = VARIABLE.sub(".*", BUILTIN.sub(builtin, expr))
            name = re.sub(r"[^A-Za-z0-9_]", "_", f"grafana_panel_{panel.get('id')}_{target.get('refId')}")
            rules.append({"record": name, "expr": concrete})
            tests.append({"expr": concrete, "eval_time": "0m", "exp_samples": []})
            print(f"  {where}: {concrete}")
if problems:
    sys.exit("\n".join(problems))
if not rules:
    sys.exit("no panel queries found")
names = [r["record"] for r in rules]
if len(set(names)) != len(names):
    sys.exit("two targets share a panel id and refId")
(work / "panels.rules.yaml").write_text(
    json.dumps({"groups": [{"name": "grafana-panels", "rules": rules}]}, indent=1)
)
(work / "panels.test.yaml").write_text(
    json.dumps(
        {
            "rule_files": [],
            "tests": [{"interval": "1m", "input_series": [], "promql_expr_test": tests}],
        },
        indent=1,
    )
)
PY
echo "-- parsed (promtool check rules)"
"$PROMTOOL" check rules "$work/panels.rules.yaml"
echo "-- evaluated on an empty TSDB (promtool test rules)"
"$PROMTOOL" test rules "$work/panels.test.yaml"

echo "all monitoring checks passed"
