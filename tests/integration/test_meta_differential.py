"""Meta protocol (mg ms md ma mn me): cache-node against memcached 1.6.18, reply for reply.

Both servers are started here on free 127.0.0.1 ports and receive the same command sequences
over one connection each: hand-picked edge cases, then seeded random sequences
(``META_DIFF_SEEDS`` sequences of ``META_DIFF_COMMANDS`` commands from ``META_DIFF_SEED``).
Replies must be identical, except that

* CAS values are compared by identity (each server's CAS numbers are mapped to the order in
  which they first appear), and requests quote each server's own CAS values;
* TTLs (``t``, ``exp=``) may differ by one second: the servers' clocks tick at different
  instants;
* last-access times (``l``, ``la=``) are not compared: memcached's segmented LRU updates an
  item's access time only on some fetches, cache-node on every fetch;
* an item is not inspected after a random increment: whether memcached did it in place depends
  on its LRU maintainer's timing (see ``test_edge_cases``).

Binaries: ``$CACHE_NODE_BIN`` (default ``<repo>/target/debug/cache-node``) and
``$MEMCACHED_BIN`` (default ``/usr/bin/memcached``).
"""

from __future__ import annotations

import base64
import os
import random
import re
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
HOST = "127.0.0.1"
START_TIMEOUT = 15.0
STOP_TIMEOUT = 5.0
IO_TIMEOUT = 5.0


def _binary(env: str, default: Path) -> Path:
    path = Path(os.environ.get(env) or default)
    if not (path.is_file() and os.access(path, os.X_OK)):
        pytest.fail(f"binary not found or not executable: {path} (set ${env})", pytrace=False)
    return path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def _accepts_user_flag(binary: Path) -> bool:
    # memcached needs -u to run as root; cache-node builds without the flag run as they are.
    out = subprocess.run([str(binary), "--help"], capture_output=True, timeout=10, check=False)
    return re.search(rb"^\s*-u[, ]", out.stdout, re.MULTILINE) is not None


class Server:
    def __init__(self, name: str, binary: Path):
        self.name = name
        self.port = _free_port()
        args = [str(binary), "-p", str(self.port), "-l", HOST, "-U", "0", "-m", "64", "-I", "1m"]
        if os.geteuid() == 0 and (name == "memcached" or _accepts_user_flag(binary)):
            args += ["-u", "nobody"]
        self.log = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=self.log)
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if self.proc.poll() is not None:
                self.log.seek(0)
                err = self.log.read().decode(errors="replace")
                self.log.close()
                pytest.fail(f"{name} exited at start-up ({self.proc.returncode}): {err}", pytrace=False)
            try:
                socket.create_connection((HOST, self.port), timeout=0.5).close()
                return
            except OSError:
                if time.monotonic() > deadline:
                    self.stop()
                    pytest.fail(f"{name} did not accept connections on port {self.port}", pytrace=False)
                time.sleep(0.05)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(STOP_TIMEOUT)
        self.log.close()


class Conn:
    """One connection, and what it learned of its server's CAS values."""

    def __init__(self, server: Server):
        self.sock = socket.create_connection((HOST, server.port), timeout=IO_TIMEOUT)
        self.buf = b""
        self.sent = 0
        self.cas_of: dict[bytes, int] = {}

    def close(self) -> None:
        self.sock.close()

    def _fill(self) -> None:
        data = self.sock.recv(1 << 20)
        if not data:
            raise ConnectionError("server closed the connection")
        self.buf += data

    def _line(self) -> bytes:
        while b"\r\n" not in self.buf:
            self._fill()
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def _block(self, n: int) -> bytes:
        while len(self.buf) < n + 2:
            self._fill()
        data, self.buf = self.buf[:n], self.buf[n + 2 :]
        return data

    def send(self, request: bytes) -> list[bytes]:
        """Sends `request`; returns the reply lines (data blocks as their own items).

        The end of the reply is marked by the miss of a key no request uses (`mn` will not do:
        requests may contain `mn` themselves)."""
        self.sent += 1
        end = b"__end%d" % self.sent
        self.sock.sendall(request + b"mg " + end + b" k\r\n")
        out = []
        while True:
            line = self._line()
            if line == b"EN k" + end:
                return out
            out.append(line)
            words = line.split(b" ")
            if words[0] == b"VA" and len(words) > 1:
                out.append(self._block(int(words[1])))
            elif words[0] == b"VALUE" and len(words) > 3:
                out.append(self._block(int(words[3])))

    def learn(self, key: bytes | None, reply: list[bytes]) -> None:
        """Remembers the last CAS this server reported for `key` (meta c flag, gets)."""
        if key is None:
            return
        for line in reply:
            words = line.split(b" ")
            if words[0] in (b"HD", b"VA", b"NS", b"EX", b"NF"):
                for w in words[1:]:
                    if w[:1] == b"c" and w[1:].isdigit() and int(w[1:]) != 0:
                        self.cas_of[key] = int(w[1:])
            elif words[0] == b"VALUE" and len(words) == 5:
                self.cas_of[key] = int(words[4])


