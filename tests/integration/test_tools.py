"""`stats` and `stats settings` as the tools that read them see them: the names and their order
against memcached 1.6.18's, then memcached-tool and memcstat run against cache-node.

cache-node reports memcached's fields by memcached's names, in memcached's order. The fields it
leaves out are listed below, each with why; every other difference fails the test.
"""

from __future__ import annotations

import os
import shutil
import struct
import subprocess

import pytest

from conftest import HOST

MEMCACHED_TOOL = "/usr/share/memcached/scripts/memcached-tool"
TOOL_TIMEOUT = 20  # seconds

BUFFER_POOLS = "memcached's pooled connection buffers; cache-node's belong to each connection"
HASH_TABLE = "no single hash table: one per shard, each grown in place"
NO_SEGMENTS = "no segmented LRU: memcached itself omits it with lru_segmented no"

# memcached 1.6.18's `stats` fields that cache-node does not report.
GENERAL_OMITTED = {
    "response_obj_oom": BUFFER_POOLS,
    "response_obj_count": BUFFER_POOLS,
    "response_obj_bytes": BUFFER_POOLS,
    "read_buf_count": BUFFER_POOLS,
    "read_buf_bytes": BUFFER_POOLS,
    "read_buf_bytes_free": BUFFER_POOLS,
    "read_buf_oom": BUFFER_POOLS,
    "hash_power_level": HASH_TABLE,
    "hash_bytes": HASH_TABLE,
    "hash_is_expanding": HASH_TABLE,
    "lru_maintainer_juggles": "no LRU maintainer thread: memcached omits it without one",
    "evicted_active": NO_SEGMENTS,
    "moves_to_cold": NO_SEGMENTS,
    "moves_to_warm": NO_SEGMENTS,
    "moves_within_lru": NO_SEGMENTS,
    "direct_reclaims": NO_SEGMENTS,
    "lru_bumps_dropped": NO_SEGMENTS,
}

SEGMENT_PARAM = "parameter of the segmented LRU, which cache-node does not have"
EXTSTORE = "no extstore: a memcached built without it prints none of these"
TLS = "no TLS: cache-node reports ssl_enabled no, not the parameters of TLS"

# memcached 1.6.18's (Debian's build, with extstore and TLS) `stats settings` fields that
# cache-node does not report.
SETTINGS_OMITTED = {
    "oldest": "no single oldest_live: flush_all cuts are versions shared with the peer",
    "slab_automove_ratio": "parameter of slab automove, which cache-node does not have",
    "slab_automove_window": "parameter of slab automove, which cache-node does not have",
    "hot_lru_pct": SEGMENT_PARAM,
    "warm_lru_pct": SEGMENT_PARAM,
    "hot_max_factor": SEGMENT_PARAM,
    "warm_max_factor": SEGMENT_PARAM,
    "temporary_ttl": "parameter of the temporary LRU, which cache-node does not have",
    "watcher_logbuf_size": "no log watchers",
    "worker_logbuf_size": "no log watchers",
    **{name: EXTSTORE for name in [
        "ext_item_size", "ext_item_age", "ext_low_ttl", "ext_recache_rate", "ext_wbuf_size",
        "ext_compact_under", "ext_drop_under", "ext_max_sleep", "ext_max_frag",
        "slab_automove_freeratio", "ext_drop_unread"]},
    **{name: TLS for name in [
        "ssl_chain_cert", "ssl_key", "ssl_verify_mode", "ssl_keyformat", "ssl_ciphers",
        "ssl_ca_cert", "ssl_wbuf_size", "ssl_session_cache", "ssl_kernel_tls",
        "ssl_min_version"]},
}


def stats(server, group: str = "") -> list[tuple[str, str]]:
    with server.connect() as s:
        s.sendall(f"stats {group}".strip().encode() + b"\r\n")
        buf = b""
        while not buf.endswith(b"END\r\n"):
            chunk = s.recv(65536)
            assert chunk, f"{server} closed during stats {group}"
            buf += chunk
    pairs = []
    for line in buf.decode().split("\r\n"):
        if line.startswith("STAT "):
            _, name, value = line.split(" ", 2)
            pairs.append((name, value))
    return pairs


def names(pairs) -> list[str]:
    return [name for name, _ in pairs]


@pytest.mark.parametrize("extra", [(), ("-o", "idle_timeout=5")], ids=["plain", "idle_timeout"])
def test_stats_names_and_order_are_memcacheds(server_factory, extra):
    memcached = server_factory.memcached(*extra)
    cache_node = server_factory.cache_node(*extra)
    want = names(stats(memcached))
    assert len(want) == 92 + bool(extra), "memcached 1.6.18's field count changed"
    assert set(GENERAL_OMITTED) <= set(want)
    got = names(stats(cache_node))
    assert got == [n for n in want if n not in GENERAL_OMITTED]


def test_settings_names_and_order_are_memcacheds(memcached, cache_node):
    want = names(stats(memcached, "settings"))
    assert len(want) == 76, "memcached 1.6.18's field count changed"
    assert set(SETTINGS_OMITTED) <= set(want)
    got = names(stats(cache_node, "settings"))
    assert got == [n for n in want if n not in SETTINGS_OMITTED]


