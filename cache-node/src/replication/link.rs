//! One link between the two nodes of a pair: the handshake, the role decision, each side's
//! stream for the other (a snapshot first when the peer cannot resume), and heartbeats.
//! Reading and writing run concurrently: both sides may be sending a snapshot at once.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, bail};
use bytes::{Buf, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{Notify, oneshot};
use tracing::{info, warn};

use super::Replicator;
use super::auth::{ClientHandshake, ServerHandshake};
use super::backlog::Gap;
use super::codec::{self, CodecError, Entry, Message, Op, Role};
use super::roles::{Side, after_meeting};
use super::transport::{self, Halves, HandshakeError, Reader, Writer};
use crate::store::{Change, Flush, RemoteItem};

/// Time the connecting side allows for the handshake and the exchange of `Sync` messages,
/// unless the caller has less patience (see [`run`]).
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(2);
/// Time an accepted connection has to prove that it holds the secret (after its TLS handshake,
/// if any), and then to exchange `Sync`: an honest peer needs a few round trips and an HMAC,
/// milliseconds, so a second leaves room for a starved machine, and is also how long an idle
/// connection holds a handshake slot.
pub const ACCEPT_TIMEOUT: Duration = Duration::from_secs(1);
/// The refusal of a peer that failed authentication; a connecting node counts it in
/// `auth_failures` (other refusals, such as being busy, are not about its secret).
const REFUSED_AUTH: &str = "authentication failed";
/// The largest frame of a handshake (an `Error` with the longest text): an unauthenticated
/// peer cannot make this node buffer more.
const HANDSHAKE_FRAME: usize = 1 + 4 + codec::MAX_ERROR_LEN;
/// How much of the stream is copied out of the backlog per write.
const WRITE_CHUNK: usize = 256 * 1024;

/// State the reader shares with the writer and the watchdog.
struct Shared {
    started: Instant,
    /// Milliseconds since `started` when the peer was last heard from, or last took bytes from
    /// us: a peer busy applying a snapshot is alive while it keeps reading.
    heard: AtomicU64,
    /// How far the peer's stream is applied here (acknowledged by the writer).
    applied: AtomicU64,
    /// Wakes the writer to send an ack.
    wake: Notify,
    /// The offset of a hand-over this node accepted, to confirm to the old master (+1; 0: none).
    confirm_stepdown: AtomicU64,
}

impl Shared {
    fn heard_now(&self) {
        self.heard.fetch_max(self.started.elapsed().as_millis() as u64, Relaxed);
    }
}

/// How far a link this node opened got before it ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reached {
    /// The peer closed the connection without a word, or the link failed: no sign of a master.
    Nothing,
    /// The peer held the connection open but said nothing before the handshake timed out: a
    /// live peer too slow to answer (a starved machine), or a hung one.
    Silence,
    /// The peer's listener greeted or refused us (only a master listens), even in another
    /// protocol version, but the link did not come up: the peer process is alive, if slow,
    /// busy or refusing us.
    Greeted,
    /// Authenticated and synced.
    Up,
    /// This node's own TLS files failed to load, so it could not try: it learnt nothing of the
    /// peer, and must not take over on that account.
    Untried,
}

/// A connection whose peer proved that it holds the secret, ready to become the link.
pub struct Authenticated {
    rd: Reader,
    wr: Writer,
    rbuf: BytesMut,
    /// Over TLS, not plain TCP.
    tls: bool,
    pub peer_id: u64,
    pub addr: SocketAddr,
}

impl Authenticated {
    /// Turns the peer down: the node keeps another link.
    pub async fn refuse(mut self, why: &str) {
        let _ = tokio::time::timeout(ACCEPT_TIMEOUT, send(&mut self.wr, &Message::error(why))).await;
    }
}

