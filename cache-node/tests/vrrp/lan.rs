//! A LAN of network namespaces made for one test: a switch (a bridge in its own namespace)
//! and hosts with one interface `eth0` each: 192.0.2.<n>/24, 2001:db8::<n>/64 and an IPv6
//! link-local address.
//! Processes started on the hosts and the namespaces themselves are gone when it drops.

use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// Upper bound for anything the tests wait for.
pub const WAIT: Duration = Duration::from_secs(15);

pub struct Lan {
    tag: String,
    hosts: Vec<String>,
    pub dir: PathBuf,
    procs: Vec<(String, Child)>,
}

/// One process on a host; its output goes to `<dir>/<name>.log`.
#[derive(Debug, Clone, Copy)]
pub struct Proc(usize);

impl Lan {
    /// Host `hosts[i]` gets 192.0.2.<i+1> and 2001:db8::<i+1>.
    pub fn new(hosts: &[&str]) -> Lan {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let tag = format!("cpv{}x{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed));
        let dir = std::env::temp_dir().join(&tag);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let lan = Lan { tag, hosts: hosts.iter().map(|h| h.to_string()).collect(), dir, procs: Vec::new() };
        let switch = lan.switch();
        ip(&["netns", "add", &switch]);
        ip(&["-n", &switch, "link", "add", "br0", "type", "bridge"]);
        ip(&["-n", &switch, "link", "set", "br0", "up"]);
        for (i, host) in hosts.iter().enumerate() {
            let ns = lan.ns(host);
            let port = format!("p{i}");
            ip(&["netns", "add", &ns]);
            // No duplicate address detection: IPv6 addresses are usable at once.
            sysctl(&ns, "net.ipv6.conf.default.accept_dad=0");
            sysctl(&ns, "net.ipv6.conf.all.accept_dad=0");
            ip(&["-n", &ns, "link", "set", "lo", "up"]);
            ip(&["-n", &ns, "link", "add", "eth0", "type", "veth", "peer", "name", &port, "netns", &switch]);
            ip(&["-n", &ns, "addr", "add", &format!("192.0.2.{}/24", i + 1), "dev", "eth0"]);
            ip(&["-n", &ns, "addr", "add", &format!("2001:db8::{}/64", i + 1), "dev", "eth0"]);
            ip(&["-n", &ns, "link", "set", "eth0", "up"]);
            ip(&["-n", &switch, "link", "set", &port, "master", "br0", "up"]);
        }
        lan
    }

    fn switch(&self) -> String {
        format!("{}-lan", self.tag)
    }

    pub fn ns(&self, host: &str) -> String {
        format!("{}-{host}", self.tag)
    }

    /// Starts `argv` on `host`.
    pub fn spawn(&mut self, host: &str, name: &str, argv: &[&str]) -> Proc {
        let log = std::fs::File::create(self.dir.join(format!("{name}.log"))).unwrap();
        let child = Command::new("ip")
            .args(["netns", "exec", &self.ns(host)])
            .args(argv)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        self.procs.push((name.to_string(), child));
        Proc(self.procs.len() - 1)
    }

    pub fn signal(&self, p: Proc, signal: Signal) {
        let pid = self.procs[p.0].1.id();
        let _ = kill(Pid::from_raw(i32::try_from(pid).unwrap()), signal);
    }

    /// Sends `signal` to every process in `host`'s namespace: the whole host stops or dies.
    pub fn signal_host(&self, host: &str, signal: Signal) {
        for pid in ip_out(&["netns", "pids", &self.ns(host)]).split_whitespace() {
            if let Ok(pid) = pid.parse::<i32>() {
                let _ = kill(Pid::from_raw(pid), signal);
            }
        }
    }

    /// Waits (bounded) for the process to exit; true if it exited successfully.
    pub fn wait_exit(&mut self, p: Proc) -> bool {
        let child = &mut self.procs[p.0].1;
        let deadline = Instant::now() + WAIT;
        while Instant::now() < deadline {
            if let Some(status) = child.try_wait().unwrap() {
                return status.success();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("{} did not exit", self.procs[p.0].0);
    }

    pub fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.join(format!("{name}.log"))).unwrap_or_default()
    }

    /// Runs a command on `host` to completion.
    pub fn exec(&self, host: &str, argv: &[&str]) -> Output {
        Command::new("ip").args(["netns", "exec", &self.ns(host)]).args(argv).output().unwrap()
    }

    /// Writes `text` to a file in the LAN's directory and returns its path.
    pub fn file(&self, name: &str, text: &str) -> String {
        let path = self.dir.join(name);
        std::fs::write(&path, text).unwrap();
        path.to_str().unwrap().to_string()
    }

    /// The hosts whose eth0 carries `addr`.
    pub fn holders(&self, addr: &str) -> Vec<String> {
        let needle = format!(" {addr}/");
        self.hosts
            .iter()
            .filter(|h| {
                let out = ip_out(&["-n", &self.ns(h), "-o", "addr", "show", "dev", "eth0"]);
                out.contains(&needle)
            })
            .cloned()
            .collect()
    }

    /// Waits (bounded) until exactly `host` holds `addr`; returns how long that took.
    pub fn wait_holder(&self, addr: &str, host: &str, what: &str) -> Duration {
        let start = Instant::now();
        let mut last = Vec::new();
        while start.elapsed() < WAIT {
            last = self.holders(addr);
            if last == [host] {
                return start.elapsed();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("{what}: {addr} is on {last:?}, expected only on {host}\n{}", self.logs());
    }

    /// The MAC address of `host`'s eth0.
    pub fn mac(&self, host: &str) -> String {
        let out = ip_out(&["-n", &self.ns(host), "-o", "link", "show", "dev", "eth0"]);
        out.split_whitespace().skip_while(|w| *w != "link/ether").nth(1).unwrap().to_string()
    }

    /// The link-layer address `host` has for `addr` in its neighbour table.
    pub fn neighbour(&self, host: &str, addr: &str) -> Option<String> {
        let out = ip_out(&["-n", &self.ns(host), "neigh", "show", addr, "dev", "eth0"]);
        out.split_whitespace().skip_while(|w| *w != "lladdr").nth(1).map(str::to_string)
    }

    /// Every process's log, for failure messages.
    pub fn logs(&self) -> String {
        self.procs.iter().map(|(name, _)| format!("--- {name}\n{}", self.log(name))).collect()
    }
}

impl Drop for Lan {
    fn drop(&mut self) {
        for (_, child) in &mut self.procs {
            let _ = child.kill();
            let _ = child.wait();
        }
        // keepalived's VRRP child process is found by its pid file.
        for entry in std::fs::read_dir(&self.dir).into_iter().flatten().flatten() {
            if entry.path().extension().is_some_and(|e| e == "pid") {
                let pid = std::fs::read_to_string(entry.path()).unwrap_or_default();
                let Ok(pid) = pid.trim().parse::<i32>() else { continue };
                // A stale file may name a pid that is someone else's by now.
                let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
                if comm.trim() == "keepalived" {
                    let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
                }
            }
        }
        for host in self.hosts.clone() {
            let _ = Command::new("ip").args(["netns", "del", &self.ns(&host)]).status();
        }
        let _ = Command::new("ip").args(["netns", "del", &self.switch()]).status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().unwrap();
    assert!(out.status.success(), "ip {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr));
}

fn ip_out(args: &[&str]) -> String {
    String::from_utf8_lossy(&Command::new("ip").args(args).output().unwrap().stdout).into_owned()
}

fn sysctl(ns: &str, setting: &str) {
    let out = Command::new("ip").args(["netns", "exec", ns, "sysctl", "-qw", setting]).output().unwrap();
    assert!(out.status.success(), "sysctl {setting}: {}", String::from_utf8_lossy(&out.stderr));
}
