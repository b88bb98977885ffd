//! The admin HTTP listeners, off unless `--admin-listen` is given: `/metrics` in Prometheus's
//! text format under memcached_exporter's metric names, `/healthz`, `/readyz`, `/role`,
//! `/master`, and the one that changes anything, `POST /switchover`, which takes a bearer token
//! (`--admin-token-file`) or, without one, a loopback peer. `--admin-read-listen` serves the
//! read-only endpoints alone.
//!
//! Metrics are computed at scrape time from the same counters `stats` reports, so the two
//! never disagree and the request path pays nothing for them.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use axum::Router;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{
    DescriptorEncoder, EncodeCounterValue, EncodeGaugeValue, EncodeMetric, NoLabelSet, prometheus_text,
};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;

use subtle::ConstantTimeEq;

use crate::engine::{Context, stats};
use crate::replication::codec::Role;
use crate::server::http;

struct Admin {
    ctx: Arc<Context>,
    registry: Registry,
    /// `--admin-token-file`.
    token_file: Option<PathBuf>,
}

/// Which endpoints a listener serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoints {
    All,
    ReadOnly,
}

/// Serves the admin endpoints until the task is aborted, with [`http`]'s connection cap and
/// timeouts.
pub async fn serve(
    ctx: Arc<Context>,
    listener: std::net::TcpListener,
    endpoints: Endpoints,
    token_file: Option<PathBuf>,
) -> std::io::Result<()> {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(StatsCollector(ctx.clone())));
    let mut app = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/role", get(role))
        .route("/master", get(master));
    if endpoints == Endpoints::All {
        app = app.route("/switchover", post(switchover));
    }
    let name = if endpoints == Endpoints::All { "admin" } else { "admin (read-only)" };
    http::serve(listener, app.with_state(Arc::new(Admin { ctx, registry, token_file })), name).await
}

async fn metrics(State(admin): State<Arc<Admin>>) -> Response {
    let mut body = String::new();
    match prometheus_text::encode(&mut body, &admin.registry) {
        Ok(()) => ([(header::CONTENT_TYPE, prometheus_text::CONTENT_TYPE)], body).into_response(),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

/// Alive for as long as the process answers.
async fn healthz() -> &'static str {
    "ok\n"
}

/// Ready while the client listeners accept: not before they are open, nor once shutdown began.
async fn readyz(State(admin): State<Arc<Admin>>) -> (StatusCode, &'static str) {
    if admin.ctx.stats.accepting_conns.load(Relaxed) {
        (StatusCode::OK, "ready\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n")
    }
}

/// This node's replication role: `master`, `slave`, `starting`, or `standalone` (`-X 0`).
async fn role(State(admin): State<Arc<Admin>>) -> String {
    format!("{}\n", role_name(&admin.ctx))
}

/// 200 only on the master: a readiness probe on this path keeps a Service's endpoints on the
/// current master, and follows a failover without any controller.
async fn master(State(admin): State<Arc<Admin>>) -> (StatusCode, String) {
    let role = role_name(&admin.ctx);
    let status = if role == "master" { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, format!("{role}\n"))
}

/// Planned switchover (on the master): zero-loss hand-over of the master role to the slave.
async fn switchover(
    State(admin): State<Arc<Admin>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Response {
    match admin.authorize(peer, &headers) {
        Ok(()) => switch_over(&admin).await.into_response(),
        Err(refusal) => {
            admin.ctx.stats.admin_auth_errors.fetch_add(1, Relaxed);
            tracing::warn!(%peer, reason = %refusal.1.trim_end(), "switchover refused");
            refusal.into_response()
        }
    }
}

impl Admin {
    /// A token when the node has one, else a loopback peer (the VRRP sidecar, an operator
    /// using `kubectl exec`). The token file is read at each request: rotating it takes effect
    /// at once, and the request is rare.
    fn authorize(&self, peer: SocketAddr, headers: &HeaderMap) -> Result<(), (StatusCode, String)> {
        let Some(file) = &self.token_file else {
            if peer.ip().to_canonical().is_loopback() {
                return Ok(());
            }
            let why = "switchover is taken from loopback only: this node has no --admin-token-file\n";
            return Err((StatusCode::FORBIDDEN, why.into()));
        };
        let token = std::fs::read_to_string(file).map_err(|e| {
            tracing::error!(file = %file.display(), error = %e, "cannot read the admin token file");
            (StatusCode::INTERNAL_SERVER_ERROR, "the admin token cannot be read\n".to_string())
        })?;
        let presented = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .ok_or((StatusCode::UNAUTHORIZED, "a bearer token is required\n".to_string()))?;
        let token = token.trim();
        if !token.is_empty() && bool::from(token.as_bytes().ct_eq(presented.trim().as_bytes())) {
            Ok(())
        } else {
            Err((StatusCode::FORBIDDEN, "wrong token\n".into()))
        }
    }
}

async fn switch_over(admin: &Admin) -> (StatusCode, String) {
    let Some(r) = admin.ctx.replication.get() else {
        return (StatusCode::CONFLICT, "replication is off\n".into());
    };
    match r.switchover(SWITCHOVER_TIMEOUT).await {
        Ok(()) => (StatusCode::OK, "switched over: this node is slave now\n".into()),
        Err(e) => (StatusCode::CONFLICT, format!("{e}\n")),
    }
}

const SWITCHOVER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

fn role_name(ctx: &Context) -> &'static str {
    match ctx.replication.get().map(|r| r.role()) {
        None => "standalone",
        Some(Role::Master) => "master",
        Some(Role::Slave) => "slave",
        Some(Role::Starting) => "starting",
    }
}

/// Reads the server's statistics on each scrape.
struct StatsCollector(Arc<Context>);

impl fmt::Debug for StatsCollector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("StatsCollector")
    }
}

