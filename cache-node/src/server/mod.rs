//! Listeners and the accept loop: connection limits, per-connection tasks, background expiry.

mod connection;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tracing::{debug, info, warn};

use crate::engine::Context;

/// How often background expiry runs, and how many slots it visits each time.
const SWEEP_INTERVAL: Duration = Duration::from_millis(100);
const SWEEP_BUDGET: usize = 4096;

/// Binds every address, reporting which one failed.
pub fn bind_all(addrs: &[SocketAddr]) -> anyhow::Result<Vec<std::net::TcpListener>> {
    addrs
        .iter()
        .map(|addr| {
            let l = std::net::TcpListener::bind(addr)
                .map_err(|e| anyhow::anyhow!("failed to listen on TCP {addr}: {e}"))?;
            l.set_nonblocking(true)?;
            Ok(l)
        })
        .collect()
}

/// Serves clients on the given listeners until the process ends.
pub async fn run(ctx: Arc<Context>, listeners: Vec<std::net::TcpListener>) -> anyhow::Result<()> {
    tokio::spawn(sweep(ctx.clone()));
    let mut tasks = Vec::new();
    for l in listeners {
        let listener = TcpListener::from_std(l)?;
        info!(addr = %listener.local_addr()?, "listening");
        tasks.push(tokio::spawn(accept_loop(ctx.clone(), listener)));
    }
    for t in tasks {
        t.await??;
    }
    Ok(())
}

async fn accept_loop(ctx: Arc<Context>, listener: TcpListener) -> anyhow::Result<()> {
    loop {
        let (mut stream, peer) = match listener.accept().await {
            Ok(conn) => conn,
            Err(e) => {
                // Out of file descriptors and the like: back off instead of spinning.
                warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let current = ctx.stats.curr_connections.fetch_add(1, Relaxed) + 1;
        ctx.stats.total_connections.fetch_add(1, Relaxed);
        if current > ctx.settings.max_connections as u64 {
            // memcached's maxconns_fast: tell the client why, then hang up.
            ctx.stats.curr_connections.fetch_sub(1, Relaxed);
            ctx.stats.rejected_connections.fetch_add(1, Relaxed);
            tokio::spawn(async move {
                let _ = stream.write_all(b"ERROR Too many open connections\r\n").await;
            });
            continue;
        }
        let ctx = ctx.clone();
        tokio::spawn(async move {
            debug!(%peer, "connection opened");
            if let Err(e) = connection::serve(ctx.clone(), stream).await {
                debug!(%peer, error = %e, "connection ended");
            }
            ctx.stats.curr_connections.fetch_sub(1, Relaxed);
        });
    }
}

/// Background expiry: frees expired and flushed items that nobody reads again.
async fn sweep(ctx: Arc<Context>) {
    let mut tick = tokio::time::interval(SWEEP_INTERVAL);
    loop {
        tick.tick().await;
        ctx.store.sweep(ctx.clock.now(), SWEEP_BUDGET);
    }
}
