#!/usr/bin/env python3
"""Failover as the client sees it, VRRP mode: cache-node's stack against the seed's, side by side.

Needs root (network namespaces, raw sockets), keepalived and pymemcache. The script builds a
LAN of network namespaces of its own: a bridge, hosts a (192.0.2.1) and b (192.0.2.2), each
running a cache-node of one replicated pair (`-x` the other, `--repl-mode sync` by default),
and a client c (192.0.2.3). The virtual address is 192.0.2.100. Two stacks hold it:

- ``cache-node``: ``cache-node vrrp`` on both hosts with the keepalived.conf the operator
  renders by default (VRRPv3, advert_int 0.1, both BACKUP with nopreempt, tracking
  ``cache-node is-master``, which cache-node vrrp follows in-process every 20 ms). The files
  are cache-node/tests/vrrp/operator-{a,b}.conf, which the operator's tests assert equal to
  its rendering.
- ``seed``: keepalived 2.2.7 with the seed article's keepalived.conf (VRRPv2, advert_int 1,
  priorities 150/100, nopreempt, garp_master_delay 10, PASS, track_interface, notify hooks, and
  a ``vrrp_script`` asking the local cache for ``stats`` every 2 s, fall 3). The seed ran
  repcached, which cannot be installed here; both stacks front the same cache-node pair, so
  the difference is the VRRP side alone. Two deviations, both needed by keepalived 2.2.7:
  ``script_user root``, and the check talks to the cache through bash's /dev/tcp because nc
  is not installed (its ``[ "$status" > 0 ]`` is a redirect, so it tests for a non-empty
  pid; we test that directly).

The client on c writes ``set`` through the virtual IP with pymemcache (100 ms timeouts, a
fresh connection after any error) and records the time of every acknowledged write. After
1.5 s of writing, host a's master fails in one of four ways:

- ``kill``: the master cache is SIGKILLed;
- ``term``: the master cache is SIGTERMed (a graceful stop: it hands its role over);
- ``host``: the master host dies: every process on it is SIGSTOPped and its link goes down
  (its kernel is gone too), then everything is SIGKILLed;
- ``freeze``: every process on a is SIGSTOPped, but its kernel still accepts connections.

Reported per stack and scenario: the longest gap between two acknowledged writes (median and
max over the trials) and the acknowledged writes missing on the new master afterwards (zero
expected with --repl-mode sync). Stacks alternate trial by trial.

Writes failover-vrrp.md, failover-vrrp.json and failover-vrrp.png to the output directory
(default tests/bench/out/), and prints the table.

Examples:
  python3 tests/bench/failover_vrrp.py --build          # 5 trials per stack and scenario
  python3 tests/bench/failover_vrrp.py --quick          # smoke run: 1 trial, kill only
  python3 tests/bench/failover_vrrp.py --repl-mode async
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchlib import DEFAULT_CACHE_NODE, DEFAULT_OUT, REPO, cargo_build, log, spawn, stop, stop_all

VIP = "192.0.2.100"
ADMIN = "127.0.0.1:9150"
STACKS = ("cache-node", "seed")
SCENARIOS = ("kill", "term", "host", "freeze")
BEFORE = 1.5  # seconds of writing before the fault

SEED_CONF = """global_defs {{
    router_id Load-Balancer-{n}
    script_user root
}}
vrrp_script check_mem {{
    script "{check}"
    interval 2
    fall 3
}}
vrrp_instance haproxy {{
    state BACKUP
    interface eth0
    virtual_router_id 110
    priority {priority}
    advert_int 1
    nopreempt
    garp_master_delay 10
    track_interface {{
        eth0
    }}
    authentication {{
        auth_type PASS
        auth_pass flaginfo
    }}
    virtual_ipaddress {{
        {vip}
    }}
    track_script {{
        check_mem
    }}
    notify_master "/bin/bash {notify} Master"
    notify_backup "/bin/bash {notify} Backup"
    notify_fault "/bin/bash {notify} Fault"
    notify_stop "/bin/bash {notify} Stop"
}}
"""

CHECK_MEM = """#!/bin/bash
status=$(timeout 1 bash -c 'exec 3<>/dev/tcp/127.0.0.1/11211; printf "stats\\r\\nquit\\r\\n" >&3; cat <&3' \\
    | grep pid | awk '{print $3}')
if [ -n "$status" ]; then
    exit 0
else
    exit 1
