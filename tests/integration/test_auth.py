"""Client authentication (memcached's -S and -Y) through real clients, and side by side with
memcached 1.6.18 given the same users.

* text protocol: memcached's -Y auth file, logged in with pymemcache (a `set` whose data is
  `user password`);
* binary protocol: SASL PLAIN, logged in with python-binary-memcached and with pylibmc
  (libmemcached + Cyrus SASL). memcached takes its SASL users from a Cyrus sasldb made with
  saslpasswd2; cache-node from the same -Y file.

The users' files live in a world-readable directory: both servers run as `nobody` when the
tests run as root, and cache-node re-reads the file as that user.
"""

from __future__ import annotations

import glob
import os
import random
import re
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

import bmemcached
import pytest
from pymemcache.client.base import Client
from pymemcache.exceptions import MemcacheClientError

from conftest import HOST, cache_node_binary, free_port, user_args

# pylibmc's wheel carries its own libsasl2, which initialises when pylibmc is imported and
# looks for its mechanisms where its build put them; the system's plugins (libsasl2-modules)
# are under /usr/lib/<arch>/sasl2.
os.environ.setdefault("SASL_PATH", ":".join(sorted(glob.glob("/usr/lib/*/sasl2"))))
import pylibmc  # noqa: E402

USER, PASSWORD = "alice", "secret1"
RELOAD_INTERVAL = 2.0  # cache-node checks the users file this often
RELOAD_TIMEOUT = 10.0  # seconds for a changed users file to take effect


