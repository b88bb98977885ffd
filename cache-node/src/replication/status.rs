//! The node's replication state: role and term, the link, stream offsets, counters. A module of
//! its own because others share it: the engine (`stats replication`, `stats reset`), the memory
//! guard (the backlog's size) and the admin listener (`/metrics`, `/role`, switchover) need it
//! and nothing else of replication.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::Notify;
use tracing::warn;

use super::codec::Role;
use super::lag;

/// What `stats replication` and `/metrics` show; shared with the engine.
#[derive(Debug, Default)]
pub struct Status {
    role: AtomicU8,
    pub term: AtomicU64,
    pub link_up: AtomicBool,
    /// The link runs (or last ran) over mutual TLS (`--repl-tls-*`); before any link, whether
    /// TLS is configured. Plain TCP only with `--repl-tls-allow-plaintext` and a peer without it.
    pub tls: AtomicBool,
    pub peer: Mutex<Option<SocketAddr>>,
    pub full_syncs_sent: AtomicU64,
    pub full_syncs_received: AtomicU64,
    pub partial_syncs: AtomicU64,
    pub failovers: AtomicU64,
    pub switchovers: AtomicU64,
    pub ops_applied: AtomicU64,
    pub auth_failures: AtomicU64,
    /// Connections on the replication port that did not authenticate (idle past the deadline,
    /// garbage, a wrong secret, or dropped for newer ones).
    pub handshakes_failed: AtomicU64,
    /// Links replaced by a newer one from the peer, which had given up on the old one.
    pub links_replaced: AtomicU64,
    /// Graceful shutdowns that gave up handing the master role over (see
    /// [`super::Replicator::hand_over_for_shutdown`]).
    pub shutdown_handover_timeouts: AtomicU64,
    /// End of this node's stream, and how far the peer acknowledged it.
    pub stream_end: AtomicU64,
    pub peer_acked: AtomicU64,
    /// Bytes the backlog holds (bounded by -q).
    pub backlog_bytes: AtomicU64,
    /// Ops of this node's stream the peer had not acknowledged at its last ack.
    pub lag_ops: AtomicU64,
    /// Asks the link to hand the master role over (see [`Status::switchover`]).
    pub(super) stepdown: Notify,
    /// Synchronous mode: how long a write waits for the peer (milliseconds; 0: asynchronous).
    pub(super) sync_timeout_ms: AtomicU64,
    /// Writes acknowledged without the peer's confirmation in synchronous mode.
    pub sync_degraded: AtomicU64,
    /// Signalled when the peer acknowledges more of this node's stream.
    pub(super) acked: Notify,
    /// How long this node's changes take to be applied by the peer.
    pub lag: lag::Lag,
}

impl Status {
    pub fn role(&self) -> Role {
        match self.role.load(Relaxed) {
            1 => Role::Master,
            2 => Role::Slave,
            _ => Role::Starting,
        }
    }

    pub(super) fn set_role(&self, role: Role) {
        self.role.store(
            match role {
                Role::Master => 1,
                Role::Slave => 2,
                Role::Starting => 0,
            },
            Relaxed,
        );
    }

    /// The end of this node's stream: a write made before reading it is at or before it.
    pub fn stream_end(&self) -> u64 {
        self.stream_end.load(Relaxed)
    }

    /// Synchronous mode: returns once the peer has applied this node's stream up to `offset`.
    /// The degrade policy: with no peer linked, or after the timeout, it returns anyway (the
    /// write is acknowledged as asynchronous), counts it in `sync_degraded` and logs it.
    pub async fn wait_replicated(&self, offset: u64) {
        let timeout = self.sync_timeout_ms.load(Relaxed);
        if timeout == 0 {
            return;
        }
        if !self.link_up.load(Relaxed) {
            self.degraded("no peer linked");
            return;
        }
        let deadline = tokio::time::Instant::now() + Duration::from_millis(timeout);
        loop {
            let acked = self.acked.notified();
            tokio::pin!(acked);
            acked.as_mut().enable();
            if self.peer_acked.load(Relaxed) >= offset {
                return;
            }
            if tokio::time::timeout_at(deadline, acked).await.is_err() {
                self.degraded("the peer did not confirm in time");
                return;
            }
        }
    }

