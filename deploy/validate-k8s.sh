#!/usr/bin/env bash
# Validate Kiln's Kubernetes manifests (deploy/k8s) without a cluster. For each overlay:
#
#   1. render it with `kubectl kustomize`;
#   2. core kinds: `kubernetes-validate --strict` against the Kubernetes OpenAPI schemas of
#      every version in K8S_VERSIONS (unknown fields are errors);
#   3. Prometheus Operator kinds (ServiceMonitor, PrometheusRule): kubernetes-validate has
#      no schema for custom resources and only prints a WARN for them, exit code 0, so they
#      never reach it. A small check below reads their required fields and cross-references
#      (the ServiceMonitor selects the Service and names one of its ports; every rule has
#      an expr and one of alert/record), and `promtool check rules` parses the PromQL when
#      promtool is installed. This is not the full CRD schema of an operator version;
#   4. KubeRay's RayJob (deploy/k8s/ray): validated with jsonschema against the CRD vendored in
#      deploy/k8s/crds (KubeRay's own schema, ray.io/v1), unknown fields as errors, plus a few
#      of the operator's own rules; its pod templates (head, workers, submitter) are core
#      PodTemplateSpecs, so they go to kubernetes-validate as PodTemplates and to checkov as
#      Pods (checkov has no RayJob checks: it counts the object and checks nothing in it);
#   5. checkov's Kubernetes checks: any failed check fails, unless the manifest skips it
#      with a `checkov.io/skipN: CKV_K8S_NN=reason` annotation (the reasons are printed).
#
# Usage: deploy/validate-k8s.sh [DIR ...]   default: deploy/k8s/overlays/{cpu,gpu}
#   DIR: a folder with a kustomization.yaml: an overlay, or deploy/k8s/ray
# Tools, from the environment:
#   KUBECTL              kubectl with kustomize (default: kubectl on PATH)
#   VENV_BIN             where the Python tools are (default: .venv/bin)
#   KUBERNETES_VALIDATE  default: $VENV_BIN/kubernetes-validate
#   CHECKOV              default: $VENV_BIN/checkov, else checkov on PATH
#   PYTHON               with PyYAML and jsonschema (default: $VENV_BIN/python)
#   RAYJOB_CRD           the RayJob CRD (default: deploy/k8s/crds/ray.io_rayjobs.yaml)
#   PROMTOOL             default: promtool on PATH; without it PromQL is not parsed (said so)
#   K8S_VERSIONS         default: "1.31 1.37" (1.31: the oldest these manifests need, for
#                        podFailurePolicy and the preStop sleep action; 1.37: the newest
#                        schemas kubernetes-validate 1.37 ships)
# Exit status: 0 valid; 1 a check failed; 2 a tool is missing or an argument is wrong.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

VENV_BIN=${VENV_BIN:-.venv/bin}
K8S_VERSIONS=${K8S_VERSIONS:-1.31 1.37}

die() {
    echo "validate-k8s: $*" >&2
    exit 2
}

KUBECTL=${KUBECTL:-$(command -v kubectl || true)}
[[ -n $KUBECTL && -x $KUBECTL ]] ||
    die "kubectl not found: install kubectl 1.27 or newer (it renders the overlays with its kustomize), or set KUBECTL=/path/to/kubectl"
KUBERNETES_VALIDATE=${KUBERNETES_VALIDATE:-$VENV_BIN/kubernetes-validate}
[[ -x $KUBERNETES_VALIDATE ]] ||
    die "$KUBERNETES_VALIDATE not found: $VENV_BIN/pip install kubernetes-validate, or set KUBERNETES_VALIDATE"
if [[ -z ${CHECKOV:-} ]]; then
    CHECKOV=$VENV_BIN/checkov
    [[ -x $CHECKOV ]] || CHECKOV=$(command -v checkov || true)
fi
[[ -n $CHECKOV && -x $CHECKOV ]] ||
    die "checkov not found in $VENV_BIN or on PATH: install it (in a virtual environment of its own: it pins packaging<24), or set CHECKOV=/path/to/checkov"
