#!/usr/bin/env python3
"""VRRP benchmark: cache-node vrrp against keepalived, side by side in one run.

Needs root (network namespaces, raw sockets) and keepalived. The script builds a LAN of
network namespaces of its own: a bridge, host a (192.0.2.1/24) and host b (192.0.2.2/24).
The virtual address is 192.0.2.100. Every trial runs one implementation on both hosts,
with the same keepalived.conf: VRRPv3, advert_int 0.1, a at priority 200 and b at 100.

Each trial goes like this:

1. Start a and wait for the address on a.
2. Start b and let it settle as backup (0.5 s).
3. Stop a. In the ``shutdown`` scenario that is SIGTERM, and a sends priority 0. In the
   ``kill`` scenario it is SIGKILL; for keepalived, both its processes are killed.
4. Take the time until the kernel reports the address on b. It is read from
   ``ip -n b monitor address``, started before the signal.
5. Take what the speaker on b added beyond the protocol. A sniffer on b timestamps a's adverts.
   After a shutdown, the excess runs from a's priority-0 advert plus the skew time. After a
   kill, it runs from a's last advert plus the master-down interval. This excess does not depend
   on where in a's advert cycle the signal fell, which the takeover time does.

The protocol's own share is the skew time (0.061 s) for ``shutdown``, and for ``kill`` the
master-down interval (3 x 0.1 + 0.061 = 0.361 s) after the last advert, which went out up
to 0.1 s before the kill. The speakers add their own delay on top
of that. Resident memory (VmRSS of every process of the speaker on b, once it settles) is
reported too. The implementations alternate trial by trial, and their order flips each round.

Writes vrrp.md and vrrp.json to tests/bench/out/, and prints the table.

Examples:
  python3 tests/bench/vrrp.py --build        # full run: 10 trials per scenario (~1 min)
  python3 tests/bench/vrrp.py --quick        # smoke run: 2 trials
"""

from __future__ import annotations

import argparse
import json
import os
import selectors
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchlib import DEFAULT_CACHE_NODE, DEFAULT_OUT, cargo_build, log, read_status, spawn, stop, stop_all

VIP = "192.0.2.100"
SCENARIOS = ("shutdown", "kill")
IMPLS = ("cache-node", "keepalived")
SKEW = (256 - 100) * 0.1 / 256
MASTER_DOWN = 3 * 0.1 + SKEW
# What the protocol itself takes: the backup's skew time after a priority-0 advert; its
# master-down interval after the last advert, which went out up to one interval before the kill.
PROTOCOL = {"shutdown": "61 ms (skew)", "kill": "261-361 ms (master-down after the last advert)"}
# Prints "<monotonic time> <source> <priority>" for every VRRP packet the host receives.
SNIFFER = r"""
import socket, time
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, 112)
while True:
    d = s.recv(2048)
    ihl = (d[0] & 15) * 4
    print(f"{time.monotonic():.6f} {socket.inet_ntoa(d[12:16])} {d[ihl + 2]}", flush=True)
"""


def conf(priority: int) -> str:
    return f"""global_defs {{
    vrrp_version 3
}}
vrrp_instance VI_1 {{
    state BACKUP
    interface eth0
    virtual_router_id 51
    priority {priority}
    advert_int 0.1
    virtual_ipaddress {{
        {VIP}/32 dev eth0
    }}
}}
"""


def ip(*args: str) -> str:
    r = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=10)
    if r.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {r.stderr.strip()}")
    return r.stdout


class Lan:
    """A bridge and two hosts in namespaces of this run; deleted by close()."""

    def __init__(self) -> None:
        self.tag = f"cpvb{os.getpid()}"
        self.made: list[str] = []
        switch = self.ns("lan")
        self._add(switch)
        ip("-n", switch, "link", "add", "br0", "type", "bridge")
        ip("-n", switch, "link", "set", "br0", "up")
        for i, host in enumerate(("a", "b"), start=1):
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

    def close(self) -> None:
        for ns in reversed(self.made):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=10)


