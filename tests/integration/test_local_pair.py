"""scripts/local-pair.sh, the README's first command: it starts a pair that really formed, says
so with the nodes' PIDs and command lines, stops both nodes when stopped, and refuses clearly
when one of its ports is taken."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from conftest import HOST, REPO

SCRIPT = REPO / "scripts" / "local-pair.sh"
BUILD_AND_FORM_TIMEOUT = 600.0  # seconds: the script builds cache-node in release mode first


def free_base() -> int:
    """A port P with P..P+3 free on 127.0.0.1, below the kernel's ephemeral range."""
    for base in range(21000, 30000, 7):
        socks = []
        try:
            for port in range(base, base + 4):
                s = socket.socket()
                s.bind((HOST, port))
                socks.append(s)
            return base
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    pytest.fail("no four free ports in a row")


def request(port: int, text: str) -> str:
    with socket.create_connection((HOST, port), timeout=5) as s:
        s.sendall(text.encode())
        reply = b""
        while not reply.endswith((b"END\r\n", b"STORED\r\n")):
            chunk = s.recv(4096)
            if not chunk:
                break
            reply += chunk
        return reply.decode()


def listening(port: int) -> bool:
    try:
        socket.create_connection((HOST, port), timeout=0.5).close()
        return True
    except OSError:
        return False


def start(tmp_path: Path, base: int) -> subprocess.Popen:
    env = {**os.environ, "BASE_PORT": str(base), "PAIR_DIR": str(tmp_path)}
    return subprocess.Popen([str(SCRIPT)], cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)


def read_until(proc: subprocess.Popen, marker: str, timeout: float) -> str:
    out, deadline = "", time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        out += line
        if marker in line:
            return out
    pytest.fail(f"no {marker!r} from local-pair.sh; its output:\n{out}", pytrace=False)


def stop(proc: subprocess.Popen) -> str:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        rest, _ = proc.communicate(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        rest, _ = proc.communicate(timeout=5)
    return rest


def test_the_pair_forms_replicates_and_stops_with_the_script(tmp_path):
    base = free_base()
    proc = start(tmp_path, base)
    try:
        out = read_until(proc, "Logs:", BUILD_AND_FORM_TIMEOUT)
        assert "A replicated pair is running" in out, out
        pids = [int(p) for p in re.findall(r"pid (\d+)", out)]
        assert len(pids) == 2, out
        assert f"-p {base} -X {base + 1} -x 127.0.0.1:{base + 3}" in out, "node A's command line"
        assert f"-p {base + 2} -X {base + 3} -x 127.0.0.1:{base + 1}" in out, "node B's command line"
        # The seed's check: set on one node, get on the other.
        assert request(base, "set key 0 0 5\r\nhello\r\n") == "STORED\r\n"
        deadline = time.monotonic() + 5
        while request(base + 2, "get key\r\n") != "VALUE key 0 5\r\nhello\r\nEND\r\n":
            assert time.monotonic() < deadline, "the write did not reach node B"
            time.sleep(0.05)
    finally:
        rest = stop(proc)
    assert "pair stopped" in rest, rest
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    assert not listening(base) and not listening(base + 2)


def test_a_taken_port_is_named_and_nothing_starts(tmp_path):
    base = free_base()
    with socket.socket() as taken:
        taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        taken.bind((HOST, base + 1))
        taken.listen()
        proc = start(tmp_path, base)
        try:
            proc.wait(timeout=30)
        finally:
            out = stop(proc)
    assert proc.returncode == 1, out
    assert f"127.0.0.1:{base + 1} is taken" in out, out
    assert "BASE_PORT=" in out, out
    assert not listening(base), "node A started anyway"
