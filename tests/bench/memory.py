#!/usr/bin/env python3
"""Memory against -m: the RSS of cache-node and memcached 1.6.18, side by side, after writing
several times -m of values in one item-size mix.

Each run starts a fresh server on a free loopback port with
``-p PORT -l 127.0.0.1 -t 4 -m M -c 4096 -U 0`` (plus ``-u root`` when run as root), under
``prlimit --as`` (a server that tries to allocate far beyond -m fails instead of taking the
machine), measures F, the RSS of the empty server with the writer's connection open, writes
``--factor`` x -m of values through one pipelined connection (distinct keys: the cache evicts),
waits a second and reads the steady RSS (and VmHWM, the peak). Mixes (tests/bench/memlib.py):
100 B, 5 KB, 100 KB values only; 100 B / 5 KB / 100 KB in turns (-m/4, -m, -m bytes each: one
size fills the cache, the next has to take its memory); 1 B to 1 MB log-uniform.

The issue's bound is RSS <= 1.15 x (-m + F) for any mix; the table gives RSS / (-m + F) for
both servers and the cache-node / memcached ratio. memcached answers SERVER_ERROR out of
memory when no slab page can be had for a size; those sets are counted as refused.

Writes tests/bench/out/memory.md and memory.json, and prints the table.

Examples:
  python3 tests/bench/memory.py --build          # full run: -m 64 and 256, all mixes (~2 min)
  python3 tests/bench/memory.py --quick          # CI smoke run (~10 s)
  python3 tests/bench/memory.py --quick --cache-node /usr/bin/memcached   # self-check

Exit status: 0 if every run completed, 1 if some run failed, 2 on bad usage / missing binaries.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import shlex
import socket
import sys
import time
from pathlib import Path

from benchlib import DEFAULT_CACHE_NODE, DEFAULT_MEMCACHED, DEFAULT_OUT, cargo_build, log, stop_all, tool_version
from compare import Server
from memlib import MIB, MIXES, RssSampler, read_status, write_mix

SERVERS = ("memcached", "cache-node")
BOUND = 1.15  # the issue's: RSS <= 1.15 x (-m + F)
LIMIT_AS = 4096 * MIB  # far above any -m measured here


class MemServer(Server):
    """compare.py's server with -m and -t of this script, under an address-space limit."""

    def __init__(self, memory_mb: int, *args):
        super().__init__(*args)
        self.memory_mb = memory_mb

    def args(self) -> list[str]:
        a = super().args()
        a[a.index("-m") + 1] = str(self.memory_mb)
        return ["prlimit", f"--as={LIMIT_AS}", "--", *a]


def run_one(cfg, memory_mb: int, mix: str, name: str, binary: Path) -> dict:
    tag = f"m{memory_mb}-{mix}-{name}"
    limit = memory_mb * MIB
    with MemServer(memory_mb, name, binary, cfg.server_threads, cfg.logdir, tag) as srv:
        pid = srv.proc.pid  # prlimit execs the server: same process
        with socket.create_connection(("127.0.0.1", srv.port), timeout=5) as c:  # counted in F
            c.sendall(b"version\r\n")
            c.recv(64)
            fixed = read_status(pid)["VmRSS"]
        t0 = time.monotonic()
        with RssSampler(pid) as sampler:
            items, sent, refused = write_mix("127.0.0.1", srv.port, mix, limit, cfg.factor * limit, t0 + cfg.timeout)
        seconds = time.monotonic() - t0
        time.sleep(1.0)
        st = read_status(pid)
        cached = curr_items(srv.port)
        if sent < cfg.factor * limit:
            raise RuntimeError(f"wrote only {sent:,} of {cfg.factor * limit:,} bytes in {cfg.timeout} s")
        return {
            "argv": srv.args(),
            "items": items,
            "cached": cached,
            "bytes": sent,
            "refused": refused,
            "seconds": round(seconds, 1),
            "fixed": fixed,
            "rss": st["VmRSS"],
            "peak": max(st["VmHWM"], sampler.peak),
        }