/// The accepting side's handshake on a new connection, within [`ACCEPT_TIMEOUT`]: TLS if
/// configured, a greeting at once, then the peer's proof that it holds the secret. `evicted`
/// resolves when the node needs the connection's slot for a newer one; the connection is then
/// refused as busy (or dropped, during a TLS handshake, which has no way to say it yet).
pub async fn authenticate(
    repl: &Replicator,
    stream: TcpStream,
    mut evicted: oneshot::Receiver<()>,
) -> anyhow::Result<Authenticated> {
    let addr = stream.peer_addr()?;
    // Small while the peer is unknown, as a stranger's handshake costs little; the reader grows it.
    let mut rbuf = BytesMut::with_capacity(4 * 1024);
    let hs = ServerHandshake::new(repl.node_id)?;
    let (rd, wr, tls, peer_id) = tokio::time::timeout(ACCEPT_TIMEOUT, async {
        let Halves { mut rd, mut wr, tls } = match &repl.config.tls {
            None => transport::plain(stream),
            Some(tls) => tokio::select! {
                halves = tls.accept(stream) => halves?,
                _ = &mut evicted => bail!("dropped for a newer connection: too many handshakes in progress"),
            },
        };
        // Before anything can fail: a greeting is how a joiner tells a live node from a dead one.
        send(&mut wr, &Message::Hello { nonce: hs.nonce() }).await?;
        let peer_id = tokio::select! {
            proved = prove_client(repl, &mut rd, &mut wr, &mut rbuf, hs) => proved?,
            _ = evicted => {
                let _ = send(&mut wr, &Message::error("busy: too many connections on the replication port")).await;
                bail!("dropped for a newer connection: too many handshakes in progress")
            }
        };
        anyhow::Ok((rd, wr, tls, peer_id))
    })
    .await
    .context("handshake timed out")??;
    Ok(Authenticated { rd, wr, rbuf, tls, peer_id, addr })
}

/// Runs the link on a connection this node accepted and authenticated, to its end.
pub async fn run_accepted(repl: &Arc<Replicator>, conn: Authenticated) -> anyhow::Result<()> {
    let Authenticated { mut rd, mut wr, mut rbuf, tls, peer_id, .. } = conn;
    repl.status.tls.store(tls, Relaxed);
    let remote = tokio::time::timeout(ACCEPT_TIMEOUT, exchange_sync(repl, &mut rd, &mut wr, &mut rbuf, peer_id))
        .await
        .context("the exchange of sync timed out")??;
    run_streams(repl, rd, wr, rbuf, peer_id, remote, true).await
}

/// Runs a link on a connection this node opened, allowing `handshake` for the handshake.
/// Returns how far it got, and why it ended.
pub async fn run(repl: &Arc<Replicator>, stream: TcpStream, handshake: Duration) -> (Reached, anyhow::Result<()>) {
    let mut reached = Reached::Nothing;
    let result = run_link(repl, stream, handshake, &mut reached).await;
    if reached == Reached::Nothing && result.as_ref().is_err_and(|e| e.is::<tokio::time::error::Elapsed>()) {
        reached = Reached::Silence;
    }
    if result.as_ref().is_err_and(transport::refused_certificate) {
        repl.status.auth_failures.fetch_add(1, Relaxed);
    }
    (reached, result)
}

async fn run_link(
    repl: &Arc<Replicator>,
    stream: TcpStream,
    timeout: Duration,
    reached: &mut Reached,
) -> anyhow::Result<()> {
    let answered = Arc::new(AtomicBool::new(false));
    let handshake = tokio::time::timeout(timeout, async {
        let Halves { mut rd, mut wr, tls } = match &repl.config.tls {
            None => transport::plain(stream),
            Some(tls) => tls.connect(stream, answered.clone()).await.inspect_err(|e| {
                if let HandshakeError::Files(_) = e {
                    *reached = Reached::Untried;
                }
            })?,
        };
        let mut rbuf = BytesMut::with_capacity(64 * 1024);
        let peer_id = prove_server(repl, &mut rd, &mut wr, &mut rbuf, reached).await?;
        repl.status.tls.store(tls, Relaxed);
        let remote = exchange_sync(repl, &mut rd, &mut wr, &mut rbuf, peer_id).await?;
        anyhow::Ok((rd, wr, rbuf, peer_id, remote))
    })
    .await;
    // A peer that answered the TLS handshake is alive, whatever happened next.
    if *reached == Reached::Nothing && answered.load(Relaxed) {
        *reached = Reached::Greeted;
    }
    let (rd, wr, rbuf, peer_id, remote) = handshake.context("handshake timed out")??;
    *reached = Reached::Up;
    run_streams(repl, rd, wr, rbuf, peer_id, remote, false).await
}

