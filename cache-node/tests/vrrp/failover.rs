//! Failover as the client sees it: a replicated pair (sync mode) on hosts a and b, each with
//! `cache-node vrrp` running the keepalived.conf the operator renders by default (VRRPv3,
//! advert_int 0.1, both BACKUP with nopreempt, tracking `cache-node is-master`), and a client
//! on c writing through the virtual IP with pymemcache: about a write a millisecond, 100 ms
//! timeouts, a fresh connection after any error, the time of every acknowledged write
//! recorded. One failover test runs at a time. The longest gap between two
//! acknowledged writes is bounded for each way the master can go, and the VIP ends on the
//! surviving master, which holds every acknowledged write.

use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use super::lan::{self, Lan, Proc};
use super::{BIN, is_root, keepalived};

const VIP: &str = "192.0.2.100";
const ADMIN: &str = "127.0.0.1:9150";
/// How long the client writes before the fault, and at most after it.
const BEFORE: Duration = Duration::from_millis(1500);
const AFTER: Duration = Duration::from_millis(3000);

/// The operator's rendered configuration for member a or b, with the test's binary.
fn rendered(host: &str) -> String {
    let conf = match host {
        "a" => include_str!("operator-a.conf"),
        _ => include_str!("operator-b.conf"),
    };
    conf.replace("/usr/local/bin/cache-node", BIN)
}

/// Which speaker runs on a host.
#[derive(Clone, Copy, PartialEq)]
enum Speaker {
    CacheNode,
    Keepalived,
}

/// One failover at a time: two at once on a 2-core machine would measure each other.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

struct Pair {
    lan: Lan,
    cache_a: Proc,
    _turn: MutexGuard<'static, ()>,
}

impl Pair {
    /// a's cache is master, b's its slave, and a's speaker holds the VIP.
    fn start(speakers: [Speaker; 2]) -> Pair {
        // A test that failed holding the lock poisons it; the next one may still run.
        let turn = ONE_AT_A_TIME.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut lan = Lan::new(&["a", "b", "c"]);
        let cache_a = cache(&mut lan, "a", "192.0.2.2");
        wait_role(&lan, "a", true, "cache-a becomes master alone");
        cache(&mut lan, "b", "192.0.2.1");
        wait_synced(&lan);
        for (host, speaker) in ["a", "b"].into_iter().zip(speakers) {
            let conf = rendered(host);
            let name = format!("vrrp-{host}");
            match speaker {
                Speaker::CacheNode => {
                    let path = lan.file(&format!("{name}.conf"), &conf);
                    lan.spawn(host, &name, &[BIN, "vrrp", "-v", "--config", &path]);
                }
                Speaker::Keepalived => {
                    keepalived(&mut lan, host, &name, &conf);
                }
            }
        }
        lan.wait_holder(VIP, "a", "the VIP goes where the cache is master");
        Pair { lan, cache_a, _turn: turn }
    }

    /// Runs the client, does `fault` once it has written for a while, and returns the
    /// longest gap between acknowledged writes and the acknowledged keys.
    fn failover(&mut self, fault: impl FnOnce(&mut Lan, Proc)) -> (Duration, Vec<String>) {
        let out = self.lan.dir.join("client.out");
        let (before, after) = (BEFORE.as_secs_f64().to_string(), AFTER.as_secs_f64().to_string());
        let out_path = out.to_str().unwrap();
        let client = self.lan.spawn("c", "client", &["python3", "-c", CLIENT, VIP, &before, &after, out_path]);
        let started = self.lan.dir.join("client.out.started");
        let deadline = Instant::now() + lan::WAIT;
        while !started.exists() {
            assert!(Instant::now() < deadline, "the client did not start\n{}", self.lan.logs());
            std::thread::sleep(Duration::from_millis(10));
        }
        std::thread::sleep(BEFORE);
        std::fs::write(self.lan.dir.join("client.out.fault"), "").unwrap();
        fault(&mut self.lan, self.cache_a);
        assert!(self.lan.wait_exit(client), "the client failed\n{}", self.lan.logs());
        let text = std::fs::read_to_string(&out).unwrap();
        let mut lines = text.lines();
        let (gap, from) = lines.next().unwrap().split_once(' ').unwrap();
        eprintln!("the longest gap began {from} s after the fault");
        (Duration::from_secs_f64(gap.parse().unwrap()), lines.map(str::to_string).collect())
    }

