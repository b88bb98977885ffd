"""Dumps of the items: `lru_crawler metadump` and `stats cachedump` line by line against
memcached 1.6.18, then the tools that read them (memcached-tool `dump` and `keys`, libmemcached's
`memcdump`) against both servers, and a dump of 200,000 items.

What legitimately differs is normalised: the order of the lines (memcached walks its LRUs,
cache-node its hash shards), `la` (memcached moves an item's access time at most once a
minute, cache-node on every read) and unix times, which may differ by a second between two
processes started apart.
"""

from __future__ import annotations

import base64
import re
import shutil
import socket
import struct
import subprocess
import time

import pytest

from conftest import HOST

MEMCACHED_TOOL = "/usr/share/memcached/scripts/memcached-tool"
TOOL_TIMEOUT = 60  # seconds for one run of a tool

BIG = 600 * 1024  # over memcached's 512 KiB chunk: a chained item in its last class

# (key, flags, exptime, value length): several classes, one expiring, flags, one large item,
# a key that needs URI encoding.
ITEMS = [
    (b"small", 0, 0, 10),
    (b"flagged", 42, 0, 100),
    (b"expiring", 0, 1000, 500),
    (b"mid", 7, 0, 5000),
    (b"odd%key:/", 0, 0, 3),
    (b"big", 3, 0, BIG),
]
BINARY_KEY = b"\x00\x01 bin\xff key"  # stored with meta `b`