/// Takes the role the rules give after meeting the peer, then runs both streams until the
/// link ends.
async fn run_streams(
    repl: &Arc<Replicator>,
    mut rd: Reader,
    mut wr: Writer,
    rbuf: BytesMut,
    peer_id: u64,
    remote: Remote,
    accepted: bool,
) -> anyhow::Result<()> {
    let local = Side { role: repl.status.role(), term: repl.status.term.load(Relaxed), node_id: repl.node_id };
    let role = after_meeting(local, Side { node_id: peer_id, ..remote.side }, accepted);
    repl.status.set_role(role);
    repl.status.term.fetch_max(remote.side.term, Relaxed);
    info!(peer_id = format_args!("{peer_id:016x}"), ?role, "link up");
    repl.status.link_up.store(true, Relaxed);
    repl.status.lag.link_reset();
    // From now on this node's changes are kept for the peer.
    repl.feed.recording.store(true, Relaxed);

    let start = {
        let backlog = repl.feed.backlog.lock();
        let resumable = remote.repl_id == repl.repl_id && (backlog.start()..=backlog.end()).contains(&remote.offset);
        resumable.then_some(remote.offset)
    };
    // Where the peer's stream resumes here: the peer knows that much is applied.
    let applied = repl.peer_stream.lock().1;
    let shared = Shared {
        started: Instant::now(),
        heard: AtomicU64::new(0),
        applied: AtomicU64::new(applied),
        wake: Notify::new(),
        confirm_stepdown: AtomicU64::new(0),
    };
    tokio::select! {
        r = writer(repl, &mut wr, start, applied, &shared) => r,
        r = reader(repl, &mut rd, rbuf, &shared) => r,
        r = watchdog(repl, &shared) => r,
    }
}

/// What the peer said in its `Sync`.
struct Remote {
    side: Side,
    repl_id: codec::ReplId,
    offset: u64,
}

/// The accepting side, once greeted: checks the peer's proof, and answers with this node's id
/// and proof, or a refusal and nothing else. Returns the peer's id.
async fn prove_client(
    repl: &Replicator,
    rd: &mut Reader,
    wr: &mut Writer,
    rbuf: &mut BytesMut,
    hs: ServerHandshake,
) -> anyhow::Result<u64> {
    let (peer_id, nonce, mac) = match recv(rd, rbuf).await? {
        (Message::Auth { node_id, nonce, mac }, len) => {
            rbuf.advance(len);
            (node_id, nonce, mac)
        }
        (other, _) => bail!("expected auth, got {}", other.kind()),
    };
    match hs.verify_client(repl.config.secrets.current().all(), peer_id, &nonce, &mac) {
        Ok(proof) => send(wr, &Message::AuthOk { node_id: repl.node_id, mac: proof }).await?,
        Err(e) => {
            repl.status.auth_failures.fetch_add(1, Relaxed);
            let _ = send(wr, &Message::error(REFUSED_AUTH)).await;
            bail!("peer failed authentication: {e}");
        }
    }
    check_not_self(repl, peer_id)?;
    Ok(peer_id)
}

/// The connecting side: waits for the greeting (noting in `reached` that the peer is alive),
/// proves that it holds the secret, and checks the peer's proof. Returns the peer's id.
async fn prove_server(
    repl: &Replicator,
    rd: &mut Reader,
    wr: &mut Writer,
    rbuf: &mut BytesMut,
    reached: &mut Reached,
) -> anyhow::Result<u64> {
    // Read at each connection, so that a rotated secret needs no restart.
    let secrets = repl.config.secrets.current();
    let secret = secrets.signing();
    let nonce = match recv(rd, rbuf).await {
        Ok((Message::Hello { nonce }, len)) => {
            rbuf.advance(len);
            *reached = Reached::Greeted;
            nonce
        }
        Ok((Message::Error { message }, _)) => {
            *reached = Reached::Greeted;
            bail!("peer refused the link: {message}");
        }
        Ok((other, _)) => bail!("expected hello, got {}", other.kind()),
        Err(e) => {
            // A node of another protocol version greeted us: alive, if of no use to us.
            if let Some(CodecError::OtherVersion { .. }) = e.downcast_ref() {
                *reached = Reached::Greeted;
            }
            return Err(e);
        }
    };
    let hs = ClientHandshake::new(secret, repl.node_id, &nonce)?;
    send(wr, &Message::Auth { node_id: repl.node_id, nonce: hs.nonce(), mac: hs.proof() }).await?;
    let (server_id, mac) = match recv(rd, rbuf).await? {
        (Message::AuthOk { node_id, mac }, len) => {
            rbuf.advance(len);
            (node_id, mac)
        }
        (Message::Error { message }, _) => {
            if message == REFUSED_AUTH {
                repl.status.auth_failures.fetch_add(1, Relaxed);
            }
            bail!("peer refused the link: {message}")
        }
        (other, _) => bail!("expected auth_ok, got {}", other.kind()),
    };
    if let Err(e) = hs.verify_server(secret, server_id, &mac) {
        repl.status.auth_failures.fetch_add(1, Relaxed);
        bail!("peer failed authentication: {e}");
    }
    check_not_self(repl, server_id)?;
    Ok(server_id)
}

