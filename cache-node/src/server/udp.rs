//! memcached's UDP transport. Every datagram starts with an 8-byte frame header: request id,
//! sequence number, datagram count, reserved (big-endian u16s). A request must fit in one
//! datagram; the reply is cut into datagrams of at most [`MAX_DATAGRAM`] bytes, each carrying
//! the request's id, its own sequence number and the count. The text protocol runs inside.

use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use tokio::net::UdpSocket;
use tracing::{debug, debug_span};

use crate::engine::conns::{State, Transport};
use crate::engine::{Context, Reply, text};

pub const HEADER_LEN: usize = 8;
/// Largest datagram sent, header included: fits a 1500-byte Ethernet MTU.
pub const MAX_DATAGRAM: usize = 1400;
const MAX_PAYLOAD: usize = MAX_DATAGRAM - HEADER_LEN;
/// Reply buffer capacity kept between datagrams.
const MAX_KEPT: usize = 64 * 1024;

/// A request datagram's id and payload, or None for one memcached ignores: no payload, or
/// part of a multi-datagram request.
pub fn parse_request(datagram: &[u8]) -> Option<(u16, &[u8])> {
    if datagram.len() <= HEADER_LEN {
        return None;
    }
    let field = |i: usize| u16::from_be_bytes([datagram[i], datagram[i + 1]]);
    if field(4) != 1 {
        return None;
    }
    Some((field(0), &datagram[HEADER_LEN..]))
}

/// Cuts a reply of `len` bytes, given as its segments, into framed datagrams, made one at a
/// time. None when the reply needs more datagrams than the 16-bit count can say.
pub fn frames<'a>(
    request_id: u16,
    len: usize,
    segments: impl Iterator<Item = &'a [u8]> + 'a,
) -> Option<impl Iterator<Item = Vec<u8>> + 'a> {
    let total = u16::try_from(len.div_ceil(MAX_PAYLOAD)).ok()?;
    let mut bytes = segments.flatten().copied();
    Some((0..total).map(move |seq| {
        let mut datagram = Vec::with_capacity(MAX_DATAGRAM);
        for field in [request_id, seq, total, 0] {
            datagram.extend_from_slice(&field.to_be_bytes());
        }
        datagram.extend(bytes.by_ref().take(MAX_PAYLOAD));
        datagram
    }))
}

/// Answers datagrams on one socket until the task is aborted.
pub async fn serve(ctx: Arc<Context>, socket: UdpSocket) {
    let conn = socket
        .local_addr()
        .ok()
        .map(|addr| ctx.conns.register(socket.as_raw_fd(), Transport::Udp, addr, None, State::Read, ctx.clock.now()));
    // The largest UDP datagram.
    let mut buf = vec![0; 65536];
    let mut out = Reply::default();
    loop {
        let (n, peer) = match socket.recv_from(&mut buf).await {
            Ok(received) => received,
            Err(e) => {
                debug!(error = %e, "UDP receive failed");
                continue;
            }
        };
        ctx.stats.bytes_read.fetch_add(n as u64, Relaxed);
        let Some((request_id, request)) = parse_request(&buf[..n]) else {
            continue;
        };
        if let Some(conn) = &conn {
            conn.touch(ctx.clock.now());
        }
        // Each datagram stands alone: an incomplete request is dropped, `quit` means nothing.
        // Its requests make one reply, however many batches they take; large values in it are
        // references, so its memory stays small whatever it names.
        debug_span!("udp", %peer).in_scope(|| {
            let mut at = 0;
            loop {
                let progress = text::process(&ctx, &request[at..], &mut out);
                at += progress.consumed;
                if let Some(mut dump) = progress.dump {
                    // A cachedump is bounded (2 MB) and goes out whole; memcached answers a
                    // metadump over UDP with nothing at all.
                    if dump.is_bounded() {
                        while !dump.fill(&ctx, &mut out) {}
                    }
                    continue;
                }
                if !progress.more {
                    break;
                }
            }
        });
        if !out.is_empty() {
            reply(&ctx, &socket, peer, request_id, &out).await;
            out.clear();
            // Do not keep a buffer a large reply grew.
            if out.capacity() > MAX_KEPT {
                out = Reply::default();
            }
        }
    }
}

async fn reply(ctx: &Context, socket: &UdpSocket, peer: SocketAddr, request_id: u16, out: &Reply) {
    let Some(datagrams) = frames(request_id, out.len(), out.segments()) else {
        ctx.stats.udp_replies_too_large.fetch_add(1, Relaxed);
        debug!(%peer, bytes = out.len(), "reply too large for UDP");
        return;
    };
    for datagram in datagrams {
        match socket.send_to(&datagram, peer).await {
            Ok(n) => {
                ctx.stats.bytes_written.fetch_add(n as u64, Relaxed);
            }
            Err(e) => {
                debug!(%peer, error = %e, "UDP send failed");
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(id: u16, seq: u16, total: u16) -> Vec<u8> {
        [id, seq, total, 0].iter().flat_map(|f| f.to_be_bytes()).collect()
    }

    #[test]
    fn requests_are_single_datagrams_with_a_payload() {
        let mut d = header(0x1234, 0, 1);
        d.extend_from_slice(b"get k\r\n");
        assert_eq!(parse_request(&d), Some((0x1234, &b"get k\r\n"[..])));
        assert_eq!(parse_request(&header(1, 0, 1)), None, "header only");
        let mut multi = header(1, 0, 2);
        multi.extend_from_slice(b"get k\r\n");
        assert_eq!(parse_request(&multi), None, "first of two");
        assert_eq!(parse_request(b"get"), None);
    }

    #[test]
    fn replies_are_cut_with_a_header_on_each_datagram() {
        let reply: Vec<u8> = (0..3000u32).map(|i| i as u8).collect();
        let segments = [&reply[..1000], &reply[1000..1001], &reply[1001..]];
        let datagrams: Vec<Vec<u8>> = frames(7, reply.len(), segments.into_iter()).unwrap().collect();
        assert_eq!(datagrams.len(), 3);
        let mut joined = Vec::new();
        for (seq, d) in datagrams.iter().enumerate() {
            assert!(d.len() <= MAX_DATAGRAM);
            assert_eq!(&d[..HEADER_LEN], header(7, seq as u16, 3));
            joined.extend_from_slice(&d[HEADER_LEN..]);
        }
        assert_eq!(joined, reply);
        assert_eq!(datagrams[0].len(), MAX_DATAGRAM);

        let one: Vec<Vec<u8>> = frames(9, 5, [&b"END\r\n"[..]].into_iter()).unwrap().collect();
        assert_eq!(one, [[header(9, 0, 1), b"END\r\n".to_vec()].concat()]);
    }

    #[test]
    fn replies_beyond_the_sequence_space_are_refused() {
        assert!(frames(1, MAX_PAYLOAD * 65536, std::iter::empty()).is_none());
        assert!(frames(1, MAX_PAYLOAD * 65535, std::iter::empty()).is_some());
    }
}