def value_of(key: bytes, length: int) -> bytes:
    return (key * (length // len(key) + 1))[:length]


def command(s: socket.socket, f, data: bytes) -> bytes:
    s.sendall(data)
    return f.readline()


def load(server, items=ITEMS, binary=True) -> None:
    with server.connect() as s:
        f = s.makefile("rb")
        for key, flags, exptime, length in items:
            data = b"set %s %d %d %d\r\n%s\r\n" % (key, flags, exptime, length, value_of(key, length))
            assert command(s, f, data) == b"STORED\r\n", key
        if binary:
            assert command(s, f, b"ms %s 1 b\r\ny\r\n" % base64.b64encode(BINARY_KEY)) == b"HD\r\n"
        # One item read: fetch=yes.
        assert command(s, f, b"get small\r\n").startswith(b"VALUE small")
        f.readline(), f.readline()


def read_until_end(f) -> list[bytes]:
    lines = []
    while (line := f.readline()) != b"END\r\n":
        assert line, "connection closed before END"
        lines.append(line)
    return lines


def ask(server, request: bytes) -> list[bytes]:
    with server.connect(timeout=30) as s:
        s.sendall(request)
        return read_until_end(s.makefile("rb"))


METADUMP = re.compile(rb"^key=(\S+) exp=(-1|\d+) la=(\d+) cas=(\d+) fetch=(yes|no) cls=(\d+) size=(\d+)\n$")
CACHEDUMP = re.compile(rb"^ITEM (\S+) \[(\d+) b; (\d+) s\]\r\n$")


def near(a: int, b: int, slack: int = 2) -> bool:
    return abs(a - b) <= slack


def metadump(server, classes: bytes) -> dict[bytes, tuple]:
    """key -> (exp, la, cas, fetch, cls, size), each line checked against memcached's format."""
    out = {}
    for line in ask(server, b"lru_crawler metadump %s\r\n" % classes):
        m = METADUMP.match(line)
        assert m, f"{server.name}: {line!r}"
        key, exp, la, cas, fetch, cls, size = m.groups()
        assert key not in out, f"{server.name}: {key!r} twice"
        out[key] = (int(exp), int(la), int(cas), fetch, int(cls), int(size))
    return out


def same_metadump(expected: dict, got: dict) -> None:
    assert got.keys() == expected.keys()
    now = time.time()
    for key, (exp, la, cas, fetch, cls, size) in expected.items():
        g_exp, g_la, g_cas, g_fetch, g_cls, g_size = got[key]
        assert (g_cas, g_fetch, g_cls, g_size) == (cas, fetch, cls, size), key
        assert exp == g_exp == -1 or near(exp, g_exp), (key, exp, g_exp)
        assert near(la, now, 30) and near(g_la, now, 30), (key, la, g_la)


def test_metadump_lines_are_memcacheds(memcached, cache_node):
    for server in (memcached, cache_node):
        load(server)
    expected, got = metadump(memcached, b"all"), metadump(cache_node, b"all")
    assert len(expected) == len(ITEMS) + 1
    assert b"%00%01%20bin%FF%20key" in got and b"odd%25key%3A%2F" in got
    same_metadump(expected, got)
    same_metadump(metadump(memcached, b"hash"), metadump(cache_node, b"hash"))
    classes = sorted({fields[4] for fields in expected.values()})
    assert len(classes) >= 5 and 39 in classes, classes
    for cls in classes:
        one = metadump(cache_node, b"%d" % cls)
        assert one and all(fields[4] == cls for fields in one.values())
        same_metadump(metadump(memcached, b"%d" % cls), one)
    pair = b"1,39"
    same_metadump(metadump(memcached, pair), metadump(cache_node, pair))
    assert metadump(cache_node, b"2") == metadump(memcached, b"2") == {}


def cachedump(server, cls: int, limit: int = 0) -> dict[bytes, tuple[int, int]]:
    out = {}
    for line in ask(server, b"stats cachedump %d %d\r\n" % (cls, limit)):
        m = CACHEDUMP.match(line)
        assert m, f"{server.name}: {line!r}"
        out[m.group(1)] = (int(m.group(2)), int(m.group(3)))
    return out


def wait_for_cold(memcached, classes: list[int], keys: int) -> None:
    """memcached's cachedump shows only its COLD LRU; its LRU maintainer moves new items there
    within seconds."""
    deadline = time.monotonic() + 20
    while sum(len(cachedump(memcached, cls)) for cls in classes) < keys:
        assert time.monotonic() < deadline, "memcached's items never reached its COLD LRU"
        time.sleep(0.2)


def test_cachedump_lines_are_memcacheds(memcached, cache_node):
    for server in (memcached, cache_node):
        load(server)
    classes = sorted({fields[4] for fields in metadump(memcached, b"all").values()})
    wait_for_cold(memcached, classes, len(ITEMS))
    shown = 0
    for cls in range(0, 42):
        expected, got = cachedump(memcached, cls), cachedump(cache_node, cls)
        assert got.keys() == expected.keys(), cls
        for key, (length, exp) in expected.items():
            assert got[key][0] == length and (exp == got[key][1] == 0 or near(exp, got[key][1])), key
        shown += len(got)
        if len(expected) > 0:
            assert len(cachedump(cache_node, cls, 1)) == 1
    # Every item but the binary key, which memcached leaves out.
    assert shown == len(ITEMS)


def run_tool(argv: list[str]) -> subprocess.CompletedProcess:
    tool = shutil.which(argv[0]) or argv[0]
    if not shutil.which(tool):
        pytest.fail(f"{argv[0]} not found: apt-get install memcached libmemcached-tools", pytrace=False)
    return subprocess.run([tool, *argv[1:]], capture_output=True, timeout=TOOL_TIMEOUT, check=True)


def tool_dump(server) -> set[bytes]:
    """memcached-tool's `dump`: `add <key> <flags> <exptime> <len>` and the value, per item."""
    out = run_tool(["perl", MEMCACHED_TOOL, f"{HOST}:{server.port}", "dump"]).stdout
    items, lines = set(), out.split(b"\r\n")
    for header, value in zip(lines[0::2], lines[1::2]):
        _, key, flags, exptime, length = header.split(b" ")
        assert len(value) == int(length)
        items.add((key, int(flags), int(exptime) != 0, value))
    return items


def tool_keys(server) -> set[bytes]:
    out = run_tool(["perl", MEMCACHED_TOOL, f"{HOST}:{server.port}", "keys"]).stdout
    return {METADUMP.match(line + b"\n").group(1) for line in out.splitlines()}


def memcdump(server) -> set[bytes]:
    return set(run_tool(["memcdump", f"--servers={HOST}:{server.port}"]).stdout.splitlines())


def test_tools_dump_the_same_items_from_both(memcached, cache_node):
    # The tools' own protocol cannot carry a binary key: memcached-tool would `get` it raw.
    for server in (memcached, cache_node):
        load(server, binary=False)
    expected_keys = {key for key, *_ in ITEMS}
    expected = {(key, flags, exptime != 0, value_of(key, length)) for key, flags, exptime, length in ITEMS}
    all_keys = {b"small", b"flagged", b"expiring", b"mid", b"odd%25key%3A%2F", b"big"}
    for server in (memcached, cache_node):
        assert tool_dump(server) == expected, server.name
        # memcached's crawler can miss an item that its LRU maintainer moves between LRUs during
        # the crawl (the dump's gets just made them active), seen once in a loaded run: it gets
        # a second and third crawl. cache-node's items do not move: one crawl lists them all.
        crawls = 3 if server is memcached else 1
        keys = [tool_keys(server) for _ in range(crawls)]
        assert all_keys in keys, (server.name, keys)
    assert memcdump(cache_node) == expected_keys
    classes = sorted({fields[4] for fields in metadump(memcached, b"all").values()})
    wait_for_cold(memcached, classes, len(ITEMS))
    assert memcdump(memcached) == expected_keys


MANY = 200_000


def load_many(server) -> None:
    with server.connect(timeout=30) as s:
        batch = 5000
        for start in range(0, MANY, batch):
            s.sendall(b"".join(b"set k%07d 0 0 2 noreply\r\nvv\r\n" % i for i in range(start, start + batch)))
        s.sendall(b"mn\r\n")
        assert s.makefile("rb").readline() == b"MN\r\n"


def test_a_dump_of_200k_items_completes_with_every_key(cache_node):
    """(Not compared with memcached: its crawler walks LRUs that its maintainer reorders while
    a fresh load settles, and then misses items now and then, as its protocol.txt warns.)"""
    server = cache_node
    load_many(server)
    with server.connect(timeout=30) as s:
        f = s.makefile("rb")
        s.sendall(b"lru_crawler metadump all\r\n")
        keys = [line.split(b" ", 1)[0] for line in read_until_end(f)]
        assert len(keys) == MANY and len(set(keys)) == MANY
        assert set(keys) == {b"key=k%07d" % i for i in range(MANY)}
        # The connection goes on after the dump.
        s.sendall(b"get k0000007\r\n")
        assert f.readline() == b"VALUE k0000007 0 2\r\n"
    assert len(tool_keys(server)) == MANY


def test_a_stalled_dump_does_not_stall_the_server(cache_node):
    """A client that asks for a dump and does not read it holds its own connection, not the
    store: another client's requests are answered meanwhile, and the dump is whole once read."""
    load_many(cache_node)
    with cache_node.connect(timeout=30) as dumper:
        # 200,000 lines are about 14 MB: more than the socket buffers hold, so the server's
        # writes of this dump block until the client reads.
        dumper.sendall(b"lru_crawler metadump all\r\n")
        time.sleep(0.5)
        with cache_node.connect(timeout=5) as other:
            f = other.makefile("rb")
            for i in range(20):
                started = time.monotonic()
                other.sendall(b"set new%d 0 0 1\r\nx\r\nget k%07d\r\n" % (i, i))
                assert f.readline() == b"STORED\r\n"
                assert f.readline() == b"VALUE k%07d 0 2\r\n" % i
                f.readline(), f.readline()
                assert time.monotonic() - started < 1.0
        lines = read_until_end(dumper.makefile("rb"))
        assert len(lines) >= MANY


def test_over_udp_cachedump_answers_and_metadump_is_silent(server_factory):
    commands = [b"stats cachedump 0 0", b"lru_crawler metadump all", b"lru_crawler metadump 64",
                b"stats cachedump 4 0"]
    replies = {}
    for name in ("memcached", "cache_node"):
        server = getattr(server_factory, name)(udp=True)
        load(server, items=ITEMS[:2], binary=False)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
            u.settimeout(1)
            got = []
            for rid, cmd in enumerate(commands):
                u.sendto(struct.pack(">HHHH", rid, 0, 1, 0) + cmd + b"\r\n", (HOST, server.port))
                try:
                    got.append(u.recvfrom(65536)[0][8:])
                except socket.timeout:
                    got.append(None)
            replies[name] = got
    # memcached shows a fresh item in cachedump only once it is in its COLD LRU: compare the
    # replies that do not depend on that.
    assert replies["cache_node"][:3] == replies["memcached"][:3] == [
        b"END\r\n", None, b"BADCLASS invalid class id\r\n"]
    assert replies["cache_node"][3] == b"ITEM flagged [100 b; 0 s]\r\nEND\r\n"
