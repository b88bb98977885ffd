"""The Kubernetes packaging: the Helm chart, the plain manifests in deploy/, the CRD copies, the
samples and the Dockerfiles. No cluster: helm renders and lints, the CRD's schema validates
(crdschema), and the operator's contract (its flags, RBAC and security) is checked on what
renders.
"""

from __future__ import annotations

import copy
import fnmatch
import json
import re
import tomllib
from pathlib import Path

import jsonschema
import pytest
import yaml

import crdschema
from chartkit import (CHART, CRD_SOURCE, DEPLOY, MIN_KUBE_VERSION, RELEASE, RELEASE_NAMESPACE,
                      REPO, HelmError, crd_or_skip, find, helm, images, load_yaml_file, one,
                      render, render_notes)

OPERATOR_IMAGE = "cachepair/operator:0.1.0"
WATCH_NS = "apps"
OTHER_NS = "shop"

# Value sets the chart is rendered and linted with.
CONFIGS = {
    "defaults": (),
    "watch-namespace": (f"watchNamespace={WATCH_NS}",),
    "watch-namespaces": (f"watchNamespaces={{{WATCH_NS},{OTHER_NS}}}",),
    # the older watchNamespace adds to the list, once
    "watch-namespaces-and-older": (f"watchNamespaces={{{OTHER_NS},{WATCH_NS}}}",
                                   f"watchNamespace={WATCH_NS}"),
    "service-monitor": ("serviceMonitor.enabled=true", "serviceMonitor.labels.release=prom"),
    "no-rbac": ("rbac.create=false",),
    "pair-service-monitors": ("pairServiceMonitors=true",),
    "no-leader-election": ("leaderElection.enabled=false",),
    "two-replicas": ("replicaCount=2",),
    "existing-service-account": ("serviceAccount.create=false", "serviceAccount.name=ops-sa"),
    "watch-namespace-everything": (f"watchNamespace={WATCH_NS}", "pairServiceMonitors=true",
                                   "serviceMonitor.enabled=true", "replicaCount=3"),
    "alerts-and-dashboard": ("prometheusRule.enabled=true", "grafanaDashboard.enabled=true"),
}

# The operator's RBAC contract: (API group, resource) -> verbs, where it watches.
NAMESPACED_RULES = {
    ("cachepair.io", "cachepairs"): {"get", "list", "watch", "patch", "update"},
    ("cachepair.io", "cachepairs/status"): {"get", "patch", "update"},
    ("cachepair.io", "cachepairs/finalizers"): {"update"},
    ("", "pods"): {"get", "list", "watch", "create", "delete", "patch"},
    ("", "pods/status"): {"patch"},
    ("", "services"): {"get", "list", "watch", "create", "patch", "delete"},
    # Named Secrets only: the operator reads the ones a spec names and creates its own; it
    # never lists or watches them.
    ("", "secrets"): {"get", "create", "patch"},
    ("", "events"): {"create", "patch"},
    ("events.k8s.io", "events"): {"create", "patch"},
    ("policy", "poddisruptionbudgets"): {"get", "list", "watch", "create", "patch", "delete"},
    ("networking.k8s.io", "networkpolicies"): {"get", "list", "watch", "create", "patch",
                                               "delete"},
}
SERVICE_MONITOR_RULES = {
    ("monitoring.coreos.com", "servicemonitors"): {"get", "list", "watch", "create", "patch",
                                                   "delete"},
}
NODE_RULES = {("", "nodes"): {"get", "list", "watch"}}
LEASE_RULES = {("coordination.k8s.io", "leases"): {"get", "create", "update", "patch"}}

# The operator binary's flags (`cachepair-operator --help`).
OPERATOR_FLAGS = {"--kubeconfig", "--namespace", "--listen", "--leader-election", "--lease-name",
                  "--lease-namespace", "--log-format", "--webhook-listen", "--webhook-cert",
                  "--webhook-key", "--vrrp-image"}

CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition"}
HELM_ONLY_LABELS = {"helm.sh/chart", "app.kubernetes.io/managed-by"}


def config_ids():
    return list(CONFIGS)


def watched(values: dict[str, str]) -> list[str]:
    """The namespaces a value set has the operator watch, in the chart's order; [] for all."""
    namespaces = [n for n in values.get("watchNamespaces", "{}").strip("{}").split(",") if n]
    return list(dict.fromkeys([*namespaces, *filter(None, [values.get("watchNamespace")])]))


# -- helm lint -------------------------------------------------------------------------------

@pytest.mark.parametrize("strict", [False, True], ids=["lint", "lint-strict"])
@pytest.mark.parametrize("config", config_ids())
def test_helm_lint(config, strict):
    args = ["lint", str(CHART), "--kube-version", MIN_KUBE_VERSION]
    if strict:
        args.append("--strict")
    for s in CONFIGS[config]:
        args += ["--set", s]
    out = helm(*args).stdout
    assert "1 chart(s) linted, 0 chart(s) failed" in out, out


def test_chart_metadata():
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["apiVersion"] == "v2"
    assert chart["name"] == "cachepair-operator"
    assert chart["version"] == "0.1.0"
    assert chart["appVersion"] == "0.1.0" and isinstance(chart["appVersion"], str)
    assert chart["kubeVersion"] == ">=1.30.0-0"


def test_kube_version_floor_is_enforced():
    older = helm("template", RELEASE, str(CHART), "--kube-version", "1.29.9", check=False)
    assert older.returncode != 0 and "kubeVersion" in older.stderr, older.stderr
    # and the newest Kubernetes helm knows of renders (helm's own default capabilities)
    assert render(kube_version=None)


