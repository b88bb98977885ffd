"""Commands that tools and client libraries send besides reads and writes (`slabs`, `stats
sizes`, `stats cachedump`, `lru_crawler`), sent to memcached 1.6.18 and to cache-node: the
replies must be the same bytes. The servers are empty: dumps of items are in test_dump.py.

memcached's `t/strtol-testing.t` checks `slabs automove invalid`; pylibmc, python-memcached and
memjs read `stats sizes`; memcached-tool sends `slabs reassign` and `slabs automove`.
"""

from __future__ import annotations

import socket
import struct

import pytest

from conftest import HOST

TEXT_COMMANDS = [
    b"slabs automove 0",
    b"slabs automove 1",
    b"slabs automove 2",
    b"slabs automove 01",
    b"slabs automove 1 extra",
    b"slabs automove 3",
    b"slabs automove invalid",
    b"slabs automove -1",
    b"slabs automove 1x",
    b"slabs automove",
    b"slabs automove ratio 0.8",
    b"slabs automove ratio x",
    b"slabs automove ratio",
    b"slabs automove 1 noreply",
    b"slabs automove 7 noreply",
    b"slabs reassign 1 2",
    b"slabs reassign 1 1",
    b"slabs reassign 0 2",
    b"slabs reassign 2 0",
    b"slabs reassign -1 2",
    b"slabs reassign 2 -1",
    b"slabs reassign 39 1",
    b"slabs reassign 40 1",
    b"slabs reassign 1 40",
    b"slabs reassign x y",
    b"slabs reassign 1x 2",
    b"slabs reassign 1",
    b"slabs reassign 1 2 3",
    b"slabs reassign 1 2 noreply",
    b"slabs",
    b"slabs foo",
    b"SLABS automove 1",
    b"stats sizes",
    b"stats sizes x",
    # memcdump reads `stats cachedump` for classes 0 up until the first CLIENT_ERROR.
    b"stats cachedump",
    b"stats cachedump 1",
    b"stats cachedump x 1",
    b"stats cachedump 1 x",
    b"stats cachedump -1 0",
    b"stats cachedump 1 -1",
    b"stats cachedump 1abc 0",
    b"stats cachedump 64 0",
    b"stats cachedump 200 0",
    b"stats cachedump 4294967297 0",
    b"stats cachedump 0 0",
    b"stats cachedump 63 0",
    b"stats cachedump 1 0",
    b"stats cachedump 1 0 noreply",
    b"stats cachedump 1 5 extra",
    # memcached-tool's dump and keys send `lru_crawler metadump all`.
    b"lru_crawler",
    b"lru_crawler metadump",
    b"lru_crawler metadump 0",
    b"lru_crawler metadump 64",
    b"lru_crawler metadump x",
    b"lru_crawler metadump 1,x",
    b"lru_crawler metadump -1",
    b"lru_crawler metadump ALL",
    b"lru_crawler metadump all noreply",
    b"lru_crawler metadump all extra",
    b"lru_crawler metadump all",
    b"lru_crawler metadump hash",
    b"lru_crawler metadump 1,,2",
    b"lru_crawler metadump 4294967297",
    b"lru_crawler metadump 63",
    b"lru_crawler mgdump all",
    b"lru_crawler crawl",
    b"lru_crawler crawl all",
    b"lru_crawler crawl 1,2,3",
    b"lru_crawler crawl 0",
    b"lru_crawler crawl 64",
    b"lru_crawler crawl x",
    b"lru_crawler crawl hash",
    b"lru_crawler crawl all noreply",
    b"lru_crawler crawl noreply",
    b"lru_crawler sleep",
    b"lru_crawler sleep 100",
    b"lru_crawler sleep 1000000",
    b"lru_crawler sleep 1000001",
    b"lru_crawler sleep x",
    b"lru_crawler sleep -1",
    b"lru_crawler sleep 100 noreply",
    b"lru_crawler tocrawl 0",
    b"lru_crawler tocrawl 4294967296",
    b"lru_crawler tocrawl x",
    b"lru_crawler tocrawl -5",
    b"lru_crawler tocrawl",
    b"lru_crawler enable",
    b"lru_crawler enable x",
    b"lru_crawler foo",
    b"lru_crawler noreply",
    b"lru_crawler disable",
    b"lru_crawler disable",
    b"lru_crawler crawl all",
    b"lru_crawler metadump all",
    b"lru_crawler metadump 64",
    b"lru_crawler sleep 5",
    b"lru_crawler enable",
    b"lru_crawler enable",
    b"lru_crawler metadump all",
    b"LRU_CRAWLER crawl all",
    # Not here: `lru_crawler crawl|metadump ,` (NOTSTARTED), after which memcached 1.6.18
    # answers every metadump with "ERROR an unknown error happened" (engine/dump tests).
]


def text_replies(server) -> list[bytes]:
    """Each command's reply, read up to a `version` sent after it (so that a command that
    answers nothing answers nothing)."""
    replies = []
    with socket.create_connection((HOST, server.port), timeout=5) as s:
        f = s.makefile("rb")
        for cmd in TEXT_COMMANDS:
            reply = b""
            if cmd.startswith(b"lru_crawler metadump"):
                # memcached answers a request pipelined after a metadump only once more input
                # arrives: read the dump (or its error line) before sending the sentinel.
                s.sendall(cmd + b"\r\n")
                while (line := f.readline()).startswith(b"key="):
                    reply += line
                assert line, f"{server.name} closed the connection after {cmd!r}"
                reply += line
                s.sendall(b"version\r\n")
            else:
                s.sendall(cmd + b"\r\nversion\r\n")
            while not (line := f.readline()).startswith(b"VERSION "):
                assert line, f"{server.name} closed the connection after {cmd!r}"
                reply += line
            replies.append(reply)
    return replies


def test_text_replies_are_memcacheds(memcached, cache_node):
    expected, got = text_replies(memcached), text_replies(cache_node)
    diffs = [f"{cmd!r}: memcached {e!r}, cache-node {g!r}"
             for cmd, e, g in zip(TEXT_COMMANDS, expected, got) if e != g]
    assert not diffs, "\n".join(diffs)


def binary_stats(server, group: bytes) -> list[tuple[int, bytes, bytes]]:
    """A binary `stat` request's responses: (status, key, value) up to the empty end packet."""
    with socket.create_connection((HOST, server.port), timeout=5) as s:
        s.sendall(struct.pack(">BBHBBHIIQ", 0x80, 0x10, len(group), 0, 0, 0, len(group), 7, 0) + group)
        f = s.makefile("rb")
        out = []
        for _ in range(100):
            header = f.read(24)
            assert len(header) == 24, f"{server.name}: short response"
            _, _, key_len, extras_len, _, status, body_len, opaque, _ = struct.unpack(">BBHBBHIIQ", header)
            assert opaque == 7
            body = f.read(body_len)
            key, value = body[extras_len:extras_len + key_len], body[extras_len + key_len:]
            out.append((status, key, value))
            if status != 0 or not key:
                return out
        pytest.fail(f"{server.name}: no end packet after 100 responses")


@pytest.mark.parametrize("group", [b"sizes", b"sizes x"])
def test_binary_stats_sizes_is_memcacheds(memcached, cache_node, group):
    assert binary_stats(cache_node, group) == binary_stats(memcached, group)