class Speaker:
    """One implementation's speaker on one host, started with `spawn` (cannot outlive us)."""

    def __init__(self, impl: str, lan: Lan, host: str, priority: int, args, work: Path) -> None:
        self.impl, self.host = impl, host
        cfg = work / f"{impl}-{host}.conf"
        cfg.write_text(conf(priority))
        self.vrrp_pid = work / f"{impl}-{host}.vrrp.pid"
        self.vrrp_pid.unlink(missing_ok=True)
        if impl == "cache-node":
            argv = [str(args.cache_node), "vrrp", "--config", str(cfg)]
        else:
            argv = [args.keepalived, "--dont-fork", "--vrrp", "-f", str(cfg),
                    "-p", str(work / f"{impl}-{host}.pid"), "-r", str(self.vrrp_pid)]
        self.log = open(work / f"{impl}-{host}.log", "w")
        self.proc = spawn(["ip", "netns", "exec", lan.ns(host), *argv], stdout=self.log, stderr=subprocess.STDOUT)

    def pids(self) -> list[int]:
        pids = [self.proc.pid]
        if self.vrrp_pid.exists():
            try:
                pids.append(int(self.vrrp_pid.read_text().strip()))
            except ValueError:
                pass
        return pids

    def rss(self) -> int:
        return sum(read_status(pid).get("VmRSS", 0) for pid in self.pids())

    def kill(self) -> None:
        # keepalived's parent restarts a dead VRRP child: both go at once.
        for pid in reversed(self.pids()):  # the VRRP child first: it would leave gracefully
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.proc.wait(timeout=10)
        stop(self.proc)

    def close(self) -> None:
        if self.proc.poll() is None:
            stop(self.proc)
        for pid in self.pids()[1:]:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.log.close()


def wait(what: str, cond, limit: float = 10.0) -> None:
    deadline = time.monotonic() + limit
    while not cond():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.01)


def trial(impl: str, scenario: str, lan: Lan, args, work: Path) -> dict:
    a = Speaker(impl, lan, "a", 200, args, work)
    b = None
    monitor = sniffer = None
    try:
        wait(f"{impl} on a to take {VIP}", lambda: lan.holds("a"))
        b = Speaker(impl, lan, "b", 100, args, work)
        time.sleep(0.5)
        if lan.holds("b"):
            raise RuntimeError(f"{impl} on b took {VIP} while a was master")
        rss = b.rss()
        monitor = subprocess.Popen(["ip", "-n", lan.ns("b"), "monitor", "address"], stdout=subprocess.PIPE)
        sniffer = subprocess.Popen(["ip", "netns", "exec", lan.ns("b"), sys.executable, "-c", SNIFFER],
                                   stdout=subprocess.PIPE)
        time.sleep(0.3)  # both subscribed, and a's adverts seen
        sel = selectors.DefaultSelector()
        sel.register(monitor.stdout, selectors.EVENT_READ, "monitor")
        sel.register(sniffer.stdout, selectors.EVENT_READ, "sniffer")
        adverts: list[tuple[float, int]] = []  # a's adverts: (time, priority)
        t0 = time.monotonic()
        if scenario == "shutdown":
            a.proc.send_signal(signal.SIGTERM)
        else:
            a.kill()
        took = None
        pending = {"monitor": "", "sniffer": ""}
        while took is None and time.monotonic() - t0 < 10:
            for key, _ in sel.select(timeout=0.5):
                # Raw reads: a buffered readline would leave lines behind that select cannot see.
                pending[key.data] += os.read(key.fileobj.fileno(), 65536).decode()
                *lines, pending[key.data] = pending[key.data].split("\n")
                for line in lines:
                    if key.data == "sniffer":
                        at, src, priority = line.split()
                        if src == "192.0.2.1":
                            adverts.append((float(at), int(priority)))
                    elif took is None and f" {VIP}/" in line and not line.startswith("Deleted"):
                        took = time.monotonic() - t0
        if took is None:
            raise RuntimeError(f"{impl} on b did not take {VIP} within 10 s ({scenario})")
        at_vip = t0 + took
        if scenario == "shutdown":
            stops = [at for at, priority in adverts if priority == 0 and at >= t0]
            if not stops:
                raise RuntimeError(f"{impl} on a sent no priority-0 advert")
            excess = at_vip - (stops[0] + SKEW)
        else:
            last = [at for at, _ in adverts if at <= t0]
            if not last:
                raise RuntimeError("no advert from a seen before the kill")
            excess = at_vip - (last[-1] + MASTER_DOWN)
        return {"impl": impl, "scenario": scenario, "takeover_s": took, "excess_s": excess, "rss_bytes": rss}
    finally:
        for child in (monitor, sniffer):
            if child is not None:
                child.kill()
                child.wait(timeout=5)
        for s in (a, b):
            if s is not None:
                s.close()
        for host in ("a", "b"):
            subprocess.run(["ip", "-n", lan.ns(host), "addr", "del", f"{VIP}/32", "dev", "eth0"],
                           capture_output=True, timeout=10)


