//! Pair replication, repcached's semantics done right.
//!
//! - [`codec`]: frames and messages on the replication port; [`auth`]: the shared-secret
//!   handshake that opens every link, with [`secret_file`] re-reading the secrets for each;
//!   [`roles`]: who is master, as a pure rule; [`backlog`]: this node's own changes, addressed
//!   by stream offset;
//! - [`transport`]: what a link runs over, plain TCP or mutual TLS;
//! - [`link`]: one authenticated connection to the peer: handshake, sync, both streams;
//! - [`status`]: the node's replication state, which the engine and the admin listener read;
//! - this module: the change feed the store reports to, and the control loop (join the peer or
//!   become master, accept the peer, promote on master loss).
//!
//! A master accepts on its replication port at all times, each connection's handshake in a task
//! of its own: idle or hostile connections cannot keep the peer out, and a peer that connects
//! again while this node still holds its old link (it restarted, or gave up on the link first)
//! replaces that link.
//!
//! Both nodes serve reads and writes. Each streams its own local changes to the other; every
//! item carries a version and the newer version wins, so both converge whatever the order.
//! A link that resumes within the backlog continues from the peer's offset; otherwise the
//! sender walks its store shard by shard (a snapshot) and then streams from the offset it
//! noted before the snapshot began: nothing falls in between.

pub mod auth;
pub mod backlog;
pub mod codec;
mod lag;
mod link;
pub mod roles;
pub mod secret_file;
pub mod status;
pub mod transport;

use std::collections::VecDeque;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, mpsc, oneshot, watch};
use tracing::{error, info, warn};

use crate::rate_limited_log::RateLimitedLog;
use crate::server::{ACCEPT_BACKOFF, ACCEPT_ERROR_LOG_INTERVAL};
use crate::store::{Change, ChangeSink, Clock, Store, version};
use backlog::Backlog;
use codec::{Entry, Message, Op, ReplId, Role};
use link::{Authenticated, HANDSHAKE_TIMEOUT, Reached};
use secret_file::SecretFile;
use status::Status;
use transport::LinkTls;

/// Replication settings (from `-x`, `-X`, `-q` and the `--repl-*` options).
#[derive(Debug, Clone)]
pub struct Config {
    /// The peer's replication address (`-x`), if any.
    pub peer: Option<String>,
    /// Where this node listens when it is master (`-X` on the `-l` address).
    pub listen: SocketAddr,
    /// The shared secrets, read again for each connection.
    pub secrets: Arc<SecretFile>,
    /// Mutual TLS on the link (`--repl-tls-*`), if configured.
    pub tls: Option<Arc<LinkTls>>,
    /// Heartbeat interval; the link is dead after `misses` intervals without a frame.
    pub heartbeat: Duration,
    pub misses: u32,
    /// Bytes of own changes kept for partial resyncs.
    pub backlog_bytes: usize,
    /// Largest frame accepted (`-I` plus room).
    pub max_frame: usize,
    /// Synchronous mode: a write is acknowledged once the peer applied it, or after this long.
    pub sync_timeout: Option<Duration>,
    /// Open the client ports at once instead of after a joining slave's full copy.
    pub serve_while_syncing: bool,
}

/// The store's change sink: encodes each local change into the backlog.
pub struct Feed {
    backlog: Mutex<Backlog>,
    /// Where a change is encoded before it joins the backlog; reused, so that recording a
    /// change allocates nothing.
    scratch: Mutex<Vec<u8>>,
    /// Off until a peer first links: a node alone records nothing and pays nothing.
    recording: AtomicBool,
    changed: Notify,
    /// When the oldest change the link has not read yet was recorded, for the lag measurement
    /// (nanoseconds since `epoch`, plus one; 0: none). Set and taken under the backlog's lock.
    unsent_since: AtomicU64,
    epoch: Instant,
    clock: Clock,
    status: Arc<Status>,
}

impl Feed {
    fn unix(&self, rel: crate::store::RelTime) -> u64 {
        if rel == 0 { 0 } else { self.clock.to_unix(rel) }
    }

