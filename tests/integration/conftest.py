"""Fixtures for the black-box integration tests.

Servers are real processes started on a free 127.0.0.1 port:

* the binary under test: ``$CACHE_NODE_BIN`` (default ``<repo>/target/debug/cache-node``);
* the reference: ``$MEMCACHED_BIN`` (default ``/usr/bin/memcached``).

Both get the same memcached-style command line (``SERVER_ARGS``; a flag a test passes again
replaces its value there; ``udp=True`` listens for UDP on the TCP port's number; ``limit_as``
caps the address space, for servers that may try to allocate gigabytes). Every server a test starts is
stopped at teardown (SIGTERM to its process group, SIGKILL after a bounded wait), and a session
hook kills anything left over. A missing binary is a test failure, never a silent skip.
"""

from __future__ import annotations

import os
import resource
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
HOST = "127.0.0.1"

DEFAULT_CACHE_NODE_BIN = REPO / "target" / "debug" / "cache-node"
DEFAULT_MEMCACHED_BIN = Path("/usr/bin/memcached")

# Identical flags for both servers (memcached's command line; cache-node is a drop-in).
MAX_ITEM_SIZE = 1024 * 1024
SERVER_ARGS = ["-m", "64", "-c", "1024", "-t", "4", "-U", "0", "-I", "1m", "-vv"]

START_TIMEOUT = 15.0  # seconds until the server must accept connections
STOP_TIMEOUT = 5.0  # seconds between SIGTERM and SIGKILL
START_ATTEMPTS = 3  # a free port can be taken between probe and bind: retry a few times

_LIVE: list["ServerProcess"] = []  # every server not yet stopped (session safety net)


def _binary(env: str, default: Path, what: str) -> Path:
    path = Path(os.environ.get(env) or default)
    if not path.is_file() or not os.access(path, os.X_OK):
        pytest.fail(
            f"{what} binary not found or not executable: {path}\n"
            f"(set ${env}; for cache-node build it with `cargo build -p cache-node`)",
            pytrace=False,
        )
    return path


def cache_node_binary() -> Path:
    return _binary("CACHE_NODE_BIN", DEFAULT_CACHE_NODE_BIN, "cache-node (under test)")


def memcached_binary() -> Path:
    return _binary("MEMCACHED_BIN", DEFAULT_MEMCACHED_BIN, "memcached (reference)")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def user_args() -> list[str]:
    # memcached refuses to run as root without -u; cache-node mirrors it. Both get the same.
    return ["-u", "nobody"] if os.geteuid() == 0 else []


def server_args(extra: list[str]) -> list[str]:
    """SERVER_ARGS without the flags (and their values) that `extra` gives again, then `extra`
    (`-v` in `extra` replaces `-vv`)."""
    given = {a[:2] for a in extra if a.startswith("-")}
    base, i = [], 0
    while i < len(SERVER_ARGS):
        flag = SERVER_ARGS[i]
        takes_value = i + 1 < len(SERVER_ARGS) and not SERVER_ARGS[i + 1].startswith("-")
        if flag[:2] not in given:
            base += SERVER_ARGS[i:i + 1 + takes_value]
        i += 1 + takes_value
    return base + extra


