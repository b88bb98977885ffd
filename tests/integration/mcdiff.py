"""Differential testing of two memcached-protocol servers (reference vs. under test).

The same command stream goes to both servers; every reply is parsed by its shape and compared.

Pieces:
* ``Wire``: one TCP connection with an incremental reply parser. After every command the
  harness sends a sentinel, ``mn`` (meta no-op); the reply to a command is everything up to
  that ``MN``. This delimits replies of any shape, including the empty reply of ``noreply``
  commands. A command that itself answers ``MN`` says so (``Cmd.n_mn``). Against a server
  without the meta protocol the harness falls back to ``version`` as the sentinel and leaves
  meta commands out (``text_only``); the test then fails on that, after the text run.
* ``Generator``: a seeded random command generator over a small key space: the text protocol,
  the meta protocol and malformed input. It depends only on its seed and on the reference's
  replies (for the CAS values it reuses), so a seed replays the same stream.
* ``Comparator``: canonicalises both replies (see ALLOWLIST) and compares them.
* ``run_stream``: drives a generator against two servers in one of three modes: sequential
  (one command, one reply), pipelined (many commands in one write) and split writes (each
  command cut into several sends).

CAS values: the two servers may number items differently. A CAS value is compared through a
consistent mapping: the first time reference value ``a`` is seen where the other server shows
``b``, the pair (a, b) is recorded; afterwards ``a`` must always appear as ``b`` and ``b`` only as
``a`` (a bijection). Commands that send a CAS value send the reference's value to the reference
and the mapped value to the other server.
"""

from __future__ import annotations

import base64
import random
import re
import selectors
import socket
import time
from collections import deque
from dataclasses import dataclass, field



@dataclass(frozen=True)
class Sentinel:
    request: bytes
    reply_prefix: bytes  # a reply line starting with this ends a reply group
    attr: str  # the Cmd field counting such lines the command answers itself

    def matches(self, unit) -> bool:
        return unit[0] == "line" and (unit[1] == self.reply_prefix.rstrip()
                                      or unit[1].startswith(self.reply_prefix))

    def count(self, cmd) -> int:
        return getattr(cmd, self.attr)


MN_SENTINEL = Sentinel(b"mn\r\n", b"MN", "n_mn")
VERSION_SENTINEL = Sentinel(b"version\r\n", b"VERSION ", "n_ver")
META_CODES = {b"HD", b"VA", b"EN", b"NF", b"NS", b"EX", b"MN"}
U64 = 2**64

# --------------------------------------------------------------------------------------------
# Known, intentional differences. Everything else is a failure.
# --------------------------------------------------------------------------------------------
ALLOWLIST = {
    # The version string names the implementation.
    "version": "VERSION <anything>",
    # Statistics values (pids, uptimes, memory, counters of internal work) are implementation
    # facts; `stats` is compared by shape only (STAT <name> <value> lines, then END).
    "stats": "shape only",
    # Times move between the two requests: TTLs (mg/ma `t`, `me` exp=) may differ by
    # TTL_TOLERANCE seconds; last-access times (mg `l`, `me` la=) are only checked to be
    # integers (memcached updates an item's access time at most once a minute).
    "ttl": "±2 s",
    "last-access": "integer only",
    # `me` reports the slab class and the allocation size: memory-layout facts.
    "me cls/size": "ignored",
    # protocol.txt: a decremented counter "MAY be space-padded at the end"; memcached pads in
    # place (incr, decr, binary and ma alike) unless something holds the item, and then stores
    # the bare number. An unsent reply holds it, as in cache-node, but never here: the `mn`
    # sentinel after each command sends the replies so far. What remains is memcached's LRU
    # maintainer holding an item read twice while its bump waits in a queue, for as long as that
    # thread sleeps: timing, not commands. Two memcached 1.6.18 servers differ on it (3 of 24
    # runs of test_differential, seeds 1-8, with padding compared). Data blocks matching
    # `^[0-9]+ +$` are compared without the padding (and the lengths / `s` flag that go with
    # them).
    "counter padding": "stripped",
    # memcached 1.6.18 bug: incr/decr/ma on a stored value >= 2^63 or of whitespace only reads
    # past the item and answers at random (see _memcached_counter_bug); such a difference is
    # checked against the stored value, then both caches are reset.
    "counter parse bug": "checked, then reset",
    # protocol.txt: meta return flags come "in the same order as they were in the original
    # command, though this is not strict": flags are compared as a set.
    "meta flag order": "unordered",
}
TTL_TOLERANCE = 2

PADDED_COUNTER = re.compile(rb"^([0-9]+) +$")


# ============================================================================================
# Wire: connection + incremental reply parser
# ============================================================================================
class Wire:
    """One client connection. Replies are parsed into units:

    ("line", bytes)                 a reply line without its CRLF
    ("data", header, data, ok)      VALUE/VA header line, its data block, ok=CRLF after it
    ("eof",) / ("timeout",)         the connection closed / nothing more came in time
    """

    def __init__(self, server, name: str):
        self.server = server
        self.name = name
        self.sock: socket.socket | None = None
        self.buf = bytearray()
        self.out = bytearray()
        self.closed = False
        self.connect()

    def connect(self) -> None:
        self.close()
        self.sock = socket.create_connection((self.server.host, self.server.port), timeout=5)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock.setblocking(False)
        self.buf.clear()
        self.out.clear()
        self.closed = False

    def close(self) -> None:
        if self.sock is not None:
            try:
                self.sock.close()
            except OSError:
                pass
            self.sock = None

    def send_now(self, data: bytes, timeout: float = 5.0) -> None:
        """Blocking send of a small piece (split-writes mode)."""
        self.sock.setblocking(True)
        self.sock.settimeout(timeout)
        try:
            self.sock.sendall(data)
        except OSError:
            self.closed = True
        finally:
            self.sock.setblocking(False)

    def parse_unit(self):
        buf = self.buf
        i = buf.find(b"\r\n")
        if i < 0:
            return None
        line = bytes(buf[:i])
        size = None
        if line.startswith(b"VALUE "):
            parts = line.split(b" ")
            if len(parts) >= 4 and parts[3].isdigit():
                size = int(parts[3])
        elif line.startswith(b"VA "):
            parts = line.split(b" ")
            if len(parts) >= 2 and parts[1].isdigit():
                size = int(parts[1])
        if size is None:
            del buf[:i + 2]
            return ("line", line)
        end = i + 2 + size + 2
        if len(buf) < end:
            return None
        data = bytes(buf[i + 2:i + 2 + size])
        ok = bytes(buf[end - 2:end]) == b"\r\n"
        del buf[:end]
        return ("data", line, data, ok)


