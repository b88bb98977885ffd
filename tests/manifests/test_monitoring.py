"""The chart's observability kit: the PrometheusRule (checked and unit-tested with promtool) and
the Grafana dashboard, and that every metric they name is one cache-node really exports.

promtool is ``$PROMTOOL``, else the one tests/setup.sh builds into
``${XDG_CACHE_HOME:-~/.cache}/cachepair/tools/promtool-<tests/manifests/promtool-version>/``.
The operator's metric names are checked by the operator's own tests (``metrics.rs``), which
render its registry.
"""

from __future__ import annotations

import functools
import json
import os
import re
import shutil
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from chartkit import CHART, REPO, find, one, render

HERE = Path(__file__).parent
MONITORING = ("prometheusRule.enabled=true", "grafanaDashboard.enabled=true")
DASHBOARD = CHART / "dashboards" / "cachepair.json"
# Metrics of the members (cache-node's /metrics); cachepair_operator_* are the operator's.
NODE_METRIC = re.compile(r"\b((?:memcached|cachepair_replication|cachepair_memory)_[a-z_]+)")
PROMTOOL_TIMEOUT = 60.0


@functools.cache
def promtool() -> Path:
    version = (HERE / "promtool-version").read_text().strip()
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    default = cache / "cachepair" / "tools" / f"promtool-{version}" / "promtool"
    path = Path(os.environ.get("PROMTOOL") or default)
    if not (path.is_file() and os.access(path, os.X_OK)):
        pytest.fail(f"promtool not found or not executable: {path}\n"
                    f"(tests/setup.sh builds promtool {version} there; or set $PROMTOOL)",
                    pytrace=False)
    return path


def run_promtool(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(promtool()), *args], cwd=cwd, capture_output=True, text=True,
                          timeout=PROMTOOL_TIMEOUT, stdin=subprocess.DEVNULL)


def rule_groups(*sets: str) -> dict:
    rule = one(render(*MONITORING, *sets), "PrometheusRule")
    return rule["spec"]


def exprs(groups: dict) -> dict[str, str]:
    return {r["alert"]: r["expr"] for g in groups["groups"] for r in g["rules"]}


def dashboard_exprs(dashboard: dict) -> list[str]:
    return [t["expr"] for p in dashboard["panels"] for t in p["targets"]]


def test_nothing_is_rendered_unless_asked_for():
    docs = render()
    assert not find(docs, "PrometheusRule") and not find(docs, "ConfigMap")


def test_the_rules_pass_promtool_check(tmp_path):
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump(rule_groups()))
    proc = run_promtool("check", "rules", "rules.yaml", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS: 8 rules found" in proc.stdout, proc.stdout


def test_the_alerts_fire_when_they_should_and_not_before(tmp_path):
    """alerts-test.yaml: for each alert, a healthy stretch with no alert, then the condition
    held long enough, with the labels and text an on-call engineer gets."""
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump(rule_groups()))
    shutil.copy(HERE / "alerts-test.yaml", tmp_path / "alerts-test.yaml")
    proc = run_promtool("test", "rules", "alerts-test.yaml", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    tested = set(re.findall(r"alertname: (\w+)", (HERE / "alerts-test.yaml").read_text()))
    assert tested == set(exprs(rule_groups())), "every alert has a unit test"


def test_thresholds_come_from_values():
    rules = exprs(rule_groups("prometheusRule.lagP99Seconds=3",
                              "prometheusRule.evictionsPerSecond=7",
                              "prometheusRule.authFailuresPer5m=3"))
    assert rules["CachePairReplicationLagHigh"].strip().endswith("> 3")
    assert rules["CachePairEvictions"].strip().endswith("> 7")
    assert rules["CachePairAuthFailures"].strip().endswith("> 3")
    durations = {r["alert"]: r.get("for") for g in rule_groups("prometheusRule.degradedFor=1h")["groups"]
                 for r in g["rules"]}
    assert durations["CachePairDegraded"] == "1h"


def test_extra_labels_select_the_rule_and_the_dashboard():
    docs = render(*MONITORING, "prometheusRule.labels.release=prom",
                  "grafanaDashboard.namespace=grafana")
    assert one(docs, "PrometheusRule")["metadata"]["labels"]["release"] == "prom"
    cm = one(docs, "ConfigMap")
    assert cm["metadata"]["namespace"] == "grafana"
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"


def test_the_dashboard_configmap_carries_the_dashboard():
    cm = one(render(*MONITORING), "ConfigMap")
    shipped = json.loads(cm["data"]["cachepair.json"])
    assert shipped == json.loads(DASHBOARD.read_text())
    titles = {p["title"] for p in shipped["panels"]}
    assert {"Role", "Operations per second", "Hit ratio", "Memory", "Evictions per second",
            "Replication lag", "Failovers"} <= titles
    variables = [v["name"] for v in shipped["templating"]["list"]]
    assert variables == ["datasource", "namespace", "pair"]
    ids = [p["id"] for p in shipped["panels"]]
    assert len(ids) == len(set(ids)), "panel ids are unique"
    for p in shipped["panels"]:
        for t in p["targets"]:
            assert re.search(r'namespace="\$namespace", (cachepair_io_pair|pair)="\$pair"', t["expr"]), \
                f"{p['title']}: every query is scoped to the chosen pair"


def test_the_dashboard_queries_parse(tmp_path):
    """Each dashboard query, with Grafana's variables filled in, as a recording rule that
    promtool parses."""
    rules = []
    for i, expr in enumerate(dashboard_exprs(json.loads(DASHBOARD.read_text()))):
        filled = (expr.replace("$namespace", "shop").replace("$pair", "cart")
                  .replace("$__rate_interval", "1m").replace("$__range", "1h"))
        rules.append({"record": f"dashboard:query{i}", "expr": filled})
    (tmp_path / "dashboard.yaml").write_text(yaml.safe_dump({"groups": [{"name": "d", "rules": rules}]}))
    proc = run_promtool("check", "rules", "dashboard.yaml", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def node_metrics(tmp_path):
    """The series names a cache-node with replication on exports (its peer is not there)."""
    binary = Path(os.environ.get("CACHE_NODE_BIN") or REPO / "target" / "debug" / "cache-node")
    if not binary.is_file():
        pytest.fail(f"{binary} not built (cargo build -p cache-node)", pytrace=False)
    admin = free_port()
    argv = [str(binary), "-l", "127.0.0.1", "-p", str(free_port()), "-X", str(free_port()),
            "-x", f"127.0.0.1:{free_port()}", "--admin-listen", f"127.0.0.1:{admin}"]
    if os.geteuid() == 0:
        argv += ["-u", "nobody"]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{admin}/metrics", timeout=2) as r:
                    text = r.read().decode()
                if "cachepair_replication_role" in text:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, "cache-node's /metrics did not answer in 10 s"
            time.sleep(0.1)
    finally:
        proc.kill()
        proc.wait(timeout=10)
    return {line.split("{")[0].split(" ")[0] for line in text.splitlines()
            if line and not line.startswith("#")}


def test_every_member_metric_named_exists(node_metrics):
    named = set()
    for expr in list(exprs(rule_groups()).values()) + dashboard_exprs(json.loads(DASHBOARD.read_text())):
        named |= set(NODE_METRIC.findall(expr))
    assert named, "the rules and dashboard name member metrics"
    missing = sorted(named - node_metrics)
    assert not missing, f"named but not exported by cache-node: {missing}"
