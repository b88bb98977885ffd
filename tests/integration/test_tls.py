"""TLS on the client port (`-Z`), against memcached 1.6.18 -Z with the same command lines.

Certificates are made per module with the `openssl` command in a temporary directory: a CA, a
server certificate for 127.0.0.1 (an IP SAN), a client certificate, and further server
certificates (other serial and CN) for the reload tests. Servers run as `-u nobody` when the
tests run as root, and reread the files as that user, so the directory is world-readable.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import ssl
import struct
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest
from pymemcache.client.base import Client

from conftest import HOST, cache_node_binary, free_port, user_args
from test_tools import GENERAL_OMITTED, SETTINGS_OMITTED, names, stats as plain_stats

OPENSSL_TIMEOUT = 30  # seconds for one openssl command
IO_TIMEOUT = 5.0  # seconds for any one socket operation
HANDSHAKE_TIMEOUT = 10.0  # cache-node's server::tls::HANDSHAKE_TIMEOUT
POLL_INTERVAL = 5.0  # cache-node's server::tls::POLL_INTERVAL
START_TIMEOUT = 15.0


# -- certificates ------------------------------------------------------------------------------

class Pki:
    """A CA and the certificates it signs, in a directory the -u user can read."""

    def __init__(self, root: Path):
        self.root = root
        self.serial = 100
        self.ca_key, self.ca = root / "ca.key", root / "ca.crt"
        self._openssl("req", "-x509", *self._new_key(self.ca_key), "-out", str(self.ca),
                      "-days", "2", "-subj", "/CN=cachepair-test-ca")
        self.server_cert, self.server_key = self.issue("server-1", "server")
        self.client_cert, self.client_key = self.issue("client-1", "client")
        # A client certificate from a CA the servers do not trust.
        self.stranger_cert, self.stranger_key = root / "stranger.crt", root / "stranger.key"
        self._openssl("req", "-x509", *self._new_key(self.stranger_key), "-out", str(self.stranger_cert),
                      "-days", "2", "-subj", "/CN=stranger", "-addext", "extendedKeyUsage=clientAuth",
                      "-addext", "basicConstraints=critical,CA:FALSE")

    @staticmethod
    def _new_key(path: Path) -> list[str]:
        return ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                "-keyout", str(path)]

    def _openssl(self, *args: str) -> None:
        done = subprocess.run(["openssl", *args], capture_output=True, text=True,
                              timeout=OPENSSL_TIMEOUT, cwd=self.root)
        assert done.returncode == 0, f"openssl {' '.join(args)}: {done.stderr}"

    def issue(self, cn: str, usage: str = "server") -> tuple[Path, Path]:
        """A new certificate and key signed by the CA, with a serial of its own."""
        self.serial += 1
        cert, key, csr = (self.root / f"{cn}-{self.serial}.{ext}" for ext in ("crt", "key", "csr"))
        ext = self.root / f"{cn}-{self.serial}.ext"
        ext.write_text("subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n" if usage == "server"
                       else "extendedKeyUsage=clientAuth\n")
        self._openssl("req", *self._new_key(key), "-out", str(csr), "-subj", f"/CN={cn}")
        self._openssl("x509", "-req", "-in", str(csr), "-CA", str(self.ca), "-CAkey", str(self.ca_key),
                      "-set_serial", str(self.serial), "-days", "2", "-extfile", str(ext), "-out", str(cert))
        for path in (cert, key):
            path.chmod(0o644)
        return cert, key


@pytest.fixture(scope="module")
def pki():
    # Not pytest's tmp_path: that is private to root, and the servers reread the files as -u.
    root = Path(tempfile.mkdtemp(prefix="cache-node-tls-"))
    root.chmod(0o755)
    try:
        yield Pki(root)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def serving_files(pki: Pki, name: str) -> tuple[Path, Path]:
    """A copy of the server certificate and key that a test may replace."""
    d = pki.root / name
    d.mkdir(mode=0o755)
    cert, key = d / "cert.pem", d / "key.pem"
    replace(pki.server_cert, pki.server_key, cert, key)
    return cert, key


def replace(new_cert: Path, new_key: Path, cert: Path, key: Path) -> None:
    """Replaces each file by an atomic rename, as a careful writer does."""
    for src, dst in ((new_key, key), (new_cert, cert)):
        tmp = dst.with_suffix(".tmp")
        shutil.copyfile(src, tmp)
        tmp.chmod(0o644)
        os.replace(tmp, dst)


def tls_args(cert: Path, key: Path, *extra: str) -> list[str]:
    return ["-Z", "-o", ",".join([f"ssl_chain_cert={cert}", f"ssl_key={key}", *extra])]


# -- clients ----------------------------------------------------------------------------------

def client_context(pki: Pki, with_cert: bool = False) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(pki.ca))
    if with_cert:
        ctx.load_cert_chain(str(pki.client_cert), str(pki.client_key))
    return ctx


def tls_connect(server, ctx: ssl.SSLContext) -> ssl.SSLSocket:
    raw = socket.create_connection((HOST, server.port), timeout=IO_TIMEOUT)
    raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        return ctx.wrap_socket(raw, server_hostname=HOST)
    except BaseException:
        raw.close()
        raise


def request(sock: socket.socket, data: bytes, end: bytes) -> bytes:
    """Sends `data` and reads until the reply ends with `end` (bounded by the socket timeout)."""
    sock.sendall(data)
    buf = b""
    while not buf.endswith(end):
        chunk = sock.recv(1 << 20)
        if not chunk:
            raise ConnectionError(f"closed after {buf!r}")
        buf += chunk
    return buf


def served_cn(server, pki: Pki) -> str:
    """The CN of the certificate a new connection is served."""
    with tls_connect(server, client_context(pki)) as s:
        subject = dict(item[0] for item in s.getpeercert()["subject"])
        assert request(s, b"version\r\n", b"\r\n").startswith(b"VERSION ")
        return subject["commonName"]


def tls_stats(server, pki: Pki, group: str = "") -> dict[str, str]:
    with tls_connect(server, client_context(pki, with_cert=True)) as s:
        reply = request(s, f"stats {group}".strip().encode() + b"\r\n", b"END\r\n").decode()
    return dict(line.split(" ", 2)[1:] for line in reply.split("\r\n") if line.startswith("STAT "))


def tls_stat_names(server, pki: Pki, group: str = "") -> list[str]:
    with tls_connect(server, client_context(pki, with_cert=True)) as s:
        reply = request(s, f"stats {group}".strip().encode() + b"\r\n", b"END\r\n").decode()
    return [line.split(" ")[1] for line in reply.split("\r\n") if line.startswith("STAT ")]


def wait_until(predicate, timeout: float, step: float = 0.1):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(step)


def drain(sock: socket.socket, timeout: float) -> tuple[bytes, bool]:
    """What the server sends on `sock` within `timeout`, and whether it then closed it."""
    sock.settimeout(timeout)
    deadline = time.monotonic() + timeout
    got = b""
    try:
        while time.monotonic() < deadline:
            chunk = sock.recv(4096)
            if not chunk:
                return got, True
            got += chunk
    except (ConnectionResetError, BrokenPipeError):
        return got, True
    except (socket.timeout, TimeoutError):
        pass
    return got, False


def closed_by_server(sock: socket.socket, timeout: float) -> bool:
    return drain(sock, timeout)[1]


def handshake_errors(server, pki: Pki) -> int:
    """ssl_handshake_errors once it holds still (the start-up probe's plain connection counts
    too, a moment after it closed)."""
    last = None
    for _ in range(int(IO_TIMEOUT / 0.2)):
        now = int(tls_stats(server, pki)["ssl_handshake_errors"])
        if now == last:
            return now
        last = now
        time.sleep(0.2)
    raise AssertionError(f"ssl_handshake_errors of {server} keeps moving")


def both(server_factory, *args: str, **options):
    return (server_factory.cache_node(*args, **options), server_factory.memcached(*args, **options))


# -- serving ----------------------------------------------------------------------------------

def pymemcache_session(server, pki: Pki) -> list:
    client = Client((server.host, server.port), connect_timeout=IO_TIMEOUT, timeout=IO_TIMEOUT,
                    default_noreply=False, no_delay=True, tls_context=client_context(pki))
    try:
        big = bytes(range(256)) * 3500  # ~900 KB: many TLS records, vectored writes
        return [
            client.set("a", b"hello", flags=3),
            client.get("a"),
            client.raw_command("get a", b"END\r\n"),
            client.set("big", big),
            client.get("big") == big,
            client.get_many(["a", "big", "missing"]) == {"a": b"hello", "big": big},
            client.incr("n", 1),
            client.add("n", b"5"),
            client.incr("n", 2),
            client.delete("a"),
            client.get("a"),
            client.version().split(b"-")[0],
        ]
    finally:
        client.close()


def test_pymemcache_over_tls_as_memcached(server_factory, pki):
    cache_node, memcached = both(server_factory, *tls_args(pki.server_cert, pki.server_key))
    got = pymemcache_session(cache_node, pki)
    assert got == pymemcache_session(memcached, pki)
    assert got[:2] == [True, b"hello"] and got[4:6] == [True, True]


def binary_frame(opcode: int, key: bytes, value: bytes = b"", extras: bytes = b"") -> bytes:
    body = extras + key + value
    return struct.pack(">BBHBBHIIQ", 0x80, opcode, len(key), len(extras), 0, 0, len(body), 0, 0) + body


def binary_reply(sock: ssl.SSLSocket) -> tuple[int, int, bytes]:
    """(opcode, status, value) of one binary response."""
    buf = b""
    while len(buf) < 24:
        buf += sock.recv(24 - len(buf))
    _, opcode, keylen, extlen, _, status, total, _, _ = struct.unpack(">BBHBBHIIQ", buf)
    body = b""
    while len(body) < total:
        chunk = sock.recv(total - len(body))
        assert chunk, "closed mid-response"
        body += chunk
    return opcode, status, body[extlen + keylen:]


def test_binary_protocol_over_tls(server_factory, pki):
    value = b"v" * 70000
    replies = []
    for server in both(server_factory, *tls_args(pki.server_cert, pki.server_key)):
        with tls_connect(server, client_context(pki)) as s:
            s.sendall(binary_frame(0x01, b"bk", value, struct.pack(">II", 7, 0)))  # SET
            s.sendall(binary_frame(0x00, b"bk"))  # GET
            s.sendall(binary_frame(0x00, b"nope"))  # GET, a miss
            replies.append([binary_reply(s) for _ in range(3)])
    cache_node, memcached = replies
    assert cache_node == memcached
    assert cache_node[0][:2] == (0x01, 0) and cache_node[1] == (0x00, 0, value)
    assert cache_node[2][:2] == (0x00, 1)


def refused(server, ctx: ssl.SSLContext) -> bool:
    """Whether the server refuses this client: the handshake, or (TLS 1.3, where the server
    checks the client's certificate after the client finished) the first request fails."""
    try:
        with tls_connect(server, ctx) as s:
            return not request(s, b"version\r\n", b"\r\n").startswith(b"VERSION ")
    except (ssl.SSLError, ConnectionError, OSError):
        return True


@pytest.mark.parametrize("mode", ["1", "2", "3"])
def test_client_certificates_per_verify_mode(server_factory, pki, mode):
    args = tls_args(pki.server_cert, pki.server_key, f"ssl_ca_cert={pki.ca}", f"ssl_verify_mode={mode}")
    for server in both(server_factory, *args):
        assert not refused(server, client_context(pki, with_cert=True)), server
        # 1 asks for a certificate and serves a client without one; 2 and 3 refuse it.
        assert refused(server, client_context(pki)) == (mode != "1"), server
        # A certificate from another CA is refused in every mode.
        stranger = ssl.create_default_context(cafile=str(pki.ca))
        stranger.load_cert_chain(str(pki.stranger_cert), str(pki.stranger_key))
        assert refused(server, stranger), server


def metric(admin_port: int, name: str) -> float:
    with urllib.request.urlopen(f"http://{HOST}:{admin_port}/metrics", timeout=IO_TIMEOUT) as r:
        body = r.read().decode()
    for line in body.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} not in /metrics:\n{body}")


