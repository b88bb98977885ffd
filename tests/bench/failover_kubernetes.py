#!/usr/bin/env python3
"""Failover as the client sees it, on Kubernetes: the end-to-end scenarios, several runs.

Runs the end-to-end tests that measure failover through a pair's client Service (tests/e2e,
against a real control plane with Kubernetes' default node-monitor grace period; as root, after
tests/controlplane/build.sh), RUNS times, and collects the lines they print:

- ``bench | <scenario> | longest gap N ms | A acknowledged writes, L lost | F failed requests``:
  what the test's client saw. It follows the Service's ready endpoints as kube-proxy does and
  writes ``set`` one at a time (see tests/e2e/src/client.rs);
- the routing measurements: after a node loss, how long after the promotion the Service held
  only the live master (operator running) or how long the dead master stayed an endpoint
  (operator stopped); during a partition, the longest time with two endpoints; how long
  ``kubectl drain`` took.

Writes failover-kubernetes.md, failover-kubernetes.json and failover-kubernetes.png to the
output directory (default tests/bench/out/) and prints the table. Each test asserts its own
bounds; a failing test fails this script.

Examples:
  python3 tests/bench/failover_kubernetes.py --runs 3    # ~8 minutes
  python3 tests/bench/failover_kubernetes.py --runs 1 --tests b_failover
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
from pathlib import Path

from benchlib import DEFAULT_OUT, REPO, log

TESTS = ("b_failover", "c_a_deleted", "k_a_lost", "l_a_partition", "m_a_drain", "n_an_autoscaler", "o_an_eviction")

BENCH = re.compile(
    r"bench \| (?P<scenario>[^|]+?) \| longest gap (?P<gap>\d+) ms \| (?P<acked>\d+) acknowledged writes, "
    r"(?P<lost>\d+) lost \| (?P<failed>\d+) failed requests \| (?P<command>.+)$"
)
DURATION = r"([\d.]+)(ns|µs|ms|s)"
# Routing measurements, as (name, pattern of the line, index of the duration in it).
ROUTING = (
    ("node loss: only the live master, after the promotion",
     re.compile(rf"node loss: promoted {DURATION} after .*only the live master {DURATION} later"), 1),
    ("node loss, operator stopped: the dead master stays an endpoint",
     re.compile(rf"node loss without the operator: promoted {DURATION} .*stayed an endpoint {DURATION} longer"), 1),
    ("partition: longest time with two endpoints",
     re.compile(rf"the Service's longest time with two endpoints: {DURATION}"), 0),
    ("kubectl drain of the master's node: completed in", re.compile(rf"kubectl drain completed in {DURATION}"), 0),
)
UNITS = {"ns": 1e-9, "µs": 1e-6, "ms": 1e-3, "s": 1.0}


def seconds(match: re.Match, index: int) -> float:
    value, unit = match.group(2 * index + 1), match.group(2 * index + 2)
    return float(value) * UNITS[unit]


def parse(output: str) -> tuple[list[dict], list[dict]]:
    """The bench lines and the routing measurements in one run's output."""
    bench, routing = [], []
    for line in output.splitlines():
        if m := BENCH.search(line):
            bench.append({
                "scenario": m["scenario"], "gap_s": int(m["gap"]) / 1000, "acked": int(m["acked"]),
                "lost": int(m["lost"]), "failed": int(m["failed"]), "command": m["command"].strip(),
            })
        for name, pattern, index in ROUTING:
            if m := pattern.search(line):
                routing.append({"measurement": name, "seconds": seconds(m, index)})
    return bench, routing


