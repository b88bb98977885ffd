"""Differential test: one seeded command stream to memcached 1.6.18 and to cache-node.

Every reply is compared (see mcdiff.py: reply parsing, the CAS mapping and the ALLOWLIST of
known intentional differences). A failure prints the seed, the command, both replies and the
commands before it. Reproduce one seed with e.g.
    DIFF_SEEDS=3 pytest tests/integration/test_differential.py -k sequential
Environment: DIFF_SEEDS (comma-separated, replaces the default seeds), DIFF_COMMANDS (commands
per seed, scales every mode).
"""

from __future__ import annotations

import os

import pytest

import mcdiff

SCALE = float(os.environ.get("DIFF_COMMANDS", "0")) / 3000 if os.environ.get("DIFF_COMMANDS") \
    else 1.0


def seeds(default):
    env = os.environ.get("DIFF_SEEDS")
    return [int(s) for s in env.split(",")] if env else default


def run(memcached, cache_node, seed, n, mode, **kw):
    n = max(1, int(n * SCALE))
    try:
        result = mcdiff.run_stream(memcached, cache_node, seed, n, mode, **kw)
    except mcdiff.ServerGone as e:
        pytest.fail(f"{e} (seed {seed}, mode {mode}); cache-node running: {cache_node.alive}; "
                    f"log tail:\n{cache_node.log_tail()}", pytrace=False)
    problems = []
    if result.text_only:
        problems.append(result.text_only)
    if result.mismatches:
        problems.append(
            f"{len(result.mismatches)} mismatch(es) (the first ones; both caches are reset "
            f"after each) - seed {seed}, mode {mode}:\n\n"
            + "\n\n".join(m.format("memcached", "cache-node") for m in result.mismatches))
    if not cache_node.alive:
        problems.append(f"cache-node is no longer running; log tail:\n{cache_node.log_tail()}")
    if problems:
        pytest.fail("\n\n".join(problems), pytrace=False)
    # the whole stream was compared
    assert sum(v for k, v in result.kinds.items() if k != mcdiff.KNOWN_COUNTER_BUG) >= n, \
        result.kinds


@pytest.mark.parametrize("seed", seeds([1, 2, 3, 4]))
def test_sequential(memcached, cache_node, seed):
    run(memcached, cache_node, seed, 3000, "sequential")


@pytest.mark.parametrize("seed", seeds([101, 102]))
def test_pipelined(memcached, cache_node, seed):
    run(memcached, cache_node, seed, 3000, "pipelined", batch=50)


@pytest.mark.parametrize("seed", seeds([201, 202]))
def test_split_writes(memcached, cache_node, seed):
    run(memcached, cache_node, seed, 400, "split")
