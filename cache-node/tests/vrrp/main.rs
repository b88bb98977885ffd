//! `cache-node vrrp` against keepalived on a LAN of network namespaces made for each test:
//! elections and hand-overs in both directions for VRRPv2 (PASS authentication) and VRRPv3
//! (IPv4 and IPv6), gratuitous ARP moving a client's neighbour entry, and the seed's setup —
//! a replicated pair whose virtual IP follows the cache master when the master is SIGKILLed.
//! [`failover`] measures that from a client's side with the operator's rendered defaults.
//! Needs root (namespaces, raw sockets); skipped otherwise.

mod failover;
mod lan;

use std::time::{Duration, Instant};

use lan::{Lan, Proc};
use nix::sys::signal::Signal;

const BIN: &str = env!("CARGO_BIN_EXE_cache-node");

fn is_root() -> bool {
    if nix::unistd::geteuid().is_root() {
        return true;
    }
    eprintln!("skipped: the VRRP tests need root for network namespaces and raw sockets");
    false
}

/// An instance block; `extra` goes inside it.
fn instance(name: &str, vrid: u8, advert_int: &str, vip: &str, extra: &str) -> String {
    format!(
        "vrrp_instance {name} {{\n    state BACKUP\n    nopreempt\n    interface eth0\n    virtual_router_id {vrid}\n    \
         priority 100\n    advert_int {advert_int}\n{extra}    virtual_ipaddress {{\n        {vip} dev eth0\n    }}\n}}\n"
    )
}

fn global(version: u8) -> String {
    format!("global_defs {{\n    vrrp_version {version}\n    script_user root\n}}\n")
}

const PASS: &str = "    authentication {\n        auth_type PASS\n        auth_pass s3cret\n    }\n";

fn keepalived(lan: &mut Lan, host: &str, name: &str, conf: &str) -> Proc {
    let conf = lan.file(&format!("{name}.conf"), conf);
    let pid = |what: &str| lan.dir.join(format!("{name}.{what}.pid")).to_str().unwrap().to_string();
    let (main, vrrp) = (pid("main"), pid("vrrp"));
    lan.spawn(
        host,
        name,
        &[
            "keepalived",
            "--dont-fork",
            "--log-console",
            "--log-detail",
            "--vrrp",
            "-f",
            &conf,
            "-p",
            &main,
            "-r",
            &vrrp,
        ],
    )
}

fn cache_node_vrrp(lan: &mut Lan, host: &str, name: &str, conf: &str) -> Proc {
    let conf = lan.file(&format!("{name}.conf"), conf);
    lan.spawn(host, name, &[BIN, "vrrp", "-vv", "--config", &conf])
}

/// Stops a speaker with SIGTERM and checks it exited cleanly.
fn stop(lan: &mut Lan, p: Proc, name: &str) {
    lan.signal(p, Signal::SIGTERM);
    assert!(lan.wait_exit(p), "{name} did not exit cleanly\n{}", lan.logs());
}

