"""Per slab class statistics (`stats items`, `stats slabs`) as memcached 1.6.18 reports them for
the same items, memcached's own tests of them (t/issue_22.t, t/issue_14.t) run against
cache-node, and `memcached-tool display`, which reads both.

cache-node allocates each item to size; it reports every item in the class memcached would keep
it in, and per class the chunks and pages memcached would use for the items held.
"""

from __future__ import annotations

import subprocess
import time

from conftest import HOST
from test_tools import MEMCACHED_TOOL, TOOL_TIMEOUT, stats

# (key, flags, value length): small and large items, non-zero flags (a larger header), and
# items over 512 KiB, which memcached chains from a header chunk in a small class.
ITEMS = [
    ("tiny", 0, 1),
    ("tiny-flags", 7, 1),
    ("small", 0, 100),
    ("kilo", 0, 1000),
    ("kilo2", 0, 1000),
    ("page", 0, 66560),
    ("half", 0, 400_000),
    ("chained-a", 0, 524_286),
    ("chained-b", 0, 524_287),
    ("chained-c", 0, 600_000),
]

# `stats items` fields of memcached's segmented LRU (its default), which cache-node does not
# have: memcached leaves them out too when started with -o no_lru_maintainer.
SEGMENTED = {"number_hot", "number_warm", "number_cold", "age_hot", "age_warm", "evicted_active",
             "moves_to_cold", "moves_to_warm", "moves_within_lru", "direct_reclaims",
             "hits_to_hot", "hits_to_warm", "hits_to_cold", "hits_to_temp"}


def command(server, line: bytes, end: bytes) -> bytes:
    with server.connect() as s:
        s.sendall(line)
        buf = b""
        while not buf.endswith(end):
            chunk = s.recv(1 << 20)
            assert chunk, f"{server} closed"
            buf += chunk
        return buf


def store(server, key: str, flags: int, length: int, exptime: int = 0) -> None:
    head = f"set {key} {flags} {exptime} {length}\r\n".encode()
    assert command(server, head + b"v" * length + b"\r\n", b"\r\n") == b"STORED\r\n"


def load(server) -> None:
    for key, flags, length in ITEMS:
        store(server, key, flags, length)
    command(server, ("get " + " ".join(k for k, _, _ in ITEMS) + "\r\n").encode(), b"END\r\n")
    command(server, b"delete kilo2\r\n", b"\r\n")


def per_class(pairs, prefix: str = "") -> dict[str, dict[str, str]]:
    out: dict[str, dict[str, str]] = {}
    for name, value in pairs:
        parts = name.removeprefix(prefix).split(":")
        if len(parts) == 2:
            out.setdefault(parts[0], {})[parts[1]] = value
    return out


def test_items_are_in_memcacheds_classes(memcached, cache_node):
    for server in (memcached, cache_node):
        load(server)
    want = per_class(stats(memcached, "items"), "items:")
    got = per_class(stats(cache_node, "items"), "items:")
    assert got.keys() == want.keys()
    for cls, fields in want.items():
        names = [n for n in fields if n not in SEGMENTED]
        assert list(got[cls]) == names, f"class {cls}"
        for name in ["number", "mem_requested", "evicted", "outofmemory", "reclaimed",
                     "evicted_unfetched", "expired_unfetched"]:
            assert got[cls][name] == fields[name], f"items:{cls}:{name}"


def test_slabs_show_the_chunks_memcached_uses_for_the_same_items(memcached, cache_node):
    for server in (memcached, cache_node):
        load(server)
    want_pairs = stats(memcached, "slabs")
    got_pairs = stats(cache_node, "slabs")
    want, got = per_class(want_pairs), per_class(got_pairs)
    # memcached keeps the page of a class whose items are all gone; cache-node frees the memory.
    want = {cls: fields for cls, fields in want.items() if fields["used_chunks"] != "0"}
    assert got.keys() == want.keys()
    for cls in want:
        assert got[cls] == want[cls], f"class {cls}"
    assert dict(got_pairs)["active_slabs"] == str(len(want))
    # The memory the items really take, which memcached's pages round up.
    total = int(dict(got_pairs)["total_malloced"])
    assert total == int(dict(stats(cache_node))["bytes"])


def evictions_in_class_31(server) -> tuple[int, int]:
    """memcached's t/issue_22.t: 64 KiB values evict in class 31 under -m 3."""
    for i in range(100):
        store(server, f"key_{i}", 0, 66560)
    items = dict(stats(server, "items"))
    return int(items.get("items:31:evicted", 0)), int(dict(stats(server))["evictions"])


def test_evictions_are_counted_in_the_class_of_the_evicted_items(server_factory):
    memcached = server_factory.memcached("-m", "3")
    cache_node = server_factory.cache_node("-m", "3")
    for server in (memcached, cache_node):
        in_class, total = evictions_in_class_31(server)
        assert in_class > 0 and in_class == total, server
    with cache_node.connect() as s:
        s.sendall(b"stats reset\r\n")
        assert s.recv(64) == b"RESET\r\n"
    assert dict(stats(cache_node, "items"))["items:31:evicted"] == "0"


def test_memory_of_expired_items_is_used_again(cache_node):
    """memcached's t/issue_14.t: ten items expire, ten more take their memory."""
    for i in range(10):
        store(cache_node, f"old_{i}", 0, 66560, exptime=2)
    before = dict(stats(cache_node, "slabs"))["total_malloced"]
    # They expire within 3 s; the sweep frees them within its next 100 ms step. Wait for that
    # (bounded), not for a fixed time: a busy machine may take longer.
    deadline = time.monotonic() + 15
    while dict(stats(cache_node))["curr_items"] != "0":
        assert time.monotonic() < deadline, "the sweep never freed the expired items"
        time.sleep(0.1)
    for i in range(10):
        store(cache_node, f"new_{i}", 0, 66560)
    assert dict(stats(cache_node, "slabs"))["total_malloced"] == before
    items = dict(stats(cache_node, "items"))
    assert (items["items:31:number"], items["items:31:crawler_reclaimed"]) == ("10", "10")


def display(server) -> list[list[str]]:
    """memcached-tool display's class rows: class, item size, pages, count, full."""
    out = subprocess.run(["perl", MEMCACHED_TOOL, f"{HOST}:{server.port}", "display"],
                         capture_output=True, text=True, timeout=TOOL_TIMEOUT, check=True).stdout
    rows = [line.split() for line in out.splitlines()[1:]]
    return [[r[0], r[1], r[3], r[4], r[5]] for r in rows]


def test_memcached_tool_display_shows_the_classes(memcached, cache_node):
    for server in (memcached, cache_node):
        load(server)
    # Class 2 holds no items of its own, only the header chunks of the chained ones.
    assert display(cache_node) == display(memcached)