def exchange(jobs, timeout: float, sentinel: Sentinel):
    """Runs several wires at once. jobs: list of (wire, payload, counts).

    Writes each payload (interleaved with reading, so large pipelines cannot deadlock) and
    collects one reply group per entry of counts: a group ends after counts[i] + 1 sentinel
    replies (the command's own ones plus the harness's sentinel). Returns one list of groups
    per job. Bounded by `timeout` seconds overall.
    """
    sel = selectors.DefaultSelector()
    state = []
    for wire, payload, counts in jobs:
        wire.out = bytearray(payload)
        st = {"wire": wire, "counts": list(counts), "groups": [], "cur": [], "mn": 0,
              "done": not counts, "sentinel": sentinel}
        state.append(st)
        if wire.sock is None or wire.closed:
            _finish_all(st, ("eof",))
            continue
        # parse anything already buffered
        _drain(st)
        if not st["done"] or wire.out:
            sel.register(wire.sock, _events(wire), st)
    deadline = time.monotonic() + timeout
    try:
        while any(not st["done"] for st in state):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            for key, mask in sel.select(min(remaining, 0.5)):
                st = key.data
                wire = st["wire"]
                if mask & selectors.EVENT_WRITE and wire.out:
                    try:
                        n = wire.sock.send(wire.out[:262144])
                        del wire.out[:n]
                    except BlockingIOError:
                        pass
                    except OSError:
                        wire.out.clear()
                if mask & selectors.EVENT_READ:
                    try:
                        chunk = wire.sock.recv(262144)
                    except BlockingIOError:
                        chunk = None
                    except OSError:
                        chunk = b""
                    if chunk == b"":
                        wire.closed = True
                        _drain(st)
                        _finish_all(st, ("eof",))
                    elif chunk:
                        wire.buf += chunk
                        _drain(st)
                if st["done"] and not wire.out:
                    sel.unregister(wire.sock)
                else:
                    sel.modify(wire.sock, _events(wire), st)
    finally:
        sel.close()
    for st in state:
        if not st["done"]:
            st["wire"].closed = True  # out of sync: the caller reconnects
            _finish_all(st, ("timeout",))
    return [st["groups"] for st in state]


def _events(wire):
    return selectors.EVENT_READ | (selectors.EVENT_WRITE if wire.out else 0)


def _drain(st) -> None:
    wire = st["wire"]
    while not st["done"]:
        unit = wire.parse_unit()
        if unit is None:
            return
        if st["sentinel"].matches(unit):
            if st["mn"] == st["counts"][len(st["groups"])]:
                st["groups"].append(st["cur"])
                st["cur"], st["mn"] = [], 0
                if len(st["groups"]) == len(st["counts"]):
                    st["done"] = True
                continue
            st["mn"] += 1
        st["cur"].append(unit)


def _finish_all(st, marker) -> None:
    if st["done"]:
        return
    st["cur"].append(marker)
    st["groups"].append(st["cur"])
    st["cur"] = []
    while len(st["groups"]) < len(st["counts"]):
        st["groups"].append([marker])
    st["done"] = True


# ============================================================================================
# Commands
# ============================================================================================
@dataclass(frozen=True)
class CasTok:
    """A CAS value taken from the reference's replies (rendered through the mapping)."""
    value: int


@dataclass
class Cmd:
    parts: list  # bytes and CasTok
    kind: str  # short label: verb or malformed category
    key: bytes | None = None  # raw key, for learning CAS values from the reply
    n_mn: int = 0  # MN lines the command itself answers
    n_ver: int = 0  # VERSION lines the command itself answers
    pipeline_ok: bool = True  # deterministic when pipelined
    closes: bool = False  # the server closes the connection (quit)

    def render(self, cas_map: dict | None = None) -> bytes:
        out = []
        for p in self.parts:
            if isinstance(p, CasTok):
                v = p.value if cas_map is None else cas_map.get(p.value, p.value)
                out.append(b"%d" % v)
            else:
                out.append(p)
        return b"".join(out)


VALUE_KEYS = [b"k0", b"k1", b"k2", b"k3", b"key:with/punct-_.", b"K" * 250]
COUNTER_KEYS = [b"n0", b"n1", b"n2"]
SMALL_COUNTER = b"qc"  # only ever small values: noreply and quiet arithmetic go here
MISSING_KEYS = [b"missing", b"absent:1"]
# Only reachable in base64 through the meta `b` flag.
BINARY_KEYS = [b"bin\x00key", b"has space", b"\xff\xfe\r\n", b"x" * 180]
TOO_LONG_KEY = b"L" * 251
CTRL_KEYS = [b"ctl\x01key", b"del\x7f", b"tab\tkey", b"utf8-\xc3\xa9"]

# No value is made of whitespace only: memcached's incr reads past such a value (see
# _memcached_counter_bug), and a noreply incr on it would make the caches diverge unseen.
FIXED_VALUES = [b"", b"v", b"hello world", b"line1\r\nline2", b"\r\nx", b"END\r\n", b"MN\r\n",
                b"VALUE k0 0 1\r\nx\r\nEND\r\n", b"\x00\x01\x02\xff", b"VA 3 f\r\nabc\r\n",
                b"x" * 100, b"abc\n", b"\rz", b"noreply"]
WHITESPACE = b" \t\r\n\v\f"
COUNTER_VALUES = [b"0", b"1", b"7", b"42", b"99", b"100", b"1000", b"9999",
                  b"18446744073709551615", b"18446744073709551614", b"18446744073709551600",
                  b"9223372036854775807", b"9223372036854775808", b"4294967295", b"4294967296"]
# Numeric-looking edge cases (memcached parses the value with strtoull).
COUNTER_ODD_VALUES = [b"abc", b"", b"12 ab", b" 5", b"5 ", b"007", b"-1", b"+3", b"1.5",
                      b"18446744073709551616", b"99999999999999999999999", b"0x10", b"12abc"]
DELTAS = [b"1", b"1", b"1", b"0", b"7", b"100", b"18446744073709551615", b"9223372036854775808",
          b"12345678901", b"1000000"]
BAD_DELTAS = [b"abc", b"-1", b"18446744073709551616", b"1.5", b"", b"0x1", b"+1", b" "]
FLAGS = [0, 0, 0, 1, 65535, 65536, 2**31, 2**32 - 1]


META_VERBS = re.compile(rb"^m[gsdaen]([ \r\n]|$)")


def uses_meta(cmd: "Cmd") -> bool:
    first = cmd.parts[0] if cmd.parts else b""
    return isinstance(first, bytes) and META_VERBS.match(first) is not None