fi
"""

# The client: `set` through the VIP until writes flow again for 1 s after the longest gap since
# the fault (signalled by the bench creating the file FAULT), 2 s at least and 15 s at most
# after it. Prints the longest gap and the acknowledged keys as JSON.
CLIENT = r"""
import json, os, sys, time
from pymemcache.client.base import Client
vip, fault_file = sys.argv[1], sys.argv[2]
c = Client((vip, 11211), connect_timeout=0.1, timeout=0.1, no_delay=True)
times, keys, i = [], [], 0
fault = recovered = None  # when the fault was seen; the ack that ended the longest gap since
worst = 0.0
start = time.monotonic()
while time.monotonic() - start < 60:
    now = time.monotonic()
    if fault is None and os.path.exists(fault_file):
        fault = now
    flowing = times and now - times[-1] < 0.1
    if fault is not None and (now - fault > 15 or (recovered and now - fault > 2 and flowing and now - recovered > 1)):
        break
    key = f"k{i}"
    i += 1
    try:
        if c.set(key, b"v" * 100, noreply=False):
            t = time.monotonic()
            if fault is not None and t - max(times[-1], fault) > worst:
                worst, recovered = t - max(times[-1], fault), t
            times.append(t)
            keys.append(key)
            if len(times) == 1:
                print("writing", file=sys.stderr, flush=True)
    except Exception:
        c.close()
        time.sleep(0.005)
times.append(time.monotonic())
gap = max(b - a for a, b in zip(times, times[1:]))
print(json.dumps({"gap_s": gap, "acked": keys}))
"""

# Counts the keys (one per line on stdin) missing on the cache at argv[1].
MISSING = r"""
import sys
from pymemcache.client.base import Client
c = Client((sys.argv[1], 11211), connect_timeout=2, timeout=5)
keys = sys.stdin.read().split()
missing = 0
for n in range(0, len(keys), 100):
    batch = keys[n:n + 100]
    missing += len(batch) - len(c.get_many(batch))