impl Collector for StatsCollector {
    fn encode(&self, encoder: DescriptorEncoder) -> fmt::Result {
        let ctx = &self.0;
        let store = ctx.store.stats();
        let c = store.counters;
        let t = store.totals();
        let server = &ctx.stats;
        let (user, system) = stats::rusage();
        let mut out = Out(encoder);

        out.gauge("memcached_up", "Could the memcached server be reached.", 1)?;
        // A counter for memcached_exporter; a gauge here, as the client library would
        // otherwise append _total to the name.
        out.gauge("memcached_uptime_seconds", "Number of seconds since the server started.", stats::uptime(ctx))?;
        out.gauge(
            "memcached_time_seconds",
            "current UNIX time according to the server.",
            ctx.clock.to_unix(ctx.clock.now()),
        )?;
        let mut version = out.0.encode_descriptor(
            "memcached_version",
            "The version of this memcached server.",
            None,
            MetricType::Gauge,
        )?;
        ConstGauge::new(1).encode(version.encode_family(&[("version", stats::VERSION)])?)?;
        out.counter("memcached_process_user_cpu_seconds", "Accumulated user time for this process.", user)?;
        out.counter("memcached_process_system_cpu_seconds", "Accumulated system time for this process.", system)?;
        out.counter(
            "memcached_read_bytes",
            "Total number of bytes read by this server from network.",
            server.bytes_read.load(Relaxed),
        )?;
        out.counter(
            "memcached_written_bytes",
            "Total number of bytes sent by this server to network.",
            server.bytes_written.load(Relaxed),
        )?;
        out.gauge(
            "memcached_current_connections",
            "Current number of open connections.",
            server.curr_connections.load(Relaxed),
        )?;
        out.gauge("memcached_max_connections", "Maximum number of clients allowed.", ctx.settings.max_connections)?;
        out.counter(
            "memcached_connections",
            "Total number of connections opened since the server started running.",
            server.total_connections.load(Relaxed),
        )?;
        out.counter(
            "memcached_connections_rejected",
            "Total number of connections rejected due to hitting the memcached's -c limit in maxconns_fast mode.",
            server.rejected_connections.load(Relaxed),
        )?;
        out.counter(
            "cachepair_auth_commands",
            "Client logins checked (text login tokens, SASL AUTH and STEP).",
            server.auth_cmds.load(Relaxed),
        )?;
        out.counter("cachepair_auth_errors", "Client logins refused.", server.auth_errors.load(Relaxed))?;
        out.counter(
            "cachepair_admin_auth_errors",
            "Admin requests refused: no token, a wrong one, or a peer not on loopback.",
            server.admin_auth_errors.load(Relaxed),
        )?;
        out.gauge(
            "memcached_accepting_connections",
            "The Memcached server is currently accepting new connections.",
            u32::from(server.accepting_conns.load(Relaxed)),
        )?;
        out.gauge("memcached_current_bytes", "Current number of bytes used to store items.", store.bytes)?;
        out.gauge(
            "memcached_limit_bytes",
            "Number of bytes this server is allowed to use for storage.",
            store.limit_maxbytes,
        )?;
        out.gauge(
            "cachepair_memory_held_back_bytes",
            "Bytes of the storage limit held back from items while resident memory is over its bound.",
            ctx.store.held_back() as u64,
        )?;

        // memcached counts cas commands in cmd_set too; the exporter's set excludes them.
        let cas = t.cas_hits + c.cas_misses + t.cas_badval;
        let commands = [
            ("get", "hit", t.get_hits),
            ("get", "miss", c.get_misses),
            ("delete", "hit", t.delete_hits),
            ("delete", "miss", c.delete_misses),
            ("incr", "hit", t.incr_hits),
            ("incr", "miss", c.incr_misses),
            ("decr", "hit", t.decr_hits),
            ("decr", "miss", c.decr_misses),
            ("cas", "hit", t.cas_hits),
            ("cas", "miss", c.cas_misses),
            ("cas", "badval", t.cas_badval),
            ("touch", "hit", t.touch_hits),
            ("touch", "miss", c.touch_misses),
            ("flush", "hit", server.cmd_flush.load(Relaxed)),
            ("set", "hit", t.cmd_set.saturating_sub(cas)),
        ];
        let mut family = out.0.encode_descriptor(
            "memcached_commands",
            "Total number of all requests broken down by command (get, set, etc.) and status.",
            None,
            MetricType::Counter,
        )?;
        for (command, status, value) in commands {
            ConstCounter::new(value).encode(family.encode_family(&[("command", command), ("status", status)])?)?;
        }

        out.gauge("memcached_current_items", "Current number of items stored by this instance.", store.curr_items)?;
        out.counter(
            "memcached_items",
            "Total number of items stored during the life of this instance.",
            c.total_items,
        )?;
        out.counter(
            "memcached_items_evicted",
            "Total number of valid items removed from cache to free memory for new items.",
            t.evicted,
        )?;
        out.counter(
            "memcached_items_reclaimed",
            "Total number of times an entry was stored using memory from an expired entry.",
            t.reclaimed,
        )?;
        if ctx.tls.is_some() {
            out.counter(
                "cachepair_tls_handshake_errors",
                "TLS handshakes on the client port that failed or timed out (memcached's ssl_handshake_errors).",
                server.ssl_handshake_errors.load(Relaxed),
            )?;
        }
        self.encode_replication(&mut out)
    }
}