/// Lets several master-down intervals pass and checks the address did not move.
fn stays(lan: &Lan, addr: &str, host: &str, why: &str) {
    let until = Instant::now() + Duration::from_secs(5);
    while Instant::now() < until {
        assert_eq!(lan.holders(addr), [host], "{why}\n{}", lan.logs());
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Waits (bounded) until `host`'s neighbour entry for `addr` is `mac`.
fn wait_neighbour(lan: &Lan, host: &str, addr: &str, mac: &str, why: &str) {
    let deadline = Instant::now() + lan::WAIT;
    let mut last = None;
    while Instant::now() < deadline {
        last = lan.neighbour(host, addr);
        if last.as_deref() == Some(mac) {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("{why}: {host} has {last:?} for {addr}, expected {mac}\n{}", lan.logs());
}

/// Makes `host` resolve `addr` on the link: one UDP datagram to the discard port.
fn touch(lan: &Lan, host: &str, addr: &str) {
    let program = "import socket, sys; a = sys.argv[1]; \
        socket.socket(socket.AF_INET6 if ':' in a else socket.AF_INET, socket.SOCK_DGRAM).sendto(b'x', (a, 9))";
    let out = lan.exec(host, &["python3", "-c", program, addr]);
    assert!(out.status.success(), "sending to {addr} from {host}: {}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn vrrp_v2_with_keepalived_elects_hands_over_and_never_preempts() {
    if !is_root() {
        return;
    }
    let vip = "192.0.2.100";
    let conf = global(2) + &instance("VI_1", 51, "1", &format!("{vip}/32"), PASS);
    let mut lan = Lan::new(&["a", "b", "c"]);

    let ka = keepalived(&mut lan, "a", "keepalived-a", &conf);
    lan.wait_holder(vip, "a", "keepalived alone takes the VIP");
    let cn = cache_node_vrrp(&mut lan, "b", "cache-node-b", &conf);
    stays(&lan, vip, "a", "cache-node must follow keepalived's adverts (equal priority, nopreempt)");

    touch(&lan, "c", vip);
    wait_neighbour(&lan, "c", vip, &lan.mac("a"), "the client learnt the master");

    // keepalived leaves with priority 0: cache-node takes over after its skew time alone.
    stop(&mut lan, ka, "keepalived-a");
    let took = lan.wait_holder(vip, "b", "cache-node takes over when keepalived leaves");
    assert!(took < Duration::from_secs(2), "took {took:?}");
    wait_neighbour(&lan, "c", vip, &lan.mac("b"), "gratuitous ARP moved the client to b");

    // keepalived comes back and must accept cache-node's adverts: no pre-emption.
    let ka = keepalived(&mut lan, "a", "keepalived-a2", &conf);
    stays(&lan, vip, "b", "keepalived must follow cache-node's adverts (nopreempt)");

    // cache-node dies without a word: keepalived takes over after the master-down interval.
    // The dead speaker's VIP stays on b (as keepalived's would) until it starts again.
    lan.signal(cn, Signal::SIGKILL);
    let deadline = Instant::now() + lan::WAIT;
    while !lan.holders(vip).contains(&"a".to_string()) {
        assert!(Instant::now() < deadline, "keepalived did not take over from a dead cache-node\n{}", lan.logs());
        std::thread::sleep(Duration::from_millis(20));
    }
    let cn = cache_node_vrrp(&mut lan, "b", "cache-node-b2", &conf);
    lan.wait_holder(vip, "a", "a restarted cache-node removes its stale VIP and follows keepalived");
    stays(&lan, vip, "a", "no pre-emption after the restart either");
    stop(&mut lan, cn, "cache-node-b2");
    stop(&mut lan, ka, "keepalived-a2");
}

#[test]
fn vrrp_v3_ipv4_and_ipv6_with_keepalived_hand_over_both_ways() {
    if !is_root() {
        return;
    }
    let (vip4, vip6) = ("192.0.2.101", "2001:db8::100");
    let conf = global(3)
        + &instance("VI_4", 52, "0.5", &format!("{vip4}/32"), "")
        + &instance("VI_6", 53, "1", &format!("{vip6}/128"), "");
    let mut lan = Lan::new(&["a", "b", "c"]);

    let cn = cache_node_vrrp(&mut lan, "b", "cache-node-b", &conf);
    lan.wait_holder(vip4, "b", "cache-node alone takes the IPv4 VIP");
    lan.wait_holder(vip6, "b", "cache-node alone takes the IPv6 VIP");
    let ka = keepalived(&mut lan, "a", "keepalived-a", &conf);
    stays(&lan, vip4, "b", "keepalived must follow cache-node's VRRPv3 IPv4 adverts");
    assert_eq!(lan.holders(vip6), ["b"], "keepalived must follow cache-node's VRRPv3 IPv6 adverts\n{}", lan.logs());

    touch(&lan, "c", vip4);
    touch(&lan, "c", vip6);
    wait_neighbour(&lan, "c", vip6, &lan.mac("b"), "the client learnt the IPv6 master");

    stop(&mut lan, cn, "cache-node-b");
    lan.wait_holder(vip4, "a", "keepalived takes the IPv4 VIP when cache-node leaves");
    lan.wait_holder(vip6, "a", "keepalived takes the IPv6 VIP when cache-node leaves");
    wait_neighbour(&lan, "c", vip6, &lan.mac("a"), "keepalived's unsolicited NA moved the client");
    assert!(lan.log("cache-node-b").contains("VRRP instance stopped"), "{}", lan.logs());

    // And back: keepalived leaves, a restarted cache-node takes both over.
    let cn = cache_node_vrrp(&mut lan, "b", "cache-node-b2", &conf);
    stays(&lan, vip4, "a", "a restarted cache-node does not preempt");
    stop(&mut lan, ka, "keepalived-a");
    lan.wait_holder(vip4, "b", "cache-node takes the IPv4 VIP back");
    lan.wait_holder(vip6, "b", "cache-node takes the IPv6 VIP back");
    wait_neighbour(&lan, "c", vip6, &lan.mac("b"), "cache-node's unsolicited NA moved the client");
    stop(&mut lan, cn, "cache-node-b2");
    assert!(lan.holders(vip4).is_empty() && lan.holders(vip6).is_empty(), "a stopped master drops its VIPs");
}

/// The seed's setup: two cache nodes replicating, each with a VRRP speaker tracking whether
/// its own cache is master (cache-node on one side, keepalived on the other).
#[test]
fn the_vip_follows_the_cache_master_when_it_is_killed() {
    if !is_root() {
        return;
    }
    let vip = "192.0.2.100";
    let check = format!(
        "vrrp_script cache_is_master {{\n    script \"{BIN} is-master --admin 127.0.0.1:9150\"\n    \
         interval 1\n    timeout 1\n    fall 1\n    rise 1\n}}\n"
    );
    let track = "    track_script {\n        cache_is_master\n    }\n";
    let conf = global(2) + &check + &instance("VI_1", 51, "1", &format!("{vip}/32"), &(PASS.to_string() + track));
    let mut lan = Lan::new(&["a", "b", "c"]);
    let node = |peer: Option<&str>| {
        // Listening on every address: the VIP's too.
        let mut argv = vec![BIN, "--allow-root", "-p", "11211", "-X", "11212"];
        argv.extend(["--admin-listen", "127.0.0.1:9150"]);
        if let Some(peer) = peer {
            argv.extend(["-x", peer]);
        }
        argv.into_iter().map(str::to_string).collect::<Vec<_>>()
    };
    let argv_a = node(None);
    let cache_a = lan.spawn("a", "cache-a", &argv_a.iter().map(String::as_str).collect::<Vec<_>>());
    // The slave must find the master up, or it would become master itself.
    let deadline = Instant::now() + lan::WAIT;
    while !lan.exec("a", &[BIN, "is-master", "--admin", "127.0.0.1:9150"]).status.success() {
        assert!(Instant::now() < deadline, "cache-a did not become master\n{}", lan.logs());
        std::thread::sleep(Duration::from_millis(50));
    }
    let argv_b = node(Some("192.0.2.1"));
    lan.spawn("b", "cache-b", &argv_b.iter().map(String::as_str).collect::<Vec<_>>());
    cache_node_vrrp(&mut lan, "a", "vrrp-a", &conf);
    keepalived(&mut lan, "b", "keepalived-b", &conf);

    lan.wait_holder(vip, "a", "the VIP goes where the cache is master");
    assert_eq!(memcache(&lan, "c", "set seed 0 0 5\r\nhello\r\n"), "STORED\r\n");

    lan.signal(cache_a, Signal::SIGKILL);
    let took = lan.wait_holder(vip, "b", "the VIP follows the promoted slave");
    eprintln!("the VIP moved {took:?} after the master was killed");
    let mut got = String::new();
    let deadline = Instant::now() + lan::WAIT;
    while Instant::now() < deadline && !got.contains("hello") {
        got = memcache(&lan, "c", "get seed\r\n");
    }
    assert_eq!(got, "VALUE seed 0 5\r\nhello\r\nEND\r\n", "through the VIP on the new master\n{}", lan.logs());
}

/// Sends `request` to the VIP's memcached port from `host` and returns the reply.
fn memcache(lan: &Lan, host: &str, request: &str) -> String {
    let program = r#"
import socket, sys
s = socket.create_connection(("192.0.2.100", 11211), timeout=2)
s.sendall(sys.argv[1].encode())
reply = b""
while not (reply.endswith(b"END\r\n") or reply.endswith(b"STORED\r\n") or b"ERROR" in reply):
    chunk = s.recv(4096)
    if not chunk:
        break
    reply += chunk
sys.stdout.write(reply.decode())
"#;
    let out = lan.exec(host, &["python3", "-c", program, request]);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Garbage and forged adverts on the wire change nothing; a tracked interface going down puts
/// the instance in FAULT and hands the VIP over; the notify hooks run with keepalived's
/// arguments at every transition.
#[test]
fn faults_notify_hooks_and_garbage_on_the_wire() {
    if !is_root() {
        return;
    }
    let vip = "192.0.2.100";
    let mut lan = Lan::new(&["a", "b", "c"]);
    let events = lan.dir.join("notify.events");
    let hook = lan.file("notify.sh", &format!("#!/bin/sh\necho \"$@\" >> {}\n", events.display()));
    std::fs::set_permissions(&hook, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let ours = global(2)
        + &instance(
            "VI_1",
            51,
            "1",
            &format!("{vip}/32"),
            &format!("{PASS}    track_interface {{\n        trk0\n    }}\n    notify {hook}\n"),
        );
    let theirs = global(2) + &instance("VI_1", 51, "1", &format!("{vip}/32"), PASS);
    // The tracked interface: one end of a veth pair inside b; its peer going down takes its
    // carrier away.
    for cmd in [
        ["ip", "link", "add", "trk0", "type", "veth", "peer", "name", "trk1"].as_slice(),
        &["ip", "link", "set", "trk0", "up"],
        &["ip", "link", "set", "trk1", "up"],
    ] {
        assert!(lan.exec("b", cmd).status.success(), "{cmd:?}");
    }

    let ours = lan.file("cache-node-b.conf", &ours);
    let metrics = ["vrrp", "-vv", "--metrics-listen", "127.0.0.1:9160", "--config", &ours];
    let cn = lan.spawn("b", "cache-node-b", &[&[BIN], metrics.as_slice()].concat());
    lan.wait_holder(vip, "b", "cache-node alone takes the VIP");
    keepalived(&mut lan, "a", "keepalived-a", &theirs);

    let out = lan.exec("c", &["python3", "-c", GARBAGE]);
    assert!(out.status.success(), "sending garbage: {}", String::from_utf8_lossy(&out.stderr));
    stays(&lan, vip, "b", "garbage, a wrong password or TTL must not unseat the master");
    let log = lan.log("cache-node-b");
    for reason in ["checksum", "authentication", "TTL"] {
        assert!(log.contains("advert dropped") && log.contains(reason), "no drop for {reason} logged\n{log}");
    }
    let scrape = "import urllib.request; print(urllib.request.urlopen('http://127.0.0.1:9160/metrics', timeout=2).read().decode())";
    let out = lan.exec("b", &["python3", "-c", scrape]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains(r#"cachepair_vrrp_state{instance="VI_1",state="MASTER"} 1"#), "{text}");
    let dropped = text
        .lines()
        .find_map(|l| l.strip_prefix(r#"cachepair_vrrp_adverts_dropped_total{instance="VI_1"} "#))
        .and_then(|v| v.trim().parse::<u64>().ok());
    assert!(dropped.is_some_and(|n| n >= 4), "the forged adverts are counted as dropped: {text}");

    assert!(lan.exec("b", &["ip", "link", "set", "trk1", "down"]).status.success());
    let took = lan.wait_holder(vip, "a", "a tracked interface down hands the VIP over");
    assert!(took < Duration::from_secs(3), "took {took:?}: FAULT should send priority 0");
    assert!(lan.exec("b", &["ip", "link", "set", "trk1", "up"]).status.success());
    let deadline = Instant::now() + lan::WAIT;
    while !std::fs::read_to_string(&events).unwrap_or_default().contains("BACKUP") {
        assert!(Instant::now() < deadline, "no BACKUP after the interface came back\n{}", lan.logs());
        std::thread::sleep(Duration::from_millis(20));
    }
    stays(&lan, vip, "a", "back from FAULT, the instance follows the master: no pre-emption");
    stop(&mut lan, cn, "cache-node-b");
    let events = std::fs::read_to_string(&events).unwrap_or_default();
    assert_eq!(
        events.lines().collect::<Vec<_>>(),
        ["INSTANCE VI_1 BACKUP 100", "INSTANCE VI_1 MASTER 100", "INSTANCE VI_1 FAULT 100", "INSTANCE VI_1 BACKUP 100"]
            .into_iter()
            .chain(events.lines().last().filter(|l| l.contains("STOP")))
            .collect::<Vec<_>>(),
        "notify hooks"
    );
}

/// Sends to 224.0.0.18 from the client: random bytes, a truncated advert, adverts with a bad
/// checksum and a wrong password, and a valid higher-priority advert with TTL 1 (RFC 5798 §7.1
/// requires 255). Seeded, so every run sends the same bytes.
const GARBAGE: &str = r#"
import random, socket, struct
rng = random.Random(5798)
def checksum(b):
    total = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    while total >> 16:
        total = (total & 0xffff) + (total >> 16)
    return ~total & 0xffff
def advert(priority, password):
    m = bytearray(struct.pack("!BBBBBBH", 0x21, 51, priority, 1, 1, 1, 0))
    m += socket.inet_aton("192.0.2.100") + password.ljust(8, b"\0")
    struct.pack_into("!H", m, 6, checksum(bytes(m)))
    return bytes(m)
def send(payload, ttl=255):
    s = socket.socket(socket.AF_INET, socket.SOCK_RAW, 112)
    s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, ttl)
    s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton("192.0.2.3"))
    s.sendto(payload, ("224.0.0.18", 0))
for n in (0, 1, 7, 20, 64, 1400):
    send(rng.randbytes(n))
send(advert(200, b"s3cret")[:10])
bad = bytearray(advert(200, b"s3cret"))
bad[6] ^= 0xff
send(bytes(bad))
send(advert(200, b"wrong"))
send(advert(200, b"s3cret"), ttl=1)
"#;

/// `cache-node vrrp --config-test` accepts what it can run, and refuses the rest naming the
/// line and keyword, like `keepalived --config-test`.
#[test]
fn config_test_names_the_line_of_what_it_refuses() {
    let dir = std::env::temp_dir().join(format!("cachepair-vrrp-config-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let good = global(2) + &instance("VI_1", 51, "1", "192.0.2.100/32", PASS);
    let bad = good.replace("    nopreempt\n", "    nopreempt\n    unicast_peer {\n        192.0.2.9\n    }\n");
    let run = |name: &str, text: Option<&str>| {
        let path = dir.join(name);
        if let Some(text) = text {
            std::fs::write(&path, text).unwrap();
        }
        let out =
            std::process::Command::new(BIN).args(["vrrp", "--config-test", "--config"]).arg(&path).output().unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
        )
    };
    let good = run("good.conf", Some(&good));
    let bad = run("bad.conf", Some(&bad));
    let missing = run("missing.conf", None);
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(good.0 && good.1.contains("configuration OK (1 instance(s))"), "{}", good.1);
    assert!(!bad.0 && bad.1.contains("line 8") && bad.1.contains("unicast_peer"), "{}", bad.1);
    assert!(!missing.0 && missing.1.contains("missing.conf"), "{}", missing.1);
}

/// An instance whose interface does not exist yet waits for it, as keepalived does, instead
/// of exiting; SIGTERM while it waits stops it cleanly.
#[test]
fn an_instance_waits_for_its_interface() {
    if !is_root() {
        return;
    }
    let vip = "198.51.100.100";
    let conf = global(2) + &instance("VI_1", 61, "1", &format!("{vip}/32"), "").replace("eth0", "late0");
    let mut lan = Lan::new(&["a"]);
    let early = cache_node_vrrp(&mut lan, "a", "early", &conf);
    let waiting = cache_node_vrrp(&mut lan, "a", "waiting", &conf);
    let deadline = Instant::now() + lan::WAIT;
    while !lan.log("waiting").contains("waiting for it") {
        assert!(Instant::now() < deadline, "no speaker waits for its interface\n{}", lan.logs());
        std::thread::sleep(Duration::from_millis(50));
    }
    stop(&mut lan, early, "early");

    for cmd in [
        ["ip", "link", "add", "late0", "type", "veth", "peer", "name", "late1"].as_slice(),
        &["ip", "addr", "add", "198.51.100.1/24", "dev", "late0"],
        &["ip", "link", "set", "late1", "up"],
        &["ip", "link", "set", "late0", "up"],
    ] {
        assert!(lan.exec("a", cmd).status.success(), "{cmd:?}");
    }
    let deadline = Instant::now() + lan::WAIT;
    loop {
        let out = lan.exec("a", &["ip", "-o", "addr", "show", "dev", "late0"]);
        if String::from_utf8_lossy(&out.stdout).contains(&format!(" {vip}/")) {
            break;
        }
        assert!(Instant::now() < deadline, "the VIP never came to late0\n{}", lan.logs());
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(lan.log("waiting").contains("interface ready"), "{}", lan.logs());
    stop(&mut lan, waiting, "waiting");
}
