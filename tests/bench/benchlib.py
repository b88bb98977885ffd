"""Shared parts of the benchmark scripts (compare.py, replication.py): where the binaries
are, children that cannot outlive the script, and small measuring helpers."""

from __future__ import annotations

import atexit
import ctypes
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from memlib import pct, read_status  # noqa: F401 - re-exported for the benchmark scripts

REPO = Path(__file__).resolve().parents[2]
DEFAULT_OUT = REPO / "tests" / "bench" / "out"
DEFAULT_LOADGEN = REPO / "target" / "release" / "loadgen"
DEFAULT_CACHE_NODE = REPO / "target" / "release" / "cache-node"
DEFAULT_MEMCACHED = Path("/usr/bin/memcached")

# ----------------------------------------------------------------- process hygiene
#
# Children get PR_SET_PDEATHSIG, and atexit / SIGTERM / SIGINT / SIGHUP stop them.
# PDEATHSIG alone is not enough here: the kernel clears it when a server
# switches to `-u nobody` (any euid change does), so a small watchdog process also
# holds the pid of every child and SIGKILLs them when this script's pipe to it closes
# (i.e. when the script dies in any way, SIGKILL included).

_LIVE: dict[int, subprocess.Popen] = {}
_PR_SET_PDEATHSIG = 1
_WATCHDOG: subprocess.Popen | None = None
_WATCHDOG_SRC = r"""
import os, signal
pids, buf = set(), b""
while True:
    try:
        d = os.read(0, 4096)
    except InterruptedError:
        continue
    if not d:
        break
    buf += d
    *lines, buf = buf.split(b"\n")
    for l in lines:
        if l.startswith(b"-"):
            pids.discard(int(l[1:]))
        elif l:
            pids.add(int(l))
for p in pids:
    try:
        os.kill(p, signal.SIGKILL)
    except OSError:
        pass
"""


def _die_with_parent() -> None:
    """preexec_fn: the child gets SIGKILL if this script dies (until it changes uid)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except Exception:  # noqa: BLE001 - best effort, non-Linux
        pass


def _watch(pid: int, add: bool = True) -> None:
    global _WATCHDOG
    try:
        if _WATCHDOG is None:
            _WATCHDOG = subprocess.Popen(
                [sys.executable, "-c", _WATCHDOG_SRC],
                stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL,
                start_new_session=True,  # survives a Ctrl-C to our process group
            )
        _WATCHDOG.stdin.write(f"{'' if add else '-'}{pid}\n".encode())
        _WATCHDOG.stdin.flush()
    except (OSError, ValueError):
        pass


def spawn(argv: list[str], **kw) -> subprocess.Popen:
    """Starts a child that cannot outlive this script."""
    p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, preexec_fn=_die_with_parent, **kw)
    _LIVE[p.pid] = p
    _watch(p.pid)
    return p


def finish_json(p: subprocess.Popen, timeout: float) -> dict:
    """Waits for a child started by `spawn` with piped text output and returns the JSON object
    on its last line (its stderr, if any, under "stderr"); kills it if the wait fails."""
    try:
        out, err = p.communicate(timeout=timeout)
    except BaseException:
        p.kill()
        p.communicate()
        raise
    finally:
        forget(p)
    if p.returncode != 0 or not out.strip():
        raise RuntimeError(f"{' '.join(map(str, p.args))} failed (rc={p.returncode}):\n{err[-2000:]}")
    res = json.loads(out.strip().splitlines()[-1])
    if err.strip():
        res["stderr"] = err.strip()[-2000:]
    return res


def run_json(argv: list[str], timeout: float) -> dict:
    """Runs a child to its end; the JSON object on its last line (see `finish_json`)."""
    return finish_json(spawn(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True), timeout)


def live_pids() -> list[int]:
    """The children started with `spawn` and not yet stopped or forgotten."""
    return list(_LIVE)


def forget(p: subprocess.Popen) -> None:
    if _LIVE.pop(p.pid, None) is not None:
        _watch(p.pid, add=False)


def stop(p: subprocess.Popen, grace: float = 5.0) -> None:
    if p.poll() is None:
        try:
            p.terminate()
            p.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(timeout=grace)
        except ProcessLookupError:
            pass
    forget(p)


def stop_all() -> None:
    """Stops every child still running (also at exit and on SIGTERM, SIGINT, SIGHUP)."""
    for p in list(_LIVE.values()):
        try:
            stop(p, grace=2.0)
        except Exception:  # noqa: BLE001 - keep going, kill the rest
            try:
                p.kill()
            except Exception:  # noqa: BLE001
                pass
    if _WATCHDOG is not None and _WATCHDOG.poll() is None:
        try:
            _WATCHDOG.stdin.close()
            _WATCHDOG.wait(timeout=5)
        except Exception:  # noqa: BLE001
            _WATCHDOG.kill()


def _on_signal(signum, _frame):
    raise SystemExit(128 + signum)


atexit.register(stop_all)
for _sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
    signal.signal(_sig, _on_signal)

# ----------------------------------------------------------------- helpers


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_busy_seconds() -> float:
    """CPU time spent busy by the whole machine (all CPUs), from /proc/stat."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    busy = v[0] + v[1] + v[2] + v[5] + v[6] + (v[7] if len(v) > 7 else 0)
    return busy / os.sysconf("SC_CLK_TCK")


def tool_version(path: Path) -> str:
    try:
        r = subprocess.run(
            [str(path), "-V"], capture_output=True, text=True, timeout=5, stdin=subprocess.DEVNULL
        )
        return (r.stdout or r.stderr).strip().splitlines()[0] if (r.stdout or r.stderr) else "?"
    except Exception as e:  # noqa: BLE001
        return f"? ({e})"


def secs(d: str) -> float:
    d = d.strip()
    for suf, mul in (("ms", 1e-3), ("s", 1.0), ("m", 60.0)):
        if d.endswith(suf):
            return float(d[: -len(suf)]) * mul
    return float(d)


def cargo_build(packages: list[str]) -> None:
    """`cargo build --release` of the workspace packages the benchmark runs (--build)."""
    cargo = shutil.which("cargo")
    if not cargo:
        raise SystemExit("--build: cargo not found")
    argv = [cargo, "build", "--release"] + [a for p in packages for a in ("-p", p)]
    log(" ".join(["cargo", *argv[1:]]))
    if subprocess.run(argv, cwd=REPO, timeout=1800).returncode != 0:
        raise SystemExit("build failed")


def add_binary_args(p) -> None:
    """--cache-node, --memcached and --loadgen, as every benchmark script takes them."""
    p.add_argument("--cache-node", type=Path, default=DEFAULT_CACHE_NODE, help="cache-node binary (default: %(default)s)")
    p.add_argument("--memcached", type=Path, default=DEFAULT_MEMCACHED, help="memcached binary (default: %(default)s)")
    p.add_argument("--loadgen", type=Path, default=DEFAULT_LOADGEN, help="loadgen binary (default: %(default)s)")