class Step:
    """A request, possibly quoting the CAS the server last reported for `key`."""

    def __init__(self, template: bytes, key: bytes | None = None):
        self.template = template
        self.key = key

    def render(self, conn: Conn) -> bytes:
        last = conn.cas_of.get(self.key, 1) if self.key is not None else 1
        return self.template.replace(b"{cas}", b"%d" % last).replace(b"{oldcas}", b"%d" % max(last - 1, 1))


class Normalizer:
    """Maps one server's CAS values to their order of first appearance."""

    def __init__(self):
        self.ids: dict[int, int] = {}

    def cas(self, raw: bytes) -> bytes:
        n = int(raw)
        if n == 0:
            return b"0"
        return b"#%d" % self.ids.setdefault(n, len(self.ids) + 1)

    def line(self, line: bytes) -> list:
        words = line.split(b" ")
        if words[0] in (b"HD", b"VA", b"EN", b"NS", b"EX", b"NF"):
            out: list = [words[0]]
            for w in words[1:]:
                head, rest = w[:1], w[1:]
                if head == b"c" and rest.isdigit():
                    out.append(b"c" + self.cas(rest))
                elif head == b"t" and rest.lstrip(b"-").isdigit():
                    out.append(("t", int(rest)))
                elif head == b"l" and rest.isdigit():
                    out.append(b"l?")
                else:
                    out.append(w)
            return out
        if words[0] == b"ME":
            out = [words[0], words[1]]
            for w in words[2:]:
                name, _, value = w.partition(b"=")
                if name == b"cas":
                    out.append(b"cas=" + self.cas(value))
                elif name == b"exp":
                    out.append(("exp", int(value)))
                elif name == b"la":
                    out.append(b"la=?")
                else:
                    out.append(w)
            return out
        if words[0] == b"VALUE" and len(words) == 5:
            return words[:4] + [self.cas(words[4])]
        return [line]


def _same(a, b) -> bool:
    if isinstance(a, tuple) and isinstance(b, tuple):
        if a[0] != b[0]:
            return False
        wrapped = a[1] >= 1 << 31, b[1] >= 1 << 31
        return wrapped[0] == wrapped[1] and (wrapped[0] or abs(a[1] - b[1]) <= 1)
    return a == b


class Pair:
    def __init__(self, ours: Server, ref: Server):
        self.ours, self.ref = Conn(ours), Conn(ref)
        self.norm_ours, self.norm_ref = Normalizer(), Normalizer()

    def close(self) -> None:
        self.ours.close()
        self.ref.close()

    def check(self, step: Step) -> None:
        got = self.ours.send(step.render(self.ours))
        want = self.ref.send(step.render(self.ref))
        self.ours.learn(step.key, got)
        self.ref.learn(step.key, want)
        norm_got = [self.norm_ours.line(l) for l in got]
        norm_want = [self.norm_ref.line(l) for l in want]
        same = len(norm_got) == len(norm_want) and all(
            len(g) == len(w) and all(_same(x, y) for x, y in zip(g, w)) for g, w in zip(norm_got, norm_want)
        )
        assert same, (
            f"request {step.render(self.ref)!r}\n  cache-node: {got!r}\n  memcached:  {want!r}"
        )

    def forget(self, key: bytes) -> None:
        """Deletes `key` on both servers without comparing: their items may differ legitimately."""
        for conn in (self.ours, self.ref):
            conn.send(b"md " + b64(key) + b" b q\r\n")


@pytest.fixture(scope="module")
def servers():
    ours = Server("cache-node", _binary("CACHE_NODE_BIN", REPO / "target" / "debug" / "cache-node"))
    try:
        ref = Server("memcached", _binary("MEMCACHED_BIN", Path("/usr/bin/memcached")))
    except BaseException:
        ours.stop()
        raise
    try:
        yield ours, ref
    finally:
        ours.stop()
        ref.stop()


@pytest.fixture
def pair(servers):
    p = Pair(*servers)
    p.check(Step(b"flush_all\r\n"))
    try:
        yield p
    finally:
        p.close()


def b64(key: bytes) -> bytes:
    return base64.b64encode(key)


LONG_OPAQUE = b"O" + b"o" * 32
MANY_FLAGS = b" ".join(b"P%d" % i for i in range(18))