def test_plaintext_client_gets_nothing_and_is_counted(server_factory, pki):
    admin = free_port()
    cache_node = server_factory.cache_node(*tls_args(pki.server_cert, pki.server_key),
                                           "--admin-listen", f"{HOST}:{admin}")
    memcached = server_factory.memcached(*tls_args(pki.server_cert, pki.server_key))
    for server in (cache_node, memcached):
        before = handshake_errors(server, pki)
        with server.connect() as plain:
            plain.sendall(b"set k 0 0 1\r\nx\r\nversion\r\n")
            got, closed = drain(plain, IO_TIMEOUT)
        assert closed and b"VERSION" not in got and b"STORED" not in got, (server, got)
        with tls_connect(server, client_context(pki)) as s:
            assert request(s, b"get k\r\n", b"END\r\n") == b"END\r\n", "the plaintext set was not served"
        # memcached counts only the handshakes its listener thread sees fail (a client whose
        # bytes arrive a moment late is not counted): cache-node counts every one.
        if server is cache_node:
            assert wait_until(lambda: handshake_errors(server, pki) == before + 1, IO_TIMEOUT)
    errors = int(tls_stats(cache_node, pki)["ssl_handshake_errors"])
    assert metric(admin, "cachepair_tls_handshake_errors_total") == errors


