//! Starting the real binary on free loopback ports, talking to it, and always stopping it.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering::Relaxed};
use std::time::{Duration, Instant};

use nix::sys::resource::{Resource, setrlimit};

pub const BIN: &str = env!("CARGO_BIN_EXE_cache-node");
/// Upper bound for anything the tests wait for.
pub const WAIT: Duration = Duration::from_secs(10);

pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// A port that is free on 127.0.0.1 and that this process has not handed out before. It is
/// taken below the kernel's ephemeral range: a port from that range (what binding port 0
/// gives) may become the source port of one of the tests' many client connections before the
/// node binds it, and the node then fails to start.
pub fn free_port() -> u16 {
    const FIRST: u32 = 10_000;
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let room = ephemeral_start().saturating_sub(FIRST);
    // Test binaries may run side by side: each starts at its own place in the range.
    let offset = std::process::id() % 64 * 300;
    for _ in 0..room.min(1000) {
        let port = (FIRST + (offset + NEXT.fetch_add(1, Relaxed)) % room) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    // No room below the ephemeral range on this machine: let the kernel choose.
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// The first port of the kernel's ephemeral range (Linux's default when unknown).
fn ephemeral_start() -> u32 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| range.split_whitespace().next()?.parse().ok())
        .unwrap_or(32_768)
}

/// A UDP port that was free a moment ago on 127.0.0.1.
pub fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Polls `f` until it returns Some, at most `WAIT`.
pub fn wait_for<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A scratch directory under the system temp dir, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> Self {
        let path = std::env::temp_dir().join(format!("cache-node-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        Self(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A cache-node run in the foreground, killed on drop. Its standard error goes to a file.
pub struct Node {
    pub child: Child,
    pub port: u16,
    pub log: PathBuf,
    _dir: TempDir,
}

impl Node {
    /// Starts on 127.0.0.1 with a free TCP port and the given extra arguments, and waits until
    /// it accepts connections. Root is allowed, so the tests run as any user.
    pub fn start(tag: &str, args: &[&str]) -> Self {
        Self::start_with(tag, args, |_| {})
    }

    /// As [`Node::start`], with a last say on the command (its user, say).
    pub fn start_with(tag: &str, args: &[&str], adjust: impl FnOnce(&mut Command)) -> Self {
        let port = free_port();
        let dir = TempDir::new(tag);
        let log = dir.0.join("stderr.log");
        let mut command = Command::new(BIN);
        command
            .args(["--allow-root", "-l", "127.0.0.1", "-p", &port.to_string()])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap());
        adjust(&mut command);
        let child = command.spawn().unwrap();
        let mut node = Self { child, port, log, _dir: dir };
        wait_for("the node to accept connections", || {
            if let Some(status) = node.child.try_wait().unwrap() {
                panic!("cache-node exited with {status}: {}", node.stderr());
            }
            TcpStream::connect(("127.0.0.1", port)).ok()
        });
        node
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    pub fn client(&self) -> Client {
        Client::connect(self.addr())
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn signal(&self, sig: nix::sys::signal::Signal) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.child.id() as i32), sig).unwrap();
    }

    pub fn wait_exit(&mut self) -> ExitStatus {
        wait_child(&mut self.child)
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits, at most `WAIT`, for a child to exit.
pub fn wait_child(child: &mut Child) -> ExitStatus {
    wait_for("the process to exit", || child.try_wait().unwrap())
}

/// A blocking text-protocol client with a read timeout.
pub struct Client {
    reader: BufReader<TcpStream>,
}

impl Client {
    pub fn connect(addr: SocketAddr) -> Self {
        let stream = TcpStream::connect_timeout(&addr, WAIT).unwrap();
        stream.set_read_timeout(Some(WAIT)).unwrap();
        Self { reader: BufReader::new(stream) }
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.reader.get_ref().local_addr().unwrap()
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.reader.get_mut().write_all(bytes).unwrap();
    }

    pub fn line(&mut self) -> String {
        let mut line = String::new();
        self.reader.read_line(&mut line).unwrap();
        line
    }

    /// Sends a request and reads one reply line.
    pub fn call(&mut self, request: &str) -> String {
        self.send(request.as_bytes());
        self.line()
    }

    /// Sends a request and reads lines up to and including `END`.
    pub fn call_until_end(&mut self, request: &str) -> String {
        self.send(request.as_bytes());
        let mut reply = String::new();
        loop {
            let line = self.line();
            assert!(!line.is_empty(), "connection closed; got {reply:?}");
            reply.push_str(&line);
            if line == "END\r\n" {
                return reply;
            }
        }
    }

    /// `stats` (or `stats <group>`) as name/value pairs.
    pub fn stats(&mut self, group: &str) -> Vec<(String, String)> {
        let request = if group.is_empty() { "stats\r\n".to_string() } else { format!("stats {group}\r\n") };
        self.call_until_end(&request)
            .lines()
            .filter_map(|l| l.strip_prefix("STAT "))
            .map(|l| {
                let (k, v) = l.split_once(' ').unwrap();
                (k.to_string(), v.to_string())
            })
            .collect()
    }

    pub fn stat(&mut self, name: &str) -> String {
        self.stats("").into_iter().find(|(k, _)| k == name).map(|(_, v)| v).unwrap()
    }

    /// Everything the server sends until it closes the connection.
    pub fn read_to_end(&mut self) -> String {
        let mut s = String::new();
        self.reader.read_to_string(&mut s).unwrap();
        s
    }
}

pub fn pid_in(path: &Path) -> Option<i32> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// A process that no longer runs (gone, or a zombie nobody has reaped yet).
pub fn process_gone(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat.rsplit_once(") ").is_some_and(|(_, rest)| rest.starts_with('Z')),
    }
}

/// Starts `command` with its open-files limit (`RLIMIT_NOFILE`) set to `soft` and `hard`.
pub fn limit_open_files(command: &mut Command, soft: u64, hard: u64) {
    // SAFETY: setrlimit is async-signal-safe and touches no memory the parent shares.
    unsafe {
        command.pre_exec(move || Ok(setrlimit(Resource::RLIMIT_NOFILE, soft, hard)?));
    }
}

/// The soft and hard open-files limits a running process has.
pub fn open_files_limits(pid: u32) -> (u64, u64) {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let line = limits.lines().find(|l| l.starts_with("Max open files")).unwrap();
    let mut values = line["Max open files".len()..].split_whitespace().map(|v| v.parse().unwrap());
    (values.next().unwrap(), values.next().unwrap())
}