def curr_items(port: int) -> int:
    """Items the server holds (`stats` curr_items): what the memory bound cost in hit rate."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as c:
        c.sendall(b"stats\r\n")
        reply = b""
        while not reply.endswith(b"END\r\n"):
            chunk = c.recv(65536)
            if not chunk:
                raise RuntimeError("the server closed the connection during stats")
            reply += chunk
    for line in reply.decode().splitlines():
        if line.startswith("STAT curr_items "):
            return int(line.split()[2])
    raise RuntimeError("no curr_items in stats")


def markdown(results: list[dict]) -> str:
    lines = [
        "| -m | mix | F MiB (mc / cn) | memcached RSS MiB (peak) | cache-node RSS MiB (peak) "
        "| memcached RSS / (-m + F) | cache-node RSS / (-m + F) | cache-node / memcached | refused (mc / cn) "
        "| items held (mc / cn) |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        mc, cn = r["memcached"], r["cache-node"]
        if "error" in mc or "error" in cn:
            lines.append(f"| {r['m']} | {MIXES[r['mix']][0]} | failed: {mc.get('error', '')} {cn.get('error', '')} ||||||||")
            continue

        def rel(x):
            return x["rss"] / (r["m"] * MIB + x["fixed"])

        lines.append(
            f"| {r['m']} | {MIXES[r['mix']][0]} | {mc['fixed'] / MIB:.1f} / {cn['fixed'] / MIB:.1f} "
            f"| {mc['rss'] / MIB:.1f} ({mc['peak'] / MIB:.1f}) | {cn['rss'] / MIB:.1f} ({cn['peak'] / MIB:.1f}) "
            f"| {rel(mc):.2f}{' ✗' if rel(mc) > BOUND else ''} | {rel(cn):.2f}{' ✗' if rel(cn) > BOUND else ''} "
            f"| **{cn['rss'] / mc['rss']:.2f}** | {mc['refused']:,} / {cn['refused']:,} "
            f"| {mc['cached']:,} / {cn['cached']:,} |"
        )
    return "\n".join(lines) + "\n"


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description="RSS against -m across item-size mixes, cache-node beside memcached.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("Examples:", 1)[1].rsplit("Exit status", 1)[0].join(["Examples:", ""]),
    )
    p.add_argument("--cache-node", type=Path, default=DEFAULT_CACHE_NODE, help="cache-node binary (default: %(default)s)")
    p.add_argument("--memcached", type=Path, default=DEFAULT_MEMCACHED, help="memcached binary (default: %(default)s)")
    p.add_argument("--build", action="store_true", help="cargo build --release cache-node first (if default path)")
    p.add_argument("--quick", action="store_true", help="CI smoke run: -m 64, mixes 100KB and mixed, 2 x -m written")
    p.add_argument("--memory", default=None, help="comma-separated -m values in MB (default 64,256; 64 with --quick)")
    p.add_argument("--mixes", default=None, help=f"comma-separated subset of {','.join(MIXES)} (default: all; 100KB,mixed with --quick)")
    p.add_argument("--factor", type=int, default=None, help="bytes written per run, in -m (default 3; 2 with --quick)")
    p.add_argument("--timeout", type=float, default=300, help="seconds a run may take to write (default: %(default)s)")
    p.add_argument("--server-threads", type=int, default=4, help="-t for both servers (default: %(default)s)")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output directory (default: %(default)s)")
    cfg = p.parse_args(argv)
    q = cfg.quick
    cfg.memory = [int(m) for m in (cfg.memory or ("64" if q else "64,256")).split(",")]
    cfg.mixes = (cfg.mixes or ("100KB,mixed" if q else ",".join(MIXES))).split(",")
    cfg.factor = cfg.factor or (2 if q else 3)
    bad = [m for m in cfg.mixes if m not in MIXES]
    if bad:
        p.error(f"unknown mix(es) {bad}; choose from {','.join(MIXES)}")
    return cfg


def main(argv=None) -> int:
    cfg = parse_args(argv)
    if cfg.build and cfg.cache_node == DEFAULT_CACHE_NODE:
        cargo_build(["cache-node"])
    binaries = {"memcached": cfg.memcached, "cache-node": cfg.cache_node}
    for what, path in binaries.items():
        if not (path.is_file() and os.access(path, os.X_OK)):
            hint = " (use --build, or --cache-node PATH)" if what == "cache-node" else ""
            print(f"memory.py: {what} binary not found: {path}{hint}", file=sys.stderr)
            return 2
    cfg.out.mkdir(parents=True, exist_ok=True)
    cfg.logdir = cfg.out / "logs"
    cfg.logdir.mkdir(exist_ok=True)

    command = shlex.join([sys.executable, *sys.argv])
    results, failures, t0 = [], 0, time.monotonic()
    for memory_mb in cfg.memory:
        for mix in cfg.mixes:
            row = {"m": memory_mb, "mix": mix}
            for name in SERVERS:
                log(f"-m {memory_mb} {mix} {name}")
                try:
                    r = run_one(cfg, memory_mb, mix, name, binaries[name])
                    log(f"  {r['bytes'] / 1e6:,.0f} MB in {r['items']:,} items ({r['refused']:,} refused), "
                        f"{r['seconds']} s: F {r['fixed'] / MIB:.1f} MiB, RSS {r['rss'] / MIB:.1f} MiB, "
                        f"peak {r['peak'] / MIB:.1f} MiB")
                except (RuntimeError, OSError, AssertionError, ValueError) as e:
                    log(f"  FAILED: {e}")
                    r, failures = {"error": str(e)}, failures + 1
                row[name] = r
            results.append(row)

    table = markdown(results)
    argv_example = next((r[n]["argv"] for r in results for n in SERVERS if "argv" in r[n]), [])
    header = (
        f"$ {command}\n\n"
        f"cache-node: {cfg.cache_node} ({tool_version(cfg.cache_node)})\n"
        f"memcached:  {cfg.memcached} ({tool_version(cfg.memcached)})\n"
        f"server command, e.g.: {shlex.join(argv_example)}\n"
        f"{cfg.factor} x -m of values written per run through one pipelined connection; "
        f"RSS 1 s after the last write; F = RSS of the empty server with the writer connected; "
        f"bound RSS / (-m + F) <= {BOUND} (✗ beyond); {os.cpu_count()} CPUs\n"
    )
    print()
    print(header)
    print(table)
    (cfg.out / "memory.md").write_text(header + "\n" + table)
    doc = {
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "command": command,
        "host": {"cpus": os.cpu_count(), "kernel": platform.release(), "python": platform.python_version()},
        "binaries": {k: {"path": str(v), "version": tool_version(v)} for k, v in binaries.items()},
        "config": {"memory_mb": cfg.memory, "mixes": cfg.mixes, "factor": cfg.factor,
                   "server_threads": cfg.server_threads, "quick": cfg.quick},
        "runs": results,
        "failures": failures,
        "elapsed_s": round(time.monotonic() - t0, 1),
    }
    (cfg.out / "memory.json").write_text(json.dumps(doc, indent=2) + "\n")
    log(f"wrote {cfg.out / 'memory.md'}, {cfg.out / 'memory.json'}")
    return 1 if failures else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    finally:
        stop_all()