impl StatsCollector {
    fn encode_replication(&self, out: &mut Out<'_>) -> fmt::Result {
        let Some(r) = self.0.replication.get() else {
            return Ok(());
        };
        let mut family = out.0.encode_descriptor(
            "cachepair_replication_role",
            "1 for this node's current replication role.",
            None,
            MetricType::Gauge,
        )?;
        for name in ["master", "slave", "starting"] {
            let value = i64::from(role_name(&self.0) == name);
            ConstGauge::new(value).encode(family.encode_family(&[("role", name)])?)?;
        }
        let end = r.stream_end.load(Relaxed);
        out.gauge(
            "cachepair_replication_term",
            "Failovers of the pair as this node knows them.",
            r.term.load(Relaxed) as i64,
        )?;
        out.gauge(
            "cachepair_replication_link_up",
            "1 while the link to the peer is up.",
            i64::from(r.link_up.load(Relaxed)),
        )?;
        out.gauge(
            "cachepair_replication_tls",
            "1 when the link runs over mutual TLS (--repl-tls-*), 0 over plain TCP.",
            i64::from(r.tls.load(Relaxed)),
        )?;
        out.gauge("cachepair_replication_offset_bytes", "End of this node's replication stream.", end as i64)?;
        out.gauge(
            "cachepair_replication_lag_bytes",
            "Bytes of this node's stream the peer has not acknowledged.",
            end.saturating_sub(r.peer_acked.load(Relaxed)) as i64,
        )?;
        out.counter(
            "cachepair_replication_full_syncs_sent",
            "Snapshots sent to the peer.",
            r.full_syncs_sent.load(Relaxed),
        )?;
        out.counter(
            "cachepair_replication_full_syncs_received",
            "Snapshots received from the peer.",
            r.full_syncs_received.load(Relaxed),
        )?;
        out.counter(
            "cachepair_replication_partial_syncs",
            "Links resumed from the backlog.",
            r.partial_syncs.load(Relaxed),
        )?;
        out.counter(
            "cachepair_replication_failovers",
            "Times this node took over as master.",
            r.failovers.load(Relaxed),
        )?;
        out.counter(
            "cachepair_replication_ops_applied",
            "Changes applied from the peer's stream.",
            r.ops_applied.load(Relaxed),
        )?;
        out.counter(
            "cachepair_replication_auth_failures",
            "Links refused because a side failed authentication.",
            r.auth_failures.load(Relaxed),
        )?;
        out.counter(
            "cachepair_replication_handshakes_failed",
            "Connections on the replication port that did not authenticate.",
            r.handshakes_failed.load(Relaxed),
        )?;
        out.counter(
            "cachepair_replication_links_replaced",
            "Links replaced by a newer one from the peer, which had given up on the old one.",
            r.links_replaced.load(Relaxed),
        )?;
        out.counter(
            "cachepair_replication_sync_degraded",
            "Writes acknowledged in sync mode without the peer's confirmation (none linked, or it did not confirm in time).",
            r.sync_degraded.load(Relaxed),
        )?;
        out.counter(
            "cachepair_replication_shutdown_handover_timeouts",
            "Graceful shutdowns of this master that gave up handing its role over (--shutdown-timeout).",
            r.shutdown_handover_timeouts.load(Relaxed),
        )?;
        let lag = r.lag.summary();
        let mut metric = out.0.encode_descriptor(
            "cachepair_replication_lag_seconds",
            "From a change made here to the peer's acknowledgement that it applied it.",
            None,
            MetricType::Histogram,
        )?;
        metric.encode_histogram::<NoLabelSet>(lag.sum_seconds, lag.samples, &lag.buckets, None)
    }
}