class Generator:
    def __init__(self, seed: int, pipeline: bool = False, meta: bool = True):
        self.rng = random.Random(seed)
        self.pipeline = pipeline  # only commands whose replies do not depend on timing
        self.meta = meta  # False: text protocol only
        now = int(time.time())
        # Expiration times whose outcome is the same on both servers whatever the exact
        # moment: never expiring, expired at once, or far from expiring during the run.
        self.exptimes = [b"0"] * 8 + [
            b"100", b"1000", b"2592000",  # 30 days: still relative
            b"2592001",  # 30 days + 1 s: a unix time in 1970, i.e. already expired
            b"-1", b"-100", b"-2592001",
            b"%d" % (now + 500000), b"%d" % (now - 1000), b"1000000",
            b"2147483647",  # 2038
        ]
        self.weird_exptimes = [b"99999999999", b"4294967295", b"4294967296", b"-2147483648"]
        # Pipelined, a difference cannot be checked against the stored value right away (the
        # rest of the batch has run), so counters stay below 2^62, away from memcached's
        # counter parse bug (see _memcached_counter_bug); near-2^64 counters are covered by
        # the sequential and split modes.
        self.counter_values = [v for v in COUNTER_VALUES if not pipeline or int(v) < 2**62]
        self.deltas = [d for d in DELTAS if not pipeline or int(d) <= 10**7]
        self.cas_by_key: dict[bytes, int] = {}
        self.cas_pool: deque[int] = deque(maxlen=64)
        self.table = [
            (14, self.g_set), (4, self.g_add), (4, self.g_replace), (4, self.g_append),
            (4, self.g_prepend), (7, self.g_cas), (10, self.g_get), (6, self.g_gets),
            (3, self.g_gat), (3, self.g_touch), (6, self.g_incr), (1, self.g_flush),
            (5, self.g_delete), (1, self.g_misc), (10, self.g_mg), (8, self.g_ms),
            (3, self.g_md), (6, self.g_ma), (1, self.g_me), (1, self.g_mn),
            (2, self.g_quiet_batch), (12, self.g_malformed),
        ]
        self.weights = [w for w, _ in self.table]

    # -- learning CAS values from the reference ----------------------------------------------
    def observe(self, cmd: Cmd, units) -> None:
        for u in units:
            if u[0] == "data" and u[1].startswith(b"VALUE "):
                p = u[1].split(b" ")
                if len(p) >= 5 and p[4].isdigit():
                    self._learn(p[1], int(p[4]))
            elif u[0] in ("line", "data"):
                toks = u[1].split(b" ")
                if toks[0] in META_CODES:
                    for t in toks[1:]:
                        if t[:1] == b"c" and t[1:].isdigit() and cmd.key is not None:
                            self._learn(cmd.key, int(t[1:]))
                elif toks[0] == b"ME":
                    for t in toks[2:]:
                        if t.startswith(b"cas=") and t[4:].isdigit() and cmd.key is not None:
                            self._learn(cmd.key, int(t[4:]))

    def _learn(self, key: bytes, cas: int) -> None:
        self.cas_by_key[key] = cas
        self.cas_pool.append(cas)

    def cas_token(self, key: bytes, allow_bogus: bool = True):
        r = self.rng.random()
        if r < 0.65 and key in self.cas_by_key:
            return CasTok(self.cas_by_key[key])
        if r < 0.85 and self.cas_pool:
            return CasTok(self.rng.choice(self.cas_pool))
        if not allow_bogus:
            return b"%d" % (U64 - 1)
        # Values no server hands out during a short run (never small: memcached counts from 1).
        return self.rng.choice([b"%d" % (U64 - 1), b"987654321987", b"%d" % (2**63)])

    # -- pieces ------------------------------------------------------------------------------
    def pick(self, seq):
        return self.rng.choice(seq)

    def any_key(self) -> bytes:
        return self.pick(VALUE_KEYS + COUNTER_KEYS + MISSING_KEYS)

    def value(self) -> bytes:
        r = self.rng.random()
        if r < 0.25:
            return self.pick(FIXED_VALUES)
        if r < 0.85:
            v = self.rng.randbytes(self.rng.randint(1, 40))
        elif r < 0.985:
            v = self.rng.randbytes(self.rng.randint(41, 3000))
        else:
            v = self.rng.randbytes(self.rng.randint(50_000, 120_000))
        return v if v.strip(WHITESPACE) else b"ws"

    def counter_value(self) -> bytes:
        if self.rng.random() < 0.12:
            return self.pick(COUNTER_ODD_VALUES)
        return self.pick(self.counter_values)

    def value_for(self, key: bytes) -> bytes:
        return self.counter_value() if key in COUNTER_KEYS else self.value()

    def exptime(self) -> bytes:
        if self.rng.random() < 0.03:
            return self.pick(self.weird_exptimes)
        return self.pick(self.exptimes)

    def flags(self) -> bytes:
        if self.rng.random() < 0.1:
            return b"%d" % self.rng.getrandbits(32)
        return b"%d" % self.pick(FLAGS)

    def noreply(self, p: float = 0.2) -> bytes:
        return b" noreply" if self.rng.random() < p else b""

    def opaque(self) -> bytes:
        n = self.rng.randint(1, 12)
        return bytes(self.rng.choice(b"abcdefghijklmnopqrstuvwxyz0123456789") for _ in range(n))

    def ttl_tok(self) -> bytes:
        return self.pick(self.exptimes)

    # -- entry point -------------------------------------------------------------------------
    def next(self) -> Cmd:
        for _ in range(100):  # bounded: a few generators decline in pipeline mode
            gen = self.rng.choices(self.table, weights=self.weights)[0][1]
            cmd = gen()
            if self.pipeline and (not cmd.pipeline_ok or cmd.closes):
                continue
            if not self.meta and uses_meta(cmd):
                continue
            return cmd
        return Cmd([b"version\r\n"], "version", n_ver=1)

    # -- text protocol -----------------------------------------------------------------------
    def _store(self, verb: bytes, key: bytes, value: bytes, kind: str = "", cas=None) -> Cmd:
        parts = [verb, b" ", key, b" ", self.flags(), b" ", self.exptime(), b" ",
                 b"%d" % len(value)]
        if cas is not None:
            parts += [b" ", cas]
        parts += [self.noreply(), b"\r\n", value, b"\r\n"]
        return Cmd(parts, kind or verb.decode(), key)

    def g_set(self):
        key = self.pick(VALUE_KEYS + COUNTER_KEYS + MISSING_KEYS[:1])
        return self._store(b"set", key, self.value_for(key))

    def g_add(self):
        key = self.any_key()
        return self._store(b"add", key, self.value_for(key))

    def g_replace(self):
        key = self.any_key()
        return self._store(b"replace", key, self.value_for(key))

    def g_append(self):
        key = self.pick(VALUE_KEYS + MISSING_KEYS)  # not counters: padding would diverge
        return self._store(b"append", key, self.value())

    def g_prepend(self):
        key = self.pick(VALUE_KEYS + MISSING_KEYS)
        return self._store(b"prepend", key, self.value())

    def g_cas(self):
        key = self.pick(VALUE_KEYS + COUNTER_KEYS + MISSING_KEYS)
        return self._store(b"cas", key, self.value_for(key), cas=self.cas_token(key))

    def _keys(self, limit_line: bool) -> list[bytes]:
        r = self.rng.random()
        if r < 0.55:
            n = 1
        elif r < 0.95:
            n = self.rng.randint(2, 6)
        else:
            n = self.rng.randint(20, 60)
        keys = [self.any_key() for _ in range(n)]
        if limit_line:  # non-"get" lines over 2 KiB may be cut by memcached's line limit
            while sum(len(k) + 1 for k in keys) > 1800:
                keys.pop()
        return keys

    def g_get(self, verb=b"get"):
        keys = self._keys(limit_line=False)
        return Cmd([verb, b" ", b" ".join(keys), b"\r\n"], verb.decode())

    def g_gets(self):
        return self.g_get(b"gets")

    def g_gat(self):
        verb = self.pick([b"gat", b"gats"])
        keys = self._keys(limit_line=True)
        return Cmd([verb, b" ", self.ttl_tok(), b" ", b" ".join(keys), b"\r\n"], verb.decode())

    def g_touch(self):
        key = self.any_key()
        return Cmd([b"touch ", key, b" ", self.ttl_tok(), self.noreply(), b"\r\n"], "touch",
                   key)

    def g_incr(self):
        verb = self.pick([b"incr", b"decr"])
        r = self.rng.random()
        if r < 0.15:
            # noreply only on the small counter: an unseen difference on a counter >= 2^63
            # (memcached bug, see _memcached_counter_bug) would make the caches diverge
            return Cmd([verb, b" ", SMALL_COUNTER, b" ", self.pick([b"1", b"7", b"100"]),
                        self.noreply(0.7), b"\r\n"], verb.decode(), SMALL_COUNTER)
        key = self.pick(COUNTER_KEYS) if r < 0.85 else self.pick(MISSING_KEYS + VALUE_KEYS[:2])
        return Cmd([verb, b" ", key, b" ", self.pick(self.deltas), b"\r\n"], verb.decode(), key)

    def g_delete(self):
        key = self.any_key()
        tail = self.pick([b"", b"", b"", b" 0"])
        return Cmd([b"delete ", key, tail, self.noreply(), b"\r\n"], "delete", key)

    def g_flush(self):
        line = self.pick([b"flush_all", b"flush_all 0", b"flush_all noreply",
                          b"flush_all 0 noreply", b"flush_all -1"])
        return Cmd([line, b"\r\n"], "flush_all")

    def g_misc(self):
        r = self.rng.random()
        if r < 0.3:
            return Cmd([b"version\r\n"], "version", n_ver=1)
        if r < 0.55:
            return Cmd([self.pick([b"verbosity 1", b"verbosity 0", b"verbosity 1 noreply",
                                   b"verbosity"]), b"\r\n"], "verbosity")
        if r < 0.75:
            return Cmd([b"stats\r\n"], "stats")
        if r < 0.85:
            return Cmd([b"stats reset\r\n"], "stats reset")
        if r < 0.93:
            return Cmd([self.pick([b"stats nonexistent_group", b"stats detail"]), b"\r\n"],
                       "stats bad")
        return Cmd([b"quit\r\n"], "quit", closes=True)

    # -- meta protocol -----------------------------------------------------------------------
    def meta_key(self, allow_binary: bool = True) -> tuple[bytes, bytes, bool]:
        """(key as sent, raw key, base64?)"""
        r = self.rng.random()
        if allow_binary and r < 0.07:
            raw = self.pick(BINARY_KEYS)
            return base64.b64encode(raw), raw, True
        raw = self.any_key()
        # Not on counters: an item stored through a base64 key keeps a "binary key" mark
        # (mg k answers it in base64), which memcached's incr keeps or drops (see g_mg).
        if r < 0.14 and len(raw) <= 180 and raw not in COUNTER_KEYS:
            return base64.b64encode(raw), raw, True
        return raw, raw, False

    def _flags(self, options) -> list[bytes]:
        out = [tok for p, tok in options if self.rng.random() < p]
        self.rng.shuffle(out)
        return out

    def _meta(self, verb: bytes, key: bytes, b64: bool, flags, data=None, kind=None,
              raw=None) -> Cmd:
        if b64:
            if raw is not None and any(c in raw for c in b" \r\n"):
                # memcached 1.6.18 echoes a base64 key's decoded bytes for `k`: with a space
                # or CRLF in them the reply line is broken, so `k` is left out for these keys
                flags = [f for f in flags if f != b"k"]
            flags = flags + [b"b"]
            self.rng.shuffle(flags)
        parts = [verb, b" ", key]
        if data is not None:
            parts += [b" ", b"%d" % len(data)]
        for f in flags:
            parts += [b" ", f] if isinstance(f, bytes) else [b" ", f[0], f[1]]
        parts.append(b"\r\n")
        if data is not None:
            parts += [data, b"\r\n"]
        return Cmd(parts, kind or verb.decode(), raw if raw is not None else key)

    def g_mg(self):
        key, raw, b64 = self.meta_key()
        opts = [(0.5, b"v"), (0.25, b"k"), (0.3, b"f"), (0.3, b"t"), (0.35, b"c"),
                (0.1, b"l"), (0.1, b"u"), (0.15, b"q"),
                (0.2, b"O" + self.opaque()), (0.1, b"T" + self.ttl_tok())]
        if raw not in COUNTER_KEYS:
            # Not on counters: size, because a space-padded counter's differs legally; the
            # item state bits (hit-before, win token sent, stale, binary key) because
            # memcached's incr either updates the item in place (keeping them) or replaces it
            # (clearing them), depending on whether its LRU maintainer holds the item at that
            # moment (a queued bump of an item read again in the cold LRU: timing dependent,
            # so not even sequential mode is safe; see ALLOWLIST "counter padding").
            opts += [(0.2, b"s"), (0.15, b"h"), (0.08, b"N" + self.pick([b"100", b"1000", b"0"])),
                     (0.05, b"R" + self.pick([b"30", b"5000"]))]
        return self._meta(b"mg", key, b64, self._flags(opts), raw=raw)

    def g_ms(self):
        key, raw, b64 = self.meta_key()
        data = self.value_for(raw)
        opts = [(0.2, b"c"), (0.15, b"k"), (0.15, b"q"), (0.3, b"F" + self.flags()),
                (0.3, b"T" + self.ttl_tok()), (0.15, b"O" + self.opaque())]
        flags = self._flags(opts)
        if self.rng.random() < 0.25:
            # I (set stale) not on counters: see g_mg
            with_i = self.rng.random() < 0.2 and raw not in COUNTER_KEYS
            flags.append((b"C", self.cas_token(raw, allow_bogus=not with_i)))
            if with_i:
                flags.append(b"I")
        if self.rng.random() < 0.3:
            modes = [b"S", b"E", b"R"] if raw in COUNTER_KEYS else [b"S", b"E", b"A", b"P", b"R"]
            flags.append(b"M" + self.pick(modes))
        self.rng.shuffle(flags)
        return self._meta(b"ms", key, b64, flags, data=data, raw=raw)

    def g_md(self):
        key, raw, b64 = self.meta_key()
        opts = [(0.2, b"q"), (0.2, b"k"), (0.15, b"O" + self.opaque())]
        if raw not in COUNTER_KEYS:
            opts.append((0.15, b"I"))  # see g_mg
        flags = self._flags(opts)
        if b"I" in flags and self.rng.random() < 0.5:
            flags.append(b"T" + self.ttl_tok())
        if self.rng.random() < 0.2:
            flags.append((b"C", self.cas_token(raw)))
        return self._meta(b"md", key, b64, flags, raw=raw)

    def g_ma(self):
        r = self.rng.random()
        if r < 0.8:
            raw = self.pick(COUNTER_KEYS)
        else:
            raw = self.pick(MISSING_KEYS + VALUE_KEYS[:2])
        b64 = self.rng.random() < 0.1 and raw not in COUNTER_KEYS  # see meta_key
        key = base64.b64encode(raw) if b64 else raw
        opts = [(0.15, b"N" + self.pick([b"0", b"100", b"1000"])),
                (0.15, b"J" + self.pick(self.counter_values)), (0.5, b"D" + self.pick(self.deltas)),
                (0.4, b"v"), (0.2, b"t"), (0.2, b"c"),
                (0.15, b"q"), (0.1, b"k"), (0.15, b"O" + self.opaque()),
                (0.3, b"M" + self.pick([b"I", b"+", b"D", b"-", b"i", b"d"]))]
        # No T (update TTL): memcached 1.6.18 applies it to the old item when the increment
        # had to replace the item (see g_mg), so the TTL after "ma T" is not deterministic.
        flags = self._flags(opts)
        if self.rng.random() < 0.15:
            flags.append((b"C", self.cas_token(raw)))
        return self._meta(b"ma", key, b64, flags, raw=raw)

    def g_ma_small(self):
        """ma on a counter that stays far below 2^63 (see run_stream: known memcached bug)."""
        flags = self._flags([(0.3, b"N0"), (0.3, b"J" + self.pick([b"0", b"5", b"100"])),
                             (0.5, b"D" + self.pick([b"1", b"7", b"100"])), (0.3, b"v"),
                             (0.3, b"M" + self.pick([b"I", b"D", b"+", b"-"]))])
        return self._meta(b"ma", SMALL_COUNTER, False, flags)

    def g_me(self):
        key, raw, b64 = self.meta_key()
        # fetch= of a counter is not deterministic in memcached (see g_mg)
        return self._meta(b"me", key, b64, [], raw=raw,
                          kind="me counter" if raw in COUNTER_KEYS else "me")

    def g_mn(self):
        return Cmd([b"mn\r\n"], "mn", n_mn=1)

    def g_quiet_batch(self):
        """Several quiet meta commands then mn: the pattern clients use to pipeline."""
        parts: list = []
        for _ in range(self.rng.randint(2, 8)):
            sub = self.pick([self.g_mg, self.g_ms, self.g_md, self.g_ma_small])()
            # make it quiet: add q unless present
            line_end = sub.parts.index(b"\r\n")
            if b"q" not in sub.parts:
                sub.parts[line_end:line_end] = [b" q"]
            parts += sub.parts
        parts.append(b"mn\r\n")
        return Cmd(parts, "quiet batch", n_mn=1)

    # -- malformed input ---------------------------------------------------------------------
    def g_malformed(self) -> Cmd:
        return self.pick([
            self.m_unknown, self.m_bad_numbers, self.m_long_key, self.m_ctrl_key,
            self.m_data_length, self.m_negative_length, self.m_oversized, self.m_too_many_tokens,
            self.m_bare_newlines, self.m_bad_args, self.m_bad_meta, self.m_bad_meta,
            self.m_noreply_errors,
        ])()

    def m_unknown(self):
        line = self.pick([b"foo", b"GET k0", b"gett k0", b"Set k0 0 0 1", b"set", b"get",
                          b"gets", b"incr", b"decr", b"delete", b"touch", b"cas", b"add",
                          b"mg", b"ms", b"md", b"ma", b"me", b"m", b"mx k0", b"\x00\x01\x02",
                          b"\xff\xfe", b"gat", b"gats", b"verbosity", b"append k0"])
        return Cmd([line, b"\r\n"], "malformed: unknown/incomplete")

    def m_bad_numbers(self):
        verb = self.pick([b"set", b"add", b"replace", b"append", b"prepend"])
        fields = [b"0", b"0", b"4"]
        which = self.rng.randrange(3)
        bad = [b"abc", b"-1", b"1.5", b"0x10", b"", b"18446744073709551616", b"+1", b"-0",
               b"9999999999999999999999"]
        if which < 2:  # flags, exptime
            bad += [b"4294967296", b"99999999999"]
        else:  # length (memcached truncates it to 32 bits: a huge one swallows the stream)
            bad += [b"4294967296", b"4294967300"]
        bad = self.pick(bad)
        fields[which] = bad
        line = verb + b" k1 " + b" ".join(fields) + self.noreply(0.15)
        # 4 bytes of data: stored if the server accepts the line, else read as a command
        return Cmd([line, b"\r\n", b"junk\r\n"], f"malformed: bad number in {verb.decode()}")

    def m_long_key(self):
        k = TOO_LONG_KEY
        r = self.rng.randrange(12)
        if r == 0:
            return Cmd([b"set ", k, b" 0 0 1\r\nx\r\n"], "malformed: long key set")
        if r in (1, 2):
            verb = self.pick([b"get", b"gets"])
            keys = self.pick([[k], [b"k0", k], [b"k0", k, b"k1"], [k, b"k0"]])
            return Cmd([verb, b" ", b" ".join(keys), b"\r\n"], "malformed: long key get",
                       pipeline_ok=False)  # memcached drops queued replies on this error
        if r == 3:
            return Cmd([b"gat 100 k0 ", k, b"\r\n"], "malformed: long key gat",
                       pipeline_ok=False)
        if r == 4:
            return Cmd([b"delete ", k, b"\r\n"], "malformed: long key delete")
        if r == 5:
            return Cmd([b"incr ", k, b" 1\r\n"], "malformed: long key incr")
        if r == 6:
            return Cmd([b"touch ", k, b" 10\r\n"], "malformed: long key touch")
        if r == 7:
            return Cmd([b"mg ", k, b" v\r\n"], "malformed: long key mg")
        if r == 8:
            return Cmd([b"ms ", k, b" 1\r\nx\r\n"], "malformed: long key ms")
        if r == 9:
            return Cmd([b"md ", k, b"\r\n"], "malformed: long key md")
        if r == 10:
            return Cmd([b"ma ", k, b"\r\n"], "malformed: long key ma")
        # 251 bytes once base64-decoded
        return Cmd([b"mg ", base64.b64encode(b"z" * 251), b" b v\r\n"],
                   "malformed: long base64 key mg")

    def m_ctrl_key(self):
        # memcached's text protocol splits on spaces only: these keys are accepted
        k = self.pick(CTRL_KEYS)
        r = self.rng.randrange(3)
        if r == 0:
            return Cmd([b"set ", k, b" 0 0 2\r\nok\r\n"], "control-char key set", k)
        if r == 1:
            return Cmd([self.pick([b"get ", b"gets "]), k, b"\r\n"], "control-char key get", k)
        return Cmd([b"mg ", k, b" v k\r\n"], "control-char key mg", k)

    def m_data_length(self):
        verb = self.pick([b"set", b"ms"])
        n = self.rng.randint(0, 12)
        actual = self.rng.choice([m for m in range(0, 16) if m != n])
        data = b"x" * actual
        line = (b"set k2 0 0 %d" % n) if verb == b"set" else (b"ms k2 %d" % n)
        line += self.noreply(0.15) if verb == b"set" else self.pick([b"", b" q"])
        payload = data + b"\r\n"
        if len(payload) < n + 2:
            # not enough data: fill so the server's read ends inside this command
            payload += b"Z" * (n + 2 - len(payload))
        elif len(payload) > n + 2:
            # too much data: the surplus is read as a command line of its own
            if not payload.endswith(b"\r\n"):
                payload += b"\r\n"
        if self.rng.random() < 0.2:
            # data block missing: the next command line is read as the data block, either
            # exactly (stored) or with one byte short of its CRLF (bad data chunk)
            filler = self.pick([b"get k0\r\n", b"mg k0 v\r\n"])
            n = len(filler) - self.pick([2, 3])
            return Cmd([b"set k2 0 0 %d\r\n" % n, filler], "malformed: missing data block")
        return Cmd([line, b"\r\n", payload], f"malformed: wrong data length ({verb.decode()})")

    def m_negative_length(self):
        line = self.pick([b"set k1 0 0 -1", b"set k1 0 0 -100", b"ms k1 -1", b"cas k1 0 0 -1 1",
                          b"append k1 0 0 -5", b"set k1 0 0 -1 noreply"])
        return Cmd([line, b"\r\n", self.pick([b"junk", b"x"]), b"\r\n"],
                   "malformed: negative length")

    def m_oversized(self):
        size = self.pick([1024 * 1024 + 1, 1024 * 1024 + 4096, 2 * 1024 * 1024])
        data = b"o" * size
        r = self.rng.randrange(4)
        key = self.pick([b"k0", b"k1"])
        if r == 0:
            return Cmd([b"set ", key, b" 0 0 %d\r\n" % size, data, b"\r\n"],
                       "oversized set", key)
        if r == 1:
            return Cmd([b"set ", key, b" 0 0 %d noreply\r\n" % size, data, b"\r\n"],
                       "oversized set noreply", key)
        if r == 2:
            return Cmd([b"ms ", key, b" %d T0\r\n" % size, data, b"\r\n"], "oversized ms", key)
        return Cmd([self.pick([b"add ", b"append ", b"replace "]), key,
                    b" 0 0 %d\r\n" % size, data, b"\r\n"], "oversized add/append/replace", key)

    def m_too_many_tokens(self):
        r = self.rng.randrange(9)
        if r == 0:
            return Cmd([b"set k1 0 0 1 noreply extra\r\nx\r\n"], "malformed: too many tokens")
        if r == 1:
            return Cmd([b"set k1 0 0 1 ", b" ".join([b"t"] * 30), b"\r\nx\r\n"],
                       "malformed: too many tokens")
        if r == 2:
            return Cmd([b"incr n0 1 noreply extra\r\n"], "malformed: too many tokens")
        if r == 3:
            return Cmd([b"delete k1 0 noreply extra\r\n"], "malformed: too many tokens")
        if r == 4:
            return Cmd([b"touch k1 10 noreply extra\r\n"], "malformed: too many tokens")
        if r == 5:
            return Cmd([b"cas k1 0 0 1 1 noreply extra\r\nx\r\n"], "malformed: too many tokens")
        if r == 6:
            return Cmd([b"verbosity 1 2 3\r\n"], "malformed: too many tokens")
        if r == 7:
            return Cmd([b"flush_all 0 noreply extra\r\n"], "malformed: too many tokens")
        return Cmd([b"mg k0 ", b" ".join([b"v"] + [b"O%d" % i for i in range(30)]), b"\r\n"],
                   "malformed: too many meta flags")

    def m_bare_newlines(self):
        r = self.rng.randrange(7)
        if r == 0:
            return Cmd([b"get k0 k1\n"], "bare LF get")
        if r == 1:
            return Cmd([b"set k3 0 0 2\nhi\r\n"], "bare LF set", b"k3")
        if r == 2:
            return Cmd([b"mg k3 v f\n"], "bare LF mg", b"k3")
        if r == 3:
            return Cmd([b"mn\n"], "bare LF mn", n_mn=1)
        if r == 4:
            return Cmd([self.pick([b"\r\n", b"\n", b" \r\n", b"   \n", b"\t\r\n"])],
                       "empty line")
        if r == 5:
            return Cmd([b"get  k0   k1 \r\n"], "extra spaces get")
        return Cmd([b"set k3 0 0 2\r\nhi\n\r\n"], "data ends with LF only")

    def m_bad_args(self):
        r = self.rng.randrange(10)
        if r == 0:
            return Cmd([self.pick([b"incr", b"decr"]), b" n0 ", self.pick(BAD_DELTAS), b"\r\n"],
                       "malformed: bad delta")
        if r == 1:
            return Cmd([b"touch k0 ", self.pick([b"abc", b"1.5", b"", b"99999999999999999999"]),
                        b"\r\n"], "malformed: bad touch exptime")
        if r == 2:
            return Cmd([self.pick([b"gat ", b"gats "]),
                        self.pick([b"abc", b"1.5", b"99999999999999999999"]), b" k0\r\n"],
                       "malformed: bad gat exptime")
        if r == 3:
            return Cmd([b"cas k0 0 0 1 ", self.pick([b"abc", b"-1", b"18446744073709551616",
                                                     b""]), b"\r\nx\r\n"],
                       "malformed: bad cas unique")
        if r == 4:
            return Cmd([self.pick([b"flush_all abc", b"flush_all 1.5", b"flush_all noreply 0"]),
                        b"\r\n"], "malformed: bad flush_all")
        if r == 5:
            return Cmd([self.pick([b"verbosity abc", b"verbosity -1", b"verbosity noreply"]),
                        b"\r\n"], "malformed: bad verbosity")
        if r == 6:
            return Cmd([self.pick([b"incr n0", b"decr", b"touch k0", b"delete"]), b"\r\n"],
                       "malformed: missing argument")
        if r == 7:
            return Cmd([b"set k0 0 ", self.pick(self.weird_exptimes), b" 1\r\nx\r\n"],
                       "huge exptime set", b"k0")
        if r == 8:
            return Cmd([b"incr qc 1 noreply\r\nget qc n0\r\n"], "incr noreply then get")
        return Cmd([b"version extra\r\n"], "version", n_ver=1)

    def m_bad_meta(self):
        r = self.rng.randrange(18)
        cases = {
            16: (b"mg k0 v E12345", "E flag (newer than memcached 1.6.18)"),
            17: (b"ms k0 2 E12345\r\nab", "E flag (newer than memcached 1.6.18)"),
            0: (b"mg k0 v !", "invalid flag"),
            1: (b"mg k0 v v", "duplicate flag"),
            2: (b"mg k0 O" + b"o" * 33, "opaque too long"),
            3: (b"mg k0 Tabc", "bad T token"),
            4: (b"ma n0 Dabc", "bad D token"),
            5: (b"ma n0 Jx N0", "bad J token"),
            6: (b"mg !!!! b v", "bad base64 key"),
            7: (b"mg k0 " + b" ".join([b"v", b"t", b"f"] * 2), "duplicate flags"),
            8: (b"md k0 Cabc", "bad C token"),
            9: (b"ma n0 MX", "bad ma mode"),
            10: (b"mg k0 N", "N without token"),
            11: (b"mg k0 v T", "T without token"),
            12: (b"me " + TOO_LONG_KEY, "long key me"),
            13: (b"mn extra tokens", "mn with tokens"),
            14: (b"mg  k0  v", "extra spaces mg"),
            15: (b"md k0 q q", "duplicate q"),
        }
        line, what = cases[r]
        if r == 13:
            return Cmd([line, b"\r\n"], "malformed meta: " + what, n_mn=1)
        if self.rng.random() < 0.3:
            # storage variants: the data block follows the bad line
            line, what = self.pick([
                (b"ms k0 2 MX", "bad ms mode"), (b"ms k0 2 Me", "lowercase ms mode"),
                (b"ms k0 2 Fabc", "bad F token"), (b"ms k0 2 F4294967296", "F overflow"),
                (b"ms k0 2 Tabc", "bad T token"), (b"ms k0 2 C", "C without token"),
                (b"ms k0 2 v", "invalid ms flag"), (b"ms k0 abc", "bad datalen"),
                (b"ms k0 2 q q", "duplicate flag")])
            return Cmd([line, b"\r\nab\r\n"], "malformed meta: " + what)
        return Cmd([line, b"\r\n"], "malformed meta: " + what)

    def m_noreply_errors(self):
        r = self.rng.randrange(5)
        if r == 0:
            return Cmd([b"set k1 0 0 3 noreply\r\nabcd\r\n"], "noreply bad data chunk")
        if r == 1:
            return Cmd([b"incr k0 1 noreply\r\n"], "noreply non-numeric incr")
        if r == 2:
            return Cmd([b"incr n0 abc noreply\r\n"], "noreply bad delta")
        if r == 3:
            return Cmd([b"set k1 0 0 ", b"%d" % (1024 * 1024 + 1), b" noreply\r\n",
                        b"n" * (1024 * 1024 + 1), b"\r\n"], "noreply oversized")
        return Cmd([b"touch k0 abc noreply\r\n"], "noreply bad exptime")


