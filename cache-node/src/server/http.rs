//! The HTTP listeners (the node's admin port, the VRRP sidecar's metrics port): an axum router
//! served over HTTP/1.1 with a cap on open connections and timeouts, so that idle or slow
//! clients can neither hold the port for good nor use up the file descriptors that the client
//! port needs. These connections do not count against `-c`; the open-files limit the node
//! asks for at start-up leaves room for [`MAX_CONNECTIONS`] of them.

use std::pin::pin;
use std::time::{Duration, Instant};

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_io_timeout::TimeoutStream;
use tower_http::limit::RequestBodyLimitLayer;
use tracing::{debug, warn};

use super::{ACCEPT_BACKOFF, ACCEPT_ERROR_LOG_INTERVAL};
use crate::rate_limited_log::RateLimitedLog;

/// Open connections at most. One more is closed as soon as it is accepted rather than left
/// waiting in the listen queue: a probe or a scraper then fails at once and retries, instead
/// of hanging until some other connection times out.
pub const MAX_CONNECTIONS: usize = 64;
/// A request's header must arrive within this long of the connection opening or of the
/// previous response; hyper closes the connection otherwise. This also ends idle keep-alive.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(5);
/// A connection that neither reads nor writes anything for this long is closed: a body sent
/// a byte at a time, or a client that stops reading its responses. Longer than the slowest
/// handler (a switchover waits up to 10 s, with no traffic meanwhile).
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// No endpoint takes a body (`POST /switchover` has none): anything larger is refused with 413.
pub const MAX_BODY_BYTES: usize = 1024;

/// Serves `app` on `listener` until the future is dropped, which closes the connections too.
/// `name` tells the listeners apart in the log.
pub async fn serve(listener: std::net::TcpListener, app: Router, name: &'static str) -> std::io::Result<()> {
    listener.set_nonblocking(true)?;
    let listener = TcpListener::from_std(listener)?;
    let app = app.layer(RequestBodyLimitLayer::new(MAX_BODY_BYTES));
    let mut connections = JoinSet::new();
    let mut accept_errors = RateLimitedLog::new(ACCEPT_ERROR_LOG_INTERVAL);
    let mut refusals = RateLimitedLog::new(ACCEPT_ERROR_LOG_INTERVAL);
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(conn) => conn,
            Err(e) => {
                if let Some(suppressed) = accept_errors.event(Instant::now()) {
                    warn!(listener = name, error = %e, suppressed, "accept failed");
                }
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        // Connections that ended since the last accept no longer count.
        while connections.try_join_next().is_some() {}
        if connections.len() >= MAX_CONNECTIONS {
            if let Some(suppressed) = refusals.event(Instant::now()) {
                warn!(listener = name, %peer, limit = MAX_CONNECTIONS, suppressed, "too many connections: closed a new one");
            }
            drop(stream);
            continue;
        }
        let mut stream = TimeoutStream::new(stream);
        stream.set_read_timeout(Some(IDLE_TIMEOUT));
        stream.set_write_timeout(Some(IDLE_TIMEOUT));
        // Handlers that judge the peer (the admin's /switchover) read it from here.
        let service = TowerToHyperService::new(app.clone().layer(axum::Extension(axum::extract::ConnectInfo(peer))));
        connections.spawn(async move {
            let stream = pin!(stream);
            let served = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_READ_TIMEOUT)
                .serve_connection(TokioIo::new(stream), service)
                .await;
            if let Err(e) = served {
                debug!(listener = name, %peer, error = %e, "connection ended");
            }
        });
    }
}