    /// Copies up to `max` bytes of the stream from `offset` into `out`. When that reaches the
    /// end, it also returns when the oldest change among them was recorded.
    fn read(&self, offset: u64, max: usize, out: &mut Vec<u8>) -> Result<(usize, Option<Instant>), backlog::Gap> {
        let backlog = self.backlog.lock();
        let n = backlog.read(offset, max, out)?;
        let since = match offset + n as u64 == backlog.end() {
            true => self.unsent_since.swap(0, Relaxed).checked_sub(1),
            false => None,
        };
        Ok((n, since.map(|ns| self.epoch + Duration::from_nanos(ns))))
    }
}

impl ChangeSink for Feed {
    fn record(&self, change: Change<'_>) {
        if !self.recording.load(Relaxed) {
            return;
        }
        let mut backlog = self.backlog.lock();
        let offset = backlog.end();
        let op = match change {
            Change::Set(it) => Op::Set(Entry {
                key: it.key(),
                value: it.value(),
                flags: it.flags,
                exptime: self.unix(it.exptime),
                cas: it.cas,
                version: it.version,
                deleted: false,
            }),
            Change::Delete { key, version } => Op::Delete { key, version },
            Change::Flush(flush) => {
                Op::Flush { at: if flush.delayed { version::millis_of(flush.cut) } else { 0 }, version: flush.issued }
            }
        };
        let mut frame = self.scratch.lock();
        frame.clear();
        if (Message::Op { offset, op }).encode(&mut frame).is_ok() {
            let end = backlog.append(&frame);
            self.status.stream_end.store(end, Relaxed);
            self.status.backlog_bytes.store(end - backlog.start(), Relaxed);
            if self.unsent_since.load(Relaxed) == 0 {
                self.unsent_since.store(self.epoch.elapsed().as_nanos() as u64 + 1, Relaxed);
            }
        }
        drop(backlog);
        self.changed.notify_waiters();
    }
}

/// A node's replication: its state, its feed, and the control loop.
pub struct Replicator {
    config: Config,
    /// The store it fills from the peer and copies to it, and the clock its times are
    /// relative to: the engine's own.
    store: Arc<Store>,
    clock: Clock,
    node_id: u64,
    /// This node's stream id: a restarted node starts a new stream.
    repl_id: ReplId,
    feed: Arc<Feed>,
    status: Arc<Status>,
    /// How far this node has the peer's stream.
    peer_stream: Mutex<(ReplId, u64)>,
    /// True once client ports may open (see [`Replicator::new`]).
    ready: watch::Sender<bool>,
}

impl Replicator {
    /// Wires replication into the store; `status` is where it reports its state. Returns the
    /// replicator and a receiver that turns true when client ports may open: at once for a
    /// master, after the full copy for a joining slave (repcached's `marugoto_end`).
    pub fn new(
        config: Config,
        store: Arc<Store>,
        clock: Clock,
        status: Arc<Status>,
    ) -> anyhow::Result<(Arc<Self>, watch::Receiver<bool>)> {
        let mut id = [0u8; 8];
        getrandom::fill(&mut id).map_err(|e| anyhow::anyhow!("no randomness for the node id: {e}"))?;
        let node_id = u64::from_be_bytes(id);
        let mut repl_id = [0u8; 16];
        getrandom::fill(&mut repl_id).map_err(|e| anyhow::anyhow!("no randomness for the stream id: {e}"))?;
        let sync_ms = config.sync_timeout.map_or(0, |t| t.as_millis().max(1) as u64);
        status.sync_timeout_ms.store(sync_ms, Relaxed);
        status.tls.store(config.tls.is_some(), Relaxed);
        let feed = Arc::new(Feed {
            backlog: Mutex::new(Backlog::new(config.backlog_bytes)),
            scratch: Mutex::new(Vec::new()),
            recording: AtomicBool::new(false),
            changed: Notify::new(),
            unsent_since: AtomicU64::new(0),
            epoch: Instant::now(),
            clock: clock.clone(),
            status: status.clone(),
        });
        store.hlc().set_tag(node_id as u8);
        if store.set_change_sink(feed.clone()).is_err() {
            anyhow::bail!("replication is already running");
        }
        let (ready, ready_rx) = watch::channel(false);
        let repl = Arc::new(Self {
            config,
            store,
            clock,
            node_id,
            repl_id,
            feed,
            status,
            peer_stream: Mutex::new((codec::NO_HISTORY, 0)),
            ready,
        });
        Ok((repl, ready_rx))
    }

