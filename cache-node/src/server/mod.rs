//! Listeners and the accept loop: connection limits, per-connection tasks (with the TLS
//! handshake under `-Z`), the UDP port, background expiry, shutdown.

mod connection;
pub mod http;
mod udp;
mod workers;

use std::future::Future;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use socket2::{Domain, Socket, Type};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, UdpSocket};
use tokio::task::JoinSet;
use tracing::{Instrument, debug, debug_span, info, warn};

use crate::engine::Context;
use crate::engine::conns::{Conn, State, Transport};
use crate::engine::stats::TCP_BACKLOG;
use crate::rate_limited_log::RateLimitedLog;
use crate::store::{SWEEP_BUDGET, SWEEP_INTERVAL};
use workers::Workers;

/// After a failed accept (out of file descriptors and the like): how long to back off instead
/// of spinning, and how often at most to say so in the log.
pub const ACCEPT_BACKOFF: Duration = Duration::from_millis(10);
pub const ACCEPT_ERROR_LOG_INTERVAL: Duration = Duration::from_secs(1);

/// The client ports, bound before the runtime starts (and before privileges are dropped).
#[derive(Debug)]
pub struct Listeners {
    pub tcp: Vec<std::net::TcpListener>,
    pub udp: Vec<std::net::UdpSocket>,
}

impl Listeners {
    /// Binds every address, reporting which one failed. With `freebind`, an address need not
    /// be on this host yet (IP_FREEBIND): a virtual IP that VRRP moves here on failover.
    pub fn bind(tcp: &[SocketAddr], udp: &[SocketAddr], freebind: bool) -> anyhow::Result<Self> {
        let tcp = tcp
            .iter()
            .map(|&addr| {
                let l = bind(addr, Type::STREAM, freebind)
                    .and_then(|s| s.listen(TCP_BACKLOG as i32).map(|()| s))
                    .map_err(|e| anyhow::anyhow!("failed to listen on TCP {addr}: {e}"))?;
                Ok(l.into())
            })
            .collect::<anyhow::Result<_>>()?;
        let udp = udp
            .iter()
            .map(|&addr| {
                let s = bind(addr, Type::DGRAM, freebind)
                    .map_err(|e| anyhow::anyhow!("failed to listen on UDP {addr}: {e}"))?;
                Ok(s.into())
            })
            .collect::<anyhow::Result<_>>()?;
        Ok(Self { tcp, udp })
    }
}