fn check_not_self(repl: &Replicator, peer_id: u64) -> anyhow::Result<()> {
    if peer_id == repl.node_id {
        bail!("connected to itself: -x names this node");
    }
    Ok(())
}

async fn exchange_sync(
    repl: &Replicator,
    rd: &mut Reader,
    wr: &mut Writer,
    rbuf: &mut BytesMut,
    peer_id: u64,
) -> anyhow::Result<Remote> {
    let (repl_id, offset) = *repl.peer_stream.lock();
    let sync = Message::Sync { role: repl.status.role(), term: repl.status.term.load(Relaxed), repl_id, offset };
    send(wr, &sync).await?;
    match recv(rd, rbuf).await? {
        (Message::Sync { role, term, repl_id, offset }, len) => {
            rbuf.advance(len);
            Ok(Remote { side: Side { role, term, node_id: peer_id }, repl_id, offset })
        }
        (Message::Error { message }, _) => bail!("peer refused the link: {message}"),
        (other, _) => bail!("expected sync, got {}", other.kind()),
    }
}

/// Sends this node's stream: a snapshot unless the peer can resume, then every change as it
/// is made, with heartbeats and acknowledgements in between. `acked` is how much of the peer's
/// stream the peer already knows to be applied here.
async fn writer(
    repl: &Replicator,
    wr: &mut Writer,
    start: Option<u64>,
    mut acked: u64,
    shared: &Shared,
) -> anyhow::Result<()> {
    let mut out = Vec::with_capacity(WRITE_CHUNK);
    let mut offset = match start {
        Some(offset) => {
            repl.status.partial_syncs.fetch_add(1, Relaxed);
            send(wr, &Message::Resume { repl_id: repl.repl_id, offset }).await?;
            offset
        }
        None => {
            // Note the offset first: whatever changes during the snapshot is in the stream
            // after it, so nothing falls in between (a change may arrive twice; the newer
            // version wins either way).
            let offset = repl.feed.backlog.lock().end();
            // The snapshot holds no flushes: they follow in the stream, for the peer's own items.
            repl.store.announce_flushes();
            repl.status.full_syncs_sent.fetch_add(1, Relaxed);
            send(wr, &Message::FullSync { repl_id: repl.repl_id, offset }).await?;
            let store = &repl.store;
            let mut count = 0u64;
            for shard in 0..store.shard_count() {
                let now = repl.clock.now();
                store.snapshot(shard, now, |change| {
                    if let Some(entry) = snapshot_entry(repl, change)
                        && Message::Item(entry).encode(&mut out).is_ok()
                    {
                        count += 1;
                    }
                });
                wr.write_all(&out).await?;
                wr.flush().await?;
                shared.heard_now();
                out.clear();
            }
            send(wr, &Message::SnapshotEnd { count }).await?;
            offset
        }
    };
    let mut ping = tokio::time::interval(repl.config.heartbeat);
    // A second StepDown on one link would read as the confirmation of the first on the peer.
    let mut handed_over = false;
    loop {
        let changed = repl.feed.changed.notified();
        tokio::pin!(changed);
        changed.as_mut().enable();
        drain(repl, wr, &mut offset, &mut out, shared).await?;
        let applied = shared.applied.load(Relaxed);
        if applied != acked {
            send(wr, &Message::Ack { offset: applied }).await?;
            acked = applied;
        }
        let confirm = shared.confirm_stepdown.swap(0, Relaxed);
        if confirm != 0 {
            send(wr, &Message::StepDown { offset: confirm - 1 }).await?;
        }
        tokio::select! {
            _ = &mut changed => {}
            _ = shared.wake.notified() => {}
            _ = ping.tick() => send(wr, &Message::Ping { millis: unix_millis() }).await?,
            _ = repl.status.stepdown.notified(), if repl.status.role() == Role::Master && !handed_over => {
                // Everything written so far goes first; the slave takes over where it ends.
                drain(repl, wr, &mut offset, &mut out, shared).await?;
                info!(offset, "handing the master role over");
                send(wr, &Message::StepDown { offset }).await?;
                handed_over = true;
            }
        }
    }
}

