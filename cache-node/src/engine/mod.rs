//! Executes parsed requests against the store and renders the replies, one module per
//! protocol. Shared here: the server-wide context and the result of processing a buffer; the
//! context's registry of open sockets ([`conns`]) lives here too, since `stats conns` reads it.

pub mod auth;
pub mod binary;
pub mod conns;
pub mod dump;
pub mod memory;
pub mod meta;
pub mod reply;
pub mod stats;
pub mod text;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering::Relaxed};

use crate::store::{Clock, Store};
pub use reply::Reply;
pub use stats::ServerStats;

/// A batch stops taking requests once its reply holds this many bytes, or after this many
/// requests: the connection writes the reply before it goes on, so a client that does not read
/// its replies is paused instead of buffered for without limit (memcached stops reading such a
/// connection too), and one connection's pipeline does not hold its worker for long.
pub const BATCH_REPLY_BYTES: usize = 256 * 1024;
pub const BATCH_REQUESTS: usize = 12 * EVENT_REQUESTS;
/// memcached handles 21 requests of a connection per event (`-R 20`, counted down past zero),
/// then sends their replies and so releases the items they held (see [`Reply::hold`]). A batch
/// is a whole number of such events.
const EVENT_REQUESTS: usize = 21;

/// Settings that replies and `stats settings` report.
#[derive(Debug, Clone)]
pub struct Settings {
    pub tcp_port: u16,
    pub udp_port: u16,
    pub interfaces: String,
    pub max_connections: usize,
    pub threads: usize,
    pub item_size_max: usize,
    pub limit_bytes: usize,
    /// `-o idle_timeout`: close client connections that sent no command for this long.
    pub idle_timeout: Option<std::time::Duration>,
}

/// Everything a connection needs, shared by all of them.
pub struct Context {
    /// Shared with replication, which fills it from the peer and copies it to the peer.
    pub store: Arc<Store>,
    pub clock: Clock,
    pub stats: ServerStats,
    pub settings: Settings,
    /// `-v` level, changeable with the `verbosity` command.
    pub verbosity: AtomicU8,
    /// Open sockets, for `stats conns`.
    pub conns: conns::Registry,
    /// Replication's state, once it runs (`stats replication`, `/metrics`).
    pub replication: std::sync::OnceLock<Arc<crate::replication::status::Status>>,
    /// Keeps resident memory within its bound (see [`memory`]).
    pub memory: Option<memory::Guard>,
    /// `lru_crawler enable|disable`: while disabled, `crawl` and `metadump` are refused, as in
    /// memcached (the background sweep goes on regardless).
    pub lru_crawler: AtomicBool,
    /// Client authentication (`-S`, `-Y`), when on.
    pub auth: Option<auth::Auth>,
    /// `-Z`: the client port's TLS, for `refresh_certs` and the statistics.
    pub tls: Option<Arc<crate::tls::Tls>>,
}

impl Context {
    pub fn new(
        store: Store,
        settings: Settings,
        verbosity: u8,
        auth: Option<auth::Auth>,
        tls: Option<Arc<crate::tls::Tls>>,
    ) -> Arc<Self> {
        Arc::new(Self {
            store: Arc::new(store),
            clock: Clock::new(),
            stats: ServerStats::default(),
            settings,
            verbosity: AtomicU8::new(verbosity),
            conns: Default::default(),
            replication: Default::default(),
            memory: memory::Guard::new(),
            lru_crawler: AtomicBool::new(true),
            auth,
            tls,
        })
    }

    /// An engine without listeners, one worker and a store of `config`'s size: for driving the
    /// engine directly, as the engine tests and the fuzz targets do.
    pub fn detached(config: crate::store::Config) -> Arc<Self> {
        let settings = Settings {
            tcp_port: 0,
            udp_port: 0,
            interfaces: String::new(),
            max_connections: 16,
            threads: 1,
            item_size_max: config.item_size_max,
            limit_bytes: config.limit_bytes,
            idle_timeout: None,
        };
        Self::new(Store::new(config), settings, 0, None, None)
    }

    /// `stats reset`: zeroes the counters (and the replication lag distribution); state such as
    /// item counts stays.
    pub fn reset_stats(&self) {
        self.store.reset_stats();
        self.stats.reset();
        if let Some(replication) = self.replication.get() {
            replication.lag.reset();
        }
    }

    pub fn verbosity(&self) -> u8 {
        self.verbosity.load(Relaxed)
    }

    /// The `verbosity` command: memcached caps the level at 2 (`-vv`).
    pub fn set_verbosity(&self, level: u32) {
        let level = level.min(2) as u8;
        self.verbosity.store(level, Relaxed);
        crate::logging::set_verbosity(level);
    }
}

/// What processing the front of a connection's read buffer achieved.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Progress {
    /// Bytes of the buffer fully handled.
    pub consumed: usize,
    /// Bytes still to discard as they arrive (the rest of a refused value).
    pub swallow: usize,
    /// Close the connection once the replies are written.
    pub close: bool,
    /// The batch is full (see [`BATCH_REPLY_BYTES`]): write the reply, then process the rest of
    /// the buffer before reading more.
    pub more: bool,
    /// The batch ends with a dump: write the reply so far, then the dump chunk by chunk
    /// ([`dump::Dump::fill`]), and only then go on with the rest of the buffer.
    pub dump: Option<dump::Dump>,
}

impl Progress {
    /// Whether a batch that has handled `requests` and built `reply` must stop here.
    fn full(&mut self, requests: usize, reply: &mut Reply) -> bool {
        if requests.is_multiple_of(EVENT_REQUESTS) {
            reply.release();
        }
        self.more = requests >= BATCH_REQUESTS || reply.len() >= BATCH_REPLY_BYTES;
        self.more
    }
}

/// Appends a decimal number.
pub fn push_num(out: &mut Vec<u8>, n: impl itoa::Integer) {
    out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> Arc<Context> {
        Context::detached(crate::store::Config::default())
    }

    #[test]
    fn a_batch_stops_after_so_many_requests_and_goes_on_where_it_stopped() {
        let ctx = ctx();
        let input = b"mn\r\n".repeat(BATCH_REQUESTS + 10);
        let mut out = Reply::default();
        let first = text::process(&ctx, &input, &mut out);
        assert_eq!((first.consumed, first.more), (4 * BATCH_REQUESTS, true));
        let rest = text::process(&ctx, &input[first.consumed..], &mut out);
        assert_eq!((rest.consumed, rest.more), (40, false));
        assert_eq!(out.to_vec(), b"MN\r\n".repeat(BATCH_REQUESTS + 10));
    }

    #[test]
    fn a_batch_stops_once_its_reply_is_full() {
        let ctx = ctx();
        let value = vec![b'v'; 100_000];
        let mut set = format!("set k 0 0 {}\r\n", value.len()).into_bytes();
        set.extend_from_slice(&value);
        set.extend_from_slice(b"\r\n");
        let mut out = Reply::default();
        text::process(&ctx, &set, &mut out);
        out.clear();
        let gets = b"get k\r\n".repeat(5);
        let first = text::process(&ctx, &gets, &mut out);
        // Three replies reach the 256 KiB mark; the other two wait for the next batch.
        assert_eq!((first.consumed, first.more), (21, true));
        assert!(out.len() >= BATCH_REPLY_BYTES && out.capacity() < BATCH_REPLY_BYTES / 2, "values are referenced");
    }
}
