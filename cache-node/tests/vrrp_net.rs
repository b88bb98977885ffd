//! The VRRP network edge against the kernel: raw VRRP sockets, netlink addresses and takeover
//! announcements, between two network namespaces of the test's own joined by a veth pair.
//!
//! The namespaces are anonymous: a thread `unshare`s into a new one and the test keeps only a
//! descriptor of it, so they vanish with the test however it ends, even killed, and nothing
//! names them on the host. Network namespaces are per thread: whatever must live in one (a
//! socket, a netlink connection, an `ip` process) is created on a thread that has `setns`ed
//! into it ([`in_netns`]); a socket stays in its namespace whichever thread then uses it.
//! Needs root (CAP_SYS_ADMIN and CAP_NET_ADMIN); skipped otherwise.

use std::fs::File;
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::AsRawFd;
use std::process::Command;
use std::time::{Duration, Instant};

use cache_node::vrrp::addr::{NetError, Netlink};
use cache_node::vrrp::announce::{gratuitous_arp, unsolicited_na};
use cache_node::vrrp::packet::{GROUP_V4, GROUP_V6};
use cache_node::vrrp::socket::VrrpSocket;
use nix::sched::{CloneFlags, setns, unshare};
use tokio::runtime::Runtime;
use tokio::time::timeout;

/// The bound on every wait.
const WAIT: Duration = Duration::from_secs(5);

const MAC_A: [u8; 6] = [0x02, 0, 0, 0, 0, 0x0a];
const V4_A: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
const V4_B: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);
const LL_A: Ipv6Addr = Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0xa);
const LL_B: Ipv6Addr = Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0xb);
/// What the peer's neighbour table holds for a VIP before an announcement moves it to `MAC_A`.
const STALE_MAC: &str = "02:00:00:00:00:99";

/// Namespace `a` with `va` (02:00:00:00:00:0a, 192.0.2.1/24, fe80::a) and namespace `b` with
/// `vb` (02:00:00:00:00:0b, 192.0.2.2/24, fe80::b), the two ends of a veth pair, both up.
struct Lab {
    a: File,
    b: File,
    runtime: Runtime,
}

impl Lab {
    /// `None`, with a message, when not root.
    fn new() -> Option<Lab> {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("skipped: the VRRP network tests create network namespaces and need root");
            return None;
        }
        let lab = Lab {
            a: new_netns(),
            b: new_netns(),
            runtime: tokio::runtime::Builder::new_current_thread().enable_all().build().expect("tokio runtime"),
        };
        let b_path = format!("/proc/{}/fd/{}", std::process::id(), lab.b.as_raw_fd());
        lab.in_a(|| {
            ip(&format!(
                "link add va address 02:00:00:00:00:0a type veth peer name vb address 02:00:00:00:00:0b netns {b_path}"
            ))
        });
        for (ns, dev, v4, ll) in [(&lab.a, "va", V4_A, LL_A), (&lab.b, "vb", V4_B, LL_B)] {
            in_netns(ns, || {
                ip("link set lo up");
                // The only link-local address is then ours, usable at once (no DAD).
                ip(&format!("link set {dev} addrgenmode none"));
                ip(&format!("addr add {v4}/24 dev {dev}"));
                ip(&format!("addr add {ll}/64 dev {dev} nodad"));
                ip(&format!("link set {dev} up"));
            });
        }
        // Both ends: each side's IPv6 multicast route comes with its own carrier event, and
        // until then it drops what is sent to ff02::1.
        for (ns, dev) in [(&lab.a, "va"), (&lab.b, "vb")] {
            let netlink = in_netns(ns, || lab.enter(Netlink::new)).expect("netlink");
            lab.block_on(async {
                let deadline = Instant::now() + WAIT;
                while !netlink.interface(dev).await.expect(dev).up {
                    assert!(Instant::now() < deadline, "{dev} did not come up within {WAIT:?}");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            });
        }
        Some(lab)
    }

