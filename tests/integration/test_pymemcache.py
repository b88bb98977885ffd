"""Functional scenario through a real client library (pymemcache, text protocol)."""

from __future__ import annotations

import random
import re
import time

import pytest
from pymemcache.client.base import Client
from pymemcache.exceptions import (MemcacheClientError, MemcacheIllegalInputError,
                                   MemcacheServerError)

from conftest import MAX_ITEM_SIZE

U64_MAX = 2**64 - 1


def make_client(server) -> Client:
    return Client((server.host, server.port), connect_timeout=5, timeout=5,
                  default_noreply=False, no_delay=True)


@pytest.fixture
def client(shared_cache_node):
    """A client of the module's cache-node, emptied first (tests are independent)."""
    assert shared_cache_node.alive, f"cache-node died:\n{shared_cache_node.log_tail()}"
    c = make_client(shared_cache_node)
    assert c.flush_all() is True
    yield c
    c.close()


@pytest.fixture
def raw_keys_client(shared_cache_node):
    """A client whose client-side key check is disabled, so the server's own is exercised."""
    c = make_client(shared_cache_node)
    c.check_key = lambda key, key_prefix=b"": key_prefix + (
        key.encode() if isinstance(key, str) else key)
    yield c
    c.close()


def wait_until(predicate, timeout: float, step: float = 0.1) -> bool:
    """Polls predicate until true or timeout (bounded)."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(step)


def test_set_get_delete(client):
    assert client.set("a", b"1") is True
    assert client.get("a") == b"1"
    assert client.set("a", b"two", flags=42) is True
    assert client.raw_command("get a", b"END\r\n") == b"VALUE a 42 3\r\ntwo\r\n"
    assert client.get("missing") is None
    assert client.get("missing", default=b"d") == b"d"
    assert client.delete("a") is True
    assert client.delete("a") is False
    assert client.get("a") is None
    assert client.set("empty", b"") is True
    assert client.get("empty") == b""


def test_flags_32_bit(client):
    for flags in (0, 1, 65535, 65536, 2**31, 2**32 - 1):
        assert client.set("f", b"x", flags=flags)
        assert client.raw_command("get f", b"END\r\n") == b"VALUE f %d 1\r\nx\r\n" % flags


def test_get_many(client):
    values = {f"k{i}": f"value-{i}".encode() for i in range(20)}
    assert client.set_many(values) == []
    got = client.get_many(list(values) + ["nope1", "nope2"])
    assert got == values
    assert client.get_many([]) == {}
    assert client.delete_many(list(values)) is True
    assert client.get_many(list(values)) == {}


def test_add_replace(client):
    assert client.add("k", b"first") is True
    assert client.add("k", b"second") is False
    assert client.get("k") == b"first"
    assert client.replace("k", b"third") is True
    assert client.get("k") == b"third"
    assert client.replace("nokey", b"x") is False
    assert client.get("nokey") is None


def test_append_prepend(client):
    assert client.append("nokey", b"x") is False
    assert client.prepend("nokey", b"x") is False
    assert client.get("nokey") is None
    client.set("ap", b"mid", flags=7)
    assert client.append("ap", b"-end") is True
    assert client.prepend("ap", b"start-") is True
    # append/prepend keep the item's flags
    assert client.raw_command("get ap", b"END\r\n") == b"VALUE ap 7 13\r\nstart-mid-end\r\n"


def test_cas_gets(client):
    assert client.gets("c") == (None, None)
    assert client.cas("c", b"v", cas=12345) is None  # NOT_FOUND
    client.set("c", b"v1")
    value, cas = client.gets("c")
    assert value == b"v1" and cas is not None and int(cas) > 0
    assert client.cas("c", b"v2", cas=cas) is True
    assert client.cas("c", b"v3", cas=cas) is False  # EXISTS: stale cas
    value2, cas2 = client.gets("c")
    assert value2 == b"v2" and cas2 != cas
    # every modification changes the cas unique
    client.append("c", b"+")
    _, cas3 = client.gets("c")
    assert cas3 not in (cas, cas2)
    # gets_many
    client.set("c2", b"w")
    many = client.gets_many(["c", "c2", "nope"])
    assert set(many) == {"c", "c2"} and many["c"] == (b"v2+", cas3)


def test_incr_decr(client):
    assert client.incr("n", 1) is None
    assert client.decr("n", 1) is None
    client.set("n", b"10")
    assert client.incr("n", 5) == 15
    assert client.decr("n", 3) == 12
    assert client.decr("n", 100) == 0  # decr floors at zero
    client.set("n", str(U64_MAX).encode())
    assert client.incr("n", 1) == 0  # incr wraps at 2^64
    client.set("n", str(U64_MAX - 1).encode())
    assert client.incr("n", 1) == U64_MAX
    assert client.incr("n", 0) == U64_MAX
    client.set("n", b"99")
    assert client.incr("n", 1) == 100
    assert int(client.get("n")) == 100
    assert client.decr("n", 91) == 9
    assert int(client.get("n").strip()) == 9  # memcached may space-pad a shrunk counter
    client.set("text", b"abc")
    with pytest.raises(MemcacheClientError, match="non-numeric"):
        client.incr("text", 1)


def test_incr_invalid_delta(client):
    # raw commands: pymemcache itself refuses a non-integer delta
    client.set("n", b"1")
    for delta in (b"abc", b"-1", b"%d" % (U64_MAX + 1), b"1.5", b"0x10"):
        with pytest.raises(MemcacheClientError, match="invalid numeric delta argument"):
            client.raw_command(b"incr n " + delta)
    assert client.raw_command(b"incr n %d" % U64_MAX) == b"0"
    assert client.get("n").strip() == b"0"


def test_touch(client):
    assert client.touch("t", 100) is False
    client.set("t", b"v", expire=2)
    assert client.touch("t", 1000) is True
    assert client.touch("t", 0) is True
    time.sleep(2.5)
    assert client.get("t") == b"v"


def test_noreply_paths(client):
    key_ops = [
        (lambda: client.set("nr", b"1", noreply=True), b"1"),
        (lambda: client.add("nr", b"x", noreply=True), b"1"),  # not stored, no reply
        (lambda: client.replace("nr", b"2", noreply=True), b"2"),
        (lambda: client.append("nr", b"3", noreply=True), b"23"),
        (lambda: client.prepend("nr", b"1", noreply=True), b"123"),
        (lambda: client.incr("nr", 7, noreply=True), b"130"),
        (lambda: client.decr("nr", 30, noreply=True), b"100"),
        (lambda: client.touch("nr", 1000, noreply=True), b"100"),
        (lambda: client.delete("nr", noreply=True), None),
        (lambda: client.add("nr", b"x", noreply=True), b"x"),
        (lambda: client.delete("missing", noreply=True), b"x"),
        (lambda: client.incr("missing", 1, noreply=True), b"x"),
    ]
    for op, expected in key_ops:
        op()
        got = client.get("nr")
        assert (got.strip() if got is not None else None) == expected
    _, cas = client.gets("nr")
    assert client.cas("nr", b"y", cas=cas, noreply=True) is True
    assert client.get("nr") == b"y"
    client.cas("nr", b"z", cas=cas, noreply=True)  # stale: EXISTS, suppressed
    assert client.get("nr") == b"y"
    assert client.flush_all(noreply=True) is True
    assert client.get("nr") is None
    # a noreply storm followed by one normal command: no stray replies anywhere
    for i in range(200):
        client.set(f"s{i}", b"%d" % i, noreply=True)
    assert client.version()
    assert client.get_many([f"s{i}" for i in range(200)]) == {
        f"s{i}": b"%d" % i for i in range(200)}


def test_binary_safe_values(client):
    every_byte = bytes(range(256))
    tricky = b"\r\nEND\r\nVALUE x 0 1\r\n\x00\xff"
    rng = random.Random(1234)
    blob = bytes(rng.getrandbits(8) for _ in range(10000))
    for key, value in (("bytes", every_byte), ("tricky", tricky), ("blob", blob),
                       ("rev", every_byte[::-1] * 3)):
        assert client.set(key, value)
        assert client.get(key) == value
    assert client.append("bytes", every_byte)
    assert client.get("bytes") == every_byte * 2
    assert client.get_many(["tricky", "blob"]) == {"tricky": tricky, "blob": blob}


def test_large_value(client):
    rng = random.Random(99)
    size = MAX_ITEM_SIZE - 1024  # near -I 1m, below it whatever the per-item overhead
    value = rng.randbytes(size)
    assert client.set("large", value)
    assert client.get("large") == value
    with pytest.raises(MemcacheServerError, match="too large"):
        client.set("huge", b"x" * (MAX_ITEM_SIZE + 1))
    assert client.get("huge") is None
    # the connection is still usable after the refused value
    assert client.get("large") == value


def test_expiry(client):
    client.set("short", b"v", expire=2)
    client.set("forever", b"v", expire=0)
    client.set("neg", b"v", expire=-1)
    client.set("past_abs", b"v", expire=int(time.time()) - 10)  # > 30 days: unix time, past
    client.set("future_abs", b"v", expire=int(time.time()) + 1000)
    client.set("thirty_days", b"v", expire=30 * 24 * 3600)  # still relative
    assert client.get("short") == b"v"
    assert client.get("neg") is None
    assert client.get("past_abs") is None
    assert client.get("future_abs") == b"v"
    assert client.get("thirty_days") == b"v"
    assert client.add("neg", b"again") is True  # an expired item does not block add
    start = time.monotonic()
    assert wait_until(lambda: client.get("short") is None, timeout=5.0), "item did not expire"
    assert time.monotonic() - start >= 0.5
    assert client.get("forever") == b"v"
    assert client.get("future_abs") == b"v"


def test_flush_all(client):
    client.set_many({f"f{i}": b"v" for i in range(10)})
    assert client.flush_all() is True
    assert client.get_many([f"f{i}" for i in range(10)]) == {}
    assert client.set("after", b"v")  # items stored after a flush are kept
    assert client.get("after") == b"v"


def test_stats_and_version(cache_node):
    # a fresh server: its counters start from zero
    client = make_client(cache_node)
    version = client.version()
    assert re.match(rb"^\S+$", version), version
    client.set("s1", b"v")
    client.set("s2", b"v")
    client.get("s1")
    client.get("nope")
    stats = client.stats()
    for name in (b"pid", b"uptime", b"time", b"version", b"curr_connections",
                 b"total_connections", b"cmd_get", b"cmd_set", b"get_hits", b"get_misses",
                 b"curr_items", b"total_items", b"bytes", b"limit_maxbytes", b"threads",
                 b"evictions"):
        assert name in stats, f"stats lacks {name!r}: {sorted(stats)}"
    assert stats[b"curr_items"] == 2
    assert stats[b"get_hits"] >= 1 and stats[b"get_misses"] >= 1
    assert stats[b"cmd_set"] >= 2
    assert stats[b"limit_maxbytes"] == 64 * 1024 * 1024
    assert stats[b"threads"] == 4
    assert stats[b"pid"] == cache_node.proc.pid
    settings = client.stats("settings")
    assert settings[b"maxbytes"] == 64 * 1024 * 1024
    assert settings[b"maxconns"] == 1024
    assert settings[b"tcpport"] == cache_node.port
    assert settings[b"item_size_max"] == MAX_ITEM_SIZE
    client.close()


def test_key_validation(client, raw_keys_client):
    ok = "k" * 250
    assert client.set(ok, b"v")
    assert client.get(ok) == b"v"
    # client-side checks (pymemcache) never reach the server
    for bad in ("k" * 251, "has space", "new\nline", "nul\x00"):
        with pytest.raises(MemcacheIllegalInputError):
            client.set(bad, b"v")
    # the server's own checks
    too_long = "k" * 251
    with pytest.raises(MemcacheClientError):
        raw_keys_client.set(too_long, b"v")
    with pytest.raises(MemcacheClientError):
        raw_keys_client.get(too_long)
    with pytest.raises(MemcacheClientError):
        raw_keys_client.delete(too_long)
    # both connections are still in sync after the errors
    assert raw_keys_client.get(ok) == b"v"
    assert client.get(ok) == b"v"