# ============================================================================================
# Comparison
# ============================================================================================
class Comparator:
    def __init__(self):
        self.a2b: dict[int, int] = {}
        self.b2a: dict[int, int] = {}
        self._counter = False

    def canon(self, cmd: Cmd, units):
        """-> (canonical tuple list, cas values, ttl values)"""
        cas, ttl = [], []
        out = []
        self._counter = cmd.kind == "me counter"
        if cmd.kind == "stats" and units and units[-1] == ("line", b"END") and all(
                u[0] == "line" and u[1].startswith(b"STAT ") for u in units[:-1]):
            return [("stats: STAT lines + END",)], cas, ttl
        for u in units:
            if u[0] == "line":
                out.append(("line", self._line(u[1], cas, ttl)))
            elif u[0] == "data":
                out.append(self._data(u, cas, ttl))
            else:
                out.append(u)
        return out, cas, ttl

    def _line(self, line: bytes, cas, ttl) -> bytes:
        if line.startswith(b"VERSION "):
            return b"VERSION <allowlisted>"
        toks = line.split(b" ")
        if toks[0] in META_CODES and toks[0] != b"VA":
            return b" ".join([toks[0]] + self._meta_flags(toks[1:], cas, ttl, None))
        if toks[0] == b"ME" and len(toks) >= 2:
            rest = []
            for t in toks[2:]:
                k, _, v = t.partition(b"=")
                if k in (b"cls", b"size") or (k == b"fetch" and self._counter):
                    continue
                if k == b"cas" and v.isdigit():
                    cas.append(int(v))
                    rest.append(b"cas=<cas>")
                elif k == b"exp" and _is_int(v):
                    ttl.append(int(v))
                    rest.append(b"exp=<ttl>")
                elif k == b"la" and _is_int(v):
                    rest.append(b"la=<int>")
                else:
                    rest.append(t)
            return b" ".join(toks[:2] + rest)
        return line

    def _meta_flags(self, toks, cas, ttl, size_override):
        out = []
        for t in toks:
            f, v = t[:1], t[1:]
            if f == b"c" and v.isdigit():
                out.append((b"c<cas>", int(v)))
            elif f == b"t" and _is_int(v):
                out.append((b"t<ttl>", int(v)))
            elif f == b"l" and v.isdigit():
                out.append((b"l<int>", None))
            elif f == b"s" and size_override is not None and v.isdigit():
                out.append((b"s%d" % size_override, None))
            else:
                out.append((t, None))
        out.sort(key=lambda x: x[0])  # allowlist: meta flag order is not strict
        for name, v in out:
            if name == b"c<cas>":
                cas.append(v)
            elif name == b"t<ttl>":
                ttl.append(v)
        return [name for name, _ in out]

    def _data(self, u, cas, ttl):
        _, header, data, ok = u
        m = PADDED_COUNTER.match(data)
        padded = m is not None
        if padded:
            data = m.group(1)  # allowlist: counter padding
        toks = header.split(b" ")
        if toks[0] == b"VALUE":
            if len(toks) >= 5 and toks[4].isdigit():
                cas.append(int(toks[4]))
                toks[4] = b"<cas>"
            toks[3] = b"%d" % len(data)
            return ("data", b" ".join(toks), data, ok)
        # VA <size> <flags>
        flags = self._meta_flags(toks[2:], cas, ttl, len(data) if padded else None)
        return ("data", b" ".join([b"VA", b"%d" % len(data)] + flags), data, ok)

    def compare(self, cmd: Cmd, ua, ub) -> str | None:
        if ("timeout",) in ua and ("timeout",) in ub:
            # both servers waited: the command stream itself is wrong (a harness bug)
            return "both servers timed out (harness/generator bug: the stream desynchronised)"
        ca, cas_a, ttl_a = self.canon(cmd, ua)
        cb, cas_b, ttl_b = self.canon(cmd, ub)
        if ca != cb:
            return "replies differ"
        for a, b in zip(ttl_a, ttl_b, strict=True):
            if (a == -1) != (b == -1) or abs(a - b) > TTL_TOLERANCE:
                return f"TTL {a} vs {b} (tolerance {TTL_TOLERANCE}s)"
        new = {}
        for a, b in zip(cas_a, cas_b, strict=True):
            want_b = self.a2b.get(a, new.get(a))
            if want_b is not None and want_b != b:
                return f"CAS mapping broken: reference cas {a} was {want_b} before, now {b}"
            have_a = self.b2a.get(b)
            if have_a is not None and have_a != a:
                return f"CAS mapping broken: cas {b} stood for reference cas {have_a}, now {a}"
            new[a] = b
        for a, b in new.items():
            self.a2b[a] = b
            self.b2a[b] = a
        return None


