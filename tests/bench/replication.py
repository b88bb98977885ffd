#!/usr/bin/env python3
"""Replication benchmark: what pair replication costs cache-node, side by side in one run.

Every server runs on free loopback ports with ``-l 127.0.0.1 -t 2 -c 4096 -U 0``
(``-m 1024``, or ``-m 2048`` for the full-sync test), plus ``-u nobody`` when run
as root. A pair is node A ``-p PA -X RA -x 127.0.0.1:RB`` (waited for until
``stats replication`` says ``role master``), then node B ``-p PB -X RB -x
127.0.0.1:RA`` (waited for until it replies, which it does once its full sync is
done, and says ``role slave`` / ``link up``).

Measurements:
  1 throughput  90/10 get/set, 100 B, 50 conns, pipeline 1, 100k prefilled keys (same
                loadgen invocation as compare.py scenario a) against: memcached;
                cache-node -X 0 (replication off); the master of an async pair; the
                master of a sync pair (--repl-mode sync). Configurations alternate and
                their order flips every round.
  2 lag         loadgen --rate (half of the async pair's median peak) on the master of
                a fresh async pair; after the warm-up, `stats reset` on the master, and
                at the end its `stats replication` lag distribution: from each change
                entering the backlog to the slave's acknowledgement (the target metric).
                Beside it, a client probe: every ~2 ms it sets a unique key on the master
                and polls the slave with `get` until it is visible (every other probe
                reads the key back from the master instead: the probe's floor).
  3 failover    start a pair, SIGKILL the master, time until the first `set` on the
                survivor answers STORED (tight, bounded retry of connect + set).
  4 full sync   fill the master with N items of S bytes (110,000 x 10,000 B = 1.1 GB;
                10,500 x 10,000 B with --quick), start the slave, time from its start
                to its first reply on the client port; MB/s = item value bytes / time.
                Also checks that the slave's curr_items equals the master's.

Writes replication.md (table with targets), replication.json (every run) and
replication.png to tests/bench/out/, server logs to tests/bench/out/logs/replication/,
and prints the table.

Examples:
  python3 tests/bench/replication.py --build     # full run (~4 min)
  python3 tests/bench/replication.py --quick     # smoke run (< 2 min)
  python3 tests/bench/replication.py --tests throughput,failover

Exit status: 0 if every measurement completed, 1 if some failed (targets missed are
reported in the table, not in the exit status), 2 on bad usage / missing binaries.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import resource
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

from benchlib import (
    DEFAULT_OUT,
    add_binary_args,
    cargo_build,
    cpu_seconds,
    finish_json,
    forget,
    free_port,
    live_pids,
    log,
    machine_busy_seconds,
    pct,
    run_json,
    secs,
    spawn,
    stop,
    stop_all,
    tool_version,
)


CONFIGS = ("memcached", "off", "async", "sync")
CONFIG_LABELS = {
    "memcached": "memcached",
    "off": "cache-node -X 0",
    "async": "pair master (async)",
    "sync": "pair master (sync)",
}
TESTS = ("throughput", "lag", "failover", "fullsync")

class Conn:
    """Minimal memcached text-protocol client on a raw socket (for probes and stats)."""

    def __init__(self, port: int, timeout: float = 2.0):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""

    def request(self, data: bytes, end: tuple[bytes, ...]) -> bytes:
        self.sock.sendall(data)
        return self.read_until(end)

    def read_until(self, end: tuple[bytes, ...]) -> bytes:
        while True:
            for e in end:
                if self.buf.endswith(e):
                    out, self.buf = self.buf, b""
                    return out
            d = self.sock.recv(65536)
            if not d:
                raise ConnectionError("connection closed by server")
            self.buf += d

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


def stats(port: int, group: str = "") -> dict[str, str]:
    c = Conn(port)
    try:
        raw = c.request(f"stats {group}".strip().encode() + b"\r\n", (b"END\r\n", b"ERROR\r\n"))
    finally:
        c.close()
    out = {}
    for line in raw.decode(errors="replace").splitlines():
        parts = line.split(" ", 2)
        if len(parts) == 3 and parts[0] == "STAT":
            out[parts[1]] = parts[2]
    return out


def wait_until(pred, timeout: float, step: float = 0.01) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if pred():
                return True
        except (OSError, ConnectionError):
            pass
        time.sleep(step)
    return False


class Node:
    """One memcached / cache-node process on loopback; stopped on exit no matter what."""

    def __init__(self, cfg, binary: Path, tag: str, extra: list[str] | None = None, mem: int = 1024):
        self.binary = binary
        self.extra = extra or []
        self.mem = mem
        self.threads = cfg.server_threads
        self.logpath = cfg.logdir / f"{tag}.log"
        self.proc: subprocess.Popen | None = None
        self.port = 0
        self.t_spawn = 0.0

    def args(self) -> list[str]:
        a = [
            str(self.binary),
            "-p", str(self.port),
            "-l", "127.0.0.1",
            "-t", str(self.threads),
            "-m", str(self.mem),
            "-c", "4096",
            "-U", "0",
            *self.extra,
        ]  # fmt: skip
        if os.geteuid() == 0:
            a += ["-u", "nobody"]  # both refuse to run as root without -u
        return a

    def spawn(self, port: int | None = None) -> None:
        self.port = port or free_port()
        with open(self.logpath, "ab") as logf:
            logf.write(f"$ {' '.join(self.args())}\n".encode())
            logf.flush()
            self.t_spawn = time.perf_counter()
            self.proc = spawn(self.args(), stdout=logf, stderr=subprocess.STDOUT)

    def wait_reply(self, timeout: float, step: float = 0.001) -> float | None:
        """perf_counter() of the first `version` reply on the client port, None on timeout/exit."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return None
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1.0) as s:
                    s.sendall(b"version\r\n")
                    s.settimeout(min(5.0, max(0.1, deadline - time.monotonic())))
                    if s.recv(64).startswith(b"VERSION"):
                        return time.perf_counter()
            except OSError:
                pass
            time.sleep(step)
        return None

    def start(self, timeout: float = 10.0) -> None:
        last = ""
        for _attempt in range(3):  # a free port can be taken between probe and bind
            self.spawn()
            if self.wait_reply(timeout, 0.02) is not None:
                return
            self.stop()
            last = self.logpath.read_text(errors="replace")[-400:]
        raise RuntimeError(f"{self.binary} did not start; log tail:\n{last}")

    def repl(self) -> dict[str, str]:
        return stats(self.port, "replication")

    @property
    def addr(self) -> str:
        return f"127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self.proc is not None:
            stop(self.proc)

    def sigkill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)