def test_garbage_and_a_stalled_handshake_disturb_no_one(server_factory, pki):
    cache_node = server_factory.cache_node(*tls_args(pki.server_cert, pki.server_key))
    before = handshake_errors(cache_node, pki)
    # Half a ClientHello: a record header announcing 512 bytes, then only the start of them.
    stalled = cache_node.connect()
    stalled.sendall(b"\x16\x03\x01\x02\x00" + b"\x01\x00\x01\xfc\x03\x03" + os.urandom(40))
    garbage = cache_node.connect()
    garbage.sendall(os.urandom(3000))
    assert closed_by_server(garbage, IO_TIMEOUT), "garbage is dropped at once"
    started = time.monotonic()
    with tls_connect(cache_node, client_context(pki)) as s:
        # Other clients are served, promptly, while the stalled handshake is held.
        while time.monotonic() - started < HANDSHAKE_TIMEOUT - 2:
            t0 = time.monotonic()
            assert request(s, b"set p 0 0 2\r\nok\r\nget p\r\n", b"END\r\n") == \
                b"STORED\r\nVALUE p 0 2\r\nok\r\nEND\r\n"
            assert time.monotonic() - t0 < 1.0
            time.sleep(0.2)
    assert closed_by_server(stalled, HANDSHAKE_TIMEOUT + 3), "the stalled handshake times out"
    assert time.monotonic() - started >= HANDSHAKE_TIMEOUT - 2.5
    stalled.close()
    garbage.close()
    assert int(tls_stats(cache_node, pki)["ssl_handshake_errors"]) == before + 2
    assert cache_node.alive