    /// The control loop: repcached's start-up rule, then master duty until the process ends.
    pub async fn run(self: Arc<Self>) {
        if self.config.serve_while_syncing {
            self.ready.send_replace(true);
        }
        if let Some(peer) = self.config.peer.clone() {
            self.status.set_role(Role::Starting);
            self.clone().join(&peer).await;
        }
        loop {
            if self.status.role() == Role::Slave {
                self.clone().rejoin().await;
            }
            if self.status.role() == Role::Slave {
                self.promote();
            } else if self.status.role() == Role::Starting {
                self.status.set_role(Role::Master);
            }
            self.clone().serve_as_master().await;
        }
    }

    /// repcached's start-up rule: join the peer if it answers, become master if it cannot be
    /// reached (refused, no answer to the connection within `CONNECT_TIMEOUT`, or closed
    /// without a greeting). A peer that greets us (or refuses us, busy; or greets in another
    /// protocol version), or holds the connection open without a word, is alive: a link that
    /// then fails (a handshake too slow on a starved machine, a wrong secret) is retried with
    /// this node still `starting`, since becoming master beside a live master would be a split
    /// brain. A master greets every connection at once, from a task of its own, so strangers on
    /// its port cannot hold the greeting back. Over TLS, any answer to the TLS handshake counts
    /// as a greeting; a node whose own TLS files fail to load keeps trying, still starting.
    /// Returns once a link came up and ended, or the peer is unreachable.
    async fn join(self: Arc<Self>, peer: &str) {
        let mut failures = 0u32;
        loop {
            match self.connect(peer).await {
                Ok(stream) => {
                    info!(%peer, "joining the peer");
                    match self.clone().link(stream, HANDSHAKE_TIMEOUT).await {
                        Reached::Up => return,
                        Reached::Nothing => {
                            info!(%peer, "the peer closed the connection without a greeting: starting as master");
                            return;
                        }
                        Reached::Silence | Reached::Greeted | Reached::Untried => {}
                    }
                }
                Err(e) => {
                    info!(%peer, error = %e, "peer unreachable: starting as master");
                    return;
                }
            }
            failures += 1;
            if failures.is_power_of_two() {
                warn!(%peer, failures, "the peer is reachable but the link did not come up: retrying, still starting");
            }
            // Quick retries for a slow peer, backing off to a few seconds for a refusing one.
            let backoff = JOIN_RETRY.saturating_mul(1 << failures.min(5)).min(JOIN_RETRY_MAX);
            tokio::time::sleep(backoff / 2 + jitter(backoff / 2)).await;
        }
    }

    /// A slave whose link ended tries its master again for as long as a heartbeat failure
    /// would take to notice (`misses` heartbeats): a short network drop resumes from the
    /// backlog and changes no role. A refused connection means the master process is gone, and
    /// the slave takes over at once. A master that still greets (or refuses) it is alive: the
    /// slave keeps trying and never takes over while it does; one that accepts but does not
    /// greet within the patience left is taken for dead. A master that still holds the old link
    /// takes the new one in its place.
    async fn rejoin(self: Arc<Self>) {
        let Some(peer) = self.config.peer.clone() else { return };
        let patience = self.config.heartbeat * self.config.misses;
        let mut deadline = tokio::time::Instant::now() + patience;
        while self.status.role() == Role::Slave && tokio::time::Instant::now() < deadline {
            let attempt = tokio::time::timeout_at(deadline, self.connect(&peer)).await;
            // A master that has not greeted by the deadline has missed as many heartbeats as
            // a failure takes: it counts as dead (a frozen process, whose kernel still accepts).
            let handshake = (deadline - tokio::time::Instant::now()).max(self.config.heartbeat);
            match attempt.unwrap_or_else(|_| Err(std::io::ErrorKind::TimedOut.into())) {
                Ok(stream) => match self.clone().link(stream, handshake).await {
                    Reached::Up => deadline = tokio::time::Instant::now() + patience,
                    // A master that answers is alive; and a node that cannot load its own TLS
                    // files cannot tell, so it does not take over on that account.
                    Reached::Greeted | Reached::Untried => {
                        deadline = tokio::time::Instant::now() + patience;
                        tokio::time::sleep(self.config.heartbeat / 2).await;
                    }
                    Reached::Silence | Reached::Nothing => {}
                },
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => return,
                Err(_) => tokio::time::sleep(self.config.heartbeat / 2).await,
            }
        }
    }

