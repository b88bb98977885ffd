#!/usr/bin/env python3
"""Side-by-side benchmark: cache-node vs memcached, same machine, same load generator.

Each run starts a fresh server on a free loopback port with the same flags
(``-p PORT -l 127.0.0.1 -t 2 -m 1024 -c 4096 -U 0``, plus ``-u root`` when run
as root, which memcached requires), drives it with ``loadgen`` and stops it.
The two servers alternate within every round (the order flips each round so
that drift on the machine hits both alike).

Scenarios:
  a  90/10 get/set, 100-byte values, 50 connections, pipeline 1 (keys prefilled)
  b  same with pipeline 16
  c  memory: fill 1,000,000 items of 100-byte values, then read VmRSS;
     bytes/item = (RSS after fill - RSS of the idle server) / items
  d  as b with the gets as meta commands (mg <key> k v): the read path of meta
     and binary clients, whose hits are held until the batch's replies go out

With --tls both servers serve TLS only (-Z, with a certificate and CA made with
the openssl command in the output directory) and loadgen connects over TLS
(--tls-ca); scenarios a and b by default, outputs prefixed tls-.

Prints a Markdown table of medians over the rounds with cache-node/memcached
ratios, and writes results.json, table.md and compare.png to tests/bench/out/.

Examples:
  python3 tests/bench/compare.py --build              # full run, 3 rounds
  python3 tests/bench/compare.py --quick              # CI smoke run (~30 s)
  python3 tests/bench/compare.py --quick --cache-node /usr/bin/memcached
  python3 tests/bench/compare.py --tls                # TLS, scenarios a and b

Exit status: 0 if every run completed without errors, 1 if some run failed or
reported errors, 2 on bad usage / missing binaries.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import resource
import socket
import ssl
import statistics
import subprocess
import sys
import time
from pathlib import Path

from benchlib import (
    DEFAULT_CACHE_NODE,
    DEFAULT_OUT,
    add_binary_args,
    cargo_build,
    cpu_seconds,
    free_port,
    log,
    machine_busy_seconds,
    read_status,
    run_json,
    secs,
    spawn,
    stop,
    stop_all,
    tool_version,
)


SERVERS = ("memcached", "cache-node")
SCENARIOS = {
    "a": "get/set 90/10, 100 B, 50 conns, pipeline 1",
    "b": "get/set 90/10, 100 B, 50 conns, pipeline 16",
    "c": "memory after fill of 100 B items",
    "d": "mg/set 90/10, 100 B, 50 conns, pipeline 16",
}
# Scenarios of request load (the others measure memory).
LOAD = "abd"

# ----------------------------------------------------------------- helpers


def children_cpu_seconds() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


class Tls:
    """A CA and a server certificate for 127.0.0.1, made with the openssl command."""

    def __init__(self, directory: Path):
        directory.mkdir(parents=True, exist_ok=True)
        self.ca, self.cert, self.key = directory / "ca.crt", directory / "server.crt", directory / "server.key"
        ca_key, csr, ext = directory / "ca.key", directory / "server.csr", directory / "server.ext"
        ext.write_text("subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n")
        key = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
        for argv in (
            ["req", "-x509", *key, "-keyout", ca_key, "-out", self.ca, "-days", "2", "-subj", "/CN=bench-ca"],
            ["req", *key, "-keyout", self.key, "-out", csr, "-subj", "/CN=127.0.0.1"],
            ["x509", "-req", "-in", csr, "-CA", self.ca, "-CAkey", ca_key, "-set_serial", "1", "-days", "2",
             "-extfile", ext, "-out", self.cert],
        ):
            subprocess.run(["openssl", *map(str, argv)], check=True, capture_output=True, timeout=30)
        self.key.chmod(0o644)  # read by the -u user when a server reloads it

    def server_args(self) -> list[str]:
        return ["-Z", "-o", f"ssl_chain_cert={self.cert},ssl_key={self.key}"]

    def wrap(self, sock: socket.socket) -> socket.socket:
        return ssl.create_default_context(cafile=str(self.ca)).wrap_socket(sock, server_hostname="127.0.0.1")


class Server:
    """One server process on a free loopback port; stopped on exit no matter what."""

    def __init__(self, name: str, binary: Path, threads: int, logdir: Path, tag: str, tls: Tls | None = None):
        self.name = name
        self.binary = binary
        self.threads = threads
        self.tls = tls
        self.logpath = logdir / f"{tag}.log"
        self.proc: subprocess.Popen | None = None
        self.port = 0

    def args(self) -> list[str]:
        a = [
            str(self.binary),
            "-p", str(self.port),
            "-l", "127.0.0.1",
            "-t", str(self.threads),
            "-m", "1024",
            "-c", "4096",
            "-U", "0",
        ]  # fmt: skip
        if self.tls:
            a += self.tls.server_args()
        if os.geteuid() == 0:
            a += ["-u", "root"]  # memcached refuses to run as root without -u
        return a

    def start(self) -> None:
        last = ""
        for _attempt in range(3):  # a free port can be taken between probe and bind
            self.port = free_port()
            with open(self.logpath, "ab") as logf:
                logf.write(f"$ {' '.join(self.args())}\n".encode())
                logf.flush()
                self.proc = spawn(self.args(), stdout=logf, stderr=subprocess.STDOUT)
            if self._wait_ready(10.0):
                return
            stop(self.proc)
            last = self.logpath.read_text(errors="replace")[-400:]
        raise RuntimeError(f"{self.name} did not start ({self.binary}); log tail:\n{last}")

    def _wait_ready(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1.0) as s:
                    if self.tls:
                        s = self.tls.wrap(s)
                    s.sendall(b"version\r\n")
                    s.settimeout(2.0)
                    if s.recv(64).startswith(b"VERSION"):
                        return True
            except OSError:
                pass
            time.sleep(0.05)
        return False

    @property
    def addr(self) -> str:
        return f"127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self.proc is not None:
            stop(self.proc)

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.stop()


def run_loadgen(loadgen: Path, argv: list[str], timeout: float) -> dict:
    return run_json([str(loadgen), *argv, "--json", "--allow-errors"], timeout)


# ----------------------------------------------------------------- scenarios


def scenario_load(cfg, srv: Server, pipeline: int, meta_gets: bool = False) -> dict:
    argv = [
        "--server", srv.addr,
        "--connections", "50",
        "--pipeline", str(pipeline),
        "--get-ratio", "0.9",
        "--keys", str(cfg.keys),
        "--value-size", "100",
        "--duration", cfg.duration,
        "--warmup", cfg.warmup,
        "--threads", str(cfg.loadgen_threads),
        "--prefill",
    ]  # fmt: skip
    if meta_gets:
        argv.append("--meta-gets")
    if cfg.tls:
        argv += ["--tls-ca", str(cfg.tls.ca)]
    budget = secs(cfg.duration) + secs(cfg.warmup) + 180
    cpu0, lg0, busy0, t0 = cpu_seconds(srv.proc.pid), children_cpu_seconds(), machine_busy_seconds(), time.monotonic()
    res = run_loadgen(cfg.loadgen, argv, budget)
    cpu1, lg1, busy1, t1 = cpu_seconds(srv.proc.pid), children_cpu_seconds(), machine_busy_seconds(), time.monotonic()
    res.update(read_status(srv.proc.pid))
    res["server_cpu_s"] = round(cpu1 - cpu0, 3)
    res["loadgen_cpu_s"] = round(lg1 - lg0, 3)
    # CPU used by anything else on the machine meanwhile: a noise indicator
    res["other_cpu_s"] = round(max(0.0, (busy1 - busy0) - (cpu1 - cpu0) - (lg1 - lg0)), 3)
    res["wall_s"] = round(t1 - t0, 3)
    if res["other_cpu_s"] > 0.1 * res["wall_s"] * (os.cpu_count() or 1):
        log(f"  warning: other processes used {res['other_cpu_s']:.1f} CPU-s during this run (noisy machine)")
    return res


def scenario_memory(cfg, srv: Server) -> dict:
    time.sleep(0.2)
    idle = read_status(srv.proc.pid)["VmRSS"]
    argv = [
        "fill",
        "--server", srv.addr,
        "--items", str(cfg.fill_items),
        "--value-size", "100",
        "--threads", str(cfg.loadgen_threads),
        "--verify", "1000",
    ]  # fmt: skip
    if cfg.tls:
        argv += ["--tls-ca", str(cfg.tls.ca)]
    res = run_loadgen(cfg.loadgen, argv, 900)
    time.sleep(0.5)  # let background work (hash table expansion) settle
    st = read_status(srv.proc.pid)
    res["rss_idle"] = idle
    res["rss"] = st["VmRSS"]
    res["hwm"] = st.get("VmHWM", 0)
    res["bytes_per_item"] = (st["VmRSS"] - idle) / max(cfg.fill_items, 1)
    return res


def run_one(cfg, scen: str, name: str, binary: Path, rnd: int) -> dict:
    tag = f"r{rnd}-{scen}-{name}"
    with Server(name, binary, cfg.server_threads, cfg.logdir, tag, cfg.tls) as srv:
        if scen == "a":
            return scenario_load(cfg, srv, 1)
        if scen == "b":
            return scenario_load(cfg, srv, 16)
        if scen == "d":
            return scenario_load(cfg, srv, 16, meta_gets=True)
        return scenario_memory(cfg, srv)


# ----------------------------------------------------------------- reporting

# (scenario kinds, key in a run's result, label, format, better)
METRICS = [
    (LOAD, "ops_per_sec", "ops/s", "{:,.0f}", "higher"),
    (LOAD, "p50_us", "p50 µs", "{:,.1f}", "lower"),
    (LOAD, "p99_us", "p99 µs", "{:,.1f}", "lower"),
    (LOAD, "server_cpu_us_per_op", "server CPU µs/op", "{:,.2f}", "lower"),
    ("c", "items_per_sec", "fill items/s", "{:,.0f}", "higher"),
    ("c", "rss_mib", "RSS MiB", "{:,.1f}", "lower"),
    ("c", "bytes_per_item", "bytes/item", "{:,.1f}", "lower"),
]


def derive(scen: str, r: dict) -> dict:
    r = dict(r)
    if scen in LOAD:
        ops = r.get("gets", 0) + r.get("sets", 0)
        r["server_cpu_us_per_op"] = r["server_cpu_s"] * 1e6 / ops if ops else float("nan")
    else:
        r["rss_mib"] = r["rss"] / 2**20
    return r


def summarize(results: dict) -> dict:
    summary = {}
    for scen, per_server in results.items():
        s = {}
        for kinds, key, label, fmt, better in METRICS:
            if scen not in kinds:
                continue
            med = {}
            for name in SERVERS:
                vals = [derive(scen, r)[key] for r in per_server.get(name, []) if "error" not in r]
                med[name] = statistics.median(vals) if vals else None
            a, b = med["memcached"], med["cache-node"]
            ratio = b / a if a and b is not None else None
            s[key] = {"label": label, "fmt": fmt, "better": better, "median": med, "ratio": ratio}
        summary[scen] = s
    return summary


def markdown_table(summary: dict, rounds: dict) -> str:
    lines = [
        "| scenario | metric | memcached | cache-node | cache-node / memcached |",
        "|---|---|---:|---:|---:|",
    ]
    for scen, s in summary.items():
        first = True
        for _key, m in s.items():
            fmt = m["fmt"]
            cells = [fmt.format(m["median"][n]) if m["median"][n] is not None else "n/a" for n in SERVERS]
            ratio = f"{m['ratio']:.3f}" if m["ratio"] is not None else "n/a"
            label = f"{scen}: {SCENARIOS[scen]} ({rounds[scen]} round{'s' if rounds[scen] != 1 else ''})" if first else ""
            lines.append(f"| {label} | {m['label']} ({m['better']} is better) | {cells[0]} | {cells[1]} | {ratio} |")
            first = False
    return "\n".join(lines) + "\n"


def plot(results: dict, summary: dict, path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log("matplotlib not installed (pip install -r tests/bench/requirements.txt): no plot")
        return
    # one column per scenario: throughput-like metric on top, latency/size below
    cols = []
    for scen in summary:
        if scen in LOAD:
            cols.append([(scen, "ops_per_sec", f"{scen}: ops/s (pipeline {1 if scen == 'a' else 16})"),
                         (scen, "p99_us", f"{scen}: p99 µs")])
        else:
            cols.append([(scen, "rss_mib", f"{scen}: RSS MiB after fill"), (scen, "bytes_per_item", f"{scen}: bytes/item")])
    if not cols:
        return
    fig, axes = plt.subplots(2, len(cols), figsize=(3.6 * len(cols) + 0.6, 7.2), squeeze=False)
    colors = {"memcached": "#4c72b0", "cache-node": "#dd8452"}
    for c, col in enumerate(cols):
        for row, (scen, key, title) in enumerate(col):
            ax = axes[row][c]
            m = summary[scen][key]
            for i, name in enumerate(SERVERS):
                med = m["median"][name]
                if med is not None:
                    ax.bar(i, med, width=0.6, color=colors[name], alpha=0.75)
                vals = [derive(scen, r)[key] for r in results[scen].get(name, []) if "error" not in r]
                n = len(vals)
                xs = [i + (j - (n - 1) / 2) * 0.08 for j in range(n)]
                ax.scatter(xs, vals, color="black", s=14, zorder=3)
            ax.set_xticks(range(len(SERVERS)), SERVERS)
            ratio = m["ratio"]
            ax.set_title(f"{title}\nratio {ratio:.3f}" if ratio is not None else title, fontsize=10)
            ax.grid(axis="y", alpha=0.3)
    fig.suptitle("cache-node vs memcached (bars: median, dots: rounds)", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ----------------------------------------------------------------- main


def build(cfg) -> None:
    cargo_build(["loadgen", "cache-node"] if cfg.cache_node == DEFAULT_CACHE_NODE else ["loadgen"])


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description="Side-by-side benchmark of cache-node vs memcached (same box, same loadgen).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("Examples:", 1)[1].rsplit("Exit status", 1)[0].join(["Examples:", ""]),
    )
    add_binary_args(p)
    p.add_argument("--build", action="store_true", help="cargo build --release loadgen (and cache-node if default path) first")
    p.add_argument("--rounds", type=int, default=None, help="rounds per scenario and server (default 3; 1 with --quick)")
    p.add_argument("--scenarios", default=None, help="comma-separated subset of a,b,c,d (default: a,b,c,d; a,b with --tls)")
    p.add_argument("--tls", action="store_true", help="both servers with -Z, loadgen over TLS; outputs prefixed tls-")
    p.add_argument("--quick", action="store_true", help="CI smoke run: 1 round, 2s runs, 100k-item fill")
    p.add_argument("--duration", default=None, help="measured time per load run (default 10s; 2s with --quick)")
    p.add_argument("--warmup", default=None, help="warm-up per load run (default 2s; 0.5s with --quick)")
    p.add_argument("--keys", type=int, default=100_000, help="key space of scenarios a/b (default: %(default)s)")
    p.add_argument("--fill-items", type=int, default=None, help="items of scenario c (default 1000000; 100000 with --quick)")
    p.add_argument("--server-threads", type=int, default=2, help="-t for both servers (default: %(default)s)")
    p.add_argument("--loadgen-threads", type=int, default=2, help="loadgen --threads (default: %(default)s)")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output directory (default: %(default)s)")
    cfg = p.parse_args(argv)
    q = cfg.quick
    cfg.rounds = cfg.rounds if cfg.rounds is not None else (1 if q else 3)
    cfg.duration = cfg.duration or ("2s" if q else "10s")
    cfg.warmup = cfg.warmup or ("0.5s" if q else "2s")
    cfg.fill_items = cfg.fill_items or (100_000 if q else 1_000_000)
    cfg.scenarios = [s.strip() for s in (cfg.scenarios or ("a,b" if cfg.tls else "a,b,c,d")).split(",") if s.strip()]
    bad = [s for s in cfg.scenarios if s not in SCENARIOS]
    if bad or not cfg.scenarios:
        p.error(f"unknown scenario(s) {bad}; choose from a,b,c,d")
    if cfg.rounds < 1:
        p.error("--rounds must be at least 1")
    return cfg


def main(argv=None) -> int:
    cfg = parse_args(argv)
    if cfg.build:
        build(cfg)
    binaries = {"memcached": cfg.memcached, "cache-node": cfg.cache_node}
    for what, path in [*binaries.items(), ("loadgen", cfg.loadgen)]:
        if not (path.is_file() and os.access(path, os.X_OK)):
            hint = " (use --build, or --cache-node PATH)" if what != "memcached" else ""
            print(f"compare.py: {what} binary not found: {path}{hint}", file=sys.stderr)
            return 2
    cfg.out.mkdir(parents=True, exist_ok=True)
    cfg.logdir = cfg.out / "logs"
    cfg.logdir.mkdir(exist_ok=True)
    for old in cfg.logdir.glob("*.log"):
        old.unlink()
    cfg.tls = Tls(cfg.out / "tls") if cfg.tls else None
    prefix = "tls-" if cfg.tls else ""

    results: dict = {s: {n: [] for n in SERVERS} for s in cfg.scenarios}
    failures = 0
    t0 = time.monotonic()
    for rnd in range(cfg.rounds):
        order = SERVERS if rnd % 2 == 0 else SERVERS[::-1]
        for scen in cfg.scenarios:
            for name in order:
                log(f"round {rnd + 1}/{cfg.rounds} scenario {scen} {name}")
                try:
                    r = run_one(cfg, scen, name, binaries[name], rnd)
                except (RuntimeError, subprocess.TimeoutExpired, OSError, ValueError) as e:
                    log(f"  FAILED: {e}")
                    r = {"error": str(e)}
                    failures += 1
                else:
                    if r.get("errors", 0):
                        log(f"  {r['errors']} errors reported by loadgen: {r.get('stderr', '')[:500]}")
                        failures += 1
                    if scen in LOAD:
                        log(f"  {r['ops_per_sec']:,.0f} ops/s  p99 {r['p99_us']:,.1f} µs")
                    else:
                        log(
                            f"  {r['items_per_sec']:,.0f} items/s  RSS {r['rss'] / 2**20:,.1f} MiB"
                            f"  {r['bytes_per_item']:,.1f} B/item"
                        )
                results[scen][name].append(r)

    summary = summarize(results)
    table = markdown_table(summary, {s: cfg.rounds for s in cfg.scenarios})
    header = (
        f"cache-node: {cfg.cache_node} ({tool_version(cfg.cache_node)})\n"
        f"memcached:  {cfg.memcached} ({tool_version(cfg.memcached)})\n"
        f"server flags: -t {cfg.server_threads} -m 1024 -c 4096 -U 0{' -Z (EC P-256 certificate)' if cfg.tls else ''}; "
        f"loadgen threads {cfg.loadgen_threads}, {cfg.duration} (+{cfg.warmup} warm-up) per run; "
        f"{os.cpu_count()} CPUs; medians of {cfg.rounds} round(s)\n"
    )
    noisy = [
        f"{scen}/{name}#{i + 1}"
        for scen, per in results.items()
        for name, rs in per.items()
        for i, r in enumerate(rs)
        if r.get("other_cpu_s", 0) > 0.1 * r.get("wall_s", 0) * (os.cpu_count() or 1)
    ]
    if noisy:
        table += (
            f"\nWarning: other processes used >10% of the CPU during {len(noisy)} run(s) "
            f"({', '.join(noisy)}); numbers are noisy.\n"
        )
    print()
    print(header)
    print(table)
    (cfg.out / f"{prefix}table.md").write_text(header + "\n" + table)
    doc = {
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "host": {"cpus": os.cpu_count(), "kernel": platform.release(), "python": platform.python_version()},
        "binaries": {k: {"path": str(v), "version": tool_version(v)} for k, v in binaries.items()},
        "config": {
            "rounds": cfg.rounds,
            "scenarios": cfg.scenarios,
            "duration": cfg.duration,
            "warmup": cfg.warmup,
            "keys": cfg.keys,
            "fill_items": cfg.fill_items,
            "server_threads": cfg.server_threads,
            "loadgen_threads": cfg.loadgen_threads,
            "quick": cfg.quick,
            "tls": bool(cfg.tls),
        },
        "summary": {
            scen: {k: {"median": m["median"], "ratio": m["ratio"]} for k, m in s.items()} for scen, s in summary.items()
        },
        "runs": results,
        "failures": failures,
        "elapsed_s": round(time.monotonic() - t0, 1),
    }
    (cfg.out / f"{prefix}results.json").write_text(json.dumps(doc, indent=2) + "\n")
    plot(results, summary, cfg.out / f"{prefix}compare.png")
    log(f"wrote {prefix}results.json, {prefix}table.md and {prefix}compare.png in {cfg.out}")
    if failures:
        log(f"{failures} run(s) failed or reported errors")
        return 1
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    finally:
        stop_all()