# -- statistics -------------------------------------------------------------------------------

# With -Z, the TLS settings are reported; ssl_wbuf_size is OpenSSL's buffer, which rustls has not.
TLS_SETTINGS_OMITTED = {name: why for name, why in SETTINGS_OMITTED.items() if not name.startswith("ssl_")}
TLS_SETTINGS_OMITTED["ssl_wbuf_size"] = "OpenSSL's write buffer: rustls has no such setting"


def test_stats_and_settings_are_memcacheds(server_factory, pki):
    args = tls_args(pki.server_cert, pki.server_key, f"ssl_ca_cert={pki.ca}", "ssl_verify_mode=2",
                    "ssl_min_version=3")
    cache_node, memcached = both(server_factory, *args)
    want = tls_stat_names(memcached, pki)
    assert {"ssl_handshake_errors", "time_since_server_cert_refresh"} <= set(want)
    assert tls_stat_names(cache_node, pki) == [n for n in want if n not in GENERAL_OMITTED]
    want = tls_stat_names(memcached, pki, "settings")
    assert tls_stat_names(cache_node, pki, "settings") == [n for n in want if n not in TLS_SETTINGS_OMITTED]
    ours, theirs = tls_stats(cache_node, pki, "settings"), tls_stats(memcached, pki, "settings")
    same = [n for n in ours if n.startswith("ssl_")]
    assert {n: ours[n] for n in same} == {n: theirs[n] for n in same}
    assert ours["ssl_verify_mode"] == "3" and ours["ssl_min_version"] == "tlsv1.3"