# Hand-picked sequences: each runs on a freshly flushed cache. Keys in a step's second slot
# let later steps quote the CAS the server reported for them.
EDGE_CASES: dict[str, list] = {
    "dispatch": [
        b"mn\r\n", b"mn foo bar\r\n", b"mz foo\r\n", b"mg\r\n", b"ms\r\n", b"md\r\n", b"ma\r\n", b"me\r\n",
        b"mgx foo\r\n", b"MG foo\r\n", b"m\r\n", b"  mg   foo   v  \r\n",
    ],
    "mg flags": [
        (b"ms foo 2 T100 F5\r\nhi\r\n", b"foo"),
        b"mg foo\r\n", b"mg foo q\r\n", b"mg foo v q\r\n", b"mg foo s v t c f h l k Oabc q\r\n",
        b"mg foo h l\r\n", b"mg foo u h\r\n", b"mg foo P L Lx Px v\r\n", b"mg foo MS C12 F3 J1 D1 I\r\n",
        b"mg missing\r\n", b"mg missing k Oop\r\n", b"mg missing q k\r\nmg missing v\r\n",
    ],
    "mg errors": [
        (b"ms foo 2 T100\r\nhi\r\n", b"foo"),
        b"mg foo M\r\n", b"mg foo x\r\n", b"mg foo E\r\n", b"mg foo v v\r\n", b"mg foo Nabc Tabc\r\n",
        b"mg foo Nabc zz\r\n", b"mg foo zz Nabc\r\n", b"mg foo Nabc M\r\n", b"mg foo \x80\r\n",
        b"mg foo N\r\n", b"mg foo Fx\r\n", b"mg foo Fx Tx\r\n", b"mg foo Tx Fx\r\n", b"mg foo T30 " + LONG_OPAQUE + b" t\r\n",
        b"mg foo t\r\n", b"mg foo " + MANY_FLAGS + b"\r\n", b"mg foo " + b" ".join(b"P%d" % i for i in range(17)) + b"\r\n",
        b"mg " + b"k" * 251 + b" v\r\n", b"mg " + b"k" * 250 + b" v\r\n", b"mg foo noreply\r\n",
    ],
    "mg ttl order": [
        b"ms foo 2 T100\r\nhi\r\n", b"mg foo t T-1 c\r\n", b"mg foo t v\r\n",
        b"ms foo 2 T100\r\nhi\r\n", b"mg foo T-1 t\r\n",
        b"ms foo 2 T100\r\nhi\r\n", b"mg foo t T50\r\n", b"mg foo T70 t\r\n", b"mg foo t\r\n",
        b"mg foo T3000000 t\r\n", b"mg foo t\r\n",
    ],
    "mg vivify and recache": [
        b"mg vv t N30\r\n", b"mg vv t\r\n", b"mg vv s v c\r\n", b"md vv\r\n", b"mg vv N30 t\r\n", b"mg vv N30 t\r\n",
        b"md vv\r\n", b"mg vv N30 T60 t\r\n", b"md vv\r\n", b"mg vv T60 N30 t\r\n", b"md vv\r\n", b"mg vv t T60 N30\r\n",
        b"mg vv t h\r\n", b"mg v2 N30 u\r\n", b"mg v2 h\r\n", b"md v3\r\n", b"mg v3 N30 " + LONG_OPAQUE + b"\r\n",
        b"mg v3 t h\r\n", b"mg v4 " + LONG_OPAQUE + b" N30\r\n", b"mg v4 t\r\n",
        b"ms foo 2 T100\r\nhi\r\n", b"mg foo R30 t\r\n", b"mg foo R500 t\r\n", b"mg foo R500 t\r\n", b"mg foo\r\n",
        b"ms foo 2 T100\r\nhi\r\n", b"mg foo R30 T10 t\r\n", b"ms foo 2 T100\r\nhi\r\n", b"mg foo T10 R30 t\r\n",
        b"mg foo R0 t\r\n", b"ms foo 2\r\nhi\r\n", b"mg foo R999999 t\r\n", b"mg foo R-1 t\r\n", b"get foo\r\n",
    ],
    "ms modes and cas": [
        (b"ms a1 2 c\r\nhi\r\n", b"a1"), b"ms a1 2 c C1\r\nhi\r\n", b"ms a1 2 c MR C1\r\nhi\r\n",
        (b"ms a1 2 c C{cas}\r\nho\r\n", b"a1"), (b"ms a1 2 c MR C{cas}\r\nhx\r\n", b"a1"),
        b"ms nokey 2 c C1\r\nhi\r\n", b"ms nokey 2 c MR\r\nhi\r\n", b"ms nokey 2 c MA\r\nhi\r\n",
        b"ms nokey 2 c MP q\r\nhi\r\n", b"ms nokey 2 c ME q k O5\r\nhi\r\n", b"ms nokey 2 c ME q k O5\r\nhi\r\n",
        b"ms nokey 2 c MS q k O5\r\nhi\r\n", b"ms nokey 2 c ME C999\r\nhi\r\n", b"ms nokey 2 c MA C999\r\nhi\r\n",
        b"ms nokey 2 c MA C0\r\nxx\r\n", b"mg nokey v\r\n", b"ms nokey 2 c MP\r\nyy\r\n", b"mg nokey v s f t\r\n",
        b"ms nokey 2 c N30 v s t h l u\r\nhi\r\n", b"ms nokey 2 c I\r\nhi\r\n", b"ms nokey 2 c C0\r\nhi\r\n",
        b"ms nokey 2 c C0 I\r\nhi\r\n", b"ms nokey 2 F4294967296\r\nhi\r\n", b"mg nokey f\r\n",
        b"ms nokey 2 F4294967295 T100\r\nhi\r\n", b"mg nokey f t\r\n", b"ms nokey 0\r\n\r\n", b"mg nokey v s\r\n",
        b"ms nokey 4294967298\r\nhi\r\n", b"mg nokey v\r\n",
    ],
    "ms errors": [
        b"ms foo 2 c MX\r\nhi\r\n", b"ms foo 2 c Ms\r\nhi\r\n", b"ms foo 2 c MSS\r\nhi\r\n", b"ms foo 2 c F\r\nhi\r\n",
        b"ms foo 2 c Fabc\r\nhi\r\n", b"ms foo 2 c F-1\r\nhi\r\n", b"ms foo 2 c T\r\nhi\r\n", b"ms foo 2 c Cx\r\nhi\r\n",
        b"ms foo 2 c zz\r\nhi\r\n", b"ms foo 2 E1\r\nhi\r\n", b"ms foo 2 b\r\nhi\r\n", b"ms foo 2 q b\r\nhi\r\n",
        b"ms foo 2 " + LONG_OPAQUE + b"\r\nhi\r\n", b"ms foo 2 " + LONG_OPAQUE + b" MX\r\nhi\r\n",
        b"ms foo 2 " + LONG_OPAQUE + b" zz\r\nhi\r\n", b"ms foo 2 Tx Fx\r\nhi\r\n", b"ms foo 2 Fx Tx\r\nhi\r\n",
        b"ms " + b"k" * 251 + b" 2\r\nhi\r\n", b"ms foo\r\nhi\r\n", b"ms foo " + MANY_FLAGS + b"\r\nhi\r\n",
        b"ms foo 2 " + b" ".join(b"a%d" % i for i in range(16)) + b"\r\nhi\r\n",
        b"ms foo abc\r\nhi\r\n", b"ms foo -1\r\nhi\r\n", b"ms foo 2147483646\r\nhi\r\n",
        b"ms foo 2\r\nhiX\r\n", b"ms foo 2 q\r\nhiX\r\n", b"ms foo 2\r\nhi\nX\r\n", b"ms foo 1\r\nhi\r\n",
        b"mg foo v\r\n",
    ],
    "ms too large": [
        b"ms tl 2\r\nhi\r\n", b"ms tl 1048577 MA\r\n" + b"x" * 1048577 + b"\r\n", b"mg tl v\r\n",
        b"ms tl 2\r\nhi\r\n", b"ms dGw= 1048577 b q\r\n" + b"x" * 1048577 + b"\r\n", b"mg tl v\r\n",
        b"ms tl 2\r\nhi\r\n", b"ms tl 1048577 " + LONG_OPAQUE + b"\r\n" + b"x" * 1048577 + b"\r\n", b"mg tl v\r\n",
        b"ms tl 1048515\r\n" + b"y" * 1048515 + b"\r\n", b"mg tl s\r\n", b"ms tl 1048515 F1\r\n" + b"y" * 1048515 + b"\r\n",
        b"mg tl s\r\n", b"ms tl 1048511 F1\r\n" + b"y" * 1048511 + b"\r\n", b"ms tl 2 MA\r\nzz\r\n", b"mg tl s f\r\n",
        b"append tl 0 0 2\r\nzz\r\n", b"set tl 0 0 1048577\r\n" + b"x" * 1048577 + b"\r\n", b"mg tl s\r\n",
    ],
    "md": [
        b"ms s1 2 T100\r\nhi\r\n", b"md s1 I T30 k O7 q\r\n", b"mg s1 t c v\r\n", b"mg s1 t c v\r\n", b"md s1 I\r\n",
        (b"mg s1 c\r\n", b"s1"), (b"ms s1 2 C{oldcas} I T500 c\r\nho\r\n", b"s1"), b"mg s1 c t v\r\n",
        b"md s1 C1\r\n", b"md s1 C1 q\r\n", b"md s1 C0\r\n", b"md s1 C0 I\r\n", (b"md s1 C{cas} q\r\n", b"s1"),
        b"md s1 q\r\n", b"md s1 k O1 b\r\n", b"md czE= k O1 b\r\n", b"md s1 k O1 T30\r\n", b"md s1 C\r\n",
        b"md s1 Cx\r\n", b"md s1 zz\r\n", b"md s1 x\r\n", b"md s1 N30 v MX\r\n", b"md s1 " + LONG_OPAQUE + b"\r\n",
        b"ms s1 2 T100\r\nhi\r\n", b"md s1 T30\r\n", b"mg s1\r\n", b"ms s1 2 T100\r\nhi\r\n",
        b"md s1 I T30 " + LONG_OPAQUE + b"\r\n", b"mg s1 t c\r\n", b"md " + b"k" * 251 + b"\r\n",
        b"md s1 " + MANY_FLAGS + b"\r\n",
    ],
    "stale items": [
        b"ms st 2\r\nhi\r\n", b"md st I\r\n", b"get st\r\n", b"mg st c\r\n", b"mg st c\r\n", b"ms st 2 c\r\nxx\r\n",
        b"mg st c\r\n", b"md st I\r\n", (b"mg st c\r\n", b"st"), b"ms st 2 c MA\r\nyy\r\n", b"mg st c v\r\n",
        b"md st I\r\n", (b"ms st 2 c C{oldcas} I MA\r\nyy\r\n", b"st"), (b"ms st 2 c C{oldcas} I MR\r\nyy\r\n", b"st"),
        b"mg st c v\r\n", b"ms st 2 c C1 I ME\r\nyy\r\n",
    ],
    "ma": [
        b"ma n1\r\n", b"ma n1 q\r\n", b"ma n1 N0 J5 v c t\r\n", b"ma n1 v\r\n", b"ma n1 v q\r\n", b"ma n1 q\r\n",
        b"mg n1 v\r\n", b"ma n1 MD D100 v\r\n", b"ma n1 M- v\r\n", b"ma n1 M+ D18446744073709551615 v\r\n",
        b"ma n1 MI D3 v\r\n", b"ma n1 MX v\r\n", b"ma n1 Mi v\r\n", b"ma n1 D-1 v\r\n", b"ma n1 Dabc v\r\n",
        b"ma n1 D v\r\n", b"ma n1 J v\r\n", b"ma n1 Jx v\r\n", b"ma n1 N v\r\n", b"ma n1 C1 v\r\n", b"ma n1 C1 v q\r\n",
        (b"mg n1 c\r\n", b"n1"), (b"ma n1 C{cas} v c\r\n", b"n1"), b"ma n1 C0 v\r\n",
        b"ma n1 t T100 v k O1 c\r\n", b"ma n1 T200 t\r\n", b"ma n1 T-1 t\r\n",
        b"ma nx N30 t T100 v\r\n", b"mg nx t\r\n", b"md nx\r\n", b"ma nx t T100 N30 v\r\n", b"mg nx t\r\n", b"md nx\r\n",
        b"ma nx T100 N30 t v\r\n", b"md nx\r\n", b"ma nx T100 t v\r\n", b"ma nx T100 N0 v\r\n", b"mg nx t\r\n",
        b"ma nx J10 N30 MD D3 v c\r\n", b"ma nx " + LONG_OPAQUE + b" v\r\n", b"mg nx v\r\n",
        b"ma ny N30 " + LONG_OPAQUE + b" T100\r\n", b"mg ny v t\r\n", b"ma nz " + LONG_OPAQUE + b"\r\n",
        b"ms nn 3\r\nabc\r\n", b"ma nn v\r\n", b"ma nn v q\r\n", b"ma nn s f h\r\n", b"ma nn b\r\n", b"ma nn E\r\n",
        b"ms big 2\r\n99\r\n", b"ma big v\r\n", b"mg big v h\r\n", b"ma big v MD D95\r\n",
        b"ms ap 2\r\n10\r\n", b"mg ap h\r\n", b"ma ap c\r\n", b"ma ap D1000 c\r\n", b"mg ap h c v\r\n",
        b"ma " + b"k" * 251 + b"\r\n", b"ma ap " + MANY_FLAGS + b"\r\n",
    ],
    "base64 keys": [
        b"mg Zm9vYmFy b k N30\r\n", b"mg Zm9vYmFy b k\r\n", b"me Zm9vYmFy b\r\n", b"ma bnVt b k N0 v\r\n",
        b"mg bnVt b k v\r\n", b"ms bnVt 1 b\r\n5\r\n", b"mg bnVt b k v\r\n", b"mg num k v\r\n", b"me num\r\n",
        b"ma bnVt b k v\r\n", b"ma bnVt b k v D100000\r\n", b"mg bnVt b k v\r\n",
        b"ms bm9rZXk= 2 c b k\r\nhi\r\n", b"ms nokey 2 c MA\r\nzz\r\n", b"mg nokey k v\r\n",
        b"ms bm9rZXk= 2 b k MA\r\nyy\r\n", b"mg nokey k v\r\n", b"ms bm9rZXk= 2 b k ME\r\nyy\r\n",
        b"mg Zm9v b k\r\n", b"mg Zm!9v b k\r\n", b"mg Zm9vYg b k\r\n", b"mg Zm9vYg== b k\r\n", b"mg Zm9vYg= b k\r\n",
        b"mg Zm==9vYg b k\r\n", b"mg Zm=v b k\r\n", b"mg ==== b k\r\n", b"mg Zg=== b k\r\n", b"mg Zg==Zg== b k\r\n",
        b"mg !!!! b k\r\n", b"mg Zm9v== b k\r\n", b"mg YWJj_-ZGVm b k\r\n", b"mg Y b k\r\n", b"mg YQ b k\r\n",
        b"mg YWE b k\r\n", b"mg YWFh b k\r\n", b"mg YWFhYQ===== b k\r\n", b"mg AAAA b k\r\n", b"mg AA== b k O1\r\n",
        b"mg " + b"QUFB" * 62 + b" b k\r\n", b"mg " + b"QUFB" * 62 + b"QU== b k\r\n",
        b"ms " + b64(b"\x00\x01\xff key") + b" 3 b k\r\nbin\r\n", b"mg " + b64(b"\x00\x01\xff key") + b" b k v\r\n",
        b"me " + b64(b"\x00\x01\xff key") + b" b\r\n", b"md " + b64(b"\x00\x01\xff key") + b" b k q\r\n",
        b"me Zm9v b x y\r\n", b"me Zm9vYg b\r\n", b"me foo bx\r\n",
    ],
    "me": [
        b"me foo\r\n", b"ms foo 2\r\nhi\r\n", b"me foo\r\n", b"mg foo\r\n", b"me foo\r\n", b"ms foo 2 T100 F1\r\nhi\r\n",
        b"me foo\r\n", b"ms foo 30 F1\r\n" + b"x" * 30 + b"\r\n", b"me foo\r\n", b"ms foo 31\r\n" + b"x" * 31 + b"\r\n",
        b"me foo\r\n", b"ms foo 500\r\n" + b"x" * 500 + b"\r\n", b"me foo\r\n",
        b"ms foo 524218\r\n" + b"x" * 524218 + b"\r\n", b"me foo\r\n", b"ms foo 524220 F1\r\n" + b"x" * 524220 + b"\r\n",
        b"me foo\r\n", b"ms foo 600000\r\n" + b"x" * 600000 + b"\r\n", b"me foo\r\n", b"me " + b"k" * 251 + b"\r\n",
        b"me " + b"k" * 250 + b"\r\n", b"ms foo 2 T-1\r\nxx\r\n", b"me foo\r\n",
    ],
    "quiet pipelines": [
        b"mg q1 q v\r\nmg q2 q v k\r\nms q1 2 q\r\nhi\r\nmg q1 q v k\r\nmd q2 q\r\nmd q1 q\r\nma q1 q\r\n",
        b"ms q3 1 q\r\n1\r\nma q3 q\r\nma q3 q v\r\nma q4 q N0 v\r\nmg q3 v\r\n",
        b"mg q1 q v\r\nget q9\r\nms q1 2 q ME\r\nhi\r\nverbosity 1\r\n",
    ],
    # One command per step: nothing else holds the item, so memcached rewrites a shorter
    # number in place (padded; flags, fetch mark, stale/win bits, base64 marker kept; T taken)
    # and rebuilds a longer one. Text decr pads the same way.
    "increments read back": [
        b"ms n 2\r\n10\r\n", b"ma n v MD D5\r\n", b"mg n v s\r\n", b"ms h 3 T100 F7\r\n100\r\n", b"mg h v\r\n",
        b"ma h v MD c t T500\r\n", b"mg h v f t c h s\r\n", b"ms s 2 F5\r\n10\r\n", b"md s I T30\r\n",
        b"ma s MD v c t\r\n", b"mg s v c t h\r\n", b"ms azE= 2 b\r\n10\r\n", b"ma azE= b MD k v\r\n", b"mg k1 k v\r\n",
        b"ms g 1 T100 F7\r\n9\r\n", b"mg g v\r\n", b"ma g v c t T500\r\n", b"mg g v f t c h s\r\n",
        b"set d 3 0 3\r\n100\r\n", b"decr d 1\r\n", b"mg d v s f h\r\n", b"ma d MD D90 T50\r\n", b"gets d\r\n", b"mg d t\r\n",
    ],
    # Several commands per write: an mg reply holds its item until memcached sends it (after
    # mn, a text get, or 21 requests), and an increment then stores a new item of the
    # number's exact length, with fresh bits and without T.
    "increments while a reply holds the item": [
        b"ms n 2\r\n10\r\n", b"mg n v\r\nma n v MD D5\r\nmg n v s h\r\n",
        b"ms h 2 F3\r\n10\r\n", b"mg h s\r\nmn\r\nma h v MD D5\r\nmg h v s h f\r\n",
        b"set d 0 0 3\r\n100\r\n", b"get d\r\ndecr d 95\r\nmg d v\r\n",
        b"set e 0 0 3\r\n100\r\n", b"mg e q v\r\ndecr e 50\r\ndecr e 45\r\nmg e v\r\n",
        b"ms g 3 T100\r\n100\r\n", b"mg g\r\nmd o q\r\nma g v MD D95 T500 t\r\nmg g t v\r\n",
        b"ms b 3\r\n100\r\n", b"mg b\r\n" + b"mg o v\r\n" * 20 + b"ma b MD D95\r\nmg b s\r\n",
        b"ms c 3\r\n100\r\n", b"mg c\r\n" + b"mg o v\r\n" * 19 + b"ma c MD D95\r\nmg c s\r\n",
    ],
    "classic and meta together": [
        b"set cm 3 0 2\r\nhi\r\n", b"mg cm f v h\r\n", b"touch cm 100\r\n", b"mg cm t h\r\n",
        b"gets cm\r\n", b"ms cm 2 MA\r\nyo\r\n", b"mg cm h f v\r\n", b"gat 50 cm\r\n", b"mg cm h t\r\n",
        b"incr cm 1\r\n", b"set cn 0 0 1\r\n5\r\n", b"incr cn 5\r\n", b"mg cn v h\r\n", b"md cn I\r\n", b"gets cn\r\n",
        b"mg cn c\r\n", b"delete cm\r\n", b"mg cm\r\n",
    ],
}


