"""Memory and latency measuring parts shared by tests/integration/test_hostile.py and
tests/bench/memory.py: RSS from /proc, a sampling thread for peak RSS, a probe client that
times get/set on its own connection, and a pipelined writer of item-size mixes. No side
effects on import."""

from __future__ import annotations

import itertools
import random
import socket
import threading
import time

MIB = 1 << 20


def read_status(pid: int) -> dict[str, int]:
    """VmRSS / VmHWM in bytes from /proc/PID/status."""
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out[key] = int(rest.split()[0]) * 1024
    return out


def rss(pid: int) -> int:
    return read_status(pid)["VmRSS"]


def pct(vals: list[float], p: float) -> float | None:
    if not vals:
        return None
    s = sorted(vals)
    return s[min(len(s) - 1, max(0, round(p / 100 * len(s) + 0.5) - 1))]


class RssSampler:
    """Samples VmRSS of `pid` every `interval` seconds in a thread while in the `with` block;
    `peak` is the largest sample, `hwm` the kernel's VmHWM at the end (the true peak since
    the process started, which sampling may miss)."""

    def __init__(self, pid: int, interval: float = 0.01):
        self.pid, self.interval = pid, interval
        self.peak = self.hwm = self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                st = read_status(self.pid)
                self.peak, self.hwm = max(self.peak, st["VmRSS"]), st["VmHWM"]
            except (OSError, KeyError):  # the process is gone (a zombie has no VmRSS)
                return
            self.samples += 1
            self._stop.wait(self.interval)

    def __enter__(self) -> "RssSampler":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


def _read_line(sock: socket.socket, buf: bytearray) -> bytes:
    while (i := buf.find(b"\r\n")) < 0:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("connection closed")
        buf += chunk
    line = bytes(buf[:i])
    del buf[: i + 2]
    return line


class Probe:
    """A well-behaved client on its own connection beside an attack: every `interval` it sets
    a fresh key and gets the previous one, timing each request. `acked` holds what the server
    acknowledged (STORED); `verify` reads it all back afterwards. Every request has a timeout
    (`op_timeout`), and a failed request ends the probe (recorded in `error`)."""

    def __init__(self, host: str, port: int, interval: float = 0.005, op_timeout: float = 10.0):
        self.addr, self.interval, self.op_timeout = (host, port), interval, op_timeout
        self.latencies: list[float] = []
        self.acked: dict[bytes, bytes] = {}
        self.error: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        try:
            with socket.create_connection(self.addr, timeout=self.op_timeout) as s:
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                buf = bytearray()
                for i in itertools.count():
                    if self._stop.is_set():
                        return
                    key, value = b"probe:%d" % i, b"value-%d" % i
                    t0 = time.monotonic()
                    s.sendall(b"set %s 0 0 %d\r\n%s\r\n" % (key, len(value), value))
                    line = _read_line(s, buf)
                    self.latencies.append(time.monotonic() - t0)
                    if line != b"STORED":
                        raise AssertionError(f"set {key!r}: {line!r}")
                    self.acked[key] = value
                    t0 = time.monotonic()
                    s.sendall(b"get %s\r\n" % key)
                    got = self._read_get(s, buf)
                    self.latencies.append(time.monotonic() - t0)
                    if got != value:
                        raise AssertionError(f"get {key!r} right after its set: {got!r}")
                    self._stop.wait(self.interval)
        except (OSError, AssertionError) as e:
            self.error = f"{type(e).__name__}: {e} (after {len(self.latencies)} requests)"

    @staticmethod
    def _read_get(s: socket.socket, buf: bytearray) -> bytes | None:
        line = _read_line(s, buf)
        if line == b"END":
            return None
        size = int(line.split()[3])
        while len(buf) < size + 2:
            chunk = s.recv(65536)
            if not chunk:
                raise ConnectionError("connection closed")
            buf += chunk
        value = bytes(buf[:size])
        del buf[: size + 2]
        if _read_line(s, buf) != b"END":
            raise AssertionError("no END after the value")
        return value

    def verify(self, timeout: float = 10.0) -> list[bytes]:
        """The acknowledged keys that do not read back with their value (all of them if the
        server does not answer)."""
        lost = []
        try:
            with socket.create_connection(self.addr, timeout=timeout) as s:
                buf = bytearray()
                for key, value in self.acked.items():
                    s.sendall(b"get %s\r\n" % key)
                    if self._read_get(s, buf) != value:
                        lost.append(key)
        except OSError:
            return list(self.acked)
        return lost

    def summary(self) -> str:
        ms = [x * 1000 for x in self.latencies] or [float("nan")]
        return (f"{len(self.latencies)} requests, p50 {pct(ms, 50):.1f} ms, p99 {pct(ms, 99):.1f} ms, "
                f"max {max(ms):.1f} ms" + (f", ERROR {self.error}" if self.error else ""))

    @property
    def max_latency(self) -> float:
        return max(self.latencies, default=float("inf"))

    def __enter__(self) -> "Probe":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=self.op_timeout + 5)