def run_once(n: int, tests: list[str], timeout: float) -> tuple[list[dict], list[dict]]:
    argv = ["cargo", "test", "-p", "e2e", "--test", "e2e", "--", *tests]
    log(f"run {n}: {' '.join(argv)}")
    done = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=timeout)
    output = done.stdout + done.stderr
    if done.returncode != 0:
        raise SystemExit(f"run {n} failed (rc={done.returncode}):\n{output[-4000:]}")
    bench, routing = parse(output)
    if not bench:
        raise SystemExit(f"run {n}: no bench lines in the output:\n{output[-4000:]}")
    for b in bench:
        log(f"  {b['scenario']}: longest gap {b['gap_s'] * 1000:.0f} ms, {b['acked']} acknowledged, {b['lost']} lost")
    return bench, routing


def table(runs: list[dict], n_runs: int) -> str:
    def spread(values: list[float], unit: str = "s") -> str:
        return f"{statistics.median(values):.2f} {unit} / {max(values):.2f} {unit}"

    lines = [
        f"| scenario ({n_runs} runs) | longest gap, median / max | acknowledged writes lost | failed requests, median | command |",
        "|---|---:|---:|---:|---|",
    ]
    for scenario in dict.fromkeys(b["scenario"] for r in runs for b in r["bench"]):
        rows = [b for r in runs for b in r["bench"] if b["scenario"] == scenario]
        lost, acked = sum(b["lost"] for b in rows), sum(b["acked"] for b in rows)
        failed = statistics.median(b["failed"] for b in rows)
        lines.append(f"| {scenario} | {spread([b['gap_s'] for b in rows])} | {lost} of {acked:,} "
                     f"| {failed:g} | `{rows[0]['command']}` |")
    lines += ["", "| routing | median / max |", "|---|---:|"]
    for name, _, _ in ROUTING:
        values = [m["seconds"] for r in runs for m in r["routing"] if m["measurement"] == name]
        if values:
            lines.append(f"| {name} | {spread(values)} |")
    return "\n".join(lines) + "\n"


def plot(runs: list[dict], path: Path) -> None:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log("matplotlib missing: no plot (pip install -r tests/bench/requirements.txt)")
        return
    scenarios = list(dict.fromkeys(b["scenario"] for r in runs for b in r["bench"]))
    fig, ax = plt.subplots(figsize=(9, 4.5))
    for i, scenario in enumerate(scenarios):
        gaps = [b["gap_s"] for r in runs for b in r["bench"] if b["scenario"] == scenario]
        ax.barh(i, statistics.median(gaps), 0.6, color="tab:blue")
        ax.scatter(gaps, [i] * len(gaps), color="black", s=10, zorder=3)
    ax.set_yticks(range(len(scenarios)))
    ax.set_yticklabels(scenarios)
    ax.invert_yaxis()
    ax.set_xlabel("longest gap between acknowledged writes through the Service (s)")
    ax.set_title("Client gap through the Service (bars: median; dots: runs)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", type=int, default=3, help="runs of the e2e scenarios (default %(default)s)")
    p.add_argument("--tests", default=",".join(TESTS), help="comma-separated e2e test filters (default: %(default)s)")
    p.add_argument("--timeout", type=float, default=900, help="seconds allowed per run (default %(default)s)")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = p.parse_args()
    if os.geteuid() != 0:
        print("failover_kubernetes.py needs root: the e2e suite runs in a network namespace of its own",
              file=sys.stderr)
        return 2
    tests = [t for t in args.tests.split(",") if t]
    runs = []
    for n in range(1, args.runs + 1):
        bench, routing = run_once(n, tests, args.timeout)
        runs.append({"run": n, "bench": bench, "routing": routing})
    md = table(runs, args.runs)
    command = f"python3 tests/bench/failover_kubernetes.py --runs {args.runs}" + \
        (f" --tests {args.tests}" if args.tests != ",".join(TESTS) else "")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "failover-kubernetes.md").write_text(f"`{command}`\n\n{md}")
    (args.out / "failover-kubernetes.json").write_text(
        json.dumps({"command": command, "runs": runs}, indent=2) + "\n")
    plot(runs, args.out / "failover-kubernetes.png")
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