    fn degraded(&self, why: &str) {
        // One line per 1024 degraded writes: enough to notice, not a flood.
        if self.sync_degraded.fetch_add(1, Relaxed).is_multiple_of(1024) {
            warn!(why, "synchronous replication degraded: write acknowledged without the peer");
        }
    }

    /// Planned switchover: the master streams everything it has, tells the slave to take over
    /// at that offset, and becomes slave once the peer confirms. Both keep serving throughout
    /// and the link stays up, so no write is lost. Waits up to `timeout` for the hand-over.
    pub async fn switchover(&self, timeout: Duration) -> Result<(), String> {
        if self.role() != Role::Master {
            return Err("this node is not the master".into());
        }
        if !self.link_up.load(Relaxed) {
            return Err("no slave is linked".into());
        }
        self.stepdown.notify_one();
        let deadline = tokio::time::Instant::now() + timeout;
        while self.role() == Role::Master {
            if tokio::time::Instant::now() >= deadline {
                return Err("the slave did not take over in time".into());
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        Ok(())
    }

    /// Name/value pairs for `stats replication`.
    pub fn stats(&self) -> Vec<(String, String)> {
        let role = match self.role() {
            Role::Master => "master",
            Role::Slave => "slave",
            Role::Starting => "starting",
        };
        let peer = self.peer.lock().map_or_else(|| "none".to_string(), |p| p.to_string());
        let end = self.stream_end.load(Relaxed);
        let acked = self.peer_acked.load(Relaxed).min(end);
        let lag = self.lag.summary();
        vec![
            ("role".into(), role.into()),
            ("term".into(), self.term.load(Relaxed).to_string()),
            ("peer".into(), peer),
            ("link".into(), if self.link_up.load(Relaxed) { "up" } else { "down" }.into()),
            ("tls".into(), if self.tls.load(Relaxed) { "yes" } else { "no" }.into()),
            ("stream_offset".into(), end.to_string()),
            ("lag_bytes".into(), (end - acked).to_string()),
            ("lag_ops".into(), self.lag_ops.load(Relaxed).to_string()),
            ("lag_samples".into(), lag.samples.to_string()),
            ("lag_p50_us".into(), lag.p50_us.to_string()),
            ("lag_p99_us".into(), lag.p99_us.to_string()),
            ("lag_p999_us".into(), lag.p999_us.to_string()),
            ("lag_max_us".into(), lag.max_us.to_string()),
            ("backlog_bytes".into(), self.backlog_bytes.load(Relaxed).to_string()),
            ("full_syncs_sent".into(), self.full_syncs_sent.load(Relaxed).to_string()),
            ("full_syncs_received".into(), self.full_syncs_received.load(Relaxed).to_string()),
            ("partial_syncs".into(), self.partial_syncs.load(Relaxed).to_string()),
            ("failovers".into(), self.failovers.load(Relaxed).to_string()),
            ("switchovers".into(), self.switchovers.load(Relaxed).to_string()),
            ("mode".into(), if self.sync_timeout_ms.load(Relaxed) == 0 { "async" } else { "sync" }.into()),
            ("sync_degraded".into(), self.sync_degraded.load(Relaxed).to_string()),
            ("ops_applied".into(), self.ops_applied.load(Relaxed).to_string()),
            ("auth_failures".into(), self.auth_failures.load(Relaxed).to_string()),
            ("handshakes_failed".into(), self.handshakes_failed.load(Relaxed).to_string()),
            ("links_replaced".into(), self.links_replaced.load(Relaxed).to_string()),
            ("shutdown_handover_timeouts".into(), self.shutdown_handover_timeouts.load(Relaxed).to_string()),
        ]
    }
}