class ServerProcess:
    def __init__(self, name: str, binary: Path, args: list[str], log_dir: Path,
                 stop_signal: int = signal.SIGTERM, udp: bool = False,
                 limit_as: int | None = None, env: dict[str, str] | None = None):
        self.name = name
        self.stop_signal = stop_signal
        self.binary = binary
        self.extra_args = list(args)
        self.udp = udp
        self.limit_as = limit_as
        self.env = {**os.environ, **env} if env else None
        self.log_dir = log_dir
        self.host = HOST
        self.port = 0
        self.proc: subprocess.Popen | None = None
        self.log_path: Path | None = None
        self.argv: list[str] = []

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> "ServerProcess":
        last_error = ""
        for attempt in range(START_ATTEMPTS):
            self.port = free_port()
            udp = ["-U", str(self.port)] if self.udp else []
            self.argv = [str(self.binary), "-p", str(self.port), "-l", HOST,
                         *server_args([*udp, *self.extra_args]), *user_args()]
            self.log_path = self.log_dir / f"{self.name}-{self.port}-{attempt}.log"
            with open(self.log_path, "wb") as log:
                self.proc = subprocess.Popen(
                    self.argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                    start_new_session=True, preexec_fn=self._preexec, env=self.env)
            _LIVE.append(self)
            err = self._wait_ready()
            if err is None:
                return self
            last_error = err
            self.stop()
        pytest.fail(f"{self.name} did not start: {last_error}\nargv: {' '.join(self.argv)}\n"
                    f"log tail:\n{self.log_tail()}", pytrace=False)

    def _preexec(self) -> None:
        if self.limit_as is not None:
            resource.setrlimit(resource.RLIMIT_AS, (self.limit_as, self.limit_as))

    def _wait_ready(self) -> str | None:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            code = self.proc.poll()
            if code is not None:
                return f"exited with code {code} before accepting connections"
            try:
                with socket.create_connection((HOST, self.port), timeout=0.5):
                    return None
            except OSError:
                time.sleep(0.02)
        return f"not accepting connections on {HOST}:{self.port} after {START_TIMEOUT}s"

    def begin_stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self._signal(self.stop_signal)

    def stop(self) -> None:
        proc = self.proc
        if proc is None:
            return
        if proc.poll() is None:
            self._signal(self.stop_signal)
            try:
                proc.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self._signal(signal.SIGKILL)
                proc.wait(timeout=STOP_TIMEOUT)
        if self in _LIVE:
            _LIVE.remove(self)

    def _signal(self, sig: int) -> None:
        try:
            os.killpg(self.proc.pid, sig)  # own session: this reaches only its processes
        except ProcessLookupError:
            pass

    # -- helpers ---------------------------------------------------------------------------
    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, n: int = 40) -> str:
        try:
            lines = self.log_path.read_bytes().splitlines()[-n:]
        except (OSError, AttributeError):
            return "(no log)"
        return "\n".join(line.decode("utf-8", "replace") for line in lines)

    def connect(self, timeout: float = 5.0) -> socket.socket:
        s = socket.create_connection((HOST, self.port), timeout=timeout)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return s

    def __repr__(self) -> str:
        return f"<{self.name} {HOST}:{self.port} pid={self.proc.pid if self.proc else None}>"


class ServerFactory:
    """Starts servers and stops all of them at teardown."""

    def __init__(self, log_dir: Path):
        self.log_dir = log_dir
        self.servers: list[ServerProcess] = []

    def cache_node(self, *extra: str, **options) -> ServerProcess:
        return self._start("cache-node", cache_node_binary(), extra, **options)

    def memcached(self, *extra: str, **options) -> ServerProcess:
        # The reference's own shutdown is not under test; SIGTERM costs memcached ~1 s.
        return self._start("memcached", memcached_binary(), extra, signal.SIGKILL, **options)

    def _start(self, name: str, binary: Path, extra, stop_signal=signal.SIGTERM, **options):
        """`options`: ServerProcess's `udp`, `limit_as` and `env` (added to the environment)."""
        server = ServerProcess(name, binary, list(extra), self.log_dir, stop_signal, **options)
        self.servers.append(server)
        return server.start()

    def stop_all(self) -> None:
        for server in self.servers:  # signal all first: they shut down in parallel
            server.begin_stop()
        for server in reversed(self.servers):
            server.stop()
        self.servers.clear()


@pytest.fixture
def server_factory(tmp_path_factory, request):
    factory = ServerFactory(tmp_path_factory.mktemp("servers"))
    request.addfinalizer(factory.stop_all)
    return factory


@pytest.fixture(scope="module")
def module_server_factory(tmp_path_factory, request):
    factory = ServerFactory(tmp_path_factory.mktemp("servers"))
    request.addfinalizer(factory.stop_all)
    return factory


@pytest.fixture(scope="module")
def shared_cache_node(module_server_factory) -> ServerProcess:
    """One cache-node for a whole test module (tests flush it themselves)."""
    return module_server_factory.cache_node()


@pytest.fixture
def cache_node(server_factory) -> ServerProcess:
    """A fresh cache-node (the server under test)."""
    return server_factory.cache_node()


@pytest.fixture
def memcached(server_factory) -> ServerProcess:
    """A fresh memcached 1.6.18 (the reference)."""
    return server_factory.memcached()


def pytest_sessionfinish(session, exitstatus):
    # Safety net: nothing a test started outlives the session.
    for server in list(_LIVE):
        server.stop()


def pytest_report_header(config):
    return [f"cache-node under test: {os.environ.get('CACHE_NODE_BIN') or DEFAULT_CACHE_NODE_BIN}",
            f"memcached reference:   {os.environ.get('MEMCACHED_BIN') or DEFAULT_MEMCACHED_BIN}"]