@pytest.fixture
def users_dir():
    d = Path(tempfile.mkdtemp(prefix="cachepair-auth-"))
    d.chmod(0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


def write_users(path: Path, text: str) -> None:
    """Replaces the file at once, by rename, as a Kubernetes Secret volume update does."""
    tmp = path.with_suffix(".new")
    tmp.write_text(text)
    tmp.chmod(0o644)
    tmp.rename(path)


@pytest.fixture
def users_file(users_dir) -> Path:
    path = users_dir / "users"
    write_users(path, f"{USER}:{PASSWORD}\nbob:pw2\n")
    return path


@pytest.fixture
def sasl_conf(users_dir) -> dict[str, str]:
    """A Cyrus SASL setup for memcached -S with the same users: PLAIN against a sasldb."""
    saslpasswd2 = shutil.which("saslpasswd2") or "/usr/sbin/saslpasswd2"
    db = users_dir / "sasldb2"
    for user, password in [(USER, PASSWORD), ("bob", "pw2")]:
        subprocess.run([saslpasswd2, "-p", "-a", "memcached", "-c", "-f", str(db), user],
                       input=password.encode(), check=True, timeout=10)
    db.chmod(0o644)
    (users_dir / "memcached.conf").write_text(f"mech_list: plain\nsasldb_path: {db}\n")
    return {"SASL_CONF_PATH": str(users_dir)}


def text_client(server) -> Client:
    return Client((server.host, server.port), connect_timeout=5, timeout=5, default_noreply=False)


def exchange(server, *chunks: bytes, wait: float = 0.5) -> list[bytes]:
    """Sends each chunk and collects what comes back within `wait`; b"<EOF>" marks a close.
    cache-node's version string is memcached's with a suffix: the suffix is cut."""
    replies = []
    with server.connect() as s:
        for chunk in chunks:
            s.sendall(chunk)
            s.settimeout(wait)
            got = b""
            try:
                while True:
                    data = s.recv(65536)
                    if not data:
                        got += b"<EOF>"
                        break
                    got += data
            except socket.timeout:
                pass
            replies.append(VERSION_SUFFIX.sub(b"", got))
            if got.endswith(b"<EOF>"):
                break
    return replies


VERSION_SUFFIX = re.compile(rb"(?<=1\.6\.18)-cache-node-[0-9.]+")


def frame(opcode: int, key: bytes = b"", value: bytes = b"", extras: bytes = b"", opaque: int = 0) -> bytes:
    body = len(extras) + len(key) + len(value)
    return struct.pack(">BBHBBHIIQ", 0x80, opcode, len(key), len(extras), 0, 0, body, opaque, 0) \
        + extras + key + value


SET_EXTRAS = struct.pack(">II", 0, 0)
SASL_LIST, SASL_AUTH, SASL_STEP = 0x20, 0x21, 0x22


def stats(server, login: bytes) -> dict[str, str]:
    reply = exchange(server, login + b"stats\r\n")[0].decode()
    return dict(line.split(" ", 2)[1:] for line in reply.splitlines() if line.startswith("STAT "))


TEXT_TOKEN = f"set auth 0 0 {len(USER) + 1 + len(PASSWORD)}\r\n{USER} {PASSWORD}\r\n".encode()

# Conversations of an unauthenticated client with the text protocol: each is a list of chunks.
TEXT_CASES = {
    "commands before login": [b"get k\r\n", b"version\r\n", b"mg k v\r\n", b"quit\r\n"],
    "good login, then commands": [TEXT_TOKEN, b"set k 0 0 1\r\nv\r\nget k\r\n"],
    "wrong password": [b"set a 0 0 11\r\nalice wrong\r\n", b"get k\r\n"],
    "unknown user": [b"set a 0 0 10\r\nmallory pw\r\n", b"get k\r\n"],
    "one word": [b"set a 0 0 5\r\nalice\r\n", b"get k\r\n"],
    "bad termination": [b"set a 0 0 13\r\nalice secret1XX", b"get k\r\n"],
    "too few tokens": [b"set a 0\r\n"],
    "extra words and noreply": [b"set a 0 0 19 noreply\r\nalice secret1 extra\r\n", b"get k\r\n"],
    "token split across reads": [b"set a 0 0 13\r\nalice", b" secret1\r\n", b"get k\r\n"],
    "pipelined": [TEXT_TOKEN + b"get k\r\nversion\r\n"],
    "junk without a line end": [b"x" * 3000],
}


@pytest.mark.parametrize("case", TEXT_CASES)
def test_text_login_answers_as_memcached(server_factory, users_file, case):
    cache_node = server_factory.cache_node("-Y", str(users_file))
    memcached = server_factory.memcached("-Y", str(users_file))
    chunks = TEXT_CASES[case]
    expected = exchange(memcached, *chunks)
    got = exchange(cache_node, *chunks)
    assert got == expected


def test_login_counters_match_memcached(server_factory, users_file):
    cache_node = server_factory.cache_node("-Y", str(users_file))
    memcached = server_factory.memcached("-Y", str(users_file))
    for server in (cache_node, memcached):
        for chunks in TEXT_CASES.values():
            exchange(server, *chunks, wait=0.2)
    want, got = stats(memcached, TEXT_TOKEN), stats(cache_node, TEXT_TOKEN)
    assert (got["auth_cmds"], got["auth_errors"]) == (want["auth_cmds"], want["auth_errors"])
    assert int(got["auth_errors"]) >= 2
    settings = exchange(cache_node, TEXT_TOKEN + b"stats settings\r\n")[0].decode()
    assert f"STAT auth_enabled_ascii {users_file}\r\n" in settings
    assert "STAT auth_enabled_sasl no\r\n" in settings


def test_pymemcache_logs_in_with_the_text_token(server_factory, users_file):
    server = server_factory.cache_node("-Y", str(users_file), "-S")
    client = text_client(server)
    with pytest.raises(MemcacheClientError, match="unauthenticated"):
        client.get("k")
    client.close()
    with pytest.raises(MemcacheClientError, match="authentication failure"):
        client.set("auth", f"{USER} wrong")
    client.close()
    assert client.set("auth", f"{USER} {PASSWORD}") is True
    assert client.set("k", "v") is True
    assert client.get("k") == b"v"
    assert client.incr("n", 1) is None and client.add("n", "5") and client.incr("n", 2) == 7
    client.close()


def binary_cases():
    return {
        "command before login": [frame(0x00, b"k", opaque=7) + frame(0x0A)],
        "noop before login": [frame(0x0A)],
        "stat before login": [frame(0x10)],
        "quiet get before login": [frame(0x09, b"k") + frame(0x0A)],
        "list mechanisms": [frame(SASL_LIST)],
        "wrong password": [frame(SASL_AUTH, b"PLAIN", b"\0alice\0nope"), frame(0x00, b"k")],
        "good login": [frame(SASL_AUTH, b"PLAIN", b"\0alice\0secret1")
                       + frame(0x01, b"k", b"v", SET_EXTRAS) + frame(0x00, b"k")],
        "authzid of the user": [frame(SASL_AUTH, b"PLAIN", b"alice\0alice\0secret1")],
        "other mechanism": [frame(SASL_AUTH, b"CRAM-MD5", b"x")],
        "step": [frame(SASL_STEP, b"PLAIN", b"\0alice\0secret1")],
    }


@pytest.mark.parametrize("case", binary_cases())
def test_sasl_answers_as_memcached(server_factory, users_file, sasl_conf, case):
    cache_node = server_factory.cache_node("-Y", str(users_file), "-S")
    memcached = server_factory.memcached("-S", env=sasl_conf)
    chunks = binary_cases()[case]
    assert exchange(cache_node, *chunks) == exchange(memcached, *chunks)


def test_version_is_served_before_login(server_factory, users_file):
    server = server_factory.cache_node("-Y", str(users_file), "-S")
    reply = exchange(server, frame(0x0B, opaque=3))[0]
    opcode, status, body, opaque = struct.unpack(">xBxxxxHII", reply[:16])
    assert (opcode, status, opaque, reply[24:24 + body]) == (0x0B, 0, 3, b"1.6.18")


def test_bmemcached_logs_in_with_sasl(server_factory, users_file, sasl_conf):
    cache_node = server_factory.cache_node("-Y", str(users_file), "-S")
    memcached = server_factory.memcached("-S", env=sasl_conf)
    for server in (cache_node, memcached):
        address = f"{server.host}:{server.port}"
        client = bmemcached.Client([address], USER, PASSWORD)
        assert client.set("k", "v") is True
        assert client.get("k") == "v"
        client.disconnect_all()
        bad = bmemcached.Client([address], USER, "wrong")
        with pytest.raises(bmemcached.exceptions.MemcachedException, match="Auth failure"):
            bad.set("k", "w")
        bad.disconnect_all()
        unauthenticated = bmemcached.Client([address])
        with pytest.raises(bmemcached.exceptions.MemcachedException, match="Auth failure"):
            unauthenticated.get("k")
        unauthenticated.disconnect_all()
    assert stats(cache_node, TEXT_TOKEN)["auth_errors"] == "1"


def test_pylibmc_logs_in_with_sasl(server_factory, users_file):
    server = server_factory.cache_node("-Y", str(users_file), "-S")
    address = f"{server.host}:{server.port}"
    client = pylibmc.Client([address], binary=True, username=USER, password=PASSWORD)
    assert client.set("k", "v") is True
    assert client.get("k") == "v"
    assert client.set("n", "1") and client.incr("n", 2) == 3
    client.disconnect_all()
    bad = pylibmc.Client([address], binary=True, username=USER, password="wrong")
    with pytest.raises(pylibmc.Error):
        bad.set("k", "w")
    assert stats(server, TEXT_TOKEN)["auth_errors"] != "0"


def test_logins_are_counted_in_metrics(server_factory, users_file):
    admin_port = free_port()
    server = server_factory.cache_node("-Y", str(users_file), "--admin-listen", f"{HOST}:{admin_port}")
    exchange(server, b"set a 0 0 11\r\nalice wrong\r\n", TEXT_TOKEN)
    with urllib.request.urlopen(f"http://{HOST}:{admin_port}/metrics", timeout=5) as r:
        metrics = r.read().decode()
    assert "cachepair_auth_commands_total 2\n" in metrics
    assert "cachepair_auth_errors_total 1\n" in metrics


def login(server, user: str, password: str) -> bytes:
    token = f"{user} {password}".encode()
    return exchange(server, b"set auth 0 0 %d\r\n%s\r\n" % (len(token), token), wait=0.3)[0]


def wait_for_login(server, user: str, password: str, want: bytes) -> None:
    deadline = time.monotonic() + RELOAD_TIMEOUT
    while (got := login(server, user, password)) != want:
        assert time.monotonic() < deadline, f"{user} still gets {got!r} after {RELOAD_TIMEOUT}s"
        time.sleep(0.2)


def test_a_changed_users_file_takes_effect_without_a_restart(server_factory, users_file):
    server = server_factory.cache_node("-Y", str(users_file), "-S")
    pid = server.proc.pid
    # A client logged in before the change stays logged in.
    before = text_client(server)
    assert before.set("auth", f"{USER} {PASSWORD}")
    write_users(users_file, f"{USER}:rotated\n")
    wait_for_login(server, USER, "rotated", b"STORED\r\n")
    assert login(server, USER, PASSWORD) == b"CLIENT_ERROR authentication failure\r\n"
    assert login(server, "bob", "pw2") == b"CLIENT_ERROR authentication failure\r\n"
    assert before.set("k", "v") is True
    before.close()
    # A broken file is refused: the users loaded before stay, and the node says why.
    write_users(users_file, "no colon here\n")
    deadline = time.monotonic() + RELOAD_TIMEOUT
    while "line 1: expected user:password" not in server.log_tail(200):
        assert time.monotonic() < deadline, f"the broken file was not refused in {RELOAD_TIMEOUT}s"
        time.sleep(0.2)
    assert login(server, USER, "rotated") == b"STORED\r\n"
    # Said once, not at every check of the file.
    time.sleep(2 * RELOAD_INTERVAL)
    assert server.log_tail(400).count("line 1: expected user:password") == 1
    assert server.alive and server.proc.pid == pid


def test_sighup_reloads_the_users(server_factory, users_dir):
    # A SIGHUP reloads the file, and leaves the node running (SIGHUP's default action would
    # end it). The 2 s watch would see the change too; this checks the signal's path.
    path = users_dir / "users"
    path.write_text(f"{USER}:one\n")
    path.chmod(0o644)
    server = server_factory.cache_node("-Y", str(path))
    path.write_text(f"{USER}:two\n")
    os.kill(server.proc.pid, signal.SIGHUP)
    wait_for_login(server, USER, "two", b"STORED\r\n")
    assert server.alive


def test_start_up_refuses_what_cannot_work(users_file, users_dir, tmp_path):
    def start(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
        argv = [str(cache_node_binary()), "-p", str(free_port()), "-l", HOST, *args, *user_args()]
        environ = {k: v for k, v in os.environ.items() if k != "MEMCACHED_SASL_PWDB"} | (env or {})
        return subprocess.run(argv, capture_output=True, timeout=10, env=environ, text=True)

    r = start("-S")
    assert r.returncode == 64 and "-S needs its users in a file" in r.stderr, r.stderr
    r = start("-Y", str(users_file), "-U", "11999")
    assert r.returncode == 64 and "-U cannot be used with -S or -Y" in r.stderr, r.stderr
    bad = users_dir / "bad"
    write_users(bad, "alice:ok\nbob\n")
    r = start("-Y", str(bad))
    assert r.returncode == 64 and f"auth file {bad}: line 2: expected user:password" in r.stderr, r.stderr
    r = start("-Y", str(users_dir / "missing"))
    assert r.returncode == 64 and "cannot read the auth file" in r.stderr, r.stderr


def test_memcached_sasl_pwdb_variable_names_the_users(server_factory, users_file):
    server = server_factory.cache_node("-S", env={"MEMCACHED_SASL_PWDB": str(users_file)})
    client = bmemcached.Client([f"{server.host}:{server.port}"], USER, PASSWORD)
    assert client.set("k", "v") is True
    client.disconnect_all()
    # Without -Y the text protocol cannot log in.
    assert exchange(server, TEXT_TOKEN) == [b"CLIENT_ERROR unauthenticated\r\n"]


def test_unauthenticated_garbage_leaves_logged_in_clients_alone(server_factory, users_file):
    server = server_factory.cache_node("-Y", str(users_file), "-S")
    client = text_client(server)
    assert client.set("auth", f"{USER} {PASSWORD}") and client.set("k", "v")
    rng = random.Random(7)
    for _ in range(50):
        junk = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 4096)))
        exchange(server, junk, wait=0.05)
    assert client.get("k") == b"v"
    assert server.alive
    client.close()