class Pair:
    """Node A (master) and node B (slave, full-synced from A)."""

    def __init__(self, cfg, tag: str, mode: str = "async", mem: int = 1024):
        self.cfg, self.tag, self.mode, self.mem = cfg, tag, mode, mem
        self.a: Node | None = None
        self.b: Node | None = None
        self.ra = self.rb = 0

    def _repl_args(self, mine: int, peer: int) -> list[str]:
        return ["-X", str(mine), "-x", f"127.0.0.1:{peer}", "--repl-mode", self.mode]

    def start_master(self) -> None:
        for _attempt in range(3):
            self.ra, self.rb = free_port(), free_port()
            self.a = Node(self.cfg, self.cfg.cache_node, f"{self.tag}-A", self._repl_args(self.ra, self.rb), self.mem)
            try:
                self.a.start()
                if wait_until(lambda: self.a.repl().get("role") == "master", 10.0):
                    return
            except RuntimeError:
                pass
            self.a.stop()
        raise RuntimeError(f"node A never became master; see {self.a.logpath}")

    def spawn_slave(self) -> None:
        self.b = Node(self.cfg, self.cfg.cache_node, f"{self.tag}-B", self._repl_args(self.rb, self.ra), self.mem)
        self.b.spawn()

    def wait_slave(self, timeout: float) -> float:
        """Returns the perf_counter() of B's first reply; then waits for role slave + link up."""
        t = self.b.wait_reply(timeout)
        if t is None:
            tail = self.b.logpath.read_text(errors="replace")[-400:]
            raise RuntimeError(f"node B did not reply within {timeout:.0f}s; log tail:\n{tail}")

        def linked():
            r = self.b.repl()
            return r.get("role") == "slave" and r.get("link") == "up"

        if not wait_until(linked, 10.0):
            raise RuntimeError(f"node B replies but is not a linked slave: {self.b.repl()}")
        return t

    def start(self, sync_timeout: float = 60.0) -> None:
        self.start_master()
        self.spawn_slave()
        self.wait_slave(sync_timeout)

    def stop(self) -> None:
        for n in (self.b, self.a):
            if n is not None:
                n.stop()

    def __enter__(self):
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc):
        self.stop()


def loadgen_argv(cfg, port: int, rate: int | None = None) -> list[str]:
    a = [
        str(cfg.loadgen),
        "--server", f"127.0.0.1:{port}",
        "--connections", "50",
        "--pipeline", "1",
        "--get-ratio", "0.9",
        "--value-size", "100",
        "--keys", str(cfg.keys),
        "--prefill",
        "--duration", cfg.duration,
        "--warmup", cfg.warmup,
        "--threads", str(cfg.loadgen_threads),
        "--json",
        "--allow-errors",
    ]  # fmt: skip
    if rate:
        a += ["--rate", str(rate)]
    return a


def run_loadgen(argv: list[str], timeout: float) -> dict:
    """Runs loadgen; adds other_cpu_s: CPU that processes other than it and our servers used."""
    ours = live_pids()
    busy0, mine0, t0 = machine_busy_seconds(), _cpu_of(ours), time.monotonic()
    res = _run_loadgen(argv, timeout)
    other = (machine_busy_seconds() - busy0) - (_cpu_of(ours) - mine0) - res.pop("_cpu_s", 0.0)
    res["other_cpu_s"] = round(max(0.0, other), 3)
    wall = time.monotonic() - t0
    if res["other_cpu_s"] > 0.1 * wall * (os.cpu_count() or 1):
        res["noisy"] = True
        log(f"  warning: other processes used {res['other_cpu_s']:.1f} CPU-s during this run (noisy machine)")
    return res