    /// A graceful shutdown, once clients are no longer served: a master hands everything it
    /// acknowledged and its role to the slave, as in a switchover, so that nothing is lost and
    /// the slave need not detect a failure. A slave whose link is down is waited for only while
    /// it lacks some of this node's stream. Gives up after `timeout`, saying so in the log and
    /// in `shutdown_handover_timeouts`; the slave then takes over when this process is gone.
    pub async fn hand_over_for_shutdown(&self, timeout: Duration) {
        let status = &self.status;
        if status.role() != Role::Master || !self.feed.recording.load(Relaxed) {
            return;
        }
        info!(?timeout, "shutdown: handing the master role over to the slave");
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if status.role() != Role::Master {
                info!("shutdown: the slave took over with everything this node acknowledged");
                return;
            }
            let unconfirmed = status.stream_end().saturating_sub(status.peer_acked.load(Relaxed));
            let linked = status.link_up.load(Relaxed);
            if !linked && unconfirmed == 0 {
                info!("shutdown: no slave linked, and the last one confirmed everything");
                return;
            }
            if tokio::time::Instant::now() >= deadline {
                status.shutdown_handover_timeouts.fetch_add(1, Relaxed);
                // An error, not a warning: writes this node acknowledged may be lost.
                error!(
                    ?timeout,
                    unconfirmed_bytes = unconfirmed,
                    linked,
                    "shutdown: gave up handing the master role over; the slave takes over without the unconfirmed writes"
                );
                return;
            }
            // Repeated requests are harmless: a link hands over at most once.
            if linked {
                status.stepdown.notify_one();
            }
            tokio::time::sleep(HANDOVER_POLL).await;
        }
    }

    /// The master was lost: take over. Clients keep being served throughout.
    fn promote(&self) {
        let term = self.status.term.fetch_add(1, Relaxed) + 1;
        self.status.failovers.fetch_add(1, Relaxed);
        self.status.set_role(Role::Master);
        warn!(term, "master lost: this node is master now");
    }

    /// Listens for the peer (and probes it, to find a second master after a partition) until
    /// no link is up and this node is slave.
    async fn serve_as_master(self: Arc<Self>) {
        let mut bound = TcpListener::bind(self.config.listen).await;
        // Client ports open only now: a peer started once they answer (as scripts and
        // orchestrators do) must find this master's port open, not refused, or it becomes a
        // second master. A port that is taken does not keep clients waiting.
        self.ready.send_replace(true);
        let listener = loop {
            match bound {
                Ok(l) => break l,
                Err(e) => {
                    warn!(addr = %self.config.listen, error = %e, "cannot listen for the peer yet; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    bound = TcpListener::bind(self.config.listen).await;
                }
            }
        };
        info!(addr = %self.config.listen, "master: listening for the peer");
        let (authenticated_tx, mut authenticated) = mpsc::channel(1);
        let acceptor = tokio::spawn(self.clone().accept(listener, authenticated_tx));
        let mut link: Option<Link> = None;
        loop {
            // Jittered, so that two masters probing each other do not stay in step.
            let probe = tokio::time::sleep(PROBE_INTERVAL / 2 + jitter(PROBE_INTERVAL));
            tokio::select! {
                Some(conn) = authenticated.recv() => {
                    // A pair has one peer, and a peer connects only when it has no link: the
                    // link this node holds is half-dead (the peer restarted, or noticed a gap
                    // first), and the newer connection replaces it. Two masters' probes that
                    // cross are the exception: both sides keep the connection accepted by the
                    // node with the higher id.
                    if link.as_ref().is_some_and(|l| l.probe) && self.node_id < conn.peer_id {
                        tokio::spawn(conn.refuse("busy: linked to this peer already"));
                        continue;
                    }
                    if link.take().is_some() {
                        self.status.link_up.store(false, Relaxed);
                        self.status.links_replaced.fetch_add(1, Relaxed);
                        warn!(peer = %conn.addr, "the peer connected again: its new link replaces the old one");
                    }
                    link = Some(Link { probe: false, run: Box::pin(self.clone().link_accepted(conn)) });
                }
                () = until_done(&mut link) => link = None,
                _ = probe, if link.is_none() && self.config.peer.is_some() && !self.peer_is_self() => {
                    link = Some(Link { probe: true, run: Box::pin(self.clone().probe()) });
                }
            }
            if link.is_none() && self.status.role() == Role::Slave {
                // Only a master listens: close the port before joining the new master.
                acceptor.abort();
                let _ = acceptor.await;
                return;
            }
        }
    }

    /// Accepts every connection on the replication port, whatever else goes on, and runs each
    /// one's handshake in a task of its own; those that authenticate go to `authenticated`.
    async fn accept(self: Arc<Self>, listener: TcpListener, authenticated: mpsc::Sender<Authenticated>) {
        // Dropped with this task, which ends the handshakes still pending.
        let mut pending = Pending::default();
        let mut accept_errors = RateLimitedLog::new(ACCEPT_ERROR_LOG_INTERVAL);
        loop {
            let (stream, addr) = match listener.accept().await {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors and the like: back off, and say so once a second.
                    if let Some(suppressed) = accept_errors.event(std::time::Instant::now()) {
                        warn!(error = %e, suppressed, "accept failed on the replication port");
                    }
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            };
            // Small frames must not wait for Nagle and delayed acks (40 ms).
            if let Err(e) = stream.set_nodelay(true) {
                warn!(error = %e, "cannot set TCP_NODELAY on the link");
            }
            let evicted = pending.admit(addr.ip());
            let (repl, authenticated) = (self.clone(), authenticated.clone());
            tokio::spawn(async move {
                match link::authenticate(&repl, stream, evicted).await {
                    Ok(conn) => {
                        info!(%addr, "peer authenticated");
                        // Fails only once this node stopped listening: the connection closes.
                        let _ = authenticated.send(conn).await;
                    }
                    Err(e) => {
                        if transport::refused_certificate(&e) {
                            repl.status.auth_failures.fetch_add(1, Relaxed);
                        }
                        let failed = repl.status.handshakes_failed.fetch_add(1, Relaxed) + 1;
                        // The first few, then one in a thousand: a flood of connections on the
                        // port must not flood the log (all are counted in handshakes_failed).
                        if failed <= 10 || failed.is_multiple_of(1000) {
                            warn!(%addr, error = %e, failed, "a connection on the replication port did not authenticate");
                        }
                    }
                }
            });
        }
    }

    /// A master's look for a second master at its peer's address.
    async fn probe(self: Arc<Self>) {
        let Some(peer) = self.config.peer.clone() else { return };
        if let Ok(stream) = self.connect(&peer).await {
            self.link(stream, HANDSHAKE_TIMEOUT).await;
        }
    }

    /// repcached's one-host layout points both nodes at the same address: there, the master's
    /// peer address is its own, and probing it would only reach itself.
    fn peer_is_self(&self) -> bool {
        let Some(Ok(peer)) = self.config.peer.as_deref().map(str::parse::<SocketAddr>) else {
            return false;
        };
        let listen = self.config.listen;
        peer.port() == listen.port()
            && (peer.ip() == listen.ip() || listen.ip().is_unspecified() && peer.ip().is_loopback())
    }

    async fn connect(&self, peer: &str) -> std::io::Result<TcpStream> {
        let stream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(peer))
            .await
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out"))??;
        stream.set_nodelay(true)?;
        Ok(stream)
    }

    /// Runs a link this node opened to its end, keeping the status current. Returns how far
    /// it got.
    async fn link(self: Arc<Self>, stream: TcpStream, handshake: Duration) -> Reached {
        let peer = stream.peer_addr().ok();
        *self.status.peer.lock() = peer;
        let (reached, result) = link::run(&self, stream, handshake).await;
        // Untried: logged where the files failed to load, at most once a second.
        if reached != Reached::Untried {
            self.link_ended(peer, result);
        }
        reached
    }

    /// Runs a link the peer opened and authenticated to its end, keeping the status current.
    async fn link_accepted(self: Arc<Self>, conn: Authenticated) {
        let peer = Some(conn.addr);
        *self.status.peer.lock() = peer;
        let result = link::run_accepted(&self, conn).await;
        self.link_ended(peer, result);
    }

    fn link_ended(&self, peer: Option<SocketAddr>, result: anyhow::Result<()>) {
        match result {
            Ok(()) => info!(peer = ?peer, "link closed"),
            Err(e) => warn!(peer = ?peer, error = %e, "link ended"),
        }
        self.status.link_up.store(false, Relaxed);
    }
}