    fn in_a<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        in_netns(&self.a, f)
    }

    fn in_b<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        in_netns(&self.b, f)
    }

    /// Runs `f` in the runtime's context, for what registers with it (sockets, netlink).
    fn enter<T>(&self, f: impl FnOnce() -> T) -> T {
        let _context = self.runtime.enter();
        f()
    }

    fn block_on<F: Future>(&self, future: F) -> F::Output {
        self.runtime.block_on(future)
    }
}

/// A new anonymous network namespace, alive as long as the returned descriptor (or anything
/// created in it) is.
fn new_netns() -> File {
    std::thread::spawn(|| {
        unshare(CloneFlags::CLONE_NEWNET).expect("unshare(CLONE_NEWNET)");
        File::open("/proc/thread-self/ns/net").expect("the new namespace")
    })
    .join()
    .expect("namespace thread")
}

/// Runs `f` on a thread inside the namespace `ns`.
fn in_netns<T: Send>(ns: &File, f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|scope| {
        let thread = scope.spawn(|| {
            setns(ns, CloneFlags::CLONE_NEWNET).expect("setns");
            f()
        });
        thread.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}

/// Runs `ip` with these space-separated arguments in the calling thread's namespace (a child
/// process inherits it), and returns its output.
fn ip(args: &str) -> String {
    let out = Command::new("ip").args(args.split(' ')).output().expect("ip (iproute2) is needed");
    assert!(out.status.success(), "ip {args}: {}", String::from_utf8_lossy(&out.stderr).trim());
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Waits until `b`'s neighbour table maps `vip` to `MAC_A`, after `announce` ran in `a`;
/// `b` held a stale entry with another address, which only an overriding announcement replaces.
fn assert_announcement_moves_neighbour(lab: &Lab, vip: IpAddr, announce: impl FnOnce() + Send) {
    lab.in_b(|| ip(&format!("neigh add {vip} lladdr {STALE_MAC} dev vb nud stale")));
    lab.in_a(announce);
    let deadline = Instant::now() + WAIT;
    loop {
        let entry = lab.in_b(|| ip(&format!("neigh show {vip} dev vb")));
        if entry.contains("02:00:00:00:00:0a") {
            return;
        }
        assert!(Instant::now() < deadline, "{vip} not moved to 02:00:00:00:00:0a within {WAIT:?}: {entry:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A VRRP socket on `dev` in `ns`, sending from the interface's own address of the family,
/// as the speaker chooses it.
fn open_socket(lab: &Lab, ns: &File, dev: &str, ipv4: bool) -> (VrrpSocket, IpAddr) {
    in_netns(ns, || {
        lab.enter(|| {
            let netlink = Netlink::new().expect("netlink");
            let interface = lab.block_on(netlink.interface(dev)).expect(dev);
            let src: IpAddr = if ipv4 {
                interface.ipv4[0].into()
            } else {
                interface.ipv6_link_local.expect("a link-local address").into()
            };
            (VrrpSocket::open(dev, interface.index, src).expect("VRRP socket"), src)
        })
    })
}

#[test]
fn vrrp_sockets_exchange_adverts_over_ipv4_and_ipv6() {
    let Some(lab) = Lab::new() else { return };
    for (ipv4, expected_a, expected_b, group) in
        [(true, V4_A.into(), V4_B.into(), IpAddr::from(GROUP_V4)), (false, LL_A.into(), LL_B.into(), GROUP_V6.into())]
    {
        let (a, src_a) = open_socket(&lab, &lab.a, "va", ipv4);
        let (b, src_b) = open_socket(&lab, &lab.b, "vb", ipv4);
        assert_eq!((src_a, src_b), (expected_a, expected_b));
        lab.block_on(async {
            a.send(b"advert from a").await.expect("send from a");
            let got = timeout(WAIT, b.recv()).await.expect("b heard nothing").expect("recv in b");
            assert_eq!((got.src, got.dst, got.ttl), (src_a, group, 255), "{got:?}");
            assert_eq!(got.payload, b"advert from a");

            // a's own advert, sent first, would be first in line if multicast loop were on.
            b.send(b"advert from b").await.expect("send from b");
            let got = timeout(WAIT, a.recv()).await.expect("a heard nothing").expect("recv in a");
            assert_eq!((got.src, got.dst, got.ttl), (src_b, group, 255), "{got:?}");
            assert_eq!(got.payload, b"advert from b");
        });
    }
}

#[test]
fn addresses_are_added_and_removed_idempotently() {
    let Some(lab) = Lab::new() else { return };
    let netlink = lab.in_a(|| lab.enter(Netlink::new)).expect("netlink");
    lab.block_on(async {
        let va = netlink.interface("va").await.expect("va");
        assert_eq!((va.name.as_str(), va.mac, va.up), ("va", Some(MAC_A), true));
        assert_eq!((va.ipv4, va.ipv6_link_local), (vec![V4_A], Some(LL_A)));
        let missing = netlink.interface("eth7").await.expect_err("no eth7 in the namespace");
        assert!(matches!(missing, NetError::NoInterface(_)), "{missing:?}");
        assert_eq!(missing.to_string(), "no interface named eth7");

        for (vip, prefix) in [(IpAddr::from(Ipv4Addr::new(192, 0, 2, 100)), 24), ("2001:db8::100".parse().unwrap(), 64)]
        {
            assert!(!netlink.has_address(va.index, vip).await.expect("has_address"));
            for _ in 0..2 {
                netlink.add_address(va.index, vip, prefix).await.expect("add_address");
                assert!(netlink.has_address(va.index, vip).await.expect("has_address"), "{vip} added");
            }
            for _ in 0..2 {
                netlink.del_address(va.index, vip, prefix).await.expect("del_address");
                assert!(!netlink.has_address(va.index, vip).await.expect("has_address"), "{vip} removed");
            }
        }

        // An IPv6 VIP is usable at once: added without duplicate address detection.
        let vip6: IpAddr = "2001:db8::100".parse().unwrap();
        netlink.add_address(va.index, vip6, 64).await.expect("add_address");
        let shown = lab.in_a(|| ip("-6 addr show dev va to 2001:db8::100"));
        assert!(shown.contains("nodad") && !shown.contains("tentative"), "{shown}");
    });
}

#[test]
fn gratuitous_arp_moves_the_peers_neighbour_entry() {
    let Some(lab) = Lab::new() else { return };
    let vip = Ipv4Addr::new(192, 0, 2, 100);
    let netlink = lab.in_a(|| lab.enter(Netlink::new)).expect("netlink");
    let index = lab.block_on(netlink.interface("va")).expect("va").index;
    assert_announcement_moves_neighbour(&lab, vip.into(), || {
        gratuitous_arp(index, MAC_A, vip).expect("gratuitous ARP")
    });
}

#[test]
fn unsolicited_na_moves_the_peers_neighbour_entry() {
    let Some(lab) = Lab::new() else { return };
    let vip: Ipv6Addr = "2001:db8::100".parse().unwrap();
    let netlink = lab.in_a(|| lab.enter(Netlink::new)).expect("netlink");
    let index = lab.block_on(async {
        let index = netlink.interface("va").await.expect("va").index;
        // The NA is sent from the VIP, as keepalived's.
        netlink.add_address(index, vip.into(), 64).await.expect("add_address");
        index
    });
    // The peer's kernel drops an NA whose checksum (the kernel's, on our side) or hop limit is
    // wrong, and keeps the stale entry unless the override flag is set.
    assert_announcement_moves_neighbour(&lab, vip.into(), || {
        unsolicited_na(index, MAC_A, vip).expect("unsolicited NA")
    });
}