def _is_int(v: bytes) -> bool:
    return v.lstrip(b"-").isdigit() and v.count(b"-") <= 1


# ============================================================================================
# Driver
# ============================================================================================
@dataclass
class Mismatch:
    seed: int
    mode: str
    index: int
    cmd: Cmd
    sent_a: bytes
    sent_b: bytes
    reply_a: list
    reply_b: list
    reason: str
    context: list = field(default_factory=list)
    count: int = 1  # how many times the same difference was seen

    def format(self, name_a: str, name_b: str) -> str:
        again = f" (seen {self.count} times)" if self.count > 1 else ""
        lines = [f"seed={self.seed} mode={self.mode} command #{self.index} [{self.cmd.kind}]: "
                 f"{self.reason}{again}",
                 f"  sent:        {_show(self.sent_a)}"]
        if self.sent_b != self.sent_a:
            lines.append(f"  sent to {name_b}: {_show(self.sent_b)}")
        lines.append(f"  {name_a:<11}: {_show_units(self.reply_a)}")
        lines.append(f"  {name_b:<11}: {_show_units(self.reply_b)}")
        if self.context:
            lines.append("  preceding commands (and the reference's replies):")
            for i, sent, reply in self.context:
                lines.append(f"    #{i}: {_show(sent, 160)} -> {_show_units(reply, 160)}")
        return "\n".join(lines)


