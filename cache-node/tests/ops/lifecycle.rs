use std::os::unix::fs::{PermissionsExt, chown};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};

use nix::sys::resource::{Resource, getrlimit};
use nix::sys::signal::{Signal, kill};
use nix::unistd::{Pid, User};

use crate::common::*;

/// Kills a daemonized node (found through its pid file) on drop.
struct Daemon(Option<i32>);

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(pid) = self.0
            && !process_gone(pid)
        {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
    }
}

/// The seed's command line, with `nobody` for `memcached`, a free port and a pid directory
/// that user owns.
#[test]
fn daemonizes_as_another_user_and_cleans_up_on_sigterm() {
    if !is_root() {
        eprintln!("skipped: switching users needs root");
        return;
    }
    let nobody = User::from_name("nobody").unwrap().expect("user nobody");
    let dir = TempDir::new("daemon");
    let piddir = dir.0.join("run");
    std::fs::create_dir(&piddir).unwrap();
    chown(&piddir, Some(nobody.uid.as_raw()), Some(nobody.gid.as_raw())).unwrap();
    // The temp dir itself must be searchable by nobody.
    std::fs::set_permissions(&dir.0, std::fs::Permissions::from_mode(0o755)).unwrap();
    let pidfile = piddir.join("memcached.pid");
    let port = free_port();
    let log = dir.0.join("memcached.log");

    let mut parent = Command::new(BIN)
        .args(["-d", "-p", &port.to_string(), "-u", "nobody", "-m", "1024", "-c", "4096", "-t", "4", "-P"])
        .arg(&pidfile)
        .args(["-v", "-l", "127.0.0.1"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let mut daemon = Daemon(None);
    assert!(wait_child(&mut parent).success(), "the foreground process exits 0");

    let pid = wait_for("the pid file", || pid_in(&pidfile));
    daemon.0 = Some(pid);
    assert_ne!(pid as u32, parent.id(), "the pid file names the daemon, not the parent");
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| status.lines().find_map(|l| l.strip_prefix(name)).unwrap().split_whitespace().next();
    assert_eq!(field("Uid:"), Some(nobody.uid.to_string().as_str()), "{status}");
    assert_eq!(field("Gid:"), Some(nobody.gid.to_string().as_str()), "{status}");
    // A session of its own: detached from the terminal.
    assert_eq!(nix::unistd::getsid(Some(Pid::from_raw(pid))).unwrap(), Pid::from_raw(pid));

    wait_for("the daemon to accept", || std::net::TcpStream::connect(("127.0.0.1", port)).ok());
    let mut client = Client::connect(([127, 0, 0, 1], port).into());
    assert_eq!(client.call("set k 0 0 2\r\nhi\r\n"), "STORED\r\n");
    assert_eq!(client.call_until_end("get k\r\n"), "VALUE k 0 2\r\nhi\r\nEND\r\n");
    assert_eq!(client.stat("pid"), pid.to_string());

    kill(Pid::from_raw(pid), Signal::SIGTERM).unwrap();
    wait_for("the pid file to go", || (!pidfile.exists()).then_some(()));
    wait_for("the daemon to exit", || process_gone(pid).then_some(()));
    // -v keeps standard error, so the log tells the story.
    let log = std::fs::read_to_string(&log).unwrap();
    assert!(log.contains("listening") && log.contains("SIGTERM"), "{log}");
}

#[test]
fn root_without_user_is_refused() {
    if !is_root() {
        eprintln!("skipped: only root is refused");
        return;
    }
    let out = Command::new(BIN)
        .args(["-p", &free_port().to_string(), "-l", "127.0.0.1"])
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = out;
    let status = wait_child(&mut out);
    let mut stderr = String::new();
    std::io::Read::read_to_string(out.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    assert_eq!(status.code(), Some(64), "EX_USAGE");
    assert_eq!(stderr, "can't run as root without the -u switch\n");
}

#[test]
fn unknown_user_is_refused() {
    if !is_root() {
        eprintln!("skipped: -u is ignored when not root");
        return;
    }
    let mut child = Command::new(BIN)
        .args(["-p", &free_port().to_string(), "-l", "127.0.0.1", "-u", "no-such-user-here"])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    assert_eq!(wait_child(&mut child).code(), Some(67), "EX_NOUSER");
}

#[test]
fn user_switch_is_ignored_when_not_root() {
    let nobody = User::from_name("nobody").unwrap().expect("user nobody");
    let node = Node::start_with("not-root", &["-u", "no-such-user-here"], |cmd| {
        if is_root() {
            cmd.uid(nobody.uid.as_raw()).gid(nobody.gid.as_raw());
        }
    });
    let mut c = node.client();
    assert_eq!(c.call("set k 0 0 1\r\nx\r\n"), "STORED\r\n");
    let pid = node.child.id();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let uid = status.lines().find_map(|l| l.strip_prefix("Uid:")).unwrap().split_whitespace().next().unwrap();
    assert_ne!(uid, "0");
}

#[test]
fn sigterm_and_sigint_stop_the_node_and_remove_the_pid_file() {
    for sig in [Signal::SIGTERM, Signal::SIGINT] {
        let dir = TempDir::new(&format!("sig-{sig}"));
        let pidfile = dir.0.join("node.pid");
        let mut node = Node::start("sig", &["-v", "-P", pidfile.to_str().unwrap()]);
        // The port is bound (and connectable) a moment before the pid file is written.
        assert_eq!(wait_for("the pid file", || pid_in(&pidfile)), node.child.id() as i32);
        let mut idle = node.client();
        assert_eq!(idle.call("version\r\n").split(' ').next(), Some("VERSION"));

        node.signal(sig);
        assert_eq!(node.wait_exit().code(), Some(0));
        assert!(!pidfile.exists());
        assert!(std::net::TcpStream::connect(node.addr()).is_err(), "no longer accepting");
        assert!(node.stderr().contains(&format!("signal=\"{sig}\"")), "{}", node.stderr());
    }
}

#[test]
fn listens_on_every_address_given() {
    let mut node = Node::start("two-addrs", &["-l", "127.0.0.2"]);
    for ip in [[127, 0, 0, 1], [127, 0, 0, 2]] {
        let mut c = Client::connect((ip, node.port).into());
        assert_eq!(c.call("set k 0 0 1\r\nx\r\n"), "STORED\r\n");
    }
    let mut c = node.client();
    let settings = c.stats("settings");
    assert!(settings.contains(&("inter".into(), "127.0.0.1,127.0.0.2".into())), "{settings:?}");
    node.signal(Signal::SIGTERM);
    assert!(node.wait_exit().success());
}

#[test]
fn connections_over_the_limit_are_told_and_closed() {
    let node = Node::start("conn-limit", &["-c", "3"]);
    // The start-up probe's connection may not have been reaped yet.
    let mut first = node.client();
    wait_for("only this connection to be open", || (first.stat("curr_connections") == "1").then_some(()));
    let mut open = vec![first, node.client(), node.client()];
    for c in &mut open {
        assert!(c.call("version\r\n").starts_with("VERSION "));
    }
    let served = open[0].stat("total_connections");
    let mut extra = node.client();
    assert_eq!(extra.read_to_end(), "ERROR Too many open connections\r\n");
    // As memcached, a refused connection is counted as rejected, not among the total.
    assert_eq!(open[0].stat("total_connections"), served);

    // Once one leaves, there is room again, and the refusal was counted.
    open.pop();
    let mut c = wait_for("a free connection slot", || {
        let mut c = node.client();
        c.send(b"version\r\n");
        c.line().starts_with("VERSION ").then_some(c)
    });
    assert_eq!(c.stat("max_connections"), "3");
    assert_ne!(c.stat("rejected_connections"), "0");
}

#[test]
fn double_v_logs_connections_and_commands_with_the_peer() {
    let node = Node::start("vv", &["-vv"]);
    let mut c = node.client();
    assert_eq!(c.call_until_end("get logged-key\r\n"), "END\r\n");
    let peer = format!("conn{{peer={}}}", c.local_addr());
    let log = wait_for("the command in the log", || {
        let log = node.stderr();
        log.contains("command: get logged-key").then_some(log)
    });
    let lines: Vec<&str> = log.lines().filter(|l| l.contains(&peer)).collect();
    assert!(lines.iter().any(|l| l.contains("connection opened")), "{log}");
    assert!(lines.iter().any(|l| l.contains("command: get logged-key")), "{log}");
}

#[test]
fn verbosity_command_turns_command_logging_on_and_off() {
    let node = Node::start("verbosity", &["-v"]);
    let mut c = node.client();
    assert_eq!(c.call_until_end("get before-vv\r\n"), "END\r\n");
    assert_eq!(c.call("verbosity 2\r\n"), "OK\r\n");
    assert_eq!(c.call_until_end("get during-vv\r\n"), "END\r\n");
    assert_eq!(c.call("verbosity 1\r\n"), "OK\r\n");
    assert_eq!(c.call_until_end("get after-vv\r\n"), "END\r\n");
    let settings = c.stats("settings");
    assert!(settings.contains(&("verbosity".into(), "1".into())));

    let log = wait_for("the command in the log", || {
        let log = node.stderr();
        log.contains("command: get during-vv").then_some(log)
    });
    assert!(!log.contains("before-vv") && !log.contains("after-vv"), "{log}");
}

/// The node raises its soft open-files limit to the hard one at start, as memcached does to
/// make room for -c.
#[test]
fn raises_the_open_files_soft_limit_to_the_hard_limit() {
    let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    // What the default -c 1024 needs with the node's other descriptors, and some more.
    assert!(hard >= 2048, "this test needs a hard open-files limit of 2048 or more, not {hard}");
    let node = Node::start_with("nofile", &[], |c| limit_open_files(c, 256, hard));
    assert_eq!(open_files_limits(node.child.id()), (hard, hard));
}

/// A hard limit too low for -c, which the node may not raise, is reported and the node runs.
#[test]
fn warns_when_the_open_files_limit_stays_below_what_c_needs() {
    // Past the kernel's fs.nr_open, not even root may raise the hard limit.
    let nr_open: u64 = std::fs::read_to_string("/proc/sys/fs/nr_open").unwrap().trim().parse().unwrap();
    let max_connections = (nr_open + 1).to_string();
    let node = Node::start_with("nofile-low", &["-v", "-c", &max_connections], |c| limit_open_files(c, 256, 256));
    assert_eq!(open_files_limits(node.child.id()), (256, 256));
    let warning =
        wait_for("the warning", || node.stderr().lines().find(|l| l.contains("open files limit")).map(String::from));
    assert!(
        warning.contains("WARN")
            && warning.contains("is 256, below the")
            && warning.contains(&format!("-c {max_connections}")),
        "{warning}"
    );
    assert!(node.client().call("version\r\n").starts_with("VERSION "));
}

/// Issue 11: in VRRP mode a node listens on its node address and the virtual IP only; the VIP
/// is on this host only while it is master, so it is bound with --freebind. (192.0.2.77 is a
/// documentation address that no interface here has; nothing is sent to it.)
#[test]
fn freebind_listens_on_an_address_the_host_does_not_have_yet() {
    let vip = "192.0.2.77";
    // Node::start adds -l 127.0.0.1.
    let node = Node::start("freebind", &["-l", vip, "--freebind"]);
    let mut client = node.client();
    assert_eq!(client.call("version\r\n").split(' ').next(), Some("VERSION"));

    let out = std::process::Command::new(BIN)
        .args(["--allow-root", "-p", &free_port().to_string(), "-l", vip])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains(&format!("failed to listen on TCP {vip}")), "{stderr}");
}