# -- every rendering -------------------------------------------------------------------------

@pytest.mark.parametrize("config", config_ids())
def test_rendered_documents_are_well_formed(config):
    docs = render(*CONFIGS[config])
    assert docs, "nothing rendered"
    seen = set()
    for d in docs:
        assert isinstance(d.get("apiVersion"), str) and d["apiVersion"], d
        assert isinstance(d.get("kind"), str) and d["kind"], d
        name = d.get("metadata", {}).get("name")
        assert isinstance(name, str) and name, f"{d['kind']} without metadata.name"
        assert len(name) <= 63 or d["kind"] in CLUSTER_SCOPED, f"{d['kind']} {name} too long"
        ns = d["metadata"].get("namespace")
        if d["kind"] in CLUSTER_SCOPED:
            assert ns is None, f"cluster-scoped {d['kind']} {name} has a namespace"
        else:
            assert ns, f"namespaced {d['kind']} {name} has no namespace"
        key = (d["apiVersion"], d["kind"], ns, name)
        assert key not in seen, f"rendered twice: {key}"
        seen.add(key)
        labels = d["metadata"].get("labels", {})
        assert labels.get("app.kubernetes.io/name") == "cachepair-operator", (d["kind"], name)
        assert labels.get("app.kubernetes.io/instance") == RELEASE, (d["kind"], name)


@pytest.mark.parametrize("config", config_ids())
def test_rendered_kinds(config):
    sets = CONFIGS[config]
    docs = render(*sets)
    values = dict(s.split("=", 1) for s in sets)
    rbac = values.get("rbac.create", "true") == "true"
    leader = values.get("leaderElection.enabled", "true") == "true"
    namespaces = watched(values)
    kinds = sorted(d["kind"] for d in docs)
    expected = ["Deployment", "Service"]
    if values.get("serviceAccount.create", "true") == "true":
        expected.append("ServiceAccount")
    if values.get("serviceMonitor.enabled") == "true":
        expected.append("ServiceMonitor")
    if values.get("prometheusRule.enabled") == "true":
        expected.append("PrometheusRule")
    if values.get("grafanaDashboard.enabled") == "true":
        expected.append("ConfigMap")
    if rbac:
        expected += ["ClusterRole", "ClusterRoleBinding"]
        if namespaces:
            expected += ["Role", "RoleBinding"] * len(namespaces)
        if leader:
            expected += ["Role", "RoleBinding"]
    assert kinds == sorted(expected)
    assert not find(docs, "CustomResourceDefinition"), "the CRD belongs in crds/, not templates/"


# -- RBAC ------------------------------------------------------------------------------------

def grants(roles: list[dict]) -> dict[tuple[str, str], set[str]]:
    granted: dict[tuple[str, str], set[str]] = {}
    for role in roles:
        for rule in role.get("rules", []):
            for field in ("apiGroups", "resources", "verbs", "resourceNames"):
                assert "*" not in rule.get(field, []), f"wildcard in {role['kind']} {rule}"
            assert "nonResourceURLs" not in rule, rule
            for group in rule["apiGroups"]:
                for resource in rule["resources"]:
                    granted.setdefault((group, resource), set()).update(rule["verbs"])
    return granted


def bound_roles(docs: list[dict], sa_name: str, sa_namespace: str) -> list[dict]:
    """The roles bound to the service account, each checked to be rendered."""
    roles = []
    for binding in find(docs, "ClusterRoleBinding") + find(docs, "RoleBinding"):
        subjects = binding["subjects"]
        assert subjects == [{"kind": "ServiceAccount", "name": sa_name,
                             "namespace": sa_namespace}], binding
        ref = binding["roleRef"]
        assert ref["apiGroup"] == "rbac.authorization.k8s.io"
        if binding["kind"] == "ClusterRoleBinding":
            assert ref["kind"] == "ClusterRole", "a ClusterRoleBinding must not grant a Role"
            roles.append(one(docs, "ClusterRole", ref["name"]))
        else:
            ns = binding["metadata"]["namespace"]
            candidates = [r for r in find(docs, ref["kind"], ref["name"])
                          if r["kind"] == "ClusterRole" or r["metadata"]["namespace"] == ns]
            assert len(candidates) == 1, f"RoleBinding {binding['metadata']['name']} refers to " \
                                         f"no rendered {ref['kind']} {ref['name']} in {ns}"
            roles.append({**candidates[0], "_scope": ns})
    return roles


@pytest.mark.parametrize("config", [c for c in config_ids() if c != "no-rbac"])
def test_rbac_grants_exactly_the_contract(config):
    sets = CONFIGS[config]
    values = dict(s.split("=", 1) for s in sets)
    docs = render(*sets)
    sa = values.get("serviceAccount.name", "cachepair-operator")
    roles = bound_roles(docs, sa, RELEASE_NAMESPACE)
    assert len(roles) == len(find(docs, "ClusterRole")) + len(find(docs, "Role")), \
        "a rendered role that nothing binds"

    cluster = grants([r for r in roles if r["kind"] == "ClusterRole"])
    in_release_ns = grants([r for r in roles if r.get("_scope") == RELEASE_NAMESPACE])
    namespaces = watched(values)
    scopes = {r["_scope"] for r in roles if "_scope" in r}
    assert scopes <= {RELEASE_NAMESPACE, *namespaces}, "a Role outside the watched namespaces"

    wanted = dict(NAMESPACED_RULES)
    if values.get("pairServiceMonitors") == "true":
        wanted.update(SERVICE_MONITOR_RULES)
    if namespaces:
        assert cluster == NODE_RULES, "only reading nodes may stay cluster-wide"
        for ns in namespaces:
            assert grants([r for r in roles if r.get("_scope") == ns]) == wanted, ns
    else:
        assert cluster == {**wanted, **NODE_RULES}
        assert scopes <= {RELEASE_NAMESPACE}
    if values.get("leaderElection.enabled", "true") == "true":
        assert in_release_ns == LEASE_RULES, "the Lease's Role, in the release namespace only"
        lease_role = one(docs, "Role", "cachepair-operator-leader-election")
        for rule in lease_role["rules"]:
            if set(rule["verbs"]) - {"create"}:
                assert rule.get("resourceNames") == ["cachepair-operator"], rule
    else:
        assert in_release_ns == {}


