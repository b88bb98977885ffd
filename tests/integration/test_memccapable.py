"""libmemcached's memccapable conformance suite against cache-node, text and binary protocols."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest

MEMCCAPABLE = "/usr/bin/memccapable"
RUN_TIMEOUT = 150  # seconds for a whole memccapable run
IO_TIMEOUT = 2  # memccapable's own per-I/O timeout (-t)

# The tests memccapable (libmemcached-tools 1.1) runs in each mode; all must report [pass].
ASCII_TESTS = """version quit verbosity set set_noreply get gets mget flush flush_noreply add
add_noreply replace replace_noreply cas cas_noreply delete delete_noreply incr incr_noreply decr
decr_noreply append append_noreply prepend prepend_noreply stat""".split()
BINARY_TESTS = """noop quit quitq set setq flush flushq add addq replace replaceq delete deleteq
get getq getk getkq incr incrq decr decrq version append appendq prepend prependq stat""".split()

RESULT_LINE = re.compile(r"^(?P<name>(?:ascii|binary) .+?)\s+\[(?P<result>[^\]]+)\]\s*$")


def _memccapable() -> str:
    path = shutil.which("memccapable") or MEMCCAPABLE
    if not shutil.which(path):
        pytest.fail(f"memccapable not found ({MEMCCAPABLE}); apt-get install libmemcached-tools",
                    pytrace=False)
    return path


@pytest.mark.parametrize("mode,flag,expected", [
    ("ascii", "-a", [f"ascii {t.replace('_', ' ')}" for t in ASCII_TESTS]),
    ("binary", "-b", [f"binary {t}" for t in BINARY_TESTS]),
])
def test_memccapable(cache_node, mode, flag, expected):
    argv = [_memccapable(), "-h", cache_node.host, "-p", str(cache_node.port),
            "-t", str(IO_TIMEOUT), flag]
    try:
        run = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True,
                             timeout=RUN_TIMEOUT)
    except subprocess.TimeoutExpired as e:
        out = (e.stdout or b"").decode("utf-8", "replace")
        pytest.fail(f"memccapable {flag} timed out after {RUN_TIMEOUT}s; output so far:\n{out}\n"
                    f"server log tail:\n{cache_node.log_tail()}", pytrace=False)
    out = run.stdout.decode("utf-8", "replace") + run.stderr.decode("utf-8", "replace")
    results = {}
    for line in out.splitlines():
        m = RESULT_LINE.match(line)
        if m:
            results[m["name"]] = m["result"]
    failed = sorted(name for name, res in results.items() if res != "pass")
    missing = [name for name in expected if name not in results]
    assert run.returncode == 0 and not failed and not missing, (
        f"memccapable {flag} ({mode}): exit {run.returncode}; "
        f"failed: {failed or 'none'}; not run (crash/abort?): {missing or 'none'}\n"
        f"--- output ---\n{out}\n--- server alive: {cache_node.alive}; log tail ---\n"
        f"{cache_node.log_tail()}")