print(missing)
"""


def ip(*args: str) -> str:
    r = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=10)
    if r.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {r.stderr.strip()}")
    return r.stdout


class Lan:
    """A bridge and hosts a, b, c in namespaces of this trial; deleted by close()."""

    def __init__(self, trial: int) -> None:
        self.tag = f"cpfv{os.getpid()}x{trial}"
        self.made: list[str] = []
        switch = self.ns("lan")
        self._add(switch)
        ip("-n", switch, "link", "add", "br0", "type", "bridge")
        ip("-n", switch, "link", "set", "br0", "up")
        for i, host in enumerate(("a", "b", "c"), start=1):
            ns = self.ns(host)
            self._add(ns)
            ip("-n", ns, "link", "set", "lo", "up")
            ip("-n", ns, "link", "add", "eth0", "type", "veth", "peer", "name", f"p{i}", "netns", switch)
            ip("-n", ns, "addr", "add", f"192.0.2.{i}/24", "dev", "eth0")
            ip("-n", ns, "link", "set", "eth0", "up")
            ip("-n", switch, "link", "set", f"p{i}", "master", "br0", "up")

    def _add(self, ns: str) -> None:
        ip("netns", "add", ns)
        self.made.append(ns)

    def ns(self, host: str) -> str:
        return f"{self.tag}-{host}"

    def holds(self, host: str) -> bool:
        return f" {VIP}/" in ip("-n", self.ns(host), "-o", "addr", "show", "dev", "eth0")

    def signal_host(self, host: str, sig: int) -> None:
        for pid in ip("netns", "pids", self.ns(host)).split():
            try:
                os.kill(int(pid), sig)
            except ProcessLookupError:
                pass

    def close(self) -> None:
        for host in ("a", "b", "c"):
            self.signal_host(host, signal.SIGKILL)
        for ns in reversed(self.made):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=10)


def wait(what: str, cond, limit: float = 15.0) -> None:
    deadline = time.monotonic() + limit
    while not cond():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.02)


def run_in(lan: Lan, host: str, argv: list[str], **kw) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", "netns", "exec", lan.ns(host), *argv], capture_output=True, text=True,
                          timeout=30, **kw)


def trial(n: int, stack: str, scenario: str, args, work: Path) -> dict:
    lan = Lan(n)
    procs: list[subprocess.Popen] = []
    logs = []

    def start(host: str, name: str, argv: list[str], pipe: bool = False) -> subprocess.Popen:
        if pipe:
            p = spawn(["ip", "netns", "exec", lan.ns(host), *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                      text=True)
        else:
            out = open(work / f"{n}-{stack}-{scenario}-{name}.log", "w")
            logs.append(out)
            p = spawn(["ip", "netns", "exec", lan.ns(host), *argv], stdout=out, stderr=subprocess.STDOUT)
        procs.append(p)
        return p

    cn = str(args.cache_node)

    def is_master(host: str) -> bool:
        return run_in(lan, host, [cn, "is-master", "--admin", ADMIN]).returncode == 0

    def linked_slave() -> bool:
        r = run_in(lan, "b", [sys.executable, "-c",
                              f"import urllib.request; print(urllib.request.urlopen('http://{ADMIN}/metrics', "
                              "timeout=1).read().decode())"])
        return 'cachepair_replication_role{role="slave"} 1' in r.stdout and "link_up 1" in r.stdout

    try:
        cache = [cn, "--allow-root", "-p", "11211", "-X", "11212", "--repl-mode", args.repl_mode,
                 "--admin-listen", ADMIN]
        cache_a = start("a", "cache-a", cache + ["-x", "192.0.2.2"])
        wait("cache-a to become master", lambda: is_master("a"))
        start("b", "cache-b", cache + ["-x", "192.0.2.1"])
        wait("cache-b to join as slave", linked_slave)
        for host, priority in (("a", 150), ("b", 100)):
            if stack == "cache-node":
                text = (REPO / "cache-node" / "tests" / "vrrp" / f"operator-{host}.conf").read_text()
                conf = work / f"operator-{host}.conf"
                conf.write_text(text.replace("/usr/local/bin/cache-node", cn))
                start(host, f"vrrp-{host}", [cn, "vrrp", "--config", str(conf)])
            else:
                check = work / "check_mem.sh"
                check.write_text(CHECK_MEM)
                check.chmod(0o755)
                notify = work / "notify.sh"
                notify.write_text(f'#!/bin/bash\necho $(date +%F-%T)" Change to $1" >> {work}/notify.log\n')
                conf = work / f"seed-{host}.conf"
                conf.write_text(SEED_CONF.format(n=1 if host == "a" else 2, check=check, priority=priority,
                                                 vip=VIP, notify=notify))
                start(host, f"keepalived-{host}", [args.keepalived, "--dont-fork", "--vrrp", "-f", str(conf),
                                                   "-p", str(work / f"ka-{n}-{host}.pid"),
                                                   "-r", str(work / f"ka-{n}-{host}.vrrp.pid")])
        wait(f"{VIP} on a", lambda: lan.holds("a"), limit=20)
        fault_file = work / f"fault-{n}"
        client = start("c", "client", [sys.executable, "-c", CLIENT, VIP, str(fault_file)], pipe=True)
        line = client.stderr.readline()
        if "writing" not in line:
            raise RuntimeError(f"the client did not start writing: {line}{client.stderr.read()}")
        time.sleep(BEFORE)
        fault_file.touch()
        if scenario == "kill":
            cache_a.send_signal(signal.SIGKILL)
        elif scenario == "term":
            cache_a.send_signal(signal.SIGTERM)
        else:
            lan.signal_host("a", signal.SIGSTOP)
            if scenario == "host":
                ip("-n", lan.ns("a"), "link", "set", "eth0", "down")
        out, err = client.communicate(timeout=60)
        if client.returncode != 0:
            raise RuntimeError(f"the client failed: {err}")
        result = json.loads(out.strip().splitlines()[-1])
        lan.signal_host("a", signal.SIGKILL)
        wait(f"{VIP} on b", lambda: lan.holds("b"))
        # Straight to b's cache: the VIP may take a moment to settle for the check itself.
        r = run_in(lan, "c", [sys.executable, "-c", MISSING, "192.0.2.2"], input="\n".join(result["acked"]))
        if r.returncode != 0:
            raise RuntimeError(f"counting lost writes: {r.stderr}")
        return {"stack": stack, "scenario": scenario, "repl_mode": args.repl_mode, "gap_s": result["gap_s"],
                "acked": len(result["acked"]), "lost": int(r.stdout.strip())}
    finally:
        lan.signal_host("a", signal.SIGKILL)
        for p in procs:
            stop(p, grace=2.0)
        for f in logs:
            f.close()
        for pid_file in work.glob(f"ka-{n}-*.pid"):
            try:
                os.kill(int(pid_file.read_text().strip()), signal.SIGKILL)
            except (ValueError, ProcessLookupError):
                pass
        lan.close()


def table(runs: list[dict], trials: int, scenarios: tuple[str, ...], mode: str) -> str:
    def pick(stack: str, sc: str) -> list[dict]:
        return [r for r in runs if r["stack"] == stack and r["scenario"] == sc]

    names = {"kill": "master cache SIGKILLed", "term": "master cache SIGTERMed (graceful)",
             "host": "master host dies (frozen, link down)", "freeze": "master host's processes frozen (kernel up)"}
    lines = [
        f"| scenario ({trials} trials, --repl-mode {mode}) | cache-node: longest gap, median / max "
        "| seed keepalived: longest gap, median / max | ratio of medians | writes lost, cache-node / seed |",
        "|---|---:|---:|---:|---:|",
    ]
    for sc in scenarios:
        cn, seed = pick("cache-node", sc), pick("seed", sc)
        cm, cx = statistics.median(r["gap_s"] for r in cn), max(r["gap_s"] for r in cn)
        sm, sx = statistics.median(r["gap_s"] for r in seed), max(r["gap_s"] for r in seed)
        lost = f"{sum(r['lost'] for r in cn)} / {sum(r['lost'] for r in seed)}"
        lines.append(f"| {names[sc]} | {cm:.2f} s / {cx:.2f} s | {sm:.2f} s / {sx:.2f} s | {cm / sm:.2f} | {lost} |")
    return "\n".join(lines) + "\n"


def plot(runs: list[dict], scenarios: tuple[str, ...], path: Path) -> None:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log("matplotlib missing: no plot (pip install -r tests/bench/requirements.txt)")
        return
    fig, ax = plt.subplots(figsize=(8, 4))
    width = 0.38
    for k, (stack, color) in enumerate((("cache-node", "tab:blue"), ("seed", "tab:orange"))):
        for i, sc in enumerate(scenarios):
            gaps = [r["gap_s"] for r in runs if r["stack"] == stack and r["scenario"] == sc]
            x = i + (k - 0.5) * width
            ax.bar(x, statistics.median(gaps), width * 0.9, color=color,
                   label=("cache-node vrrp, operator defaults" if stack == "cache-node" else
                          "keepalived, the seed's keepalived.conf") if i == 0 else None)
            ax.scatter([x] * len(gaps), gaps, color="black", s=8, zorder=3)
    ax.set_xticks(range(len(scenarios)))
    ax.set_xticklabels(scenarios)
    ax.set_ylabel("longest gap between acknowledged writes (s)")
    ax.set_title("Failover through the VIP as a client sees it (bars: median, dots: trials)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--build", action="store_true", help="cargo build --release -p cache-node first")
    p.add_argument("--quick", action="store_true", help="smoke run: 1 trial of the kill scenario")
    p.add_argument("--trials", type=int, default=None, help="trials per stack and scenario (default 5)")
    p.add_argument("--scenarios", default=",".join(SCENARIOS), help="comma-separated (default: %(default)s)")
    p.add_argument("--repl-mode", choices=("sync", "async"), default="sync")
    p.add_argument("--cache-node", type=Path, default=DEFAULT_CACHE_NODE, help="cache-node binary (default: %(default)s)")
    p.add_argument("--keepalived", default=shutil.which("keepalived") or "/usr/sbin/keepalived")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = p.parse_args()
    if os.geteuid() != 0:
        print("failover_vrrp.py needs root: it creates network namespaces and runs VRRP speakers", file=sys.stderr)
        return 2
    if args.build:
        cargo_build(["cache-node"])
    for binary in (args.cache_node, Path(args.keepalived)):
        if not binary.exists():
            print(f"missing {binary}", file=sys.stderr)
            return 2
    trials = args.trials or (1 if args.quick else 5)
    scenarios = ("kill",) if args.quick else tuple(s for s in args.scenarios.split(",") if s)
    args.out.mkdir(parents=True, exist_ok=True)
    runs: list[dict] = []
    n = 0
    try:
        with tempfile.TemporaryDirectory(prefix="cachepair-failover-vrrp-") as work:
            for round_ in range(trials):
                order = STACKS if round_ % 2 == 0 else tuple(reversed(STACKS))
                for scenario in scenarios:
                    for stack in order:
                        n += 1
                        r = trial(n, stack, scenario, args, Path(work))
                        log(f"{stack:10} {scenario:6} longest gap {r['gap_s'] * 1000:7.1f} ms, "
                            f"{r['acked']} acknowledged, {r['lost']} lost")
                        runs.append(r)
    finally:
        stop_all()
    md = table(runs, trials, scenarios, args.repl_mode)
    command = "python3 tests/bench/failover_vrrp.py" + (" --quick" if args.quick else "") + \
        (f" --trials {args.trials}" if args.trials else "") + \
        (f" --repl-mode {args.repl_mode}" if args.repl_mode != "sync" else "")
    suffix = "" if args.repl_mode == "sync" else f"-{args.repl_mode}"
    (args.out / f"failover-vrrp{suffix}.md").write_text(f"`{command}`\n\n{md}")
    (args.out / f"failover-vrrp{suffix}.json").write_text(
        json.dumps({"trials": trials, "command": command, "runs": runs}, indent=2) + "\n")
    plot(runs, scenarios, args.out / f"failover-vrrp{suffix}.png")
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