def test_refresh_certs_without_tls(server_factory):
    for server in both(server_factory):
        with server.connect() as s:
            assert request(s, b"refresh_certs\r\n", b"\r\n") == b"Error TLS not enabled\r\n"
            assert request(s, b"refresh_certs noreply\r\n", b"\r\n") == b"Error TLS not enabled\r\n"
        assert dict(plain_stats(server, "settings"))["ssl_enabled"] == "no"
        assert "ssl_handshake_errors" not in names(plain_stats(server))


# -- certificate reload -----------------------------------------------------------------------

def test_refresh_certs_serves_the_new_certificate(server_factory, pki):
    new_cert, new_key = pki.issue("server-2")
    for name in ("cache-node", "memcached"):
        cert, key = serving_files(pki, f"refresh-{name}")
        server = getattr(server_factory, name.replace("-", "_"))(*tls_args(cert, key))
        assert served_cn(server, pki) == "server-1"
        with tls_connect(server, client_context(pki)) as old:
            replace(new_cert, new_key, cert, key)
            assert request(old, b"refresh_certs\r\n", b"\r\n") == b"OK\r\n"
            # noreply silences the OK only.
            assert request(old, b"refresh_certs noreply\r\nversion\r\n", b"\r\n").startswith(b"VERSION ")
            assert served_cn(server, pki) == "server-2", name
            # The connection made with the old certificate goes on.
            assert request(old, b"version\r\n", b"\r\n").startswith(b"VERSION ")


def test_sighup_reloads(server_factory, pki):
    cert, key = serving_files(pki, "sighup")
    cache_node = server_factory.cache_node(*tls_args(cert, key))
    assert served_cn(cache_node, pki) == "server-1"
    replace(*pki.issue("server-3"), cert, key)
    os.kill(cache_node.proc.pid, signal.SIGHUP)
    assert wait_until(lambda: served_cn(cache_node, pki) == "server-3", IO_TIMEOUT)
    assert cache_node.alive
    assert int(tls_stats(cache_node, pki)["time_since_server_cert_refresh"]) <= 2


