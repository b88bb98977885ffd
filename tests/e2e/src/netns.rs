//! The test run's own network namespace: the control plane, the kubelets' pods, the operator
//! and the tests all live in it, so that pods can have real (documentation) addresses that
//! EndpointSlices accept while no traffic leaves the namespace.

use std::process::Command;

use anyhow::{Context as _, bail};

/// Set in the re-executed process: it runs inside the namespace.
const INSIDE: &str = "CACHEPAIR_E2E_NETNS";

/// Re-executes this process in a new network namespace (`unshare --net`, which needs root or
/// CAP_SYS_ADMIN) and returns its exit code; `None` when already inside, with `lo` up.
pub fn enter() -> anyhow::Result<Option<i32>> {
    if std::env::var_os(INSIDE).is_some() {
        run(&["ip", "link", "set", "lo", "up"])?;
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