# Item-size mixes for the memory measurements: name -> (description, sizes(limit)), where
# `limit` is the server's -m in bytes and sizes() an endless iterator of value sizes.
def _turns(*turns: tuple[int, float]):
    """(size, share of `limit`): each size in turn for that many bytes, so that one size fills
    the cache and the next has to take its memory. (The 100 B turn is a quarter of -m: as
    hard on memory as a whole -m, measured, in a quarter of the requests.)"""
    return lambda limit: itertools.cycle(itertools.chain(
        *(itertools.repeat(size, int(limit * share) // size) for size, share in turns)))


def _log_uniform(lo: int, hi: int):
    def sizes(_limit: int):
        rng = random.Random(1)
        while True:
            yield int(lo * (hi / lo) ** rng.random())

    return sizes


PATTERN = bytes(range(251)) * (1_000_000 // 251 + 1)  # value bytes: a prefix of this
OUT_OF_MEMORY = b"SERVER_ERROR out of memory storing object"

MIXES = {
    "100B": ("100 B values", lambda _limit: itertools.repeat(100)),
    "5KB": ("5 KB values", lambda _limit: itertools.repeat(5_000)),
    "100KB": ("100 KB values", lambda _limit: itertools.repeat(100_000)),
    "mixed": ("100 B, 5 KB, 100 KB in turns of -m/4, -m, -m bytes",
              _turns((100, 0.25), (5_000, 1.0), (100_000, 1.0))),
    "random": ("1 B to 1,000,000 B, log-uniform (seeded)", _log_uniform(1, 1_000_000)),
}


def write_mix(host: str, port: int, mix: str, limit: int, total_bytes: int, deadline: float,
              prefix: bytes = b"k") -> tuple[int, int, int]:
    """Sets distinct keys with values of `mix` sizes (for a server with -m `limit` bytes) until
    `total_bytes` of values are sent, pipelined (batches of up to 1 MiB or 2,000 commands).
    Every reply must be STORED, or SERVER_ERROR out of memory (memcached's answer when no slab
    page can be had for a size; counted). Stops at `deadline` (time.monotonic()).
    Returns (items sent, value bytes sent, items refused for memory)."""
    sizes = MIXES[mix][1](limit)
    items = sent = refused = 0
    buf = bytearray()
    with socket.create_connection((host, port), timeout=30) as s:
        while sent < total_bytes and time.monotonic() < deadline:
            batch, n, nbytes = [], 0, 0
            while nbytes < MIB and n < 2000 and sent + nbytes < total_bytes:
                size = next(sizes)
                batch.append(b"set %s%d 0 0 %d\r\n%s\r\n" % (prefix, items + n, size, PATTERN[:size]))
                n, nbytes = n + 1, nbytes + size
            s.sendall(b"".join(batch))
            for _ in range(n):
                line = _read_line(s, buf)
                if line == OUT_OF_MEMORY:
                    refused += 1
                elif line != b"STORED":
                    raise AssertionError(f"set #{items}: {line[:200]!r}")
            items, sent = items + n, sent + nbytes
    return items, sent, refused
