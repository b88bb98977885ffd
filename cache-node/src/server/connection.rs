//! One client connection: buffered reads, protocol detection, replies written in batches.

use std::io::IoSlice;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::engine::conns::{Conn, State};
use crate::engine::memory;
use crate::engine::{Context, Progress, Reply, auth, binary, text};
use crate::protocol::binary::REQUEST_MAGIC;

/// Initial read buffer; it grows to hold one whole request (a value up to `-I`) when needed.
const READ_CHUNK: usize = 16 * 1024;
/// Slices per vectored write (Linux takes up to 1024).
const MAX_IOVECS: usize = 64;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Protocol {
    Text,
    Binary,
}

/// Serves one connection until the peer closes it, asks to quit, sends something that makes
/// the connection unusable, or stays idle past `-o idle_timeout`. `stream` is the TCP socket
/// or the TLS session over it.
pub async fn serve<S>(ctx: Arc<Context>, mut stream: S, conn: &Conn) -> std::io::Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut rbuf = BytesMut::with_capacity(READ_CHUNK);
    let mut out = Reply::with_capacity(READ_CHUNK);
    let mut protocol = None;
    let mut swallow = 0usize;
    // With -S or -Y, nothing is served until the client has logged in.
    let mut authenticated = ctx.auth.is_none();
    // Complete requests are left in `rbuf` from a batch that filled up: no read before them.
    let mut more = false;
    // Bytes read and not yet reported to the memory guard.
    let mut unreported = 0;
    loop {
        if !more {
            if rbuf.capacity() - rbuf.len() < READ_CHUNK / 4 {
                rbuf.reserve(READ_CHUNK);
            }
            conn.set_state(match (swallow, rbuf.is_empty()) {
                (0, true) => State::Waiting,
                (0, false) => State::Read,
                _ => State::Swallow,
            });
            let Some(n) = read(&ctx, &mut stream, &mut rbuf, conn).await? else {
                return Ok(());
            };
            ctx.stats.bytes_read.fetch_add(n as u64, Relaxed);
            unreported += n;
            if unreported >= memory::REPORT_EVERY
                && let Some(guard) = &ctx.memory
            {
                guard.read(&ctx, std::mem::take(&mut unreported));
            }
            if swallow > 0 {
                let take = swallow.min(rbuf.len());
                rbuf.advance(take);
                swallow -= take;
                if rbuf.is_empty() {
                    continue;
                }
            }
        }
        conn.set_state(State::ParseCmd);
        // memcached picks the protocol once, from the first byte a connection sends.
        let proto = *protocol.get_or_insert_with(|| match rbuf.first() {
            Some(&REQUEST_MAGIC) => Protocol::Binary,
            _ => Protocol::Text,
        });
        let repl = ctx.replication.get();
        let stream_before = repl.map(|r| r.stream_end());
        let logging_in = !authenticated;
        let progress: Progress = match (proto, &ctx.auth) {
            (Protocol::Text, Some(auth)) if logging_in => {
                auth::text_login(&ctx, auth, &rbuf, &mut out, &mut authenticated)
            }
            (Protocol::Binary, Some(auth)) if logging_in => {
                binary::sasl::login(&ctx, auth, &rbuf, &mut out, &mut authenticated)
            }
            (Protocol::Text, _) => text::process(&ctx, &rbuf, &mut out),
            (Protocol::Binary, _) => binary::process(&ctx, &rbuf, &mut out),
        };
        // Synchronous replication: the replies to writes wait until the peer applied them.
        if let (Some(r), Some(before)) = (repl, stream_before) {
            let end = r.stream_end();
            if end > before {
                r.wait_replicated(end).await;
            }
        }
        if progress.consumed > 0 {
            conn.touch(ctx.clock.now());
        }
        rbuf.advance(progress.consumed);
        swallow = progress.swallow;
        more = progress.more;
        // The requests after a login are not a full batch's.
        if more && !logging_in {
            ctx.stats.conn_yields.fetch_add(1, Relaxed);
        }
        if let Some(mut dump) = progress.dump {
            // As in memcached, nothing more is read from the connection while a dump goes out:
            // each chunk is written before the next is made, so a slow reader holds one chunk.
            conn.set_state(State::Write);
            loop {
                let done = dump.fill(&ctx, &mut out);
                if !out.is_empty() {
                    write(&mut stream, &out).await?;
                    ctx.stats.bytes_written.fetch_add(out.len() as u64, Relaxed);
                    out.clear();
                }
                if done {
                    break;
                }
                // A dump that writes little (or into a fast socket) still lets others run.
                tokio::task::yield_now().await;
            }
            // The requests after the dump may already be in the buffer.
            more = true;
        }
        if !out.is_empty() {
            conn.set_state(State::Write);
            // A client that does not read its replies holds the connection here: nothing more
            // is read from it or built for it until the reply is gone.
            write(&mut stream, &out).await?;
            ctx.stats.bytes_written.fetch_add(out.len() as u64, Relaxed);
            out.clear();
            // Do not keep a huge reply buffer alive after a large multiget.
            if out.capacity() > 4 * READ_CHUNK {
                out = Reply::with_capacity(READ_CHUNK);
            }
        }
        if progress.close {
            return Ok(());
        }
        // A partial request needs room for the rest of it; the parsers bound how much.
        if rbuf.is_empty() && rbuf.capacity() > 4 * READ_CHUNK {
            rbuf = BytesMut::with_capacity(READ_CHUNK);
        }
    }
}

/// Reads what the client sent; None once it closed the connection, or when it stayed idle
/// past `-o idle_timeout` since its last command (memcached's `idle_kicks`).
async fn read(
    ctx: &Context,
    stream: &mut (impl AsyncRead + Unpin),
    rbuf: &mut BytesMut,
    conn: &Conn,
) -> std::io::Result<Option<usize>> {
    let Some(limit) = ctx.settings.idle_timeout else {
        let n = stream.read_buf(rbuf).await?;
        return Ok((n > 0).then_some(n));
    };
    loop {
        let idle = Duration::from_secs(ctx.clock.now().saturating_sub(conn.last_cmd()).into());
        let Some(left) = limit.checked_sub(idle).filter(|left| !left.is_zero()) else {
            ctx.stats.idle_kicks.fetch_add(1, Relaxed);
            tracing::debug!(?limit, "closing an idle connection");
            return Ok(None);
        };
        if let Ok(n) = tokio::time::timeout(left, stream.read_buf(rbuf)).await {
            let n = n?;
            return Ok((n > 0).then_some(n));
        }
    }
}

/// Writes a whole reply, values by reference included, with vectored writes (TLS too: rustls
/// takes the slices into its records without copying them together first).
async fn write(stream: &mut (impl AsyncWrite + Unpin), reply: &Reply) -> std::io::Result<()> {
    if let Some(bytes) = reply.contiguous() {
        stream.write_all(bytes).await?;
        // TLS may hold the end of the reply back in its buffer until flushed (TCP: a no-op).
        return stream.flush().await;
    }
    let mut segments = reply.segments();
    let mut slices = Vec::with_capacity(MAX_IOVECS);
    loop {
        slices.clear();
        slices.extend(segments.by_ref().take(MAX_IOVECS).map(IoSlice::new));
        if slices.is_empty() {
            return stream.flush().await;
        }
        let mut pending = &mut slices[..];
        while !pending.is_empty() {
            let n = stream.write_vectored(pending).await?;
            if n == 0 {
                return Err(std::io::ErrorKind::WriteZero.into());
            }
            IoSlice::advance_slices(&mut pending, n);
        }
    }
}