def test_rbac_off_renders_no_rbac():
    docs = render("rbac.create=false")
    assert not [d for d in docs if d["apiVersion"].startswith("rbac.authorization.k8s.io/")]


# -- the operator's Deployment ---------------------------------------------------------------

def deployment_parts(docs):
    dep = one(docs, "Deployment", "cachepair-operator")
    pod = dep["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    return dep, pod, container


def parse_args(args: list[str]) -> dict[str, str]:
    parsed = {}
    for arg in args:
        m = re.fullmatch(r"(--[a-z-]+)=(.*)", arg)
        assert m, f"argument {arg!r} is not --flag=value"
        assert m[1] in OPERATOR_FLAGS, f"the operator has no flag {m[1]}"
        assert m[1] not in parsed, f"{m[1]} given twice"
        parsed[m[1]] = m[2]
    return parsed


@pytest.mark.parametrize("config", config_ids())
def test_deployment_is_hardened(config):
    docs = render(*CONFIGS[config])
    dep, pod, c = deployment_parts(docs)
    psc = pod["securityContext"]
    assert psc["runAsNonRoot"] is True
    assert psc["runAsUser"] == 65532 and psc["runAsGroup"] == 65532
    assert psc["seccompProfile"] == {"type": "RuntimeDefault"}
    sc = c["securityContext"]
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["runAsNonRoot"] is True and sc["runAsUser"] == 65532
    assert sc.get("privileged", False) is False
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert not pod.get("hostNetwork") and not pod.get("hostPID") and not pod.get("hostIPC")
    assert pod["terminationGracePeriodSeconds"] == 30
    assert c["image"] == OPERATOR_IMAGE
    limits, requests = c["resources"]["limits"], c["resources"]["requests"]
    assert limits["memory"] and requests["memory"] and requests["cpu"]


@pytest.mark.parametrize("config", config_ids())
def test_deployment_follows_the_operator_contract(config):
    sets = CONFIGS[config]
    values = dict(s.split("=", 1) for s in sets)
    docs = render(*sets)
    dep, pod, c = deployment_parts(docs)
    args = parse_args(c["args"])
    assert args["--listen"] == "0.0.0.0:8080"
    assert args["--log-format"] == "json"
    # The privileged VRRP sidecar's image is the installer's choice, the chart's cache-node.
    assert args["--vrrp-image"] == "cachepair/cache-node:0.1.0"
    assert "--kubeconfig" not in args, "in-cluster config"
    assert args.get("--namespace") == (",".join(watched(values)) or None)
    if values.get("leaderElection.enabled", "true") == "true":
        assert args["--leader-election"] == "true"
        assert args["--lease-name"] == "cachepair-operator"
        assert args["--lease-namespace"] == RELEASE_NAMESPACE
    else:
        assert args["--leader-election"] == "false"
    assert dep["spec"]["replicas"] == int(values.get("replicaCount", 1))
    # Only the leader reports ready: a rolling update would wait forever for a new pod to be
    # ready while the old leader holds the Lease.
    assert dep["spec"]["strategy"] == {"type": "Recreate"}

    env = {e["name"]: e for e in c["env"]}
    assert env["POD_NAME"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    assert env["POD_NAMESPACE"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.namespace"}}
    assert env["RUST_LOG"]["value"] == "info"

    (port,) = c["ports"]
    assert port == {"name": "metrics", "containerPort": 8080, "protocol": "TCP"}
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}

    sa = values.get("serviceAccount.name", "cachepair-operator")
    assert pod["serviceAccountName"] == sa
    if values.get("serviceAccount.create", "true") == "true":
        assert one(docs, "ServiceAccount", sa)["metadata"]["namespace"] == RELEASE_NAMESPACE

    # the selector picks the pods, and the metrics Service (and ServiceMonitor) pick them too
    selector = dep["spec"]["selector"]["matchLabels"]
    pod_labels = dep["spec"]["template"]["metadata"]["labels"]
    assert selector.items() <= pod_labels.items()
    svc = one(docs, "Service", "cachepair-operator-metrics")
    assert svc["spec"]["selector"].items() <= pod_labels.items()
    assert svc["spec"]["ports"] == [{"name": "metrics", "port": 8080, "targetPort": "metrics",
                                     "protocol": "TCP"}]
    for sm in find(docs, "ServiceMonitor"):
        assert sm["spec"]["selector"]["matchLabels"].items() <= svc["metadata"]["labels"].items()
        assert [e["port"] for e in sm["spec"]["endpoints"]] == ["metrics"]
        assert sm["spec"]["endpoints"][0]["path"] == "/metrics"
        if "serviceMonitor.labels.release" in values:
            assert sm["metadata"]["labels"]["release"] == values["serviceMonitor.labels.release"]


@pytest.mark.parametrize("strict", [False, True], ids=["lint", "lint-strict"])
def test_eviction_webhook(strict):
    sets = ("evictionWebhook.enabled=true", f"watchNamespaces={{{WATCH_NS},{OTHER_NS}}}")
    args = ["lint", str(CHART), "--namespace", RELEASE_NAMESPACE, "--kube-version", MIN_KUBE_VERSION]
    for s in sets:
        args += ["--set", s]
    helm(*args, *(["--strict"] if strict else []))
    docs = render(*sets)
    dep, pod, c = deployment_parts(docs)
    args = parse_args(c["args"])
    assert args["--webhook-listen"] == "0.0.0.0:9443"
    mount = one_of(c["volumeMounts"], "webhook-tls")
    assert mount["readOnly"] is True
    assert (args["--webhook-cert"], args["--webhook-key"]) == (
        f"{mount['mountPath']}/tls.crt", f"{mount['mountPath']}/tls.key")
    assert {"name": "webhook", "containerPort": 9443, "protocol": "TCP"} in c["ports"]
    secret = one(docs, "Secret", "cachepair-operator-webhook-tls")
    assert one_of(pod["volumes"], "webhook-tls")["secret"]["secretName"] == "cachepair-operator-webhook-tls"
    assert secret["type"] == "kubernetes.io/tls" and set(secret["data"]) == {"tls.crt", "tls.key", "ca.crt"}
    svc = one(docs, "Service", "cachepair-operator-webhook")
    assert svc["spec"]["selector"].items() <= dep["spec"]["template"]["metadata"]["labels"].items()
    assert svc["spec"]["ports"] == [{"name": "webhook", "port": 9443, "targetPort": "webhook",
                                     "protocol": "TCP"}]
    (config,) = find(docs, "ValidatingWebhookConfiguration")
    (hook,) = config["webhooks"]
    assert hook["clientConfig"]["service"] == {"name": "cachepair-operator-webhook",
                                               "namespace": RELEASE_NAMESPACE,
                                               "path": "/validate-eviction", "port": 9443}
    assert hook["clientConfig"]["caBundle"] == secret["data"]["ca.crt"]
    assert hook["rules"] == [{"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE"],
                              "resources": ["pods/eviction"], "scope": "Namespaced"}]
    assert (hook["failurePolicy"], hook["sideEffects"]) == ("Ignore", "NoneOnDryRun")
    assert hook["namespaceSelector"] == {"matchExpressions": [
        {"key": "kubernetes.io/metadata.name", "operator": "In", "values": [WATCH_NS, OTHER_NS]}]}
    (everywhere,) = find(render("evictionWebhook.enabled=true"), "ValidatingWebhookConfiguration")
    assert "namespaceSelector" not in everywhere["webhooks"][0], "all namespaces"
    assert not find(render(), "ValidatingWebhookConfiguration"), "off by default"


def one_of(items: list[dict], name: str) -> dict:
    (item,) = [i for i in items if i["name"] == name]
    return item


def test_values_reach_the_deployment():
    docs = render("image.repository=registry.example/ops/operator", "image.tag=1.2.3",
                  "image.pullPolicy=Always", "logFormat=text", "logLevel=info\\,operator=debug",
                  "metrics.port=9090", "imagePullSecrets[0].name=regcred",
                  "nodeSelector.role=infra", "priorityClassName=system-cluster-critical",
                  "leaderElection.leaseName=ops-lease",
                  "vrrp.image.repository=registry.example/ops/cache-node", "vrrp.image.tag=v9")
    dep, pod, c = deployment_parts(docs)
    assert c["image"] == "registry.example/ops/operator:1.2.3"
    assert c["imagePullPolicy"] == "Always"
    args = parse_args(c["args"])
    assert args["--log-format"] == "text" and args["--listen"] == "0.0.0.0:9090"
    assert args["--lease-name"] == "ops-lease"
    assert args["--vrrp-image"] == "registry.example/ops/cache-node:v9"
    assert {e["name"]: e.get("value") for e in c["env"]}["RUST_LOG"] == "info,operator=debug"
    assert c["ports"][0]["containerPort"] == 9090
    assert one(docs, "Service")["spec"]["ports"][0]["port"] == 9090
    assert pod["imagePullSecrets"] == [{"name": "regcred"}]
    assert pod["nodeSelector"] == {"role": "infra"}
    assert pod["priorityClassName"] == "system-cluster-critical"
    lease_role = one(docs, "Role", "cachepair-operator-leader-election")
    assert ["ops-lease"] in [r.get("resourceNames") for r in lease_role["rules"]]


def test_rolling_update_can_be_chosen():
    dep = one(render("updateStrategy.type=RollingUpdate",
                     "updateStrategy.rollingUpdate.maxUnavailable=100%",
                     "updateStrategy.rollingUpdate.maxSurge=0"), "Deployment")
    assert dep["spec"]["strategy"] == {
        "type": "RollingUpdate", "rollingUpdate": {"maxSurge": 0, "maxUnavailable": "100%"}}


# -- values.schema.json ----------------------------------------------------------------------

@pytest.mark.parametrize("sets, field", [
    (("replicaCount=-1",), "replicaCount"),
    (("replicaCount=two",), "replicaCount"),
    (("metrics.port=70000",), "metrics/port"),
    (("logFormat=xml",), "logFormat"),
    (("image.pullPolicy=Sometimes",), "image/pullPolicy"),
    (("vrrp.image.repository=",), "vrrp/image/repository"),
    (("watchNamespace=Not_A_Namespace",), "watchNamespace"),
    (("watchNamespaces={apps,Not_A_Namespace}",), "watchNamespaces/1"),
    (("watchNamespaces={apps,apps}",), "watchNamespaces"),
    (("leaderElection.enabled=maybe",), "leaderElection/enabled"),
    (("serviceMonitor.interval=soon",), "serviceMonitor/interval"),
    (("resources.limits.memory=lots",), "resources/limits/memory"),
    (("updateStrategy.type=Sideways",), "updateStrategy/type"),
    (("replicas=2",), "replicas"),  # a misspelt key: additionalProperties is false
], ids=lambda v: v if isinstance(v, str) else ",".join(v))
def test_schema_rejects_bad_values(sets, field):
    args = ["template", RELEASE, str(CHART), "--kube-version", MIN_KUBE_VERSION]
    for s in sets:
        args += ["--set", s]
    proc = helm(*args, check=False)
    assert proc.returncode != 0, f"{sets} was accepted"
    assert "values don't meet the specifications of the schema" in proc.stderr, proc.stderr
    assert field in proc.stderr, proc.stderr


def test_template_guard_two_replicas_need_leader_election():
    with pytest.raises(HelmError) as e:
        render("replicaCount=2", "leaderElection.enabled=false")
    assert "leaderElection.enabled" in e.value.stderr


def test_existing_service_account_needs_a_name():
    with pytest.raises(HelmError) as e:
        render("serviceAccount.create=false")
    assert "serviceAccount.name" in e.value.stderr


def schema_paths(schema: dict, prefix=()):
    for name, sub in schema.get("properties", {}).items():
        yield prefix + (name,)
        yield from schema_paths(sub, prefix + (name,))


def value_paths(values: dict, schema: dict, prefix=()):
    """Paths of values.yaml down to where the schema stops describing named properties."""
    for name, value in values.items():
        path = prefix + (name,)
        yield path
        sub = schema.get("properties", {}).get(name, {})
        if isinstance(value, dict) and "properties" in sub:
            yield from value_paths(value, sub, path)


def test_schema_describes_every_value_and_accepts_the_defaults():
    schema = json.loads((CHART / "values.schema.json").read_text())
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert schema["$schema"] == "http://json-schema.org/draft-07/schema#"
    assert schema["additionalProperties"] is False
    jsonschema.Draft7Validator.check_schema(schema)
    jsonschema.Draft7Validator(schema).validate(values)
    described = set(schema_paths(schema))
    missing = [".".join(p) for p in value_paths(values, schema) if p not in described]
    assert not missing, f"values.yaml keys the schema does not describe: {missing}"
    for name in schema["properties"]:
        assert name in values, f"the schema describes {name}, values.yaml has no default"


# -- NOTES.txt -------------------------------------------------------------------------------

@pytest.mark.parametrize("config", ["defaults", "watch-namespace", "watch-namespaces", "no-rbac",
                                    "no-leader-election"])
def test_notes(config, tmp_path):
    sets = CONFIGS[config]
    notes = render_notes(tmp_path, *sets)
    namespaces = watched(dict(s.split("=", 1) for s in sets))
    ns = namespaces[0] if namespaces else "default"
    if namespaces:
        assert f"watching CachePairs in namespace{'s' if len(namespaces) > 1 else ''} " \
               f"{', '.join(namespaces)} only." in notes, notes
    else:
        assert "watching CachePairs in all namespaces." in notes, notes
    assert f"demo.{ns}.svc:11211" in notes
    assert f"kubectl get cp -n {ns}" in notes
    assert "apiVersion: cachepair.io/v1alpha1" in notes and "kind: CachePair" in notes
    assert "{{" not in notes and "<no value>" not in notes
    assert ("rbac.create is false" in notes) == (config == "no-rbac")


# -- deploy/ ---------------------------------------------------------------------------------

def deploy_files() -> list[Path]:
    return sorted(p for p in DEPLOY.rglob("*.yaml"))


def test_deploy_documents_are_well_formed():
    files = deploy_files()
    assert {p.relative_to(DEPLOY).as_posix() for p in files} >= {
        "namespace.yaml", "rbac.yaml", "operator.yaml", "kustomization.yaml",
        "samples/cachepair-service.yaml", "samples/cachepair-vrrp.yaml"}
    for path in files:
        docs = load_yaml_file(path)
        assert docs, f"{path} is empty"
        for d in docs:
            where = f"{path.relative_to(REPO)}: {d.get('kind')}"
            assert isinstance(d.get("apiVersion"), str) and d["apiVersion"], where
            assert isinstance(d.get("kind"), str) and d["kind"], where
            if d["kind"] != "Kustomization":
                assert d.get("metadata", {}).get("name"), f"{where} has no metadata.name"
            if d["kind"] not in CLUSTER_SCOPED | {"Kustomization"}:
                assert d["metadata"].get("namespace"), f"{where} has no namespace"


def test_kustomization_lists_every_manifest_in_order():
    crd_or_skip()  # deploy/crd.yaml comes with it
    kust = yaml.safe_load((DEPLOY / "kustomization.yaml").read_text())
    assert kust["apiVersion"] == "kustomize.config.k8s.io/v1beta1"
    assert kust["kind"] == "Kustomization"
    assert kust["resources"] == ["namespace.yaml", "crd.yaml", "rbac.yaml", "operator.yaml"]
    top_level = {p.name for p in DEPLOY.glob("*.yaml")} - {"kustomization.yaml"}
    assert set(kust["resources"]) == top_level
    for name in kust["resources"]:
        for d in load_yaml_file(DEPLOY / name):
            if d["kind"] not in CLUSTER_SCOPED:
                assert d["metadata"]["namespace"] == RELEASE_NAMESPACE, (name, d["kind"])
    ns = one(load_yaml_file(DEPLOY / "namespace.yaml"), "Namespace")
    assert ns["metadata"]["name"] == RELEASE_NAMESPACE
    assert ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"


def without_helm_labels(obj):
    if isinstance(obj, dict):
        return {k: without_helm_labels(v) for k, v in obj.items()
                if not (k in HELM_ONLY_LABELS and isinstance(v, str))}
    if isinstance(obj, list):
        return [without_helm_labels(v) for v in obj]
    return obj


def by_identity(docs):
    out = {}
    for d in docs:
        key = (d["kind"], d["metadata"].get("namespace"), d["metadata"]["name"])
        assert key not in out, f"twice: {key}"
        out[key] = d
    return out


def test_deploy_equals_the_charts_defaults():
    chart = by_identity(without_helm_labels(render()))
    plain = by_identity(load_yaml_file(DEPLOY / "rbac.yaml") +
                        load_yaml_file(DEPLOY / "operator.yaml"))
    assert sorted(plain) == sorted(chart)
    for key, obj in chart.items():
        assert plain[key] == obj, f"deploy/ and the chart differ on {key}"
    for d in plain.values():
        for label in HELM_ONLY_LABELS:
            assert label not in json.dumps(d), f"Helm label {label} in deploy/"


# -- the CRD ---------------------------------------------------------------------------------

def test_crd_copies_are_byte_identical():
    crd_or_skip()
    source = CRD_SOURCE.read_bytes()
    for copy_path in (CHART / "crds" / "cachepair.yaml", DEPLOY / "crd.yaml"):
        assert copy_path.is_file(), f"{copy_path.relative_to(REPO)} is missing"
        assert copy_path.read_bytes() == source, \
            f"{copy_path.relative_to(REPO)} differs from crds/cachepair.yaml: run scripts/crdgen.sh"


def test_crd_is_the_cachepair_api():
    crd = crd_or_skip()
    assert crd["apiVersion"] == "apiextensions.k8s.io/v1"
    assert crd["kind"] == "CustomResourceDefinition"
    assert crd["metadata"]["name"] == "cachepairs.cachepair.io"
    spec = crd["spec"]
    assert spec["group"] == "cachepair.io" and spec["scope"] == "Namespaced"
    names = spec["names"]
    assert (names["kind"], names["plural"]) == ("CachePair", "cachepairs")
    assert "cp" in names["shortNames"]
    (version,) = [v for v in spec["versions"] if v["name"] == "v1alpha1"]
    assert version["served"] and version["storage"]
    assert "status" in version["subresources"]
    columns = [c["name"] for c in version["additionalPrinterColumns"]
               if c.get("priority", 0) == 0]
    assert columns == ["Master", "Slave", "Phase", "Age"]
    # the chart's RBAC names the CRD's plural and group
    assert (spec["group"], names["plural"]) in NAMESPACED_RULES


# -- samples against the CRD's schema --------------------------------------------------------

SAMPLES = ["cachepair-service.yaml", "cachepair-vrrp.yaml"]


def sample_docs(name: str) -> list[dict]:
    return load_yaml_file(DEPLOY / "samples" / name)


def sample_pair(name: str) -> dict:
    return one(sample_docs(name), "CachePair")


@pytest.mark.parametrize("name", SAMPLES)
def test_sample_is_valid(name):
    crd = crd_or_skip()
    docs = sample_docs(name)
    for d in docs:
        assert d["kind"] in ("CachePair", "Secret"), d["kind"]
        assert d["metadata"]["namespace"] == "default"
    problems = crdschema.violations(crd, sample_pair(name))
    assert not problems, "\n".join(map(str, problems))


def test_service_sample_is_the_quick_start_demo():
    pair = sample_pair("cachepair-service.yaml")
    assert pair["metadata"]["name"] == "demo"
    assert pair["spec"]["exposure"]["service"]["type"] == "ClusterIP"
    assert "mode: sync" in (DEPLOY / "samples" / "cachepair-service.yaml").read_text()


def test_vrrp_sample_uses_documentation_addresses_and_its_secret():
    docs = sample_docs("cachepair-vrrp.yaml")
    vrrp = one(docs, "CachePair")["spec"]["exposure"]["vrrp"]
    assert vrrp["virtualIP"].startswith("192.0.2.")  # RFC 5737 TEST-NET-1
    assert vrrp["interface"] == "eth0" and vrrp["routerID"] == 51
    assert len(set(vrrp["nodes"])) == 2
    if vrrp.get("version", 3) == 2 and "authSecretName" in vrrp:
        secret = one(docs, "Secret", vrrp["authSecretName"])
        password = secret.get("stringData", {}).get("password")
        assert password and len(password) <= 8, "VRRPv2 PASS authentication: 8 characters at most"


def set_path(obj: dict, path: str, value):
    *parents, last = path.split(".")
    for p in parents:
        obj = obj.setdefault(p, {})
    if value is DELETE:
        del obj[last]
    else:
        obj[last] = value


DELETE = object()

INVALID = [
    # (sample, path, value, where the violation must be reported)
    ("cachepair-service.yaml", "spec.memoryMB", 0, "spec.memoryMB"),
    ("cachepair-service.yaml", "spec.replication.mode", "fast", "spec.replication.mode"),
    ("cachepair-service.yaml", "spec.memoryMb", 256, "spec"),  # unknown field (a typo)
    ("cachepair-service.yaml", "spec.port", 70000, "spec.port"),
    ("cachepair-service.yaml", "spec.threads", "four", "spec.threads"),
    ("cachepair-service.yaml", "spec.antiAffinity", "Sometimes", "spec.antiAffinity"),
    ("cachepair-service.yaml", "spec.exposure.service.type", "ExternalName",
     "spec.exposure.service.type"),
    ("cachepair-service.yaml", "spec.switchover", "", "spec.switchover"),
    ("cachepair-service.yaml", "spec.resources.limits.memory", [1], "spec.resources.limits.memory"),
    ("cachepair-vrrp.yaml", "spec.exposure.vrrp.routerID", 256, "spec.exposure.vrrp.routerID"),
    ("cachepair-vrrp.yaml", "spec.exposure.vrrp.virtualIP", DELETE, "spec.exposure.vrrp"),
    ("cachepair-vrrp.yaml", "spec.exposure.vrrp.nodes", ["worker-1"], "spec.exposure.vrrp.nodes"),
    # CEL rules (x-kubernetes-validations), evaluated after defaulting
    ("cachepair-vrrp.yaml", "spec.exposure.vrrp.nodes", ["worker-1", "worker-1"],
     "spec.exposure.vrrp.nodes"),
    ("cachepair-vrrp.yaml", "spec.exposure.vrrp.advertIntervalMillis", 1500,
     "spec.exposure.vrrp.advertIntervalMillis"),
    ("cachepair-vrrp.yaml", "spec.exposure.vrrp.version", DELETE,  # default 3: no auth there
     "spec.exposure.vrrp.authSecretName"),
    ("cachepair-vrrp.yaml", "spec.exposure.vrrp.virtualIP", "2001:db8::10",  # the sample is v2
     "spec.exposure.vrrp.virtualIP"),
    ("cachepair-vrrp.yaml", "spec.exposure.vrrp.advertIntervalMillis", 1005,
     "spec.exposure.vrrp.advertIntervalMillis"),
    ("cachepair-vrrp.yaml", "spec.exposure.service", {"type": "LoadBalancer"},
     "spec.exposure.service.type"),
    ("cachepair-service.yaml", "spec.podTemplate.labels", {"cachepair.io/role": "master"},
     "spec.podTemplate.labels"),
    ("cachepair-service.yaml", "spec.podTemplate.sidecars", [{"name": "cache-node", "image": "x"}],
     "spec.podTemplate.sidecars"),
    ("cachepair-service.yaml", "spec.podTemplate.env", [{"name": "POD_IP", "value": "1.2.3.4"}],
     "spec.podTemplate.env"),
    ("cachepair-service.yaml", "spec.podTemplate.securityContext", {"runAsUser": 0},
     "spec.podTemplate.securityContext.runAsUser"),
    ("cachepair-service.yaml", "spec.podTemplate.securityContext",
     {"seccompProfile": {"type": "Unconfined"}}, "spec.podTemplate.securityContext.seccompProfile.type"),
    ("cachepair-service.yaml", "spec.podTemplate.serviceAccountName", "", "spec.podTemplate.serviceAccountName"),
    ("cachepair-service.yaml", "spec.networkPolicy", {"allowedClients": [{}]},
     "spec.networkPolicy.allowedClients[0]"),
    ("cachepair-service.yaml", "spec.networkPolicy",
     {"allowedClients": [{"ipBlock": {"cidr": "10.0.0.0/8"}, "podSelector": {}}]},
     "spec.networkPolicy.allowedClients[0].ipBlock"),
    ("cachepair-service.yaml", "spec.networkPolicy",
     {"allowedMetricsScrapers": [{"ipBlock": {"cidr": "10.0.0.0"}}]},
     "spec.networkPolicy.allowedMetricsScrapers.0.ipBlock.cidr"),
]


@pytest.mark.parametrize("sample, path, value, where", INVALID,
                         ids=[f"{p}={'<deleted>' if v is DELETE else v}" for _, p, v, _ in INVALID])
def test_invalid_sample_is_rejected(sample, path, value, where):
    crd = crd_or_skip()
    pair = copy.deepcopy(sample_pair(sample))
    set_path(pair, path, value)
    problems = crdschema.violations(crd, pair)
    assert problems, f"{path}={value!r} was accepted"
    assert where in [p.path for p in problems], "\n".join(map(str, problems))


def test_network_policy_peers_are_networkpolicy_peers():
    crd = crd_or_skip()
    pair = copy.deepcopy(sample_pair("cachepair-service.yaml"))
    pair["spec"]["networkPolicy"] = {
        "allowedClients": [
            {"podSelector": {"matchLabels": {"app": "shop"}}},
            {"namespaceSelector": {"matchExpressions": [
                {"key": "kubernetes.io/metadata.name", "operator": "In", "values": ["web"]}]},
             "podSelector": {}},
            {"ipBlock": {"cidr": "10.8.0.0/16", "except": ["10.8.1.0/24"]}},
        ],
        "allowedMetricsScrapers": [
            {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}],
    }
    problems = crdschema.violations(crd, pair)
    assert not problems, "\n".join(map(str, problems))


def test_the_crd_fits_in_a_client_side_apply():
    """`kubectl apply` keeps the whole object in the last-applied annotation, which may hold
    256 KiB: the pod template's container schema must leave the CRD well under it."""
    crd = crd_or_skip()
    size = len(json.dumps(crd, separators=(",", ":")))
    assert size < 200 * 1024, f"the CRD is {size} bytes as JSON"


def test_defaults_make_a_minimal_pair_valid():
    crd = crd_or_skip()
    minimal = {"apiVersion": "cachepair.io/v1alpha1", "kind": "CachePair",
               "metadata": {"name": "m", "namespace": "default"}, "spec": {}}
    assert not crdschema.violations(crd, minimal)
    spec = crdschema.apply_defaults(crdschema.version_schema(crd, "v1alpha1"),
                                    copy.deepcopy(minimal))["spec"]
    assert spec["memoryMB"] == 64 and spec["port"] == 11211 and spec["adminPort"] == 9150
    assert spec["replication"]["port"] == 11212 and spec["replication"]["mode"] == "async"


# -- Dockerfiles -----------------------------------------------------------------------------

DOCKERFILES = {
    # Dockerfile: (crate directory, package, binary)
    "cache-node.Dockerfile": ("cache-node", "cache-node", "cache-node"),
    "operator.Dockerfile": ("operator", "operator", "cachepair-operator"),
}


def workspace_members() -> list[str]:
    return tomllib.loads((REPO / "Cargo.toml").read_text())["workspace"]["members"]


def dockerignored(path: str) -> bool:
    patterns = [p.strip() for p in (REPO / ".dockerignore").read_text().splitlines()
                if p.strip() and not p.startswith("#")]
    parts = path.split("/")
    prefixes = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
    for pat in patterns:
        for prefix in prefixes:
            if fnmatch.fnmatch(prefix, pat) or (pat.startswith("**/") and any(
                    fnmatch.fnmatch(seg, pat[3:]) for seg in prefix.split("/"))):
                return True
    return False


def test_dockerignore_keeps_the_context_small():
    for path in ("target/release/cache-node", ".git/HEAD", "cache-node/fuzz/target/x",
                 "cache-node/fuzz/artifacts/text/crash-1", "cache-node/fuzz/corpus/text/a",
                 "tests/bench/out/result.json"):
        assert dockerignored(path), f"{path} would be sent to the Docker daemon"


@pytest.mark.parametrize("name", sorted(DOCKERFILES))
def test_dockerfile(name):
    crate_dir, package, binary = DOCKERFILES[name]
    ins = images.instructions(REPO / "docker" / name)
    froms = [args for word, args in ins if word == "FROM"]
    assert froms == ["rust:1.95-bookworm AS builder", "gcr.io/distroless/cc-debian12:nonroot"]
    runtime = ins[[i for i, (w, _) in enumerate(ins) if w == "FROM"][1]:]
    build = ins[:len(ins) - len(runtime)]

    copies = [args.split() for word, args in build if word == "COPY"]
    sources = [s for c in copies for s in c[:-1] if not s.startswith("--")]
    for member in workspace_members():
        assert f"{member}/Cargo.toml" in sources, \
            f"{name} does not copy workspace member {member}'s manifest (cargo needs all)"
    assert {"Cargo.toml", "Cargo.lock", f"{crate_dir}/src"} <= set(sources)
    for src in sources:
        assert not dockerignored(src), f"{src} is excluded by .dockerignore"

    runs = " ".join(args for word, args in build if word == "RUN")
    assert runs.count(f"cargo build --release --locked -p {package} --bin {binary}") == 2, \
        "one dependency build with stubs, one real build"
    assert f"find {crate_dir}/src -name '*.rs' -exec touch" in runs, \
        "the real sources must be newer than the stubs' build"
    assert f"target/release/{binary} /out/{binary}" in runs

    assert ("COPY", f"--from=builder /out/{binary} /usr/local/bin/{binary}") in runtime
    assert ("USER", "65532:65532") in runtime
    assert ("ENTRYPOINT", f'["/usr/local/bin/{binary}"]') in runtime
    labels = " ".join(args for word, args in runtime if word == "LABEL")
    for key in ("title", "description", "version", "revision", "source", "licenses"):
        assert f"org.opencontainers.image.{key}=" in labels
    exposed = " ".join(args for word, args in runtime if word == "EXPOSE").split()
    assert exposed == (["11211/tcp", "11212/tcp", "9150/tcp"] if package == "cache-node"
                       else ["8080/tcp"])


@pytest.mark.parametrize("name", sorted(DOCKERFILES))
def test_dockerfile_builds_what_the_crate_declares(name):
    crate_dir, package, binary = DOCKERFILES[name]
    manifest_path = REPO / crate_dir / "Cargo.toml"
    if not manifest_path.is_file():
        pytest.skip(f"{crate_dir}/ is not on this branch yet")
    if crate_dir not in workspace_members():
        pytest.skip(f"{crate_dir} is not a workspace member on this branch yet")
    manifest = tomllib.loads(manifest_path.read_text())
    assert manifest["package"]["name"] == package
    bins = {b["name"]: b["path"] for b in manifest.get("bin", [])}
    assert binary in bins, f"{package} declares no binary {binary}"
    stubbed = {f"{crate_dir}/{p}" for p in [*bins.values(), manifest.get("lib", {}).get("path")]
               if p}
    runs = " ".join(args for word, args in images.instructions(REPO / "docker" / name)
                    if word == "RUN")
    for path in stubbed:
        assert path in runs, f"{name} stubs no {path} for the dependency layer"
    members = workspace_members()
    for word, args in images.instructions(REPO / "docker" / name):
        if word == "COPY" and not args.startswith("--from"):
            for src in args.split()[:-1]:
                if not (REPO / src).exists() and not any(src.startswith(m + "/") for m in members):
                    pytest.skip(f"{name} copies {src}, not on this branch yet")
                assert (REPO / src).exists(), f"{name} copies {src}, which does not exist"
    assert not (REPO / crate_dir / "build.rs").exists(), \
        f"{crate_dir}/build.rs: copy it into the image's build stage"