def _show(b: bytes, limit: int = 400) -> str:
    s = repr(b)
    return s if len(s) <= limit else s[:limit] + f"...({len(b)} bytes)"


def _show_units(units, limit: int = 600) -> str:
    parts = []
    for u in units:
        if u[0] == "line":
            parts.append(u[1])
        elif u[0] == "data":
            parts.append(u[1] + b"\\r\\n" + u[2] + (b"\\r\\n" if u[3] else b"<bad trailer>"))
        else:
            parts.append(b"<" + u[0].encode() + b">")
    return _show(b" | ".join(parts), limit)


def _timeout_for(size: int) -> float:
    return 3.0 + size / 5e6


@dataclass
class RunResult:
    mismatches: list
    kinds: dict
    text_only: str | None  # why meta commands were left out, if they were


def run_stream(server_a, server_b, seed: int, n_commands: int, mode: str = "sequential",
               batch: int = 40, max_mismatches: int = 10, max_total: int = 60) -> RunResult:
    """Sends n_commands generated from `seed` to both servers and compares the replies.

    Stops after max_mismatches distinct differences (same command kind and same first reply
    lines count as one) or max_total differences in all."""
    wa, wb = _wire(server_a, "a"), _wire(server_b, "b")
    mismatches: list[Mismatch] = []
    by_signature: dict[tuple, Mismatch] = {}
    total = 0
    history: deque = deque(maxlen=6)
    kinds: dict[str, int] = {}
    i = 0
    try:
        sentinel, text_only = _preflight(wa, wb)
        gen = Generator(seed, pipeline=(mode == "pipelined"), meta=text_only is None)
        split_rng = random.Random(seed ^ 0x5EED)
        comp = Comparator()
        while i < n_commands and len(mismatches) < max_mismatches and total < max_total:
            if mode == "pipelined":
                cmds = [gen.next() for _ in range(min(batch, n_commands - i))]
            else:
                cmds = [gen.next()]
            sent_a = [c.render() for c in cmds]
            sent_b = [c.render(comp.a2b) for c in cmds]
            counts = [sentinel.count(c) for c in cmds]
            pay_a = b"".join(s + sentinel.request for s in sent_a)
            pay_b = b"".join(s + sentinel.request for s in sent_b)
            timeout = _timeout_for(max(len(pay_a), len(pay_b)))
            if mode == "split":
                _send_split(wa, wb, pay_a, pay_b, split_rng)
                pay_a = pay_b = b""
            ra, rb = exchange([(wa, pay_a, counts), (wb, pay_b, counts)], timeout, sentinel)
            resync = False
            for j, cmd in enumerate(cmds):
                kinds[cmd.kind] = kinds.get(cmd.kind, 0) + 1
                reason = comp.compare(cmd, ra[j], rb[j])
                if reason is None:
                    gen.observe(cmd, ra[j])
                elif _memcached_counter_bug(wa, wb, cmd, ra[j], rb[j], sentinel):
                    kinds[KNOWN_COUNTER_BUG] = kinds.get(KNOWN_COUNTER_BUG, 0) + 1
                    resync = True  # the rest of a pipelined batch saw diverged state
                else:
                    total += 1
                    sig = (cmd.kind, reason, _show_units(ra[j][:1], 80),
                           _show_units(rb[j][:1], 80))
                    if sig in by_signature:
                        by_signature[sig].count += 1
                    else:
                        by_signature[sig] = Mismatch(seed, mode, i + j, cmd, sent_a[j],
                                                     sent_b[j], ra[j], rb[j], reason,
                                                     list(history))
                        mismatches.append(by_signature[sig])
                    resync = True
                history.append((i + j, sent_a[j], ra[j]))
                if resync:
                    break
            i += len(cmds)
            if resync or any(c.closes for c in cmds) or wa.closed or wb.closed:
                _reset(wa, wb, full=resync, sentinel=sentinel)
    finally:
        wa.close()
        wb.close()
    return RunResult(mismatches, kinds, text_only)