# After an increment memcached 1.6.18 may or may not have rewritten the number in place: it does
# only when nothing else holds a reference to the item. Rebuilt, the item loses its padding,
# fetch mark, stale/win bits and base64 marker, and ma's T. Two things hold references: a reply
# not yet sent, which cache-node holds the same way (the cases above), and memcached's LRU
# maintainer while a bump of an item read again in its cold LRU waits in a queue, for as long as
# that thread sleeps. That one is timing, not commands: two memcached 1.6.18 servers given the
# same random sequences differ on it (h1/h0, s2/s1, kept or lost base64 markers). So the cases
# above read an item at most once before an increment, and the random sequences delete the
# item after each increment.
@pytest.mark.parametrize("name", list(EDGE_CASES))
def test_edge_cases(pair, name):
    for item in EDGE_CASES[name]:
        pair.check(Step(*item) if isinstance(item, tuple) else Step(item))


# ---- seeded random sequences ----

PLAIN_KEYS = [b"foo", b"bar", b"num", b"long-" + b"x" * 150]
BINARY_KEYS = [b"\x00\x01\xfe", b"k y"]
# No stored value of 2^63 or more: memcached 1.6.18 parses a counter past the end of the value
# (it is not NUL-terminated) and then refuses any number it reads as negative, so whether such a
# value counts as numeric depends on the bytes that follow it in memory. Wrapping at 2^64 is
# covered by the store's unit tests and by the text differential, which allows for this.
VALUES = [b"", b"hi", b"0", b"12", b"99", b"9223372036854775807", b"abc\r\ndef", b"x" * 100]