/// Encodes single-value metrics; counter names get their `_total` from the encoder.
struct Out<'a>(DescriptorEncoder<'a>);

impl Out<'_> {
    fn gauge(&mut self, name: &str, help: &str, value: impl EncodeGaugeValue) -> fmt::Result {
        let metric = ConstGauge::new(value);
        metric.encode(self.0.encode_descriptor(name, help, None, metric.metric_type())?)
    }

    fn counter(&mut self, name: &str, help: &str, value: impl EncodeCounterValue) -> fmt::Result {
        let metric = ConstCounter::new(value);
        metric.encode(self.0.encode_descriptor(name, help, None, metric.metric_type())?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn admin(token_file: Option<PathBuf>) -> Admin {
        let ctx = Context::detached(crate::store::Config::default());
        Admin { ctx, registry: Registry::default(), token_file }
    }

    #[test]
    fn without_a_token_only_loopback_peers_switch_over() {
        let admin = admin(None);
        let headers = HeaderMap::new();
        for peer in ["127.0.0.1:5000", "127.8.9.10:5000", "[::1]:5000", "[::ffff:127.0.0.1]:5000"] {
            assert_eq!(admin.authorize(peer.parse().unwrap(), &headers), Ok(()), "{peer}");
        }
        for peer in ["192.0.2.1:5000", "[2001:db8::1]:5000", "[::ffff:192.0.2.1]:5000"] {
            let refused = admin.authorize(peer.parse().unwrap(), &headers).unwrap_err();
            assert_eq!(refused.0, StatusCode::FORBIDDEN, "{peer}");
        }
    }

    #[test]
    fn with_a_token_loopback_needs_it_too() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("token");
        std::fs::write(&file, "s3cret\n").unwrap();
        let admin = admin(Some(file));
        let loopback = "127.0.0.1:5000".parse().unwrap();
        let mut headers = HeaderMap::new();
        assert_eq!(admin.authorize(loopback, &headers).unwrap_err().0, StatusCode::UNAUTHORIZED);
        headers.insert(header::AUTHORIZATION, "Bearer s3cret".parse().unwrap());
        assert_eq!(admin.authorize(loopback, &headers), Ok(()));
        assert_eq!(admin.authorize("192.0.2.1:5000".parse().unwrap(), &headers), Ok(()));
    }
}