def test_settings_shared_with_memcached_have_its_values(server_factory):
    """With the same command line, the settings that describe the command line or a fixed
    behaviour both servers share read the same."""
    args = ("-t", "2", "-c", "50", "-m", "10", "-o", "idle_timeout=5")
    memcached = dict(stats(server_factory.memcached(*args), "settings"))
    cache_node = dict(stats(server_factory.cache_node(*args), "settings"))
    same = ["maxbytes", "maxconns", "udpport", "inter", "verbosity", "evictions", "domain_socket",
            "umask", "shutdown_command", "growth_factor", "chunk_size", "num_threads",
            "stat_key_prefix", "detail_enabled", "cas_enabled", "binding_protocol",
            "auth_enabled_sasl", "auth_enabled_ascii", "item_size_max", "maxconns_fast",
            "hashpower_init", "slab_chunk_max", "lru_crawler", "tail_repair_time",
            "flush_enabled", "idle_timeout", "read_buf_mem_limit", "track_sizes",
            "inline_ascii_response", "ssl_enabled", "num_napi_ids", "memory_file"]
    assert {n: cache_node[n] for n in same} == {n: memcached[n] for n in same}
    # cache-node's own, where it differs from memcached.
    assert cache_node["hash_algorithm"] == "foldhash"
    assert (cache_node["slab_reassign"], cache_node["lru_segmented"]) == ("no", "no")
    assert cache_node["num_threads_per_udp"] == "1"


def test_counters_move(cache_node):
    """conn_yields counts full batches; lru_crawler_starts the sweep's passes."""
    with cache_node.connect() as s:
        s.sendall(b"set k 0 0 1\r\nx\r\n" + b"get k\r\n" * 600)
        want = b"STORED\r\n" + b"VALUE k 0 1\r\nx\r\nEND\r\n" * 600
        got = b""
        while len(got) < len(want):
            got += s.recv(1 << 20)
        assert got == want
    general = dict(stats(cache_node))
    assert int(general["conn_yields"]) >= 2
    assert general["lru_crawler_running"] == "1" and int(general["lru_crawler_starts"]) >= 1
    # Requests a batch takes before its replies are written: 12 of memcached's 21-request events.
    assert dict(stats(cache_node, "settings"))["reqs_per_event"] == "252"


@pytest.mark.parametrize("group", ["", "settings"])
def test_binary_stats_are_the_text_ones(cache_node, group):
    """The binary protocol's stat groups share the list: the same names, in the same order."""
    key = group.encode()
    header = struct.pack(">BBHBBHIIQ", 0x80, 0x10, len(key), 0, 0, 0, len(key), 0, 0)
    got = []
    with cache_node.connect() as s:
        s.sendall(header + key)
        buf = b""
        while True:
            while len(buf) < 24:
                buf += s.recv(65536)
            _, _, keylen, _, _, status, total, _, _ = struct.unpack(">BBHBBHIIQ", buf[:24])
            while len(buf) < 24 + total:
                buf += s.recv(65536)
            assert status == 0
            name = buf[24:24 + keylen].decode()
            buf = buf[24 + total:]
            if not name:
                break
            got.append(name)
    assert got == names(stats(cache_node, group))


def run_tool(argv: list[str]) -> str:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=TOOL_TIMEOUT)
    assert done.returncode == 0, f"{argv} exited {done.returncode}: {done.stderr}"
    return done.stdout


def tool_fields(output: str) -> dict[str, str]:
    fields = {}
    for line in output.splitlines():
        parts = line.split()
        if len(parts) == 2 and not line.startswith("#"):
            fields[parts[0]] = parts[1]
    return fields


@pytest.mark.skipif(not os.path.exists(MEMCACHED_TOOL), reason="memcached-tool not installed")
@pytest.mark.parametrize("mode,group", [("stats", ""), ("settings", "settings")])
def test_memcached_tool(cache_node, mode, group):
    out = run_tool([MEMCACHED_TOOL, f"{HOST}:{cache_node.port}", mode])
    assert out.startswith(f"#{HOST}:{cache_node.port}")
    fields = tool_fields(out)
    # Values change between the two reads (uptime, rusage): compare the names.
    assert set(fields) == set(names(stats(cache_node, group)))
    if mode == "stats":
        assert fields["version"].startswith("1.6.18") and fields["curr_connections"] == "1"
    else:
        assert fields["hash_algorithm"] == "foldhash" and fields["maxconns"] == "1024"


@pytest.mark.skipif(shutil.which("memcstat") is None, reason="memcstat (libmemcached-tools) not installed")
def test_memcstat(cache_node):
    out = run_tool(["memcstat", f"--servers={HOST}:{cache_node.port}"])
    assert out.splitlines()[0] == f"Server: {HOST} ({cache_node.port})"
    fields = {}
    for line in out.splitlines()[1:]:
        name, _, value = line.strip().partition(": ")
        fields[name] = value
    assert set(fields) == set(names(stats(cache_node)))
    assert fields["version"].startswith("1.6.18") and fields["threads"] == "4"