def _opaque(rng: random.Random) -> bytes:
    n = 33 if rng.random() < 0.03 else rng.randint(0, 8)
    return b"O" + bytes(rng.choice(b"abcxyz019") for _ in range(n))


def _flags(rng: random.Random, choices: dict, junk: list[bytes]) -> list[bytes]:
    flags = [(c + rng.choice(args)) for c, args in choices.items() if rng.random() < 0.3]
    if rng.random() < 0.05:
        flags.append(rng.choice(junk))
    if flags and rng.random() < 0.02:
        flags.append(rng.choice(flags))
    rng.shuffle(flags)
    return flags


def _key(rng: random.Random, flags: list[bytes]) -> tuple[bytes, bytes]:
    """The key to send and the key it names: base64 when the flags include b."""
    if rng.random() < 0.01:
        return b"k" * 251, b"k" * 251
    if b"b" in flags:
        raw = rng.choice(PLAIN_KEYS[:3] + BINARY_KEYS)
        sent = b64(raw)
        if rng.random() < 0.1:
            sent = sent[:1] + b"!" + sent[1:]  # memcached skips characters outside base64
        if rng.random() < 0.03:
            sent = sent + b"A"
        return sent, raw
    raw = rng.choice(PLAIN_KEYS)
    return raw, raw