/// The link a master runs, as a branch of its control loop, which may drop it for a newer one.
struct Link {
    /// Opened by this node's probe rather than accepted.
    probe: bool,
    run: Pin<Box<dyn Future<Output = ()> + Send>>,
}

/// Returns when the link ends; never without one.
async fn until_done(link: &mut Option<Link>) {
    match link {
        Some(link) => link.run.as_mut().await,
        None => std::future::pending().await,
    }
}

/// Handshakes in progress on the replication port, oldest first, each with the sender that
/// keeps it going: dropping the sender evicts it.
#[derive(Default)]
struct Pending(VecDeque<(IpAddr, oneshot::Sender<()>)>);

impl Pending {
    /// Makes room for the handshake of a connection from `ip`, and returns what evicts it. When
    /// [`MAX_PENDING`] are in progress, the oldest of the address holding the most goes: idle
    /// connections then cost their own address its slots first, so that connections from one
    /// address, however many and however fast, cannot push out a peer at another.
    fn admit(&mut self, ip: IpAddr) -> oneshot::Receiver<()> {
        // A finished handshake dropped its receiver.
        self.0.retain(|(_, keep)| !keep.is_closed());
        if self.0.len() >= MAX_PENDING {
            let held = |ip: &IpAddr| self.0.iter().filter(|(other, _)| other == ip).count();
            let (mut victim, mut most) = (0, 0);
            for (i, (ip, _)) in self.0.iter().enumerate() {
                let n = held(ip);
                if n > most {
                    (victim, most) = (i, n);
                }
            }
            self.0.remove(victim);
        }
        let (keep, evicted) = oneshot::channel();
        self.0.push_back((ip, keep));
        evicted
    }
}