def test_files_swapped_like_a_secret_volume_are_picked_up(server_factory, pki):
    """Kubernetes updates a Secret volume by writing a new directory and renaming a `..data`
    symlink over the old one; `tls.crt` and `tls.key` are symlinks through `..data`."""
    volume = pki.root / "secret-volume"
    volume.mkdir(mode=0o755)

    def publish(version: str, cert: Path, key: Path) -> None:
        d = volume / f"..{version}"
        d.mkdir(mode=0o755)
        shutil.copyfile(cert, d / "tls.crt")
        shutil.copyfile(key, d / "tls.key")
        for f in d.iterdir():
            f.chmod(0o644)
        (volume / "..data_tmp").symlink_to(d.name)
        os.replace(volume / "..data_tmp", volume / "..data")

    publish("v1", pki.server_cert, pki.server_key)
    for name in ("tls.crt", "tls.key"):
        (volume / name).symlink_to(f"..data/{name}")
    cache_node = server_factory.cache_node(*tls_args(volume / "tls.crt", volume / "tls.key"))
    assert served_cn(cache_node, pki) == "server-1"
    publish("v2", *pki.issue("server-4"))
    assert wait_until(lambda: served_cn(cache_node, pki) == "server-4", 3 * POLL_INTERVAL, step=0.5)


def test_a_bad_new_certificate_keeps_the_old_one(server_factory, pki):
    cert, key = serving_files(pki, "bad")
    cache_node = server_factory.cache_node(*tls_args(cert, key))
    _, other_key = pki.issue("server-5")
    with tls_connect(cache_node, client_context(pki)) as s:
        cert.write_bytes(b"-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n")
        reply = request(s, b"refresh_certs noreply\r\n", b"\r\n").decode()
        assert reply.startswith(f"Error loading the certificate chain: {cert} : ") and reply.endswith("\r\n")
        assert served_cn(cache_node, pki) == "server-1"
        # A key that is not the certificate's: named as OpenSSL (and memcached) name it.
        replace(pki.server_cert, other_key, cert, key)
        reply = request(s, b"refresh_certs\r\n", b"\r\n").decode()
        assert reply.startswith(f"Error loading the key: {key} : key values mismatch")
        assert served_cn(cache_node, pki) == "server-1"
        # SIGHUP and the poll keep it too.
        os.kill(cache_node.proc.pid, signal.SIGHUP)
        time.sleep(POLL_INTERVAL + 1)
        assert served_cn(cache_node, pki) == "server-1"
        assert b"TLS certificate not reloaded" in cache_node.log_path.read_bytes()
    assert cache_node.alive


# -- start-up errors --------------------------------------------------------------------------

def start_error(*args: str) -> tuple[int, str]:
    argv = [str(cache_node_binary()), "-p", str(free_port()), "-l", HOST, *args, *user_args()]
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=START_TIMEOUT)
    except subprocess.TimeoutExpired:
        pytest.fail(f"{argv} started instead of refusing")
    return done.returncode, done.stderr


def test_bad_options_and_files_stop_the_start(pki):
    cert, key = str(pki.server_cert), str(pki.server_key)
    code, err = start_error("-Z")
    assert code == 64 and "ssl_chain_cert" in err, err
    code, err = start_error("-Z", "-o", f"ssl_chain_cert={cert}")
    assert code == 64 and "ssl_key" in err, err
    code, err = start_error("-Z", "-o", f"ssl_chain_cert={pki.root}/missing.pem,ssl_key={key}")
    assert code == 64 and f"Error loading the certificate chain: {pki.root}/missing.pem" in err, err
    code, err = start_error("-Z", "-o", f"ssl_chain_cert={cert},ssl_key={pki.ca}")
    assert code == 64 and f"Error loading the key: {pki.ca}" in err, err
    code, err = start_error("-Z", "-o", f"ssl_chain_cert={cert},ssl_key={key},ssl_verify_mode=2")
    assert code == 64 and "ssl_ca_cert" in err, err
    code, err = start_error("-Z", "-o", f"ssl_chain_cert={cert},ssl_key={key},ssl_verify_mode=9")
    assert code != 0 and "ssl_verify_mode" in err, err
    code, err = start_error("-Z", "-U", "11211", "-o", f"ssl_chain_cert={cert},ssl_key={key}")
    assert code == 64 and "UDP" in err, err