PYTHON=${PYTHON:-$VENV_BIN/python}
"$PYTHON" -c 'import yaml' 2>/dev/null || die "$PYTHON cannot import yaml (PyYAML): set PYTHON"
"$PYTHON" -c 'import jsonschema' 2>/dev/null ||
    die "$PYTHON cannot import jsonschema: $VENV_BIN/pip install jsonschema, or set PYTHON"
RAYJOB_CRD=${RAYJOB_CRD:-deploy/k8s/crds/ray.io_rayjobs.yaml}
[[ -f $RAYJOB_CRD ]] || die "$RAYJOB_CRD not found: the vendored RayJob CRD (deploy/k8s/crds/README.md)"
PROMTOOL=${PROMTOOL:-$(command -v promtool || true)}

if [[ $# -eq 0 ]]; then
    set -- deploy/k8s/overlays/cpu deploy/k8s/overlays/gpu
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# Splits a render into core.yaml (for kubernetes-validate) and checks the custom resources;
# writes the PrometheusRule groups to rules.yaml for promtool, and the RayJobs' pod templates
# as Pods to pods.yaml for checkov (as PodTemplates, they join core.yaml).
check_custom_resources() {
    "$PYTHON" - "$@" <<'PY'
import functools
import re
import sys

import jsonschema
import yaml

rendered, core_out, rules_out, pods_out, rayjob_crd = sys.argv[1:6]
CUSTOM = ("monitoring.coreos.com/", "ray.io/")
DURATION = re.compile(r"^((\d+)(ms|s|m|h|d|w|y))+$")
errors = []


def fail(where, message):
    errors.append(f"{where}: {message}")


def seconds(text):
    unit = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}
    return sum(int(n) * unit[u] for n, u in re.findall(r"(\d+)(ms|s|m|h|d|w|y)", text))


def is_duration(value):
    return isinstance(value, str) and bool(DURATION.match(value))


def string_map(value):
    return isinstance(value, dict) and all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    )


with open(rendered) as f:
    docs = [d for d in yaml.safe_load_all(f) if d]
core = [d for d in docs if not str(d.get("apiVersion", "")).startswith(CUSTOM)]
custom = [d for d in docs if str(d.get("apiVersion", "")).startswith(CUSTOM)]
services = [d for d in core if d.get("kind") == "Service"]
groups_out = []
pods = []


def strict(schema):
    """A CRD schema with unknown fields as errors.

    A structural CRD schema lists an object's fields in `properties` but does not say
    additionalProperties: false: the API server prunes unknown fields silently instead of
    refusing them, so a misspelt field would vanish from the applied object without a word.
    Closing every object schema that lists properties (unless it keeps unknown fields,
    x-kubernetes-preserve-unknown-fields) turns that into an error here. OpenAPI 3.0's
    `nullable` becomes a null type for jsonschema.
    """
    out = dict(schema)
    if "properties" in out:
        out["properties"] = {k: strict(v) for k, v in out["properties"].items()}
        if "additionalProperties" not in out and not out.get("x-kubernetes-preserve-unknown-fields"):
            out["additionalProperties"] = False
    if isinstance(out.get("additionalProperties"), dict):
        out["additionalProperties"] = strict(out["additionalProperties"])
    if isinstance(out.get("items"), dict):
        out["items"] = strict(out["items"])
    for key in ("anyOf", "allOf", "oneOf"):
        if key in out:
            out[key] = [strict(s) for s in out[key]]
    if out.get("nullable") and isinstance(out.get("type"), str):
        out["type"] = [out["type"], "null"]
    return out


@functools.cache
def crd_validator(path):
    with open(path) as f:  # 724 KB: libyaml's loader where PyYAML has it
        crd = yaml.load(f, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    group = crd["spec"]["group"]
    versions = {v["name"]: v["schema"]["openAPIV3Schema"] for v in crd["spec"]["versions"]}
    # OpenAPI 3.0 schema objects are a draft-4 dialect of JSON Schema. Formats (int32,
    # date-time) and the CEL rules (x-kubernetes-validations) are not checked.
    return {f"{group}/{v}": jsonschema.Draft4Validator(strict(s)) for v, s in versions.items()}


def json_path(error):
    return "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error.absolute_path) or "."


def pod_template(where, owner, role, template, *, job=False):
    """A RayJob's pod template, as a PodTemplate (kubernetes-validate) and, for checkov, a
    Pod, or a Job when KubeRay runs it as one (the submitter: checkov asks no probes of a Job).
    """
    meta = owner["metadata"]
    name = f"{meta.get('name')}-{role}"
    if not isinstance(template, dict):
        fail(where, f"{role}: no pod template")
        return
    core.append({
        "apiVersion": "v1", "kind": "PodTemplate",
        "metadata": {"name": name, "namespace": meta.get("namespace")},
        "template": template,
    })
    # checkov reads its skips from the object it checks: the RayJob's go with its pods.
    annotations = {k: v for k, v in (meta.get("annotations") or {}).items() if k.startswith("checkov.io/")}
    tmeta = template.get("metadata") or {}
    metadata = {
        "name": name, "namespace": meta.get("namespace"),
        "labels": tmeta.get("labels") or {},
        "annotations": {**(tmeta.get("annotations") or {}), **annotations},
    }
    if job:
        pods.append({
            "apiVersion": "batch/v1", "kind": "Job", "metadata": metadata,
            "spec": {"template": {"metadata": {"labels": metadata["labels"]}, "spec": template.get("spec")}},
        })
    else:
        pods.append({"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": template.get("spec")})


def check_rayjob(doc, where):
    validator = crd_validator(rayjob_crd).get(doc.get("apiVersion"))
    if validator is None:
        fail(where, f"apiVersion {doc.get('apiVersion')}: {rayjob_crd} has no schema for it")
        return
    errors_before = len(errors)
    for error in sorted(validator.iter_errors(doc), key=lambda e: list(map(str, e.absolute_path))):
        fail(where, f"CRD schema ({rayjob_crd}): {json_path(error)}: {error.message}")
    if len(errors) > errors_before:
        return
    # A few of KubeRay's own rules (ray-operator/controllers/ray/utils/validation.go), which
    # the schema cannot say.
    name, spec = doc["metadata"]["name"], doc["spec"]
    if len(name) > 47 or not re.fullmatch(r"[a-z]([-a-z0-9]*[a-z0-9])?", name):
        fail(where, "the name must be a DNS-1035 label of at most 47 characters (KubeRay)")
    if not str(spec.get("entrypoint", "")).strip():
        fail(where, "spec.entrypoint is empty")
    if spec.get("activeDeadlineSeconds", 1) <= 0:
        fail(where, "spec.activeDeadlineSeconds must be positive")
    cluster = spec.get("rayClusterSpec")
    if not isinstance(cluster, dict):
        fail(where, "spec.rayClusterSpec: a RayJob here starts its own cluster")
        return
    pod_template(where, doc, "head", cluster["headGroupSpec"].get("template"))
    for group in cluster.get("workerGroupSpecs", []):
        low, high = group.get("minReplicas", 0), group.get("maxReplicas", 0)
        if not low <= group.get("replicas", low) <= high:
            fail(where, f"worker group {group['groupName']}: replicas outside minReplicas..maxReplicas")
        pod_template(where, doc, f"worker-{group['groupName']}", group.get("template"))
    if "submitterPodTemplate" in spec:
        pod_template(where, doc, "submitter", spec["submitterPodTemplate"], job=True)


for doc in custom:
    kind, meta = doc.get("kind"), doc.get("metadata") or {}
    where = f"{kind}/{meta.get('name')}"
    spec = doc.get("spec")
    if kind in ("ServiceMonitor", "PrometheusRule") and doc.get("apiVersion") != "monitoring.coreos.com/v1":
        fail(where, f"apiVersion {doc.get('apiVersion')}: only monitoring.coreos.com/v1 is checked")
    if not meta.get("name") or not isinstance(spec, dict):
        fail(where, "needs metadata.name and a spec mapping")
        continue
    if kind == "ServiceMonitor":
        wanted = (spec.get("selector") or {}).get("matchLabels")
        if not wanted or not string_map(wanted):
            fail(where, "spec.selector.matchLabels must be a non-empty map of strings")
            wanted = {}
        selected = [
            s for s in services
            if s["metadata"].get("namespace") == meta.get("namespace")
            and wanted.items() <= (s["metadata"].get("labels") or {}).items()
        ]
        if not selected:
            fail(where, f"selects no Service of this render (matchLabels {wanted})")
        ports = {p.get("name") for s in selected for p in s["spec"].get("ports", [])}
        endpoints = spec.get("endpoints")
        if not isinstance(endpoints, list) or not endpoints:
            fail(where, "spec.endpoints must be a non-empty list")
            endpoints = []
        for i, ep in enumerate(endpoints):
            at = f"{where} spec.endpoints[{i}]"
            if not isinstance(ep, dict):
                fail(at, "must be a mapping")
                continue
            if ep.get("port") not in ports:
                fail(at, f"port {ep.get('port')!r} is not a named port of the Service {sorted(ports)}")
            if not str(ep.get("path", "/metrics")).startswith("/"):
                fail(at, "path must start with /")
            for key in ("interval", "scrapeTimeout"):
                if key in ep and not is_duration(ep[key]):
                    fail(at, f"{key} {ep[key]!r} is not a Prometheus duration")
            if is_duration(ep.get("interval")) and is_duration(ep.get("scrapeTimeout")):
                if seconds(ep["scrapeTimeout"]) > seconds(ep["interval"]):
                    fail(at, "scrapeTimeout is longer than interval")
    elif kind == "PrometheusRule":
        groups = spec.get("groups")
        if not isinstance(groups, list) or not groups:
            fail(where, "spec.groups must be a non-empty list")
            continue
        names = [g.get("name") for g in groups if isinstance(g, dict)]
        if len(set(names)) != len(groups) or not all(names):
            fail(where, "every group needs a name, unique in the object")
        for g in groups:
            rules = g.get("rules") if isinstance(g, dict) else None
            if not isinstance(rules, list) or not rules:
                fail(f"{where} group {g.get('name') if isinstance(g, dict) else g}", "needs rules")
                continue
            for j, rule in enumerate(rules):
                at = f"{where} group {g['name']} rule {j} ({rule.get('alert') or rule.get('record')})"
                if ("alert" in rule) == ("record" in rule):
                    fail(at, "needs exactly one of alert and record")
                if not isinstance(rule.get("expr"), str) or not rule["expr"].strip():
                    fail(at, "expr must be a non-empty string")
                if "for" in rule and not is_duration(rule["for"]):
                    fail(at, f"for {rule['for']!r} is not a Prometheus duration")
                for key in ("labels", "annotations"):
                    if key in rule and not string_map(rule[key]):
                        fail(at, f"{key} must map strings to strings")
                if "record" in rule and ("for" in rule or "annotations" in rule):
                    fail(at, "a recording rule takes neither for nor annotations")
        groups_out.extend(groups)
    elif kind == "RayJob":
        check_rayjob(doc, where)
    else:
        fail(where, f"no check for {kind}: add one here before using it")

if errors:
    print("custom resources: FAILED", *errors, sep="\n  ")
    sys.exit(1)
with open(core_out, "w") as f:
    yaml.safe_dump_all(core, f, sort_keys=False)
with open(rules_out, "w") as f:
    yaml.safe_dump({"groups": groups_out}, f, sort_keys=False)
with open(pods_out, "w") as f:
    yaml.safe_dump_all(pods, f, sort_keys=False)
print(
    f"custom resources: {len(custom)} checked "
    f"({', '.join(sorted(d['kind'] + '/' + d['metadata']['name'] for d in custom))}); "
    f"{len(core)} core resources"
)
if pods:
    print(
        f"RayJob: CRD schema ({rayjob_crd}, strict): ok; {len(pods)} pod templates "
        f"({', '.join(p['metadata']['name'] for p in pods)}) go to kubernetes-validate as "
        "PodTemplates and to checkov as Pods, the submitter as a Job (checkov has no RayJob checks)"
    )
PY
}

# Runs checkov on a render; passes only with no failed check and no parsing error, and lists
# what was skipped with the manifests' reasons.
run_checkov() {
    local rendered=$1 report=$2 status=0
    "$CHECKOV" -f "$rendered" --framework kubernetes --skip-download \
        --output json >"$report" 2>"$report.log" || status=$?
    "$PYTHON" - "$report" "$status" "$report.log" <<'PY'
import json
import sys

report, status, log = sys.argv[1], int(sys.argv[2]), sys.argv[3]
try:
    with open(report) as f:
        data = json.load(f)
except ValueError:
    print(f"checkov: no JSON report (exit {status})")
    print(open(log).read()[-4000:])
    sys.exit(1)
runs = data if isinstance(data, list) else [data]
results = [r.get("results", {}) for r in runs if r.get("check_type") == "kubernetes"]
count = {k: sum(len(r.get(k, [])) for r in results) for k in
         ("passed_checks", "failed_checks", "skipped_checks", "parsing_errors")}
print(
    f"checkov: passed {count['passed_checks']}, failed {count['failed_checks']}, "
    f"skipped {count['skipped_checks']}, parsing errors {count['parsing_errors']}"
)
for r in results:
    for c in r.get("skipped_checks", []):
        reason = (c.get("check_result") or {}).get("suppress_comment", "")
        print(f"  skipped {c['check_id']} on {c['resource']}: {reason}")
    for c in r.get("failed_checks", []):
        lines = c.get("file_line_range")
        print(f"  FAILED {c['check_id']} {c['check_name']} on {c['resource']} (lines {lines})")
    for p in r.get("parsing_errors", []):
        print(f"  PARSING ERROR {p}")
ok = (
    count["passed_checks"] > 0  # no resource scanned at all is a failure, not a pass
    and count["failed_checks"] == 0
    and count["parsing_errors"] == 0
    and status in (0, 1)  # 1: failed checks (counted above); anything else: checkov broke
)
if status not in (0, 1):
    print(f"checkov exited {status}:")
    print(open(log).read()[-4000:])
sys.exit(0 if ok else 1)
PY
}

failed=0
for overlay in "$@"; do
    [[ -f $overlay/kustomization.yaml ]] || die "$overlay: no kustomization.yaml"
    name=$(basename "$overlay")
    dir=$work/$name
    mkdir -p "$dir"
    echo "== $overlay"
    if ! "$KUBECTL" kustomize "$overlay" >"$dir/rendered.yaml"; then
        echo "kustomize: FAILED to render $overlay"
        failed=1
        continue
    fi
    if ! check_custom_resources "$dir/rendered.yaml" "$dir/core.yaml" "$dir/rules.yaml" \
        "$dir/pods.yaml" "$RAYJOB_CRD"; then
        failed=1
        continue
    fi
    if grep -qx 'groups: \[\]' "$dir/rules.yaml"; then
        echo "promtool: no PrometheusRule in $overlay"
    elif [[ -n $PROMTOOL ]]; then
        if out=$("$PROMTOOL" check rules "$dir/rules.yaml" 2>&1); then
            echo "promtool: $(grep -o 'SUCCESS: [0-9]* rules found' <<<"$out" || echo "$out")"
        else
            echo "promtool: FAILED"
            echo "$out"
            failed=1
        fi
    else
        echo "promtool: not installed, PromQL of the PrometheusRule NOT parsed (set PROMTOOL)"
    fi
    for version in $K8S_VERSIONS; do
        # --quiet prints only warnings and errors. A WARN means a kind without a schema,
        # which kubernetes-validate lets pass: treat it as a failure, not a pass.
        status=0
        out=$("$KUBERNETES_VALIDATE" --strict --quiet --kubernetes-version "$version" \
            "$dir/core.yaml" 2>&1) || status=$?
        if [[ $status -ne 0 || -n $out ]]; then
            echo "kubernetes-validate $version (strict): FAILED"
            echo "$out"
            failed=1
        else
            echo "kubernetes-validate $version (strict): ok"
        fi
    done
    # The render and the RayJobs' pod templates as Pods, in one file for one checkov run.
    cp "$dir/rendered.yaml" "$dir/checkov.yaml"
    if [[ -s $dir/pods.yaml ]]; then
        { echo "---"; cat "$dir/pods.yaml"; } >>"$dir/checkov.yaml"
    fi
    run_checkov "$dir/checkov.yaml" "$dir/checkov.json" || failed=1
done

if [[ $failed -ne 0 ]]; then
    echo "validate-k8s: FAILED"
    exit 1
fi
echo "validate-k8s: all valid ($*)"
