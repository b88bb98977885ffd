//! One `vrrp_instance` at work: its socket, timers, tracked checks and interfaces, virtual
//! addresses, takeover announcements and notify hooks, around the pure state machine of
//! [`super::state`]. Each instance runs as its own task.

use std::future::pending;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, anyhow, bail};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

use super::accept::{Expect, Verdict, judge};
use super::addr::{Interface, NetError, Netlink};
use super::announce;
use super::config::{self, Config, Garp};
use super::metrics::Metrics;
use super::packet::{Advert, GROUP_V4, GROUP_V6, Version};
use super::role::{self, ROLE_POLL, RoleProbe};
use super::script::{RunAs, Script};
use super::socket::VrrpSocket;
use super::state::{Action, Input, Instance, Params, State};
use super::track::{self, Check, Tracked};

/// How often tracked interfaces (and the instance's own) are looked at.
const LINK_POLL: Duration = Duration::from_secs(1);

/// A virtual address and the interface it lives on.
#[derive(Debug, Clone)]
struct Vip {
    addr: IpAddr,
    prefix: u8,
    ifindex: u32,
    mac: Option<[u8; 6]>,
}

/// A tracked `vrrp_script` as this instance runs it; `probe` moves to its own task at run.
struct TrackedScript {
    probe: Option<Probe>,
    interval: Duration,
    timeout: Duration,
    check: Check,
}

/// What a tracked `vrrp_script` runs.
enum Probe {
    Script(Script),
    /// cache-node's own role check, asked in-process (see [`role`]).
    Role(RoleProbe),
}

impl Probe {
    async fn passes(&mut self, timeout: Duration) -> bool {
        match self {
            Probe::Script(script) => script.check(timeout).await,
            Probe::Role(role) => role.is_master(timeout).await,
        }
    }
}

#[derive(Default)]
struct Notify {
    master: Option<Script>,
    backup: Option<Script>,
    fault: Option<Script>,
    stop: Option<Script>,
    any: Option<Script>,
}

pub struct Speaker {
    name: String,
    machine: Instance,
    base_priority: u8,
    expect: Expect,
    socket: VrrpSocket,
    netlink: Arc<Netlink>,
    primary: IpAddr,
    group: IpAddr,
    vips: Vec<Vip>,
    garp: Garp,
    scripts: Vec<TrackedScript>,
    /// The instance's own interface (weight 0), then its `track_interface`s.
    links: Vec<(String, i32)>,
    /// The state of every tracked thing: scripts first, then links.
    tracked: Vec<Tracked>,
    notify: Notify,
    announcing: Option<JoinHandle<()>>,
    metrics: Arc<Metrics>,
}