/// How long a connection attempt to the peer may take, and how often a master looks for a
/// second master at its peer's address.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
const PROBE_INTERVAL: Duration = Duration::from_secs(1);
/// A joiner's first retry after a link that did not come up, and the longest wait between two.
const JOIN_RETRY: Duration = Duration::from_millis(100);
const JOIN_RETRY_MAX: Duration = Duration::from_secs(5);
/// How often a shutting-down master checks on its hand-over.
const HANDOVER_POLL: Duration = Duration::from_millis(5);
/// Handshakes a master runs at once on its replication port: the peer needs one, and the rest
/// is room for strangers until they time out or are evicted (see [`Pending::admit`]).
const MAX_PENDING: usize = 8;

/// A random duration below `max`.
fn jitter(max: Duration) -> Duration {
    let mut bytes = [0u8; 8];
    let _ = getrandom::fill(&mut bytes);
    Duration::from_millis(u64::from_be_bytes(bytes) % (max.as_millis() as u64).max(1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::sync::oneshot::error::TryRecvError;

    const STRANGER: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 9));
    const PEER: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 2));

    fn evicted(rx: &mut oneshot::Receiver<()>) -> bool {
        rx.try_recv() == Err(TryRecvError::Closed)
    }

    #[test]
    fn a_flood_from_one_address_never_evicts_a_peer_at_another() {
        let mut pending = Pending::default();
        let mut strangers: Vec<_> = (0..MAX_PENDING - 1).map(|_| pending.admit(STRANGER)).collect();
        let mut peer = pending.admit(PEER);
        strangers.extend((0..100).map(|_| pending.admit(STRANGER)));
        assert!(!evicted(&mut peer));
        // The strangers' oldest went first; the newest still run.
        let still = strangers.iter_mut().map(evicted).filter(|gone| !gone).count();
        assert_eq!(still, MAX_PENDING - 1);
        assert!(strangers[100..].iter_mut().all(|rx| !evicted(rx)));
    }

    #[test]
    fn from_one_address_the_oldest_goes_and_finished_handshakes_free_their_slot() {
        let mut pending = Pending::default();
        let mut first: Vec<_> = (0..MAX_PENDING).map(|_| pending.admit(STRANGER)).collect();
        let mut newer = pending.admit(STRANGER);
        assert!(evicted(&mut first[0]));
        assert!(first[1..].iter_mut().all(|rx| !evicted(rx)));
        assert!(!evicted(&mut newer));
        // Two handshakes end: two new ones fit without evicting anyone.
        first.truncate(MAX_PENDING - 2);
        let _more = [pending.admit(PEER), pending.admit(PEER)];
        assert!(first[1..].iter_mut().all(|rx| !evicted(rx)));
        assert!(!evicted(&mut newer));
    }
}