/// Sends the stream from `offset` up to the current end of the backlog.
async fn drain(
    repl: &Replicator,
    wr: &mut Writer,
    offset: &mut u64,
    out: &mut Vec<u8>,
    shared: &Shared,
) -> anyhow::Result<()> {
    loop {
        match repl.feed.read(*offset, WRITE_CHUNK, out) {
            Ok((0, _)) => return Ok(()),
            Ok((n, since)) => {
                *offset += n as u64;
                wr.write_all(out).await?;
                wr.flush().await?;
                shared.heard_now();
                out.clear();
                if let Some(since) = since {
                    repl.status.lag.sent(*offset, since);
                }
            }
            Err(Gap::Trimmed) => bail!("the peer fell behind the backlog: it takes a full sync on the next link"),
            Err(Gap::Ahead) => bail!("the peer asked for offset {offset}, beyond this stream"),
        }
    }
}

/// A snapshot's items and tombstones as link entries.
fn snapshot_entry<'a>(repl: &Replicator, change: Change<'a>) -> Option<Entry<'a>> {
    Some(match change {
        Change::Set(it) => Entry {
            key: it.key(),
            value: it.value(),
            flags: it.flags,
            exptime: repl.feed.unix(it.exptime),
            cas: it.cas,
            version: it.version,
            deleted: false,
        },
        Change::Delete { key, version } => {
            Entry { key, value: b"", flags: 0, exptime: 0, cas: 0, version, deleted: true }
        }
        Change::Flush(_) => return None,
    })
}

/// Applies the peer's stream.
async fn reader(repl: &Replicator, rd: &mut Reader, mut rbuf: BytesMut, shared: &Shared) -> anyhow::Result<()> {
    let max_frame = repl.config.max_frame;
    let mut frames = 0u32;
    // The peer's stream id and offset of a snapshot being received.
    let mut snapshot = None;
    loop {
        let mut applied_any = false;
        while let Some((msg, len)) = codec::decode(&rbuf, max_frame)? {
            shared.heard_now();
            let now = repl.clock.now();
            match msg {
                Message::FullSync { repl_id, offset } => {
                    repl.status.full_syncs_received.fetch_add(1, Relaxed);
                    // Until the snapshot is whole, there is nothing to resume from: a link that
                    // ends half-way takes a full sync again, not the stream after the snapshot.
                    *repl.peer_stream.lock() = (codec::NO_HISTORY, 0);
                    snapshot = Some((repl_id, offset));
                    info!("receiving the peer's snapshot");
                }
                Message::Resume { repl_id, offset } => {
                    let (have, at) = *repl.peer_stream.lock();
                    if have != repl_id || at != offset {
                        bail!("the peer resumed a stream this node does not have");
                    }
                }
                Message::Item(entry) => {
                    apply(repl, &entry, now);
                }
                Message::SnapshotEnd { count } => {
                    info!(count, "peer's snapshot applied");
                    // Only now is everything before the snapshot's offset applied here.
                    if let Some(stream) = snapshot.take() {
                        *repl.peer_stream.lock() = stream;
                        shared.applied.store(stream.1, Relaxed);
                        applied_any = true;
                    }
                    // A joining slave holds a complete copy now: its client ports may open.
                    repl.ready.send_replace(true);
                }
                Message::Op { offset, op } => {
                    match op {
                        Op::Set(entry) => apply(repl, &entry, now),
                        Op::Delete { key, version } => apply(
                            repl,
                            &Entry { key, value: b"", flags: 0, exptime: 0, cas: 0, version, deleted: true },
                            now,
                        ),
                        Op::Flush { at: 0, version } => repl.store.apply_flush(Flush::immediate(version), now),
                        Op::Flush { at, version } => {
                            let flush = Flush::delayed(version, at);
                            let from = repl.clock.rel_at_millis(flush.effective_millis());
                            repl.store.apply_flush(flush, from);
                        }
                    }
                    let end = offset + len as u64;
                    repl.peer_stream.lock().1 = end;
                    shared.applied.store(end, Relaxed);
                    repl.status.ops_applied.fetch_add(1, Relaxed);
                    applied_any = true;
                }
                Message::Ack { offset } => {
                    repl.status.peer_acked.store(offset, Relaxed);
                    repl.status.lag.acked(offset);
                    repl.status.acked.notify_waiters();
                    let behind = repl.feed.backlog.lock().frames_after(offset) as u64;
                    repl.status.lag_ops.store(behind, Relaxed);
                }
                Message::StepDown { offset } => step_down(repl, shared, offset)?,
                Message::Ping { .. } | Message::Pong { .. } => {}
                Message::Error { message } => bail!("peer: {message}"),
                other => bail!("unexpected {} on an open link", other.kind()),
            }
            rbuf.advance(len);
            frames = frames.wrapping_add(1);
            // Applying a snapshot is a long run of work without a pause: let the writer send
            // its heartbeats in between.
            if frames.is_multiple_of(512) {
                tokio::task::yield_now().await;
            }
        }
        if applied_any {
            shared.wake.notify_one();
        }
        if rbuf.capacity() - rbuf.len() < 16 * 1024 {
            rbuf.reserve(64 * 1024);
        }
        if rd.read_buf(&mut rbuf).await? == 0 {
            bail!("peer closed the link");
        }
    }
}