TTLS = [b"0", b"100", b"1000", b"-1", b"3000000", b"x"]
MG_FLAGS = {
    b"b": [b""], b"c": [b""], b"f": [b""], b"h": [b""], b"k": [b""], b"l": [b""], b"q": [b""], b"s": [b""],
    b"t": [b""], b"u": [b""], b"v": [b""], b"N": TTLS, b"R": [b"30", b"500", b"0", b"-1"], b"T": TTLS,
}
MS_FLAGS = {
    b"b": [b""], b"c": [b""], b"C": [b"{cas}", b"{oldcas}", b"0", b"999999999"], b"F": [b"0", b"1", b"4294967295", b"-1"],
    b"I": [b""], b"k": [b""], b"q": [b""], b"T": TTLS, b"M": [b"E", b"A", b"P", b"R", b"S", b"S", b"X"],
}
MD_FLAGS = {b"b": [b""], b"C": [b"{cas}", b"{oldcas}", b"0"], b"I": [b""], b"k": [b""], b"q": [b""], b"T": TTLS}
MA_FLAGS = {
    b"b": [b""], b"C": [b"{cas}", b"0", b"5"], b"N": TTLS, b"J": [b"0", b"7", b"18446744073709551615", b"x"],
    b"D": [b"1", b"10", b"1000000", b"18446744073709551615", b""], b"T": TTLS, b"M": [b"I", b"+", b"D", b"-", b"Z"],
    b"q": [b""], b"t": [b""], b"c": [b""], b"v": [b""], b"k": [b""],
}
JUNK = [b"E5", b"x", b"zz", b"M", b"P", b"Lpath", b"I", b"F7", b"noreply", MANY_FLAGS]