def table(runs: list[dict], trials: int) -> str:
    def med(impl: str, scenario: str, key: str) -> float:
        return statistics.median(r[key] for r in runs if r["impl"] == impl and r["scenario"] == scenario)

    lines = [
        f"| scenario (VRRPv3, advert_int 0.1, {trials} trials) | the protocol's share | cache-node vrrp | keepalived | ratio |",
        "|---|---|---|---|---|",
    ]
    for sc in SCENARIOS:
        cn, ka = med("cache-node", sc, "takeover_s"), med("keepalived", sc, "takeover_s")
        lines.append(f"| takeover after master {sc}, median | {PROTOCOL[sc]} | {cn * 1000:.0f} ms "
                     f"| {ka * 1000:.0f} ms | {cn / ka:.2f}x |")
        cn, ka = med("cache-node", sc, "excess_s"), med("keepalived", sc, "excess_s")
        lines.append(f"| of which beyond the protocol, median | | {cn * 1000:.1f} ms | {ka * 1000:.1f} ms | |")
    cn = statistics.median(r["rss_bytes"] for r in runs if r["impl"] == "cache-node")
    ka = statistics.median(r["rss_bytes"] for r in runs if r["impl"] == "keepalived")
    lines.append(f"| resident memory of the backup speaker (all its processes), median | | {cn / 2**20:.1f} MiB "
                 f"| {ka / 2**20:.1f} MiB | {cn / ka:.2f}x |")
    return "\n".join(lines) + "\n"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--build", action="store_true", help="cargo build --release -p cache-node first")
    p.add_argument("--quick", action="store_true", help="smoke run: 2 trials per scenario and implementation")
    p.add_argument("--trials", type=int, default=None, help="trials per scenario and implementation (default 10)")
    p.add_argument("--cache-node", type=Path, default=DEFAULT_CACHE_NODE, help="cache-node binary (default: %(default)s)")
    p.add_argument("--keepalived", default=shutil.which("keepalived") or "/usr/sbin/keepalived")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = p.parse_args()
    if os.geteuid() != 0:
        print("vrrp.py needs root: it creates network namespaces and runs VRRP speakers", file=sys.stderr)
        return 2
    if args.build:
        cargo_build(["cache-node"])
    for binary in (args.cache_node, Path(args.keepalived)):
        if not binary.exists():
            print(f"missing {binary}", file=sys.stderr)
            return 2
    trials = args.trials or (2 if args.quick else 10)
    args.out.mkdir(parents=True, exist_ok=True)
    runs: list[dict] = []
    lan = Lan()
    try:
        with tempfile.TemporaryDirectory(prefix="cachepair-vrrp-bench-") as work:
            for round_ in range(trials):
                order = IMPLS if round_ % 2 == 0 else tuple(reversed(IMPLS))
                for scenario in SCENARIOS:
                    for impl in order:
                        r = trial(impl, scenario, lan, args, Path(work))
                        log(f"{impl:10} {scenario:8} takeover {r['takeover_s'] * 1000:6.1f} ms, "
                            f"beyond the protocol {r['excess_s'] * 1000:5.1f} ms")
                        runs.append(r)
    finally:
        stop_all()
        lan.close()
    md = table(runs, trials)
    command = "python3 tests/bench/vrrp.py" + (" --quick" if args.quick else "")
    (args.out / "vrrp.md").write_text(f"`{command}`\n\n{md}")
    (args.out / "vrrp.json").write_text(json.dumps({"trials": trials, "runs": runs}, indent=2) + "\n")
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