/// A hand-over: as slave, take the master role once everything before `offset` is applied
/// (the stream is ordered, so it is) and confirm; as master, the slave's confirmation.
fn step_down(repl: &Replicator, shared: &Shared, offset: u64) -> anyhow::Result<()> {
    match repl.status.role() {
        Role::Slave => {
            let applied = shared.applied.load(Relaxed);
            if applied != offset {
                bail!("hand-over at offset {offset}, but {applied} is applied here");
            }
            let term = repl.status.term.fetch_add(1, Relaxed) + 1;
            repl.status.switchovers.fetch_add(1, Relaxed);
            repl.status.set_role(Role::Master);
            info!(term, "took over the master role (switchover)");
            shared.confirm_stepdown.store(offset + 1, Relaxed);
            shared.wake.notify_one();
        }
        Role::Master => {
            repl.status.set_role(Role::Slave);
            info!("handed the master role over (switchover)");
        }
        Role::Starting => bail!("hand-over while starting"),
    }
    Ok(())
}

fn apply(repl: &Replicator, e: &Entry<'_>, now: crate::store::RelTime) {
    let exptime = if e.exptime == 0 { 0 } else { repl.clock.rel_exptime(e.exptime as i64, now) };
    let item = RemoteItem {
        key: e.key,
        value: e.value,
        flags: e.flags,
        exptime,
        cas: e.cas,
        version: e.version,
        deleted: e.deleted,
    };
    repl.store.apply(&item, now);
}

/// Declares the link dead when the peer is silent for `misses` heartbeats.
async fn watchdog(repl: &Replicator, shared: &Shared) -> anyhow::Result<()> {
    let limit = repl.config.heartbeat * repl.config.misses;
    loop {
        tokio::time::sleep(repl.config.heartbeat).await;
        let silent = shared.started.elapsed().saturating_sub(Duration::from_millis(shared.heard.load(Relaxed)));
        if silent > limit {
            warn!(?silent, "peer missed its heartbeats");
            bail!("no heartbeat from the peer for {silent:?}");
        }
    }
}

async fn send(wr: &mut Writer, msg: &Message<'_>) -> anyhow::Result<()> {
    let mut out = Vec::new();
    msg.encode(&mut out)?;
    wr.write_all(&out).await?;
    // TLS holds written bytes until flushed (plain TCP has nothing to flush).
    wr.flush().await?;
    Ok(())
}

/// Reads one whole frame of the handshake. The caller advances the buffer.
async fn recv<'b>(rd: &mut Reader, rbuf: &'b mut BytesMut) -> anyhow::Result<(Message<'b>, usize)> {
    loop {
        // Checked first without borrowing for the result, to keep the borrow checker happy.
        if codec::decode(rbuf, HANDSHAKE_FRAME)?.is_some() {
            break;
        }
        if rd.read_buf(rbuf).await? == 0 {
            bail!("peer closed the link");
        }
    }
    codec::decode(rbuf, HANDSHAKE_FRAME)?.context("a whole frame was just seen")
}

fn unix_millis() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}
