//! The test run's own network namespace: the control plane, the kubelets' pods, the operator
//! and the tests all live in it, so that pods can have real (documentation) addresses that
//! EndpointSlices accept while no traffic leaves the namespace.

use std::process::Command;

use anyhow::{Context as _, bail};

/// Set in the re-executed process: it runs inside the namespace.
const INSIDE: &str = "CACHEPAIR_E2E_NETNS";
/// Dropped packets are routed by this table to a veth whose peer discards them (they are
/// addressed to a gateway MAC that nothing has): silence, as from a host that lost power, not
/// a refusal.
const DROP_TABLE: &str = "200";
const DROP_DEV: &str = "cut0";
/// The gateway nothing answers for (no pod or node gets this address).
const NOWHERE: &str = "192.0.2.255";

/// Re-executes this process in a new network namespace (`unshare --net`, which needs root or
/// CAP_SYS_ADMIN) and returns its exit code; `None` when already inside, with `lo` up.
pub fn enter() -> anyhow::Result<Option<i32>> {
    if std::env::var_os(INSIDE).is_some() {
        run(&["ip", "link", "set", "lo", "up"])?;
        run(&["ip", "link", "add", DROP_DEV, "type", "veth", "peer", "name", "cut1"])?;
        run(&["ip", "link", "set", DROP_DEV, "up"])?;
        run(&["ip", "link", "set", "cut1", "up"])?;
        run(&["ip", "neigh", "add", NOWHERE, "lladdr", "02:00:00:00:00:01", "dev", DROP_DEV, "nud", "permanent"])?;
        run(&["ip", "route", "add", "default", "via", NOWHERE, "dev", DROP_DEV, "onlink", "table", DROP_TABLE])?;
        // Local addresses after the drop rules, so that an address on `lo` can be dropped.
        run(&["ip", "rule", "add", "pref", "100", "lookup", "local"])?;
        run(&["ip", "rule", "del", "pref", "0"])?;
        return Ok(None);
    }
    let exe = std::env::current_exe()?;
    let status = Command::new("unshare")
        .arg("--net")
        .arg("--")
        .arg(exe)
        .args(std::env::args_os().skip(1))
        .env(INSIDE, "1")
        .status()
        .context("unshare (util-linux) is needed")?;
    if status.code() == Some(1) && !nix::unistd::geteuid().is_root() {
        bail!("the end-to-end tests create a network namespace: run them as root (or with CAP_SYS_ADMIN)");
    }
    Ok(Some(status.code().unwrap_or(1)))
}

/// Adds `ip`/32 to `lo` (inside the namespace only); an address already there is fine (a node
/// that comes back).
pub fn add_address(ip: &str) -> anyhow::Result<()> {
    anyhow::ensure!(std::env::var_os(INSIDE).is_some(), "not inside the test's network namespace");
    match run(&["ip", "addr", "add", &format!("{ip}/32"), "dev", "lo"]) {
        Err(e) if e.to_string().contains("already assigned") => Ok(()),
        other => other,
    }
}

fn run(argv: &[&str]) -> anyhow::Result<()> {
    let out = Command::new(argv[0]).args(&argv[1..]).output().with_context(|| argv[0].to_string())?;
    if !out.status.success() {
        bail!("{}: {}", argv.join(" "), String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(())
}

/// Silently drops every packet to `ip`, as to a host that lost power.
pub fn drop_to(ip: &str) -> anyhow::Result<()> {
    anyhow::ensure!(std::env::var_os(INSIDE).is_some(), "not inside the test's network namespace");
    run(&["ip", "rule", "add", "pref", "10", "to", &format!("{ip}/32"), "lookup", DROP_TABLE])
}

/// Undoes `drop_to`; nothing to undo is fine.
pub fn undrop_to(ip: &str) -> anyhow::Result<()> {
    anyhow::ensure!(std::env::var_os(INSIDE).is_some(), "not inside the test's network namespace");
    let rule = ["ip", "rule", "del", "pref", "10", "to", &format!("{ip}/32"), "lookup", DROP_TABLE];
    loop {
        match run(&rule) {
            Ok(()) => continue,
            Err(e) if e.to_string().contains("No such file") => return Ok(()),
            Err(e) => return Err(e),
        }
    }
}

/// Silently drops the TCP packets on `port` that processes running as `uid` send to any of
/// `ips` (to the port, or from it: the replies). Pods run as their own user, so this cuts the
/// pods at `ips` off from one another on that port while the tests, kubelets and operator
/// still reach them. (Addresses alone cannot tell them apart: on one host a connection to a
/// local address has that address as its source too.)
pub fn cut_port(uid: u32, port: u16, ips: &[&str]) -> anyhow::Result<()> {
    anyhow::ensure!(std::env::var_os(INSIDE).is_some(), "not inside the test's network namespace");
    for rule in port_rules(uid, port, ips) {
        run(&["ip", "rule", "add"].iter().copied().chain(rule.iter().map(String::as_str)).collect::<Vec<_>>())?;
    }
    Ok(())
}

/// Undoes `cut_port`.
pub fn heal_port(uid: u32, port: u16, ips: &[&str]) -> anyhow::Result<()> {
    for rule in port_rules(uid, port, ips) {
        run(&["ip", "rule", "del"].iter().copied().chain(rule.iter().map(String::as_str)).collect::<Vec<_>>())?;
    }
    Ok(())
}

fn port_rules(uid: u32, port: u16, ips: &[&str]) -> Vec<Vec<String>> {
    let (uids, port) = (format!("{uid}-{uid}"), port.to_string());
    let mut rules = Vec::new();
    for ip in ips {
        let to = format!("{ip}/32");
        for dir in ["dport", "sport"] {
            let rule = ["pref", "10", "uidrange", &uids, "to", &to, "ipproto", "tcp", dir, &port, "lookup", DROP_TABLE];
            rules.push(rule.map(String::from).to_vec());
        }
    }
    rules
}