KNOWN_COUNTER_BUG = "allowlisted: memcached counter parse bug"
NON_NUMERIC = ("line", b"CLIENT_ERROR cannot increment or decrement non-numeric value")
LEADING_DIGITS = re.compile(rb"^[ \t\r\n\v\f]*([0-9]*)")


def _memcached_counter_bug(wa: Wire, wb: Wire, cmd: Cmd, ua, ub, sentinel: Sentinel) -> bool:
    """Allowlist (a memcached 1.6.18 bug, nondeterministic): incr/decr/ma parse the stored
    value with strtoull, which is not bounded by the item's length. A value of whitespace
    only is skipped past its end, and a value >= 2^63 goes through strchr(value, '-') over
    unterminated data, so memcached answers a number or "non-numeric" depending on the bytes
    that happen to follow the item in memory. If exactly one side said "non-numeric" and the
    stored value (on either side) is such a value, the difference is this bug."""
    if cmd.key is None or cmd.kind not in ("incr", "decr", "ma"):
        return False
    if (NON_NUMERIC in ua) == (NON_NUMERIC in ub):
        return False
    key = cmd.key
    plain = re.fullmatch(rb"[\x21-\x7e]{1,250}", key) is not None
    # (the same query to both sides: whatever it changes, it changes on both)
    query = (b"get " + key + b"\r\n") if plain else (
        b"mg " + base64.b64encode(key) + b" b v\r\n")
    replies = exchange([(wa, query + sentinel.request, [0]),
                        (wb, query + sentinel.request, [0])], 5.0, sentinel)
    for groups in replies:
        units = groups[0]
        if not units or units[0][0] != "data":
            continue
        data = units[0][2]
        digits = LEADING_DIGITS.match(data).group(1)
        if digits and 2**63 <= int(digits) < 2**64:
            return True
        if not digits and data and not data.strip(b" \t\r\n\v\f"):
            return True
    return False


