//! One client connection: buffered reads, protocol detection, replies written in batches.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::conns::{Conn, State};
use crate::engine::{Context, Progress, binary, text};
use crate::protocol::binary::REQUEST_MAGIC;

/// Initial read buffer; it grows to hold one whole request (a value up to `-I`) when needed.
const READ_CHUNK: usize = 16 * 1024;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Protocol {
    Text,
    Binary,
}

/// Serves one connection until the peer closes it, asks to quit, or sends something that
/// makes the connection unusable.
pub async fn serve(ctx: Arc<Context>, mut stream: TcpStream, conn: &Conn) -> std::io::Result<()> {
    stream.set_nodelay(true)?;
    let mut rbuf = BytesMut::with_capacity(READ_CHUNK);
    let mut out: Vec<u8> = Vec::with_capacity(READ_CHUNK);
    let mut protocol = None;
    let mut swallow = 0usize;
    loop {
        if rbuf.capacity() - rbuf.len() < READ_CHUNK / 4 {
            rbuf.reserve(READ_CHUNK);
        }
        conn.set_state(match (swallow, rbuf.is_empty()) {
            (0, true) => State::Waiting,
            (0, false) => State::Read,
            _ => State::Swallow,
        });
        let n = stream.read_buf(&mut rbuf).await?;
        if n == 0 {
            return Ok(());
        }
        ctx.stats.bytes_read.fetch_add(n as u64, Relaxed);
        if swallow > 0 {
            let take = swallow.min(rbuf.len());
            rbuf.advance(take);
            swallow -= take;
            if rbuf.is_empty() {
                continue;
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
        let progress: Progress = match proto {
            Protocol::Text => text::process(&ctx, &rbuf, &mut out),
            Protocol::Binary => binary::process(&ctx, &rbuf, &mut out),
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
        if !out.is_empty() {
            conn.set_state(State::Write);
            stream.write_all(&out).await?;
            ctx.stats.bytes_written.fetch_add(out.len() as u64, Relaxed);
            out.clear();
            // Do not keep a huge reply buffer alive after a large multiget.
            if out.capacity() > 4 * READ_CHUNK {
                out = Vec::with_capacity(READ_CHUNK);
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
