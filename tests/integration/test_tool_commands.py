"""Commands that tools and client libraries send besides reads and writes (`slabs`, `stats
sizes`), sent to memcached 1.6.18 and to cache-node: the replies must be the same bytes.

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
]


def text_replies(server) -> list[bytes]:
    """Each command's reply, read up to a `version` sent after it (so that a command that
    answers nothing answers nothing)."""
    replies = []
    with socket.create_connection((HOST, server.port), timeout=5) as s:
        f = s.makefile("rb")
        for cmd in TEXT_COMMANDS:
            s.sendall(cmd + b"\r\nversion\r\n")
            reply = b""
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