def _cpu_of(pids: list[int]) -> float:
    t = 0.0
    for pid in pids:
        try:
            t += cpu_seconds(pid)
        except OSError:
            pass
    return t


def _run_loadgen(argv: list[str], timeout: float) -> dict:
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    res = run_json(argv, timeout)
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    res["_cpu_s"] = (r1.ru_utime + r1.ru_stime) - (r0.ru_utime + r0.ru_stime)
    return res


# ----------------------------------------------------------------- 1. throughput


def throughput_one(cfg, conf: str, rnd: int) -> dict:
    tag = f"tp-r{rnd}-{conf}"
    budget = secs(cfg.duration) + secs(cfg.warmup) + 180
    if conf in ("memcached", "off"):
        binary = cfg.memcached if conf == "memcached" else cfg.cache_node
        node = Node(cfg, binary, tag, [] if conf == "memcached" else ["-X", "0"])
        node.start()
        try:
            cpu0 = cpu_seconds(node.proc.pid)
            res = run_loadgen(loadgen_argv(cfg, node.port), budget)
            res["server_cpu_s"] = round(cpu_seconds(node.proc.pid) - cpu0, 3)
        finally:
            node.stop()
        return res
    with Pair(cfg, tag, mode=conf) as pair:
        pids = (pair.a.proc.pid, pair.b.proc.pid)
        cpu0 = [cpu_seconds(p) for p in pids]
        res = run_loadgen(loadgen_argv(cfg, pair.a.port), budget)
        cpu1 = [cpu_seconds(p) for p in pids]
        res["server_cpu_s"] = round(cpu1[0] - cpu0[0], 3)
        res["slave_cpu_s"] = round(cpu1[1] - cpu0[1], 3)
        ra, rb = pair.a.repl(), pair.b.repl()
        res["repl_master"] = {k: ra.get(k) for k in ("role", "mode", "link", "lag_bytes", "full_syncs_sent", "sync_degraded")}
        res["repl_slave"] = {k: rb.get(k) for k in ("role", "link", "ops_applied")}
        if ra.get("link") != "up" or rb.get("role") != "slave":
            res["warning"] = f"pair not linked after load: master {ra.get('link')}, slave role {rb.get('role')}"
            log(f"  warning: {res['warning']}")
    return res


def bench_throughput(cfg) -> dict:
    runs: dict[str, list[dict]] = {c: [] for c in CONFIGS}
    for rnd in range(cfg.rounds):
        order = CONFIGS if rnd % 2 == 0 else CONFIGS[::-1]
        for conf in order:
            log(f"throughput round {rnd + 1}/{cfg.rounds}: {CONFIG_LABELS[conf]}")
            try:
                r = throughput_one(cfg, conf, rnd)
            except (RuntimeError, subprocess.TimeoutExpired, OSError, ValueError) as e:
                log(f"  FAILED: {e}")
                r = {"error": str(e)}
            else:
                if r.get("errors", 0):
                    log(f"  {r['errors']} loadgen errors: {r.get('stderr', '')[:300]}")
                log(f"  {r['ops_per_sec']:,.0f} ops/s  p99 {r['p99_us']:,.1f} µs")
            runs[conf].append(r)
    med = {}
    for conf, rs in runs.items():
        ok = [r for r in rs if "error" not in r]
        med[conf] = {
            k: (statistics.median([r[k] for r in ok]) if ok else None) for k in ("ops_per_sec", "p50_us", "p99_us")
        }
    return {"runs": runs, "median": med}


# ----------------------------------------------------------------- 2. lag


def lag_probe(master: int, slave: int, stop_at: float, interval: float, max_wait: float) -> dict:
    """Client-side view: every other probe sets a key on the master and polls the slave until
    it is there; the probes in between read it back from the master itself instead, the floor
    of what a client can see on this machine (a set and a get under the same load)."""
    m, s = Conn(master), Conn(slave)
    lags, from_ack, polls, polls_per_probe, floor = [], [], [], [], []
    timeouts, n = 0, 0
    value = b"x" * 16
    prefix = f"lagprobe:{os.getpid()}:{int(time.time())}:"
    next_t = time.perf_counter()
    try:
        while time.perf_counter() < stop_at:
            key = f"{prefix}{n}".encode()
            n += 1
            t0 = time.perf_counter_ns()
            r = m.request(b"set %s 0 0 %d\r\n%s\r\n" % (key, len(value), value), (b"\r\n",))
            t_ack = time.perf_counter_ns()
            if not r.startswith(b"STORED"):
                raise RuntimeError(f"probe set on master: {r[:100]!r}")
            if n % 2 == 0:
                r = m.request(b"get %s\r\n" % key, (b"END\r\n", b"ERROR\r\n"))
                if not r.startswith(b"VALUE"):
                    raise RuntimeError(f"probe get on master: {r[:100]!r}")
                floor.append((time.perf_counter_ns() - t0) / 1e3)
                next_t += interval
                time.sleep(max(0.0, next_t - time.perf_counter()))
                continue
            deadline = t0 + int(max_wait * 1e9)
            k = 0
            while True:
                tp = time.perf_counter_ns()
                r = s.request(b"get %s\r\n" % key, (b"END\r\n", b"ERROR\r\n"))
                tq = time.perf_counter_ns()
                polls.append((tq - tp) / 1e3)
                k += 1
                if r.startswith(b"VALUE"):
                    lags.append((tq - t0) / 1e3)
                    from_ack.append(max(0, tq - t_ack) / 1e3)
                    polls_per_probe.append(k)
                    break
                if tq > deadline:
                    timeouts += 1
                    break
            next_t += interval
            d = next_t - time.perf_counter()
            if d > 0:
                time.sleep(d)
            else:
                next_t = time.perf_counter()  # behind: don't burst to catch up
    finally:
        m.close()
        s.close()
    return {
        "probes": n,
        "timeouts": timeouts,
        "lag_us": lags,
        "lag_from_ack_us": from_ack,
        "floor_us": floor,
        "poll_rtt_us_p50": pct(polls, 50),
        "polls_per_probe_p50": pct(polls_per_probe, 50),
    }