impl Speaker {
    /// Checks the instance's scripts, waits until its interfaces exist with an address to
    /// speak from (as keepalived does, rather than giving up: an interface may come later),
    /// opens its socket, and removes its virtual addresses if a previous run left them. None
    /// when `stopped` turns true while waiting.
    pub async fn start(
        config: &Config,
        instance: &config::Instance,
        netlink: Arc<Netlink>,
        metrics: Arc<Metrics>,
        stopped: &mut watch::Receiver<bool>,
    ) -> anyhow::Result<Option<Speaker>> {
        let name = instance.name.clone();
        let secure = config.global.enable_script_security;
        let default_user = RunAs::resolve(&config.global.script_user).map_err(|e| anyhow!("script_user: {e}"))?;
        let mut scripts = Vec::new();
        let mut tracked = Vec::new();
        for t in &instance.track_script {
            let def = config
                .scripts
                .iter()
                .find(|s| s.name == t.name)
                .ok_or_else(|| anyhow!("vrrp_instance {name}: no vrrp_script {}", t.name))?;
            let run_as = match &def.user {
                Some(_) => RunAs::resolve(&def.user).map_err(|e| anyhow!("vrrp_script {}: {e}", def.name))?,
                None => default_user,
            };
            let (probe, interval) = match role::admin_of(&def.command) {
                Some(admin) => {
                    info!(instance = %name, script = %def.name, %admin, every = ?ROLE_POLL, "following the cache's role in-process");
                    (Probe::Role(RoleProbe::new(admin)), ROLE_POLL)
                }
                None => {
                    let script = Script::new(&def.command, run_as, secure)
                        .map_err(|e| anyhow!("vrrp_script {}: {e}", def.name))?;
                    (Probe::Script(script), def.interval)
                }
            };
            scripts.push(TrackedScript {
                probe: Some(probe),
                interval,
                timeout: def.timeout.unwrap_or(def.interval),
                check: Check::new(def.fall, def.rise),
            });
            tracked.push(Tracked { weight: t.weight.unwrap_or(def.weight), up: true });
        }
        let mut links = vec![(instance.interface.clone(), 0)];
        links.extend(instance.track_interface.iter().map(|t| (t.name.clone(), t.weight.unwrap_or(0))));
        tracked.extend(links.iter().map(|&(_, weight)| Tracked { weight, up: true }));

        let hook = |line: &Option<String>| -> anyhow::Result<Option<Script>> {
            line.as_deref()
                .map(|l| Script::new(l, default_user, secure).map_err(|e| anyhow!("vrrp_instance {name}: notify: {e}")))
                .transpose()
        };
        let notify = Notify {
            master: hook(&instance.notify.master)?,
            backup: hook(&instance.notify.backup)?,
            fault: hook(&instance.notify.fault)?,
            stop: hook(&instance.notify.stop)?,
            any: hook(&instance.notify.any)?,
        };

        let mut waiting = false;
        let Site { iface, primary, vips } = loop {
            match locate(instance, &netlink).await {
                Ok(site) => break site,
                Err(e) => {
                    if !waiting {
                        warn!(instance = %name, "{e:#}; waiting for it");
                        waiting = true;
                    }
                    tokio::select! {
                        () = tokio::time::sleep(LINK_POLL) => {}
                        _ = stopped.wait_for(|stop| *stop) => return Ok(None),
                    }
                }
            }
        };
        if waiting {
            info!(instance = %name, interface = %iface.name, "interface ready");
        }
        let v6 = primary.is_ipv6();
        let group = if v6 { IpAddr::V6(GROUP_V6) } else { IpAddr::V4(GROUP_V4) };
        let socket = VrrpSocket::open(&iface.name, iface.index, primary)
            .with_context(|| format!("vrrp_instance {name}: opening the VRRP socket on {}", iface.name))?;
        for vip in &vips {
            netlink
                .del_address(vip.ifindex, vip.addr, vip.prefix)
                .await
                .with_context(|| format!("vrrp_instance {name}: removing a stale {}", vip.addr))?;
        }

        let version = match instance.vrrp_version {
            2 => Version::V2,
            3 => Version::V3,
            v => bail!("vrrp_instance {name}: VRRP version {v}"),
        };
        let interval_cs = u16::try_from(instance.advert_int.as_millis() / 10)
            .with_context(|| format!("vrrp_instance {name}: advert_int {:?}", instance.advert_int))?;
        let params = Params {
            version,
            priority: instance.priority,
            advert_interval_cs: interval_cs,
            start_as_master: instance.state == config::InitialState::Master,
            preempt: !instance.nopreempt,
            preempt_delay: instance.preempt_delay,
            primary,
        };
        let expect = Expect {
            version,
            vrid: instance.virtual_router_id,
            interval_cs,
            password: instance.password.clone(),
            addresses: vips.iter().map(|v| v.addr).collect(),
        };
        Ok(Some(Speaker {
            name,
            machine: Instance::new(params),
            base_priority: instance.priority,
            expect,
            socket,
            netlink,
            primary,
            group,
            vips,
            garp: instance.garp.clone(),
            scripts,
            links,
            tracked,
            notify,
            announcing: None,
            metrics,
        }))
    }