def _random_step(rng: random.Random) -> Step:
    r = rng.random()
    if r < 0.30:
        flags = _flags(rng, MG_FLAGS, JUNK)
        flags += [_opaque(rng)] if rng.random() < 0.3 else []
        sent, raw = _key(rng, flags)
        return Step(b" ".join([b"mg", sent] + flags) + b"\r\n", raw)
    if r < 0.55:
        flags = _flags(rng, MS_FLAGS, JUNK)
        flags += [_opaque(rng)] if rng.random() < 0.3 else []
        sent, raw = _key(rng, flags)
        value = rng.choice(VALUES)
        # Now and then a data block one byte longer than announced (bad data chunk; a longer
        # block would swallow the end marker).
        datalen = len(value) - (rng.random() < 0.02)
        return Step(b" ".join([b"ms", sent, b"%d" % datalen] + flags) + b"\r\n" + value + b"\r\n", raw)
    if r < 0.65:
        flags = _flags(rng, MD_FLAGS, JUNK)
        flags += [_opaque(rng)] if rng.random() < 0.3 else []
        sent, raw = _key(rng, flags)
        return Step(b" ".join([b"md", sent] + flags) + b"\r\n", raw)
    if r < 0.82:
        flags = _flags(rng, MA_FLAGS, JUNK)
        flags += [_opaque(rng)] if rng.random() < 0.3 else []
        sent, raw = _key(rng, flags)
        return Step(b" ".join([b"ma", sent] + flags) + b"\r\n", raw)
    if r < 0.87:
        flags = [b"b"] if rng.random() < 0.3 else []
        sent, raw = _key(rng, flags)
        return Step(b" ".join([b"me", sent] + flags) + b"\r\n", raw)
    if r < 0.89:
        return Step(b"mn\r\n")
    key = rng.choice(PLAIN_KEYS)
    value = rng.choice(VALUES)
    classic = rng.choice([
        b"get %s\r\n" % key, b"gets %s\r\n" % key, b"touch %s 100\r\n" % key, b"gat 1000 %s\r\n" % key,
        b"incr %s 3\r\n" % key, b"decr %s 3\r\n" % key, b"delete %s\r\n" % key,
        b"set %s 1 0 %d\r\n%s\r\n" % (key, len(value), value), b"append %s 0 0 %d\r\n%s\r\n" % (key, len(value), value),
    ])
    return Step(classic, key)


@pytest.mark.parametrize("seed", range(int(os.environ.get("META_DIFF_SEEDS", "4"))))
def test_random_sequences(pair, seed):
    base = int(os.environ.get("META_DIFF_SEED", "1618"))
    rng = random.Random(base + seed)
    for _ in range(int(os.environ.get("META_DIFF_COMMANDS", "1500"))):
        step = _random_step(rng)
        pair.check(step)
        if step.key is not None and step.template.split(b" ", 1)[0] in (b"ma", b"incr", b"decr"):
            pair.forget(step.key)