def bench_lag(cfg, peak: float | None) -> dict:
    rate = int((peak or 0) / 2)
    if rate <= 0:
        raise RuntimeError("no async-pair peak measured (throughput failed or skipped); use --lag-rate")
    if cfg.lag_rate:
        rate = cfg.lag_rate
    log(f"lag: loadgen --rate {rate:,} on the master of an async pair, probe every {cfg.probe_interval_ms} ms")
    with Pair(cfg, "lag", mode="async") as pair:
        argv = loadgen_argv(cfg, pair.a.port, rate)
        budget = secs(cfg.duration) + secs(cfg.warmup) + 180
        p = spawn(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            # probe only while the paced load runs: after prefill + warm-up, until its end
            t_start = time.perf_counter()
            # the prefill is done when all keys exist; key:%08d of the last key is a cheap check
            last_key = f"key:{cfg.keys - 1:08d}".encode()

            def prefilled():
                c = Conn(pair.a.port)
                try:
                    return c.request(b"get " + last_key + b"\r\n", (b"END\r\n",)).startswith(b"VALUE")
                finally:
                    c.close()

            wait_until(prefilled, 60.0, 0.05)
            time.sleep(secs(cfg.warmup) + 0.2)
            # the server's own lag distribution covers the measured window only
            c = Conn(pair.a.port)
            try:
                if c.request(b"stats reset\r\n", (b"\r\n",)) != b"RESET\r\n":
                    raise RuntimeError("stats reset failed on the master")
            finally:
                c.close()
            stop_at = time.perf_counter() + max(0.5, secs(cfg.duration) - 0.5)
            probe = lag_probe(pair.a.port, pair.b.port, stop_at, cfg.probe_interval_ms / 1e3, 1.0)
        except BaseException:
            p.kill()
            p.communicate()
            forget(p)
            raise
        load = finish_json(p, budget)
        ra = pair.a.repl()
    lags = probe["lag_us"]
    res = {
        "rate": rate,
        "load": load,
        "probe": probe,
        "samples": int(ra.get("lag_samples", 0)),
        "p50_us": int(ra.get("lag_p50_us", 0)),
        "p99_us": int(ra.get("lag_p99_us", 0)),
        "p999_us": int(ra.get("lag_p999_us", 0)),
        "max_us": int(ra.get("lag_max_us", 0)),
        "visible_p50_us": pct(lags, 50),
        "visible_p99_us": pct(lags, 99),
        "floor_p50_us": pct(probe["floor_us"], 50),
        "floor_p99_us": pct(probe["floor_us"], 99),
        "master_repl": ra,
        "elapsed_s": round(time.perf_counter() - t_start, 2),
    }
    log(
        f"  server-measured lag ({res['samples']:,} batches) p50 {res['p50_us']:,} µs p99 {res['p99_us']:,} µs; "
        f"client probe: visible on slave p50 {res['visible_p50_us'] or 0:,.0f} µs p99 {res['visible_p99_us'] or 0:,.0f} µs "
        f"({len(lags)} probes, {probe['timeouts']} timed out), set+get on master p99 {res['floor_p99_us'] or 0:,.0f} µs; "
        f"load {load.get('ops_per_sec', 0):,.0f} ops/s"
    )
    return res


# ----------------------------------------------------------------- 3. failover


def failover_one(cfg, trial: int) -> dict:
    pair = Pair(cfg, f"failover-{trial}", mode="async")
    try:
        pair.start()
        survivor = pair.b.port
        # some data first, so the survivor has something to serve
        c = Conn(pair.a.port)
        for i in range(100):
            c.request(b"set fo:%d 0 0 1\r\nx\r\n" % i, (b"\r\n",))
        c.close()
        # The survivor answers STORED even as a slave (writes are accepted on both nodes,
        # as in repcached), so a STORED alone does not prove the failover: the trial ends
        # at the first set answered STORED by a node whose `stats replication` (sent in
        # the same write, so answered right after the set) says `role master`.
        req = b"set failover:probe 0 0 2\r\nok\r\nstats replication\r\n"
        attempts, first_reply, conn = 0, None, None
        t_stored = t_ok = None
        t0 = time.perf_counter()
        pair.a.sigkill()
        deadline = t0 + cfg.failover_timeout
        while time.perf_counter() < deadline:
            attempts += 1
            try:
                if conn is None:
                    conn = Conn(survivor, timeout=0.5)
                r = conn.request(req, (b"END\r\n",))
                t = time.perf_counter()
                stored = r.startswith(b"STORED\r\n")
                if stored and t_stored is None:
                    t_stored = t
                if stored and b"STAT role master\r\n" in r:
                    t_ok = t
                    break
                if first_reply is None:
                    first_reply = r.split(b"\r\n", 1)[0].decode(errors="replace") + (
                        " (role: " + r.split(b"STAT role ", 1)[1].split(b"\r\n", 1)[0].decode() + ")"
                        if b"STAT role " in r
                        else ""
                    )
            except (OSError, ConnectionError, IndexError) as e:
                if first_reply is None:
                    first_reply = f"{type(e).__name__}: {e}"
                if conn is not None:
                    conn.close()
                conn = None
            time.sleep(0.0005)
        if conn is not None:
            conn.close()
        pair.a.proc.wait(timeout=5)
        if t_ok is None:
            raise RuntimeError(f"survivor not a writable master within {cfg.failover_timeout}s ({first_reply})")
        rb = pair.b.repl()
        res = {
            "ms": (t_ok - t0) * 1e3,
            "first_stored_ms": (t_stored - t0) * 1e3,
            "attempts": attempts,
            "first_failed_reply": first_reply,
            "survivor_role": rb.get("role"),
            "survivor_failovers": rb.get("failovers"),
        }
        if rb.get("role") != "master":
            res["warning"] = f"survivor says role {rb.get('role')} after the failover"
        return res
    finally:
        pair.stop()


def bench_failover(cfg) -> dict:
    trials = []
    for t in range(cfg.failover_trials):
        log(f"failover trial {t + 1}/{cfg.failover_trials}")
        try:
            r = failover_one(cfg, t)
            log(
                f"  {r['ms']:.1f} ms to a writable master (first STORED {r['first_stored_ms']:.1f} ms; "
                f"{r['attempts']} attempts; first non-final reply: {r['first_failed_reply']!r})"
            )
        except (RuntimeError, subprocess.TimeoutExpired, OSError, ValueError) as e:
            log(f"  FAILED: {e}")
            r = {"error": str(e)}
        trials.append(r)
    ms = [r["ms"] for r in trials if "ms" in r]
    return {
        "trials": trials,
        "median_ms": statistics.median(ms) if ms else None,
        "max_ms": max(ms) if ms else None,
    }


# ----------------------------------------------------------------- 4. full sync


def bench_fullsync(cfg) -> dict:
    items, size = cfg.sync_items, cfg.sync_value_size
    data = items * size
    log(f"full sync: filling the master with {items:,} x {size:,} B = {data / 1e6:,.0f} MB (-m {cfg.sync_mem})")
    pair = Pair(cfg, "fullsync", mode="async", mem=cfg.sync_mem)
    try:
        pair.start_master()
        fill = run_loadgen(
            [
                str(cfg.loadgen), "fill",
                "--server", pair.a.addr,
                "--items", str(items),
                "--value-size", str(size),
                "--threads", str(cfg.loadgen_threads),
                "--verify", "200",
                "--json", "--allow-errors",
            ],  # fmt: skip
            1200,
        )
        sa = stats(pair.a.port)
        log(
            f"  filled at {fill.get('items_per_sec', 0):,.0f} items/s; master curr_items {sa.get('curr_items')}, "
            f"evictions {sa.get('evictions')}; starting the slave"
        )
        pair.spawn_slave()
        t_first = pair.wait_slave(cfg.sync_timeout)
        took_s = t_first - pair.b.t_spawn
        sb = stats(pair.b.port)
        # no writes meanwhile: counts must agree right away; allow a moment for the stream tail
        wait_until(lambda: stats(pair.b.port).get("curr_items") == stats(pair.a.port).get("curr_items"), 5.0, 0.05)
        sa, sb = stats(pair.a.port), stats(pair.b.port)
        res = {
            "items": items,
            "value_size": size,
            "item_data_bytes": data,
            "master_bytes_stat": int(sa.get("bytes", 0)),
            "fill": fill,
            "seconds": took_s,
            "mb_per_s": data / 1e6 / took_s,
            "master_curr_items": int(sa.get("curr_items", -1)),
            "slave_curr_items": int(sb.get("curr_items", -1)),
            "master_evictions": int(sa.get("evictions", 0)),
            "items_match": sa.get("curr_items") == sb.get("curr_items"),
            "master_repl": pair.a.repl(),
        }
        log(
            f"  slave replied {took_s:.2f} s after its start: {res['mb_per_s']:,.0f} MB/s; curr_items "
            f"master {res['master_curr_items']:,} slave {res['slave_curr_items']:,}"
        )
        if res["master_curr_items"] != items:
            log(f"  warning: master holds {res['master_curr_items']:,} of {items:,} items (evictions?)")
        return res
    finally:
        pair.stop()


# ----------------------------------------------------------------- reporting


def _f(v, fmt: str) -> str:
    return "n/a" if v is None else fmt.format(v)


def markdown_table(doc: dict) -> str:
    lines = [
        "| measurement | metric | value | ratio | target | met |",
        "|---|---|---:|---:|---|:---:|",
    ]

    def row(meas, metric, value, ratio="", target="", met=None):
        m = "" if met is None else ("yes" if met else "**no**")
        lines.append(f"| {meas} | {metric} | {value} | {ratio} | {target} | {m} |")

    tp = doc.get("throughput")
    if tp:
        med = tp["median"]
        mc, off = med["memcached"]["ops_per_sec"], med["off"]["ops_per_sec"]
        n = doc["config"]["rounds"]
        for i, conf in enumerate(CONFIGS):
            v = med[conf]["ops_per_sec"]
            ratios = []
            if conf != "memcached":
                ratios.append(f"{v / mc:.3f}× memcached" if v and mc else "n/a")
            if conf in ("async", "sync"):
                ratios.append(f"{v / off:.3f}× off" if v and off else "n/a")
            target, met = "", None
            if conf == "async":
                target, met = "≥ 0.8× off", (v / off >= 0.8) if v and off else False
            label = f"1. throughput, 90/10 100 B 50 conns p1 (median of {n})" if i == 0 else ""
            p99 = med[conf]["p99_us"]
            row(label, f"{CONFIG_LABELS[conf]}: ops/s (p99 {_f(p99, '{:,.0f}')} µs)", _f(v, "{:,.0f}"),
                "; ".join(ratios), target, met)  # fmt: skip
    lag = doc.get("lag")
    if lag:
        if "error" in lag:
            row("2. replication lag", "error", lag["error"][:80], "", "p99 < 1 ms", False)
        else:
            pr = lag["probe"]
            label = f"2. replication lag at {lag['rate']:,} ops/s (½ async peak)"
            row(label, f"master: change → slave's ack, p50 µs ({lag['samples']:,} batches)", _f(lag["p50_us"], "{:,}"))
            ok = lag["samples"] > 0 and lag["p99_us"] < 1000 and pr["timeouts"] == 0
            row("", "master: change → slave's ack, p99 µs", _f(lag["p99_us"], "{:,}"), "", "< 1,000 µs", ok)
            row("", f"client: set on master → visible on slave, p50 / p99 µs ({len(pr['lag_us'])} probes, "
                f"{pr['timeouts']} timeouts)", f"{_f(lag['visible_p50_us'], '{:,.0f}')} / {_f(lag['visible_p99_us'], '{:,.0f}')}")
            row("", "client floor: set then get on the master, p50 / p99 µs",
                f"{_f(lag['floor_p50_us'], '{:,.0f}')} / {_f(lag['floor_p99_us'], '{:,.0f}')}")  # fmt: skip
    fo = doc.get("failover")
    if fo:
        ntr = len(fo["trials"])
        nok = sum(1 for t in fo["trials"] if "ms" in t)
        label = f"3. failover, SIGKILL master → first set STORED by survivor as master ({nok}/{ntr} trials)"
        row(label, "median ms", _f(fo["median_ms"], "{:,.1f}"))
        fst = [t["first_stored_ms"] for t in fo["trials"] if "first_stored_ms" in t]
        row("", "median ms to first STORED (any role)", _f(statistics.median(fst) if fst else None, "{:,.1f}"))
        ok = fo["max_ms"] is not None and fo["max_ms"] < 500 and nok == ntr
        row("", "max ms", _f(fo["max_ms"], "{:,.1f}"), "", "< 500 ms", ok)
    fs = doc.get("fullsync")
    if fs:
        if "error" in fs:
            row("4. full sync", "error", fs["error"][:80], "", "≥ 300 MB/s", False)
        else:
            label = f"4. full sync of {fs['items']:,} × {fs['value_size']:,} B ({fs['item_data_bytes'] / 1e6:,.0f} MB)"
            row(label, "slave start → first reply, s", f"{fs['seconds']:.2f}")
            row("", "MB/s of item data", f"{fs['mb_per_s']:,.0f}", "", "≥ 300 MB/s", fs["mb_per_s"] >= 300)
            row("", "curr_items master / slave", f"{fs['master_curr_items']:,} / {fs['slave_curr_items']:,}",
                "", "equal", fs["items_match"])  # fmt: skip
    if tp:
        noisy = [f"{c}#{i + 1}" for c, rs in tp["runs"].items() for i, r in enumerate(rs) if r.get("noisy")]
        if noisy:
            lines.append(
                f"\nWarning: other processes used >10% of the CPU during {len(noisy)} throughput run(s) "
                f"({', '.join(noisy)}); numbers are noisy."
            )
    return "\n".join(lines) + "\n"


def plot(doc: dict, path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log("matplotlib not installed (pip install -r tests/bench/requirements.txt): no plot")
        return
    fig, axes = plt.subplots(1, 3, figsize=(14, 4.2))
    ax = axes[0]
    tp = doc.get("throughput")
    if tp:
        for i, conf in enumerate(CONFIGS):
            med = tp["median"][conf]["ops_per_sec"]
            if med is not None:
                ax.bar(i, med, width=0.6, color=["#4c72b0", "#dd8452", "#55a868", "#c44e52"][i], alpha=0.75)
            vals = [r["ops_per_sec"] for r in tp["runs"][conf] if "error" not in r]
            xs = [i + (j - (len(vals) - 1) / 2) * 0.08 for j in range(len(vals))]
            ax.scatter(xs, vals, color="black", s=14, zorder=3)
        ax.set_xticks(range(len(CONFIGS)), [CONFIG_LABELS[c].replace(" (", "\n(") for c in CONFIGS], fontsize=8)
    ax.set_title("throughput ops/s (bars: median, dots: rounds)", fontsize=10)
    ax.grid(axis="y", alpha=0.3)
    ax = axes[1]
    lag = doc.get("lag")
    if lag and "probe" in lag and lag["probe"]["lag_us"]:
        for data, color, label in (
            (lag["probe"]["lag_us"], None, "client: set on master → visible on slave"),
            (lag["probe"]["floor_us"], "gray", "client floor: set + get on the master"),
        ):
            xs = sorted(data)
            ax.plot(xs, [(i + 1) / len(xs) for i in range(len(xs))], drawstyle="steps-post", color=color, label=label)
        ax.axvline(1000, color="red", ls="--", lw=1, label="target p99 1 ms")
        ax.set_xscale("log")
        ax.legend(fontsize=7)
        ax.set_title(f"lag at {lag['rate']:,} ops/s; server-measured\np50 {lag['p50_us']:,} µs, p99 {lag['p99_us']:,} µs", fontsize=10)
    else:
        ax.set_title("replication lag: n/a", fontsize=10)
    ax.set_xlabel("µs, client probes")
    ax.grid(alpha=0.3)
    ax = axes[2]
    fo = doc.get("failover")
    if fo:
        ms = [t.get("ms") for t in fo["trials"]]
        ax.bar(range(1, len(ms) + 1), [m or 0 for m in ms], color="#8172b2", alpha=0.8)
        for i, m in enumerate(ms):
            ax.annotate("failed" if m is None else f"{m:,.1f}", (i + 1, m or 0), ha="center", va="bottom", fontsize=8)
        ax.set_yscale("log")  # targets are ~500 ms, results may be ~1 ms
        ax.axhline(500, color="red", ls="--", lw=1, label="target 500 ms")
        ax.legend(fontsize=8)
        ax.set_xlabel("trial")
    ax.set_title("failover ms (SIGKILL → survivor stores as master)", fontsize=10)
    ax.grid(axis="y", alpha=0.3)
    fs = doc.get("fullsync")
    sub = f"; full sync {fs['mb_per_s']:,.0f} MB/s" if fs and "mb_per_s" in fs else ""
    fig.suptitle(f"cache-node pair replication{sub}", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ----------------------------------------------------------------- main


def build(cfg) -> None:
    cargo_build(["cache-node", "loadgen"])


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description="Replication benchmark of cache-node pairs (throughput cost, lag, failover, full sync).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("Examples:", 1)[1].rsplit("Exit status", 1)[0].join(["Examples:", ""]),
    )
    add_binary_args(p)
    p.add_argument("--build", action="store_true", help="cargo build --release -p cache-node -p loadgen first")
    p.add_argument("--quick", action="store_true", help="smoke run: 1 round, 2s runs, 2 failovers, 105 MB full sync")
    p.add_argument("--tests", default=",".join(TESTS), help="comma-separated subset of %(default)s")
    p.add_argument("--rounds", type=int, default=None, help="throughput rounds per configuration (default 3; 1 with --quick)")
    p.add_argument("--duration", default=None, help="measured time per load run (default 10s; 2s with --quick)")
    p.add_argument("--warmup", default=None, help="warm-up per load run (default 2s; 0.5s with --quick)")
    p.add_argument("--keys", type=int, default=100_000, help="key space of the load runs (default: %(default)s)")
    p.add_argument("--lag-rate", type=int, default=None, help="fixed --rate for the lag test (default: half the async peak)")
    p.add_argument("--probe-interval-ms", type=float, default=2.0, help="lag probe period (default: %(default)s)")
    p.add_argument("--failover-trials", type=int, default=None, help="default 5; 2 with --quick")
    p.add_argument("--failover-timeout", type=float, default=10.0, help="seconds per failover trial (default: %(default)s)")
    p.add_argument("--sync-items", type=int, default=None, help="full-sync items (default 110000; 10500 with --quick)")
    p.add_argument("--sync-value-size", type=int, default=10_000, help="full-sync value bytes (default: %(default)s)")
    p.add_argument("--sync-mem", type=int, default=None, help="-m of the full-sync pair (default 2048; 512 with --quick)")
    p.add_argument("--sync-timeout", type=float, default=300.0, help="max seconds for the full sync (default: %(default)s)")
    p.add_argument("--server-threads", type=int, default=2, help="-t of every server (default: %(default)s)")
    p.add_argument("--loadgen-threads", type=int, default=2, help="loadgen --threads (default: %(default)s)")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output directory (default: %(default)s)")
    cfg = p.parse_args(argv)
    q = cfg.quick
    cfg.rounds = cfg.rounds if cfg.rounds is not None else (1 if q else 3)
    cfg.duration = cfg.duration or ("2s" if q else "10s")
    cfg.warmup = cfg.warmup or ("0.5s" if q else "2s")
    cfg.failover_trials = cfg.failover_trials or (2 if q else 5)
    cfg.sync_items = cfg.sync_items or (10_500 if q else 110_000)
    cfg.sync_mem = cfg.sync_mem or (512 if q else 2048)
    cfg.tests = [t.strip() for t in cfg.tests.split(",") if t.strip()]
    bad = [t for t in cfg.tests if t not in TESTS]
    if bad or not cfg.tests:
        p.error(f"unknown test(s) {bad}; choose from {','.join(TESTS)}")
    if cfg.rounds < 1 or cfg.failover_trials < 1:
        p.error("--rounds and --failover-trials must be at least 1")
    return cfg


def main(argv=None) -> int:
    cfg = parse_args(argv)
    if cfg.build:
        build(cfg)
    bins = {"cache-node": cfg.cache_node, "loadgen": cfg.loadgen}
    if "throughput" in cfg.tests:
        bins["memcached"] = cfg.memcached
    for what, path in bins.items():
        if not (path.is_file() and os.access(path, os.X_OK)):
            hint = " (use --build, or --cache-node PATH)" if what != "memcached" else ""
            print(f"replication.py: {what} binary not found: {path}{hint}", file=sys.stderr)
            return 2
    cfg.out.mkdir(parents=True, exist_ok=True)
    cfg.logdir = cfg.out / "logs" / "replication"
    cfg.logdir.mkdir(parents=True, exist_ok=True)
    for old in cfg.logdir.glob("*.log"):
        old.unlink()

    doc: dict = {
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "host": {"cpus": os.cpu_count(), "kernel": platform.release(), "python": platform.python_version()},
        "binaries": {k: {"path": str(v), "version": tool_version(v)} for k, v in bins.items() if k != "loadgen"},
        "config": {
            k: (str(v) if isinstance(v, Path) else v)
            for k, v in vars(cfg).items()
            if k not in ("logdir",)
        },
    }
    failures = 0
    t0 = time.monotonic()
    if "throughput" in cfg.tests:
        doc["throughput"] = bench_throughput(cfg)
        failures += sum(1 for rs in doc["throughput"]["runs"].values() for r in rs if "error" in r or r.get("errors"))
    if "lag" in cfg.tests:
        peak = doc.get("throughput", {}).get("median", {}).get("async", {}).get("ops_per_sec")
        try:
            doc["lag"] = bench_lag(cfg, peak if not cfg.lag_rate else cfg.lag_rate * 2)
        except (RuntimeError, subprocess.TimeoutExpired, OSError, ValueError) as e:
            log(f"lag FAILED: {e}")
            doc["lag"] = {"error": str(e)}
            failures += 1
    if "failover" in cfg.tests:
        doc["failover"] = bench_failover(cfg)
        failures += sum(1 for t in doc["failover"]["trials"] if "error" in t)
    if "fullsync" in cfg.tests:
        try:
            doc["fullsync"] = bench_fullsync(cfg)
        except (RuntimeError, subprocess.TimeoutExpired, OSError, ValueError) as e:
            log(f"full sync FAILED: {e}")
            doc["fullsync"] = {"error": str(e)}
            failures += 1
    doc["failures"] = failures
    doc["elapsed_s"] = round(time.monotonic() - t0, 1)

    table = markdown_table(doc)
    header = (
        f"cache-node: {cfg.cache_node} ({tool_version(cfg.cache_node)}); "
        f"memcached: {cfg.memcached} ({tool_version(cfg.memcached)})\n"
        f"servers -t {cfg.server_threads} -c 4096 -U 0 -m 1024 (full sync -m {cfg.sync_mem}); "
        f"loadgen threads {cfg.loadgen_threads}, {cfg.duration} (+{cfg.warmup} warm-up) per load run; "
        f"{os.cpu_count()} CPUs; {doc['elapsed_s']:.0f} s\n"
    )
    print()
    print(header)
    print(table)
    (cfg.out / "replication.md").write_text(header + "\n" + table)
    (cfg.out / "replication.json").write_text(json.dumps(doc, indent=2, default=str) + "\n")
    plot(doc, cfg.out / "replication.png")
    log(f"wrote {cfg.out / 'replication.md'}, {cfg.out / 'replication.json'}, {cfg.out / 'replication.png'}")
    if failures:
        log(f"{failures} measurement(s) failed or reported errors")
        return 1
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    finally:
        stop_all()