    /// Runs until `shutdown` turns true, then leaves as keepalived does: a master sends
    /// priority 0 so the backup takes over at once, and drops the virtual addresses.
    pub async fn run(mut self, mut shutdown: watch::Receiver<bool>) {
        let (results_tx, mut results) = mpsc::channel(16);
        let checkers: Vec<JoinHandle<()>> = self
            .scripts
            .iter_mut()
            .enumerate()
            .filter_map(|(i, s)| {
                let probe = s.probe.take()?;
                Some(tokio::spawn(run_check(i, probe, s.interval, s.timeout, results_tx.clone())))
            })
            .collect();
        let mut link_poll = tokio::time::interval(LINK_POLL);
        info!(instance = %self.name, vrid = self.expect.vrid, primary = %self.primary, "VRRP instance starting");
        self.poll_links().await;
        self.apply(Input::Startup).await;
        let stopping = async move {
            let _ = shutdown.wait_for(|stop| *stop).await;
        };
        tokio::pin!(stopping);
        loop {
            let deadline = self.machine.deadline();
            tokio::select! {
                () = &mut stopping => break,
                received = self.socket.recv() => match received {
                    Ok(rx) => match judge(&self.expect, rx.src, rx.dst, rx.ttl, &rx.payload) {
                        Verdict::Accept(advert) => {
                            self.metrics.received(&self.name);
                            let input = Input::Advert { src: rx.src, priority: advert.priority, interval_cs: advert.interval_cs };
                            self.apply(input).await;
                        }
                        Verdict::Ignore => {}
                        Verdict::Drop(reason) => {
                            self.metrics.dropped(&self.name);
                            warn!(instance = %self.name, "advert dropped: {reason}");
                        }
                    },
                    Err(e) => {
                        warn!(instance = %self.name, error = %e, "receiving adverts");
                        // A persistent socket error must not spin the loop.
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                },
                _ = sleep_until(deadline) => self.apply(Input::Timer).await,
                Some((i, ok)) = results.recv() => {
                    if self.scripts[i].check.record(ok) {
                        info!(instance = %self.name, check = i, passing = ok, "tracked script changed");
                        self.tracked[i].up = ok;
                        self.retrack().await;
                    }
                }
                _ = link_poll.tick() => self.poll_links().await,
            }
        }
        for c in checkers {
            c.abort();
        }
        self.apply(Input::Shutdown).await;
        info!(instance = %self.name, "VRRP instance stopped");
    }

    async fn poll_links(&mut self) {
        let (mut changed, mut deaf) = (false, false);
        for (i, (name, _)) in self.links.iter().enumerate() {
            let up = match self.netlink.interface(name).await {
                Ok(iface) => iface.up,
                Err(NetError::NoInterface(_)) => false,
                // A failed read says nothing about the link: the next poll asks again.
                Err(e) => {
                    warn!(instance = %self.name, interface = %name, error = %e, "cannot read a tracked interface");
                    continue;
                }
            };
            let t = &mut self.tracked[self.scripts.len() + i];
            if t.up != up {
                info!(instance = %self.name, interface = %name, up, "tracked interface changed");
                t.up = up;
                changed = true;
                // Its own interface (the first) down: it may have missed adverts.
                deaf |= i == 0 && !up;
            }
        }
        if deaf {
            self.apply(Input::Deaf).await;
        }
        if changed {
            self.retrack().await;
        }
    }

    async fn retrack(&mut self) {
        let (priority, fault) = track::effective(self.base_priority, &self.tracked);
        if priority != self.machine.priority() {
            info!(instance = %self.name, priority, "priority changed");
            self.metrics.priority(&self.name, priority);
            self.apply(Input::Priority(priority)).await;
        }
        if fault != (self.machine.state() == State::Fault) {
            self.apply(Input::Fault(fault)).await;
        }
    }

    async fn apply(&mut self, input: Input) {
        for action in self.machine.handle(Instant::now(), input) {
            match action {
                Action::Send { priority } => self.send(priority).await,
                Action::Transition { from, to } => self.transition(from, to).await,
            }
        }
    }

    async fn send(&self, priority: u8) {
        let advert = Advert {
            version: self.expect.version,
            vrid: self.expect.vrid,
            priority,
            interval_cs: self.expect.interval_cs,
            addresses: self.expect.addresses.clone(),
            password: self.expect.password.clone(),
        };
        self.metrics.sent(&self.name);
        let sent = match advert.encode(self.primary, self.group) {
            Ok(msg) => self.socket.send(&msg).await.map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        if let Err(e) = sent {
            warn!(instance = %self.name, error = %e, "sending an advert");
        }
    }

    async fn transition(&mut self, from: State, to: State) {
        info!(instance = %self.name, from = from.name(), to = to.name(), priority = self.machine.priority(), "VRRP state");
        self.metrics.transition(&self.name, to);
        self.metrics.priority(&self.name, self.machine.priority());
        if to == State::Master {
            for vip in &self.vips {
                if let Err(e) = self.netlink.add_address(vip.ifindex, vip.addr, vip.prefix).await {
                    warn!(instance = %self.name, vip = %vip.addr, error = %e, "adding the virtual address");
                }
            }
            self.announcing = Some(tokio::spawn(announce_schedule(self.vips.clone(), self.garp.clone())));
        }
        if from == State::Master {
            if let Some(task) = self.announcing.take() {
                task.abort();
            }
            for vip in &self.vips {
                if let Err(e) = self.netlink.del_address(vip.ifindex, vip.addr, vip.prefix).await {
                    warn!(instance = %self.name, vip = %vip.addr, error = %e, "removing the virtual address");
                }
            }
        }
        let hook = match to {
            State::Master => &self.notify.master,
            State::Backup => &self.notify.backup,
            State::Fault => &self.notify.fault,
            State::Initialize => &self.notify.stop,
        };
        if let Some(script) = hook {
            script.notify(&[]);
        }
        if let Some(script) = &self.notify.any {
            script.notify(&["INSTANCE", &self.name, to.name(), &self.machine.priority().to_string()]);
        }
    }
}

/// Where an instance speaks from.
struct Site {
    iface: Interface,
    /// The source of its adverts: `mcast_src_ip`, else the interface's first IPv4 address (or
    /// its IPv6 link-local address for IPv6 virtual addresses).
    primary: IpAddr,
    vips: Vec<Vip>,
}

async fn locate(instance: &config::Instance, netlink: &Netlink) -> anyhow::Result<Site> {
    let name = &instance.name;
    let iface = netlink.interface(&instance.interface).await.with_context(|| format!("vrrp_instance {name}"))?;
    let v6 = instance.virtual_ipaddress.first().is_some_and(|v| v.addr.is_ipv6());
    let primary = match instance.mcast_src_ip {
        Some(ip) => ip,
        None if v6 => iface
            .ipv6_link_local
            .map(IpAddr::V6)
            .ok_or_else(|| anyhow!("vrrp_instance {name}: {} has no IPv6 link-local address", iface.name))?,
        None => iface
            .ipv4
            .first()
            .map(|&ip| IpAddr::V4(ip))
            .ok_or_else(|| anyhow!("vrrp_instance {name}: {} has no IPv4 address", iface.name))?,
    };
    let mut vips = Vec::new();
    for v in &instance.virtual_ipaddress {
        let (ifindex, mac) = match &v.dev {
            Some(dev) if *dev != iface.name => {
                let other = netlink.interface(dev).await.with_context(|| format!("vrrp_instance {name}"))?;
                (other.index, other.mac)
            }
            _ => (iface.index, iface.mac),
        };
        vips.push(Vip { addr: v.addr, prefix: v.prefix, ifindex, mac });
    }
    Ok(Site { iface, primary, vips })
}

/// Runs a check every `interval` and reports each result as `(index, passed)`.
async fn run_check(
    i: usize,
    mut probe: Probe,
    interval: Duration,
    timeout: Duration,
    results: mpsc::Sender<(usize, bool)>,
) {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if results.send((i, probe.passes(timeout).await)).await.is_err() {
            return;
        }
    }
}

/// keepalived's takeover announcements: `garp_master_repeat` rounds at once, as many again
/// after `garp_master_delay`, then `garp_master_refresh_repeat` every `garp_master_refresh`.
async fn announce_schedule(vips: Vec<Vip>, garp: Garp) {
    announce_rounds(&vips, &garp, garp.master_repeat).await;
    if !garp.master_delay.is_zero() {
        tokio::time::sleep(garp.master_delay).await;
        announce_rounds(&vips, &garp, garp.master_repeat).await;
    }
    if let Some(refresh) = garp.master_refresh.filter(|r| !r.is_zero()) {
        loop {
            tokio::time::sleep(refresh).await;
            announce_rounds(&vips, &garp, garp.master_refresh_repeat).await;
        }
    }
}

async fn announce_rounds(vips: &[Vip], garp: &Garp, rounds: u32) {
    for _ in 0..rounds {
        for vip in vips {
            let Some(mac) = vip.mac else {
                debug!(vip = %vip.addr, "no link-layer address to announce from");
                continue;
            };
            let (sent, gap) = match vip.addr {
                IpAddr::V4(ip) => (announce::gratuitous_arp(vip.ifindex, mac, ip), garp.interval),
                IpAddr::V6(ip) => (announce::unsolicited_na(vip.ifindex, mac, ip), garp.gna_interval),
            };
            if let Err(e) = sent {
                warn!(vip = %vip.addr, error = %e, "announcing the virtual address");
            }
            if !gap.is_zero() {
                tokio::time::sleep(gap).await;
            }
        }
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => pending().await,
    }
}