def _preflight(wa: Wire, wb: Wire) -> tuple[Sentinel, str | None]:
    """Chooses the sentinel: mn if both servers answer it, else version (text only)."""
    ra, rb = exchange([(wa, MN_SENTINEL.request, [0]), (wb, MN_SENTINEL.request, [0])], 5.0,
                      MN_SENTINEL)
    if ra == [[]] and rb == [[]]:
        return MN_SENTINEL, None
    bad = wa if ra != [[]] else wb
    got = _show_units((ra if bad is wa else rb)[0])
    why = (f"{bad.server.name} does not answer the meta no-op 'mn' with 'MN' (got {got}): "
           f"meta commands were left out of this run")
    for w in (wa, wb):
        w.connect()
    ra, rb = exchange([(wa, VERSION_SENTINEL.request, [0]),
                       (wb, VERSION_SENTINEL.request, [0])], 5.0, VERSION_SENTINEL)
    if ra != [[]] or rb != [[]]:
        raise AssertionError(f"{why}; and 'version' is not answered either "
                             f"({_show_units(ra[0])} / {_show_units(rb[0])})")
    return VERSION_SENTINEL, why


def _wire(server, name: str) -> Wire:
    try:
        return Wire(server, name)
    except OSError as e:
        raise ServerGone(f"cannot connect to {server.name}: {e}") from None


class ServerGone(AssertionError):
    pass


def _reset(wa: Wire, wb: Wire, full: bool, sentinel: Sentinel) -> None:
    """Reconnect both; after a mismatch also empty both caches so the streams realign."""
    for w in (wa, wb):
        try:
            w.connect()
        except OSError as e:
            raise ServerGone(f"cannot reconnect to {w.server.name}: {e}") from None
    if full:
        req = b"flush_all\r\n" + sentinel.request
        exchange([(wa, req, [0]), (wb, req, [0])], 5.0, sentinel)


def _send_split(wa: Wire, wb: Wire, da: bytes, db: bytes, rng: random.Random) -> None:
    """Sends each payload in 2-4 pieces cut at the same (seeded) offsets, pausing between."""
    n = min(len(da), len(db))
    cuts = sorted(set(rng.randrange(1, n) for _ in range(rng.randint(1, 3)))) if n > 1 else []
    bounds_a = [0] + cuts + [len(da)]
    bounds_b = [0] + cuts + [len(db)]
    for k in range(len(bounds_a) - 1):
        wa.send_now(da[bounds_a[k]:bounds_a[k + 1]])
        wb.send_now(db[bounds_b[k]:bounds_b[k + 1]])
        if k < len(bounds_a) - 2:
            time.sleep(0.002)