/// A non-blocking socket bound to `addr`, with SO_REUSEADDR for TCP as the standard library
/// sets it (a restarted node binds while old connections linger in TIME_WAIT).
fn bind(addr: SocketAddr, kind: Type, freebind: bool) -> std::io::Result<Socket> {
    let socket = Socket::new(Domain::for_address(addr), kind, None)?;
    if kind == Type::STREAM {
        socket.set_reuse_address(true)?;
    }
    if freebind {
        match addr {
            SocketAddr::V4(_) => socket.set_freebind_v4(true)?,
            SocketAddr::V6(_) => socket.set_freebind_v6(true)?,
        }
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    Ok(socket)
}

/// Serves clients until `shutdown` completes, then stops accepting, closes the connections
/// and returns. Connections are served by `-t` worker threads.
/// With `ready`, the client ports open only once it turns true (a joining slave's full copy);
/// until then connections wait in the listen queue.
pub async fn run(
    ctx: Arc<Context>,
    listeners: Listeners,
    ready: Option<tokio::sync::watch::Receiver<bool>>,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let workers = Arc::new(Workers::start(ctx.settings.threads)?);
    let mut tasks = JoinSet::new();
    tasks.spawn(sweep(ctx.clone()));
    tasks.spawn(crate::engine::memory::watch(ctx.clone()));
    tokio::pin!(shutdown);
    if let Some(mut ready) = ready {
        tokio::select! {
            r = ready.wait_for(|ready| *ready) => { r?; }
            _ = &mut shutdown => return Ok(()),
        }
    }
    for l in listeners.tcp {
        let listener = TcpListener::from_std(l)?;
        info!(addr = %listener.local_addr()?, "listening");
        tasks.spawn(accept_loop(ctx.clone(), listener, workers.clone()));
    }
    for s in listeners.udp {
        let socket = UdpSocket::from_std(s)?;
        info!(addr = %socket.local_addr()?, "listening on UDP");
        tasks.spawn(udp::serve(ctx.clone(), socket));
    }
    ctx.stats.accepting_conns.store(true, Relaxed);
    shutdown.await;
    ctx.stats.accepting_conns.store(false, Relaxed);
    // Aborting the accept loops closes the listening sockets.
    tasks.shutdown().await;
    if let Ok(workers) = Arc::try_unwrap(workers) {
        tokio::task::spawn_blocking(move || workers.stop()).await?;
    }
    Ok(())
}

async fn accept_loop(ctx: Arc<Context>, listener: TcpListener, workers: Arc<Workers>) {
    let local = listener.local_addr().ok();
    let _listening = local.map(|addr| {
        ctx.conns.register(listener.as_raw_fd(), Transport::Tcp, addr, None, State::Listening, ctx.clock.now())
    });
    let mut accept_errors = RateLimitedLog::new(ACCEPT_ERROR_LOG_INTERVAL);
    loop {
        let (mut stream, peer) = match listener.accept().await {
            Ok(conn) => conn,
            Err(e) => {
                if let Some(suppressed) = accept_errors.event(Instant::now()) {
                    warn!(error = %e, suppressed, "accept failed");
                }
                // memcached stops listening when an accept fails for want of descriptors and
                // tries again 10 ms later: counted the same way.
                ctx.stats.listen_disabled_num.fetch_add(1, Relaxed);
                let paused = Instant::now();
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                let micros = paused.elapsed().as_micros().try_into().unwrap_or(u64::MAX);
                ctx.stats.time_in_listen_disabled_us.fetch_add(micros, Relaxed);
                continue;
            }
        };
        let current = ctx.stats.curr_connections.fetch_add(1, Relaxed) + 1;
        if current > ctx.settings.max_connections as u64 {
            // memcached's maxconns_fast: tell the client why, then hang up. Counted as
            // rejected only, as memcached counts (total_connections is of served ones).
            ctx.stats.curr_connections.fetch_sub(1, Relaxed);
            ctx.stats.rejected_connections.fetch_add(1, Relaxed);
            tokio::spawn(async move {
                let _ = stream.write_all(b"ERROR Too many open connections\r\n").await;
            });
            continue;
        }
        ctx.stats.total_connections.fetch_add(1, Relaxed);
        let conn = ctx.conns.register(
            stream.as_raw_fd(),
            Transport::Tcp,
            peer,
            stream.local_addr().ok().or(local),
            State::Waiting,
            ctx.clock.now(),
        );
        let conn_ctx = ctx.clone();
        // With -vv, every command logged for this connection names its peer.
        let span = debug_span!("conn", %peer);
        let serve = Box::new(move |stream: tokio::net::TcpStream| {
            let ctx = conn_ctx;
            Box::pin(
                async move {
                    debug!("connection opened");
                    match serve_client(ctx.clone(), stream, &conn).await {
                        Ok(()) => debug!("connection closed"),
                        Err(e) => debug!(error = %e, "connection ended"),
                    }
                    ctx.stats.curr_connections.fetch_sub(1, Relaxed);
                }
                .instrument(span),
            ) as _
        });
        if let Err(e) = workers.dispatch(stream, serve) {
            warn!(%peer, error = %e, "cannot serve connection");
            ctx.stats.curr_connections.fetch_sub(1, Relaxed);
        }
    }
}

/// Serves one client, after the TLS handshake under `-Z`. A handshake that fails or times out
/// (a plaintext client, garbage, a stalled ClientHello) is counted and ends this connection
/// only.
async fn serve_client(ctx: Arc<Context>, stream: tokio::net::TcpStream, conn: &Conn) -> std::io::Result<()> {
    // On the socket itself: TLS records go out as soon as they are written, as plain replies.
    stream.set_nodelay(true)?;
    let Some(tls) = &ctx.tls else {
        return connection::serve(ctx, stream, conn).await;
    };
    let stream = tls.accept(stream).await.inspect_err(|_| {
        ctx.stats.ssl_handshake_errors.fetch_add(1, Relaxed);
    })?;
    connection::serve(ctx, stream, conn).await
}

/// Background expiry: frees expired and flushed items that nobody reads again.
async fn sweep(ctx: Arc<Context>) {
    let mut tick = tokio::time::interval(SWEEP_INTERVAL);
    ctx.stats.lru_crawler_running.store(true, Relaxed);
    loop {
        tick.tick().await;
        if ctx.store.sweep(ctx.clock.now(), SWEEP_BUDGET) {
            ctx.stats.lru_crawler_starts.fetch_add(1, Relaxed);
        }
    }
}