    /// The VIP is on b, b's cache is master and holds every acknowledged write. A dead host
    /// keeps its copy of the address (its speaker could not remove it) but answers nobody.
    fn ends_on_b(&self, acked: &[String], a_dead: bool) {
        if a_dead {
            let deadline = Instant::now() + lan::WAIT;
            while !self.lan.holders(VIP).contains(&"b".to_string()) {
                assert!(Instant::now() < deadline, "the VIP ends on the surviving master\n{}", self.lan.logs());
                std::thread::sleep(Duration::from_millis(20));
            }
        } else {
            self.lan.wait_holder(VIP, "b", "the VIP ends on the surviving master");
        }
        wait_role(&self.lan, "b", true, "b's cache is master");
        let keys = self.lan.file("acked.keys", &acked.join("\n"));
        let out = self.lan.exec("c", &["python3", "-c", CHECK, VIP, &keys]);
        let missing = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && missing.trim() == "0",
            "acknowledged writes missing on the new master: {missing}{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

fn cache(lan: &mut Lan, host: &str, peer: &str) -> Proc {
    let argv = [BIN, "--allow-root", "-p", "11211", "-X", "11212", "-x", peer, "--repl-mode", "sync"];
    lan.spawn(host, &format!("cache-{host}"), &[argv.as_slice(), &["-v", "--admin-listen", ADMIN]].concat())
}

fn is_master(lan: &Lan, host: &str) -> bool {
    lan.exec(host, &[BIN, "is-master", "--admin", ADMIN]).status.success()
}

fn wait_role(lan: &Lan, host: &str, master: bool, what: &str) {
    let deadline = Instant::now() + lan::WAIT;
    while is_master(lan, host) != master {
        assert!(Instant::now() < deadline, "{what}\n{}", lan.logs());
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Until b is slave with its link to a up.
fn wait_synced(lan: &Lan) {
    let deadline = Instant::now() + lan::WAIT;
    loop {
        let out = lan.exec("b", &["python3", "-c", METRICS, ADMIN]);
        let metrics = String::from_utf8_lossy(&out.stdout);
        if metrics.contains("cachepair_replication_role{role=\"slave\"} 1")
            && metrics.contains("cachepair_replication_link_up 1")
        {
            return;
        }
        assert!(Instant::now() < deadline, "cache-b did not join as slave\n{}", lan.logs());
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn report(what: &str, gap: Duration, bound: Duration) {
    eprintln!("{what}: longest gap between acknowledged writes {gap:?} (bound {bound:?})");
}

#[test]
fn the_master_cache_killed() {
    if !is_root() {
        return;
    }
    let mut pair = Pair::start([Speaker::CacheNode; 2]);
    let (gap, acked) = pair.failover(|lan, cache| lan.signal(cache, Signal::SIGKILL));
    let bound = Duration::from_millis(500);
    report("master cache SIGKILLed", gap, bound);
    assert!(gap <= bound, "longest gap {gap:?}\n{}", pair.lan.logs());
    pair.ends_on_b(&acked, false);
}

#[test]
fn the_master_cache_stopped_gracefully() {
    if !is_root() {
        return;
    }
    let mut pair = Pair::start([Speaker::CacheNode; 2]);
    let (gap, acked) = pair.failover(|lan, cache| lan.signal(cache, Signal::SIGTERM));
    let bound = Duration::from_millis(500);
    report("master cache SIGTERMed", gap, bound);
    assert!(gap <= bound, "longest gap {gap:?}\n{}", pair.lan.logs());
    pair.ends_on_b(&acked, false);
}

/// The master's host dies: its processes freeze (nothing leaves, no goodbye, no closed
/// connection) and its link goes down with its kernel; the processes are killed later.
#[test]
fn the_master_host_dies() {
    if !is_root() {
        return;
    }
    let mut pair = Pair::start([Speaker::CacheNode; 2]);
    let (gap, acked) = pair.failover(|lan, _| {
        lan.signal_host("a", Signal::SIGSTOP);
        assert!(lan.exec("a", &["ip", "link", "set", "eth0", "down"]).status.success());
    });
    pair.lan.signal_host("a", Signal::SIGKILL);
    let bound = Duration::from_secs(1);
    report("master host dead", gap, bound);
    assert!(gap <= bound, "longest gap {gap:?}\n{}", pair.lan.logs());
    pair.ends_on_b(&acked, true);
}

/// Every process of the master's host freezes, but its kernel still accepts connections: b's
/// cache, having missed a's heartbeats, reconnects and gets no greeting, and gives up on a
/// after its patience as if a's host were gone.
#[test]
fn every_process_of_the_master_host_freezes() {
    if !is_root() {
        return;
    }
    let mut pair = Pair::start([Speaker::CacheNode; 2]);
    let (gap, acked) = pair.failover(|lan, _| lan.signal_host("a", Signal::SIGSTOP));
    pair.lan.signal_host("a", Signal::SIGKILL);
    let bound = Duration::from_secs(1);
    report("master host's processes frozen", gap, bound);
    assert!(gap <= bound, "longest gap {gap:?}\n{}", pair.lan.logs());
    pair.ends_on_b(&acked, true);
}

/// keepalived on a runs the same rendered file, so it asks `cache-node is-master` once a
/// second: the VIP leaves a dead cache within that second, and cache-node vrrp on b, whose
/// cache promoted itself at once, follows keepalived's adverts until its goodbye.
#[test]
fn keepalived_as_the_peer_speaker() {
    if !is_root() {
        return;
    }
    let mut pair = Pair::start([Speaker::Keepalived, Speaker::CacheNode]);
    let (gap, acked) = pair.failover(|lan, cache| lan.signal(cache, Signal::SIGKILL));
    let bound = Duration::from_millis(1500);
    report("master cache SIGKILLed, keepalived on its host", gap, bound);
    assert!(gap <= bound, "longest gap {gap:?}\n{}", pair.lan.logs());
    pair.ends_on_b(&acked, false);
}

/// `python3 -c CLIENT VIP BEFORE AFTER OUT`: writes `set` through the VIP for BEFORE + AFTER
/// seconds (touching OUT.started once the first write is acknowledged), then writes to OUT the
/// longest gap between acknowledged writes (the end counts as one) with when it began after
/// the fault (signalled by the file OUT.fault), and the acknowledged keys.
const CLIENT: &str = r#"
import os, sys, time
from pymemcache.client.base import Client
vip, before, after, out = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
c = Client((vip, 11211), connect_timeout=0.1, timeout=0.1, no_delay=True)
acked, times, i, end, fault = [], [], 0, None, None
deadline = time.monotonic() + 30
while time.monotonic() < (end or deadline):
    if fault is None and end is not None and os.path.exists(out + ".fault"):
        fault = time.monotonic()
    key = f"k{i}"
    i += 1
    try:
        if c.set(key, b"v" * 100, noreply=False):
            times.append(time.monotonic())
            acked.append(key)
            if end is None:
                end = times[0] + before + after
                open(out + ".started", "w").close()
    except Exception:
        c.close()
        time.sleep(0.005)
    time.sleep(0.001)  # ~1 write a millisecond: gaps to the millisecond, and a core left over
times.append(time.monotonic())
gap, at = max((b - a, a) for a, b in zip(times, times[1:]))
open(out, "w").write(f"{gap} {at - (fault or at):.3f}\n" + "\n".join(acked) + "\n")
"#;

/// `python3 -c CHECK VIP KEYS`: prints how many of the keys listed in KEYS are missing.
const CHECK: &str = r#"
import sys
from pymemcache.client.base import Client
c = Client((sys.argv[1], 11211), connect_timeout=2, timeout=2)
keys = [k for k in open(sys.argv[2]).read().split() if k]
missing = 0
for n in range(0, len(keys), 100):
    batch = keys[n:n + 100]
    missing += len(batch) - len(c.get_many(batch))
print(missing)
"#;

/// `python3 -c METRICS ADMIN`: the node's /metrics.
const METRICS: &str = r#"
import sys, urllib.request
try:
    print(urllib.request.urlopen(f"http://{sys.argv[1]}/metrics", timeout=1).read().decode())
except Exception as e:
    print(e)
"#;
